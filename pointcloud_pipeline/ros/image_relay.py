"""What the depth image -> image nodes share (convert_metric_node, crop_foremost_node,
disparity_node): parameters, one input image topic, one output topic, laziness, drops and
``/diagnostics``. No maths: each node's :meth:`ImageRelayNode.convert` calls the library.

A subclass sets ``INPUT`` / ``OUTPUT`` (topic names), ``OUTPUT_TYPE``, declares its own
parameters in :meth:`declare_own_parameters`, checks them in :meth:`node_settings` (ValueError
rejects a runtime change with its reason; the running settings stay) and turns one image into
the output message in :meth:`convert` (raising :class:`.message_checks.FrameError` for a frame
it must drop). Every input image is counted; with no subscriber it is skipped, unconverted;
a bad one is dropped, counted per reason and warned about (throttled per reason).
"""
import time
from types import MappingProxyType

from rclpy.node import Node
from sensor_msgs.msg import Image

from ..layouts import DEPTH_ENCODINGS
from .data_field import MessageBuffer
from .diagnostics import DiagnosticsReporter, FrameStatistics, ReasonWarnings
from .message_checks import FrameError, image_pixels
from .parameters import ParameterDeclarer, QOS_CHOICES, qos_profile


class ImageRelayNode(Node):
    """An input ``Image`` topic -> an output topic; see the module docstring."""

    INPUT = 'image_raw'
    OUTPUT = 'image'
    OUTPUT_TYPE = Image
    ENCODINGS = DEPTH_ENCODINGS

    def __init__(self, name, **kwargs):
        super().__init__(name, **kwargs)
        self._params = ParameterDeclarer(self)
        d = self._params.declare
        d('qos', 'sensor_data', 'QoS of input and output', choices=QOS_CHOICES, read_only=True)
        d('queue_size', 5, 'history depth of the subscriptions and the publisher',
          value_range=(1, 100), read_only=True)
        d('max_image_bytes', 268435456, 'input images with more data bytes are dropped',
          value_range=(1, 2**31 - 1))
        self.declare_own_parameters(self._params)
        self._params.declare_reporting()
        self.settings = self._settings(self._params.values())
        self.profile = qos_profile(self.get_parameter('qos').value,
                                   self.get_parameter('queue_size').value)
        self.statistics = FrameStatistics()
        self.warnings = ReasonWarnings(self.get_logger(), self.settings['warn_throttle'])
        self.buffer = MessageBuffer()
        self.publisher = self.create_publisher(self.OUTPUT_TYPE, self.OUTPUT, self.profile)
        self.create_subscription(Image, self.INPUT, self._on_image, self.profile)
        self.reporter = DiagnosticsReporter(
            self, self.statistics, period=self.get_parameter('diagnostics_period').value,
            log_period=self.settings['log_period'])
        self.add_on_set_parameters_callback(self._params.validator(self._settings))
        self.add_post_set_parameters_callback(self._apply_parameters)

    def log_topics(self, what):
        self.get_logger().info(f'{self.resolve_topic_name(self.INPUT)} -> '
                               f'{self.resolve_topic_name(self.OUTPUT)} ({what})')

    # --- for subclasses --------------------------------------------------------------------
    def declare_own_parameters(self, params):
        """Declare the node's own parameters (``params.declare``)."""

    def node_settings(self, values):
        """{name: value} of the node's own settings from the parameter values; ValueError
        (naming the parameter) for values that do not agree."""
        return {}

    def convert(self, msg, pixels):
        """The output message of one input image (``pixels``: its checked numpy view)."""
        raise NotImplementedError

    # --- plumbing --------------------------------------------------------------------------
    def _settings(self, values):
        settings = {name: values[name] for name in ('max_image_bytes', 'log_period',
                                                    'warn_throttle')}
        settings.update(self.node_settings(values))
        return MappingProxyType(settings)

    def _apply_parameters(self, parameters):
        settings = self._settings(self._params.values())
        self.reporter.log_period = settings['log_period']
        if settings['warn_throttle'] != self.settings['warn_throttle']:
            self.warnings.period = settings['warn_throttle']
        self.settings = settings

    def output_image(self, pixels_shape, dtype):
        """A reused buffer view of ``pixels_shape`` and ``dtype`` for the output image."""
        count = 1
        for size in pixels_shape:
            count *= size
        return self.buffer.view(count * dtype.itemsize).view(dtype).reshape(pixels_shape)

    def drop(self, reason, message):
        self.statistics.count_dropped(reason)
        self.warnings.warn(reason, f'dropped a frame: {message}')

    def _on_image(self, msg):
        received = time.perf_counter()
        self.statistics.count_received()
        try:
            if self.publisher.get_subscription_count() == 0:
                self.statistics.count_skipped()
                return
            pixels = image_pixels(msg, self.ENCODINGS, self.settings['max_image_bytes'])
            output = self.convert(msg, pixels)
            self.publisher.publish(output)
            self.statistics.count_published(time.perf_counter() - received)
        except FrameError as error:
            self.drop(error.reason, error)
        except ValueError as error:
            self.drop('conversion_error', error)
        except Exception as error:  # noqa: BLE001 - nothing may escape a callback
            self.drop('internal_error', repr(error))
