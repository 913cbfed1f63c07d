"""colcon build + colcon test of the package in a throwaway workspace (the ROS user's path)."""
import importlib.util
import sys

import pytest

from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / 'test'))
import colcon_workspace  # noqa: E402


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec('colcon_core') is None or
                    importlib.util.find_spec('colcon_ros') is None,
                    reason='colcon-core/colcon-ros not installed in this Python')
def test_colcon_build_and_test(tmp_path):
    workspace = tmp_path / 'ws'
    # colcon test runs a fast subset against the installed package (the full suite: make colcon-test)
    code = colcon_workspace.main(['--workspace', str(workspace),
                                  '--pytest-args', 'test/test_package.py'])
    assert code == 0
    prefix = workspace / 'install' / 'pointcloud_pipeline'
    share = prefix / 'share' / 'pointcloud_pipeline'
    assert (share / 'package.xml').is_file()
    assert (share / 'config' / 'fastdds_large_data.xml').is_file()
    assert (share / 'config' / 'fastdds_large_data_loopback.xml').is_file()
    profiles = sorted(p.name for p in (REPO_ROOT / 'config' / 'models').glob('*.yaml'))
    assert sorted(p.name for p in (share / 'config' / 'models').glob('*.yaml')) == profiles
    assert (share / 'launch' / 'monocular.launch.py').is_file()
    assert (share / 'rviz' / 'monocular.rviz').is_file()
    assert (prefix / 'lib' / 'pointcloud_pipeline' / 'depth_estimator_node').is_file()
    index = prefix / 'share' / 'ament_index' / 'resource_index' / 'packages' / 'pointcloud_pipeline'
    assert index.is_file()
    site = next(prefix.glob('lib/python3*/site-packages/pointcloud_pipeline'))
    kernels = sorted(p.name.split('.')[0] for p in site.glob('_*.so'))
    sources = sorted(p.stem for p in (REPO_ROOT / 'pointcloud_pipeline').glob('_*.pyx'))
    assert kernels == sources
