"""ROS 2 node: a synthetic depth camera (see synthetic.py) publishing like an RGB-D driver.

Publishes (stamps equal across the three topics):
- ``depth/image_rect`` (sensor_msgs/Image, ``16UC1``/``mono16`` millimetres or ``32FC1`` metres,
  0 / NaN = no return),
- ``depth/camera_info`` (sensor_msgs/CameraInfo, pinhole, no distortion),
- ``rgb/image_rect_color`` (sensor_msgs/Image ``rgb8``, registered to depth) when publish_rgb.
With ``registered: false`` the colour image comes from a separate colour camera instead
(``demo.synthetic.UnregisteredCamera``: 25 mm to the right, slightly turned, 16:9, its own focal
length; frame ``rgb_frame_id``), as an unregistered RGB-D camera publishes it, plus its
``rgb/camera_info``; ``demo.synthetic.depth_to_color_transform()`` is the extrinsic
(``register_node``'s ``depth_to_rgb_transform``, see config/register.yaml).
Frames are rendered only while someone subscribes.
"""
import sys

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image

from ..demo.synthetic import SyntheticDepthCamera, UnregisteredCamera, depth_mm_to_metres
from ..layouts import DEPTH_ENCODINGS
from ..ros.camera_messages import array_to_image, make_camera_info
from ..ros.executable import run_node
from ..ros.parameters import ParameterDeclarer, QOS_CHOICES, qos_profile


class SyntheticCameraNode(Node):
    """Renders the synthetic room at ``rate`` Hz and publishes depth, camera info and colour."""

    def __init__(self, **kwargs):
        super().__init__('synthetic_camera', **kwargs)
        params = ParameterDeclarer(self)
        width = params.declare('width', 640, 'image width, pixels', value_range=(1, 8192),
                               read_only=True)
        height = params.declare('height', 480, 'image height, pixels', value_range=(1, 8192),
                                read_only=True)
        rate = params.declare('rate', 30.0, 'frames per second, Hz', value_range=(0.1, 240.0),
                              read_only=True)
        self.publish_rgb = params.declare(
            'publish_rgb', True, 'also publish rgb/image_rect_color (rgb8)', read_only=True)
        self.frame_id = params.declare('frame_id', 'camera_depth_optical_frame',
                                       'frame_id of the images (optical frame)', read_only=True)
        self.depth_encoding = params.declare(
            'depth_encoding', '16UC1', 'depth image encoding: 16UC1/mono16 in mm, 32FC1 in m',
            choices=DEPTH_ENCODINGS, read_only=True)
        max_depth = params.declare('max_depth', 8.0, 'farthest return, metres',
                                   value_range=(0.1, 65.0), read_only=True)
        threads = params.declare('threads', 1, 'render threads', value_range=(1, 64),
                                 read_only=True)
        qos = params.declare('qos', 'reliable', 'QoS of the published topics',
                             choices=QOS_CHOICES, read_only=True)
        self.registered = params.declare(
            'registered', True, 'colour registered to depth (false: a separate colour camera, '
            'published with rgb/camera_info, to be registered by register_node)',
            read_only=True)
        self.rgb_frame_id = params.declare(
            'rgb_frame_id', 'camera_color_optical_frame',
            'frame_id of the colour image and rgb/camera_info when registered is false',
            read_only=True)
        self.rig = None
        if self.registered:
            self.camera = SyntheticDepthCamera(width, height, max_depth=max_depth,
                                               with_color=self.publish_rgb, threads=threads)
            color_width, color_height = width, height
        else:
            self.rig = UnregisteredCamera(width, height, max_depth=max_depth, threads=threads)
            self.camera = self.rig.depth
            color_width, color_height = self.rig.color.width, self.rig.color.height
        profile = qos_profile(qos, depth=5)
        self.depth_publisher = self.create_publisher(Image, 'depth/image_rect', profile)
        self.info_publisher = self.create_publisher(CameraInfo, 'depth/camera_info', profile)
        self.rgb_publisher = (self.create_publisher(Image, 'rgb/image_rect_color', profile)
                              if self.publish_rgb else None)
        self.rgb_info_publisher = (
            self.create_publisher(CameraInfo, 'rgb/camera_info', profile)
            if self.publish_rgb and not self.registered else None)
        self._depth = np.empty((height, width), np.uint16)
        self._rgb = np.empty((color_height, color_width, 3), np.uint8)
        self.frames_published = 0
        self._start = self.get_clock().now()
        self._timer = self.create_timer(1.0 / rate, self.publish_frame)
        self.get_logger().info(
            f'synthetic camera {width}x{height} at {rate:g} Hz, depth {self.depth_encoding}'
            f'{", rgb8" if self.publish_rgb else ""}, frame {self.frame_id}'
            f'{"" if self.registered else f", unregistered colour camera {self.rgb_frame_id}"}')

    def publish_frame(self):
        """Render the view at the current time and publish it (skipped without subscribers)."""
        wants_depth = (self.depth_publisher.get_subscription_count() > 0 or
                       self.info_publisher.get_subscription_count() > 0)
        wants_rgb = any(publisher is not None and publisher.get_subscription_count() > 0
                        for publisher in (self.rgb_publisher, self.rgb_info_publisher))
        if not (wants_depth or wants_rgb):
            return
        now = self.get_clock().now()
        seconds = (now - self._start).nanoseconds * 1e-9
        if self.rig is not None and self.publish_rgb:
            frame, color_frame = self.rig.render(seconds, depth_out=self._depth,
                                                 rgb_out=self._rgb)
        else:
            frame = color_frame = self.camera.render(
                seconds, depth_out=self._depth, rgb_out=self._rgb if self.publish_rgb else None)
        header = Image().header
        header.stamp = now.to_msg()
        header.frame_id = self.frame_id
        if self.depth_encoding == '32FC1':
            depth_msg = array_to_image(depth_mm_to_metres(frame.depth_mm), '32FC1', header)
        else:
            depth_msg = array_to_image(frame.depth_mm, self.depth_encoding, header)
        info_msg = make_camera_info(header, self.camera.width, self.camera.height,
                                    self.camera.intrinsics.camera_matrix(),
                                    self.camera.intrinsics.projection_matrix())
        self.info_publisher.publish(info_msg)
        self.depth_publisher.publish(depth_msg)
        if self.publish_rgb:
            rgb_header = header
            if self.rig is not None:
                rgb_header = Image().header
                rgb_header.stamp = header.stamp
                rgb_header.frame_id = self.rgb_frame_id
                color = self.rig.color
                self.rgb_info_publisher.publish(make_camera_info(
                    rgb_header, color.width, color.height, color.intrinsics.camera_matrix(),
                    color.intrinsics.projection_matrix()))
            self.rgb_publisher.publish(array_to_image(color_frame.rgb, 'rgb8', rgb_header))
        self.frames_published += 1


def main(args=None):
    return run_node(SyntheticCameraNode, args)


if __name__ == '__main__':
    sys.exit(main())
