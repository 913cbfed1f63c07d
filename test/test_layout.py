"""The package's layout is its architecture: the maths library needs no ROS, and imports only run
down the layers nodes -> demo / batch -> ros -> maths library -> small helpers."""
import ast
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

PACKAGE = REPO_ROOT / 'pointcloud_pipeline'
ROS_MODULES = ('rclpy', 'rcl_interfaces', 'sensor_msgs', 'std_msgs', 'diagnostic_msgs',
               'builtin_interfaces', 'ament_index_python')
SUBPACKAGES = ('monodepth', 'ros', 'nodes', 'batch', 'demo', 'view')
# subpackage -> subpackages it must not import
FORBIDDEN = {
    'library': SUBPACKAGES,
    'monodepth': ('ros', 'nodes', 'batch', 'demo', 'view'),
    'ros': ('nodes', 'batch', 'demo', 'view'),
    'batch': ('ros', 'nodes', 'demo', 'view'),
    'demo': ('nodes', 'batch', 'view'),
    'view': ('nodes', 'batch', 'demo'),
}


def top_level_modules():
    return sorted(path.stem for path in PACKAGE.glob('*.py') if path.stem != '__main__')


def imported_modules(path):
    """Absolute names of the modules imported by ``path`` (relative imports resolved)."""
    parts = path.relative_to(REPO_ROOT).with_suffix('').parts
    package = parts[:-1] if parts[-1] != '__init__' else parts[:-1]
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                module = '.'.join(base + ((node.module,) if node.module else ()))
            else:
                module = node.module
            names.append(module)
            names += [f'{module}.{alias.name}' for alias in node.names]
    return names


def concern_of(path):
    relative = path.relative_to(PACKAGE).parts
    if relative == ('__main__.py',):
        return 'command line'  # python -m pointcloud_pipeline: the batch CLI's front door
    return relative[0] if len(relative) > 1 else 'library'


def test_the_top_level_library_imports_without_ros():
    """Every top-level module imports in a fresh interpreter where rclpy and the ROS message
    packages cannot be imported."""
    blocker = (
        'import sys\n'
        f'BLOCKED = {ROS_MODULES!r}\n'
        'class Blocker:\n'
        '    def find_spec(self, name, path=None, target=None):\n'
        '        if name.split(".")[0] in BLOCKED:\n'
        '            raise ImportError(f"{name} is blocked: the library must not need ROS")\n'
        'sys.meta_path.insert(0, Blocker())\n'
        'import importlib\n'
        f'for name in {top_level_modules()!r}:\n'
        '    importlib.import_module(f"pointcloud_pipeline.{name}" if name != "__init__"\n'
        '                            else "pointcloud_pipeline")\n'
        'loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)\n'
        'assert not loaded, loaded\n'
        'print("ok", len(' f'{top_level_modules()!r}' '))\n')
    result = subprocess.run([sys.executable, '-c', blocker], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f'ok {len(top_level_modules())}'


def test_the_blocker_would_catch_a_ros_import():
    """The check above can fail: a module of ros/ does not import with rclpy blocked."""
    probe = (
        'import sys\n'
        'class Blocker:\n'
        '    def find_spec(self, name, path=None, target=None):\n'
        '        if name.split(".")[0] == "rclpy":\n'
        '            raise ImportError("blocked")\n'
        'sys.meta_path.insert(0, Blocker())\n'
        'import pointcloud_pipeline.ros.parameters\n')
    result = subprocess.run([sys.executable, '-c', probe], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0 and 'blocked' in result.stderr


@pytest.mark.parametrize('path', sorted(PACKAGE.rglob('*.py')),
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_run_down_the_layers(path):
    concern = concern_of(path)
    imported = imported_modules(path)
    if concern in ('library', 'monodepth', 'batch'):
        ros = [name for name in imported if name.split('.')[0] in ROS_MODULES
               and name.split('.')[0] != 'ament_index_python']
        assert not ros, f'{concern} module imports ROS: {ros}'
    for forbidden in FORBIDDEN.get(concern, ()):
        prefix = f'pointcloud_pipeline.{forbidden}'
        bad = [name for name in imported if name == prefix or name.startswith(prefix + '.')]
        assert not bad, f'{concern} must not import {forbidden}: {bad}'


def test_every_kernel_sits_beside_its_public_module():
    for kernel in PACKAGE.rglob('_*.pyx'):
        public = kernel.with_name(kernel.stem[1:] + '.py')
        assert public.is_file(), f'{kernel.relative_to(REPO_ROOT)} has no public module'
