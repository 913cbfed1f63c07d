"""ROS 2 node: colour camera image -> depth image (32FC1 metres) with a monocular depth network.

Subscribes ``image`` (rgb8, bgr8, rgba8, bgra8, mono8) and ``camera_info``; publishes
``depth/image`` (32FC1 metres, NaN = no depth, same header as the colour image) and
``depth/camera_info`` (the camera's intrinsics rescaled to the depth image size, same header).
All maths is in :mod:`pointcloud_pipeline.monodepth`; this node holds parameters, QoS, callbacks,
threading and message packing.

Inference runs in a worker thread, so the executor keeps serving other callbacks. At most one frame
waits while the network is busy: a newer frame replaces it (the older one is counted as dropped).
Bad frames are dropped with a throttled warning and counted; the node keeps running.
"""
import sys
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image

from ..camera import scale_intrinsics
from ..layouts import COLOR_ENCODINGS
from ..monodepth import DepthEstimator
from ..ros.camera_messages import array_to_image, image_to_array

MAX_IMAGE_BYTES = 256 * 1024 * 1024  # larger colour images are rejected as malformed
QOS_CHOICES = ('sensor_data', 'reliable')
WARN_THROTTLE_S = 5.0


class StartupError(RuntimeError):
    """The node cannot start (model, profile, device or parameters); already logged as fatal."""


