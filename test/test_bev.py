"""BEV kernel: exact equality with the numpy reference, hand-checked cell and channel rules,
PointCloud2 byte layouts, transforms, thread counts, output buffers and every rejection."""
from array import array
from concurrent.futures import ThreadPoolExecutor
import math
import mmap
import tracemalloc

import numpy as np
import pytest

from pointcloud_pipeline import bev
from pointcloud_pipeline.bev import BevGrid, CHANNELS, bev_image, bev_image_from_buffer
from reference_bev import python_loop_bev, reference_bev, reference_bev_points

SMALL = BevGrid(x_range=(0.0, 4.0), y_range=(-2.0, 2.0), z_range=(-1.0, 1.0), resolution=1.0)
ONE_POINT_DENSITY = math.floor(math.log(2) / math.log(64) * 255 + 0.5)  # 43


def byte(value):
    return math.floor(value * 255 + 0.5)


@pytest.fixture(scope='module')
def kitti_scans(shared_data):
    paths = sorted((shared_data / 'kitti' / 'velodyne').glob('*.bin'))
    assert paths, 'no KITTI scans in the shared data'
    return {p.name: np.fromfile(p, np.float32).reshape(-1, 4) for p in paths}


def random_cloud(seed, n=20000, nan_share=0.05):
    """Points spread beyond SMALL-like grids, on cell borders, with NaN rows and NaN intensity."""
    rng = np.random.default_rng(seed)
    points = np.empty((n, 4), np.float32)
    points[:, :3] = rng.uniform(-12, 12, (n, 3))
    points[:, 2] = rng.uniform(-3, 2, n)
    points[:, 3] = rng.uniform(-0.2, 1.2, n)
    on_border = rng.random(n) < 0.2  # exactly on cell borders of a 0.25 m grid
    points[on_border, :2] = np.round(points[on_border, :2] * 4) / 4
    tied = rng.random(n) < 0.1  # exact z ties (and -0.0 vs 0.0)
    points[tied, 2] = rng.choice(np.array([-0.0, 0.0, 0.5], np.float32), tied.sum())
    points[rng.random(n) < nan_share, :3] = np.nan
    points[rng.random(n) < 0.02, 3] = np.nan
    points[rng.random(n) < 0.01, 0] = np.inf
    return points


# --- equality with the numpy reference -------------------------------------------------------

@pytest.mark.parametrize('dtype', [np.uint8, np.float32])
def test_real_kitti_scans_equal_reference(kitti_scans, dtype):
    for name, points in kitti_scans.items():
        expected = reference_bev_points(points, BevGrid(), dtype=dtype)
        assert np.count_nonzero(expected.any(axis=2)) > 20000, name
        for threads in (1, 2, 3):
            image = bev_image(points, dtype=dtype, threads=threads)
            assert image.dtype == dtype and image.shape == (1600, 1600, 3)
            np.testing.assert_array_equal(image, expected, err_msg=f'{name} threads={threads}')


def test_real_kitti_scan_complex_yolo_grid(kitti_scans):
    grid = BevGrid.complex_yolo()
    points = kitti_scans['000000.bin']
    np.testing.assert_array_equal(bev_image(points, grid), reference_bev_points(points, grid))


@pytest.mark.parametrize('seed', range(4))
@pytest.mark.parametrize('dtype', [np.uint8, np.float32])
def test_random_clouds_equal_reference(seed, dtype):
    grid = BevGrid(x_range=(-10.0, 10.0), y_range=(-5.0, 7.5), z_range=(-2.0, 1.0),
                   resolution=0.25, intensity_range=(0.0, 1.0))
    points = random_cloud(seed)
    expected = reference_bev_points(points, grid, dtype=dtype)
    for threads in (1, 2, 5):
        np.testing.assert_array_equal(bev_image(points, grid, dtype=dtype, threads=threads),
                                      expected)


def test_python_loop_baseline_equals_kernel(kitti_scans):
    """The per-point loop timed in bench/bench_bev.py computes the same image."""
    points = kitti_scans['000000.bin'][::40]
    grid = BevGrid.complex_yolo()
    np.testing.assert_array_equal(python_loop_bev(points, grid), bev_image(points, grid))


