"""Real DDS between real nodes, and proof that the traffic stays on loopback."""
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

from pointcloud_pipeline.ros.data_field import set_data
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
