"""The kernels' worker threads (pointcloud_pipeline/_workers.h, used by depth and BEV): the same
bytes for any thread count and any caller, workers kept off the caller's CPU, fork safety.

How fast they stay on a busy CPU is measured by ``make bench`` (bench/bench_contention.py), not
here."""
import multiprocessing
import os
from pathlib import Path
import subprocess
import sys
import threading

import numpy as np
import pytest

from pointcloud_pipeline.bev import bev_image
from pointcloud_pipeline.camera import CameraIntrinsics
from pointcloud_pipeline.depth import depth_to_cloud

K = CameraIntrinsics(525.0, 525.0, 319.5, 239.5)
WORKER_NAME = 'pcp_worker'
REPO = Path(__file__).resolve().parents[1]


def room_depth(height=480, width=640, seed=3):
    """uint16 mm: a slanted wall with speckle holes (some rows without any valid pixel)."""
    rng = np.random.default_rng(seed)
    v, u = np.mgrid[0:height, 0:width]
    depth = (1500 + 2 * u + v).astype(np.uint16)
    depth[rng.random(depth.shape) < 0.1] = 0
    depth[100:107] = 0
    return depth


def color_image(height=480, width=640):
    return (np.arange(height * width * 3, dtype=np.uint32) % 251).astype(np.uint8).reshape(
        height, width, 3)


def worker_tids():
    """Thread ids of this process's kernel workers."""
    tasks = Path('/proc/self/task')
    return [int(t.name) for t in tasks.iterdir()
            if (t / 'comm').read_text().strip() == WORKER_NAME]


@pytest.mark.parametrize('organized', [True, False])
def test_same_bytes_for_any_thread_count(organized):
    depth, color = room_depth(), color_image()
    expected = depth_to_cloud(depth, K, color=color, organized=organized, threads=1)
    for threads in (2, 3, 8, 33, 0):
        cloud = depth_to_cloud(depth, K, color=color, organized=organized, threads=threads)
        assert cloud.valid_points == expected.valid_points
        assert bytes(cloud.data) == bytes(expected.data), f'threads={threads}'


def test_more_threads_than_rows():
    depth = room_depth(height=3, width=5)
    expected = bytes(depth_to_cloud(depth, K, threads=1).data)
    assert bytes(depth_to_cloud(depth, K, threads=64).data) == expected


def test_concurrent_callers_get_their_own_results():
    """Callers that find the workers busy run alone; every result is still exact."""
    frames = [room_depth(seed=s) for s in range(4)]
    expected = [bytes(depth_to_cloud(f, K, threads=1).data) for f in frames]
    points = np.random.default_rng(1).uniform(-60, 60, (50000, 4)).astype(np.float32)
    points[:, 2] = np.random.default_rng(2).uniform(-2.5, 1.0, 50000)
    bev_expected = bev_image(points, threads=1).tobytes()
    mismatches = []

    def convert(index):
        for _ in range(25):
            cloud = depth_to_cloud(frames[index], K, threads=2 + index % 2)
            if bytes(cloud.data) != expected[index]:
                mismatches.append(('depth', index))
            if bev_image(points, threads=2).tobytes() != bev_expected:
                mismatches.append(('bev', index))

    threads = [threading.Thread(target=convert, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert mismatches == []


def _convert_in_child(queue):
    queue.put(bytes(depth_to_cloud(room_depth(), K, threads=2).data))


@pytest.mark.timeout(60)
def test_fork_after_workers_started():
    """A forked child (its workers did not survive fork) starts new ones and gets the bytes."""
    expected = bytes(depth_to_cloud(room_depth(), K, threads=2).data)
    context = multiprocessing.get_context('fork')
    queue = context.Queue()
    child = context.Process(target=_convert_in_child, args=(queue,))
    child.start()
    result = queue.get(timeout=30)
    child.join(30)
    assert child.exitcode == 0
    assert result == expected


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason='needs 2 or more CPUs')
def test_workers_stay_off_the_callers_cpu():
    depth_to_cloud(room_depth(), K, threads=2)
    allowed = os.sched_getaffinity(0)
    workers = worker_tids()
    assert workers, f'no {WORKER_NAME} threads after a 2-thread call'
    for tid in workers:
        mask = os.sched_getaffinity(tid)
        assert mask < allowed and len(mask) == len(allowed) - 1, (mask, allowed)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason='needs 2 or more CPUs')
def test_worker_affinity_can_be_left_alone():
    script = (
        'import os\n'
        'from test_workers import K, room_depth, worker_tids\n'
        'from pointcloud_pipeline.depth import depth_to_cloud\n'
        'depth_to_cloud(room_depth(), K, threads=2)\n'
        'masks = [os.sched_getaffinity(t) for t in worker_tids()]\n'
        'assert masks and all(m == os.sched_getaffinity(0) for m in masks), masks\n')
    env = dict(os.environ, POINTCLOUD_PIPELINE_WORKER_AFFINITY='off',
               PYTHONPATH=os.pathsep.join([str(REPO / 'test'), os.environ.get('PYTHONPATH', '')]))
    result = subprocess.run([sys.executable, '-c', script], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize('preset,expected', [(None, 'PASSIVE'), ('ACTIVE', 'ACTIVE')])
def test_node_processes_make_idle_openmp_threads_sleep(preset, expected):
    """The nodes package sets OMP_WAIT_POLICY=PASSIVE before any kernel loads libgomp, unless
    the environment chose a policy."""
    env = {k: v for k, v in os.environ.items() if k != 'OMP_WAIT_POLICY'}
    if preset:
        env['OMP_WAIT_POLICY'] = preset
    script = ('import os, pointcloud_pipeline.nodes\n'
              'print(os.environ["OMP_WAIT_POLICY"])\n')
    result = subprocess.run([sys.executable, '-c', script], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected
