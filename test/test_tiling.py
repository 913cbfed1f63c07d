"""Out-of-core tiling (pointcloud_pipeline.tiling) on real LAS/LAZ files: every point in exactly
one tile, splitting, the halo check and its re-queries (exact against a whole-cloud computation),
the order-free tie-break order, the results file, and the temporary directories (stale ones of
killed processes removed, live ones kept)."""
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO_ROOT
from pointcloud_pipeline import tiling

laspy = pytest.importorskip('laspy', reason='laspy is not installed: pip install laspy==2.7.0')

AUTZEN_LAS = ('las', 'pdal', 'autzen_trim.las')
AUTZEN_LAZ = ('las', 'laspy', 'autzen_trim.laz')


def data_file(shared_data, parts):
    path = shared_data.joinpath(*parts)
    if not path.is_file():
        pytest.skip(f'{path} is not in the shared data')
    return path


def spill(path, directory, target_points=20_000, tile_size=None, chunk_points=7_000,
          max_points=None):
    """(TileSet, the file's raw X, Y, Z) after pass 1 (and the split when ``max_points``)."""
    directory.mkdir(exist_ok=True)
    with laspy.open(path) as reader:
        grid, side = tiling.plan_grid(reader.header, target_points, tile_size)
        tiles, bounds = tiling.spill_las(reader, str(directory), grid, chunk_points,
                                         buffer_bytes=100_000)
        header = reader.header
    tileset = tiling.TileSet(str(directory), tuple(header.scales), tuple(header.offsets),
                             bounds, header.point_count, grid, side, tuple(tiles))
    if max_points is not None:
        tileset = tiling.split_overfull(tileset, max_points, chunk_points, 50_000)
    las = laspy.read(path)
    return tileset, np.column_stack([las.X, las.Y, las.Z])


def all_records(tileset):
    return np.concatenate([tileset.read(tile) for tile in tileset.tiles])


def assert_every_point_once_in_its_tile(tileset, raw):
    records = all_records(tileset)
    assert sorted(records['index']) == list(range(len(raw)))
    np.testing.assert_array_equal(
        np.column_stack([records['X'], records['Y'], records['Z']]), raw[records['index']])
    for tile in tileset.tiles:
        inside = tileset.read(tile)
        assert len(inside) == tile.count > 0
        assert ((inside['X'] >= tile.x_lo) & (inside['X'] < tile.x_hi)
                & (inside['Y'] >= tile.y_lo) & (inside['Y'] < tile.y_hi)).all(), tile.name


@pytest.mark.parametrize('parts', [AUTZEN_LAS, AUTZEN_LAZ])
def test_pass_one_puts_every_point_in_exactly_one_tile(shared_data, tmp_path, parts):
    tileset, raw = spill(data_file(shared_data, parts), tmp_path)
    assert len(tileset.tiles) > 3
    assert tileset.bounds == (raw[:, 0].min(), raw[:, 0].max(), raw[:, 1].min(),
                              raw[:, 1].max(), raw[:, 2].min(), raw[:, 2].max())
    assert_every_point_once_in_its_tile(tileset, raw)
    # the outer tiles are open outwards: a point beyond stale header bounds still has a tile
    assert min(tile.x_lo for tile in tileset.tiles) == -tiling.UNBOUNDED
    assert max(tile.y_hi for tile in tileset.tiles) == tiling.UNBOUNDED


def test_las_and_laz_of_the_same_points_give_the_same_tiles(shared_data, tmp_path):
    las_tiles, _ = spill(data_file(shared_data, AUTZEN_LAS), tmp_path / 'las')
    laz_tiles, _ = spill(data_file(shared_data, AUTZEN_LAZ), tmp_path / 'laz', chunk_points=50_001)
    assert [t.count for t in las_tiles.tiles] == [t.count for t in laz_tiles.tiles]
    np.testing.assert_array_equal(all_records(las_tiles), all_records(laz_tiles))


