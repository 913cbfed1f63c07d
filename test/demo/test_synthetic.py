"""The synthetic depth camera renders the room's geometry exactly."""
import math

import numpy as np
import pytest

from pointcloud_pipeline.demo.synthetic import (Box, CAMERA_HEIGHT, COLOR_OFFSET, Scene,
                                                SyntheticDepthCamera, UnregisteredCamera,
                                                camera_pose, color_camera_size, default_scene,
                                                depth_from_color_transform,
                                                depth_to_color_transform)
from pointcloud_pipeline.transforms import camera_mount_transform, validated_transform


def empty_room():
    return Scene(boxes=())


def test_level_camera_sees_the_wall_at_its_distance():
    camera = SyntheticDepthCamera(64, 48, scene=empty_room(), with_color=False)
    # 1 m above the floor at x=1, looking east (+x) at the wall x=5: 4 m away
    pose = camera_mount_transform(height=1.0, x=1.0)
    depth = camera.render(pose=pose).depth_mm
    assert depth.dtype == np.uint16 and depth.shape == (48, 64)
    # rays through the image centre rows hit the wall: z-depth 4000 mm for every column
    centre_rows = depth[23:25]
    np.testing.assert_array_equal(centre_rows, 4000)


def test_floor_depth_follows_the_pinhole_model():
    camera = SyntheticDepthCamera(80, 60, focal=50.0, scene=empty_room(), with_color=False)
    height = 0.8
    depth = camera.render(pose=camera_mount_transform(height=height)).depth_mm
    # a floor pixel at row v sees the floor at z-depth height * fy / (v - cy)
    for row in (45, 50, 59):
        z = height * camera.fy / (row - camera.cy)
        if z < 4.0:  # before the wall
            assert depth[row, 40] == round(z * 1000)


def test_open_ceiling_and_max_depth_give_no_return():
    camera = SyntheticDepthCamera(64, 48, scene=empty_room(), max_depth=3.0, with_color=False)
    looking_up = camera_mount_transform(height=1.0, pitch=-math.pi / 2 + 0.05)
    assert (camera.render(pose=looking_up).depth_mm == 0).all()
    level = camera.render(pose=camera_mount_transform(height=1.0, x=1.0)).depth_mm
    assert (level[23:25] == 0).all()  # wall at 4 m is beyond 3 m


def test_box_occludes_the_wall():
    box = Box((2.5, -0.5, 0.0), (3.0, 0.5, 2.0), (255, 0, 0))
    camera = SyntheticDepthCamera(64, 48, scene=Scene(boxes=(box,)))
    frame = camera.render(pose=camera_mount_transform(height=1.0, x=1.0))
    assert frame.depth_mm[24, 32] == 1500  # the box's near face at x=2.5
    red = frame.rgb[24, 32]
    assert red[0] > 150 and red[1] == 0 and red[2] == 0  # its colour, shaded


def test_screen_space_culling_changes_nothing():
    camera = SyntheticDepthCamera(160, 120)
    for seconds in np.linspace(0, 30, 13):
        pose = camera_pose(seconds)
        culled = camera.render(pose=pose)
        full = np.tile(np.array([[0, 119, 0, 159]], np.int32), (len(camera._boxes), 1))
        camera._box_pixels, original = (lambda _pose: full), camera._box_pixels
        try:
            brute = camera.render(pose=pose)
        finally:
            camera._box_pixels = original
        np.testing.assert_array_equal(culled.depth_mm, brute.depth_mm)
        np.testing.assert_array_equal(culled.rgb, brute.rgb)


def test_the_loop_stays_inside_the_room_and_clear_of_the_boxes():
    scene = default_scene()
    for seconds in np.linspace(0, 30, 301):
        x, y, z = camera_pose(seconds)[:3, 3]
        assert z == pytest.approx(CAMERA_HEIGHT)
        assert scene.room_min[0] + 1 < x < scene.room_max[0] - 1
        assert scene.room_min[1] + 1 < y < scene.room_max[1] - 1
        for box in scene.boxes:
            inside = all(lo - 0.3 < p < hi + 0.3
                         for lo, hi, p in zip(box.min_corner[:2], box.max_corner[:2], (x, y)))
            assert not inside, (seconds, box)


def test_default_view_has_mostly_valid_depth_and_varies_over_time():
    camera = SyntheticDepthCamera(threads=2)
    first, later = camera.render(0.0), camera.render(5.0)
    assert (first.depth_mm > 0).mean() > 0.8
    assert first.rgb.shape == (480, 640, 3)
    assert not np.array_equal(first.depth_mm, later.depth_mm)


def test_outputs_can_be_preallocated_and_are_validated():
    camera = SyntheticDepthCamera(32, 24)
    depth, rgb = np.empty((24, 32), np.uint16), np.empty((24, 32, 3), np.uint8)
    frame = camera.render(1.0, depth_out=depth, rgb_out=rgb)
    assert frame.depth_mm is depth and frame.rgb is rgb
    with pytest.raises(ValueError, match='depth_out'):
        camera.render(depth_out=np.empty((24, 32), np.float32))


def test_intrinsics_for_camera_info():
    camera = SyntheticDepthCamera(640, 480)
    k = camera.intrinsics.camera_matrix()
    assert k[0] == k[4] == pytest.approx(0.82 * 640) and k[2] == 319.5 and k[5] == 239.5
    p = camera.intrinsics.projection_matrix()
    assert p[0] == k[0] and len(p) == 12


@pytest.mark.parametrize('kwargs', [{'width': 0}, {'max_depth': 70.0}, {'threads': 0},
                                    {'focal': -1.0}])
def test_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        SyntheticDepthCamera(**kwargs)


def test_unregistered_rig_extrinsic_is_rigid_and_the_inverse_of_the_colour_pose():
    to_color = validated_transform(depth_to_color_transform(), tolerance=1e-12)
    np.testing.assert_allclose(to_color @ depth_from_color_transform(), np.eye(4), atol=1e-12)
    # the colour camera's centre, in the depth frame, is COLOR_OFFSET (25 mm to the right)
    np.testing.assert_allclose(depth_from_color_transform()[:3, 3], COLOR_OFFSET)
    np.testing.assert_allclose(to_color @ (*COLOR_OFFSET, 1.0), (0, 0, 0, 1), atol=1e-12)
    assert color_camera_size(640) == (640, 360)


def test_unregistered_rig_renders_colour_from_its_own_pose_and_intrinsics():
    rig = UnregisteredCamera(160, 120, color_size=(200, 100), color_focal=90.0)
    depth, color = rig.render(6.0)
    assert depth.rgb is None and depth.depth_mm.shape == (120, 160)
    assert color.rgb.shape == (100, 200, 3) and color.depth_mm.shape == (100, 200)
    assert rig.color_intrinsics == (90.0, 90.0, 99.5, 49.5)
    np.testing.assert_allclose(depth.world_from_optical, camera_pose(6.0))
    np.testing.assert_allclose(color.world_from_optical @ depth_to_color_transform(),
                               camera_pose(6.0), atol=1e-12)
    alone = SyntheticDepthCamera(200, 100, focal=90.0).render(pose=color.world_from_optical)
    np.testing.assert_array_equal(color.depth_mm, alone.depth_mm)
    np.testing.assert_array_equal(color.rgb, alone.rgb)
    assert not np.array_equal(  # another view than the depth camera's
        color.depth_mm, SyntheticDepthCamera(200, 100, focal=90.0).render(6.0).depth_mm)
    assert UnregisteredCamera(64, 48).color.fx == pytest.approx(0.72 * 64)
