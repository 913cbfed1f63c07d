"""make demo end to end: three processes over DDS (loopback) write the three outputs."""
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import REPO_ROOT
from optional import require

PlyData = require('plyfile').PlyData

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def run_demo(*arguments, timeout=180):
    return subprocess.run([sys.executable, '-m', 'pointcloud_pipeline.demo', *arguments],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)


def check_outputs(out, min_points):
    bev = cv2.imread(str(out / 'bev.png'))
    assert bev is not None and bev.ndim == 3
    assert np.count_nonzero(bev.any(axis=2)) > 500, 'the BEV image is blank'
    vertex = PlyData.read(str(out / 'cloud.ply'))['vertex']
    assert vertex.count > min_points
    xyz = np.stack([vertex['x'], vertex['y'], vertex['z']], axis=1)
    assert np.isfinite(xyz).all() and (xyz[:, 2] > 0).all()  # in front of the camera
    stats = json.loads((out / 'stats.json').read_text())
    assert stats['problems'] == []
    assert stats['points']['received'] >= 3 and stats['points']['rate_hz'] > 0
    assert stats['bev']['received'] >= 3
    pipeline = stats['pipeline']
    assert pipeline['published'] > 0 and pipeline['latency_ms.p50'] > 0
    assert {'received', 'dropped', 'latency_ms.p99'} <= set(pipeline)
    return stats


def test_synthetic_demo_writes_bev_ply_and_stats(tmp_path):
    result = run_demo('--seconds', '3', '--out', str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'demo: ok' in result.stdout and 'points :' in result.stdout
    stats = check_outputs(tmp_path, min_points=100_000)
    assert stats['points']['colored'] is True and stats['points']['width'] == 640
    vertex = PlyData.read(str(tmp_path / 'cloud.ply'))['vertex']
    assert {'red', 'green', 'blue'} <= {p.name for p in vertex.properties}


def test_rgbd_folder_demo(tmp_path, shared_data):
    folder = shared_data / 'rgbd' / '7scenes_tsdf_fusion'
    result = run_demo('--source', f'rgbd-dir:{folder}', '--seconds', '3', '--rate', '10',
                      '--out', str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    check_outputs(tmp_path, min_points=100_000)


def test_bag_demo(tmp_path, shared_data):
    from pointcloud_pipeline.demo.replay import write_rgbd_bag
    bag = write_rgbd_bag(shared_data / 'rgbd' / '7scenes_tsdf_fusion', tmp_path / 'bag')
    result = run_demo('--source', f'bag:{bag}', '--seconds', '3', '--out', str(tmp_path / 'o'))
    assert result.returncode == 0, result.stdout + result.stderr
    check_outputs(tmp_path / 'o', min_points=100_000)


def test_bad_source_fails_fast_with_the_reason(tmp_path):
    result = run_demo('--source', f'rgbd-dir:{tmp_path / "missing"}', '--out', str(tmp_path))
    assert result.returncode == 2
    assert 'is not a directory' in result.stderr
    result = run_demo('--source', 'webcam', '--out', str(tmp_path))
    assert result.returncode == 2 and 'unknown source' in result.stderr
    assert not (tmp_path / 'stats.json').exists()
