"""Depth image -> point cloud kernel: against the numpy reference on random and real RGB-D frames,
layouts, options, threads, buffers, the GIL, and every rejection."""
from array import array
import math
import tracemalloc

import cv2
import numpy as np
import pytest

from gil_probe import gil_probe
from pointcloud_pipeline import _depth
from pointcloud_pipeline.camera import CameraIntrinsics
from pointcloud_pipeline.depth import (Cloud, POINT_STEP, cloud_fields, depth_to_cloud,
                                       max_cloud_bytes, organized_shape)
from pointcloud_pipeline.layouts import PointFieldSpec
from pointcloud_pipeline.ros.camera_messages import image_array
from reference_depth import pack_rgb, reference_points, unpack_rgb

SEVEN_SCENES_K = CameraIntrinsics(585.0, 585.0, 320.0, 240.0)
PRIMESENSE_K = CameraIntrinsics(525.0, 525.0, 319.5, 239.5)
SEVEN_SCENES_FRAMES = ('frame-000000', 'frame-000010', 'frame-000020')


def random_depth(shape, seed=0, dtype=np.uint16, invalid_fraction=0.1):
    """Depth with smooth structure, ~invalid_fraction zeros (uint16 mm or float32 metres)."""
    rng = np.random.default_rng(seed)
    height, width = shape
    v, u = np.mgrid[0:height, 0:width]
    metres = 1.5 + 0.8 * np.sin(u / 23.0) * np.cos(v / 17.0) + rng.normal(0, 0.01, shape)
    depth = (metres * 1000).astype(np.uint16) if dtype == np.uint16 else metres.astype(dtype)
    depth[rng.random(shape) < invalid_fraction] = 0
    return depth


def points_of(cloud):
    """Cloud data as float32 (height, width, 4)."""
    return cloud.data.view(np.float32).reshape(cloud.height, cloud.width, 4)


def assert_matches_reference(cloud, expected):
    """Same NaN mask, x/y/z within 1e-6 relative, identical 4th-slot bits."""
    points = points_of(cloud).reshape(expected.shape)
    np.testing.assert_array_equal(np.isnan(points[..., :3]), np.isnan(expected[..., :3]))
    np.testing.assert_allclose(points[..., :3], expected[..., :3], rtol=1e-6, atol=0)
    np.testing.assert_array_equal(points[..., 3].view(np.uint32),
                                  expected[..., 3].view(np.uint32))


def literal_xyz(depth_m, intrinsics, decimation_x=1, decimation_y=1):
    """The spec's formulas in float64: X = (u - cx) Z / fx, Y = (v - cy) Z / fy."""
    fx, fy, cx, cy = intrinsics
    height, width = depth_m.shape
    v, u = np.mgrid[0:height:decimation_y, 0:width:decimation_x].astype(np.float64)
    z = depth_m[::decimation_y, ::decimation_x].astype(np.float64)
    return np.stack([(u - cx) * z / fx, (v - cy) * z / fy, z], axis=-1)


@pytest.fixture(scope='module')
def seven_scenes(shared_data):
    """[(name, depth uint16 mm, colour BGR)] of the real 7-Scenes frames."""
    folder = shared_data / 'rgbd' / '7scenes_tsdf_fusion'
    frames = []
    for name in SEVEN_SCENES_FRAMES:
        depth = cv2.imread(str(folder / f'{name}.depth.png'), cv2.IMREAD_UNCHANGED)
        color = cv2.imread(str(folder / f'{name}.color.jpg'), cv2.IMREAD_UNCHANGED)
        assert depth is not None and depth.dtype == np.uint16 and depth.shape == (480, 640)
        assert color is not None and color.shape == (480, 640, 3)
        frames.append((name, depth, color))
    return frames


@pytest.fixture(scope='module')
def tum(shared_data):
    folder = shared_data / 'rgbd' / 'tum_nyu_sun_open3d'
    depth = cv2.imread(str(folder / 'TUM_depth.png'), cv2.IMREAD_UNCHANGED)
    color = cv2.imread(str(folder / 'TUM_color.png'), cv2.IMREAD_UNCHANGED)
    assert depth.dtype == np.uint16 and depth.shape == (480, 640) and color.shape == (480, 640, 3)
    return depth, color


