"""Ray tables (pointcloud_pipeline.rays) and depth_to_cloud with them: a synthetic distorted camera
whose answers are known independently of the code (OpenCV's forward projection), the radial range
of a known plane, equality with the pinhole path, the cache, and every rejection."""
import math

import cv2
import numpy as np
import pytest

from pointcloud_pipeline.camera import CameraIntrinsics
from pointcloud_pipeline.depth import depth_to_cloud
from pointcloud_pipeline.rays import (DEPTH_KINDS, DISTORTION_MODELS, RayTable,
                                      needs_ray_table, ray_table)
from reference_depth import reference_points

K = CameraIntrinsics(520.0, 515.0, 318.7, 243.2)
WIDTH, HEIGHT = 640, 480
# Realistic lenses: a wide-angle plumb_bob, an Azure-Kinect-like rational polynomial, a fisheye.
LENSES = {
    'plumb_bob': (-0.28, 0.09, 0.0012, -0.0008, -0.015),
    'rational_polynomial': (0.45, -2.5, 0.001, 0.0005, 1.4, 0.33, -2.3, 1.3),
    'equidistant': (-0.04, 0.012, -0.003, 0.0004),
}
SEVEN_SCENES_K = CameraIntrinsics(585.0, 585.0, 320.0, 240.0)


def camera_matrix(intrinsics):
    return np.array(intrinsics.camera_matrix(), np.float64).reshape(3, 3)


def project(points, model, distortion, intrinsics=K):
    """OpenCV's forward model: (..., 3) camera-frame points -> (..., 2) distorted pixels."""
    flat = np.asarray(points, np.float64).reshape(-1, 1, 3)
    zero = np.zeros(3)
    if model == 'equidistant':
        pixels, _ = cv2.fisheye.projectPoints(flat, zero, zero, camera_matrix(intrinsics),
                                              np.array(distortion))
    else:
        pixels, _ = cv2.projectPoints(flat, zero, zero, camera_matrix(intrinsics),
                                      np.array(distortion))
    return pixels.reshape(points.shape[:-1] + (2,))


def pixel_centres(width, height, dx=1, dy=1):
    v, u = np.mgrid[0:height:dy, 0:width:dx].astype(np.float64)
    return np.stack([u, v], axis=-1)


@pytest.fixture(scope='module')
def seven_scenes_depth(shared_data):
    path = shared_data / 'rgbd' / '7scenes_tsdf_fusion' / 'frame-000010.depth.png'
    depth = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert depth.shape == (HEIGHT, WIDTH) and depth.dtype == np.uint16
    return depth


# --- the synthetic distorted camera ----------------------------------------------------------

