"""The package's metadata agrees with itself and with what colcon and ROS users rely on."""
import configparser
import importlib
import re
import xml.etree.ElementTree as ET

from conftest import REPO_ROOT


def test_package_xml_is_ament_python_with_valid_maintainer():
    root = ET.parse(REPO_ROOT / 'package.xml').getroot()
    assert root.get('format') == '3'
    assert root.findtext('name') == 'pointcloud_pipeline'
    assert root.find('export/build_type').text == 'ament_python'
    # colcon silently treats the package as plain Python when the e-mail is invalid
    email = root.find('maintainer').get('email')
    assert re.fullmatch(r'[^@\s]+@[^@\s]+\.[a-z]{2,}', email), email
    exec_depends = {e.text for e in root.findall('exec_depend')}
    assert {'rclpy', 'sensor_msgs', 'std_msgs', 'python3-numpy'} <= exec_depends


def test_versions_agree():
    import pointcloud_pipeline
    xml_version = ET.parse(REPO_ROOT / 'package.xml').getroot().findtext('version')
    setup_py = (REPO_ROOT / 'setup.py').read_text()
    assert f"version='{xml_version}'" in setup_py
    assert pointcloud_pipeline.__version__ == xml_version


def test_scripts_install_where_ros2_run_finds_them():
    cfg = configparser.ConfigParser()
    cfg.read(REPO_ROOT / 'setup.cfg')
    assert cfg['develop']['script_dir'] == '$base/lib/pointcloud_pipeline'
    assert cfg['install']['install_scripts'] == '$base/lib/pointcloud_pipeline'
    assert (REPO_ROOT / 'resource' / 'pointcloud_pipeline').is_file()


EXECUTABLES = {  # ros2 run / console script name -> module:function
    'pointcloud_pipeline': 'pointcloud_pipeline.batch.cli:main',
    'bev_batch': 'pointcloud_pipeline.batch.bev:main',
    'normals': 'pointcloud_pipeline.batch.normals:main',
    'raster': 'pointcloud_pipeline.batch.raster:main',
    'raster_map': 'pointcloud_pipeline.batch.raster_map:main',
    'pipeline_node': 'pointcloud_pipeline.nodes.pipeline_node:main',
    'bev_node': 'pointcloud_pipeline.nodes.bev_node:main',
    'depth_estimator_node': 'pointcloud_pipeline.nodes.depth_estimator_node:main',
    'synthetic_camera_node': 'pointcloud_pipeline.nodes.synthetic_camera_node:main',
    'replay_node': 'pointcloud_pipeline.nodes.replay_node:main',
    'register_node': 'pointcloud_pipeline.nodes.register_node:main',
    'convert_metric_node': 'pointcloud_pipeline.nodes.convert_metric_node:main',
    'crop_foremost_node': 'pointcloud_pipeline.nodes.crop_foremost_node:main',
    'disparity_node': 'pointcloud_pipeline.nodes.disparity_node:main',
    'recorder_node': 'pointcloud_pipeline.nodes.recorder_node:main',
}


def test_console_scripts_keep_their_names_and_resolve():
    """The executables' names are what launch files and users run; each one imports."""
    text = (REPO_ROOT / 'setup.py').read_text()
    scripts = dict(re.findall(r"'(\w+) = ([\w.]+:\w+)'", text))
    assert scripts == EXECUTABLES
    for target in scripts.values():
        module, function = target.split(':')
        assert callable(getattr(importlib.import_module(module), function)), target


def test_ros_env_confines_dds_to_loopback():
    from pointcloud_pipeline.ros.compat import fastdds_profiles_variable
    from pointcloud_pipeline.ros.dds_environment import loopback_ros_env
    env = loopback_ros_env(base={'ROS_LOCALHOST_ONLY': '1'})
    assert env['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST'
    assert 1 <= int(env['ROS_DOMAIN_ID']) <= 100
    assert 'ROS_LOCALHOST_ONLY' not in env
    profile = ET.parse(env[fastdds_profiles_variable()]).getroot()  # the name Fast DDS reads
    ns = {'f': 'http://www.eprosima.com'}
    whitelists = profile.findall('.//f:interfaceWhiteList/f:address', ns)
    assert [w.text for w in whitelists] == ['127.0.0.1']
    assert profile.find('.//f:useBuiltinTransports', ns).text == 'false'


def test_robot_profile_is_the_loopback_one_without_the_whitelist():
    """Launch files use fastdds_large_data.xml: same transports, UDP not confined."""
    ns = {'f': 'http://www.eprosima.com'}
    robot = ET.parse(REPO_ROOT / 'config' / 'fastdds_large_data.xml').getroot()
    loopback = ET.parse(REPO_ROOT / 'config' / 'fastdds_large_data_loopback.xml').getroot()
    assert robot.findall('.//f:interfaceWhiteList', ns) == []
    for profile in (robot, loopback):
        shm = profile.find(".//f:transport_descriptor[f:type='SHM']", ns)
        assert shm.find('f:segment_size', ns).text == str(64 * 1024 * 1024)
        assert profile.find('.//f:useBuiltinTransports', ns).text == 'false'


def _pins(name):
    """{package: version} of a requirements file (comments dropped)."""
    pins = {}
    for line in (REPO_ROOT / name).read_text().splitlines():
        line = line.split('#', 1)[0].strip()
        if line:
            package, version = line.split('==')
            pins[package.lower()] = version
    return pins


def test_jazzy_requirements_differ_from_kilted_only_in_the_ros_wheels():
    kilted, jazzy = _pins('requirements.txt'), _pins('requirements-jazzy.txt')
    ros = {name for name in kilted if name.startswith('ros-')}
    assert {name: v for name, v in kilted.items() if name not in ros} == \
        {name: v for name, v in jazzy.items() if not name.startswith('ros-')}
    assert {name for name in jazzy if name.startswith('ros-')} == \
        {name.replace('ros-', 'ros-jazzy-', 1) for name in ros}
