"""Depth registration (register.register_depth) against known answers: the synthetic room
rendered by a depth camera and by a separate colour camera, a numpy reference, z-buffered
occlusion, upsampling holes, thread counts and argument errors."""
import math

import numpy as np
import pytest
from scipy import ndimage

from gil_probe import gil_probe
from pointcloud_pipeline.camera import CameraIntrinsics
from pointcloud_pipeline.demo.synthetic import (Box, Scene, SyntheticDepthCamera,
                                                UnregisteredCamera, depth_to_color_transform)
from pointcloud_pipeline.register import register_depth, transform_from_translation_rotation
from pointcloud_pipeline.transforms import camera_mount_transform, rotation_from_rpy

SEVEN_SCENES_K = CameraIntrinsics(585.0, 585.0, 320.0, 240.0)
EMPTY_U16 = 0xFFFF


def reference_register(depth, depth_k, color_k, color_size, depth_to_color, depth_scale=0.001,
                       fill_upsampling_holes=False):
    """numpy reference of :func:`register_depth`: the same formulas in float64, the same
    operation order as the kernel (so the same roundings: ``p_color = (R[:, 0] xc + (R[:, 1]
    yc + R[:, 2])) z + t`` with the ray ``xc = (u - cx) / fx``, ``yc = (v - cy) / fy``, which
    is ``R p_depth + t``), z-buffer by ``np.minimum.at``."""
    width, height = color_size
    is_float = depth.dtype == np.float32
    v, u = np.mgrid[0:depth.shape[0], 0:depth.shape[1]].astype(np.float64)
    if is_float:
        z = depth.astype(np.float64)
        valid = (z > 0) & (z <= np.finfo(np.float32).max)
    else:
        z = depth.astype(np.float64) * depth_scale
        valid = depth != 0
    u, v, z = u[valid], v[valid], z[valid]
    r, t = np.asarray(depth_to_color)[:3, :3], np.asarray(depth_to_color)[:3, 3]

    def project(pu, pv):
        xc = (pu - depth_k.cx) * (1.0 / depth_k.fx)  # X / z and Y / z of the pixel's ray
        yc = (pv - depth_k.cy) * (1.0 / depth_k.fy)
        cx_ = (r[0, 0] * xc + (r[0, 1] * yc + r[0, 2])) * z + t[0]
        cy_ = (r[1, 0] * xc + (r[1, 1] * yc + r[1, 2])) * z + t[1]
        cz = (r[2, 0] * xc + (r[2, 1] * yc + r[2, 2])) * z + t[2]
        with np.errstate(divide='ignore', invalid='ignore'):
            inverse = 1.0 / cz
        return color_k.fx * cx_ * inverse + color_k.cx, color_k.fy * cy_ * inverse + color_k.cy, cz

    col, row, cz = project(u, v)
    if is_float:
        values = cz.astype(np.float32)
        keep = (cz > 0) & (values <= np.finfo(np.float32).max)
        keys = values.view(np.uint32)
        empty = 0x7FC00000
    else:
        units = cz * (1.0 / depth_scale) + 0.5
        keep = (cz > 0) & (units >= 1.0) & (units < EMPTY_U16)
        keys = np.floor(np.where(keep, units, 0)).astype(np.uint32)
        empty = EMPTY_U16
    image = np.full(height * width, empty, np.uint32)
    if not fill_upsampling_holes:
        col, row = np.floor(col + 0.5), np.floor(row + 0.5)
        keep &= (col >= 0) & (col < width) & (row >= 0) & (row < height)
        np.minimum.at(image, (row[keep] * width + col[keep]).astype(np.int64), keys[keep])
    else:
        corners = [project(u + du, v + dv) for dv in (-0.5, 0.5) for du in (-0.5, 0.5)]
        for _, _, corner_z in corners:
            keep &= corner_z > 0
        lo_u = np.floor(np.min([c[0] for c in corners], axis=0) + 0.5)
        hi_u = np.floor(np.max([c[0] for c in corners], axis=0) + 0.5)
        lo_v = np.floor(np.min([c[1] for c in corners], axis=0) + 0.5)
        hi_v = np.floor(np.max([c[1] for c in corners], axis=0) + 0.5)
        keep &= (hi_u >= 0) & (lo_u < width) & (hi_v >= 0) & (lo_v < height)
        lo_u, hi_u = np.clip(lo_u, 0, width - 1), np.clip(hi_u, 0, width - 1)
        lo_v, hi_v = np.clip(lo_v, 0, height - 1), np.clip(hi_v, 0, height - 1)
        spans = ((hi_u - lo_u)[keep].max(initial=0), (hi_v - lo_v)[keep].max(initial=0))
        for dv in range(int(spans[1]) + 1):
            for du in range(int(spans[0]) + 1):
                inside = keep & (lo_u + du <= hi_u) & (lo_v + dv <= hi_v)
                index = ((lo_v + dv) * width + lo_u + du)[inside].astype(np.int64)
                np.minimum.at(image, index, keys[inside])
    image = image.reshape(height, width)
    if is_float:
        return image.view(np.float32)
    return np.where(image == EMPTY_U16, 0, image).astype(np.uint16)


