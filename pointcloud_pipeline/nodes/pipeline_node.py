"""ROS 2 node: depth image (+ colour, + intensity) -> PointCloud2 and a bird's-eye-view image.

The counterpart of depth_image_proc's point_cloud_xyz, _xyzrgb, _xyzi and their _radial
variants in one node (README "Coming from depth_image_proc").

Subscribes
- ``depth/image_rect`` (sensor_msgs/Image: 16UC1 / mono16 in ``depth_scale`` metres per unit,
  32FC1 in metres). ``depth_kind``: ``z`` (along the optical axis, the ROS convention) or
  ``radial`` (distance along the pixel's ray, e.g. some time-of-flight cameras);
  ``rectified: false`` for an image that still has its lens distortion (rays from K and D:
  plumb_bob, rational_polynomial or equidistant). Both use a per-pixel ray table computed
  once per camera_info (``rays.ray_table``); rectified z-depth uses the pinhole model.
- ``depth/camera_info`` (sensor_msgs/CameraInfo; the latest valid one is used; best effort, so
  any publisher matches, plus a transient-local subscription once a latched publisher appears,
  so its last message is received too; a message delivered through both is handled once).
  K and P are full-resolution calibration: binning and ROI (REP 104) are applied to them as
  image_geometry does, and the depth image must have the ROI size divided by the binning. A
  valid K with an all-zero P is used instead of P, with one warning.
- ``rgb/image_rect_color`` (rgb8/bgr8/rgba8/bgra8/mono8, registered to depth) when ``use_rgb``,
  paired with depth by stamp (exact, or within ``sync_slop`` seconds). When stamps jump back
  (bag loop, simulator reset, a replay looping without restamping, one bogus future stamp:
  a stamp more than ``max(1 s, 2 * sync_max_age)`` behind the newest) or ROS time jumps back
  (``/clock`` with ``use_sim_time``), the pairing restarts with a throttled warning and a
  ``sync_reset`` event; the frames waiting then are dropped as ``no_rgb_partner``.
- ``intensity/image_rect`` (mono8, mono16, 16UC1 or 32FC1: infrared / amplitude, registered to
  depth and of its size) when ``use_intensity``, paired by stamp like colour (with both, a frame
  needs all three; a depth frame without its set is dropped as ``no_rgb_partner``,
  ``no_intensity_partner`` or ``no_partner``).
- Transports (image_transport's names: the resolved base topic + ``/<transport>``):
  ``depth_transport: compressedDepth`` subscribes sensor_msgs/CompressedImage on
  ``depth/image_rect/compressedDepth`` (compressed_depth_image_transport's wire format: 16UC1 /
  mono16 / 32FC1, PNG or RVL), ``rgb_transport: compressed`` on
  ``rgb/image_rect_color/compressed`` (compressed_image_transport: JPEG / PNG); decoded by
  ``pointcloud_pipeline.compressed_images`` when the frame is converted (after pairing, only
  when an output is wanted); a bad one is dropped as ``bad_compressed_depth`` /
  ``rgb_bad_compressed`` (or ``too_large`` / ``bad_encoding``, ``rgb_`` for colour).
Publishes
- ``points`` (sensor_msgs/PointCloud2): x, y, z float32 at 0, 4, 8, then packed rgb float32 at
  12 (``use_rgb``) or the raw intensity float32 at 12 (``use_intensity``): point_step 16; with
  both, rgb at 12 and intensity at 16, point_step 20. In the depth image's optical frame
  (x right, y down, z forward), metres; organized (NaN for invalid pixels) or dense; header
  copied from the depth image;
- ``bev/image`` (sensor_msgs/Image bgr8: green height, red density, blue intensity mapped by
  ``bev.intensity_range``; 0 without ``use_intensity``), computed from the same point buffer
  after the ``mount.*`` transform into the z-up body frame.
- ``bev/occupancy`` (nav_msgs/OccupancyGrid, ``occupancy.enable``) of the same grid and points:
  100 where a point is ``occupancy.min_height`` to ``occupancy.max_height`` above the ground
  (the body frame's z = 0), else 0 where one is within ``occupancy.ground_tolerance`` of it,
  else -1; frame ``bev.frame_id``, cell (0, 0) at (bev.x_range[0], bev.y_range[0]), rows along
  y (pointcloud_pipeline.occupancy).
- ``/diagnostics``: frames in/out/dropped per reason, events (``camera_info_rejected`` once per
  rejected camera_info publication, ``camera_info_duplicate``, ``rgb_without_depth``,
  ``intensity_without_depth``,
  ``sync_reset``), latency p50/p99 from receiving the depth image to publishing its cloud
  (``latency_ms``) and its BEV image (``bev_latency_ms``).

Nothing is converted for an output nobody subscribes to. A bad message is dropped with a
throttled warning and counted; no exception leaves a callback. Parameters: config/pipeline.yaml.
"""
import sys
import time

