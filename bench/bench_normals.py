"""Per-point normals: the kernel (1 thread, all threads) against the numpy reference
(test/reference_normals.py), Open3D's ``estimate_normals`` when it is importable, and the bare
neighbour searches of pykdtree and scipy (the calibration figures).

Cloud: 1 M real points, PDAL's autzen_trim.las (110,000 aerial points, feet) copied side by
side with offsets (5 x 2 copies, 10 ft apart, truncated to 1,000,000): the density and surface
structure of a real tile, no random noise. k = 8 (the point and its 8 nearest, Open3D
``KDTreeSearchParamKNN(9)``). Every row is all-in: from an N x 3 float64 array to normals.
Targets (issue): all threads >= 2x Open3D and >= 10x the numpy reference in the same run.
"""
import importlib.util
import os
from pathlib import Path
import time

import numpy as np

from pointcloud_pipeline import _normals
from pointcloud_pipeline.normals import estimate_normals
from reference_normals import reference_normals
from timing import best_and_median_seconds, print_table

TARGET_OPEN3D_SPEEDUP = 2.0
TARGET_NUMPY_SPEEDUP = 10.0
POINTS = 1_000_000
RADIUS = 6.0  # feet: about 20 neighbours on autzen


def data_dir():
    configured = os.environ.get('POINTCLOUD_PIPELINE_DATA')
    return (Path(configured) if configured
            else Path(__file__).resolve().parents[1].parent / 'shared' / 'data')


def tiled_cloud(points, count):
    """``count`` points from copies of ``points`` laid side by side, 5 per row, 10 units apart."""
    extent = points.max(axis=0) - points.min(axis=0)
    copies = -(-count // len(points))
    tiles = [points + [(i % 5) * (extent[0] + 10), (i // 5) * (extent[1] + 10), 0.0]
             for i in range(copies)]
    return np.ascontiguousarray(np.concatenate(tiles)[:count])


def seconds_of(fn, repeat):
    """(best, median) of ``repeat`` runs after one warm-up run."""
    return best_and_median_seconds(fn, repeat=repeat, warmup=1)


def open3d_normals(points):
    import open3d
    cloud = open3d.geometry.PointCloud(
        open3d.utility.Vector3dVector(points - points.mean(axis=0)))
    cloud.estimate_normals(open3d.geometry.KDTreeSearchParamKNN(9))
    return np.asarray(cloud.normals)


def pykdtree_knn(points):
    from pykdtree.kdtree import KDTree
    centred = points - points.mean(axis=0)
    return KDTree(centred).query(centred, k=9)


def cktree_knn(points):
    from scipy.spatial import cKDTree
    centred = points - points.mean(axis=0)
    return cKDTree(centred).query(centred, k=9, workers=-1)


def cktree_radius(points):
    from scipy.spatial import cKDTree
    centred = points - points.mean(axis=0)
    return cKDTree(centred).query_ball_point(centred, RADIUS, workers=-1, return_length=True)


def main(quick=False):
    path = data_dir() / 'las' / 'pdal' / 'autzen_trim.las'
    if importlib.util.find_spec('laspy') is None or not path.is_file():
        print(f'\n## normals: skipped (needs laspy and {path})')
        return
    import laspy
    las = laspy.read(path)
    source = np.column_stack([las.x, las.y, las.z]).astype(np.float64)
    count = POINTS // 4 if quick else POINTS
    points = tiled_cloud(source, count)
    repeat = 3 if quick else 7
    cores = _normals.default_threads()
    rows, times = [], {}

    def measure(label, fn, runs=repeat, note=''):
        best, median = seconds_of(fn, runs)
        times[label] = median
        rows.append([label, f'{median:.3f}', f'{best:.3f}', f'{count / median / 1e6:.2f}',
                     note])

    measure('ours, 1 thread', lambda: estimate_normals(points, threads=1))
    measure(f'ours, all threads ({cores})', lambda: estimate_normals(points, threads=0))
    if importlib.util.find_spec('open3d') is not None:
        measure('Open3D estimate_normals KNN(9)', lambda: open3d_normals(points),
                note='all-in, its own threads')
    if importlib.util.find_spec('pykdtree') is not None:
        measure('pykdtree build + query k=9', lambda: pykdtree_knn(points),
                note='search only')
    measure('scipy cKDTree build + query k=9', lambda: cktree_knn(points), note='search only')
    measure('numpy reference', lambda: reference_normals(points), runs=1 if quick else 2,
            note='cKDTree + lexsort + eigh')
    measure(f'ours radius {RADIUS:g} ft, all threads',
            lambda: estimate_normals(points, radius=RADIUS, threads=0))
    measure(f'scipy cKDTree radius {RADIUS:g} ft (count only)', lambda: cktree_radius(points),
            note='search only')
    print_table(f'normals of {count:,} real points (autzen_trim.las x {-(-count // len(source))},'
                f' feet), k = 8; seconds: median / best of {repeat} after a warm-up',
                ['method', 'median s', 'best s', 'Mpts/s', 'note'], rows)
    ours = times[f'ours, all threads ({cores})']
    print()
    print(f'1 thread / {cores} threads: {times["ours, 1 thread"] / ours:.2f}x')
    speedup = times['numpy reference'] / ours
    print(f'target numpy reference / ours >= {TARGET_NUMPY_SPEEDUP:g}x: {speedup:.1f}x '
          f'{"met" if speedup >= TARGET_NUMPY_SPEEDUP else "MISSED"}')
    if 'Open3D estimate_normals KNN(9)' in times:
        speedup = times['Open3D estimate_normals KNN(9)'] / ours
        print(f'target Open3D / ours >= {TARGET_OPEN3D_SPEEDUP:g}x: {speedup:.2f}x '
              f'{"met" if speedup >= TARGET_OPEN3D_SPEEDUP else "MISSED"}')
        agreement(points)
    else:
        print('Open3D: not installed (optional peer: pip install open3d-cpu==0.20.0)')
    radius_ratio = (times[f'scipy cKDTree radius {RADIUS:g} ft (count only)']
                    / times[f'ours radius {RADIUS:g} ft, all threads'])
    print(f'radius mode: cKDTree ball search alone / our whole radius normals: '
          f'{radius_ratio:.2f}x')


def agreement(points):
    """Share of points where Open3D's normal is parallel to ours (Open3D orients differently
    and breaks distance ties its own way)."""
    start = time.perf_counter()
    ours = estimate_normals(points).normals
    theirs = open3d_normals(points)
    parallel = np.abs((ours * theirs).sum(axis=1)) > 1 - 1e-6
    print(f'Open3D normals parallel to ours (|dot| > 1 - 1e-6): {parallel.mean() * 100:.3f} % '
          f'({time.perf_counter() - start:.1f} s check)')
