"""Rasterisation kernel (PDAL writers.gdal semantics): hand-made clouds with their answers
written out, the numpy reference on real LAS/LAZ files, bit-identity over threads, blocks and
windows, bucketing against brute force, mosaics of snapped grids, the geotransform, window fill
(fill_nodata), the GIL and every rejection."""
from concurrent.futures import ThreadPoolExecutor
import math

import numpy as np
import pytest

from gil_probe import gil_probe
from pointcloud_pipeline import raster
from pointcloud_pipeline.raster import (OUTPUT_TYPES, RasterGrid, RasterSettings, blocks,
                                        bucket_points, fill_nodata, rasterize,
                                        rasterize_window)
from reference_raster import assert_matches_reference, reference_raster

DBL_MAX = np.finfo(np.float64).max
# real files: (path under las/, resolution in the file's units: feet for Autzen, metres for lidR)
REAL_FILES = {'autzen': ('pdal/autzen_trim.las', 10.0), 'megaplot': ('lidr/Megaplot.laz', 1.0)}


def read_las(path):
    laspy = pytest.importorskip('laspy', reason='laspy is not installed: pip install '
                                                'laspy==2.7.0 lazrs==0.8.2 (LAS/LAZ reading)')
    if path.suffix == '.laz':
        pytest.importorskip('lazrs', reason='lazrs is not installed: pip install lazrs==0.8.2 '
                                            '(LAZ decompression for laspy)')
    las = laspy.read(path)
    return {'x': np.asarray(las.x, np.float64), 'y': np.asarray(las.y, np.float64),
            'z': np.asarray(las.z, np.float64),
            'intensity': np.asarray(las.intensity, np.float64)}


@pytest.fixture(scope='module')
def clouds(shared_data):
    return {name: read_las(shared_data / 'las' / path) for name, (path, _) in REAL_FILES.items()}


@pytest.fixture(scope='module')
def megaplot(clouds):
    return clouds['megaplot']


def bounds_of(cloud):
    return cloud['x'].min(), cloud['y'].min(), cloud['x'].max(), cloud['y'].max()


