"""Benchmark source: publish synthetic depth + camera_info at a fixed rate for a fixed time.

Frames are rendered before the timed part (a few distinct views, cycled) so the publisher
spends its time publishing. Waits for a subscriber on the depth topic first. Prints one JSON
line: frames published, wall-clock start and end (time.time()), achieved rate.

Run: python bench/depth_publisher.py --width 640 --height 480 --rate 30 --seconds 5
"""
import argparse
import json
import time

import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image

from pointcloud_pipeline.demo.synthetic import SyntheticDepthCamera
from pointcloud_pipeline.ros.camera_messages import array_to_image, make_camera_info


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument('--rate', type=float, default=30.0, help='Hz; 0 = as fast as possible')
    parser.add_argument('--seconds', type=float, default=5.0)
    parser.add_argument('--frames', type=int, default=8, help='distinct frames, cycled')
    args = parser.parse_args()
    camera = SyntheticDepthCamera(args.width, args.height, with_color=False, threads=2)
    depth_frames = [camera.render(i * 0.5).depth_mm.copy() for i in range(args.frames)]
    rclpy.init()
    node = Node('bench_depth_publisher')
    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    depth_pub = node.create_publisher(Image, 'depth/image_rect', qos)
    info_pub = node.create_publisher(CameraInfo, 'depth/camera_info', qos)
    images = [array_to_image(d, '16UC1') for d in depth_frames]
    info = make_camera_info(images[0].header, args.width, args.height,
                            camera.intrinsics.camera_matrix(),
                            camera.intrinsics.projection_matrix())
    deadline = time.monotonic() + 30
    while depth_pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # let the rest of the graph discover each other
    period = 1.0 / args.rate if args.rate > 0 else 0.0
    start_wall, start = time.time(), time.monotonic()
    published = 0
    next_time = start
    while time.monotonic() - start < args.seconds:
        stamp = node.get_clock().now().to_msg()
        image = images[published % len(images)]
        image.header.stamp = stamp
        info.header.stamp = stamp
        info_pub.publish(info)
        depth_pub.publish(image)
        published += 1
        if period:
            next_time += period
            delay = next_time - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_time = time.monotonic()  # behind: do not burst
    end_wall = time.time()
    print(json.dumps({'published': published, 'start': start_wall, 'end': end_wall,
                      'rate_hz': published / (end_wall - start_wall)}), flush=True)
    time.sleep(0.5)
    node.destroy_node()
    rclpy.try_shutdown()


if __name__ == '__main__':
    main()