# --- against the reference: random frames -------------------------------------------------

@pytest.mark.parametrize('dtype', [np.uint16, np.float32])
@pytest.mark.parametrize('shape', [(1, 1), (3, 7), (48, 64), (121, 163)])
@pytest.mark.parametrize('organized', [True, False])
def test_random_frames_match_reference(dtype, shape, organized):
    depth = random_depth(shape, seed=shape[1], dtype=dtype)
    intrinsics = CameraIntrinsics(0.9 * shape[1], 0.85 * shape[1], shape[1] / 2 - 0.3,
                                  shape[0] / 2 + 0.7)
    cloud = depth_to_cloud(depth, intrinsics, organized=organized)
    expected = reference_points(depth, intrinsics, organized=organized)
    assert cloud.data.dtype == np.uint8 and cloud.data.ndim == 1
    assert cloud.data.nbytes == cloud.height * cloud.row_step
    assert cloud.point_step == POINT_STEP and cloud.row_step == cloud.width * POINT_STEP
    if organized:
        assert (cloud.height, cloud.width) == shape
        assert cloud.is_dense == bool(np.isfinite(expected[..., 2]).all())
    else:
        assert (cloud.height, cloud.width) == (1, len(expected)) and cloud.is_dense
    assert cloud.valid_points == int(np.isfinite(expected[..., 2]).sum())
    assert cloud.fields == cloud_fields(False)
    assert_matches_reference(cloud, expected)


def test_all_invalid_frame():
    depth = np.zeros((4, 5), np.uint16)
    cloud = depth_to_cloud(depth, SEVEN_SCENES_K)
    assert not cloud.is_dense and cloud.valid_points == 0 and np.isnan(cloud.xyz()).all()
    dense = depth_to_cloud(depth, SEVEN_SCENES_K, organized=False)
    assert (dense.width, dense.height, dense.data.nbytes, dense.is_dense) == (0, 1, 0, True)
    assert dense.xyz().shape == (1, 0, 3)


# --- against the reference and the literal formulas: real frames --------------------------

def test_seven_scenes_frames_match_reference(seven_scenes):
    for name, depth, _ in seven_scenes:
        cloud = depth_to_cloud(depth, SEVEN_SCENES_K)
        assert_matches_reference(cloud, reference_points(depth, SEVEN_SCENES_K))
        xyz = cloud.xyz()
        invalid = depth == 0
        assert 0.05 < invalid.mean() < 0.2, name  # ~10 % holes in these Kinect frames
        np.testing.assert_array_equal(np.isnan(xyz[..., 2]), invalid)
        expected = literal_xyz(depth / 1000.0, SEVEN_SCENES_K)
        np.testing.assert_allclose(xyz[~invalid], expected[~invalid], rtol=1e-6, atol=0)
        z = xyz[..., 2][~invalid]
        assert 0.5 < z.min() and z.max() < 4.0, name  # metres, as in the data set notes
        dense = depth_to_cloud(depth, SEVEN_SCENES_K, organized=False)
        np.testing.assert_array_equal(dense.xyz()[0], xyz[~invalid])


def test_tum_frame_with_its_depth_scale(tum):
    depth, _ = tum
    cloud = depth_to_cloud(depth, PRIMESENSE_K, depth_scale=1 / 5000)
    assert_matches_reference(cloud, reference_points(depth, PRIMESENSE_K, depth_scale=1 / 5000))
    valid = depth != 0
    expected = literal_xyz(depth / 5000.0, PRIMESENSE_K)
    np.testing.assert_allclose(cloud.xyz()[valid], expected[valid], rtol=1e-6, atol=0)
    z = cloud.xyz()[..., 2][valid]
    assert 1.0 < np.median(z) < 4.0  # MANIFEST: median 2.42 m


