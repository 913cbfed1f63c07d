"""Environment for ROS 2 processes that must keep DDS traffic on this machine.

Used by the tests, the benchmarks and ``make demo``: discovery limited to localhost, a random
domain id (so concurrent runs do not see each other), logs in a temporary directory, and the
shared-memory large-data Fast DDS profile whose UDP transport is bound to 127.0.0.1
(``config/fastdds_large_data_loopback.xml``).

The temporary log directory belongs to the process that created it (:func:`temporary_log_dir`):
one per process, shared by every environment it builds and inherited by its children, and
removed with its contents when that process exits. A child whose ``ROS_LOG_DIR`` is its
parent's temporary directory keeps using it and creates none.
"""
import atexit
import os
from pathlib import Path
import random
import shutil
import tempfile

from ..files import config_file
from .compat import fastdds_profiles_variable

LOOPBACK_PROFILE = 'fastdds_large_data_loopback.xml'
LOG_DIR_PREFIX = 'pointcloud_pipeline_roslog_'
CHECK_FIELDS_OPT_IN = 'POINTCLOUD_PIPELINE_CHECK_FIELDS'
"""Set to 1 to keep rclpy's per-assignment field checks (ROS_PYTHON_CHECK_FIELDS=1) in the
loopback environment, e.g. to run the test suite in that mode; removed otherwise."""

REMOVED_VARIABLES = ('ROS_LOCALHOST_ONLY', 'ROS_PYTHON_CHECK_FIELDS')
"""Variables :func:`loopback_ros_env` may remove (and :func:`apply_loopback_ros_env` then
removes from ``os.environ``)."""

_owned_log_dir = None  # (pid, Path) of the directory this process created


def _remove_owned_log_dir(pid, path):
    if os.getpid() == pid:  # not in a forked child that inherited the handler
        shutil.rmtree(path, ignore_errors=True)


def temporary_log_dir():
    """This process's temporary ROS log directory (a ``Path``): created on the first call,
    removed with its contents when the interpreter exits."""
    global _owned_log_dir
    pid = os.getpid()
    if _owned_log_dir is None or _owned_log_dir[0] != pid:
        path = Path(tempfile.mkdtemp(prefix=LOG_DIR_PREFIX))
        _owned_log_dir = (pid, path)
        atexit.register(_remove_owned_log_dir, pid, path)
    return _owned_log_dir[1]


def _inherited_log_dir(env):
    """``env``'s ROS_LOG_DIR when it is an existing temporary log directory made by
    :func:`temporary_log_dir` in a parent process (which removes it), else None."""
    value = env.get('ROS_LOG_DIR')
    if not value:
        return None
    path = Path(value)
    if (path.name.startswith(LOG_DIR_PREFIX) and path.parent == Path(tempfile.gettempdir())
            and path.is_dir()):
        return path
    return None


def loopback_ros_env(domain_id=None, log_dir=None, large_data_profile=True, base=None,
                     check_fields=None):
    """Return a copy of ``base`` (default ``os.environ``) with DDS confined to loopback.

    domain_id: ROS_DOMAIN_ID to use; random in 1..100 when None.
    log_dir: ROS_LOG_DIR; when None, the temporary log directory inherited from a parent
        process, else this process's own (:func:`temporary_log_dir`, removed at exit).
    large_data_profile: point Fast DDS's profiles variable at the shared-memory profile
        (FASTDDS_DEFAULT_PROFILES_FILE; FASTRTPS_DEFAULT_PROFILES_FILE on Jazzy's Fast DDS 2.x,
        which ignores the other: :func:`pointcloud_pipeline.ros.compat.fastdds_profiles_variable`).
    check_fields: keep rclpy's field checks (ROS_PYTHON_CHECK_FIELDS=1) instead of removing
        the variable; None: as ``POINTCLOUD_PIPELINE_CHECK_FIELDS`` in ``base`` says ('1').
    ROS_LOCALHOST_ONLY is removed (ignored since Jazzy; ROS_AUTOMATIC_DISCOVERY_RANGE is the
    one source of truth).
    """
    env = dict(os.environ if base is None else base)
    if check_fields is None:
        check_fields = env.get(CHECK_FIELDS_OPT_IN) == '1'
    env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    env['ROS_DOMAIN_ID'] = str(random.randint(1, 100) if domain_id is None else int(domain_id))
    env['ROS_LOG_DIR'] = str(log_dir or _inherited_log_dir(env) or temporary_log_dir())
    env.pop('ROS_LOCALHOST_ONLY', None)
    if check_fields:
        env['ROS_PYTHON_CHECK_FIELDS'] = '1'
    else:
        env.pop('ROS_PYTHON_CHECK_FIELDS', None)  # makes bytes assignment ~270 ms per VGA cloud
    env.setdefault('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp')  # the only RMW in the PyPI wheels
    if large_data_profile:
        env[fastdds_profiles_variable(env)] = str(config_file(LOOPBACK_PROFILE))
    return env


def apply_loopback_ros_env(**kwargs):
    """Make :func:`loopback_ros_env` this process's environment (before ``rclpy.init`` and
    before any message module is imported: they read ROS_PYTHON_CHECK_FIELDS at import):
    variables it sets are set, variables it removes are removed. Returns the env."""
    env = loopback_ros_env(**kwargs)
    for name in REMOVED_VARIABLES:
        if name not in env:
            os.environ.pop(name, None)
    os.environ.update(env)
    return env