def compare_with_truth(registered, truth_mm, gradient_share=0.5, window=3):
    """(fraction of colour pixels compared, largest error / tolerance) against the colour
    camera's own depth image, on smooth pixels (the 3x3 depth range <= 2 % of the depth: away
    from depth edges) that received a value.

    Tolerance: 2 mm (the input's, the output's and the truth's millimetre rounding, each
    <= 0.5 mm, the input's moved by the small rotation) + ``gradient_share`` x the 3x3 depth
    range (the registered value is the z of a depth pixel that lands within half a pixel of
    the colour pixel's centre, not exactly on it; with hole filling within a whole pixel).
    ``window``: the neighbourhood's side (5 with hole filling at 2x: a depth pixel's footprint
    reaches up to 2 colour pixels past its centre).
    """
    truth = truth_mm.astype(np.float64)
    low, high = ndimage.minimum_filter(truth, window), ndimage.maximum_filter(truth, window)
    spread = high - low
    compared = (low > 0) & (spread <= 0.02 * truth) & (registered > 0)
    error = np.abs(registered.astype(np.float64) - truth)
    tolerance = 2.0 + gradient_share * spread
    return compared.mean(), float((error / tolerance)[compared].max())


@pytest.mark.parametrize('seconds', [0.0, 7.5, 21.0])
def test_registered_depth_is_the_colour_cameras_own_depth(seconds):
    rig = UnregisteredCamera(640, 480)
    depth, color = rig.render(seconds)
    registered = register_depth(depth.depth_mm, rig.depth_intrinsics, rig.color_intrinsics,
                                (rig.color.width, rig.color.height), depth_to_color_transform())
    assert registered.dtype == np.uint16 and registered.shape == (360, 640)
    fraction, worst = compare_with_truth(registered, color.depth_mm)
    print(f'{seconds} s: {fraction:.1%} of the colour pixels compared, worst error '
          f'{worst:.2f} x tolerance')
    assert fraction > 0.75  # the colour camera sees wider than the depth camera: edges empty
    assert worst <= 1.0


def test_float_metres_register_like_millimetres():
    rig = UnregisteredCamera(320, 240)
    depth, color = rig.render(3.0)
    metres = np.where(depth.depth_mm > 0, depth.depth_mm * 0.001, np.nan).astype(np.float32)
    size = (rig.color.width, rig.color.height)
    from_float = register_depth(metres, rig.depth_intrinsics, rig.color_intrinsics, size,
                                depth_to_color_transform())
    from_mm = register_depth(depth.depth_mm, rig.depth_intrinsics, rig.color_intrinsics, size,
                             depth_to_color_transform())
    assert from_float.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(from_float), from_mm == 0)
    np.testing.assert_allclose(from_float[from_mm > 0] * 1000.0, from_mm[from_mm > 0], atol=0.5)
    fraction, worst = compare_with_truth(np.nan_to_num(from_float) * 1000.0, color.depth_mm)
    assert fraction > 0.5 and worst <= 1.0  # 320x180 colour: fewer smooth 3x3 neighbourhoods