@pytest.mark.parametrize('model', DISTORTION_MODELS)
@pytest.mark.parametrize('depth_kind', DEPTH_KINDS)
@pytest.mark.parametrize('dx,dy', [(1, 1), (3, 2)])
def test_rays_reproject_onto_their_pixel_centres(model, depth_kind, dx, dy):
    table = ray_table(K, WIDTH, HEIGHT, depth_kind=depth_kind, rectified=False,
                      distortion_model=model, distortion=LENSES[model], decimation_x=dx,
                      decimation_y=dy)
    rays = table.rays
    assert rays.shape == (-(-HEIGHT // dy), -(-WIDTH // dx), 3) and rays.dtype == np.float32
    assert rays.flags.c_contiguous and not rays.flags.writeable
    error = np.abs(project(rays, model, LENSES[model]) - pixel_centres(WIDTH, HEIGHT, dx, dy))
    assert error.max() < 1e-3, error.max()
    if depth_kind == 'z':
        assert (rays[..., 2] == 1).all()
    else:
        np.testing.assert_allclose(np.linalg.norm(rays.astype(np.float64), axis=-1), 1.0,
                                   atol=2e-7)
    # the lens really distorts: the corner ray is far from the pinhole one
    pinhole = ((0 - K.cx) / K.fx, (0 - K.cy) / K.fy)
    corner = rays[0, 0, :2] / rays[0, 0, 2]
    assert np.abs(corner - pinhole).max() > 0.01


@pytest.mark.parametrize('model', DISTORTION_MODELS)
@pytest.mark.parametrize('depth_kind', DEPTH_KINDS)
def test_points_project_onto_their_pixels_at_their_depth(seven_scenes_depth, model, depth_kind):
    """A point is fixed by two facts the test checks without the code: it projects (OpenCV's
    forward model) onto its pixel centre, and its z (z-depth) or its distance (radial) is the
    pixel's value."""
    depth = seven_scenes_depth
    table = ray_table(K, WIDTH, HEIGHT, depth_kind=depth_kind, rectified=False,
                      distortion_model=model, distortion=LENSES[model])
    cloud = depth_to_cloud(depth, K, rays=table)
    xyz = cloud.xyz().astype(np.float64)
    valid = depth != 0
    np.testing.assert_array_equal(np.isnan(xyz[..., 2]), ~valid)
    metres = depth.astype(np.float64) / 1000
    measured = xyz[..., 2] if depth_kind == 'z' else np.linalg.norm(xyz, axis=-1)
    np.testing.assert_allclose(measured[valid], metres[valid], rtol=3e-7)
    error = np.abs(project(xyz[valid], model, LENSES[model]) - pixel_centres(WIDTH, HEIGHT)[valid])
    assert error.max() < 1e-3, error.max()
    assert_matches_reference(cloud, reference_points(depth, K, rays=table.rays))


@pytest.mark.parametrize('model', DISTORTION_MODELS)
def test_plane_seen_through_a_distorted_lens(model):
    """The plane z = 1.7 m fills a distorted camera's view: its z-depth image is 1.7 everywhere
    (whatever the lens), and every point lies on the plane at its pixel's true ray."""
    depth = np.full((HEIGHT, WIDTH), 1.7, np.float32)
    table = ray_table(K, WIDTH, HEIGHT, rectified=False, distortion_model=model,
                      distortion=LENSES[model])
    xyz = depth_to_cloud(depth, K, rays=table).xyz()
    assert (xyz[..., 2] == np.float32(1.7)).all()
    error = np.abs(project(xyz, model, LENSES[model]) - pixel_centres(WIDTH, HEIGHT))
    assert error.max() < 1e-3
    # the same plane as range: a sphere would be constant range; the plane's range grows off axis
    ranges = np.linalg.norm(xyz.astype(np.float64), axis=-1).astype(np.float32)
    radial = ray_table(K, WIDTH, HEIGHT, depth_kind='radial', rectified=False,
                       distortion_model=model, distortion=LENSES[model])
    again = depth_to_cloud(ranges, K, rays=radial).xyz()
    np.testing.assert_allclose(again[..., 2], 1.7, rtol=5e-7)


def test_radial_range_of_a_known_plane():
    """Pinhole camera, plane z = Z0: range(u, v) = Z0 sqrt(1 + x'^2 + y'^2) with x' = (u - cx) /
    fx, y' = (v - cy) / fy; fed as radial depth it gives z == Z0 and x = x' Z0, y = y' Z0."""
    z0 = 2.25
    uv = pixel_centres(WIDTH, HEIGHT)
    x_n, y_n = (uv[..., 0] - K.cx) / K.fx, (uv[..., 1] - K.cy) / K.fy
    ranges = (z0 * np.sqrt(1 + x_n ** 2 + y_n ** 2)).astype(np.float32)
    assert ranges.max() > 1.1 * z0  # the corners are well off axis
    for rectified, extra in ((True, {}), (False, dict(distortion=(0, 0, 0, 0, 0)))):
        table = ray_table(K, WIDTH, HEIGHT, depth_kind='radial', rectified=rectified, **extra)
        xyz = depth_to_cloud(ranges, K, rays=table).xyz().astype(np.float64)
        np.testing.assert_allclose(xyz[..., 2], z0, rtol=4e-7)
        np.testing.assert_allclose(xyz[..., 0], x_n * z0, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(xyz[..., 1], y_n * z0, rtol=1e-6, atol=1e-6)
    # as millimetres in uint16 (rounded to 1 mm of range): z within 1 mm
    millimetres = np.round(ranges.astype(np.float64) * 1000).astype(np.uint16)
    table = ray_table(K, WIDTH, HEIGHT, depth_kind='radial')
    z = depth_to_cloud(millimetres, K, rays=table).xyz()[..., 2]
    assert np.abs(z - z0).max() < 0.6e-3


# --- the pinhole path ------------------------------------------------------------------------

@pytest.mark.parametrize('organized', [True, False])
def test_rectified_z_table_gives_the_pinhole_bytes(seven_scenes_depth, organized):
    depth = seven_scenes_depth
    assert not needs_ray_table('z', True)
    for dx, dy in ((1, 1), (2, 3)):
        table = ray_table(SEVEN_SCENES_K, WIDTH, HEIGHT, decimation_x=dx, decimation_y=dy)
        kwargs = dict(decimation_x=dx, decimation_y=dy, organized=organized, invalid_depth=3.0)
        np.testing.assert_array_equal(
            depth_to_cloud(depth, SEVEN_SCENES_K, rays=table, **kwargs).data,
            depth_to_cloud(depth, SEVEN_SCENES_K, **kwargs).data)


@pytest.mark.parametrize('model,zeros', [('plumb_bob', 5), ('rational_polynomial', 8),
                                         ('', 0), ('none', 0), ('none', 5)])
def test_zero_distortion_equals_the_pinhole_path(seven_scenes_depth, model, zeros):
    """Unrectified with D = 0 vs no table: OpenCV computes x' = (u - cx) * (1 / fx) where the
    pinhole path rounds (u - cx) / fx: the points agree within 2 float32 ulps (rtol 2.4e-7)."""
    depth = seven_scenes_depth
    table = ray_table(SEVEN_SCENES_K, WIDTH, HEIGHT, rectified=False, distortion_model=model,
                      distortion=(0.0,) * zeros)
    cloud = depth_to_cloud(depth, SEVEN_SCENES_K, rays=table).xyz()
    pinhole = depth_to_cloud(depth, SEVEN_SCENES_K).xyz()
    np.testing.assert_array_equal(np.isnan(cloud), np.isnan(pinhole))
    np.testing.assert_allclose(cloud, pinhole, rtol=2.4e-7, atol=1e-12)


def test_equidistant_without_coefficients_is_the_equidistant_projection():
    """The fisheye model with k = 0 is not the pinhole: a pixel at normalized distance rho from
    the principal point sees the ray at theta = rho from the optical axis (r = f theta)."""
    table = ray_table(K, WIDTH, HEIGHT, depth_kind='radial', rectified=False,
                      distortion_model='equidistant', distortion=(0, 0, 0, 0))
    uv = pixel_centres(WIDTH, HEIGHT)
    rho = np.hypot((uv[..., 0] - K.cx) / K.fx, (uv[..., 1] - K.cy) / K.fy)
    rays = table.rays.astype(np.float64)
    theta = np.arctan2(np.hypot(rays[..., 0], rays[..., 1]), rays[..., 2])
    np.testing.assert_allclose(theta, rho, rtol=1e-6, atol=1e-7)
    assert rho.max() > 0.7  # far enough off axis that tan(rho) and rho differ by ~30 %


def test_needs_ray_table():
    assert [needs_ray_table(kind, rectified) for kind in DEPTH_KINDS
            for rectified in (True, False)] == [False, True, True, True]
    with pytest.raises(ValueError, match="depth_kind must be one of 'z', 'radial', got 'range'"):
        needs_ray_table('range', True)


# --- options, threads, decimation with a table -----------------------------------------------

@pytest.mark.parametrize('organized', [True, False])
def test_options_and_threads_with_a_table(seven_scenes_depth, organized):
    depth = np.tile(seven_scenes_depth, (2, 2))
    color = np.random.default_rng(4).integers(0, 256, depth.shape + (3,), dtype=np.uint8)
    intensity = (depth // 7).astype(np.uint16)
    for dx, dy in ((1, 1), (3, 2)):
        table = ray_table(K, 2 * WIDTH, 2 * HEIGHT, depth_kind='radial', rectified=False,
                          distortion_model='plumb_bob', distortion=LENSES['plumb_bob'],
                          decimation_x=dx, decimation_y=dy)
        for extra in ({}, dict(color=color), dict(intensity=intensity),
                      dict(color=color, intensity=intensity)):
            kwargs = dict(decimation_x=dx, decimation_y=dy, organized=organized, min_range=1.0,
                          max_range=3.0, invalid_depth=4.0)
            results = [depth_to_cloud(depth, K, rays=table, threads=threads, **kwargs, **extra)
                       for threads in (1, 2, 3, 0)]
            for cloud in results[1:]:
                np.testing.assert_array_equal(cloud.data, results[0].data)
            expected = reference_points(depth, K, rays=table.rays, rgb=extra.get('color'),
                                        intensity=extra.get('intensity'), **kwargs)
            assert_matches_reference(results[0], expected)


def test_range_limits_and_fill_apply_to_the_range(seven_scenes_depth):
    depth = seven_scenes_depth
    table = ray_table(K, WIDTH, HEIGHT, depth_kind='radial', rectified=False,
                      distortion_model='equidistant', distortion=LENSES['equidistant'])
    xyz = depth_to_cloud(depth, K, rays=table, min_range=1.0, max_range=2.5,
                         invalid_depth=5.0).xyz().astype(np.float64)
    ranges = np.linalg.norm(xyz, axis=-1)
    holes = depth == 0
    kept = ~holes & (depth >= 1000) & (depth <= 2500)
    np.testing.assert_allclose(ranges[holes], 5.0, rtol=3e-7)  # filled along the ray
    np.testing.assert_array_equal(np.isnan(ranges), ~holes & ~kept)
    assert (ranges[kept] >= 1.0 - 1e-6).all() and (ranges[kept] <= 2.5 + 1e-6).all()


def test_decimated_table_samples_the_full_one():
    for kind in DEPTH_KINDS:
        full = ray_table(K, WIDTH, HEIGHT, depth_kind=kind, rectified=False,
                         distortion_model='rational_polynomial',
                         distortion=LENSES['rational_polynomial'])
        for dx, dy in ((2, 2), (5, 3), (640, 480), (1000, 1000)):
            sampled = ray_table(K, WIDTH, HEIGHT, depth_kind=kind, rectified=False,
                                distortion_model='rational_polynomial',
                                distortion=LENSES['rational_polynomial'], decimation_x=dx,
                                decimation_y=dy)
            np.testing.assert_allclose(sampled.rays, full.rays[::dy, ::dx], rtol=0, atol=1e-7)


# --- the cache and the table object ----------------------------------------------------------

def test_same_arguments_give_the_same_table():
    arguments = dict(depth_kind='radial', rectified=False, distortion_model='plumb_bob',
                     distortion=list(LENSES['plumb_bob']))
    first = ray_table(K, WIDTH, HEIGHT, **arguments)
    assert ray_table(K, WIDTH, HEIGHT, **arguments) is first
    assert ray_table(tuple(K), WIDTH, HEIGHT, **dict(
        arguments, distortion=np.array(LENSES['plumb_bob']))) is first
    changed = [ray_table(K, WIDTH, HEIGHT, **dict(arguments, distortion=(-0.27, 0.09, 0.0012,
                                                                         -0.0008, -0.015))),
               ray_table(K._replace(fx=521.0), WIDTH, HEIGHT, **arguments),
               ray_table(K, WIDTH, HEIGHT - 2, **arguments),
               ray_table(K, WIDTH, HEIGHT, **dict(arguments, depth_kind='z')),
               ray_table(K, WIDTH, HEIGHT, **arguments, decimation_x=2)]
    assert all(table is not first for table in changed)
    assert len({id(table) for table in changed}) == len(changed)
    assert first != changed[0] and first == first and hash(first) == hash(first)
    # rectified tables ignore D: one table whatever the distortion
    assert ray_table(K, WIDTH, HEIGHT, distortion=(1, 2, 3, 4, 5)) is ray_table(K, WIDTH, HEIGHT)
    with pytest.raises(ValueError, match='read-only'):
        first.rays[0, 0, 0] = 1.0


def test_a_table_built_by_hand():
    rays = np.zeros((2, 3, 3), np.float32)
    rays[..., 2] = 1.0
    table = RayTable(rays, 3, 2)
    assert table.rays is not rays and not table.rays.flags.writeable  # private read-only copy
    rays[..., 2] = -1.0  # the caller's array no longer matters
    cloud = depth_to_cloud(np.full((2, 3), 2000, np.uint16), K, rays=table)
    np.testing.assert_array_equal(cloud.xyz(), np.array([[[0, 0, 2]] * 3] * 2, np.float32))
    for bad, message in (
            (dict(rays=np.ones((2, 3, 3), np.float64)), 'rays must be float32, got float64'),
            (dict(rays=np.ones((3, 2, 3), np.float32)), r'rays shape \(3, 2, 3\) does not fit '
                                                       r'a 3x2 image at decimation 1x1'),
            (dict(rays=np.full((2, 3, 3), np.nan, np.float32)), 'rays must all be finite'),
            (dict(rays=np.zeros((2, 3, 3), np.float32)), 'z > 0'),
            (dict(rays=[[0.0, 0.0, 1.0]]), 'rays must be a numpy array'),
            (dict(depth_kind='range'), 'depth_kind must be one of'),
            (dict(width=0), 'width must be a positive integer, got 0')):
        arguments = dict(rays=np.ones((2, 3, 3), np.float32), width=3, height=2)
        arguments.update(bad)
        with pytest.raises(ValueError, match=message):
            RayTable(**arguments)


# --- rejections -------------------------------------------------------------------------------

@pytest.mark.parametrize('kwargs,message', [
    (dict(distortion_model='fisheye'), "distortion_model must be one of 'plumb_bob', "
                                       "'rational_polynomial', 'equidistant', '', 'none', "
                                       "got 'fisheye'"),
    (dict(distortion=(0.1, 0.0, 0.0, 0.0)), "'plumb_bob' needs 5 distortion coefficients, got 4"),
    (dict(distortion=(0.1,) * 14, distortion_model='rational_polynomial'),
     "'rational_polynomial' needs 8 distortion coefficients, got 14"),
    (dict(distortion=(0.1,) * 5, distortion_model='equidistant'),
     "'equidistant' needs 4 distortion coefficients, got 5"),
    (dict(distortion=(0.1, math.nan, 0, 0, 0)), 'distortion must be finite'),
    (dict(distortion=('a',) * 5), 'distortion is not numeric'),
    (dict(distortion=(0.1, 0, 0, 0, 0), distortion_model='none'),
     "'none' \\(no distortion\\) needs an empty or all-zero distortion"),
    (dict(distortion_model=None), 'distortion_model must be a string'),
    (dict(depth_kind='Z'), "depth_kind must be one of 'z', 'radial', got 'Z'"),
    (dict(rectified='no'), "rectified must be True or False, got 'no'"),
    (dict(width=0), 'width must be a positive integer, got 0'),
    (dict(height=2.5), 'height must be a positive integer, got 2.5'),
    (dict(decimation_x=0), 'decimation_x must be a positive integer, got 0'),
    (dict(intrinsics=(520.0, 515.0, 318.7)), 'intrinsics must be CameraIntrinsics'),
    (dict(intrinsics=CameraIntrinsics(0.0, 515.0, 318.7, 243.2)), 'fx must be finite and > 0'),
])
def test_bad_table_arguments_say_what_is_wrong(kwargs, message):
    arguments = dict(intrinsics=K, width=WIDTH, height=HEIGHT, rectified=False,
                     distortion=LENSES['plumb_bob'])
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        ray_table(arguments.pop('intrinsics'), arguments.pop('width'), arguments.pop('height'),
                  **arguments)


def test_a_table_that_does_not_fit_the_call_is_rejected():
    depth = np.full((48, 64), 1000, np.uint16)
    table = ray_table(K, 64, 48, decimation_x=2)
    for kwargs, message in (
            (dict(rays=ray_table(K, 64, 47)), 'ray table is for a 64x47 image, the depth image '
                                              'is 64x48'),
            (dict(rays=table), 'ray table is for decimation 2x1, the call uses 1x1'),
            (dict(rays=table, decimation_x=2, decimation_y=2),
             'ray table is for decimation 2x1, the call uses 2x2'),
            (dict(rays=table.rays, decimation_x=2), 'rays must be a rays.RayTable'),
            (dict(rays=ray_table(K, 64, 48), intrinsics=CameraIntrinsics(-1.0, 1.0, 0, 0)),
             'fx must be finite and > 0')):
        intrinsics = kwargs.pop('intrinsics', K)
        for organized in (True, False):
            with pytest.raises(ValueError, match=message):
                depth_to_cloud(depth, intrinsics, organized=organized, **kwargs)
    # decimation beyond the image: the same single column either way
    wide = ray_table(K, 64, 48, decimation_x=1000)
    cloud = depth_to_cloud(depth, K, rays=wide, decimation_x=64)
    assert (cloud.height, cloud.width) == (48, 1)


def assert_matches_reference(cloud, expected):
    """The kernel's points are the reference's float32 products, bit for bit."""
    points = cloud.data.view(np.float32).reshape(expected.shape)
    np.testing.assert_array_equal(points.view(np.uint32), expected.view(np.uint32))


def test_an_empty_d_means_no_distortion_for_any_model():
    """image_geometry reads an empty D as no distortion (simulated cameras publish that)."""
    intrinsics = CameraIntrinsics(500.0, 480.0, 320.0, 240.0)
    pinhole = ray_table(intrinsics, 64, 48, rectified=True).rays
    for model in DISTORTION_MODELS:
        table = ray_table(intrinsics, 64, 48, rectified=False, distortion_model=model,
                          distortion=())
        np.testing.assert_allclose(table.rays, pinhole, rtol=1e-6, atol=1e-7)
