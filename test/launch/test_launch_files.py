"""Launch files: their declared arguments, the executables and files they name.

`launch` / `launch_ros` are not installable from PyPI, so the text of each launch file is parsed
(ast) here; when they are importable (a ROS 2 install) each file's launch description is also
built for real.
"""
import ast
import importlib.util
import re

import pytest

from conftest import REPO_ROOT

LAUNCH_DIR = REPO_ROOT / 'launch'
EXPECTED_ARGUMENTS = {
    'pipeline.launch.py': {'namespace', 'depth_topic', 'camera_info_topic', 'rgb_topic',
                           'rgb_info_topic', 'intensity_topic', 'points_topic', 'bev_topic',
                           'params_file', 'registered', 'register_params_file', 'rviz',
                           'use_large_data_profile'},
    'demo.launch.py': {'namespace', 'rate', 'width', 'height', 'publish_rgb', 'registered',
                       'rviz', 'use_large_data_profile'},
    'bev.launch.py': {'namespace', 'points_topic', 'bev_topic', 'params_file',
                      'use_large_data_profile'},
}


def console_scripts():
    text = (REPO_ROOT / 'setup.py').read_text()
    return set(re.findall(r"'(\w+) = pointcloud_pipeline\.[\w.]+:main'", text))


def calls(tree, name):
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call) and
            getattr(node.func, 'id', getattr(node.func, 'attr', None)) == name]


def keyword(call, name):
    for kw in call.keywords:
        if kw.arg == name and isinstance(kw.value, ast.Constant):
            return kw.value.value
    return None


@pytest.mark.parametrize('name', sorted(EXPECTED_ARGUMENTS))
def test_launch_file_declares_its_arguments(name):
    tree = ast.parse((LAUNCH_DIR / name).read_text())
    declared = {c.args[0].value for c in calls(tree, 'DeclareLaunchArgument')}
    assert declared == EXPECTED_ARGUMENTS[name]
    used = {c.args[0].value for c in calls(tree, 'LaunchConfiguration')}
    assert used == declared, 'every argument is used and every use is declared'
    for call in calls(tree, 'DeclareLaunchArgument'):
        assert keyword(call, 'description'), f'{call.args[0].value} has no description'


@pytest.mark.parametrize('name', sorted(EXPECTED_ARGUMENTS))
def test_launch_file_names_existing_executables_and_files(name):
    tree = ast.parse((LAUNCH_DIR / name).read_text())
    scripts = console_scripts()
    nodes = calls(tree, 'Node')
    assert nodes
    for node in nodes:
        package, executable = keyword(node, 'package'), keyword(node, 'executable')
        if package == 'pointcloud_pipeline':
            assert executable in scripts, f'{executable} is not a console_script in setup.py'
        else:
            assert (package, executable) == ('rviz2', 'rviz2')
    for join in calls(tree, 'PathJoinSubstitution'):
        parts = [e.value for e in join.args[0].elts[1:] if isinstance(e, ast.Constant)]
        assert (REPO_ROOT.joinpath(*parts)).is_file(), parts
    assert calls(tree, 'FindPackageShare')[0].args[0].value == 'pointcloud_pipeline'
    profile = calls(tree, 'SetEnvironmentVariable')
    assert profile and profile[0].args[0].func.id == 'fastdds_profiles_variable'


def test_setup_installs_launch_config_and_rviz_files():
    text = (REPO_ROOT / 'setup.py').read_text()
    for entry in ("installed('launch', '*.launch.py')", "installed('config', '*')",
                  "installed('rviz', '*.rviz')"):
        assert entry in text
    assert (REPO_ROOT / 'rviz' / 'pipeline.rviz').is_file()


def test_rviz_config_shows_points_best_effort_and_the_bev_image():
    import yaml
    config = yaml.safe_load((REPO_ROOT / 'rviz' / 'pipeline.rviz').read_text())
    manager = config['Visualization Manager']
    displays = {d['Class']: d for d in manager['Displays']}
    cloud = displays['rviz_default_plugins/PointCloud2']
    assert cloud['Topic']['Value'] == 'points'
    assert cloud['Topic']['Reliability Policy'] == 'Best Effort'
    assert displays['rviz_default_plugins/Image']['Topic']['Value'] == 'bev/image'
    assert manager['Global Options']['Fixed Frame'] == 'camera_depth_optical_frame'


launch_available = (importlib.util.find_spec('launch') is not None and
                    importlib.util.find_spec('launch_ros') is not None and
                    importlib.util.find_spec('launch.launch_description') is not None)


@pytest.mark.skipif(not launch_available,
                    reason='launch/launch_ros are not installed (not on PyPI; a ROS 2 install '
                           'provides them)')
@pytest.mark.parametrize('name', sorted(EXPECTED_ARGUMENTS))
def test_launch_description_builds(name):
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument
    spec = importlib.util.spec_from_file_location(name.replace('.', '_'), LAUNCH_DIR / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    assert isinstance(description, LaunchDescription)
    declared = {e.name for e in description.entities if isinstance(e, DeclareLaunchArgument)}
    assert declared == EXPECTED_ARGUMENTS[name]