def test_the_nearest_surface_wins():
    # a box 1.5 m ahead in front of the wall 4 m ahead; the colour camera 0.2 m to the right
    # sees wall points the depth camera saw beside the box land on the box
    scene = Scene(boxes=(Box((2.5, -0.3, 0.0), (3.0, 0.3, 2.0), (255, 0, 0)),))
    depth_camera = SyntheticDepthCamera(160, 120, scene=scene, with_color=False)
    color_camera = SyntheticDepthCamera(160, 120, scene=scene, with_color=False)
    depth_from_color = np.eye(4)
    depth_from_color[0, 3] = 0.2
    pose = camera_mount_transform(height=1.0, x=1.0)
    depth = depth_camera.render(pose=pose).depth_mm
    truth = color_camera.render(pose=pose @ depth_from_color).depth_mm
    to_color = np.linalg.inv(depth_from_color)
    registered = register_depth(depth, depth_camera.intrinsics, color_camera.intrinsics,
                                (160, 120), to_color)
    on_box = ndimage.binary_erosion((truth > 0) & (truth < 1600), iterations=1)  # not edges
    # the same scatter keeping the FARTHEST point: wall depths on the box's pixels
    v, u = np.nonzero(depth)
    z = depth[v, u] * 0.001
    x = (u - depth_camera.cx) * z / depth_camera.fx - 0.2
    y = (v - depth_camera.cy) * z / depth_camera.fy
    cols = np.floor(color_camera.fx * x / z + color_camera.cx + 0.5).astype(int)
    rows = np.floor(color_camera.fy * y / z + color_camera.cy + 0.5).astype(int)
    inside = (cols >= 0) & (cols < 160) & (rows >= 0) & (rows < 120)
    farthest = np.zeros((120, 160), np.int64)
    np.maximum.at(farthest, (rows[inside], cols[inside]), depth[v, u][inside])
    contested = on_box & (farthest > 3000)
    assert contested.sum() > 50  # wall points do land on the box
    assert (registered[contested] < 1600).all()
    assert np.abs(registered[on_box & (registered > 0)].astype(int)
                  - truth[on_box & (registered > 0)]).max() <= 2


def test_fill_upsampling_holes_fills_a_higher_resolution_colour_image():
    rig = UnregisteredCamera(320, 240, color_size=(640, 360))
    depth, color = rig.render(12.0)
    size = (640, 360)
    plain = register_depth(depth.depth_mm, rig.depth_intrinsics, rig.color_intrinsics, size,
                           depth_to_color_transform())
    filled = register_depth(depth.depth_mm, rig.depth_intrinsics, rig.color_intrinsics, size,
                            depth_to_color_transform(), fill_upsampling_holes=True)
    # where the depth camera sees (the colour pixels inside the projected depth image)
    footprint = ndimage.binary_closing(plain > 0, iterations=2)
    footprint = ndimage.binary_erosion(footprint, iterations=3)
    print(f'holes inside the footprint: {np.mean(plain[footprint] == 0):.1%} without filling, '
          f'{np.mean(filled[footprint] == 0):.2%} with')
    assert np.mean(plain[footprint] == 0) > 0.5  # ~2x upsampling: most pixels get nothing
    assert np.mean(filled[footprint] == 0) < 0.001
    fraction, worst = compare_with_truth(filled, color.depth_mm, gradient_share=1.0, window=5)
    assert fraction > 0.5 and worst <= 1.0
    # a filled pixel never differs from where a centre landed
    landed = plain > 0
    assert (filled[landed] <= plain[landed]).all()


@pytest.mark.parametrize('fill', [False, True])
@pytest.mark.parametrize('as_float', [False, True])
def test_equal_to_the_numpy_reference(fill, as_float):
    rig = UnregisteredCamera(320, 240, color_size=(400, 300))
    depth = rig.render(5.0)[0].depth_mm
    if as_float:
        depth = np.where(depth > 0, depth * 0.001, np.nan).astype(np.float32)
        depth[::7, ::5] = -1.0  # invalid readings of every kind
        depth[3, :] = np.inf
    args = (depth, rig.depth_intrinsics, rig.color_intrinsics, (400, 300),
            depth_to_color_transform())
    result = register_depth(*args, fill_upsampling_holes=fill)
    expected = reference_register(*args, fill_upsampling_holes=fill)
    assert result.tobytes() == expected.tobytes()


