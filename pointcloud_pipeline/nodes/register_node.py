"""ROS 2 node: depth registered to the colour camera (depth_image_proc's ``register``).

Subscribes (depth_image_proc's topic names)
- ``depth/image_rect`` (sensor_msgs/Image: 16UC1 / mono16 in ``depth_scale`` metres per unit,
  32FC1 in metres),
- ``depth/camera_info`` and ``rgb/camera_info`` (sensor_msgs/CameraInfo): the latest valid one
  of each is used (best effort, so any publisher matches, plus a transient-local subscription
  once a latched publisher appears; a message delivered through both is handled once). K and P
  are full-resolution calibration: binning and ROI (REP 104) are applied as image_geometry
  does; the depth image must have the depth camera_info's (reduced) size, and the output has
  the colour camera_info's.
Publishes
- ``depth_registered/image_rect``: the depth reprojected into the colour camera
  (:func:`pointcloud_pipeline.register.register_depth`: z-buffered, the nearest surface wins,
  the value is the z in the colour optical frame), the input's encoding (uint16 in the same
  units, 0 = no data; 32FC1 metres, NaN = no data), the depth image's stamp, the colour
  camera_info's frame_id;
- ``depth_registered/camera_info``: the colour camera_info with the depth image's stamp
  (published first, so a subscriber that keeps the latest camera_info has it for the image);
- ``/diagnostics``.

The depth -> colour extrinsic: from TF (``lookup_transform(colour frame, depth frame, depth
stamp)``) when ``use_tf`` and tf2_ros can be imported (a ROS install), else, or when the lookup
fails, ``depth_to_rgb_transform`` (16 numbers row-major, p_rgb = T p_depth; all zeros = not
set). With neither the frame is dropped as ``no_transform``. On the bare path (PyPI wheels)
tf2_ros does not exist and the parameter is the only source.

Nothing is computed while nobody subscribes to either output (the frame counts as skipped). A
bad message is dropped with a throttled warning and counted per reason; no exception leaves a
callback. Parameters: config/register.yaml.
"""
import sys
import time

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from ..layouts import DEPTH_ENCODINGS
from ..register import depth_to_color_transform, register_depth, \
    transform_from_translation_rotation
from ..ros.camera_messages import pixels_to_image
from ..ros.data_field import MessageBuffer
from ..ros.diagnostics import DiagnosticsReporter, FrameStatistics, ReasonWarnings
from ..ros.executable import run_node
from ..ros.message_checks import (DuplicateDeliveries, FrameError, camera_model,
                                  check_camera_matches, image_pixels)
from ..ros.parameters import ParameterDeclarer, QOS_CHOICES, qos_profile

try:  # a ROS install; not on PyPI (the bare path uses depth_to_rgb_transform only)
    from tf2_ros import Buffer as TransformBuffer, TransformListener
except ImportError:  # pragma: no cover - depends on the installation
    TransformBuffer = TransformListener = None

UNSET_TRANSFORM = [0.0] * 16


def declare_register_parameters(params):
    """Declare every parameter of the node (names, defaults and ranges of register.yaml)."""
    d = params.declare
    d('qos', 'sensor_data', 'QoS of inputs and outputs', choices=QOS_CHOICES, read_only=True)
    d('queue_size', 5, 'history depth of subscriptions and publishers', value_range=(1, 100),
      read_only=True)
    d('max_image_bytes', 268435456, 'input images with more data bytes are dropped',
      value_range=(1, 2**31 - 1))
    d('depth_scale', 0.001, 'metres per 16UC1/mono16 depth unit (input and output)',
      value_range=(1e-9, 1000.0))
    d('use_projection_matrix', True, 'intrinsics from camera_info P (else K)')
    d('fill_upsampling_holes', False, 'fill the colour pixels each depth pixel covers (for a '
      'colour image of higher resolution than the depth image)')
    d('threads', 0, 'kernel threads (0: all cores)', value_range=(0, 256))
    d('use_tf', True, 'depth -> colour extrinsic from TF when tf2_ros is installed',
      read_only=True)
    d('depth_to_rgb_transform', UNSET_TRANSFORM, '4x4 row-major depth optical -> colour '
      'optical transform, metres (p_rgb = T p_depth); all zeros: not set')
    params.declare_reporting()