# --- the documented rules, checked by hand on a 4 x 4 grid of 1 m cells ------------------------

def pixel(image, x, y):
    """Pixel of the cell holding (x, y) on SMALL: rows = 4 - 1 - floor(x), cols = 3 - floor(y+2)."""
    return image[3 - math.floor(x), 3 - math.floor(y + 2)].tolist()


def test_one_point_channels_and_orientation():
    image = bev_image(np.array([[3.5, 1.5, 0.5, 0.25]], np.float32), SMALL)
    # forward (large x) is up (row 0), left (large y) is left (column 0)
    assert image[0, 0].tolist() == [byte(0.25), byte(0.75), ONE_POINT_DENSITY]
    assert np.count_nonzero(image) == 3
    assert CHANNELS == ('intensity', 'height', 'density')


def test_cell_borders_and_grid_edges():
    points = np.array([
        [0.0, -2.0, 0.0, 0.1],    # x_min, y_min: inside, bottom-right cell
        [1.0, 0.0, 0.0, 0.2],     # on a border: belongs to the cell with the larger x and y
        [4.0, 0.0, 0.0, 0.3],     # x_max: outside
        [2.0, 2.0, 0.0, 0.4],     # y_max: outside
        [np.nextafter(np.float32(4), np.float32(0)), 1.999, 0.0, 0.5],  # just inside x_max
        [-1e-6, 0.0, 0.0, 0.6],   # just below x_min: outside
    ], np.float32)
    image = bev_image(points, SMALL)
    assert image[3, 3].tolist()[0] == byte(0.1)
    assert image[2, 1].tolist()[0] == byte(0.2)
    assert image[0, 0].tolist()[0] == byte(0.5)
    assert np.count_nonzero(image.any(axis=2)) == 3
    np.testing.assert_array_equal(image, reference_bev_points(points, SMALL))


def test_z_range_is_inclusive_and_height_normalised():
    below = np.nextafter(np.float32(-1), np.float32(-2))
    above = np.nextafter(np.float32(1), np.float32(2))
    points = np.array([[0.5, -1.5, -1.0, 0], [1.5, -1.5, 1.0, 0],
                       [2.5, -1.5, below, 0], [3.5, -1.5, above, 0]], np.float32)
    image = bev_image(points, SMALL)
    assert pixel(image, 0.5, -1.5)[1] == 0          # z_min: inside, height 0
    assert pixel(image, 0.5, -1.5)[2] == ONE_POINT_DENSITY
    assert pixel(image, 1.5, -1.5)[1] == 255        # z_max: inside, height 1
    assert pixel(image, 2.5, -1.5) == [0, 0, 0]     # outside the z range
    assert pixel(image, 3.5, -1.5) == [0, 0, 0]


def test_nan_and_infinite_points_are_skipped():
    points = np.array([[np.nan, 0.5, 0.0, 1.0], [0.5, np.nan, 0.0, 1.0], [0.5, 0.5, np.nan, 1.0],
                       [np.inf, 0.5, 0.0, 1.0], [0.5, -np.inf, 0.0, 1.0]], np.float32)
    assert not bev_image(points, SMALL).any()


def test_empty_cloud_gives_a_zero_image():
    for points in (np.empty((0, 4), np.float32), np.empty((0, 3), np.float32)):
        image = bev_image(points, SMALL)
        assert image.shape == (4, 4, 3) and not image.any()
    assert not bev_image_from_buffer(b'', 16, 0, grid=SMALL).any()


def test_highest_point_gives_intensity_and_ties_take_the_largest_intensity():
    points = np.array([
        [0.5, 0.5, 0.2, 0.9], [0.6, 0.6, 0.7, 0.1], [0.7, 0.7, -0.5, 1.0],  # highest: 0.1
        [1.5, 0.5, 0.3, 0.2], [1.6, 0.6, 0.3, 0.6], [1.7, 0.7, 0.3, 0.4],   # tie: 0.6
        [2.5, 0.5, 0.3, np.nan], [2.6, 0.6, 0.3, 0.3],                      # NaN loses a tie
        [3.5, 0.5, -0.0, 0.8], [3.6, 0.6, 0.0, 0.7],                        # -0.0 ties 0.0
    ], np.float32)
    for order in (slice(None), slice(None, None, -1)):
        image = bev_image(points[order], SMALL)
        assert pixel(image, 0.5, 0.5)[:2] == [byte(0.1), byte(0.85)]
        assert pixel(image, 1.5, 0.5)[0] == byte(0.6)
        assert pixel(image, 2.5, 0.5)[0] == byte(0.3)
        assert pixel(image, 3.5, 0.5)[0] == byte(0.8)
        assert pixel(image, 0.5, 0.5)[2] == byte(math.log(4) / math.log(64))
        np.testing.assert_array_equal(image, reference_bev_points(points[order], SMALL))