@pytest.mark.parametrize('parts', [AUTZEN_LAS, AUTZEN_LAZ])
def test_pass_one_keeps_the_whole_point_records_in_file_order(shared_data, tmp_path, parts):
    path = data_file(shared_data, parts)
    points_file = tiling.PointsFile(tmp_path / 'points.bin')
    with laspy.open(path) as reader:
        grid, _ = tiling.plan_grid(reader.header, 20_000)
        tiling.spill_las(reader, str(tmp_path), grid, 7_000, 100_000, points_file=points_file)
    expected = laspy.read(path).points.array
    assert points_file.count == len(expected) and points_file.dtype == expected.dtype
    assert os.path.getsize(points_file.path) == expected.nbytes
    assert points_file.read(0, len(expected)).tobytes() == expected.tobytes()
    assert points_file.read(12_345, 10_001).tobytes() == expected[12_345:22_346].tobytes()
    with pytest.raises(tiling.TilingError, match='fewer than'):
        points_file.read(len(expected) - 5, 10)


def test_overfull_tiles_are_split_until_they_fit(shared_data, tmp_path):
    tileset, raw = spill(data_file(shared_data, AUTZEN_LAS), tmp_path, target_points=200_000,
                         max_points=9_000)
    assert len(tileset.tiles) >= 110_000 // 9_000
    assert max(tile.count for tile in tileset.tiles) <= 9_000
    assert_every_point_once_in_its_tile(tileset, raw)
    assert sorted(os.listdir(tmp_path)) == sorted(f'{t.name}.bin' for t in tileset.tiles)


def test_a_tile_whose_points_share_one_xy_is_not_split(tmp_path):
    path = tmp_path / 'column.las'
    las = laspy.create(point_format=3, file_version='1.2')
    las.X = np.zeros(500, np.int32)
    las.Y = np.zeros(500, np.int32)
    las.Z = np.arange(500, dtype=np.int32)
    las.write(path)
    tiles = tmp_path / 'tiles'
    tileset, raw = spill(path, tiles, max_points=100)
    assert [tile.count for tile in tileset.tiles] == [500]
    assert_every_point_once_in_its_tile(tileset, raw)


def test_spill_reports_a_truncated_file(shared_data, tmp_path):
    source = data_file(shared_data, AUTZEN_LAS)
    short = tmp_path / 'short.las'
    with laspy.open(source) as reader:
        offset, size = reader.header.offset_to_point_data, reader.header.point_format.size
    short.write_bytes(source.read_bytes()[:offset + 5000 * size])  # whole records: no ValueError
    tiles = tmp_path / 'tiles'
    with pytest.raises(EOFError, match='holds 5000 of the 110000 points'):
        spill(short, tiles)


def kernel_compute(tileset):
    """compute() of the real normals kernel, ties broken by the fixed order."""
    from pointcloud_pipeline.normals import estimate_normals

    def compute(records, core_count):
        ids = np.empty(len(records), np.int64)
        ids[tiling.tie_break_order(records)] = np.arange(len(records))
        result = estimate_normals(tileset.scaled(records), k=8, ids=ids, core=core_count,
                                  threads=1)
        return (np.column_stack([result.normals, result.curvature]),
                result.neighbour_distance)
    return compute


@pytest.mark.parametrize('margin', [0.5, 3.0, 40.0])
def test_tiles_with_halo_equal_the_whole_cloud_and_requery_what_the_halo_misses(
        shared_data, tmp_path, margin):
    tileset, raw = spill(data_file(shared_data, AUTZEN_LAS), tmp_path, target_points=6_000)
    compute = kernel_compute(tileset)
    everything = all_records(tileset)
    whole, _ = compute(everything, len(everything))
    expected = np.empty_like(whole)
    expected[everything['index']] = whole

    got = np.full_like(expected, -7.0)
    requeries = 0
    for tile in tileset.tiles:
        positions, values, redone = tiling.compute_with_halo(tileset, tile, margin, compute)
        got[positions] = values
        requeries += redone
    np.testing.assert_array_equal(got.view(np.uint64), expected.view(np.uint64))
    # a tiny margin misses many neighbourhoods (all redone); a wide one misses few or none
    if margin == 0.5:
        assert requeries > 1000
    if margin == 40.0:
        assert requeries < 50


