"""ROS 2 node: colour camera image -> depth image (32FC1 metres) with a monocular depth network.

Subscribes ``image`` (rgb8, bgr8, rgba8, bgra8, mono8) and ``camera_info``; publishes
``depth/image`` (32FC1 metres, NaN = no depth, same header as the colour image: the camera's
optical frame), ``depth/camera_info`` (the camera's intrinsics rescaled to the depth image size,
same header) and ``/diagnostics`` (frames received, published and dropped per reason, the
receive -> publish latency ``latency_ms`` and the network's ``inference_latency_ms``; the
hardware id is the engine's device). The network runs in the ``engine`` parameter's inference
engine: ``tinygrad`` (default; any tinygrad device) or ``onnxruntime`` (CPU only; the faster one
on a CPU-only robot). All maths is in :mod:`pointcloud_pipeline.monodepth`; this
node holds parameters, QoS, callbacks, threading and message packing.

Inference runs in a worker thread, so the executor keeps serving other callbacks. At most one frame
waits while the network is busy: a newer frame replaces it (the older one is dropped, reason
``busy``); frames arriving sooner than ``max_rate`` allows are dropped too (``rate``). Both are
normal operation and leave the diagnostics level OK. Bad frames (``bad_frame``) and frames the
network or the publisher failed on (``error``) are dropped with a throttled log line; the node
keeps running. A node that cannot start (model, profile, engine, device, parameters) logs one
fatal line and its executable exits with status 1.
"""
import sys
import threading
import time

from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image

from ..camera import scale_intrinsics
from ..layouts import COLOR_ENCODINGS
from ..monodepth import DepthEstimator, ENGINES
from ..ros.camera_messages import array_to_image, image_to_array
from ..ros.diagnostics import DiagnosticsReporter, FrameStatistics, ReasonWarnings
from ..ros.executable import NodeStartupError, run_node
from ..ros.parameters import ParameterDeclarer, QOS_CHOICES, qos_profile

MAX_IMAGE_BYTES = 256 * 1024 * 1024  # larger colour images are rejected as malformed
QUEUE_SIZE = 10  # history depth of the subscriptions and publishers
WARN_THROTTLE_S = 5.0
EXPECTED_DROPS = ('busy', 'rate')  # by design: newest frame wins, max_rate


def declare_depth_estimator_parameters(params):
    """Declare every parameter of the node; all are read-only (the model is loaded at start)."""
    d = params.declare
    d('model_path', '', 'ONNX monocular depth model file (.onnx); required', read_only=True)
    d('profile', 'midas_v21_small', 'model profile: a shipped name (midas_v21_small, '
      'depth_anything_v2_small, fastdepth_256x320, fastdepth_224x224) or a profile YAML path',
      read_only=True)
    d('engine', 'tinygrad', "inference engine: 'tinygrad' (any tinygrad device) or "
      "'onnxruntime' (CPU only; pip install onnxruntime==1.31.1)", choices=ENGINES,
      read_only=True)
    d('device', '', "tinygrad device ('' = tinygrad default: DEV env var, else first usable; "
      "'CPU', 'CUDA', 'METAL', ...); engine onnxruntime: '' or 'CPU'", read_only=True)
    d('output_width', 0, 'depth image width in pixels (0 = camera image width; set both or '
      'neither)', value_range=(0, 16384), read_only=True)
    d('output_height', 0, 'depth image height in pixels (0 = camera image height)',
      value_range=(0, 16384), read_only=True)
    d('max_rate', 0.0, 'most depth images per second, Hz (0 = as fast as inference allows); '
      'frames arriving sooner are skipped', value_range=(0.0, 1000.0), read_only=True)
    d('qos', 'sensor_data', "subscription QoS for image and camera_info: 'sensor_data' (best "
      "effort) or 'reliable'", choices=QOS_CHOICES, read_only=True)


def frame_counts(snapshot):
    """One line of a :class:`FrameStatistics` snapshot's counters, drops by reason."""
    reasons = ', '.join(f'{reason} {count}'
                        for reason, count in snapshot['dropped_by_reason'].items())
    return (f"received {snapshot['received']}, published {snapshot['published']}, dropped "
            f"{snapshot['dropped']}" + (f' ({reasons})' if reasons else ''))


