"""rviz2 is optional (package.xml does not depend on it): every launch file defaults ``rviz`` to
false, and ``rviz:=true`` without rviz2 stops with a clear message before any node starts,
never leaving nodes running as orphans.

The text of each launch file is checked here always; real ``ros2 launch`` runs need a ROS 2
install with this package installed (e.g. under colcon test) and are skipped otherwise.
"""
import ast
import importlib.util
import os
from pathlib import Path
import shutil
import signal
import subprocess
import time
import uuid

import pytest

from conftest import REPO_ROOT

LAUNCH_FILES = sorted((REPO_ROOT / 'launch').glob('*.launch.py'))


def calls(tree, name):
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call) and
            getattr(node.func, 'id', getattr(node.func, 'attr', None)) == name]


def constant(call, name):
    for kw in call.keywords:
        if kw.arg == name and isinstance(kw.value, ast.Constant):
            return kw.value.value
    return None


def rviz_launch_files():
    return [path for path in LAUNCH_FILES
            if any(constant(node, 'package') == 'rviz2'
                   for node in calls(ast.parse(path.read_text()), 'Node'))]


def test_some_launch_files_start_rviz2():
    assert {p.name for p in rviz_launch_files()} >= {'demo.launch.py', 'pipeline.launch.py'}


@pytest.mark.parametrize('path', rviz_launch_files(), ids=lambda p: p.name)
def test_rviz_defaults_to_false(path):
    tree = ast.parse(path.read_text())
    defaults = {}
    for call in calls(tree, 'DeclareLaunchArgument'):
        if isinstance(call.args[0], ast.Constant):
            defaults[call.args[0].value] = constant(call, 'default_value')
    for table in (node for node in ast.walk(tree) if isinstance(node, ast.Tuple)):
        values = [e.value for e in table.elts if isinstance(e, ast.Constant)]
        if len(values) == 3 and values[0] == 'rviz':  # monocular: (name, default, description)
            defaults['rviz'] = values[1]
    assert defaults.get('rviz') == 'false'


@pytest.mark.parametrize('path', rviz_launch_files(), ids=lambda p: p.name)
def test_rviz2_is_checked_before_any_node_starts(path):
    """The returned LaunchDescription lists OpaqueFunction(function=require_rviz2) before its
    nodes, and require_rviz2 checks the package only when rviz is true."""
    tree = ast.parse(path.read_text())
    function = next(node for node in tree.body
                    if isinstance(node, ast.FunctionDef) and node.name == 'require_rviz2')
    assert calls(function, 'get_package_prefix')[0].args[0].value == 'rviz2'
    assert calls(function, 'IfCondition')
    description = calls(tree, 'LaunchDescription')[-1]
    names = [getattr(n, 'id', None) or getattr(getattr(n, 'func', None), 'id', None)
             for n in ast.walk(description)]
    first_check = names.index('OpaqueFunction')
    assert calls(description, 'OpaqueFunction')[0].keywords[0].value.id == 'require_rviz2'
    node_variables = {target.id for node in ast.walk(tree) if isinstance(node, ast.Assign)
                      and isinstance(node.value, ast.Call)
                      and getattr(node.value.func, 'id', None) == 'Node'
                      for target in node.targets}
    positions = [i for i, name in enumerate(names) if name in node_variables]
    assert positions and first_check < min(positions)


# --- real `ros2 launch` ----------------------------------------------------------------------

def _installed(package):
    try:
        from ament_index_python.packages import get_package_prefix
        get_package_prefix(package)
        return True
    except Exception:  # noqa: BLE001 - ament_index missing or package not found
        return False


ros2_launch = pytest.mark.skipif(
    shutil.which('ros2') is None or importlib.util.find_spec('launch_ros') is None
    or not _installed('pointcloud_pipeline'),
    reason='needs `ros2 launch` and pointcloud_pipeline installed in a ROS 2 workspace '
           '(colcon test); launch/launch_ros are not on PyPI')


def processes_with(text):
    """Pids of processes whose command line contains ``text``."""
    pids = []
    for entry in Path('/proc').iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / 'cmdline').read_bytes().replace(b'\0', b' ').decode()
            except OSError:
                continue
            if text in command and int(entry.name) != os.getpid():
                pids.append(int(entry.name))
    return pids


def launch(file, *arguments, until=None, timeout=60.0):
    """``ros2 launch`` ``file`` in its own session with a unique namespace; reads its output
    until it exits or ``until`` (a text, or a tuple of texts that must all appear) appears,
    then stops it with SIGINT. Returns (exit
    code, output, orphans): orphans are the pids of node processes of that namespace still
    running a second after ``ros2 launch`` ended (killed, so a failing run leaves none)."""
    namespace = 'launch_test_' + uuid.uuid4().hex[:8]
    process = subprocess.Popen(
        ['ros2', 'launch', str(REPO_ROOT / 'launch' / file), f'namespace:={namespace}',
         *arguments], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    output = []
    deadline = time.monotonic() + timeout
    try:
        for line in process.stdout:
            output.append(line)
            texts = (until,) if isinstance(until, str) else until
            if until is not None and all(text in ''.join(output) for text in texts):
                break
            if time.monotonic() > deadline:
                break
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=30)
        output.append(rest)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    time.sleep(1.0)
    orphans = processes_with(f'__ns:=/{namespace}')
    for pid in orphans:
        os.kill(pid, signal.SIGKILL)
    return process.returncode, ''.join(output), orphans


@ros2_launch
def test_demo_with_its_defaults_runs_without_rviz2_and_stops_cleanly():
    code, output, orphans = launch('demo.launch.py', until='->')  # the pipeline's first log
    assert orphans == [], 'nodes left running'
    assert 'rviz2' not in output, output
    assert output.count('process started') == 2, output
    assert code == 0, output


@ros2_launch
@pytest.mark.skipif(_installed('rviz2'), reason='rviz2 is installed here')
@pytest.mark.parametrize('file', ['demo.launch.py', 'pipeline.launch.py'])
def test_rviz_true_without_rviz2_is_a_clear_error_and_starts_nothing(file):
    code, output, orphans = launch(file, 'rviz:=true', timeout=60.0)
    assert orphans == [], 'nodes left running'
    assert code == 1, output
    assert "rviz:=true needs the package 'rviz2'" in output
    assert 'process started' not in output