def test_float32_metres_equal_uint16_millimetres(seven_scenes):
    _, depth, _ = seven_scenes[0]
    metres = depth.astype(np.float32) / np.float32(1000)
    metres[depth == 0] = np.nan
    metres[0, :5] = [np.inf, -np.inf, -1.0, 0.0, -0.0]  # more sensor-invalid encodings
    from_uint16 = depth_to_cloud(depth, SEVEN_SCENES_K).xyz()
    from_uint16[0, :5] = np.nan
    cloud = depth_to_cloud(metres, SEVEN_SCENES_K, depth_scale=123.0)  # scale ignored
    assert_matches_reference(cloud, reference_points(metres, SEVEN_SCENES_K))
    xyz = cloud.xyz()
    np.testing.assert_array_equal(np.isnan(xyz), np.isnan(from_uint16))
    np.testing.assert_allclose(xyz, from_uint16, rtol=1e-6, atol=0)


# --- options -------------------------------------------------------------------------------

def test_organized_and_dense_agree(seven_scenes):
    _, depth, color = seven_scenes[1]
    kwargs = dict(min_range=1.0, max_range=3.0, color=color, color_encoding='bgr8')
    organized = points_of(depth_to_cloud(depth, SEVEN_SCENES_K, **kwargs))
    dense = depth_to_cloud(depth, SEVEN_SCENES_K, organized=False, **kwargs)
    finite = ~np.isnan(organized[..., 2])
    assert dense.width == finite.sum() and dense.is_dense and dense.height == 1
    np.testing.assert_array_equal(points_of(dense)[0].view(np.uint32),
                                  organized[finite].view(np.uint32))


@pytest.mark.parametrize('dx,dy', [(1, 2), (2, 1), (3, 3), (4, 5), (640, 480), (1000, 1000)])
@pytest.mark.parametrize('organized', [True, False])
def test_decimation(seven_scenes, dx, dy, organized):
    _, depth, color = seven_scenes[2]
    cloud = depth_to_cloud(depth, SEVEN_SCENES_K, decimation_x=dx, decimation_y=dy,
                           organized=organized, color=color, color_encoding='bgr8')
    expected = reference_points(depth, SEVEN_SCENES_K, decimation_x=dx, decimation_y=dy,
                                organized=organized, rgb=color[..., ::-1])
    assert_matches_reference(cloud, expected)
    if organized:
        rows, columns = organized_shape(depth.shape, dx, dy)
        assert (cloud.height, cloud.width) == (rows, columns)
        assert (rows, columns) == (math.ceil(480 / dy), math.ceil(640 / dx))
        # every output point keeps the coordinates of its original pixel
        full = depth_to_cloud(depth, SEVEN_SCENES_K).xyz()
        np.testing.assert_array_equal(cloud.xyz(), full[::dy, ::dx])


def test_range_limits(seven_scenes):
    _, depth, _ = seven_scenes[0]
    depth = depth.copy()
    depth[0, :3] = [1000, 2500, 2501]  # exactly on the limits, and just beyond
    cloud = depth_to_cloud(depth, SEVEN_SCENES_K, min_range=1.0, max_range=2.5)
    assert_matches_reference(cloud, reference_points(depth, SEVEN_SCENES_K, min_range=1.0,
                                                     max_range=2.5))
    z = cloud.xyz()[..., 2]
    np.testing.assert_array_equal(z[0, :3], np.array([1.0, 2.5, np.nan], np.float32))
    kept = (depth >= 1000) & (depth <= 2500)
    np.testing.assert_array_equal(~np.isnan(z), kept)
    assert 0 < kept.sum() < (depth > 0).sum()
    everything = depth_to_cloud(depth, SEVEN_SCENES_K, min_range=0.0, max_range=math.inf)
    np.testing.assert_array_equal(~np.isnan(everything.xyz()[..., 2]), depth > 0)


