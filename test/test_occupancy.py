"""Occupancy grids: known scenes, the nav_msgs layout and origin, the numpy reference, checks."""
from array import array

import numpy as np
import pytest

from pointcloud_pipeline.bev import BevGrid, bev_image
from pointcloud_pipeline.demo.synthetic import SyntheticDepthCamera, camera_pose, default_scene
from pointcloud_pipeline.depth import depth_to_cloud
from pointcloud_pipeline.occupancy import (FREE, OCCUPIED, UNKNOWN, OccupancyBands,
                                           occupancy_grid, occupancy_grid_from_buffer,
                                           occupancy_origin, occupancy_shape)
from gil_probe import gil_probe
from reference_bev import transformed_xyz
from reference_occupancy import reference_occupancy

# 4 m forward x 3 m left in 10 cm cells: 40 cells along x (columns), 30 along y (rows)
ROOM = BevGrid(x_range=(0.0, 4.0), y_range=(-1.5, 1.5), resolution=0.1)
BANDS = OccupancyBands(min_height=0.1, max_height=2.0, ground_tolerance=0.05)


@pytest.fixture(scope='module')
def kitti_points(shared_data):
    return np.fromfile(shared_data / 'kitti' / 'velodyne' / '000000.bin',
                       dtype=np.float32).reshape(-1, 4)


def cell_centres(grid):
    """x, y (metres) of every cell centre, as height x width arrays (row along y)."""
    height, width = occupancy_shape(grid)
    x = grid.x_range[0] + (np.arange(width) + 0.5) * grid.resolution
    y = grid.y_range[0] + (np.arange(height) + 0.5) * grid.resolution
    return np.meshgrid(x, y)


def patch(x_low, x_high, y_low, y_high, z_values, step=0.025):
    """Points on a regular x-y lattice (cell-centred offsets, never on a cell border) at each
    height of ``z_values``."""
    x = np.arange(x_low + step / 2, x_high, step)
    y = np.arange(y_low + step / 2, y_high, step)
    xx, yy, zz = np.meshgrid(x, y, np.asarray(z_values, np.float64), indexing='ij')
    return np.stack([xx.ravel(), yy.ravel(), zz.ravel()], axis=1)


def test_a_wall_on_a_floor_gives_the_expected_cells():
    """A floor 0 < x < 3 m (z within 2 cm of 0) and a wall 3.0 <= x < 3.2 m, y in [-1, 1)
    up to 2.5 m; beyond the wall nothing is seen."""
    floor = patch(0.0, 3.0, -1.5, 1.5, [-0.02, 0.0, 0.02])
    wall = patch(3.0, 3.2, -1.0, 1.0, np.arange(0.0, 2.5, 0.1))
    points = np.concatenate([floor, wall]).astype(np.float32)
    grid = occupancy_grid(points, ROOM, BANDS)

    x, y = cell_centres(ROOM)
    expected = np.full(occupancy_shape(ROOM), UNKNOWN, np.int8)
    expected[x < 3.0] = FREE
    expected[(x > 3.0) & (x < 3.2) & (y > -1.0) & (y < 1.0)] = OCCUPIED
    assert grid.shape == (30, 40) and grid.dtype == np.int8
    np.testing.assert_array_equal(grid, expected)
    assert np.count_nonzero(grid == OCCUPIED) == 2 * 20
    assert np.count_nonzero(grid == FREE) == 30 * 30


def test_points_outside_both_bands_neither_occupy_nor_free():
    """Per cell: only points between the bands (9 cm), below the ground (-30 cm) or above
    max_height (2.4 m) -> UNKNOWN; those over ground -> FREE; the band edges are inclusive
    (limits and heights exactly representable in float32)."""
    bands = OccupancyBands(min_height=0.125, max_height=2.0, ground_tolerance=0.0625)
    cases = {  # cell centre (x, y) -> (heights, expected)
        (0.05, -1.45): ([0.09], UNKNOWN),
        (0.15, -1.45): ([-0.3], UNKNOWN),
        (0.25, -1.45): ([2.4], UNKNOWN),
        (0.35, -1.45): ([0.09, -0.3, 2.4, 0.0], FREE),
        (0.45, -1.45): ([0.0, 0.5], OCCUPIED),
        (0.55, -1.45): ([0.0625], FREE),        # ground_tolerance
        (0.65, -1.45): ([-0.0625], FREE),
        (0.75, -1.45): ([0.125], OCCUPIED),     # min_height
        (0.85, -1.45): ([2.0], OCCUPIED),       # max_height
        (0.95, -1.45): ([np.nextafter(np.float32(2.0), np.float32(3.0))], UNKNOWN),
        (1.05, -1.45): ([np.nextafter(np.float32(0.0625), np.float32(1.0))], UNKNOWN),
        (1.15, -1.45): ([np.nextafter(np.float32(0.125), np.float32(0.0))], UNKNOWN),
    }
    points = np.array([(x, y, z) for (x, y), (heights, _) in cases.items() for z in heights],
                      np.float32)
    grid = occupancy_grid(points, ROOM, bands)
    for (x, y), (heights, expected) in cases.items():
        row, col = int((y + 1.5) / 0.1), int(x / 0.1)
        assert grid[row, col] == expected, (x, y, heights, grid[row, col])
    assert np.count_nonzero(grid != UNKNOWN) == sum(
        expected != UNKNOWN for _, expected in cases.values())