def test_nan_intensity_alone_gives_zero_intensity():
    image = bev_image(np.array([[0.5, 0.5, 0.0, np.nan]], np.float32), SMALL)
    assert pixel(image, 0.5, 0.5) == [0, 128, ONE_POINT_DENSITY]


@pytest.mark.parametrize('count,expected', [(1, 43), (2, 67), (62, 254), (63, 255), (64, 255),
                                            (500, 255)])
def test_density_formula_and_saturation(count, expected):
    points = np.tile(np.array([[1.5, 0.5, 0.0, 0.5]], np.float32), (count, 1))
    assert pixel(bev_image(points, SMALL), 1.5, 0.5)[2] == expected
    value = bev_image(points, SMALL, dtype=np.float32)[2, 1, 2]
    assert value == pytest.approx(min(1.0, math.log(count + 1) / math.log(64)), abs=1e-7)


def test_intensity_range_maps_and_clips():
    grid = BevGrid(x_range=(0.0, 4.0), y_range=(-2.0, 2.0), resolution=1.0,
                   intensity_range=(0.0, 255.0))
    points = np.array([[0.5, 0.5, 0, 51.0], [1.5, 0.5, 0, 300.0], [2.5, 0.5, 0, -5.0]],
                      np.float32)
    image = bev_image(points, grid)
    assert [pixel(image, x, 0.5)[0] for x in (0.5, 1.5, 2.5)] == [51, 255, 0]


def test_xyz_input_has_zero_intensity():
    points = random_cloud(7)
    grid = BevGrid(x_range=(-10.0, 10.0), y_range=(-10.0, 10.0), resolution=0.5)
    xyz = np.ascontiguousarray(points[:, :3])
    image = bev_image(xyz, grid)
    expected = reference_bev(points[:, 0], points[:, 1], points[:, 2], None, grid)
    np.testing.assert_array_equal(image, expected)
    assert image[..., 2].any() and not image[..., 0].any()


def test_non_contiguous_array_is_read_correctly():
    points = random_cloud(8)
    strided = np.asfortranarray(points)
    np.testing.assert_array_equal(bev_image(strided, SMALL), bev_image(points, SMALL))


# --- PointCloud2 byte layouts ----------------------------------------------------------------

def pointcloud2_bytes(points, point_step, offsets):
    """Points packed like a PointCloud2: float32 fields at byte offsets, 0xAB padding."""
    data = np.full((len(points), point_step), 0xAB, np.uint8)
    for column, offset in enumerate(offsets):
        if offset is not None:
            data[:, offset:offset + 4] = points[:, column:column + 1].copy().view(np.uint8)
    return data.tobytes()


def test_pointcloud2_layout_with_intensity_at_16(kitti_scans):
    points = kitti_scans['000001.bin']
    data = pointcloud2_bytes(points, 32, (0, 4, 8, 16))
    image = bev_image_from_buffer(data, 32, len(points), intensity_offset=16)
    np.testing.assert_array_equal(image, bev_image(points))
    view = np.frombuffer(data, np.uint8)  # the receive path: np.frombuffer(msg.data, np.uint8)
    np.testing.assert_array_equal(
        bev_image_from_buffer(view, 32, len(points), intensity_offset=16, threads=1), image)


def test_pointcloud2_layout_without_intensity_equals_xyz_array():
    points = random_cloud(3)
    data = pointcloud2_bytes(points, 16, (0, 4, 8, None))
    np.testing.assert_array_equal(bev_image_from_buffer(data, 16, len(points), grid=SMALL),
                                  bev_image(np.ascontiguousarray(points[:, :3]), SMALL))