def same_bytes(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype == np.float64, name
        assert a[name].shape == b[name].shape, name
        assert a[name].tobytes() == b[name].tobytes(), name


# --- hand-made clouds -----------------------------------------------------------------------

# a 5 x 2 grid of 1 m cells from (0, 0): centres x = 0.5 .. 4.5, y = 0.5 (bottom), 1.5 (top)
HAND_GRID = RasterGrid.from_origin(0.0, 0.0, 5, 2, 1.0)
# P1 on the centre of the bottom-left cell; P2 on a cell corner; P3 above the grid (y > 2)
HAND_X, HAND_Y, HAND_V = [0.5, 2.0, 2.2], [0.5, 1.0, 2.3], [10.0, 20.0, 40.0]
NAN = np.nan


def distance(cx, cy, x, y):
    dx, dy = cx - x, cy - y
    return math.sqrt(dx * dx + dy * dy)


def test_radius_mode_by_hand():
    """Default radius sqrt(2): P1 reaches its own centre (d = 0) and the two edge neighbours
    (d = 1), not the diagonal one at exactly sqrt(2) (strict test); P2 reaches its four
    corner cells at sqrt(0.5); P3, outside the grid, reaches the top cells of columns 1 and 2.
    Columns 3 and 4 are empty. Rows are top-down."""
    result = rasterize(HAND_X, HAND_Y, HAND_V, HAND_GRID)
    assert list(result) == list(OUTPUT_TYPES)
    np.testing.assert_array_equal(result['count'], [[1, 2, 2, 0, 0], [1, 2, 1, 0, 0]])
    np.testing.assert_array_equal(result['min'], [[10, 20, 20, NAN, NAN], [10, 10, 20, NAN, NAN]])
    np.testing.assert_array_equal(result['max'], [[10, 40, 40, NAN, NAN], [10, 20, 20, NAN, NAN]])
    np.testing.assert_array_equal(result['mean'],
                                  [[10, 30, 30, NAN, NAN], [10, 15, 20, NAN, NAN]])
    np.testing.assert_array_equal(result['stdev'], [[0, 10, 10, NAN, NAN], [0, 5, 0, NAN, NAN]])
    d2 = math.sqrt(0.5)                       # P2 to any of its four cells
    d3_top_1 = distance(1.5, 1.5, 2.2, 2.3)   # P3 to the top cell of column 1
    d3_top_2 = distance(2.5, 1.5, 2.2, 2.3)
    idw_top_1 = (20 / d2 + 40 / d3_top_1) / (1 / d2 + 1 / d3_top_1)
    idw_top_2 = (20 / d2 + 40 / d3_top_2) / (1 / d2 + 1 / d3_top_2)
    idw_bottom_1 = (10 / 1.0 + 20 / d2) / (1 / 1.0 + 1 / d2)  # P1 at d = 1, then P2
    expected_idw = [[10, idw_top_1, idw_top_2, NAN, NAN], [10, idw_bottom_1, 20, NAN, NAN]]
    np.testing.assert_allclose(result['idw'], expected_idw, rtol=1e-15)
    assert result['idw'][1, 0] == 10  # P1 lies on the centre: its value, exactly


def test_bin_mode_by_hand():
    """Each point counts only in its own cell, at distance 0: idw = the first point's value.
    P3 lies outside the grid and counts nowhere."""
    x, y, v = HAND_X + [2.9, 2.1], HAND_Y + [1.9, 1.2], HAND_V + [30.0, 26.0]
    result = rasterize(x, y, v, HAND_GRID, RasterSettings(binmode=True))
    np.testing.assert_array_equal(result['count'], [[0, 0, 3, 0, 0], [1, 0, 0, 0, 0]])
    np.testing.assert_array_equal(result['min'], [[NAN, NAN, 20, NAN, NAN],
                                                  [10, NAN, NAN, NAN, NAN]])
    np.testing.assert_array_equal(result['max'], [[NAN, NAN, 30, NAN, NAN],
                                                  [10, NAN, NAN, NAN, NAN]])
    np.testing.assert_array_equal(result['idw'], [[NAN, NAN, 20, NAN, NAN],
                                                  [10, NAN, NAN, NAN, NAN]])
    np.testing.assert_allclose(result['mean'][0, 2], 76 / 3, rtol=1e-15)
    np.testing.assert_allclose(result['stdev'][0, 2], np.std([20.0, 30.0, 26.0]), rtol=1e-14)
    # a radius is ignored in bin mode
    same_bytes(rasterize(x, y, v, HAND_GRID, RasterSettings(binmode=True, radius=9.0)), result)


def test_power_two_and_custom_radius():
    grid = RasterGrid.from_origin(0.0, 0.0, 3, 1, 1.0)
    x, y, v = [0.9, 2.2], [0.5, 0.4], [10.0, 30.0]
    result = rasterize(x, y, v, grid, RasterSettings(power=2.0, radius=1.5))
    d = [[distance(c + 0.5, 0.5, px, py) for px, py in zip(x, y)] for c in range(3)]
    for c in range(3):
        near = [i for i in range(2) if d[c][i] < 1.5]
        weights = [1 / d[c][i] ** 2 for i in near]
        expected = sum(w * v[i] for w, i in zip(weights, near)) / sum(weights)
        np.testing.assert_allclose(result['idw'][0, c], expected, rtol=1e-14)
        assert result['count'][0, c] == len(near)
    # (0.9, 0.5) is 1.6 >= 1.5 from the centre of column 2, (2.2, 0.4) 1.70 from column 0
    np.testing.assert_array_equal(result['count'], [[1, 2, 1]])


def test_exact_hit_takes_the_value_whatever_the_order():
    """A point on the centre (d = 0) sets idw to its value; later points change nothing,
    earlier ones are forgotten (PDAL's idwDist = NaN)."""
    grid = RasterGrid.from_origin(0.0, 0.0, 1, 1, 2.0)
    x, y, v = [0.3, 1.0, 1.7, 1.0], [0.4, 1.0, 1.2, 1.0], [5.0, 7.0, 9.0, 11.0]
    result = rasterize(x, y, v, grid)
    assert result['idw'][0, 0] == 7.0 and result['count'][0, 0] == 4
    assert result['mean'][0, 0] == 8.0


def test_point_outside_the_grid_contributes_within_the_radius():
    grid = RasterGrid.from_origin(100.0, 200.0, 2, 2, 1.0)
    x, y, v = [99.2, 102.9], [200.6, 201.5], [3.0, 4.0]  # left of and right of the grid
    result = rasterize(x, y, v, grid)
    # (99.2, 200.6) to the centres (100.5, 200.5) and (100.5, 201.5): 1.304 and 1.581
    # (102.9, 201.5) to (101.5, 201.5) and (101.5, 200.5): 1.4 and 1.720
    np.testing.assert_array_equal(result['count'], [[0, 1], [1, 0]])
    np.testing.assert_array_equal(result['max'], [[NAN, 4.0], [3.0, NAN]])
    binned = rasterize(x, y, v, grid, RasterSettings(binmode=True))
    np.testing.assert_array_equal(binned['count'], np.zeros((2, 2)))
    assert np.isnan(binned['max']).all()


def test_window_fill_by_hand():
    """A 5 x 1 grid with points in columns 0 (10) and 3 (40), bin mode."""
    grid = RasterGrid.from_origin(0.0, 0.0, 5, 1, 1.0)
    x, y, v = [0.5, 3.5], [0.5, 0.5], [10.0, 40.0]
    one = rasterize(x, y, v, grid, RasterSettings(binmode=True, window_size=1))
    # column 1: donor column 0 at d = 1; column 2: donor 3; column 4: donor 3; no cell takes
    # another filled cell as a donor
    np.testing.assert_array_equal(one['max'], [[10, 10, 40, 40, 40]])
    np.testing.assert_array_equal(one['count'], [[1, 0, 0, 1, 0]])  # count is not filled
    two = rasterize(x, y, v, grid, RasterSettings(binmode=True, window_size=2))
    # column 1: (10 / 1 + 40 / 2) / (1 + 1 / 2) = 20; column 2: (10 / 2 + 40) / 1.5 = 30;
    # column 4: donor 3 at d = 1 only (column 0 is 4 away)
    np.testing.assert_array_equal(two['mean'], [[10, 20, 30, 40, 40]])
    np.testing.assert_array_equal(two['stdev'], [[0, 0, 0, 0, 0]])
    lonely = rasterize([0.5], [0.5], [10.0], grid, RasterSettings(binmode=True, window_size=1))
    np.testing.assert_array_equal(lonely['min'], [[10, 10, NAN, NAN, NAN]])


def test_window_fill_in_two_dimensions_uses_chebyshev_distance():
    grid = RasterGrid.from_origin(0.0, 0.0, 3, 3, 1.0)
    x, y, v = [0.5, 2.5, 1.5], [0.5, 0.5, 2.5], [3.0, 6.0, 12.0]  # three cells of the grid
    result = rasterize(x, y, v, grid, RasterSettings(binmode=True, window_size=1,
                                                     output_types='mean'))
    assert list(result) == ['mean']
    # centre (1, 1): all three donors at d = 1
    np.testing.assert_allclose(result['mean'][1, 1], 7.0, rtol=1e-15)
    # top-left (row 0, col 0): donors (1, 2) ... only the top-centre one (12) is within 1
    assert result['mean'][0, 0] == 12.0
    # bottom-centre (row 2, col 1): donors bottom-left 3 and bottom-right 6 at d = 1
    assert result['mean'][2, 1] == 4.5


def test_nan_and_infinite_values_follow_std_min_max():
    """PDAL's std::min(val, min) / std::max(val, max): a NaN value replaces the running value
    and the next number replaces the NaN; mean and stdev turn NaN; initial values DBL_MAX and
    -DBL_MAX survive +inf / -inf values. The branch-free path (min/max/count only) agrees."""
    grid = RasterGrid.from_origin(0.0, 0.0, 4, 1, 1.0)
    x = [0.5, 0.5, 0.5, 1.5, 1.5, 1.5, 2.5, 3.5]
    v = [1.0, NAN, 3.0, 1.0, 3.0, NAN, np.inf, -np.inf]
    y = [0.5] * len(x)
    for settings in (RasterSettings(binmode=True), RasterSettings(radius=0.4),
                     RasterSettings(radius=0.4, output_types=('min', 'max'))):
        result = rasterize(x, y, v, grid, settings)
        np.testing.assert_array_equal(result['min'], [[3.0, NAN, DBL_MAX, -np.inf]])
        np.testing.assert_array_equal(result['max'], [[3.0, NAN, np.inf, -DBL_MAX]])
        if 'mean' in result:
            np.testing.assert_array_equal(result['count'], [[3, 3, 1, 1]])
            assert np.isnan(result['mean'][0, :2]).all()
            assert np.isnan(result['stdev'][0, :2]).all()


def test_empty_cells_are_nan_and_count_zero_also_without_points():
    grid = RasterGrid(2.0, 7, 3, 10.0, 20.0)
    for block_size in (2, 256):
        result = rasterize([], [], [], grid, block_size=block_size)
        np.testing.assert_array_equal(result['count'], np.zeros((3, 7)))
        for name in ('min', 'max', 'mean', 'idw', 'stdev'):
            assert result[name].shape == (3, 7) and np.isnan(result[name]).all()
    filled = rasterize([], [], [], grid, RasterSettings(window_size=3))
    assert np.isnan(filled['mean']).all()


# --- the numpy reference on real files -------------------------------------------------------

REFERENCE_CASES = [
    ('autzen', 'z', {}), ('autzen', 'intensity', {}), ('autzen', 'z', {'binmode': True}),
    ('autzen', 'z', {'radius': 27.0, 'power': 2.0}), ('autzen', 'intensity', {'window_size': 2}),
    ('megaplot', 'z', {}), ('megaplot', 'intensity', {'binmode': True, 'window_size': 3}),
    ('megaplot', 'z', {'radius': 0.6}), ('megaplot', 'z', {'window_size': 1, 'power': 0.5}),
]


@pytest.mark.parametrize('name, dimension, options', REFERENCE_CASES)
def test_matches_the_numpy_reference_on_real_files(clouds, name, dimension, options):
    cloud = clouds[name]
    resolution = REAL_FILES[name][1]
    values = cloud[dimension]
    grid = RasterGrid.from_bounds(*bounds_of(cloud), resolution)
    result = rasterize(cloud['x'], cloud['y'], values, grid, RasterSettings(**options),
                       block_size=64)
    expected = reference_raster(cloud['x'], cloud['y'], values, grid, **options)
    assert_matches_reference(result, expected, values)
    counts = result['count']
    assert (counts == 0).any() and counts.max() > 3  # the case has empty and busy cells


@pytest.mark.parametrize('options', [{}, {'radius': 2.7}, {'radius': 0.6}, {'radius': 0.707},
                                     {'binmode': True}, {'window_size': 2}])
def test_branch_free_subsets_equal_the_full_computation(megaplot, options):
    """Only count / min / max asked: a separate branch-free scatter (unrolled for 3 x 3
    candidates); its bands equal those of the general path bit for bit. Radius 0.707 cells:
    3 x 3 candidates, yet the corners of a point's own cell are outside the radius."""
    grid = RasterGrid.snapped(*bounds_of(megaplot), 1.0)
    points = megaplot['x'], megaplot['y'], megaplot['z']
    full = rasterize(*points, grid, RasterSettings(**options))
    for types in (('max',), ('min',), ('count',), ('min', 'max'), ('max', 'count')):
        subset = rasterize(*points, grid, RasterSettings(output_types=types, **options))
        same_bytes(subset, {name: full[name] for name in types})


# --- bit-identity over threads, blocks and windows -------------------------------------------

@pytest.mark.parametrize('options', [{'window_size': 2}, {'radius': 2.5, 'power': 2.0},
                                     {'binmode': True, 'window_size': 1}])
def test_bit_identical_for_any_threads_and_block_size(megaplot, options):
    grid = RasterGrid.snapped(*bounds_of(megaplot), 1.0)
    settings = RasterSettings(**options)
    points = megaplot['x'], megaplot['y'], megaplot['z']
    expected = rasterize(*points, grid, settings, threads=1, block_size=256)
    for threads, block_size in ((2, 256), (1, 64), (2, 16), (2, 1000)):
        same_bytes(rasterize(*points, grid, settings, threads=threads, block_size=block_size),
                   expected)


def window_points(cloud, grid, window, margin):
    """The points within ``margin`` (a square around the window's cell rectangle)."""
    col_off, row_off, width, height = window
    x_left, res, _, y_top, _, _ = grid.transform
    x0, x1 = x_left + col_off * res - margin, x_left + (col_off + width) * res + margin
    y1, y0 = y_top - row_off * res + margin, y_top - (row_off + height) * res - margin
    near = ((cloud['x'] >= x0) & (cloud['x'] <= x1) & (cloud['y'] >= y0)
            & (cloud['y'] <= y1))
    return cloud['x'][near], cloud['y'][near], cloud['z'][near]


@pytest.mark.parametrize('options', [{'window_size': 2}, {'radius': 3.1},
                                     {'binmode': True, 'window_size': 3},
                                     {'output_types': ('max',)}])
def test_a_window_with_its_margin_points_equals_the_whole_raster(megaplot, options):
    grid = RasterGrid.snapped(*bounds_of(megaplot), 1.0)
    settings = RasterSettings(**options)
    whole = rasterize(megaplot['x'], megaplot['y'], megaplot['z'], grid, settings)
    margin = settings.point_margin(grid.resolution)
    for window in ((37, 51, 60, 45), (0, 0, 30, 20), (grid.width - 17, grid.height - 9, 17, 9),
                   (0, 0, grid.width, grid.height)):
        col_off, row_off, width, height = window
        expected = {name: band[row_off:row_off + height, col_off:col_off + width]
                    for name, band in whole.items()}
        same_bytes(rasterize_window(*window_points(megaplot, grid, window, margin), grid,
                                    window, settings), expected)
    # more points than needed change nothing
    window = (37, 51, 60, 45)
    same_bytes(rasterize_window(megaplot['x'], megaplot['y'], megaplot['z'], grid, window,
                                settings),
               {name: band[51:96, 37:97] for name, band in whole.items()})


def test_bucketed_blocks_equal_the_whole_raster(megaplot):
    grid = RasterGrid.from_bounds(*bounds_of(megaplot), 0.8)
    settings = RasterSettings(window_size=1, radius=1.9)
    whole = rasterize(megaplot['x'], megaplot['y'], megaplot['z'], grid, settings,
                      block_size=100000)
    order, starts = bucket_points(megaplot['x'], megaplot['y'], grid, 50,
                                  settings.point_margin(grid.resolution))
    windows = blocks(grid, 50)
    assert len(starts) == len(windows) + 1
    for b, (col_off, row_off, width, height) in enumerate(windows):
        index = order[starts[b]:starts[b + 1]]
        expected = {name: band[row_off:row_off + height, col_off:col_off + width]
                    for name, band in whole.items()}
        window = (col_off, row_off, width, height)
        same_bytes(rasterize_window(megaplot['x'][index], megaplot['y'][index],
                                    megaplot['z'][index], grid, window, settings), expected)
        if b % 7 == 0:  # the same without copies: positions into the whole arrays
            same_bytes(rasterize_window(megaplot['x'], megaplot['y'], megaplot['z'], grid,
                                        window, settings, index=index), expected)


def test_a_window_of_a_huge_grid_needs_memory_for_the_window_only():
    """A 2**31 - 1 square grid (far more cells than memory): a window's accumulators are the
    window's and its halo's; the result equals the same cells of a small grid."""
    huge = RasterGrid(1.0, 2 ** 31 - 1, 2 ** 31 - 1, offset_x=-1000, offset_y=-2 ** 31 + 1000)
    # the small grid holds every cell the points reach, and more than the window-fill halo
    small = RasterGrid(1.0, 60, 50, offset_x=-20, offset_y=-20)
    rng = np.random.default_rng(3)
    x, y = rng.uniform(-12, 32, 5000), rng.uniform(-12, 22, 5000)
    v = rng.normal(size=5000)
    settings = RasterSettings(window_size=2)
    expected = rasterize(x, y, v, small, settings)
    assert (expected['count'][:5] == 0).all() and (expected['count'][:, -5:] == 0).all()
    # the huge grid's window over the small grid's cells
    row, col = huge.cell_of(*small.cell_centre(0, 0))
    window = (int(col), int(row), small.width, small.height)
    same_bytes(rasterize_window(x, y, v, huge, window, settings), expected)


def test_concurrent_calls_from_python_threads(megaplot):
    grid = RasterGrid.snapped(*bounds_of(megaplot), 1.0)
    points = megaplot['x'], megaplot['y'], megaplot['z']
    expected = rasterize(*points, grid, threads=1)
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: rasterize(*points, grid, threads=2), range(3)))
    for result in results:
        same_bytes(result, expected)