class DepthEstimatorNode(Node):
    """Monocular depth estimation node (see the module docstring)."""

    def __init__(self, **kwargs):
        super().__init__('depth_estimator_node', **kwargs)
        try:
            self._configure()
        except (FileNotFoundError, ValueError, RuntimeError, OSError, ImportError) as exc:
            self._fail_startup(str(exc))
        except Exception as exc:  # anything else: still one clear line, no traceback
            self._fail_startup(f'{type(exc).__name__}: {exc}')

        self.statistics = FrameStatistics()
        self.warnings = ReasonWarnings(self.get_logger(), WARN_THROTTLE_S)
        self._pending = None  # (message, receive time) of the newest frame waiting for the worker
        self._wake = threading.Condition()
        self._stopping = False
        self._camera_info = None
        self._last_accepted = None

        subscription_qos = qos_profile(self._qos, QUEUE_SIZE)
        self._depth_pub = self.create_publisher(Image, 'depth/image', QUEUE_SIZE)
        self._info_pub = self.create_publisher(CameraInfo, 'depth/camera_info', QUEUE_SIZE)
        self.create_subscription(CameraInfo, 'camera_info', self._on_camera_info,
                                 subscription_qos)
        self.create_subscription(Image, 'image', self._on_image, subscription_qos)
        self.reporter = DiagnosticsReporter(
            self, self.statistics, name=f'{self.get_name()}: monocular depth',
            hardware_id=self._estimator.device, expected_drops=EXPECTED_DROPS)
        self._worker = threading.Thread(target=self._work, name='depth_estimator_worker',
                                        daemon=True)
        self._worker.start()

    # -- setup -----------------------------------------------------------------------------

    def _fail_startup(self, reason):
        self.get_logger().fatal(f'cannot start: {reason}')
        self.destroy_node()
        raise NodeStartupError(reason) from None

    def _configure(self):
        declare_depth_estimator_parameters(ParameterDeclarer(self))
        get = self.get_parameter
        self._output_width = get('output_width').value
        self._output_height = get('output_height').value
        if (self._output_width == 0) != (self._output_height == 0):
            raise ValueError('set both output_width and output_height, or neither (0 = camera '
                             f'size); got {self._output_width} x {self._output_height}')
        self._min_period = 1.0 / get('max_rate').value if get('max_rate').value > 0 else 0.0
        self._qos = get('qos').value
        model_path = get('model_path').value
        if not model_path:
            raise ValueError('parameter model_path is empty: give the ONNX model file '
                             '(--ros-args -p model_path:=/path/to/model.onnx)')
        engine = get('engine').value
        self._estimator = DepthEstimator(model_path, get('profile').value,
                                         device=get('device').value or None, engine=engine)
        estimator = self._estimator
        self.get_logger().info(
            f'model {estimator.model_path} (profile {estimator.profile.name}, input '
            f'{estimator.input_name} {estimator.input_shape}, output {estimator.output_name}, '
            f'{estimator.profile.output_kind}) in {engine} on device {estimator.device}')
        try:
            seconds = estimator.warm_up()
        except Exception as exc:  # e.g. an ONNX operator tinygrad does not implement
            raise RuntimeError(f'the model does not run in {engine} (warm-up failed): '
                               f'{type(exc).__name__}: {exc}') from None
        self.get_logger().info(f'warm-up ({estimator.warm_up_description}) took {seconds:.2f} s')

    # -- callbacks (executor threads) ------------------------------------------------------

    def _on_camera_info(self, msg):
        self._camera_info = msg  # atomic reference swap; read by the worker

    def _on_image(self, msg):
        received = time.perf_counter()
        self.statistics.count_received()
        if self._min_period and self._last_accepted is not None \
                and received - self._last_accepted < self._min_period:
            self.statistics.count_dropped('rate')
            return
        self._last_accepted = received
        with self._wake:
            if self._pending is not None:
                self.statistics.count_dropped('busy')  # the waiting frame is older than this one
            self._pending = (msg, received)
            self._wake.notify()

    # -- worker thread ---------------------------------------------------------------------

    def _work(self):
        while True:
            with self._wake:
                while self._pending is None and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    return
                (msg, received), self._pending = self._pending, None
            try:
                self._process(msg, received)
            except Exception as exc:  # publishing failed: at shutdown, stop quietly
                if self._stopping or not self.context.ok():
                    return
                self.statistics.count_dropped('error')
                self.get_logger().error(f'publishing failed: {type(exc).__name__}: {exc}',
                                        throttle_duration_sec=WARN_THROTTLE_S)

    def _process(self, msg, received):
        try:
            pixels = image_to_array(msg, allowed_encodings=COLOR_ENCODINGS,
                                    max_bytes=MAX_IMAGE_BYTES)
            info = self._camera_info
            output_size = ((self._output_height, self._output_width) if self._output_width
                           else (msg.height, msg.width))
            focal_px = None
            if info is not None and info.width > 0 and info.k[0] > 0:
                focal_px = info.k[0] * msg.width / info.width  # fx at the image's resolution
            start = time.perf_counter()
            depth = self._estimator.predict(pixels, msg.encoding, output_size=output_size,
                                            focal_px=focal_px)
            self.statistics.record_latency('inference', time.perf_counter() - start)
        except ValueError as exc:
            self.statistics.count_dropped('bad_frame')
            self.warnings.warn('bad_frame', f'dropped frame ({msg.width}x{msg.height} '
                                            f'{msg.encoding!r}): {exc}')
            return
        except Exception as exc:  # keep running whatever the network throws
            self.statistics.count_dropped('error')
            self.get_logger().error(f'inference failed: {type(exc).__name__}: {exc}',
                                    throttle_duration_sec=WARN_THROTTLE_S)
            return
        self._depth_pub.publish(array_to_image(depth, '32FC1', msg.header))
        if info is not None:
            self._info_pub.publish(self._depth_camera_info(info, msg, depth.shape))
        self.statistics.count_published(time.perf_counter() - received)

    def _depth_camera_info(self, info, image_msg, depth_shape):
        """The camera_info of the depth image: intrinsics rescaled to its size, its header."""
        height, width = depth_shape
        source_size = ((info.height, info.width) if info.width > 0 and info.height > 0
                       else (image_msg.height, image_msg.width))
        k, p = scale_intrinsics(info.k, info.p, source_size, (height, width))
        out = CameraInfo()
        out.header = image_msg.header
        out.height, out.width = int(height), int(width)
        out.distortion_model = info.distortion_model
        out.d = info.d
        out.r = info.r
        out.k = k.ravel().tolist()
        out.p = p.ravel().tolist()
        return out

    def destroy_node(self):
        if hasattr(self, '_worker'):
            with self._wake:
                self._stopping = True
                self._wake.notify()
            self._worker.join(timeout=10.0)
            self.get_logger().info(f'frame counts: {frame_counts(self.statistics.snapshot())}')
        return super().destroy_node()


def main(args=None):
    return run_node(DepthEstimatorNode, args)


if __name__ == '__main__':
    sys.exit(main())