class RegisterSettings:
    """Settings of the node that may change while it runs (checked; ValueError otherwise)."""

    def __init__(self, values):
        self.depth_scale = float(values['depth_scale'])
        if not self.depth_scale > 0:
            raise ValueError(f'depth_scale must be > 0, got {self.depth_scale}')
        self.use_projection_matrix = bool(values['use_projection_matrix'])
        self.fill_upsampling_holes = bool(values['fill_upsampling_holes'])
        self.threads = int(values['threads'])
        self.max_image_bytes = int(values['max_image_bytes'])
        matrix = [float(x) for x in values['depth_to_rgb_transform']]
        self.transform = None if not any(matrix) else depth_to_color_transform(matrix)
        self.log_period = float(values['log_period'])
        self.warn_throttle = float(values['warn_throttle'])

    @classmethod
    def from_parameters(cls, values):
        return cls(values)


class LatestCameraInfo:
    """The latest valid camera_info of one topic, subscribed best effort, plus a transient-local
    subscription once a latched publisher is seen (as the pipeline node does)."""

    def __init__(self, node, topic, name):
        self._node = node
        self._topic = topic
        self.name = name  # 'depth' or 'rgb', for the event and warning names
        self.info = None
        self.model = None
        self._deliveries = DuplicateDeliveries()
        self._warned_fallback = False
        node.create_subscription(CameraInfo, topic, self._on_info,
                                 QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT))
        self._latched = None
        self._timer = node.create_timer(0.5, self._watch_for_latched)

    def _watch_for_latched(self):
        for publisher in self._node.get_publishers_info_by_topic(
                self._node.resolve_topic_name(self._topic)):
            qos = publisher.qos_profile
            if qos.durability == DurabilityPolicy.TRANSIENT_LOCAL:
                self._latched = self._node.create_subscription(
                    CameraInfo, self._topic, self._on_info,
                    QoSProfile(depth=1, reliability=qos.reliability,
                               durability=DurabilityPolicy.TRANSIENT_LOCAL))
                self._timer.cancel()
                return

    def _on_info(self, info, message_info):
        node = self._node
        try:
            if self._deliveries.is_duplicate(message_info):
                node.statistics.count_event(f'{self.name}_camera_info_duplicate')
                return
        except Exception as error:  # noqa: BLE001 - nothing may escape a callback
            node.warnings.warn('internal_error', f'camera_info delivery info: {error!r}')
        self.use(info)

    def use(self, info, count_rejection=True):
        """Take ``info`` as the latest camera_info when it is valid."""
        node = self._node
        try:
            model = camera_model(info, node.settings.use_projection_matrix)
            if model.fallback is not None and not self._warned_fallback:
                self._warned_fallback = True
                node.get_logger().warning(f'{self.name} {model.fallback}')
            self.model, self.info = model, info
        except Exception as error:  # noqa: BLE001 - nothing may escape a callback
            if count_rejection:
                node.statistics.count_event(f'{self.name}_camera_info_rejected')
            reason = error.reason if isinstance(error, FrameError) else 'internal_error'
            node.warnings.warn(f'{self.name}_{reason}', f'ignoring {self.name} camera_info: '
                                                        f'{error}')