def test_real_frame_matches_the_reference_with_a_turned_camera(seven_scenes_frame):
    depth, _ = seven_scenes_frame
    transform = np.eye(4)
    transform[:3, :3] = rotation_from_rpy(0.05, -0.03, 0.02)
    transform[:3, 3] = (-0.05, 0.01, 0.02)
    color_k = CameraIntrinsics(1000.0, 1000.0, 639.5, 359.5)
    for fill in (False, True):
        result = register_depth(depth, SEVEN_SCENES_K, color_k, (1280, 720), transform,
                                fill_upsampling_holes=fill)
        expected = reference_register(depth, SEVEN_SCENES_K, color_k, (1280, 720), transform,
                                      fill_upsampling_holes=fill)
        assert result.tobytes() == expected.tobytes()
        assert (result > 0).mean() > (0.5 if fill else 0.15)


@pytest.mark.parametrize('fill', [False, True])
def test_same_bytes_for_any_thread_count(fill):
    rig = UnregisteredCamera(640, 480, color_size=(960, 540))
    depth = rig.render(9.0)[0].depth_mm
    metres = np.where(depth > 0, depth * 0.001, np.nan).astype(np.float32)
    for image in (depth, metres):
        results = [register_depth(image, rig.depth_intrinsics, rig.color_intrinsics,
                                  (960, 540), depth_to_color_transform(),
                                  fill_upsampling_holes=fill, threads=threads).tobytes()
                   for threads in (1, 2, 3, 0)]
        assert results[1:] == results[:1] * 3


def test_kernel_releases_the_gil():
    """A Python thread keeps running while registrations run; a GIL-holding call stops it."""
    rig = UnregisteredCamera(640, 480, color_size=(640, 480))
    depth = rig.render(2.0)[0].depth_mm
    out = np.empty((480, 640), np.uint16)
    args = (depth, rig.depth_intrinsics, rig.color_intrinsics, (640, 480),
            depth_to_color_transform())
    with gil_probe() as ticks_during:
        held = ticks_during(lambda: sum(i * i for i in range(300_000)))  # holds the GIL
        released = ticks_during(lambda: [register_depth(*args, out=out, threads=1)
                                         for _ in range(10)])
        released_fill = ticks_during(lambda: [register_depth(
            *args, out=out, threads=1, fill_upsampling_holes=True) for _ in range(5)])
    assert held == 0
    assert released > 10 and released_fill > 5, (released, released_fill)


def test_identity_and_same_intrinsics_give_the_input_back():
    rng = np.random.default_rng(0)
    depth = rng.integers(0, 9000, (48, 64), dtype=np.uint16)
    depth[rng.random(depth.shape) < 0.1] = 0
    k = CameraIntrinsics(60.0, 58.0, 31.2, 24.7)
    np.testing.assert_array_equal(register_depth(depth, k, k, (64, 48), np.eye(4)), depth)
    flipped = depth[::-1, ::2]  # any strides
    np.testing.assert_array_equal(register_depth(flipped, k, k, (32, 48), np.eye(4)), flipped)
    np.testing.assert_array_equal(  # big-endian input
        register_depth(depth.astype('>u2'), k, k, (64, 48), np.eye(4)), depth)
    metres = np.where(depth > 0, depth * 0.001, np.nan).astype(np.float32)
    np.testing.assert_array_equal(register_depth(metres, k, k, (64, 48), np.eye(4)), metres)
    # a TUM-style scale (0.2 mm per unit) keeps its units
    np.testing.assert_array_equal(
        register_depth(depth, k, k, (64, 48), np.eye(4), depth_scale=0.0002), depth)


def test_uint16_rounds_colour_depth_to_the_nearest_unit():
    # a pure translation along z: z_color = z_depth + 0.0006 m; the pixel stays in place when
    # the principal point is the only pixel (u = cx)
    k = CameraIntrinsics(100.0, 100.0, 0.0, 0.0)
    transform = np.eye(4)
    transform[2, 3] = 0.0006
    depth = np.array([[1000]], np.uint16)
    assert register_depth(depth, k, k, (1, 1), transform)[0, 0] == 1001  # 1000.6 -> 1001
    transform[2, 3] = 0.0004
    assert register_depth(depth, k, k, (1, 1), transform)[0, 0] == 1000  # 1000.4 -> 1000
    transform[2, 3] = -1.0  # behind the colour camera
    assert register_depth(depth, k, k, (1, 1), transform)[0, 0] == 0


