"""ROS 2 node: any PointCloud2 (e.g. a LiDAR's ``/velodyne_points``) -> bird's-eye-view image
and occupancy grid.

Subscribes ``points`` (sensor_msgs/PointCloud2 with x, y, z FLOAT32 fields, found by name, and
an optional ``intensity`` of any numeric PointField datatype: FLOAT32 is read in place, INT8 ..
FLOAT64 (e.g. a driver's UINT8 or UINT16) converted to float32), read from ``msg.data``; the
cloud's frame is taken as x forward, y left, z up unless ``use_transform`` maps it there.
Publishes, with the cloud's stamp,
- ``bev/image`` (sensor_msgs/Image bgr8: blue intensity, green height, red density; forward is
  up);
- ``bev/occupancy`` (nav_msgs/OccupancyGrid of the same cells: 100 where a point is
  ``occupancy.min_height`` to ``occupancy.max_height`` above the ground at
  ``occupancy.ground_z``, else 0 where one is within ``occupancy.ground_tolerance`` of the
  ground, else -1; cell (0, 0) at (x_range[0], y_range[0]), rows along y: see
  pointcloud_pipeline.occupancy), when ``occupancy.enable``;
- ``/diagnostics``.
Each output is computed only while it has a subscriber. Bad clouds are dropped with a throttled
warning and counted per reason. An ``intensity`` field that cannot be read (unknown datatype,
count != 1, outside the point) does not drop the cloud: its blue channel is 0, with a throttled
warning and the event ``intensity_ignored`` counted on ``/diagnostics``. Parameters:
config/pipeline.yaml (section bev_node).
"""
import sys
import time

from nav_msgs.msg import OccupancyGrid
import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image, PointCloud2
from std_msgs.msg import Header

from ..bev import bev_image_from_buffer
from ..occupancy import occupancy_grid_from_buffer
from ..ros.camera_messages import pixels_to_image
from ..ros.cloud_messages import scalar_field
from ..ros.data_field import MessageBuffer
from ..ros.diagnostics import DiagnosticsReporter, FrameStatistics, ReasonWarnings
from ..ros.executable import run_node
from ..ros.message_checks import FrameError, cloud_layout
from ..ros.occupancy_messages import (OccupancyGridBuffer, OccupancySettings,
                                      declare_occupancy_parameters)
from ..ros.parameters import BevSettings, ParameterDeclarer, QOS_CHOICES, qos_profile

IDENTITY = [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0]
KITTI_GROUND_Z = -1.73  # metres: the road below KITTI's velodyne (the frame of z_range's default)


def declare_bev_parameters(params):
    """Declare every parameter of the node (names, defaults and ranges of pipeline.yaml)."""
    d = params.declare
    d('qos', 'sensor_data', 'QoS of input and outputs', choices=QOS_CHOICES, read_only=True)
    d('queue_size', 5, 'history depth of the subscription and publishers',
      value_range=(1, 100), read_only=True)
    d('max_cloud_bytes', 268435456, 'input clouds with more data bytes are dropped',
      value_range=(1, 2**31 - 1))
    d('threads', 0, 'kernel threads (0: all cores); a preempted thread does not stall the '
      'kernel, so all cores pay off on a shared CPU too', value_range=(0, 256))
    d('x_range', [-40.0, 40.0], 'metres forward covered [min, max]')
    d('y_range', [-40.0, 40.0], 'metres left covered [min, max]')
    d('z_range', [-2.73, 1.27], 'metres up kept [min, max]')
    d('resolution', 0.1, 'metres per cell', value_range=(0.001, 100.0))
    d('intensity_range', [0.0, 1.0], 'raw intensity mapped to [0, 1] [min, max]')
    d('use_transform', False, 'apply transform (4x4 row-major) to the points first')
    d('transform', IDENTITY, '4x4 cloud frame -> z-up frame, row-major')
    d('frame_id', '', "frame of the BEV image and occupancy grid ('' = the cloud's)")
    # outdoor lidar defaults: the road is not flat within a few centimetres over 40 m
    declare_occupancy_parameters(params, min_height=0.3, max_height=2.0, ground_tolerance=0.15,
                                 ground_z=KITTI_GROUND_Z)
    params.declare_reporting()


def checked_settings(values):
    """(BevSettings, OccupancySettings) of the parameter ``values``; ValueError naming the
    parameter when one is bad."""
    return BevSettings.from_parameters(values), OccupancySettings.from_parameters(values)