def test_a_reach_that_is_not_finite_grows_the_halo_to_the_whole_cloud(tmp_path):
    # 12 points in two far-apart clusters of 6: with k = 8 a tile of one cluster alone never
    # has enough points; the re-queries grow until they hold all 12
    path = tmp_path / 'sparse.las'
    las = laspy.create(point_format=3, file_version='1.2')
    rng = np.random.default_rng(3)
    xy = np.concatenate([rng.integers(0, 100, (6, 2)), rng.integers(100_000, 100_100, (6, 2))])
    las.X, las.Y = xy[:, 0].astype(np.int32), xy[:, 1].astype(np.int32)
    las.Z = rng.integers(0, 100, 12).astype(np.int32)
    las.write(path)
    tiles = tmp_path / 'tiles'
    tileset, _ = spill(path, tiles, tile_size=50.0)
    assert len(tileset.tiles) == 2
    compute = kernel_compute(tileset)
    everything = all_records(tileset)
    whole, _ = compute(everything, len(everything))
    for tile in tileset.tiles:
        positions, values, redone = tiling.compute_with_halo(tileset, tile, 1.0, compute)
        assert redone == 6
        order = np.argsort(everything['index'])
        np.testing.assert_array_equal(values, whole[order][positions])


def test_edge_distance_is_a_lower_bound_of_the_distance_to_any_point_outside(tmp_path):
    rng = np.random.default_rng(1)
    records = np.zeros(4000, tiling.TILE_RECORD)
    records['X'] = rng.integers(-500, 500, 4000)
    records['Y'] = rng.integers(-500, 500, 4000)
    scales = (0.01, 0.025, 0.01)
    tileset = tiling.TileSet(str(tmp_path), scales, (0.0, 0.0, 0.0),
                             (-500, 499, -500, 499, 0, 0), 4000, None, 1.0, ())
    rectangle = (-100, 120, -80, 60)
    inside = ((records['X'] >= -100) & (records['X'] < 120)
              & (records['Y'] >= -80) & (records['Y'] < 60))
    distance = tileset.edge_distance(records[inside], rectangle)
    outside = records[~inside]
    dx = (records['X'][inside][:, None] - outside['X'][None, :]) * scales[0]
    dy = (records['Y'][inside][:, None] - outside['Y'][None, :]) * scales[1]
    nearest_outside = np.sqrt(dx ** 2 + dy ** 2).min(axis=1)
    assert (distance <= nearest_outside).all()
    # a rectangle beyond the data's bounds on every side: nothing is outside
    assert np.isinf(tileset.edge_distance(records, (-600, 600, -501, 500))).all()


def test_tie_break_order_does_not_depend_on_the_point_order():
    rng = np.random.default_rng(2)
    records = np.zeros(5000, tiling.TILE_RECORD)
    records['index'] = np.arange(5000)
    for name in 'XYZ':
        records[name] = rng.integers(-3, 3, 5000)  # many exact duplicates
    ordered = records[tiling.tie_break_order(records)]
    shuffled = records[rng.permutation(5000)]
    np.testing.assert_array_equal(shuffled[tiling.tie_break_order(shuffled)], ordered)
    # a subset keeps the relative order of its points
    subset = records[rng.random(5000) < 0.3]
    positions = {index: rank for rank, index in enumerate(ordered['index'])}
    ranks = [positions[i] for i in subset[tiling.tie_break_order(subset)]['index']]
    assert ranks == sorted(ranks)