def test_output_buffer_is_reused():
    k = CameraIntrinsics(60.0, 60.0, 31.5, 23.5)
    depth = np.full((48, 64), 1500, np.uint16)
    out = bytearray(64 * 48 * 2 + 10)
    result = register_depth(depth, k, k, (64, 48), np.eye(4), out=out)
    assert result.shape == (48, 64) and np.shares_memory(result, np.frombuffer(out, np.uint8))
    assert bytes(out[:64 * 48 * 2]) == depth.tobytes()
    with pytest.raises(ValueError, match='too small'):
        register_depth(depth, k, k, (64, 48), np.eye(4), out=bytearray(100))
    with pytest.raises(ValueError, match='read-only'):
        register_depth(depth, k, k, (64, 48), np.eye(4), out=bytes(64 * 48 * 2))
    with pytest.raises(ValueError, match='aligned'):
        register_depth(depth.astype(np.float32), k, k, (64, 48), np.eye(4),
                       out=np.empty(64 * 48 * 4 + 4, np.uint8)[1:-3])


def test_transform_from_translation_rotation_matches_rpy():
    rotation = rotation_from_rpy(0.1, -0.2, 0.3)
    # quaternion of Rz(yaw) Ry(pitch) Rx(roll)
    cr, sr = math.cos(0.05), math.sin(0.05)
    cp, sp = math.cos(-0.1), math.sin(-0.1)
    cy, sy = math.cos(0.15), math.sin(0.15)
    quaternion = (sr * cp * cy - cr * sp * sy, cr * sp * cy + sr * cp * sy,
                  cr * cp * sy - sr * sp * cy, cr * cp * cy + sr * sp * sy)
    matrix = transform_from_translation_rotation((1.0, 2.0, 3.0), quaternion)
    np.testing.assert_allclose(matrix[:3, :3], rotation, atol=1e-12)
    np.testing.assert_allclose(matrix[:3, 3], (1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match='norm'):
        transform_from_translation_rotation((0, 0, 0), (0, 0, 0, 2))


def good_args():
    k = CameraIntrinsics(60.0, 60.0, 31.5, 23.5)
    return dict(depth=np.ones((48, 64), np.uint16), depth_intrinsics=k, color_intrinsics=k,
                color_size=(64, 48), depth_to_color=np.eye(4))


def not_rotation():
    matrix = np.eye(4)
    matrix[0, 0] = 1.1
    return matrix


@pytest.mark.parametrize('change,message', [
    ({'depth': np.ones((48, 64), np.int32)}, 'dtype'),
    ({'depth': np.ones((48, 64, 1), np.uint16)}, '2-D'),
    ({'depth': np.ones((0, 64), np.uint16)}, 'empty'),
    ({'depth': [[1, 2]]}, 'numpy array'),
    ({'depth_intrinsics': CameraIntrinsics(0.0, 60.0, 1.0, 1.0)}, 'depth_intrinsics'),
    ({'color_intrinsics': (60.0, 60.0, math.nan, 1.0)}, 'color_intrinsics'),
    ({'color_intrinsics': (60.0, 60.0)}, 'color_intrinsics'),
    ({'color_size': (0, 48)}, 'width'),
    ({'color_size': (64, 2.5)}, 'height'),
    ({'color_size': 64}, 'color_size'),
    ({'color_size': (65536, 65536)}, '32-bit'),
    ({'depth_to_color': np.full((4, 4), math.nan)}, 'NaN'),
    ({'depth_to_color': np.eye(3)}, '16 numbers'),
    ({'depth_to_color': np.diag([1.0, 1.0, 1.0, 2.0])}, 'last row'),
    ({'depth_to_color': not_rotation()}, 'orthonormal'),
    ({'depth_to_color': np.diag([1.0, 1.0, -1.0, 1.0])}, 'reflection'),
    ({'depth_scale': 0.0}, 'depth_scale'),
    ({'depth_scale': math.inf}, 'depth_scale'),
    ({'depth_scale': True}, 'depth_scale'),
    ({'threads': -1}, 'threads'),
    ({'threads': 1.5}, 'threads'),
])
def test_bad_arguments_raise_clear_errors(change, message):
    args = good_args()
    args.update(change)
    keyword = {name: args.pop(name) for name in ('depth_scale', 'threads') if name in args}
    with pytest.raises(ValueError, match=message):
        register_depth(*args.values(), **keyword)