class RegisterNode(Node):
    """depth + depth camera_info + rgb camera_info -> ``depth_registered/*``; see the module
    docstring."""

    def __init__(self, **kwargs):
        super().__init__('register_node', **kwargs)
        self._params = ParameterDeclarer(self)
        declare_register_parameters(self._params)
        self.settings = RegisterSettings.from_parameters(self._params.values())
        profile = qos_profile(self.get_parameter('qos').value,
                              self.get_parameter('queue_size').value)
        self.statistics = FrameStatistics()
        self.warnings = ReasonWarnings(self.get_logger(), self.settings.warn_throttle)
        self._buffer = MessageBuffer()
        self._tf_buffer = None
        if self.get_parameter('use_tf').value and TransformBuffer is not None:
            self._tf_buffer = TransformBuffer()
            self._tf_listener = TransformListener(self._tf_buffer, self)
        self.image_publisher = self.create_publisher(Image, 'depth_registered/image_rect',
                                                     profile)
        self.info_publisher = self.create_publisher(CameraInfo, 'depth_registered/camera_info',
                                                    profile)
        self.depth_info = LatestCameraInfo(self, 'depth/camera_info', 'depth')
        self.rgb_info = LatestCameraInfo(self, 'rgb/camera_info', 'rgb')
        self.create_subscription(Image, 'depth/image_rect', self._on_depth, profile)
        self.reporter = DiagnosticsReporter(
            self, self.statistics, period=self.get_parameter('diagnostics_period').value,
            log_period=self.settings.log_period)
        self.add_on_set_parameters_callback(
            self._params.validator(RegisterSettings.from_parameters))
        self.add_post_set_parameters_callback(self._apply_parameters)
        source = ('TF, else depth_to_rgb_transform' if self._tf_buffer is not None else
                  'depth_to_rgb_transform' + ('' if self.settings.transform is not None
                                              else ' (not set yet)'))
        self.get_logger().info(
            f'{self.resolve_topic_name("depth/image_rect")} -> '
            f'{self.resolve_topic_name("depth_registered/image_rect")}, extrinsic from {source}')

    def _apply_parameters(self, parameters):
        previous = self.settings
        self.settings = settings = RegisterSettings.from_parameters(self._params.values())
        self.reporter.log_period = settings.log_period
        if settings.warn_throttle != previous.warn_throttle:
            self.warnings.period = settings.warn_throttle
        if settings.use_projection_matrix != previous.use_projection_matrix:
            for latest in (self.depth_info, self.rgb_info):
                if latest.info is not None:
                    latest.use(latest.info, count_rejection=False)

    def _wanted(self):
        return (self.image_publisher.get_subscription_count() > 0 or
                self.info_publisher.get_subscription_count() > 0)

    def _transform(self, depth_frame, rgb_frame, stamp):
        """4x4 depth -> colour transform: TF at ``stamp`` when available, else the
        parameter; FrameError 'no_transform' with neither."""
        problem = 'depth_to_rgb_transform is not set'
        if self._tf_buffer is not None:
            try:
                found = self._tf_buffer.lookup_transform(rgb_frame, depth_frame,
                                                         Time.from_msg(stamp))
                t, q = found.transform.translation, found.transform.rotation
                return transform_from_translation_rotation((t.x, t.y, t.z),
                                                           (q.x, q.y, q.z, q.w))
            except Exception as error:  # noqa: BLE001 - tf2 raises several exception types
                problem = f'TF {rgb_frame!r} <- {depth_frame!r}: {error}; and ' + problem
        if self.settings.transform is not None:
            return self.settings.transform
        raise FrameError('no_transform', problem)

    def _on_depth(self, msg):
        received = time.perf_counter()
        self.statistics.count_received()
        try:
            if not self._wanted():
                self.statistics.count_skipped()
                return
            self._register(msg, received)
        except Exception as error:  # noqa: BLE001 - nothing may escape a callback
            self.statistics.count_dropped('internal_error')
            self.warnings.warn('internal_error', f'dropped a depth frame: {error!r}')

    def _register(self, msg, received):
        settings = self.settings
        try:
            depth_camera, rgb_camera = self.depth_info.model, self.rgb_info.model
            rgb_info = self.rgb_info.info
            if depth_camera is None:
                raise FrameError('no_camera_info', 'no valid depth/camera_info received yet')
            if rgb_camera is None:
                raise FrameError('no_rgb_camera_info', 'no valid rgb/camera_info received yet')
            depth = image_pixels(msg, DEPTH_ENCODINGS, settings.max_image_bytes)
            check_camera_matches(depth_camera, depth.shape)
            transform = self._transform(msg.header.frame_id, rgb_info.header.frame_id,
                                        msg.header.stamp)
            size = (rgb_camera.width, rgb_camera.height)
            out = self._buffer.view(size[0] * size[1] * depth.dtype.itemsize)
            registered = register_depth(
                depth, depth_camera.intrinsics, rgb_camera.intrinsics, size, transform,
                depth_scale=settings.depth_scale,
                fill_upsampling_holes=settings.fill_upsampling_holes, out=out,
                threads=settings.threads)
        except FrameError as error:
            self.statistics.count_dropped(error.reason)
            self.warnings.warn(error.reason, f'dropped a frame: {error}')
            return
        except ValueError as error:
            self.statistics.count_dropped('conversion_error')
            self.warnings.warn('conversion_error', f'dropped a frame: {error}')
            return
        header = Header(stamp=msg.header.stamp, frame_id=rgb_info.header.frame_id)
        self.info_publisher.publish(_restamped(rgb_info, header))
        self.image_publisher.publish(pixels_to_image(registered, msg.encoding, header,
                                                     self._buffer))
        self.statistics.count_published(time.perf_counter() - received)


def _restamped(info, header):
    """A copy of the CameraInfo ``info`` with ``header``."""
    copy = CameraInfo()
    copy.header = header
    for name in ('height', 'width', 'distortion_model', 'd', 'k', 'r', 'p', 'binning_x',
                 'binning_y', 'roi'):
        setattr(copy, name, getattr(info, name))
    return copy


def main(args=None):
    return run_node(RegisterNode, args)


if __name__ == '__main__':
    sys.exit(main())
