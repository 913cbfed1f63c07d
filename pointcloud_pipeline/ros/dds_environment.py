"""Environment for ROS 2 processes that must keep DDS traffic on this machine.

Used by the tests, the benchmarks and ``make demo``: discovery limited to localhost, a random
domain id (so concurrent runs do not see each other), logs in a temporary directory, and the
shared-memory large-data Fast DDS profile whose UDP transport is bound to 127.0.0.1
(``config/fastdds_large_data_loopback.xml``).
"""
import os
import random
import tempfile

from ..files import config_file

LOOPBACK_PROFILE = 'fastdds_large_data_loopback.xml'


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
        env['FASTDDS_DEFAULT_PROFILES_FILE'] = str(config_file(LOOPBACK_PROFILE))
    return env


def apply_loopback_ros_env(**kwargs):
    """Apply :func:`loopback_ros_env` to this process (before ``rclpy.init``); returns the env."""
    env = loopback_ros_env(**kwargs)
    os.environ.update(env)
    return env
