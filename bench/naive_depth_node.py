"""Benchmark baseline: a depth -> PointCloud2 node written the common way in rclpy.

Numpy-vectorised conversion (pixel grids, float32 maths, NaN for invalid pixels) on the executor
thread, and the cloud packed like ``sensor_msgs_py.point_cloud2.create_cloud`` does (an
``array('B')`` filled from the array's bytes, then assigned to ``msg.data``): the fast rclpy path,
not the element-by-element one. XYZ float32, point step 12, organized, ``qos_profile_sensor_data``.
On exit (SIGINT) prints one JSON line: frames converted and the callback time percentiles (ms).

Run: python bench/naive_depth_node.py [--ros-args ...]
"""
from array import array
import json
import sys
import time

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField


class NaiveDepthToCloud(Node):
    def __init__(self):
        super().__init__('naive_depth_to_cloud')
        self.camera_info = None
        self.callback_seconds = []
        self.create_subscription(CameraInfo, 'depth/camera_info', self.on_info,
                                 qos_profile_sensor_data)
        self.create_subscription(Image, 'depth/image_rect', self.on_depth, qos_profile_sensor_data)
        self.publisher = self.create_publisher(PointCloud2, 'points', qos_profile_sensor_data)
        self.fields = [PointField(name=n, offset=o, datatype=PointField.FLOAT32, count=1)
                       for n, o in (('x', 0), ('y', 4), ('z', 8))]

    def on_info(self, msg):
        self.camera_info = msg

    def on_depth(self, msg):
        start = time.perf_counter()
        if self.camera_info is None or msg.encoding != '16UC1':
            return
        fx, _, cx, _, fy, cy, _, _, _ = self.camera_info.k
        depth = np.frombuffer(msg.data, dtype=np.uint16).reshape(msg.height, msg.width)
        v, u = np.indices(depth.shape, dtype=np.float32)
        z = depth.astype(np.float32) * np.float32(0.001)
        x = (u - np.float32(cx)) * z / np.float32(fx)
        y = (v - np.float32(cy)) * z / np.float32(fy)
        points = np.stack([x, y, z], axis=-1)
        points[depth == 0] = np.nan
        data = array('B')
        data.frombytes(points.tobytes())
        cloud = PointCloud2(header=msg.header, height=msg.height, width=msg.width,
                            fields=self.fields, is_bigendian=False, point_step=12,
                            row_step=12 * msg.width, is_dense=False, data=data)
        self.publisher.publish(cloud)
        self.callback_seconds.append(time.perf_counter() - start)


def main(args=None):
    rclpy.init(args=args)
    node = NaiveDepthToCloud()
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        times = np.array(node.callback_seconds) * 1e3
        print(json.dumps({
            'frames': int(times.size),
            'p50_ms': float(np.percentile(times, 50)) if times.size else None,
            'p99_ms': float(np.percentile(times, 99)) if times.size else None}), flush=True)
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main(sys.argv)