# --- bucketing ----------------------------------------------------------------------------

def test_bucket_points_against_brute_force(megaplot):
    rng = np.random.default_rng(4)
    grid = RasterGrid.from_bounds(*bounds_of(megaplot), 0.7)
    # the real points, points outside the grid, and points on block edges
    x_left, res, _, y_top, _, _ = grid.transform
    edges_x = x_left + 20 * res * rng.integers(0, grid.width // 20, 300)
    edges_y = y_top - 20 * res * rng.integers(0, grid.height // 20, 300)
    x = np.concatenate([megaplot['x'], rng.uniform(x_left - 30, x_left + 200, 3000), edges_x])
    y = np.concatenate([megaplot['y'], rng.uniform(y_top - 200, y_top + 30, 3000), edges_y])
    for block_size, margin in ((20, 0.0), (20, 1.3), (64, 5.0), (1000, 2.0)):
        order, starts = bucket_points(x, y, grid, block_size, margin, threads=2)
        windows = blocks(grid, block_size)
        assert starts[0] == 0 and len(starts) == len(windows) + 1 and starts[-1] == len(order)
        seen = np.zeros(len(x), bool)
        for b, (col_off, row_off, width, height) in enumerate(windows):
            members = order[starts[b]:starts[b + 1]]
            assert (np.diff(members) > 0).all()  # input order, no repeats
            x0, x1 = x_left + col_off * res, x_left + (col_off + width) * res
            y1, y0 = y_top - row_off * res, y_top - (row_off + height) * res
            gap = np.maximum(np.maximum(x0 - x, x - x1), np.maximum(y0 - y, y - y1))
            needed = np.flatnonzero(gap <= margin)
            allowed = np.flatnonzero(gap <= margin + 1e-6)
            assert np.isin(needed, members).all(), (block_size, margin, b)
            assert np.isin(members, allowed).all(), (block_size, margin, b)
            seen[members] = True
        # a point in no block is farther than the margin from the grid
        x_right, y_bottom = x_left + grid.width * res, y_top - grid.height * res
        gap = np.maximum(np.maximum(x_left - x, x - x_right), np.maximum(y_bottom - y, y - y_top))
        assert (gap[~seen] > margin).all()
        # the same with one thread
        single = bucket_points(x, y, grid, block_size, margin, threads=1)
        assert single[0].tobytes() == order.tobytes()
        assert single[1].tobytes() == starts.tobytes()


def test_blocks_cut_the_grid_row_major_from_the_top_left():
    grid = RasterGrid(1.0, 10, 7)
    assert blocks(grid, 4) == [(0, 0, 4, 4), (4, 0, 4, 4), (8, 0, 2, 4),
                               (0, 4, 4, 3), (4, 4, 4, 3), (8, 4, 2, 3)]
    assert blocks(grid, 10) == [(0, 0, 10, 7)]


# --- snapped grids, geotransform, mosaics ----------------------------------------------------

def test_grid_constructors_and_geotransform():
    snapped = RasterGrid.snapped(0.3, -0.7, 9.2, 5.0, 2.0)
    # columns 0..4 (x 0..10), rows from the bottom -1..2 (y -2..6)
    assert (snapped.offset_x, snapped.offset_y, snapped.width, snapped.height) == (0, -1, 5, 4)
    assert snapped.transform == (0.0, 2.0, 0.0, 6.0, 0.0, -2.0)
    pdal = RasterGrid.from_bounds(0.3, -0.7, 9.2, 5.0, 2.0)
    assert (pdal.width, pdal.height, pdal.base_x, pdal.base_y) == (5, 3, 0.3, -0.7)
    assert pdal.transform == (0.3, 2.0, 0.0, -0.7 + 6.0, 0.0, -2.0)
    origin = RasterGrid.from_origin(10.0, 20.0, 4, 3, 0.5)
    assert origin.transform == (10.0, 0.5, 0.0, 21.5, 0.0, -0.5)
    assert origin.cell_centre(0, 0) == (10.25, 21.25)   # top-left cell
    assert origin.cell_centre(2, 3) == (11.75, 20.25)   # bottom-right cell
    rows, cols = origin.cell_of([10.0, 11.99, 10.3], [20.0, 21.49, 23.0])
    np.testing.assert_array_equal(rows, [2, 0, -4])  # y = 23 is in [23, 23.5): 4 rows north
    np.testing.assert_array_equal(cols, [0, 3, 0])


def test_a_real_point_lies_in_its_cell(clouds):
    cloud = clouds['autzen']
    px, py = cloud['x'][12345], cloud['y'][12345]
    for grid in (RasterGrid.snapped(*bounds_of(cloud), 5.0),
                 RasterGrid.from_bounds(*bounds_of(cloud), 3.0)):
        row, col = grid.cell_of(px, py)
        assert 0 <= row < grid.height and 0 <= col < grid.width
        cx, cy = grid.cell_centre(row, col)
        assert abs(cx - px) <= grid.resolution / 2 and abs(cy - py) <= grid.resolution / 2
        x_left, res, _, y_top, _, neg_res = grid.transform
        assert neg_res == -res
        assert x_left + col * res <= px < x_left + (col + 1) * res
        assert y_top - (row + 1) * res <= py < y_top - row * res
        # the point's bin-mode count lands in that cell
        binned = rasterize([px], [py], [1.0], grid, RasterSettings(binmode=True))
        assert binned['count'][row, col] == 1 and binned['count'].sum() == 1


def test_snapped_grids_share_cell_centres_bit_for_bit():
    a = RasterGrid.snapped(684766.39, 5017773.08, 684993.29, 5018007.25, 0.3)
    b = RasterGrid.snapped(684900.01, 5017700.5, 685100.0, 5017900.0, 0.3)
    # the same global cell seen from both grids
    col_a, col_b = 400, 400 + a.offset_x - b.offset_x
    row_a = 100
    row_b = b.height - 1 - (a.offset_y + a.height - 1 - row_a - b.offset_y)
    assert a.cell_centre(row_a, col_a) == b.cell_centre(row_b, col_b)


def stitch(parts, grid):
    """Combines rasters of snapped grids into ``grid`` (same resolution): count by sum, min
    and max by min / max, other bands copied (they must come from one part)."""
    out = {'count': np.zeros((grid.height, grid.width)),
           'min': np.full((grid.height, grid.width), np.inf),
           'max': np.full((grid.height, grid.width), -np.inf)}
    for name in ('mean', 'idw', 'stdev'):
        out[name] = np.full((grid.height, grid.width), np.nan)
    for part_grid, bands in parts:
        # global lattice columns / rows from the bottom of the part, mapped into grid
        cols = np.arange(part_grid.width) + part_grid.offset_x - grid.offset_x
        rows_from_bottom = (part_grid.height - 1 - np.arange(part_grid.height)
                            + part_grid.offset_y - grid.offset_y)
        rows = grid.height - 1 - rows_from_bottom
        keep_c = (cols >= 0) & (cols < grid.width)
        keep_r = (rows >= 0) & (rows < grid.height)
        target = np.ix_(rows[keep_r], cols[keep_c])
        source = {name: band[np.ix_(keep_r, keep_c)] for name, band in bands.items()}
        covered = source['count'] > 0
        out['count'][target] += source['count']
        out['min'][target] = np.fmin(out['min'][target], source['min'])
        out['max'][target] = np.fmax(out['max'][target], source['max'])
        for name in ('mean', 'idw', 'stdev'):
            region = out[name][target]
            region[covered] = source[name][covered]
            out[name][target] = region
    for name in ('min', 'max'):
        out[name][out['count'] == 0] = np.nan
    return out


def test_mosaic_of_two_halves_on_snapped_grids(megaplot):
    """Split at a cell boundary by x, each half on its own snapped grid: bin mode stitches into
    the whole file's raster bit for bit (every cell's points come from one half); radius mode
    too for count, min and max when each half's grid reaches one radius beyond its points."""
    res = 1.0
    whole_grid = RasterGrid.snapped(*bounds_of(megaplot), res)
    split = res * (whole_grid.offset_x + 113)
    halves = [megaplot['x'] < split, megaplot['x'] >= split]
    for settings, pad in ((RasterSettings(binmode=True), 0.0), (RasterSettings(), res * 1.5)):
        parts = []
        for half in halves:
            cloud = {k: v[half] for k, v in megaplot.items()}
            x0, y0, x1, y1 = bounds_of(cloud)
            grid = RasterGrid.snapped(x0 - pad, y0 - pad, x1 + pad, y1 + pad, res)
            parts.append((grid, rasterize(cloud['x'], cloud['y'], cloud['z'], grid, settings)))
        assert parts[0][0].offset_x != parts[1][0].offset_x
        stitched = stitch(parts, whole_grid)
        whole = rasterize(megaplot['x'], megaplot['y'], megaplot['z'], whole_grid, settings)
        names = OUTPUT_TYPES if settings.binmode else ('count', 'min', 'max')
        for name in names:  # exact equality (NaN where empty)
            np.testing.assert_array_equal(stitched[name], whole[name], err_msg=name)


# --- window fill on any raster ---------------------------------------------------------------

def test_fill_nodata_equals_the_rasteriser_window_fill(megaplot):
    grid = RasterGrid.snapped(*bounds_of(megaplot), 0.5)  # sparse: about half the cells empty
    points = megaplot['x'], megaplot['y'], megaplot['intensity']
    plain = rasterize(*points, grid, RasterSettings(binmode=True))
    empty = plain['count'] == 0
    assert 0.2 < empty.mean() < 0.9
    for window_size in (1, 2, 4):
        filled = rasterize(*points, grid, RasterSettings(binmode=True, window_size=window_size))
        for name in ('min', 'max', 'mean', 'idw', 'stdev'):
            result = fill_nodata(plain[name], empty, window_size, threads=2)
            assert result.tobytes() == filled[name].tobytes(), (name, window_size)
        np.testing.assert_array_equal(filled['count'], plain['count'])


def test_fill_nodata_by_hand_and_on_any_array():
    array = np.array([[1.0, 0.0, 0.0],
                      [0.0, 0.0, 4.0],
                      [NAN, 0.0, 0.0]])
    empty = np.array([[False, True, True],
                      [True, True, False],
                      [True, True, True]])
    result = fill_nodata(array, empty, 1)
    # (0, 1): donors 1 and 4 at d = 1; (0, 2): 4; (1, 0): 1; (1, 1): 1, 4; (2, 0): NaN row
    # has no donor within 1 (the NaN is empty); (2, 1) and (2, 2): 4
    expected = [[1.0, 2.5, 4.0], [1.0, 2.5, 4.0], [NAN, 4.0, 4.0]]
    np.testing.assert_array_equal(result, expected)
    assert result is not array and array[0, 1] == 0.0  # a new array
    wide = fill_nodata(array, empty, 2)
    np.testing.assert_allclose(wide[2, 0], (1.0 / 2 + 4.0 / 2) / (1 / 2 + 1 / 2), rtol=1e-15)
    # a NaN donor propagates
    nan_donor = fill_nodata(np.array([[NAN, 1.0, 5.0]]), np.array([[False, True, False]]), 1)
    assert np.isnan(nan_donor[0, 1])
    # integer and strided inputs are accepted: [[0, 2, 4], [5, 7, 9], ...], the diagonal empty
    strided = fill_nodata(np.arange(20).reshape(4, 5)[:, ::2], np.eye(4, 3, dtype=bool), 1)
    assert strided.dtype == np.float64 and strided.shape == (4, 3)
    assert strided[0, 0] == (2 + 5) / 2 and strided[3, 2] == 19


# --- the GIL ---------------------------------------------------------------------------------

def test_kernels_release_the_gil(clouds):
    cloud = clouds['autzen']
    grid = RasterGrid.snapped(*bounds_of(cloud), 1.0)
    points = cloud['x'], cloud['y'], cloud['z']
    plain = rasterize(*points, grid, threads=1)
    with gil_probe() as ticks_during:
        assert ticks_during(lambda: [rasterize(*points, grid, threads=1) for _ in range(3)]) > 10
        assert ticks_during(lambda: [rasterize_window(*points, grid, (0, 0, grid.width,
                                                                      grid.height))
                                     for _ in range(3)]) > 10
        assert ticks_during(lambda: [fill_nodata(plain['mean'], plain['count'] == 0, 3,
                                                 threads=1) for _ in range(3)]) > 10


# --- internals and rejections ----------------------------------------------------------------

def test_radius_threshold_and_candidate_cells():
    rng = np.random.default_rng(5)
    for radius in [math.sqrt(2.0), 1.0, 0.1, 3.7, 1e-7, 12345.678] + list(rng.uniform(0, 9, 50)):
        t = raster._d2_threshold(radius)
        assert math.sqrt(t) >= radius > math.sqrt(math.nextafter(t, 0.0))
    np.testing.assert_array_equal(raster._column_reach(math.sqrt(2.0)), [1, 1, 1])
    np.testing.assert_array_equal(raster._column_reach(0.3), [0])
    np.testing.assert_array_equal(raster._column_reach(2.7), [1, 2, 3, 3, 3, 2, 1])


def test_settings_keep_pdal_band_order_and_margins():
    settings = RasterSettings(output_types=['stdev', 'min', 'count', 'min'])
    assert settings.output_types == ('min', 'count', 'stdev')
    assert RasterSettings(output_types='idw').output_types == ('idw',)
    assert RasterSettings().radius_for(2.0) == 2.0 * math.sqrt(2.0)
    assert RasterSettings(radius=3.0).radius_for(2.0) == 3.0
    assert math.isclose(RasterSettings(window_size=2).point_margin(1.0), math.sqrt(2) + 2,
                        rel_tol=1e-2)
    assert RasterSettings(window_size=2).point_margin(1.0) > math.sqrt(2) + 2
    assert 1.0 < RasterSettings(binmode=True, radius=50.0).point_margin(1.0) < 1.01


def test_bad_arguments_are_rejected_with_clear_messages():
    grid = RasterGrid(1.0, 10, 10)
    x = y = v = np.linspace(0.0, 9.0, 20)
    with_nan = np.where(np.arange(20) == 5, np.nan, x)
    with_inf = np.where(np.arange(20) == 7, np.inf, x)
    cases = [
        (lambda: RasterGrid(0.0, 10, 10), 'resolution must be a finite number > 0'),
        (lambda: RasterGrid(np.nan, 10, 10), 'resolution'),
        (lambda: RasterGrid('1', 10, 10), 'resolution'),
        (lambda: RasterGrid(1.0, 0, 10), 'width must be an integer from 1'),
        (lambda: RasterGrid(1.0, 10, 2 ** 31), 'height must be an integer from 1'),
        (lambda: RasterGrid(1.0, 10.0, 10), 'width'),
        (lambda: RasterGrid(1.0, 10, 10, base_x=np.inf), 'base_x must be a finite number'),
        (lambda: RasterGrid(1.0, 10, 10, offset_y=0.5), 'offset_y must be an integer'),
        (lambda: RasterGrid(1.0, 10, 10, offset_x=2 ** 41), 'offset_x'),
        (lambda: RasterGrid.snapped(0, 0, -1, 1, 1.0), 'max_x must be >= min_x'),
        (lambda: RasterGrid.snapped(0, 0, 1, np.nan, 1.0), 'max_y must be a finite number'),
        (lambda: RasterGrid.from_bounds(0, 0, 1e12, 1, 1e-3), 'width would be'),
        (lambda: RasterGrid.snapped(0, 0, 1, 1, 0), 'resolution'),
        (lambda: RasterSettings(output_types=()), 'output_types must be a non-empty subset'),
        (lambda: RasterSettings(output_types=('p50',)), 'percentiles are not supported'),
        (lambda: RasterSettings(output_types=3), 'output_types'),
        (lambda: RasterSettings(radius=0.0), 'radius must be a finite number > 0'),
        (lambda: RasterSettings(radius=np.inf), 'radius'),
        (lambda: RasterSettings(power=np.nan), 'power must be a finite number'),
        (lambda: RasterSettings(binmode=1), 'binmode must be True or False'),
        (lambda: RasterSettings(window_size=-1), 'window_size must be an integer from 0'),
        (lambda: RasterSettings(window_size=1.5), 'window_size'),
        (lambda: rasterize(x, y, v, grid, RasterSettings(radius=1e4)), 'radius must be at most'),
        (lambda: rasterize(x[:5], y, v, grid), 'same length'),
        (lambda: rasterize(x, y, v[:3], grid), 'same length'),
        (lambda: rasterize(x[None], y, v, grid), 'x must be a 1-D array'),
        (lambda: rasterize(x, y.astype(complex), v, grid), 'y must be an array of real numbers'),
        (lambda: rasterize(x, y, ['a'] * 20, grid), 'values must be an array of real'),
        (lambda: rasterize(with_nan, y, v, grid), 'x must be finite .* index 5'),
        (lambda: rasterize(x, with_inf, v, grid, block_size=2), 'y must be finite .* index 7'),
        (lambda: rasterize(x, y, v, 'grid'), 'grid must be a RasterGrid'),
        (lambda: rasterize(x, y, v, grid, {'binmode': True}), 'settings must be a RasterSett'),
        (lambda: rasterize(x, y, v, grid, threads=-1), 'threads must be an integer from 0'),
        (lambda: rasterize(x, y, v, grid, threads=1.0), 'threads'),
        (lambda: rasterize(x, y, v, grid, block_size=0), 'block_size must be an integer'),
        (lambda: rasterize(x, y, v, RasterGrid(1.0, 2 ** 20, 2 ** 20), block_size=1),
         'blocks, more than'),
        (lambda: rasterize_window(x, y, v, grid, (0, 0, 11, 1)), 'inside the 10 x 10 grid'),
        (lambda: rasterize_window(x, y, v, grid, (-1, 0, 1, 1)), 'window'),
        (lambda: rasterize_window(x, y, v, grid, (0, 0, 0, 1)), 'non-empty'),
        (lambda: rasterize_window(x, y, v, grid, (0, 0, 1)), 'col_off, row_off, width, height'),
        (lambda: rasterize_window(x, y, v, grid, (0.0, 0, 1, 1)), 'four integers'),
        (lambda: rasterize_window(with_nan, y, v, grid, (0, 0, 1, 1)), 'x must be finite'),
        (lambda: rasterize_window(with_nan, y, v, grid, (0, 0, 1, 1), index=[4, 5]),
         'x must be finite .* index 5'),
        (lambda: rasterize_window(x, y, v, grid, (0, 0, 1, 1), index=[0, 20]),
         'index must hold positions from 0 to 19'),
        (lambda: rasterize_window(x, y, v, grid, (0, 0, 1, 1), index=[-1]), 'index must hold'),
        (lambda: rasterize_window(x, y, v, grid, (0, 0, 1, 1), index=[0.5]),
         'index must be a 1-D integer array'),
        (lambda: bucket_points(x, y[:3], grid, 4, 1.0), 'same length'),
        (lambda: bucket_points(x, with_nan, grid, 4, 1.0), 'y must be finite'),
        (lambda: bucket_points(x, y, grid, 4, -1.0), 'margin must be a finite number >= 0'),
        (lambda: bucket_points(x, y, grid, 4, np.nan), 'margin'),
        (lambda: bucket_points(x, y, grid, 0, 1.0), 'block_size'),
        (lambda: bucket_points(x, y, grid, 4, 1.0, threads=-2), 'threads'),
        (lambda: blocks(grid, 2.5), 'block_size'),
        (lambda: fill_nodata(np.zeros(5), np.zeros(5, bool), 1), 'array must be 2-D'),
        (lambda: fill_nodata(np.zeros((2, 2)), np.zeros((2, 3), bool), 1),
         'empty must have the shape of array'),
        (lambda: fill_nodata(np.zeros((2, 2)), np.zeros((2, 2)), 1), 'empty must be a boolean'),
        (lambda: fill_nodata(np.zeros((2, 2)), np.zeros((2, 2), bool), 0),
         'window_size must be an integer from 1'),
        (lambda: fill_nodata(np.zeros((2, 2), complex), np.zeros((2, 2), bool), 1),
         'array must be real numbers'),
        (lambda: fill_nodata(np.zeros((2, 2)), np.zeros((2, 2), bool), 1, threads='2'),
         'threads'),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