from nav_msgs.msg import OccupancyGrid
from rclpy.clock import JumpThreshold
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header

from ..bev import bev_image_from_buffer
from ..compressed_images import CompressedDepthDecoder, CompressedImageDecoder
from ..depth import cloud_fields, depth_to_cloud, max_cloud_bytes
from ..layouts import COLOR_ENCODINGS, DEPTH_ENCODINGS, INTENSITY_ENCODINGS
from ..occupancy import occupancy_grid_from_buffer
from ..rays import DEPTH_KINDS, needs_ray_table, ray_table
from ..ros.camera_messages import pixels_to_image
from ..ros.cloud_messages import SerializedPointCloud2
from ..ros.compressed_messages import (COLOR_TRANSPORTS, DEPTH_TRANSPORTS,
                                       compressed_color_pixels, compressed_depth_pixels,
                                       transport_topic)
from ..ros.data_field import MessageBuffer
from ..ros.diagnostics import DiagnosticsReporter, FrameStatistics, ReasonWarnings
from ..ros.executable import run_node
from ..ros.message_checks import (DuplicateDeliveries, FrameError, camera_model,
                                  check_camera_matches, check_color_matches,
                                  check_intensity_matches, image_pixels)
from ..ros.occupancy_messages import (OccupancyGridBuffer, OccupancySettings,
                                      declare_occupancy_parameters)
from ..ros.parameters import ParameterDeclarer, PipelineSettings, QOS_CHOICES, qos_profile
from ..ros.stamp_sync import StampSynchronizer
from ..transforms import OPTICAL_TO_BODY_ROTATION

STREAM_NAMES = {'color': 'colour', 'intensity': 'intensity'}  # in log messages
DEFAULT_MOUNT_TRANSFORM = [*OPTICAL_TO_BODY_ROTATION[0], 0.0, *OPTICAL_TO_BODY_ROTATION[1], 0.0,
                           *OPTICAL_TO_BODY_ROTATION[2], 0.0, 0.0, 0.0, 0.0, 1.0]