class BevNode(Node):
    """PointCloud2 -> ``bev/image`` and ``bev/occupancy``; see the module docstring."""

    def __init__(self, **kwargs):
        super().__init__('bev_node', **kwargs)
        self._params = ParameterDeclarer(self)
        declare_bev_parameters(self._params)
        self.settings, self.occupancy = checked_settings(self._params.values())
        profile = qos_profile(self.get_parameter('qos').value,
                              self.get_parameter('queue_size').value)
        self.statistics = FrameStatistics()
        self.warnings = ReasonWarnings(self.get_logger(), self.settings.warn_throttle)
        self._buffer = MessageBuffer()
        self._occupancy_buffer = OccupancyGridBuffer()
        self.publisher = self.create_publisher(Image, 'bev/image', profile)
        self.occupancy_publisher = self.create_publisher(OccupancyGrid, 'bev/occupancy',
                                                         profile)
        self.create_subscription(PointCloud2, 'points', self._on_cloud, profile)
        self.reporter = DiagnosticsReporter(
            self, self.statistics, period=self.get_parameter('diagnostics_period').value,
            log_period=self.settings.log_period)
        self.add_on_set_parameters_callback(self._params.validator(checked_settings))
        self.add_post_set_parameters_callback(self._apply_parameters)
        grid = self.settings.grid
        self.get_logger().info(f'{self.resolve_topic_name("points")} -> '
                               f'{self.resolve_topic_name("bev/image")}, '
                               f'{self.resolve_topic_name("bev/occupancy")} '
                               f'({grid.rows}x{grid.cols} cells of {grid.resolution:g} m)')

    def _apply_parameters(self, parameters):
        settings, self.occupancy = checked_settings(self._params.values())
        self.reporter.log_period = settings.log_period
        if settings.warn_throttle != self.settings.warn_throttle:
            self.warnings.period = settings.warn_throttle
        self.settings = settings

    def _intensity(self, msg, point_step):
        """(offset, dtype) of the cloud's intensity; (None, float32) when it has none or it
        cannot be read (then warned, throttled, and counted as ``intensity_ignored``)."""
        try:
            found = scalar_field(msg.fields, 'intensity', point_step)
        except ValueError as error:
            self.statistics.count_event('intensity_ignored')
            self.warnings.warn('intensity_ignored', f'blue (intensity) channel left at 0: '
                                                    f'{error}')
            found = None
        return found if found is not None else (None, np.float32)

    def _on_cloud(self, msg):
        received = time.perf_counter()
        self.statistics.count_received()
        try:
            settings, occupancy = self.settings, self.occupancy
            want_image = self.publisher.get_subscription_count() > 0
            want_occupancy = (occupancy.enable and
                              self.occupancy_publisher.get_subscription_count() > 0)
            if not (want_image or want_occupancy):
                self.statistics.count_skipped()
                return
            layout = cloud_layout(msg, settings.max_cloud_bytes)
            grid = settings.grid
            header = Header(stamp=msg.header.stamp,
                            frame_id=settings.frame_id or msg.header.frame_id)
            if want_image:
                intensity_offset, intensity_dtype = self._intensity(msg, layout.point_step)
                pixels = self._buffer.view(grid.rows * grid.cols * 3).reshape(grid.shape)
                image = bev_image_from_buffer(
                    layout.buffer, layout.point_step, layout.num_points,
                    x_offset=layout.x_offset, y_offset=layout.y_offset,
                    z_offset=layout.z_offset, intensity_offset=intensity_offset,
                    intensity_dtype=intensity_dtype, grid=grid, transform=settings.transform,
                    out=pixels, threads=settings.threads)
                self.publisher.publish(pixels_to_image(image, 'bgr8', header, self._buffer))
            if want_occupancy:
                occupancy_grid_from_buffer(
                    layout.buffer, layout.point_step, layout.num_points,
                    x_offset=layout.x_offset, y_offset=layout.y_offset,
                    z_offset=layout.z_offset, grid=grid, bands=occupancy.bands,
                    transform=settings.transform, out=self._occupancy_buffer.view(grid),
                    threads=settings.threads)
                self.occupancy_publisher.publish(
                    self._occupancy_buffer.message(grid, occupancy.bands, header))
            self.statistics.count_published(time.perf_counter() - received)
        except FrameError as error:
            self.statistics.count_dropped(error.reason)
            self.warnings.warn(error.reason, f'dropped a cloud: {error}')
        except Exception as error:  # noqa: BLE001 - nothing may escape a callback
            self.statistics.count_dropped('internal_error')
            self.warnings.warn('internal_error', f'dropped a cloud: {error!r}')


def main(args=None):
    return run_node(BevNode, args)


if __name__ == '__main__':
    sys.exit(main())
