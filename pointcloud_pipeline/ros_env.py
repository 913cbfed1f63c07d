"""Environment for ROS 2 processes that must keep DDS traffic on this machine.

Used by the tests, the benchmarks and ``make demo``: discovery limited to localhost, a random
domain id (so concurrent runs do not see each other), logs in a temporary directory, and the
shared-memory large-data Fast DDS profile whose UDP transport is bound to 127.0.0.1
(``config/fastdds_large_data_loopback.xml``).
"""
import os
import random
import tempfile

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def large_data_profile_path():
    """Path of ``fastdds_large_data_loopback.xml``: the source tree's, else the installed share/ copy."""
    source_tree = os.path.join(os.path.dirname(PACKAGE_DIR), 'config', 'fastdds_large_data_loopback.xml')
    if os.path.isfile(source_tree):
        return source_tree
    from ament_index_python.packages import get_package_share_directory
    installed = os.path.join(
        get_package_share_directory('pointcloud_pipeline'), 'config', 'fastdds_large_data_loopback.xml')
    if not os.path.isfile(installed):
        raise FileNotFoundError(f'fastdds_large_data_loopback.xml not found at {source_tree} or {installed}')
    return installed


def loopback_ros_env(domain_id=None, log_dir=None, large_data_profile=True, base=None):
    """Return a copy of ``base`` (default ``os.environ``) with DDS confined to loopback.

    domain_id: ROS_DOMAIN_ID to use; random in 1..100 when None.
    log_dir: ROS_LOG_DIR; a new temporary directory when None.
    large_data_profile: point FASTDDS_DEFAULT_PROFILES_FILE at the shared-memory profile.
    """
    env = dict(os.environ if base is None else base)
    env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    env['ROS_DOMAIN_ID'] = str(random.randint(1, 100) if domain_id is None else int(domain_id))
    env['ROS_LOG_DIR'] = log_dir or tempfile.mkdtemp(prefix='pointcloud_pipeline_roslog_')
    env.pop('ROS_LOCALHOST_ONLY', None)  # ignored since Jazzy; keep one source of truth
    env.pop('ROS_PYTHON_CHECK_FIELDS', None)  # makes bytes assignment ~270 ms per VGA cloud
    env.setdefault('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp')  # the only RMW in the PyPI wheels
    if large_data_profile:
        env['FASTDDS_DEFAULT_PROFILES_FILE'] = large_data_profile_path()
    return env


def apply_loopback_ros_env(**kwargs):
    """Apply :func:`loopback_ros_env` to this process (before ``rclpy.init``); returns the env."""
    env = loopback_ros_env(**kwargs)
    os.environ.update(env)
    return env