def test_a_point_lands_in_col_floor_x_and_row_floor_y_from_the_origin_corner():
    grid = BevGrid(x_range=(-2.0, 6.0), y_range=(-3.0, 1.0), resolution=0.25)
    height, width = occupancy_shape(grid)
    assert (height, width) == (16, 32) and occupancy_origin(grid) == (-2.0, -3.0, 0.0)
    known = [(-2.0, -3.0), (-1.9, -2.9), (0.3, -2.95), (-1.99, 0.99), (5.99, 0.99),
             (5.99, -3.0), (1.0, -1.0), (2.49, 0.26)]
    for x, y in known:
        cells = occupancy_grid(np.array([[x, y, 0.5]], np.float32), grid)
        col, row = int(np.floor((x - -2.0) / 0.25)), int(np.floor((y - -3.0) / 0.25))
        flat = cells.reshape(-1)
        assert np.flatnonzero(flat == OCCUPIED).tolist() == [row * width + col], (x, y)
        assert np.count_nonzero(flat != UNKNOWN) == 1
    # x_max and y_max are outside (half-open cells); x_min and y_min are inside
    for x, y in ((6.0, 0.0), (0.0, 1.0), (-2.01, 0.0), (0.0, -3.01), (np.nan, 0.0),
                 (0.0, np.inf)):
        assert (occupancy_grid(np.array([[x, y, 0.5]], np.float32), grid) == UNKNOWN).all()
    # (0, 0) is the first element, (1, 0) the next one in x, (0, 1) at index width
    points = np.array([[-1.9, -2.9, 0.5], [-1.6, -2.9, 0.0], [-1.9, -2.6, 0.5]], np.float32)
    flat = occupancy_grid(points, grid).reshape(-1)
    assert flat[:2].tolist() == [OCCUPIED, FREE] and flat[width] == OCCUPIED


def test_the_grid_is_the_bev_image_flipped_and_transposed(kitti_points):
    """Obstacle band == the BEV's z_range: a cell is OCCUPIED exactly where the BEV image has
    a point, with occupancy[row, col] == bev[rows - 1 - col, cols - 1 - row]."""
    grid = BevGrid(x_range=(-20.0, 40.0), y_range=(-30.0, 30.0), z_range=(-1.5, 0.5),
                   resolution=0.2)
    bands = OccupancyBands(min_height=0.23, max_height=2.23, ground_tolerance=0.2,
                           ground_z=-1.73)
    cells = occupancy_grid(kitti_points, grid, bands)
    image = bev_image(kitti_points, grid)
    assert cells.shape == (grid.cols, grid.rows)
    np.testing.assert_array_equal(cells == OCCUPIED, image.any(axis=2)[::-1, ::-1].T)
    assert np.count_nonzero(cells == OCCUPIED) > 5000 and np.count_nonzero(cells == FREE) > 1000


def test_equals_the_numpy_reference_for_any_thread_count(kitti_points):
    grid = BevGrid(x_range=(-40.0, 40.0), y_range=(-40.0, 40.0), resolution=0.1)
    bands = OccupancyBands(min_height=0.3, max_height=2.0, ground_tolerance=0.15,
                           ground_z=-1.73)
    x, y, z = kitti_points[:, 0], kitti_points[:, 1], kitti_points[:, 2]
    expected = reference_occupancy(x, y, z, grid, bands)
    assert min(np.count_nonzero(expected == v) for v in (FREE, OCCUPIED)) > 5000
    for threads in (1, 2, 3, 8):
        np.testing.assert_array_equal(occupancy_grid(kitti_points, grid, bands,
                                                     threads=threads), expected)
    # a yawed and shifted mounting transform, read from a 32-byte point layout in place
    yaw = 0.3
    transform = np.array([[np.cos(yaw), -np.sin(yaw), 0.0, 1.5],
                          [np.sin(yaw), np.cos(yaw), 0.0, -0.5],
                          [0.0, 0.0, 1.0, 1.73], [0.0, 0.0, 0.0, 1.0]])
    rows = np.zeros((len(kitti_points), 8), np.float32)
    rows[:, 5], rows[:, 2], rows[:, 7] = x, y, z
    flat = np.ascontiguousarray(rows).view(np.uint8).reshape(-1)
    level = OccupancyBands(min_height=0.3, max_height=2.0, ground_tolerance=0.15)
    expected = reference_occupancy(x, y, z, grid, level, transform)
    for threads in (1, 2, 5):
        np.testing.assert_array_equal(occupancy_grid_from_buffer(
            flat, 32, len(rows), x_offset=20, y_offset=8, z_offset=28, grid=grid, bands=level,
            transform=transform, threads=threads), expected)


