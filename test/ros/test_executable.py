"""Node executables: the shared main() idiom, run as real processes."""
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO_ROOT

pytestmark = pytest.mark.ros


def start_bev_node():
    """``bev_node`` in its own process group (like a process started by ``ros2 launch``); returns
    it once it has logged that it is up."""
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    process = subprocess.Popen([sys.executable, '-m', 'pointcloud_pipeline.nodes.bev_node'],
                               cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        lines.append(line)
        if '-> ' in line and 'bev/image' in line:  # the node's startup line
            return process, lines
        if not line and process.poll() is not None:
            break
    process.kill()
    pytest.fail('bev_node did not start:\n' + ''.join(lines))


def test_ctrl_c_in_a_terminal_under_ros2_launch_exits_cleanly():
    """Ctrl-C reaches a launched node twice (from the terminal and forwarded by launch): the
    node still shuts down cleanly, exit code 0 and no traceback."""
    process, lines = start_bev_node()
    process.send_signal(signal.SIGINT)
    time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    try:
        output, _ = process.communicate(timeout=30)
    finally:
        process.kill()
    output = ''.join(lines) + output
    assert process.returncode == 0, output
    assert 'Traceback' not in output and 'KeyboardInterrupt' not in output, output


def test_sigterm_right_after_start_ends_the_node_cleanly():
    process, _ = start_bev_node()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0
