"""make demo end to end: three processes over DDS (loopback) write the three outputs."""
import json
import os
from pathlib import Path
import signal
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import REPO_ROOT
from optional import require
from pointcloud_pipeline.demo.run import Processes, run_until_recorded
from pointcloud_pipeline.ros.dds_environment import loopback_ros_env
from ros_helpers import wait_until
from browser_pages import (OutputLines, browser_page, hide_software_rendering_notice,
                                drawn_pixels, needs_browser, needs_viser, region_pixels,
                                screenshot)

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


def test_unregistered_demo_registers_depth_into_the_colour_camera(tmp_path):
    result = run_demo('--unregistered', '--seconds', '3', '--out', str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'synthetic -> register_node -> pipeline_node' in result.stdout
    stats = check_outputs(tmp_path, min_points=50_000)
    points = stats['points']
    assert points['colored'] is True
    assert (points['width'], points['height']) == (640, 360)  # the colour camera's size
    assert points['frame_id'] == 'camera_color_optical_frame'


def test_unregistered_needs_the_synthetic_colour_camera(tmp_path):
    result = run_demo('--unregistered', '--no-rgb', '--out', str(tmp_path))
    assert result.returncode == 2 and '--unregistered needs' in result.stderr


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


@needs_viser
@needs_browser
def test_view_serves_the_live_demo_cloud_to_a_browser(tmp_path):
    """make demo DEMO_ARGS=--view: the URL is printed, and while the demo runs chromium draws
    the synthetic room, the BEV image, and new clouds as they come; Ctrl-C stops it all."""
    demo = subprocess.Popen([sys.executable, '-m', 'pointcloud_pipeline.demo', '--view',
                             '--view-port', '0', '--seconds', '300', '--out', str(tmp_path)],
                            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    output = OutputLines(demo)
    try:
        line = output.wait_for('view: http://127.0.0.1:', 60.0)
        assert line, output.text()
        with browser_page(tmp_path / 'chromium') as page:
            page.goto(line.split()[1])
            status = page.get_by_text('points, coloured by rgb')
            status.wait_for(timeout=60_000)
            first = status.inner_text()  # names the cloud's stamp: it changes while live
            assert wait_until(lambda: status.inner_text() != first, 30.0), first
            page.locator('img').first.wait_for(timeout=30_000)  # the BEV image
            hide_software_rendering_notice(page)
            page.wait_for_timeout(1500)
            drawn = screenshot(page, tmp_path / 'view.png')
        assert demo.poll() is None, output.text()  # drawn while the demo runs
        empty = np.full_like(drawn, 255)  # the page's white background
        assert drawn_pixels(empty, drawn) > 0.05 * region_pixels(), tmp_path / 'view.png'
    finally:
        if demo.poll() is None:  # Ctrl-C: the demo stops its processes, then exits
            demo.send_signal(signal.SIGINT)
            try:
                demo.wait(timeout=60)
            except subprocess.TimeoutExpired:
                demo.kill()
                demo.wait()
    assert demo.returncode == 130, output.text()
    assert '(viser) Server stopped' in (tmp_path / 'logs' / 'view.log').read_text()


def test_bad_source_fails_fast_with_the_reason(tmp_path):
    result = run_demo('--source', f'rgbd-dir:{tmp_path / "missing"}', '--out', str(tmp_path))
    assert result.returncode == 2
    assert 'is not a directory' in result.stderr
    result = run_demo('--source', 'webcam', '--out', str(tmp_path))
    assert result.returncode == 2 and 'unknown source' in result.stderr
    assert not (tmp_path / 'stats.json').exists()


def open_files_under(folder):
    """Paths under ``folder`` this process holds open (Linux /proc)."""
    fd_dir = Path('/proc/self/fd')
    if not fd_dir.is_dir():
        pytest.skip('needs /proc/self/fd')
    paths = []
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(fd_dir / fd)
        except OSError:
            continue  # closed meanwhile (the listing's own descriptor)
        if target.startswith(str(folder)):
            paths.append(target)
    return paths


def test_a_process_that_fails_to_start_leaks_no_log_file(tmp_path):
    processes = Processes(loopback_ros_env(), tmp_path)
    with pytest.raises(OSError) as raised:
        processes.start('missing', [str(tmp_path / 'no-such-executable')])
    # closed by start() itself, not later by the garbage collector (the traceback, kept here
    # as a caller that reports the error keeps it, still references start()'s frame)
    assert raised.traceback and open_files_under(tmp_path) == []
    assert processes.children == {}


def test_start_failure_stops_the_started_processes_and_closes_every_log(tmp_path):
    processes = Processes(loopback_ros_env(), tmp_path)
    sleeper = [sys.executable, '-c', 'import time; time.sleep(120)']
    failure = run_until_recorded(processes, [
        ('pipeline_node', sleeper), ('recorder_node', [str(tmp_path / 'no-such-executable')]),
        ('source', sleeper)], seconds=1.0)
    assert failure.startswith('cannot start recorder_node:'), failure
    assert list(processes.children) == ['pipeline_node']  # source was never started
    started = processes.children['pipeline_node'][0]
    assert started.poll() is None
    processes.stop()
    assert started.poll() is not None, 'left running'
    assert open_files_under(tmp_path) == []