class DepthEstimatorNode(Node):
    """Monocular depth estimation node (see the module docstring)."""

    def __init__(self, **kwargs):
        super().__init__('depth_estimator_node', **kwargs)
        self._declare_parameters()
        try:
            self._configure()
        except (FileNotFoundError, ValueError, RuntimeError, OSError) as exc:
            self._fail_startup(str(exc))
        except Exception as exc:  # anything else: still one clear line, no traceback
            self._fail_startup(f'{type(exc).__name__}: {exc}')

        self._counts = dict.fromkeys(
            ('received', 'processed', 'dropped_busy', 'dropped_rate', 'bad_frames', 'errors'), 0)
        self._counts_lock = threading.Lock()
        self._pending = None  # newest frame waiting for the worker
        self._wake = threading.Condition()
        self._stopping = False
        self._camera_info = None
        self._last_accepted = None
        self._last_inference_s = float('nan')

        qos = (qos_profile_sensor_data if self._qos == 'sensor_data' else
               QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                          history=HistoryPolicy.KEEP_LAST))
        self._depth_pub = self.create_publisher(Image, 'depth/image', 10)
        self._info_pub = self.create_publisher(CameraInfo, 'depth/camera_info', 10)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.create_subscription(CameraInfo, 'camera_info', self._on_camera_info, qos)
        self.create_subscription(Image, 'image', self._on_image, qos)
        self.create_timer(1.0, self._publish_diagnostics)
        self._worker = threading.Thread(target=self._work, name='depth_estimator_worker',
                                        daemon=True)
        self._worker.start()

    # -- setup -----------------------------------------------------------------------------

    def _fail_startup(self, reason):
        self.get_logger().fatal(f'cannot start: {reason}')
        self.destroy_node()
        raise StartupError(reason) from None

    def _declare_parameters(self):
        def text(description):
            return ParameterDescriptor(description=description, read_only=True)

        self.declare_parameter('model_path', '', text(
            'ONNX monocular depth model file (.onnx); required'))
        self.declare_parameter('profile', 'midas_v21_small', text(
            'model profile: a shipped name (midas_v21_small, depth_anything_v2_small, '
            'fastdepth_256x320, fastdepth_224x224) or a profile YAML path'))
        self.declare_parameter('device', '', text(
            "tinygrad device ('' = tinygrad default: DEV env var, else first usable; "
            "'CPU', 'CUDA', 'METAL', ...)"))
        size_range = IntegerRange(from_value=0, to_value=16384, step=1)
        self.declare_parameter('output_width', 0, ParameterDescriptor(
            description='depth image width in pixels (0 = camera image width; set both or neither)',
            read_only=True, integer_range=[size_range]))
        self.declare_parameter('output_height', 0, ParameterDescriptor(
            description='depth image height in pixels (0 = camera image height)',
            read_only=True, integer_range=[size_range]))
        self.declare_parameter('max_rate', 0.0, ParameterDescriptor(
            description='most depth images per second, Hz (0 = as fast as inference allows); '
                        'frames arriving sooner are skipped',
            read_only=True,
            floating_point_range=[FloatingPointRange(from_value=0.0, to_value=1000.0)]))
        self.declare_parameter('qos', 'sensor_data', text(
            "subscription QoS for image and camera_info: 'sensor_data' (best effort) or "
            "'reliable'"))

    def _configure(self):
        get = self.get_parameter
        self._output_width = get('output_width').value
        self._output_height = get('output_height').value
        if (self._output_width == 0) != (self._output_height == 0):
            raise ValueError('set both output_width and output_height, or neither (0 = camera '
                             f'size); got {self._output_width} x {self._output_height}')
        self._min_period = 1.0 / get('max_rate').value if get('max_rate').value > 0 else 0.0
        self._qos = get('qos').value
        if self._qos not in QOS_CHOICES:
            raise ValueError(f"qos must be one of {', '.join(QOS_CHOICES)}, got {self._qos!r}")
        model_path = get('model_path').value
        if not model_path:
            raise ValueError('parameter model_path is empty: give the ONNX model file '
                             '(--ros-args -p model_path:=/path/to/model.onnx)')
        self._estimator = DepthEstimator(model_path, get('profile').value,
                                         device=get('device').value or None)
        profile = self._estimator.profile
        self.get_logger().info(
            f'model {self._estimator.model_path} (profile {profile.name}, input '
            f'{self._estimator.input_name} {self._estimator.input_shape}, output '
            f'{self._estimator.output_name}, {profile.output_kind}) on tinygrad device '
            f'{self._estimator.device}')
        try:
            seconds = self._estimator.warm_up()
        except Exception as exc:  # e.g. an ONNX operator tinygrad does not implement
            raise RuntimeError(f'the model does not run in tinygrad (warm-up failed): '
                               f'{type(exc).__name__}: {exc}') from None
        self.get_logger().info(f'warm-up (compile + JIT capture) took {seconds:.2f} s')

    # -- callbacks (executor threads) ------------------------------------------------------

    def _count(self, key, amount=1):
        with self._counts_lock:
            self._counts[key] += amount

    def stats(self):
        """Frame counters: received, processed, dropped_busy, dropped_rate, bad_frames, errors."""
        with self._counts_lock:
            return dict(self._counts)

    def _on_camera_info(self, msg):
        self._camera_info = msg  # atomic reference swap; read by the worker

    def _on_image(self, msg):
        self._count('received')
        now = time.monotonic()
        if self._min_period and self._last_accepted is not None \
                and now - self._last_accepted < self._min_period:
            self._count('dropped_rate')
            return
        self._last_accepted = now
        with self._wake:
            if self._pending is not None:
                self._count('dropped_busy')  # the waiting frame is older than this one
            self._pending = msg
            self._wake.notify()

    # -- worker thread ---------------------------------------------------------------------

    def _work(self):
        while True:
            with self._wake:
                while self._pending is None and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    return
                msg, self._pending = self._pending, None
            try:
                self._process(msg)
            except Exception as exc:  # publishing failed: at shutdown, stop quietly
                if self._stopping or not self.context.ok():
                    return
                self._count('errors')
                self.get_logger().error(f'publishing failed: {type(exc).__name__}: {exc}',
                                        throttle_duration_sec=WARN_THROTTLE_S)

    def _process(self, msg):
        logger = self.get_logger()
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
            self._last_inference_s = time.perf_counter() - start
        except ValueError as exc:
            self._count('bad_frames')
            logger.warning(f'dropped frame ({msg.width}x{msg.height} {msg.encoding!r}): {exc}',
                           throttle_duration_sec=WARN_THROTTLE_S)
            return
        except Exception as exc:  # keep running whatever the network throws
            self._count('errors')
            logger.error(f'inference failed: {type(exc).__name__}: {exc}',
                         throttle_duration_sec=WARN_THROTTLE_S)
            return
        self._depth_pub.publish(array_to_image(depth, '32FC1', msg.header))
        if info is not None:
            self._info_pub.publish(self._depth_camera_info(info, msg, depth.shape))
        self._count('processed')

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

    def _publish_diagnostics(self):
        counts = self.stats()
        status = DiagnosticStatus(
            level=DiagnosticStatus.WARN if counts['errors'] else DiagnosticStatus.OK,
            name=f'{self.get_name()}: monocular depth',
            message=f"{counts['processed']} depth images, {counts['bad_frames']} bad frames",
            hardware_id=self._estimator.device,
            values=[KeyValue(key=k, value=str(v)) for k, v in counts.items()]
            + [KeyValue(key='last_inference_ms', value=f'{self._last_inference_s * 1e3:.1f}')])
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._diagnostics_pub.publish(array)

    def destroy_node(self):
        if hasattr(self, '_worker'):
            with self._wake:
                self._stopping = True
                self._wake.notify()
            self._worker.join(timeout=10.0)
        return super().destroy_node()


def main(args=None):
    rclpy.init(args=args)
    try:
        node = DepthEstimatorNode()
    except StartupError:
        rclpy.try_shutdown()
        return 1
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.get_logger().info(f'frame counts: {node.stats()}')
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