def test_a_camera_view_of_the_demo_room_through_depth_to_cloud():
    """The demo's synthetic camera at t = 0 s, its cloud taken into the room frame by its pose:
    walls and furniture occupy, the floor it sees is free, the rest unknown."""
    camera = SyntheticDepthCamera(with_color=False)
    pose = camera_pose(0.0)
    cloud = depth_to_cloud(camera.render(pose=pose).depth_mm, camera.intrinsics)
    grid = BevGrid(x_range=(-5.5, 5.5), y_range=(-4.5, 4.5), resolution=0.1)
    cells = occupancy_grid_from_buffer(cloud.data, cloud.point_step, cloud.width * cloud.height,
                                       grid=grid, bands=BANDS, transform=pose, threads=2)
    xyz = cloud.xyz().reshape(-1, 3)
    np.testing.assert_array_equal(
        cells, reference_occupancy(xyz[:, 0], xyz[:, 1], xyz[:, 2], grid, BANDS, pose))

    def at(x, y):
        return cells[int(np.floor((y + 4.5) / 0.1)), int(np.floor((x + 5.5) / 0.1))]

    x, y = cell_centres(grid)
    scene = default_scene()
    (x0, y0, _), (x1, y1, _) = scene.room_min, scene.room_max
    near = 0.1 + 1e-9  # a cell centre within one cell (10 cm) of a surface
    near_wall = (np.minimum(np.abs(x - x0), np.abs(x - x1)) <= near) | (
        np.minimum(np.abs(y - y0), np.abs(y - y1)) <= near)
    in_box = np.zeros(x.shape, bool)   # footprint grown by one cell
    under_box = np.zeros(x.shape, bool)  # footprint shrunk by one cell
    for box in scene.boxes:
        (bx0, by0, _), (bx1, by1, _) = box.min_corner, box.max_corner
        in_box |= (x > bx0 - near) & (x < bx1 + near) & (y > by0 - near) & (y < by1 + near)
        under_box |= (x > bx0 + near) & (x < bx1 - near) & (y > by0 + near) & (y < by1 - near)
    inside_room = (x > x0) & (x < x1) & (y > y0) & (y < y1)
    occupied, free = cells == OCCUPIED, cells == FREE
    assert occupied.sum() > 150 and free.sum() > 800
    assert not (occupied & ~(near_wall | in_box)).any()   # obstacles only at walls and boxes
    assert not (free & (under_box | ~inside_room)).any()  # free only on the open floor
    assert (occupied & near_wall).sum() > 100           # the north wall, y = 4 m
    assert ((cells[74:76, 45:60] == OCCUPIED).any(axis=0)).all()  # the sofa's front at y = 3 m
    assert at(1.0, 2.0) == FREE and at(-0.5, 2.5) == FREE       # floor in view
    assert at(3.0, -2.0) == UNKNOWN and at(0.0, -4.3) == UNKNOWN  # behind the camera


def test_out_buffers_are_filled_in_place_and_reused_workspace_stays_clean(kitti_points):
    big = BevGrid(x_range=(-40.0, 40.0), y_range=(-40.0, 40.0), resolution=0.2)
    small = BevGrid(x_range=(0.0, 10.0), y_range=(-5.0, 5.0), resolution=0.5)
    bands = OccupancyBands(min_height=0.3, ground_tolerance=0.15, ground_z=-1.73)
    expected_big = occupancy_grid(kitti_points, big, bands)
    height, width = occupancy_shape(small)
    for out in (np.empty((height, width), np.int8), array('b', bytes(height * width)),
                bytearray(height * width)):
        result = occupancy_grid(kitti_points, small, bands, out=out)
        assert np.shares_memory(result, np.frombuffer(out, np.int8))
        np.testing.assert_array_equal(np.frombuffer(out, np.int8).reshape(height, width),
                                      occupancy_grid(kitti_points[::-1].copy(), small, bands))
    # a smaller grid in between leaves no marks behind for the larger one
    np.testing.assert_array_equal(occupancy_grid(kitti_points, big, bands), expected_big)
    empty = occupancy_grid(np.empty((0, 3), np.float32), big, bands)
    assert (empty == UNKNOWN).all()
    nan = occupancy_grid(np.full((100, 4), np.nan, np.float32), big, bands)
    assert (nan == UNKNOWN).all()