def declare_pipeline_parameters(params):
    """Declare every parameter of the node (names, defaults and ranges of pipeline.yaml)."""
    d = params.declare
    d('qos', 'sensor_data', 'QoS of inputs and outputs', choices=QOS_CHOICES, read_only=True)
    d('queue_size', 5, 'history depth of subscriptions and publishers', value_range=(1, 100),
      read_only=True)
    d('use_rgb', False, 'colour the cloud from rgb/image_rect_color', read_only=True)
    d('use_intensity', False, 'intensity field from intensity/image_rect', read_only=True)
    d('depth_transport', 'raw', "'raw': sensor_msgs/Image on depth/image_rect; "
      "'compressedDepth': sensor_msgs/CompressedImage on depth/image_rect/compressedDepth",
      choices=DEPTH_TRANSPORTS, read_only=True)
    d('rgb_transport', 'raw', "'raw': sensor_msgs/Image on rgb/image_rect_color; 'compressed': "
      'sensor_msgs/CompressedImage (JPEG, PNG) on rgb/image_rect_color/compressed',
      choices=COLOR_TRANSPORTS, read_only=True)
    d('resize_rgb', False, 'resize a colour image of another size instead of dropping it')
    d('sync_slop', 0.0, 'largest depth/colour stamp difference, seconds (0: exact)',
      value_range=(0.0, 1.0))
    d('sync_queue_size', 10, 'frames waiting for their partner, per stream',
      value_range=(1, 1000), read_only=True)
    d('sync_max_age', 0.5, 'seconds after which an unpaired frame is dropped',
      value_range=(0.001, 60.0))
    d('max_image_bytes', 268435456, 'input images with more data bytes are dropped',
      value_range=(1, 2**31 - 1))
    d('depth_scale', 0.001, 'metres per 16UC1/mono16 depth unit', value_range=(1e-9, 1000.0))
    d('depth_kind', 'z', "'z': depth along the optical axis; 'radial': distance along the "
      "pixel's ray", choices=DEPTH_KINDS)
    d('rectified', True, 'false: the depth image still has its lens distortion (camera_info K '
      'and D)')
    d('use_projection_matrix', True, 'intrinsics from camera_info P (else K)')
    d('min_range', 0.0, 'metres; nearer readings are invalid', value_range=(0.0, 1000.0))
    d('max_range', 20.0, 'metres; farther readings are invalid', value_range=(0.0, 1000.0))
    d('invalid_depth', 0.0, 'metres; > 0: pixels without a reading become points this far '
      'along their ray (clears costmaps); 0: NaN / left out', value_range=(0.0, 1000.0))
    d('decimation_x', 1, 'keep every n-th column', value_range=(1, 64))
    d('decimation_y', 1, 'keep every n-th row', value_range=(1, 64))
    d('organized', True, 'width x height cloud with NaN for invalid pixels (else dense)')
    d('threads', 0, 'kernel threads (0: all cores); a preempted thread does not stall the '
      'kernel, so all cores pay off on a shared CPU too', value_range=(0, 256))
    d('frame_id', '', "frame of the cloud ('' = the depth image's)")
    d('bev.enable', True, 'publish bev/image')
    d('bev.x_range', [0.0, 10.0], 'metres forward covered [min, max]')
    d('bev.y_range', [-5.0, 5.0], 'metres left covered [min, max]')
    d('bev.z_range', [-2.0, 2.0], 'metres up kept [min, max]')
    d('bev.resolution', 0.05, 'metres per cell', value_range=(0.001, 100.0))
    d('bev.frame_id', 'base_link', 'frame_id of the BEV image')
    d('bev.intensity_range', [0.0, 255.0], 'raw intensity mapped to [0, 1] [min, max]')
    declare_occupancy_parameters(params)  # the body frame's ground is z = 0 (mount.height)
    for name, description in (('height', 'metres of the camera above the body origin'),
                              ('x', 'metres of the camera ahead of the body origin'),
                              ('y', 'metres of the camera left of the body origin'),
                              ('roll', 'radians about the forward axis'),
                              ('pitch', 'radians; > 0 tilts the camera down'),
                              ('yaw', 'radians; > 0 turns the camera left')):
        d(f'mount.{name}', 0.0, description, value_range=(-100.0, 100.0))
    d('mount.use_transform', False, 'use mount.transform instead of height/x/y/roll/pitch/yaw')
    d('mount.transform', DEFAULT_MOUNT_TRANSFORM, '4x4 optical -> body transform, row-major')
    params.declare_reporting()


def checked_settings(values):
    """(PipelineSettings, OccupancySettings) of the parameter ``values``; ValueError naming
    the parameter when one is bad."""
    return PipelineSettings.from_parameters(values), OccupancySettings.from_parameters(values)


