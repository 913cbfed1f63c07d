"""ROS 2 node of the browser view: ``points`` (PointCloud2) and ``bev/image`` -> a
:class:`~.server.CloudViewer`.

Subscribes only while a browser is connected (nobody watching costs the pipeline nothing), with
best-effort QoS of depth 1: a view slower than the pipeline loses clouds in DDS instead of
queueing them, and never holds the publisher back (the view is a process of its own). Draws at
most ``max_rate`` clouds per second (the others counted as skipped, event ``rate_limited``).
Clouds need float32 x, y, z (``ros.message_checks.cloud_layout``): a bad cloud is dropped,
counted per reason on ``/diagnostics`` and warned, throttled; an ``rgb`` field of 4 bytes
colours the points. BEV images (bgr8, rgb8, mono8) go to the page's side panel; a bad one is
counted as the event ``bev_<reason>``.
"""
from dataclasses import dataclass
import time

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, PointCloud2

from ..ros.cloud_messages import scalar_field
from ..ros.diagnostics import DiagnosticsReporter, FrameStatistics, ReasonWarnings
from ..ros.message_checks import FrameError, cloud_layout, image_pixels
from .display import IMAGE_ENCODINGS, display_cloud, rgb_image

VIEW_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                      reliability=ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.VOLATILE)
SUBSCRIPTION_CHECK_PERIOD = 0.25  # seconds between checks for connected browsers


@dataclass(frozen=True)
class ViewSettings:
    """What the view subscribes to and how it draws (the command's options)."""

    points_topic: str = 'points'
    bev_topic: str = 'bev/image'   # '' : no BEV image
    max_points: int = 200_000      # point budget per cloud drawn
    color: str = 'rgb'             # 'rgb' or 'height'
    up: str = '-y'                 # the clouds' up axis (display.UP_AXES)
    height_range: tuple | None = None  # metres of the height colour map; None: per cloud
    max_rate: float = 10.0         # clouds (and BEV images) drawn per second at most; 0: all
    max_cloud_bytes: int = 268435456
    warn_throttle: float = 5.0     # seconds between repeated warnings of one kind
    log_period: float = 10.0       # seconds between summary log lines (0: never)
    lazy: bool = True              # subscribe only while a browser is connected


class _RateLimit:
    """At most ``rate`` accepted calls per second (0: every call)."""

    def __init__(self, rate):
        self._period = 1.0 / rate if rate > 0 else 0.0
        self._last = -float('inf')

    def accept(self):
        now = time.monotonic()
        if now - self._last < self._period:
            return False
        self._last = now
        return True


class ViewNode(Node):
    """``points`` and ``bev/image`` -> ``viewer``; see the module docstring."""

    def __init__(self, viewer, settings=ViewSettings(), **kwargs):
        super().__init__('pointcloud_view', **kwargs)
        self.viewer = viewer
        self.settings = settings
        self.statistics = FrameStatistics()
        self.warnings = ReasonWarnings(self.get_logger(), settings.warn_throttle)
        self._cloud_rate = _RateLimit(settings.max_rate)
        self._bev_rate = _RateLimit(settings.max_rate)
        self._watch_subscriptions = []
        self.topics = [self.resolve_topic_name(settings.points_topic)]
        if settings.bev_topic:
            self.topics.append(self.resolve_topic_name(settings.bev_topic))
        self.reporter = DiagnosticsReporter(self, self.statistics, log_period=settings.log_period)
        self.get_logger().info(f'{" and ".join(self.topics)} -> {viewer.url} (at most '
                               f'{settings.max_points} points, coloured by {settings.color}'
                               f'{"; subscribed while a browser is connected" * settings.lazy})')
        self._update_subscriptions()
        self.create_timer(SUBSCRIPTION_CHECK_PERIOD, self._update_subscriptions)

    @property
    def subscribed(self):
        """True while the node subscribes to the topics."""
        return bool(self._watch_subscriptions)

    def _update_subscriptions(self):
        """Subscribe while a browser is connected (always when not ``settings.lazy``), so that
        nobody watching costs the pipeline nothing: no DDS delivery, no deserialisation."""
        watched = not self.settings.lazy or self.viewer.client_count() > 0
        if watched and not self._watch_subscriptions:
            settings = self.settings
            self._watch_subscriptions.append(self.create_subscription(
                PointCloud2, settings.points_topic, self._on_cloud, VIEW_QOS))
            if settings.bev_topic:
                self._watch_subscriptions.append(self.create_subscription(
                    Image, settings.bev_topic, self._on_bev, VIEW_QOS))
            if settings.lazy:
                self.get_logger().info(f'a browser is connected: subscribed to '
                                       f'{" and ".join(self.topics)}')
        elif not watched and self._watch_subscriptions:
            for subscription in self._watch_subscriptions:
                self.destroy_subscription(subscription)
            self._watch_subscriptions = []
            self.get_logger().info('no browser connected: unsubscribed')

    def _skip(self, rate_limit):
        """True (counted) when nothing is to be drawn now: no browser, or too soon."""
        if self.viewer.client_count() == 0:
            self.statistics.count_event('no_browser')
            return True
        if not rate_limit.accept():
            self.statistics.count_event('rate_limited')
            return True
        return False

    def _rgb_offset(self, msg, point_step):
        """Byte offset of a 4-byte ``rgb`` field, else None (warned when it cannot be read)."""
        try:
            found = scalar_field(msg.fields, 'rgb', point_step)
            if found is not None and found[1].itemsize != 4:
                raise ValueError(f'field rgb is {found[1].name}, expected 4 bytes')
        except ValueError as error:
            self.statistics.count_event('rgb_ignored')
            self.warnings.warn('rgb_ignored', f'coloured by height: {error}')
            return None
        return None if found is None else found[0]

    def _on_cloud(self, msg):
        received = time.perf_counter()
        self.statistics.count_received()
        try:
            settings = self.settings
            layout = cloud_layout(msg, settings.max_cloud_bytes)
            if self._skip(self._cloud_rate):
                self.statistics.count_skipped()
                return
            cloud = display_cloud(
                layout.buffer, layout.num_points, layout.point_step, layout.x_offset,
                layout.y_offset, layout.z_offset, self._rgb_offset(msg, layout.point_step),
                budget=settings.max_points, color=settings.color, up=settings.up,
                height_range=settings.height_range)
            stamp = msg.header.stamp
            self.viewer.show_cloud(cloud, f'{msg.header.frame_id or "(no frame)"} at '
                                          f'{stamp.sec}.{stamp.nanosec:09d}')
            self.statistics.count_published(time.perf_counter() - received)
        except FrameError as error:
            self.statistics.count_dropped(error.reason)
            self.warnings.warn(error.reason, f'dropped a cloud: {error}')
        except Exception as error:  # noqa: BLE001 - nothing may escape a callback
            self.statistics.count_dropped('internal_error')
            self.warnings.warn('internal_error', f'dropped a cloud: {error!r}')

    def _on_bev(self, msg):
        try:
            if self.viewer.client_count() == 0 or not self._bev_rate.accept():
                return
            pixels = image_pixels(msg, IMAGE_ENCODINGS, self.settings.max_cloud_bytes, 'bev_')
            self.viewer.show_bev(rgb_image(pixels, msg.encoding))
        except FrameError as error:
            self.statistics.count_event(error.reason)
            self.warnings.warn(error.reason, f'BEV image not shown: {error}')
        except Exception as error:  # noqa: BLE001 - nothing may escape a callback
            self.statistics.count_event('bev_internal_error')
            self.warnings.warn('bev_internal_error', f'BEV image not shown: {error!r}')