def test_kernel_releases_the_gil(kitti_points):
    """A Python thread keeps running while grids are computed; a GIL-holding call stops it."""
    grid = BevGrid(x_range=(-40.0, 40.0), y_range=(-40.0, 40.0), resolution=0.1)
    out = np.empty(occupancy_shape(grid), np.int8)
    points = np.concatenate([kitti_points] * 4)
    with gil_probe() as ticks_during:
        held = ticks_during(lambda: sum(i * i for i in range(300_000)))  # holds the GIL
        released = ticks_during(lambda: [occupancy_grid(points, grid, out=out, threads=1)
                                         for _ in range(20)])
    assert held == 0
    assert released > 20, released


@pytest.mark.parametrize('kwargs,message', [
    (dict(ground_tolerance=0.1, min_height=0.1), 'smaller than min_height'),
    (dict(ground_tolerance=0.2, min_height=0.1), 'overlap'),
    (dict(min_height=1.0, max_height=0.5), 'max_height'),
    (dict(ground_tolerance=-0.01), '>= 0'),
    (dict(max_height=float('nan')), 'finite'),
    (dict(ground_z=float('inf')), 'finite'),
    (dict(min_height='high'), 'number'),
])
def test_bands_are_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        OccupancyBands(**kwargs)


def test_bad_arguments_are_rejected_with_the_reason():
    points = np.zeros((10, 3), np.float32)
    height, width = occupancy_shape(ROOM)
    cases = [
        (lambda: occupancy_grid(points.astype(np.float64), ROOM), 'float32'),
        (lambda: occupancy_grid(points[:, :2].copy(), ROOM), 'C >= 3'),
        (lambda: occupancy_grid(list(points), ROOM), 'numpy array'),
        (lambda: occupancy_grid(points, 'grid'), 'BevGrid'),
        (lambda: occupancy_grid(points, ROOM, (0.1, 2.0)), 'OccupancyBands'),
        (lambda: occupancy_grid(points, ROOM, threads=-1), 'threads'),
        (lambda: occupancy_grid(points, ROOM, transform=np.eye(3)), '4x4'),
        (lambda: occupancy_grid(points, ROOM, transform=np.diag([2.0, 1, 1, 1])), 'rigid'),
        (lambda: occupancy_grid(points, ROOM, out=np.empty((width, height), np.int8)),
         'shape'),
        (lambda: occupancy_grid(points, ROOM, out=np.empty((height, width), np.uint8)),
         'int8'),
        (lambda: occupancy_grid(points, ROOM, out=bytes(height * width)), 'read-only'),
        (lambda: occupancy_grid(points, ROOM, out=bytearray(height * width + 1)), 'exactly'),
        (lambda: occupancy_grid_from_buffer(bytes(100), 12, 9, grid=ROOM), 'need 108'),
        (lambda: occupancy_grid_from_buffer(bytes(120), 12, 10, z_offset=9, grid=ROOM),
         'z_offset'),
        (lambda: occupancy_grid_from_buffer(bytes(120), 2, 10, grid=ROOM), 'point_step'),
        (lambda: occupancy_grid_from_buffer(bytes(120), 12, -1, grid=ROOM), 'num_points'),
        (lambda: occupancy_grid_from_buffer(bytes(120), 12.0, 10, grid=ROOM), 'integers'),
        (lambda: occupancy_grid_from_buffer(object(), 12, 10, grid=ROOM), 'bytes-like'),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()


def test_reference_uses_the_bev_height_rule():
    """The float32 height after the transform (reference_bev): a transformed z of
    0.1 - 1e-9 rounds up to float32(0.1) > 0.1 and occupies, as in the BEV."""
    transform = np.eye(4)
    transform[2, 3] = 0.1 - 1e-9
    points = np.array([[0.05, 0.05, 0.0]], np.float32)
    _, _, z = transformed_xyz(points[:, 0], points[:, 1], points[:, 2], transform)
    assert z[0] == np.float32(0.1)
    cells = occupancy_grid(points, ROOM, BANDS, transform=transform)
    assert cells[15, 0] == OCCUPIED
    np.testing.assert_array_equal(cells, reference_occupancy(
        points[:, 0], points[:, 1], points[:, 2], ROOM, BANDS, transform))