def test_invalid_depth_puts_sensor_invalid_pixels_on_their_ray(seven_scenes):
    _, depth, _ = seven_scenes[0]
    kwargs = dict(min_range=1.0, max_range=2.5, invalid_depth=5.0)
    cloud = depth_to_cloud(depth, SEVEN_SCENES_K, **kwargs)
    assert_matches_reference(cloud, reference_points(depth, SEVEN_SCENES_K, **kwargs))
    xyz = cloud.xyz()
    holes = depth == 0
    out_of_range = ~holes & ((depth < 1000) | (depth > 2500))
    assert holes.any() and out_of_range.any()
    np.testing.assert_array_equal(xyz[..., 2][holes], 5.0)
    expected = literal_xyz(np.full(depth.shape, 5.0), SEVEN_SCENES_K)
    np.testing.assert_allclose(xyz[holes], expected[holes], rtol=1e-6)
    assert np.isnan(xyz[out_of_range]).all()  # out-of-range pixels are not filled
    assert not cloud.is_dense
    dense = depth_to_cloud(depth, SEVEN_SCENES_K, organized=False, **kwargs)
    assert dense.width == holes.sum() + ((depth >= 1000) & (depth <= 2500)).sum()
    filled_everything = depth_to_cloud(depth, SEVEN_SCENES_K, invalid_depth=5.0)
    assert filled_everything.is_dense and filled_everything.valid_points == depth.size


# --- colour ---------------------------------------------------------------------------------

@pytest.mark.parametrize('encoding', ['rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8', 'mono8-2d'])
def test_color_packing_round_trip(encoding):
    rng = np.random.default_rng(7)
    depth = random_depth((30, 40), seed=3)
    rgb = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    rgb[0, 0] = 255  # white: the packed float must still not be NaN (alpha byte 0)
    if encoding == 'rgb8':
        color, expected = rgb, rgb
    elif encoding == 'bgr8':
        color, expected = np.ascontiguousarray(rgb[..., ::-1]), rgb
    elif encoding == 'rgba8':
        color, expected = np.dstack([rgb, rng.integers(0, 256, (30, 40, 1), np.uint8)]), rgb
    elif encoding == 'bgra8':
        color = np.dstack([rgb[..., ::-1], np.full((30, 40, 1), 255, np.uint8)])
        expected = rgb
    else:
        gray = rgb[..., 0]
        color = gray if encoding == 'mono8-2d' else gray[..., np.newaxis]
        expected = np.repeat(gray[..., np.newaxis], 3, axis=2)
    cloud = depth_to_cloud(depth, SEVEN_SCENES_K, color=color,
                           color_encoding=encoding.replace('-2d', ''))
    assert cloud.fields == cloud_fields(True)
    assert cloud.fields[3] == PointFieldSpec('rgb', 12, 7, 1)
    assert cloud.point_step == 16
    np.testing.assert_array_equal(cloud.rgb(), expected)  # invalid points keep their colour
    bits = points_of(cloud)[..., 3].view(np.uint32)
    np.testing.assert_array_equal(bits, pack_rgb(expected))
    np.testing.assert_array_equal(unpack_rgb(bits), expected)
    assert (cloud.data.reshape(-1, 16)[:, 15] == 0).all()  # alpha byte
    assert not np.isnan(points_of(cloud)[..., 3]).any()
    assert_matches_reference(cloud, reference_points(depth, SEVEN_SCENES_K, rgb=expected))


def test_real_color_frames(seven_scenes, tum):
    frames = [(depth, color, SEVEN_SCENES_K, 0.001) for _, depth, color in seven_scenes]
    frames.append((tum[0], tum[1], PRIMESENSE_K, 1 / 5000))
    for depth, bgr, intrinsics, scale in frames:
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        from_bgr = depth_to_cloud(depth, intrinsics, depth_scale=scale, color=bgr,
                                  color_encoding='bgr8')
        from_rgb = depth_to_cloud(depth, intrinsics, depth_scale=scale, color=rgb)
        np.testing.assert_array_equal(from_bgr.data, from_rgb.data)
        np.testing.assert_array_equal(from_bgr.rgb(), rgb)
        dense = depth_to_cloud(depth, intrinsics, depth_scale=scale, color=bgr,
                               color_encoding='bgr8', organized=False)
        np.testing.assert_array_equal(dense.rgb()[0], rgb[depth != 0])
        assert_matches_reference(dense, reference_points(depth, intrinsics, depth_scale=scale,
                                                         organized=False, rgb=rgb))


