"""The package's metadata agrees with itself and with what colcon and ROS users rely on."""
import configparser
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


def test_ros_env_confines_dds_to_loopback():
    from pointcloud_pipeline.ros_env import loopback_ros_env
    env = loopback_ros_env(base={'ROS_LOCALHOST_ONLY': '1'})
    assert env['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST'
    assert 1 <= int(env['ROS_DOMAIN_ID']) <= 100
    assert 'ROS_LOCALHOST_ONLY' not in env
    profile = ET.parse(env['FASTDDS_DEFAULT_PROFILES_FILE']).getroot()
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
