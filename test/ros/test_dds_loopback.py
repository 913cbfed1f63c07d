"""Real DDS between real nodes, proof that the traffic stays on loopback, and the loopback
environment itself (variables removed, temporary log directories removed)."""
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time

import pytest
import rclpy
from rclpy.node import Node
from sensor_msgs.msg import PointCloud2

from conftest import REPO_ROOT
from pointcloud_pipeline.ros.data_field import set_data
from pointcloud_pipeline.ros.dds_environment import CHECK_FIELDS_OPT_IN, LOG_DIR_PREFIX
from ros_helpers import Collector, spinning, wait_for_subscribers

pytestmark = pytest.mark.ros

VGA_CLOUD_BYTES = 640 * 480 * 16


def test_large_cloud_crosses_dds(rclpy_context):
    talker = Node('loopback_talker', context=rclpy_context)
    listener = Node('loopback_listener', context=rclpy_context)
    received = Collector()
    listener.create_subscription(PointCloud2, 'cloud', received, 10)
    publisher = talker.create_publisher(PointCloud2, 'cloud', 10)
    with spinning(rclpy_context, talker, listener):
        assert wait_for_subscribers(publisher)
        msg = PointCloud2(height=480, width=640, point_step=16, row_step=640 * 16)
        payload = bytes(range(256)) * (VGA_CLOUD_BYTES // 256)
        set_data(msg, payload)
        for _ in range(3):
            publisher.publish(msg)
            time.sleep(0.05)
        messages = received.wait_for(3)
    assert len(messages) == 3
    assert bytes(messages[0].data) == payload


PUBSUB_SCRIPT = textwrap.dedent('''
    import time
    import rclpy
    from rclpy.node import Node
    from std_msgs.msg import String
    rclpy.init()
    node = Node('strace_probe')
    got = []
    node.create_subscription(String, 'chatter', got.append, 10)
    pub = node.create_publisher(String, 'chatter', 10)
    deadline = time.monotonic() + 5
    while len(got) < 5 and time.monotonic() < deadline:
        pub.publish(String(data='hello'))
        rclpy.spin_once(node, timeout_sec=0.1)
    print('received', len(got))
    node.destroy_node()
    rclpy.try_shutdown()
''')


@pytest.mark.skipif(shutil.which('strace') is None, reason='strace is not installed')
def test_dds_sends_only_to_loopback(tmp_path):
    """Every UDP datagram a node sends goes to 127.0.0.0/8 (strace of sendto/sendmsg)."""
    trace = tmp_path / 'trace.txt'
    result = subprocess.run(
        ['strace', '-f', '-qq', '-e', 'trace=sendto,sendmsg,sendmmsg,connect', '-o', str(trace),
         sys.executable, '-c', PUBSUB_SCRIPT], capture_output=True, text=True, timeout=60)
    if 'PTRACE' in result.stderr or 'Operation not permitted' in result.stderr:
        pytest.skip('ptrace is not permitted here: ' + result.stderr.strip()[:200])
    assert result.returncode == 0, result.stderr
    assert 'received 5' in result.stdout
    destinations = re.findall(r'sin_addr=inet_addr\("([0-9.]+)"\)', trace.read_text())
    ipv6 = re.findall(r'inet_pton\(AF_INET6, "([^"]+)", &sin6_addr\)', trace.read_text())
    assert destinations, 'no UDP traffic seen at all'
    assert all(addr.startswith('127.') for addr in destinations), sorted(set(destinations))
    assert all(addr == '::1' for addr in ipv6), sorted(set(ipv6))


def python(script, env, timeout=120):
    """Run ``script`` in a fresh interpreter (cwd: the repository) with ``env``."""
    result = subprocess.run([sys.executable, '-c', textwrap.dedent(script)], cwd=REPO_ROOT,
                            env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def bare_env(**extra):
    """This process's environment without what the loopback environment sets, plus ``extra``."""
    env = {name: value for name, value in os.environ.items()
           if name not in ('ROS_LOG_DIR', CHECK_FIELDS_OPT_IN, 'ROS_DOMAIN_ID')}
    env.update(extra)
    return env


def test_apply_removes_the_variables_it_drops_from_os_environ():
    """ROS_LOCALHOST_ONLY and ROS_PYTHON_CHECK_FIELDS leave os.environ itself, before rclpy's
    message modules read them at import."""
    output = python('''
        import json, os
        from pointcloud_pipeline.ros.dds_environment import apply_loopback_ros_env
        env = apply_loopback_ros_env()
        from sensor_msgs.msg import PointCloud2
        print(json.dumps({'localhost_only': os.environ.get('ROS_LOCALHOST_ONLY'),
                          'check_fields': os.environ.get('ROS_PYTHON_CHECK_FIELDS'),
                          'in_returned_env': sorted({'ROS_LOCALHOST_ONLY',
                                                     'ROS_PYTHON_CHECK_FIELDS'} & set(env)),
                          'message_checks': PointCloud2()._check_fields,
                          'range': os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE']}))
    ''', bare_env(ROS_LOCALHOST_ONLY='1', ROS_PYTHON_CHECK_FIELDS='1'))
    assert json.loads(output) == {'localhost_only': None, 'check_fields': None,
                                  'in_returned_env': [], 'message_checks': False,
                                  'range': 'LOCALHOST'}


def test_check_fields_are_kept_only_on_request():
    output = python('''
        import os
        from pointcloud_pipeline.ros.dds_environment import apply_loopback_ros_env
        apply_loopback_ros_env()
        from sensor_msgs.msg import PointCloud2
        print(os.environ.get('ROS_PYTHON_CHECK_FIELDS'), PointCloud2()._check_fields)
    ''', bare_env(**{CHECK_FIELDS_OPT_IN: '1'}))
    assert output.split() == ['1', 'True']


LOG_DIR_SCRIPT = '''
    import json, os, subprocess, sys
    from pathlib import Path
    from pointcloud_pipeline.ros.dds_environment import apply_loopback_ros_env, loopback_ros_env
    env = apply_loopback_ros_env()
    import rclpy
    from rclpy.node import Node
    rclpy.init()
    node = Node('log_dir_probe')
    node.get_logger().info('written to the temporary log directory')
    child = (
        'import os, rclpy\\n'
        'from rclpy.node import Node\\n'
        'from pointcloud_pipeline.ros.dds_environment import apply_loopback_ros_env\\n'
        'apply_loopback_ros_env()\\n'
        'rclpy.init()\\n'
        'Node("child_probe").get_logger().info("child")\\n'
        'rclpy.shutdown()\\n'
        'print(os.environ["ROS_LOG_DIR"])\\n')
    child_dir = subprocess.run([sys.executable, '-c', child], env=env, check=True,
                               capture_output=True, text=True).stdout.strip()
    print(json.dumps({'log_dir': os.environ['ROS_LOG_DIR'], 'child_dir': child_dir,
                      'again': loopback_ros_env()['ROS_LOG_DIR'],
                      'from_base': loopback_ros_env(base={})['ROS_LOG_DIR'],
                      'files': sorted(p.name for p in Path(env['ROS_LOG_DIR']).iterdir())}))
    node.destroy_node()
    rclpy.shutdown()
'''


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(LOG_DIR_PREFIX))


def test_temporary_log_directories_are_removed_at_exit(tmp_path):
    """One directory per process tree, used by the node logs of the process and of a child
    that inherits it, and gone once the process exits."""
    temp = tmp_path / 'tmp'
    temp.mkdir()
    report = json.loads(python(LOG_DIR_SCRIPT, bare_env(TMPDIR=str(temp))))
    log_dir = report['log_dir']
    assert os.path.dirname(log_dir) == str(temp)
    assert os.path.basename(log_dir).startswith(LOG_DIR_PREFIX)
    assert report['child_dir'] == report['again'] == report['from_base'] == log_dir
    assert len([f for f in report['files'] if f.endswith('.log')]) >= 2  # parent and child
    assert leftovers(temp) == []


def test_a_test_run_leaves_no_log_directory(tmp_path):
    """The 22 directories left in /tmp after one test run: a pytest run that starts nodes in
    subprocesses (the demo-style node processes inherit the directory) leaves none."""
    temp = tmp_path / 'tmp'
    temp.mkdir()
    result = subprocess.run(
        [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
         'test/ros/test_executable.py', 'test/ros/test_data_field.py'],
        cwd=REPO_ROOT, env=bare_env(TMPDIR=str(temp)), capture_output=True, text=True,
        timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert ' passed' in result.stdout
    assert leftovers(temp) == []