def test_results_file_stores_rows_by_position(tmp_path):
    results = tiling.ResultsFile(tmp_path / 'r.bin', 1000, 4, np.float32).create()
    rng = np.random.default_rng(4)
    expected = rng.random((1000, 4)).astype(np.float32)
    positions = rng.permutation(1000)
    for number, part in enumerate(np.array_split(positions, 7)):
        part = np.sort(part) if number % 2 else part  # runs of consecutive rows, or scattered
        results.write(part, expected[part])
    np.testing.assert_array_equal(results.read(0, 1000), expected)
    np.testing.assert_array_equal(results.read(990, 10), expected[990:])
    assert os.path.getsize(tmp_path / 'r.bin') == 1000 * 16


def test_tile_directory_is_removed_and_stale_ones_of_dead_processes_are_cleaned(tmp_path):
    with tiling.TileDirectory(tmp_path, 'probe') as live:
        (live.path / 'x.bin').write_bytes(b'x')
    assert not live.path.exists()
    with pytest.raises(RuntimeError):
        with tiling.TileDirectory(tmp_path, 'probe') as failing:
            raise RuntimeError('boom')
    assert not failing.path.exists()

    # a process killed while it held a tile directory and a partial output it owned
    partial = tmp_path / '.out.las.abc.partial'
    script = ('import os, sys, time\n'
              'from pointcloud_pipeline import tiling\n'
              'directory = tiling.TileDirectory(sys.argv[1], "probe").__enter__()\n'
              'open(sys.argv[2], "w").close()\n'
              'directory.own(sys.argv[2])\n'
              'print(directory.path, flush=True)\n'
              'time.sleep(60)\n')
    child = subprocess.Popen([sys.executable, '-c', script, str(tmp_path), str(partial)],
                             cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    stale = child.stdout.readline().strip()
    try:
        with tiling.TileDirectory(tmp_path, 'probe') as mine:
            assert tiling.remove_stale_tile_directories(tmp_path, 'probe') == []  # all alive
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
            assert os.path.isdir(stale) and partial.exists()
            assert tiling.remove_stale_tile_directories(tmp_path, 'other') == []
            assert tiling.remove_stale_tile_directories(tmp_path, 'probe') == [stale]
            assert not os.path.exists(stale) and not partial.exists()
            assert mine.path.is_dir()  # this live process's directory stays
    finally:
        child.kill()
        child.wait()
    assert os.listdir(tmp_path) == []


# --- RecordBuckets ------------------------------------------------------------------------------

@pytest.mark.parametrize('memory_bytes', [0, 100, 1 << 30])
def test_record_buckets_keep_the_order_added_in_memory_and_on_disk(tmp_path, memory_bytes):
    dtype = np.dtype([('x', '<f8'), ('k', '<i4')])
    rng = np.random.default_rng(3)
    buckets = tiling.RecordBuckets(dtype, tmp_path, memory_bytes)
    expected = {}
    for step in range(20):
        key = int(rng.integers(0, 4))
        records = np.zeros(int(rng.integers(0, 30)), dtype)
        records['x'] = rng.random(len(records))
        records['k'] = step
        buckets.add(key, records)
        expected.setdefault(key, []).append(records)
    assert (buckets.spilled_bytes > 0) == (memory_bytes < 1 << 30)
    assert buckets.keys() == sorted(k for k, parts in expected.items()
                                    if sum(map(len, parts)))
    for key, parts in expected.items():
        whole = np.concatenate(parts)
        assert buckets.count(key) == len(whole)
        np.testing.assert_array_equal(buckets.read(key), whole)
        np.testing.assert_array_equal(np.concatenate(list(buckets.chunks(key, 7)) or
                                                     [np.empty(0, dtype)]), whole)
    for key, parts in expected.items():  # consuming frees what memory holds, in order
        np.testing.assert_array_equal(np.concatenate(
            list(buckets.chunks(key, 5, consume=True)) or [np.empty(0, dtype)]),
            np.concatenate(parts))
    assert buckets.held_bytes == 0
    with pytest.raises(ValueError, match='records of'):
        buckets.add(0, np.zeros(3, np.float64))
