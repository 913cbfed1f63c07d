"""Occupancy-grid benchmark (issue 13): the kernel at the nodes' grids vs the numpy reference and
the memcpy floors, 1 and all threads, and the cost of packing the nav_msgs/OccupancyGrid.

Cases
- pipeline node: the demo's VGA camera cloud (synthetic room, organized, 307,200 points of 16
  bytes) through the demo's mounting (0.8 m high, pitched 0.15 rad down) on the pipeline's grid,
  200 x 200 cells of 5 cm (x 0..10 m, y -5..5 m), the pipeline's default bands.
- bev_node: a real KITTI scan (x, y, z, intensity float32) on bev_node's default grid, 800 x 800
  cells of 10 cm (x, y -40..40 m), its default bands (ground at -1.73 m).
Floors: memcpy of the output bytes (what any kernel must write) and of the cloud's bytes (what
it must read once).
"""
import os
from pathlib import Path

import numpy as np

from pointcloud_pipeline.bev import BevGrid
from pointcloud_pipeline.demo.synthetic import SyntheticDepthCamera, camera_pose
from pointcloud_pipeline.depth import depth_to_cloud
from pointcloud_pipeline.occupancy import (OccupancyBands, occupancy_grid,
                                           occupancy_grid_from_buffer, occupancy_shape)
from pointcloud_pipeline.transforms import camera_mount_transform
from reference_occupancy import reference_occupancy
from timing import best_and_median_seconds, median_seconds, memcpy_floor_seconds, ms, print_table

REPO = Path(__file__).resolve().parents[1]


def kitti_scan():
    configured = os.environ.get('POINTCLOUD_PIPELINE_DATA')
    data = Path(configured) if configured else REPO.parent / 'shared' / 'data'
    path = data / 'kitti' / 'velodyne' / '000000.bin'
    return np.fromfile(path, np.float32).reshape(-1, 4) if path.is_file() else None


def camera_case():
    """(name, points as an N x 4 float32 view of the cloud, grid, bands, transform)."""
    camera = SyntheticDepthCamera(with_color=False)
    cloud = depth_to_cloud(camera.render(pose=camera_pose(0.0)).depth_mm, camera.intrinsics)
    points = np.frombuffer(cloud.data, np.float32, count=cloud.width * cloud.height * 4)
    grid = BevGrid(x_range=(0.0, 10.0), y_range=(-5.0, 5.0), resolution=0.05)
    return ('VGA camera (demo), pipeline grid', points.reshape(-1, 4), grid, OccupancyBands(),
            camera_mount_transform(height=0.8, pitch=0.15))


def kitti_case(points):
    grid = BevGrid(x_range=(-40.0, 40.0), y_range=(-40.0, 40.0), resolution=0.1)
    bands = OccupancyBands(min_height=0.3, max_height=2.0, ground_tolerance=0.15,
                           ground_z=-1.73)
    return 'KITTI 000000, bev_node grid', points, grid, bands, None


def bench_kernel(cases, quick):
    cores = os.cpu_count() or 1
    rows = []
    for name, points, grid, bands, transform in cases:
        height, width = occupancy_shape(grid)
        out = np.empty((height, width), np.int8)
        data = points.reshape(-1).view(np.uint8)
        expected = reference_occupancy(points[:, 0], points[:, 1], points[:, 2], grid, bands,
                                       transform)
        numpy_time = median_seconds(
            lambda: reference_occupancy(points[:, 0], points[:, 1], points[:, 2], grid, bands,
                                        transform), repeat=5 if quick else 15, warmup=1)
        out_floor = memcpy_floor_seconds(out.nbytes)
        in_floor = memcpy_floor_seconds(data.nbytes)
        for threads in sorted({1, cores}):
            def kernel():
                occupancy_grid_from_buffer(data, points.shape[1] * 4, len(points), grid=grid,
                                           bands=bands, transform=transform, out=out,
                                           threads=threads)
            best, median = best_and_median_seconds(kernel, repeat=50 if quick else 300)
            assert np.array_equal(out, expected), 'kernel != numpy reference'
            rows.append([name, f'{len(points)}', f'{width}x{height}', f'{threads}', ms(median),
                         ms(best), ms(numpy_time), f'{numpy_time / median:6.1f}x',
                         ms(out_floor), ms(in_floor), f'{median / in_floor:5.1f}x'])
        counts = [np.count_nonzero(expected == v) for v in (100, 0, -1)]
        print(f'{name}: occupied {counts[0]}, free {counts[1]}, unknown {counts[2]} cells')
    print_table('Occupancy kernel (median of repeated calls with out=; floors: memcpy of the '
                'output cells / of the cloud bytes)',
                ['case', 'points', 'cells', 'threads', 'kernel ms', 'best ms', 'numpy ms',
                 'vs numpy', 'out floor ms', 'in floor ms', 'vs in floor'], rows)


def bench_message(cases, quick):
    """OccupancyGridBuffer.message(): the nav_msgs message with one memcpy of the cells."""
    from std_msgs.msg import Header

    from pointcloud_pipeline.ros.occupancy_messages import OccupancyGridBuffer
    rows = []
    for name, points, grid, bands, transform in cases:
        buffer = OccupancyGridBuffer()
        occupancy_grid(points, grid, bands, transform=transform, out=buffer.view(grid))
        header = Header(frame_id='base_link')
        best, median = best_and_median_seconds(lambda: buffer.message(grid, bands, header),
                                               repeat=50 if quick else 200)
        height, width = occupancy_shape(grid)
        rows.append([name, f'{width}x{height}', ms(median), ms(best)])
    print_table('OccupancyGrid message packing (array(\'b\') -> int8[] setter, one memcpy)',
                ['case', 'cells', 'median ms', 'best ms'], rows)


def main(quick=False):
    cases = [camera_case()]
    scan = kitti_scan()
    if scan is None:
        print('\n## Occupancy: KITTI case skipped (no scan 000000 in the shared data)')
    else:
        cases.append(kitti_case(scan))
    bench_kernel(cases, quick)
    bench_message(cases, quick)


if __name__ == '__main__':
    import sys
    main(quick='--quick' in sys.argv[1:])