def test_strided_color_views(seven_scenes):
    _, depth, bgr = seven_scenes[0]
    rgb = np.ascontiguousarray(bgr[..., ::-1])
    reference = depth_to_cloud(depth, SEVEN_SCENES_K, color=rgb).data
    views = [bgr[..., ::-1],  # negative channel stride
             np.dstack([rgb, np.zeros((480, 640, 1), np.uint8)])[..., :3],  # padded pixels
             np.ascontiguousarray(rgb[::-1, ::-1])[::-1, ::-1]]  # negative row/column strides
    for view in views:
        np.testing.assert_array_equal(view, rgb)
        np.testing.assert_array_equal(depth_to_cloud(depth, SEVEN_SCENES_K, color=view).data,
                                      reference)


def test_color_of_another_size(seven_scenes):
    _, depth, bgr = seven_scenes[0]
    large = cv2.resize(bgr, (1280, 960), interpolation=cv2.INTER_LINEAR)
    with pytest.raises(ValueError, match=r'color size 1280x960 differs from depth size 640x480'):
        depth_to_cloud(depth, SEVEN_SCENES_K, color=large, color_encoding='bgr8')
    cloud = depth_to_cloud(depth, SEVEN_SCENES_K, color=large, color_encoding='bgr8',
                           resize_color=True)
    expected = cv2.resize(large, (640, 480), interpolation=cv2.INTER_AREA)[..., ::-1]
    np.testing.assert_array_equal(cloud.rgb(), expected)
    small = bgr[::2, ::2]
    cloud = depth_to_cloud(depth, SEVEN_SCENES_K, color=small, color_encoding='bgr8',
                           resize_color=True)
    expected = cv2.resize(np.ascontiguousarray(small), (640, 480),
                          interpolation=cv2.INTER_LINEAR)[..., ::-1]
    np.testing.assert_array_equal(cloud.rgb(), expected)
    gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    cloud = depth_to_cloud(depth, SEVEN_SCENES_K, color=gray, color_encoding='mono8',
                           resize_color=True)
    expected = cv2.resize(gray, (640, 480), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(cloud.rgb()[..., 1], expected)


# --- memory layouts of the depth image -------------------------------------------------------

@pytest.mark.parametrize('pad', [2, 6, 64])
def test_padded_rows_from_image_array_are_read_in_place(seven_scenes, pad):
    _, depth, _ = seven_scenes[0]
    rows = np.zeros((480, 640 * 2 + pad), np.uint8)
    rows[:, :1280] = depth.view(np.uint8).reshape(480, 1280)
    rows[:, 1280:] = 0xAB  # padding garbage must be skipped
    data = rows.tobytes()
    view = image_array(data, 640, 480, 1280 + pad, '16UC1')
    assert view.strides == (1280 + pad, 2)
    assert np.shares_memory(view, np.frombuffer(data, np.uint8))
    expected = depth_to_cloud(depth, SEVEN_SCENES_K).data
    np.testing.assert_array_equal(depth_to_cloud(view, SEVEN_SCENES_K).data, expected)


def test_odd_step_and_big_endian_images(seven_scenes):
    _, depth, _ = seven_scenes[0]
    expected = depth_to_cloud(depth, SEVEN_SCENES_K).data
    # odd step: image_array copies the rows out (multi-byte pixels off element boundaries)
    rows = np.zeros((480, 1281), np.uint8)
    rows[:, :1280] = depth.view(np.uint8).reshape(480, 1280)
    view = image_array(rows.tobytes(), 640, 480, 1281, '16UC1')
    np.testing.assert_array_equal(depth_to_cloud(view, SEVEN_SCENES_K).data, expected)
    # big-endian message: image_array byte-swaps
    swapped = image_array(depth.astype('>u2').tobytes(), 640, 480, 1280, '16UC1',
                          is_bigendian=True)
    np.testing.assert_array_equal(depth_to_cloud(swapped, SEVEN_SCENES_K).data, expected)
    # a non-native numpy array given directly: byte-swapped copy
    np.testing.assert_array_equal(depth_to_cloud(depth.astype('>u2'), SEVEN_SCENES_K).data,
                                  expected)
    metres = (depth / 1000).astype('>f4')
    native = depth_to_cloud(metres.astype(np.float32), SEVEN_SCENES_K).data
    np.testing.assert_array_equal(depth_to_cloud(metres, SEVEN_SCENES_K).data, native)
    # unaligned uint16 (odd byte offset): copied
    raw = np.zeros(depth.nbytes + 1, np.uint8)
    raw[1:] = depth.view(np.uint8).ravel()
    unaligned = raw[1:].view(np.uint16).reshape(480, 640)
    assert not unaligned.flags.aligned
    np.testing.assert_array_equal(depth_to_cloud(unaligned, SEVEN_SCENES_K).data, expected)


def test_any_strides(seven_scenes):
    _, depth, _ = seven_scenes[1]
    for view in (depth[::-1], depth[:, ::-1], depth[::2, 1::3], depth.T, depth[100:300, 50:600]):
        intrinsics = CameraIntrinsics(585.0, 580.0, view.shape[1] / 2, view.shape[0] / 2)
        for organized in (True, False):
            cloud = depth_to_cloud(view, intrinsics, organized=organized, decimation_x=2)
            expected = depth_to_cloud(np.ascontiguousarray(view), intrinsics,
                                      organized=organized, decimation_x=2)
            np.testing.assert_array_equal(cloud.data, expected.data)
            assert_matches_reference(cloud, reference_points(view, intrinsics,
                                                             organized=organized,
                                                             decimation_x=2))


# --- threads, buffers, GIL ------------------------------------------------------------------

@pytest.mark.parametrize('kwargs', [dict(), dict(organized=False), dict(decimation_x=3),
                                    dict(invalid_depth=4.0, organized=False),
                                    dict(color='bgr', organized=False)])
def test_same_bytes_for_any_thread_count(seven_scenes, kwargs):
    _, depth, bgr = seven_scenes[2]
    depth = np.tile(depth, (3, 2))  # more rows than threads, uneven split
    if kwargs.get('color'):
        kwargs = dict(kwargs, color=np.tile(bgr, (3, 2, 1)), color_encoding='bgr8')
    results = [depth_to_cloud(depth, SEVEN_SCENES_K, threads=n, **kwargs).data
               for n in (1, 2, 3, 7, 0)]
    for data in results[1:]:
        np.testing.assert_array_equal(data, results[0])


@pytest.mark.parametrize('kind', ['numpy', 'numpy at 4 bytes', 'bytearray', 'array'])
def test_out_buffer_is_reused(seven_scenes, kind):
    (_, first, _), (_, second, _) = seven_scenes[:2]
    size = max_cloud_bytes(first.shape)
    assert size == 480 * 640 * 16
    out = {'numpy': lambda: np.empty(size + 32, np.uint8),
           'numpy at 4 bytes': lambda: np.empty(size + 4, np.uint8)[4:],  # float32 aligned
           'bytearray': lambda: bytearray(size),
           'array': lambda: array('B', bytes(size))}[kind]()
    base = np.frombuffer(out, np.uint8)
    for depth in (first, second):
        for organized in (True, False):
            cloud = depth_to_cloud(depth, SEVEN_SCENES_K, out=out, organized=organized)
            assert np.shares_memory(cloud.data, base)
            assert cloud.data.ctypes.data == base.ctypes.data  # starts at the buffer's start
            assert cloud.data.nbytes == cloud.height * cloud.row_step
            np.testing.assert_array_equal(
                cloud.data, depth_to_cloud(depth, SEVEN_SCENES_K, organized=organized).data)
    assert np.shares_memory(cloud.xyz(), base)


@pytest.mark.parametrize('organized', [True, False])
@pytest.mark.parametrize('offset', [1, 2, 3])
def test_misaligned_out_is_rejected(offset, organized):
    """The kernel stores float32 and uint32 values into ``out``: a buffer whose first byte is
    not on a 4-byte boundary would be a misaligned store (undefined behaviour in C; a UBSan
    report, a fault on strict-alignment CPUs). It is rejected, as the BEV module does."""
    depth = random_depth((5, 7), seed=offset)
    size = max_cloud_bytes(depth.shape)
    backing = np.zeros(size + 8, np.uint8)
    start = -backing.ctypes.data % 4 + offset  # exactly `offset` bytes past a multiple of 4
    for out in (backing[start:start + size], memoryview(backing)[start:start + size]):
        with pytest.raises(ValueError, match=f'out buffer is not aligned for the cloud: its '
                                             f'address is {offset} bytes past a multiple of 4'):
            depth_to_cloud(depth, SEVEN_SCENES_K, out=out, organized=organized)
    assert not backing.any()  # nothing was written
    aligned = backing[start - offset:start - offset + size]
    cloud = depth_to_cloud(depth, SEVEN_SCENES_K, out=aligned, organized=organized)
    assert cloud.data.ctypes.data == aligned.ctypes.data
    np.testing.assert_array_equal(
        cloud.data, depth_to_cloud(depth, SEVEN_SCENES_K, organized=organized).data)


def test_no_cloud_allocation_with_out(seven_scenes):
    _, depth, bgr = seven_scenes[0]
    out = np.empty(max_cloud_bytes(depth.shape), np.uint8)
    for organized in (True, False):
        depth_to_cloud(depth, SEVEN_SCENES_K, out=out, organized=organized, color=bgr,
                       color_encoding='bgr8')  # warm the coefficient cache
        tracemalloc.start()
        try:
            depth_to_cloud(depth, SEVEN_SCENES_K, out=out, organized=organized, color=bgr,
                           color_encoding='bgr8')
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 32 * 1024, f'{peak} bytes allocated for a {out.nbytes}-byte cloud'


def test_kernel_releases_the_gil():
    """A Python thread keeps running while conversions run; a GIL-holding call stops it."""
    depth = random_depth((1024, 1024), seed=5)
    out = np.empty(max_cloud_bytes(depth.shape), np.uint8)
    with gil_probe() as ticks_during:
        held = ticks_during(lambda: sum(i * i for i in range(300_000)))  # holds the GIL
        released = ticks_during(lambda: [
            depth_to_cloud(depth, SEVEN_SCENES_K, out=out, threads=1) for _ in range(20)])
        released_dense = ticks_during(lambda: [
            depth_to_cloud(depth, SEVEN_SCENES_K, out=out, threads=1, organized=False)
            for _ in range(10)])
    assert held == 0
    assert released > 20 and released_dense > 10, (released, released_dense)


def test_shapes_and_fields():
    assert organized_shape((480, 640)) == (480, 640)
    assert organized_shape((480, 640), 3, 7) == (69, 214)
    assert organized_shape((480, 640, 3), 640, 480) == (1, 1)
    huge = depth_to_cloud(random_depth((6, 8)), SEVEN_SCENES_K, decimation_x=10**30,
                          decimation_y=7)
    assert (huge.height, huge.width) == (1, 1)
    assert max_cloud_bytes((481, 641), 2, 2) == 241 * 321 * 16
    assert [f.name for f in cloud_fields(False)] == ['x', 'y', 'z']
    assert [(f.offset, f.datatype, f.count) for f in cloud_fields(True)] == \
        [(0, 7, 1), (4, 7, 1), (8, 7, 1), (12, 7, 1)]
    cloud = depth_to_cloud(random_depth((6, 8)), SEVEN_SCENES_K)
    assert isinstance(cloud, Cloud) and cloud.rgb() is None
    assert cloud.xyz().shape == (6, 8, 3) and cloud.xyz().dtype == np.float32
    assert np.shares_memory(cloud.xyz(), cloud.data)
    assert (cloud.data.reshape(-1, 16)[:, 12:] == 0).all()  # deterministic padding
    assert _depth.max_threads() >= 1


# --- rejections -----------------------------------------------------------------------------

GOOD_DEPTH = np.full((4, 6), 1000, np.uint16)


@pytest.mark.parametrize('kwargs,message', [
    (dict(depth=[[1, 2]]), 'depth must be a numpy array, got list'),
    (dict(depth=np.zeros((4, 6, 1), np.uint16)), r'2-D \(H x W\) array, got shape \(4, 6, 1\)'),
    (dict(depth=np.zeros(6, np.uint16)), r'2-D \(H x W\) array, got shape \(6,\)'),
    (dict(depth=np.zeros((0, 6), np.uint16)), r'empty: shape \(0, 6\)'),
    (dict(depth=np.zeros((4, 6), np.float64)), 'uint16 .* or float32 .*, got float64'),
    (dict(depth=np.zeros((4, 6), np.int16)), 'got int16'),
    (dict(intrinsics=(585.0, 585.0, 320.0)), 'intrinsics must be CameraIntrinsics'),
    (dict(intrinsics=CameraIntrinsics(0.0, 585.0, 3, 2)), 'fx must be finite and > 0'),
    (dict(intrinsics=CameraIntrinsics(5.0, -1.0, 3, 2)), 'fy must be finite and > 0'),
    (dict(intrinsics=CameraIntrinsics(5.0, 5.0, math.nan, 2)), 'cx must be finite'),
    (dict(depth_scale=0.0), 'depth_scale must be > 0'),
    (dict(depth_scale=1e-50), 'representable as float32'),
    (dict(depth_scale=math.inf), 'depth_scale must be > 0'),
    (dict(min_range=-0.1), 'min_range must be finite and >= 0'),
    (dict(max_range=-1.0), 'max_range must be >= 0'),
    (dict(max_range=math.nan), 'max_range must be >= 0'),
    (dict(min_range=3.0, max_range=2.0), 'min_range 3.0 is greater than max_range 2.0'),
    (dict(invalid_depth=-1.0), 'invalid_depth must be finite and >= 0'),
    (dict(invalid_depth=math.inf), 'invalid_depth must be finite and >= 0'),
    (dict(decimation_x=0), 'decimation_x must be a positive integer, got 0'),
    (dict(decimation_y=-2), 'decimation_y must be a positive integer, got -2'),
    (dict(decimation_x=1.5), 'decimation_x must be a positive integer, got 1.5'),
    (dict(threads=-1), r'threads must be an integer from 0 \(all cores\) to 1024, got -1'),
    (dict(threads=2**40), 'threads must be an integer from 0'),
    (dict(color_encoding='yuv422'), "unsupported colour encoding 'yuv422'"),
    (dict(color=np.zeros((4, 6, 3), np.uint8), color_encoding='bayer_rggb8'),
     "unsupported colour encoding 'bayer_rggb8'"),
    (dict(color=np.zeros((4, 6, 3), np.float32)), 'color must be uint8'),
    (dict(color=np.zeros((4, 6, 4), np.uint8)), r'color shape \(4, 6, 4\) does not fit rgb8'),
    (dict(color=np.zeros((4, 6), np.uint8), color_encoding='bgra8'), 'does not fit bgra8'),
    (dict(color=np.zeros((4, 6, 3), np.uint8), color_encoding='mono8'), 'does not fit mono8'),
    (dict(color=np.zeros((5, 6, 3), np.uint8)), 'color size 6x5 differs from depth size 6x4'),
    (dict(color=np.zeros((0, 6, 3), np.uint8), resize_color=True), 'color image is empty'),
    (dict(color='red'), 'color must be a numpy array'),
    (dict(out=bytearray(4 * 6 * 16 - 1)), 'out buffer too small: 383 bytes, the cloud needs 384'),
    (dict(out=bytes(4 * 6 * 16)), 'read-only'),
    (dict(out=np.zeros((8, 6 * 16), np.uint8)[::2]), 'must be contiguous'),
    (dict(out=12), 'out must be a writable buffer'),
])
def test_bad_input_says_what_is_wrong(kwargs, message):
    args = dict(depth=GOOD_DEPTH, intrinsics=SEVEN_SCENES_K)
    args.update(kwargs)
    depth, intrinsics = args.pop('depth'), args.pop('intrinsics')
    with pytest.raises(ValueError, match=message):
        depth_to_cloud(depth, intrinsics, **args)


def test_dense_out_too_small_names_the_point_count():
    depth = GOOD_DEPTH.copy()
    depth[0] = 0  # 18 valid points -> 288 bytes
    with pytest.raises(ValueError, match='287 bytes, the cloud needs 288'):
        depth_to_cloud(depth, SEVEN_SCENES_K, organized=False, out=bytearray(287))
    cloud = depth_to_cloud(depth, SEVEN_SCENES_K, organized=False, out=bytearray(288))
    assert cloud.width == 18
