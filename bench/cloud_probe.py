"""Benchmark sink: receive PointCloud2 messages and /diagnostics until SIGINT.

For every cloud records (header stamp, receive time) in seconds (system clock, like the
stamps); keeps the last /diagnostics status whose name starts with --node. On SIGINT writes one
JSON object to --output: {"stamps": [...], "received": [...], "bytes": last size,
"diagnostics": {key: value}}.

Run: python bench/cloud_probe.py --output probe.json --node pointcloud_pipeline
"""
import argparse
import json
import time

from diagnostic_msgs.msg import DiagnosticArray
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import PointCloud2


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--output', required=True)
    parser.add_argument('--node', default='pointcloud_pipeline')
    parser.add_argument('--topic', default='points')
    args = parser.parse_args()
    rclpy.init()
    node = Node('bench_cloud_probe')
    stamps, received, diagnostics, size = [], [], {}, [0]

    def on_cloud(msg):
        received.append(time.time())
        stamps.append(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9)
        size[0] = len(msg.data)

    def on_diagnostics(array):
        for status in array.status:
            if status.name.startswith(args.node):
                diagnostics.clear()
                diagnostics.update({kv.key: kv.value for kv in status.values})

    node.create_subscription(PointCloud2, args.topic, on_cloud, qos_profile_sensor_data)
    node.create_subscription(DiagnosticArray, '/diagnostics', on_diagnostics, 10)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        with open(args.output, 'w') as stream:
            json.dump({'stamps': stamps, 'received': received, 'bytes': size[0],
                       'diagnostics': diagnostics}, stream)
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
