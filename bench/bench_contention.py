"""Kernels on a shared CPU: depth -> cloud and cloud -> BEV with 0, 1 and 2 busy processes.

A robot's cores are shared (camera driver, planner, other nodes), so a multi-threaded kernel
must not fall apart when one of its threads is preempted. For each kernel, size, background
load (busy processes started and stopped here, bounded in time) and thread count (1 and all
cores), ``CALLS`` calls are timed with a pause of ``PAUSE_S`` between them, as between camera
frames (long enough for idle workers to fall asleep, as they do at 30 Hz): p50 / p99 / max.

Kernels: ``depth_to_cloud`` on the real 7-Scenes frame (organized XYZ, as the pipeline node),
and ``bev_image_from_buffer`` of that cloud on the pipeline node's default BEV grid and mount
(10 m x 10 m at 0.05 m). Also the pipeline node end to end at 1920x1080 / 30 Hz with one busy
process beside it, ``threads`` 1 and 0 (bench_pipeline's publisher -> node -> probe processes).

Targets (issue 12): with 2 busy processes, all-threads p99 of depth_to_cloud at VGA <= 1.3x the
single-thread p99; the node at 1080p / 30 Hz with one busy process loses no frame.
"""
import time

import numpy as np

from bench_depth import frames
import bench_pipeline
from load import busy_processes
from timing import print_table
from pointcloud_pipeline import _depth
from pointcloud_pipeline.bev import BevGrid, bev_image_from_buffer
from pointcloud_pipeline.depth import POINT_STEP, depth_to_cloud, max_cloud_bytes
from pointcloud_pipeline.nodes.pipeline_node import DEFAULT_MOUNT_TRANSFORM

CALLS = 200
PAUSE_S = 0.005
LOADS = (0, 1, 2)
SIZES = ((640, 480), (1920, 1080))
NODE_GRID = BevGrid(x_range=(0.0, 10.0), y_range=(-5.0, 5.0), z_range=(-2.0, 2.0),
                    resolution=0.05)
TARGET_P99_RATIO = 1.3  # all threads / 1 thread, VGA depth, 2 busy processes


def timed_calls(call, calls):
    """Milliseconds of ``calls`` calls of ``call()``, ``PAUSE_S`` apart (after 10 untimed)."""
    for _ in range(10):
        call()
    times = np.empty(calls)
    for i in range(calls):
        start = time.perf_counter()
        call()
        times[i] = time.perf_counter() - start
        time.sleep(PAUSE_S)
    return times * 1e3


def kernel_calls(depth, intrinsics):
    """{kernel name: call(threads)} on this frame, writing into preallocated buffers."""
    cloud_buffer = np.empty(max_cloud_bytes(depth.shape), np.uint8)
    cloud = depth_to_cloud(depth, intrinsics, out=cloud_buffer, threads=1)
    points = cloud.width * cloud.height
    image = np.empty(NODE_GRID.shape, np.uint8)
    mount = np.array(DEFAULT_MOUNT_TRANSFORM).reshape(4, 4)
    return {
        'depth_to_cloud': lambda threads: depth_to_cloud(depth, intrinsics, out=cloud_buffer,
                                                         threads=threads),
        'bev_image': lambda threads: bev_image_from_buffer(
            cloud.data, POINT_STEP, points, grid=NODE_GRID, transform=mount, out=image,
            threads=threads),
    }


def bench_kernels(calls):
    all_threads = _depth.max_threads()
    thread_counts = sorted({1, all_threads})
    measured = {}
    rows = []
    for width, height, depth, intrinsics, source in frames():
        if (width, height) not in SIZES:
            continue
        kernels = kernel_calls(depth, intrinsics)
        for load in LOADS:
            with busy_processes(load):
                for name, call in kernels.items():
                    for threads in thread_counts:
                        times = timed_calls(lambda: call(threads), calls)
                        measured[name, width, load, threads] = times
        for name in kernels:
            for load in LOADS:
                single = np.percentile(measured[name, width, load, 1], 99)
                for threads in thread_counts:
                    times = measured[name, width, load, threads]
                    p99 = np.percentile(times, 99)
                    rows.append([name, f'{width}x{height}', str(load),
                                 f'{threads}' + (' (all)' if threads == all_threads else ''),
                                 f'{np.median(times):.3f}', f'{p99:.3f}', f'{times.max():.2f}',
                                 f'{p99 / single:.2f}x'])
    print_table(f'kernels on a shared CPU: {calls} calls {PAUSE_S * 1e3:.0f} ms apart, source '
                f'{source}', ['kernel', 'size', 'busy procs', 'threads', 'p50 ms', 'p99 ms',
                              'max ms', 'p99 vs 1 thread'], rows)
    if all_threads > 1 and ('depth_to_cloud', 640, 2, all_threads) in measured:
        ratio = (np.percentile(measured['depth_to_cloud', 640, 2, all_threads], 99)
                 / np.percentile(measured['depth_to_cloud', 640, 2, 1], 99))
        quiet = (np.median(measured['depth_to_cloud', 640, 0, 1])
                 / np.median(measured['depth_to_cloud', 640, 0, all_threads]))
        print(f'depth_to_cloud 640x480, 2 busy processes: all-threads p99 = {ratio:.2f}x the '
              f'1-thread p99 (target <= {TARGET_P99_RATIO}x); quiet: {quiet:.2f}x faster with '
              f'all threads (medians; back-to-back calls: bench_depth)')


def bench_node(seconds):
    rows = []
    for threads in (1, 0):
        command = bench_pipeline.pipeline_command() + ['-p', f'threads:={threads}']
        with busy_processes(1):
            result = bench_pipeline.measure(command, 'pointcloud_pipeline', 1920, 1080, 30.0,
                                            seconds)
        rows.append([str(threads), f"{result['offered_hz']:.1f}",
                     f"{result['delivered_hz']:.1f}", str(result['lost']),
                     f"{result['node_p50_ms']:.2f}", f"{result['node_p99_ms']:.2f}",
                     f"{result['e2e_p50_ms']:.1f}", f"{result['e2e_p99_ms']:.1f}"])
    print_table('pipeline_node 1920x1080 at 30 Hz beside 1 busy process (cloud + BEV)',
                ['threads', 'offered Hz', 'delivered Hz', 'lost', 'in-node p50 ms',
                 'in-node p99 ms', 'e2e p50 ms', 'e2e p99 ms'], rows)
    print('target: 0 frames lost')


def main(quick=False):
    bench_kernels(50 if quick else CALLS)
    bench_node(4.0 if quick else 10.0)


if __name__ == '__main__':
    import sys
    main(quick='--quick' in sys.argv)