def test_unaligned_fields_and_permuted_offsets():
    points = random_cloud(4)
    data = pointcloud2_bytes(points, 19, (9, 1, 13, 5))
    image = bev_image_from_buffer(data, 19, len(points), x_offset=9, y_offset=1, z_offset=13,
                                  intensity_offset=5, grid=SMALL)
    np.testing.assert_array_equal(image, bev_image(points, SMALL))


def test_memory_mapped_kitti_file_is_read_in_place(shared_data, kitti_scans):
    path = shared_data / 'kitti' / 'velodyne' / '000000.bin'
    with open(path, 'rb') as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        image = bev_image_from_buffer(mapped, 16, len(mapped) // 16, intensity_offset=12)
    np.testing.assert_array_equal(image, bev_image(kitti_scans['000000.bin']))


def test_read_only_array_is_accepted(kitti_scans):
    points = kitti_scans['000000.bin']
    read_only = np.frombuffer(points.tobytes(), np.float32).reshape(-1, 4)
    assert not read_only.flags.writeable
    np.testing.assert_array_equal(bev_image(read_only), bev_image(points))


def test_buffer_may_be_longer_than_the_points():
    points = random_cloud(5, n=100)
    data = pointcloud2_bytes(points, 16, (0, 4, 8, 12)) + bytes(64)
    np.testing.assert_array_equal(
        bev_image_from_buffer(data, 16, 100, intensity_offset=12, grid=SMALL),
        bev_image(points, SMALL))


INTENSITY_DTYPES = {  # PointField datatype name -> dtype, values a driver could send
    'int8': (np.dtype('i1'), (-128, 127)), 'uint8': (np.dtype('u1'), (0, 255)),
    'int16': (np.dtype('<i2'), (-32768, 32767)), 'uint16': (np.dtype('<u2'), (0, 65535)),
    'int32': (np.dtype('<i4'), (-2**31, 2**31 - 1)), 'uint32': (np.dtype('<u4'), (0, 2**32 - 1)),
    'float64': (np.dtype('<f8'), (-1e6, 1e6)), 'big-endian float32': (np.dtype('>f4'), (0, 1)),
}


def cloud_with_intensity_of(points, dtype, values, intensity_offset):
    """Bytes of a PointCloud2-style cloud (point_step 24): x, y, z float32 at 0, 4, 8, the
    intensity ``values`` as ``dtype`` at ``intensity_offset``."""
    data = np.zeros((len(points), 24), np.uint8)
    data[:, :12] = np.ascontiguousarray(points[:, :3]).view(np.uint8).reshape(-1, 12)
    raw = np.ascontiguousarray(values.astype(dtype)).view(np.uint8).reshape(len(points), -1)
    data[:, intensity_offset:intensity_offset + dtype.itemsize] = raw
    return data.tobytes()


@pytest.mark.parametrize('name', sorted(INTENSITY_DTYPES))
def test_intensity_of_any_point_field_type_equals_reference(kitti_scans, name):
    """uint8 / uint16 / float64 / ... intensities (real LiDAR drivers): read, converted to
    float32 and mapped by intensity_range like float32 ones, never silently 0."""
    dtype, (low, high) = INTENSITY_DTYPES[name]
    points = kitti_scans['000000.bin']
    rng = np.random.default_rng(7)
    if dtype.kind == 'f':
        values = rng.uniform(low, high, len(points))
    else:
        values = rng.integers(low, high, len(points), endpoint=True, dtype=np.int64)
    grid = BevGrid(x_range=(-40.0, 40.0), y_range=(-40.0, 40.0), z_range=(-2.73, 1.27),
                   resolution=0.1, intensity_range=(float(low), float(high)))
    data = cloud_with_intensity_of(points, dtype, values, 13)  # unaligned, after a pad byte
    image = bev_image_from_buffer(data, 24, len(points), intensity_offset=13,
                                  intensity_dtype=dtype, grid=grid)
    expected = reference_bev(points[:, 0], points[:, 1], points[:, 2],
                             values.astype(dtype).astype(np.float32), grid)
    np.testing.assert_array_equal(image, expected)
    assert np.count_nonzero(image[..., 0]) > 10_000, 'the intensity channel is blank'


def test_uint8_intensity_with_0_255_range_equals_float32_intensity():
    """The same cloud with its intensity as uint8 or as float32 gives the same image."""
    points = random_cloud(11, n=5000)
    points[:, 3] = np.random.default_rng(1).integers(0, 256, len(points))
    grid = BevGrid(x_range=(0.0, 4.0), y_range=(-2.0, 2.0), z_range=(-1.0, 1.0),
                   resolution=0.25, intensity_range=(0.0, 255.0))
    data = cloud_with_intensity_of(points, np.dtype(np.uint8), points[:, 3], 12)
    image = bev_image_from_buffer(data, 24, len(points), intensity_offset=12,
                                  intensity_dtype=np.uint8, grid=grid)
    np.testing.assert_array_equal(image, bev_image(points, grid))
    assert image[..., 0].any()


@pytest.mark.parametrize('kwargs,message', [
    (dict(intensity_offset=15, intensity_dtype=np.float64), 'does not fit a float64'),
    (dict(intensity_offset=8, intensity_dtype=np.complex64), 'integer or floating'),
    (dict(intensity_offset=8, intensity_dtype='not a type'), 'intensity_dtype'),
    (dict(intensity_offset=8, intensity_dtype=np.bool_), 'integer or floating'),
])
def test_bad_intensity_dtype_is_rejected(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        bev_image_from_buffer(bytes(160), 16, 10, grid=SMALL, **kwargs)


def test_converted_intensity_of_an_empty_cloud_gives_a_zero_image():
    assert not bev_image_from_buffer(b'', 16, 0, intensity_offset=12, intensity_dtype=np.uint16,
                                     grid=SMALL).any()


# --- transforms ------------------------------------------------------------------------------

OPTICAL_TO_BODY = np.array([[0, 0, 1, 0], [-1, 0, 0, 0], [0, -1, 0, 0], [0, 0, 0, 1]], float)


def test_optical_frame_cloud_with_transform_equals_body_cloud(kitti_scans):
    body = kitti_scans['000000.bin']
    # camera optical frame: x right (= -y body), y down (= -z body), z forward (= x body)
    optical = np.stack([-body[:, 1], -body[:, 2], body[:, 0], body[:, 3]], axis=1)
    image = bev_image(optical, transform=OPTICAL_TO_BODY)
    np.testing.assert_array_equal(image, bev_image(body))
    data = optical.tobytes()
    np.testing.assert_array_equal(
        bev_image_from_buffer(data, 16, len(optical), intensity_offset=12,
                              transform=OPTICAL_TO_BODY), image)


def test_general_rigid_transform_equals_reference(kitti_scans):
    yaw, pitch = math.radians(30), math.radians(4)
    rz = np.array([[math.cos(yaw), -math.sin(yaw), 0], [math.sin(yaw), math.cos(yaw), 0],
                   [0, 0, 1]])
    ry = np.array([[math.cos(pitch), 0, math.sin(pitch)], [0, 1, 0],
                   [-math.sin(pitch), 0, math.cos(pitch)]])
    transform = np.eye(4)
    transform[:3, :3] = rz @ ry
    transform[:3, 3] = (1.5, -2.25, 0.3)
    points = kitti_scans['000001.bin']
    expected = reference_bev_points(points, BevGrid(), transform=transform)
    for threads in (1, 2):
        np.testing.assert_array_equal(bev_image(points, transform=transform, threads=threads),
                                      expected)
    # the same as moving the points first, up to float32 rounding of the moved points
    moved = points.copy()
    moved[:, :3] = (points[:, :3].astype(np.float64) @ transform[:3, :3].T
                    + transform[:3, 3]).astype(np.float32)
    differing = np.count_nonzero((bev_image(moved) != expected).any(axis=2))
    assert differing < 0.01 * np.count_nonzero(expected.any(axis=2))


def test_identity_transform_is_no_transform():
    points = random_cloud(6)
    np.testing.assert_array_equal(bev_image(points, SMALL, transform=np.eye(4)),
                                  bev_image(points, SMALL))


@pytest.mark.parametrize('transform,message', [
    (np.eye(3), '4x4'),
    (np.diag([2.0, 1, 1, 1]), 'rigid'),
    (np.diag([1.0, 1, -1, 1]), 'rigid'),
    (np.vstack([np.eye(4)[:3], [0, 0, 1, 1]]), 'bottom row'),
    (np.full((4, 4), np.nan), 'non-finite'),
])
def test_bad_transform_is_rejected(transform, message):
    with pytest.raises(ValueError, match=message):
        bev_image(np.zeros((1, 4), np.float32), SMALL, transform=transform)


# --- threads, output buffers, workspace ------------------------------------------------------

def test_same_bytes_for_any_thread_count(kitti_scans):
    points = kitti_scans['000001.bin']
    single = bev_image(points, threads=1)
    for threads in (0, 2, 4, 7):
        assert bev_image(points, threads=threads).tobytes() == single.tobytes()


def test_out_array_is_filled_in_place_and_reused(kitti_scans):
    out = np.full((1600, 1600, 3), 0xEE, np.uint8)  # stale content must be overwritten
    for name, points in kitti_scans.items():
        result = bev_image(points, out=out)
        assert result is out
        np.testing.assert_array_equal(out, reference_bev_points(points, BevGrid()), name)


@pytest.mark.parametrize('make_out', [
    lambda n: bytearray(n), lambda n: array('B', bytes(n)), lambda n: memoryview(bytearray(n))])
def test_out_buffers_of_other_types(make_out):
    points = random_cloud(9)
    out = make_out(4 * 4 * 3)
    image = bev_image(points, SMALL, out=out)
    assert np.shares_memory(image, np.frombuffer(out, np.uint8))
    np.testing.assert_array_equal(image, bev_image(points, SMALL))
    assert bytes(out) == bev_image(points, SMALL).tobytes()


def test_float32_out_buffer():
    points = random_cloud(10)
    out = array('f', [7.0] * (4 * 4 * 3))
    image = bev_image(points, SMALL, out=out, dtype=np.float32)
    np.testing.assert_array_equal(np.frombuffer(out, np.float32).reshape(4, 4, 3), image)
    np.testing.assert_array_equal(image, reference_bev_points(points, SMALL, dtype=np.float32))


def test_no_allocation_per_call_when_out_is_given(kitti_scans):
    points = kitti_scans['000000.bin']
    out = np.empty((1600, 1600, 3), np.uint8)
    bev_image(points, out=out, threads=2)  # first call sizes this thread's workspace
    tracemalloc.start()
    try:
        for _ in range(3):
            bev_image(points, out=out, threads=2)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024, peak  # numpy buffers are traced: a per-call array would be MBs


def test_concurrent_calls_from_python_threads(kitti_scans):
    scans = list(kitti_scans.values())
    expected = [bev_image(p, threads=1) for p in scans]

    def render(i):
        return bev_image(scans[i % 2], threads=1 + i % 2).tobytes() == expected[i % 2].tobytes()

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(render, range(16)))


# --- the grid --------------------------------------------------------------------------------

def test_default_and_complex_yolo_grids():
    grid = BevGrid()
    assert (grid.rows, grid.cols, grid.shape) == (1600, 1600, (1600, 1600, 3))
    assert grid.resolution == 0.1 and grid.z_range == (-2.73, 1.27)
    cy = BevGrid.complex_yolo()
    assert (cy.rows, cy.cols) == (608, 608)
    assert cy.x_range == (0.0, 50.0) and cy.y_range == (-25.0, 25.0)
    assert BevGrid(x_range=[0, 10], y_range=(0, 5), resolution=0.5).shape == (20, 10, 3)
    with pytest.raises(AttributeError):
        grid.resolution = 0.2


@pytest.mark.parametrize('kwargs,message', [
    (dict(x_range=(10.0, 0.0)), 'x_range'),
    (dict(y_range=(0.0, 0.0)), 'y_range'),
    (dict(z_range=(0.0, np.nan)), 'z_range'),
    (dict(x_range=(0, 1, 2)), 'x_range'),
    (dict(intensity_range=(1.0, 1.0)), 'intensity_range'),
    (dict(resolution=0.0), 'resolution'),
    (dict(resolution=-0.1), 'resolution'),
    (dict(resolution='fine'), 'resolution'),
    (dict(x_range=(0.0, 10.05)), 'whole number'),
    (dict(resolution=0.001), 'too large'),
])
def test_bad_grid_is_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BevGrid(**kwargs)


# --- rejected inputs -------------------------------------------------------------------------

@pytest.mark.parametrize('points,message', [
    (np.zeros((5, 4), np.float64), 'float32'),
    (np.zeros((5, 5), np.float32), 'N x 4'),
    (np.zeros(8, np.float32), 'N x 4'),
    ([[0.0, 0.0, 0.0, 0.0]], 'numpy array'),
])
def test_bad_points_are_rejected(points, message):
    with pytest.raises(ValueError, match=message):
        bev_image(points, SMALL)


@pytest.mark.parametrize('kwargs,message', [
    (dict(point_step=16, num_points=11), 'buffer has 160 bytes'),
    (dict(point_step=16, num_points=10, z_offset=13), 'z_offset 13'),
    (dict(point_step=16, num_points=10, intensity_offset=16), 'intensity_offset 16'),
    (dict(point_step=16, num_points=10, x_offset=-1), 'x_offset -1'),
    (dict(point_step=3, num_points=10), 'point_step'),
    (dict(point_step=16, num_points=-1), 'num_points'),
    (dict(point_step=16.0, num_points=10), 'integers'),
])
def test_bad_buffer_layout_is_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        bev_image_from_buffer(bytes(160), grid=SMALL, **kwargs)


def test_non_buffer_is_rejected():
    with pytest.raises(ValueError, match='bytes-like'):
        bev_image_from_buffer([0.0] * 16, 16, 1, grid=SMALL)
    strided = np.zeros((10, 32), np.uint8)[:, ::2]
    with pytest.raises(ValueError, match='contiguous'):
        bev_image_from_buffer(strided, 16, 10, grid=SMALL)


@pytest.mark.parametrize('out,kwargs,message', [
    (np.zeros((4, 4, 3), np.float32), {}, 'dtype'),
    (np.zeros((4, 4, 4), np.uint8), {}, 'shape'),
    (np.zeros((4, 3, 4), np.uint8).transpose(0, 2, 1), {}, 'C-contiguous'),
    (bytearray(47), {}, '47 bytes'),
    (bytes(48), {}, 'read-only'),
    (bytearray(48), dict(dtype=np.float32), '48 bytes'),
    (memoryview(bytearray(4 * 48 + 1))[1:], dict(dtype=np.float32), 'aligned'),
    ('out', {}, 'writable buffer'),
    (None, dict(dtype=np.float64), 'uint8 or float32'),
    (None, dict(threads=-1), 'threads'),
    (None, dict(threads=1.5), 'threads'),
    (None, dict(grid=(0, 1)), 'BevGrid'),
])
def test_bad_output_arguments_are_rejected(out, kwargs, message):
    kwargs = {'grid': SMALL, **kwargs}
    with pytest.raises(ValueError, match=message):
        bev_image(np.zeros((1, 4), np.float32), out=out, **kwargs)


def test_read_only_out_array_is_rejected():
    out = np.zeros((4, 4, 3), np.uint8)
    out.flags.writeable = False
    with pytest.raises(ValueError, match='read-only'):
        bev_image(np.zeros((1, 4), np.float32), SMALL, out=out)


def test_density_values_match_the_formula():
    values = bev.density_values()
    assert values[0] == 0 and values[63] == 1
    assert values[1] == math.log(2) / math.log(64)


def test_kernel_rejects_a_workspace_that_does_not_fit():
    from pointcloud_pipeline import _bev
    empty_i32, empty_i64 = np.zeros(1, np.int32), np.zeros(1, np.int64)
    with pytest.raises(ValueError, match='inconsistent sizes'):
        _bev.render(np.zeros(16, np.uint8), 1, 16, 0, 4, 8, 12, np.empty(0), 0.0, 0.0, 1.0, 4, 4,
                    -1.0, 1.0, 0.5, 0.0, 1.0, bev.density_values(), np.zeros(48, np.uint8),
                    False, np.zeros(1, np.uint64), empty_i32, empty_i32, np.zeros(1, np.uint64),
                    empty_i32, empty_i64, empty_i64, empty_i64, empty_i32, 1)