class PipelineNode(Node):
    """Depth (+ colour) -> ``points`` and ``bev/image``; see the module docstring."""

    def __init__(self, **kwargs):
        super().__init__('pointcloud_pipeline', **kwargs)
        self._params = ParameterDeclarer(self)
        declare_pipeline_parameters(self._params)
        self.settings, self.occupancy = checked_settings(self._params.values())
        qos = self.get_parameter('qos').value
        depth = self.get_parameter('queue_size').value
        self.use_rgb = self.get_parameter('use_rgb').value
        self.use_intensity = self.get_parameter('use_intensity').value
        self.depth_transport = self.get_parameter('depth_transport').value
        self.rgb_transport = self.get_parameter('rgb_transport').value
        profile = qos_profile(qos, depth)

        self.statistics = FrameStatistics()
        self.warnings = ReasonWarnings(self.get_logger(), self.settings.warn_throttle)
        self._camera_info = None
        self._camera = None
        self._camera_info_deliveries = DuplicateDeliveries()
        self._warned_fallback = False
        self._serialized = SerializedPointCloud2()
        self._bev_buffer = MessageBuffer()
        self._occupancy_buffer = OccupancyGridBuffer()
        self._depth_decoder = CompressedDepthDecoder()
        self._color_decoder = CompressedImageDecoder(COLOR_ENCODINGS)
        # streams paired with depth by stamp, in the order _convert takes them
        partners = ('color',) * self.use_rgb + ('intensity',) * self.use_intensity
        self._unmatched_seen = dict.fromkeys(('depth',) + partners, 0)
        self._no_partner_reason = {('color',): 'no_rgb_partner',
                                   ('intensity',): 'no_intensity_partner'}.get(partners,
                                                                               'no_partner')
        self._resets_seen = 0
        self.sync = None
        self._time_jump_handle = None
        if partners:
            self.sync = StampSynchronizer(
                ('depth',) + partners, slop=self.settings.sync_slop,
                queue_size=self.get_parameter('sync_queue_size').value,
                max_age=self.settings.sync_max_age)
            # ROS time moving backwards (/clock of a looping bag or a reset simulator)
            self._time_jump_handle = self.get_clock().create_jump_callback(
                JumpThreshold(min_forward=None, min_backward=Duration(nanoseconds=-1),
                              on_clock_change=False),
                post_callback=self._on_time_jump)

        self.points_publisher = self.create_publisher(PointCloud2, 'points', profile)
        self.bev_publisher = self.create_publisher(Image, 'bev/image', profile)
        self.occupancy_publisher = self.create_publisher(OccupancyGrid, 'bev/occupancy',
                                                         profile)
        # camera_info: best effort + volatile matches every publisher; a latched
        # (transient-local) publisher's last message needs a transient-local subscription,
        # which a volatile publisher would refuse, so it is made only when one is seen.
        self.create_subscription(CameraInfo, 'depth/camera_info', self._on_camera_info,
                                 QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT))
        self._latched_info_subscription = None
        self._latched_info_timer = self.create_timer(0.5, self._watch_for_latched_camera_info)
        # image_transport's topic of the transport: '<resolved base topic>/<transport>'
        self.create_subscription(
            CompressedImage if self.depth_transport != 'raw' else Image,
            transport_topic(self, 'depth/image_rect', self.depth_transport), self._on_depth,
            profile)
        if self.use_rgb:
            self.create_subscription(
                CompressedImage if self.rgb_transport != 'raw' else Image,
                transport_topic(self, 'rgb/image_rect_color', self.rgb_transport),
                lambda msg: self._on_partner('color', msg), profile)
        if self.use_intensity:
            self.create_subscription(Image, 'intensity/image_rect',
                                     lambda msg: self._on_partner('intensity', msg), profile)
        self.reporter = DiagnosticsReporter(
            self, self.statistics, period=self.get_parameter('diagnostics_period').value,
            log_period=self.settings.log_period)
        self.add_on_set_parameters_callback(
            self._params.validator(checked_settings))
        self.add_post_set_parameters_callback(self._apply_parameters)
        transports = ''
        if self.depth_transport != 'raw':
            transports += f', depth over {self.depth_transport}'
        if self.use_rgb and self.rgb_transport != 'raw':
            transports += f', colour over {self.rgb_transport}'
        self.get_logger().info(
            f'depth -> {self.resolve_topic_name("points")} '
            f'(XYZ{"RGB" * self.use_rgb}{"I" * self.use_intensity}, {qos}{transports}) and '
            f'{self.resolve_topic_name("bev/image")}, '
            f'{self.resolve_topic_name("bev/occupancy")}')

    # --- parameters ------------------------------------------------------------------------
    def _apply_parameters(self, parameters):
        previous = self.settings
        settings, self.occupancy = checked_settings(self._params.values())
        if self.sync is not None:
            self.sync.slop = settings.sync_slop
            self.sync.max_age = settings.sync_max_age
        self.reporter.log_period = settings.log_period
        if settings.warn_throttle != previous.warn_throttle:
            self.warnings.period = settings.warn_throttle
        self.settings = settings
        if (settings.use_projection_matrix != previous.use_projection_matrix and
                self._camera_info is not None):
            self._camera = None  # re-read the last camera_info with the other matrix
            self._use_camera_info(self._camera_info, count_rejection=False)

    # --- callbacks -------------------------------------------------------------------------
    def _on_camera_info(self, info, message_info):
        """Both camera_info subscriptions: one publication is used (and counted) once."""
        try:
            if self._camera_info_deliveries.is_duplicate(message_info):
                self.statistics.count_event('camera_info_duplicate')
                return
        except Exception as error:  # noqa: BLE001 - nothing may escape a callback
            self.warnings.warn('internal_error', f'camera_info delivery info: {error!r}')
        self._use_camera_info(info)

    def _use_camera_info(self, info, count_rejection=True):
        try:
            camera = camera_model(info, self.settings.use_projection_matrix)
            if camera.fallback is not None and not self._warned_fallback:
                self._warned_fallback = True  # one warning, not one per message
                self.get_logger().warning(camera.fallback)
            self._camera = camera
            self._camera_info = info
        except FrameError as error:
            if count_rejection:
                self.statistics.count_event('camera_info_rejected')
            self.warnings.warn(error.reason, f'ignoring camera_info: {error}')
        except Exception as error:  # noqa: BLE001 - nothing may escape a callback
            if count_rejection:
                self.statistics.count_event('camera_info_rejected')
            self.warnings.warn('internal_error', f'ignoring camera_info: {error!r}')

    def _on_time_jump(self, jump):
        """ROS time moved backwards: the stamps start a new timeline, so does the pairing."""
        try:
            self.sync.reset()
            self._count_unmatched()
        except Exception as error:  # noqa: BLE001 - nothing may escape a callback
            self.warnings.warn('internal_error', f'time jump: {error!r}')

    def _watch_for_latched_camera_info(self):
        topic = self.resolve_topic_name('depth/camera_info')
        for publisher in self.get_publishers_info_by_topic(topic):
            qos = publisher.qos_profile
            if qos.durability == DurabilityPolicy.TRANSIENT_LOCAL:
                self._latched_info_subscription = self.create_subscription(
                    CameraInfo, 'depth/camera_info', self._on_camera_info,
                    QoSProfile(depth=1, reliability=qos.reliability,
                               durability=DurabilityPolicy.TRANSIENT_LOCAL))
                self._latched_info_timer.cancel()
                return

    def _wanted(self):
        """(cloud wanted, BEV wanted, occupancy wanted): someone subscribes to the output."""
        return (self.points_publisher.get_subscription_count() > 0,
                self.settings.bev_enable and self.bev_publisher.get_subscription_count() > 0,
                self.occupancy.enable and self.occupancy_publisher.get_subscription_count() > 0)

    def _on_depth(self, msg):
        received = time.perf_counter()
        self.statistics.count_received()
        try:
            if not any(self._wanted()):
                self.statistics.count_skipped()
                return
            if self.sync is None:
                self._convert(msg, None, None, received)
                return
            matched = self.sync.add('depth', msg.header.stamp, msg)
            self._count_unmatched()
            if matched is not None:
                self._convert_matched(matched, received)
        except Exception as error:  # noqa: BLE001 - nothing may escape a callback
            self.statistics.count_dropped('internal_error')
            self.warnings.warn('internal_error', f'dropped a depth frame: {error!r}')

    def _on_partner(self, stream, msg):
        """A colour or intensity image: converted with its depth frame once the set is whole."""
        received = time.perf_counter()
        try:
            matched = self.sync.add(stream, msg.header.stamp, msg)
            self._count_unmatched()
            if matched is not None:
                if any(self._wanted()):
                    self._convert_matched(matched, received)
                else:
                    self.statistics.count_skipped()
        except Exception as error:  # noqa: BLE001 - nothing may escape a callback
            self.statistics.count_dropped('internal_error')
            self.warnings.warn('internal_error', f'dropped a {STREAM_NAMES[stream]} image: '
                               f'{error!r}')

    def _convert_matched(self, matched, received):
        """Convert a set from the synchroniser: (depth, colour and/or intensity)."""
        images = dict(zip(self.sync.streams, matched))
        self._convert(images['depth'], images.get('color'), images.get('intensity'), received)

    def _count_unmatched(self):
        resets = self.sync.resets
        if resets > self._resets_seen:
            self.statistics.count_event('sync_reset', resets - self._resets_seen)
            self._resets_seen = resets
            self.warnings.warn('sync_reset', 'depth/colour stamps jumped back (bag loop, '
                               'simulator reset, replay without restamping, a bogus future '
                               f'stamp or ROS time moving backwards; threshold '
                               f'{self.sync.jump_back:g} s): colour pairing restarted')
        for stream, count in self.sync.unmatched.items():
            new = count - self._unmatched_seen[stream]
            if new <= 0:
                continue
            self._unmatched_seen[stream] = count
            if stream == 'depth':
                reason = self._no_partner_reason
                partners = ' and '.join(STREAM_NAMES[name] for name in self.sync.streams[1:])
                self.statistics.count_dropped(reason, new)
                self.warnings.warn(reason, f'{new} depth frame(s) had no {partners} image with '
                                   f'a matching stamp (sync_slop {self.settings.sync_slop} s)')
            else:
                self.statistics.count_event(
                    'rgb_without_depth' if stream == 'color' else 'intensity_without_depth', new)

    def _convert(self, depth_msg, color_msg, intensity_msg, received):
        """Validate, convert and publish one frame (a depth image, maybe colour and intensity)."""
        settings = self.settings
        try:
            camera = self._camera
            if camera is None:
                raise FrameError('no_camera_info', 'no valid camera_info received yet')
            if isinstance(depth_msg, CompressedImage):
                depth = compressed_depth_pixels(depth_msg, self._depth_decoder,
                                                settings.max_image_bytes)
            else:
                depth = image_pixels(depth_msg, DEPTH_ENCODINGS, settings.max_image_bytes)
            check_camera_matches(camera, depth.shape)
            color = color_encoding = None
            if isinstance(color_msg, CompressedImage):
                color, color_encoding = compressed_color_pixels(
                    color_msg, self._color_decoder, settings.max_image_bytes)
            elif color_msg is not None:
                color = image_pixels(color_msg, COLOR_ENCODINGS, settings.max_image_bytes,
                                     prefix='rgb_')
                color_encoding = color_msg.encoding
            if color is not None:
                check_color_matches(color.shape, depth.shape, settings.resize_rgb)
            intensity = None
            if intensity_msg is not None:
                intensity = image_pixels(intensity_msg, INTENSITY_ENCODINGS,
                                         settings.max_image_bytes, prefix='intensity_')
                check_intensity_matches(intensity.shape, depth.shape)
            rays = self._rays(camera, depth.shape)
            want_cloud, want_bev, want_occupancy = self._wanted()
            frame_id = settings.frame_id or depth_msg.header.frame_id
            with_color, with_intensity = color is not None, intensity is not None
            fields = cloud_fields(with_color, with_intensity)
            out = self._serialized.data_view(
                frame_id, fields,
                max_cloud_bytes(depth.shape, settings.decimation_x, settings.decimation_y,
                                with_color=with_color, with_intensity=with_intensity))
            cloud = depth_to_cloud(
                depth, camera.intrinsics, depth_scale=settings.depth_scale,
                min_range=settings.min_range, max_range=settings.max_range,
                invalid_depth=settings.invalid_depth, decimation_x=settings.decimation_x,
                decimation_y=settings.decimation_y, organized=settings.organized, color=color,
                color_encoding=color_encoding or 'rgb8', resize_color=settings.resize_rgb,
                intensity=intensity, rays=rays, out=out, threads=settings.threads)
        except FrameError as error:
            self.statistics.count_dropped(error.reason)
            self.warnings.warn(error.reason, f'dropped a frame: {error}')
            return
        except ValueError as error:
            self.statistics.count_dropped('conversion_error')
            self.warnings.warn('conversion_error', f'dropped a frame: {error}')
            return
        stamp = depth_msg.header.stamp
        latency = None
        if want_cloud:  # serialized in place: see ros.cloud_messages.SerializedPointCloud2
            self.points_publisher.publish(self._serialized.serialize(cloud, stamp))
            latency = time.perf_counter() - received
        if want_bev:
            grid = settings.bev_grid
            pixels = self._bev_buffer.view(grid.rows * grid.cols * 3).reshape(grid.shape)
            intensity_offset = next((field.offset for field in fields
                                     if field.name == 'intensity'), None)
            image = bev_image_from_buffer(cloud.data, cloud.point_step,
                                          cloud.width * cloud.height,
                                          intensity_offset=intensity_offset, grid=grid,
                                          transform=settings.mount, out=pixels,
                                          threads=settings.threads)
            header = Header(stamp=stamp, frame_id=settings.bev_frame_id)
            self.bev_publisher.publish(pixels_to_image(image, 'bgr8', header,
                                                       self._bev_buffer))
            self.statistics.record_latency('bev', time.perf_counter() - received)
        if want_occupancy:
            grid, occupancy = settings.bev_grid, self.occupancy
            occupancy_grid_from_buffer(cloud.data, cloud.point_step, cloud.width * cloud.height,
                                       grid=grid, bands=occupancy.bands,
                                       transform=settings.mount,
                                       out=self._occupancy_buffer.view(grid),
                                       threads=settings.threads)
            header = Header(stamp=stamp, frame_id=settings.bev_frame_id)
            self.occupancy_publisher.publish(
                self._occupancy_buffer.message(grid, occupancy.bands, header))
            self.statistics.record_latency('occupancy', time.perf_counter() - received)
        # latency: receive -> cloud published (-> the last grid published when no cloud)
        self.statistics.count_published(
            latency if latency is not None else time.perf_counter() - received)


    def _rays(self, camera, depth_shape):
        """The ray table of radial or unrectified depth (None: the pinhole path), cached by
        ``rays.ray_table`` until the camera_info or the settings change."""
        settings = self.settings
        if not needs_ray_table(settings.depth_kind, settings.rectified):
            return None
        intrinsics = camera.intrinsics if settings.rectified else camera.raw_intrinsics
        if intrinsics is None:
            raise FrameError('bad_camera_info', 'rectified: false needs camera_info K, which '
                             'is all zeros')
        try:
            return ray_table(intrinsics, depth_shape[1], depth_shape[0],
                             depth_kind=settings.depth_kind, rectified=settings.rectified,
                             distortion_model=camera.distortion_model,
                             distortion=camera.distortion, decimation_x=settings.decimation_x,
                             decimation_y=settings.decimation_y)
        except ValueError as error:
            raise FrameError('bad_camera_info', f'no ray table: {error}') from None


def main(args=None):
    return run_node(PipelineNode, args)


if __name__ == '__main__':
    sys.exit(main())
