"""depth_estimator_node end to end over real DDS (loopback): real colour frames in, 32FC1 depth
and rescaled camera_info out, with either engine (tinygrad, onnxruntime); startup failures, bad
frames, frame dropping, rate limiting, /diagnostics; and the chain RGB -> depth_estimator_node ->
pipeline_node -> PointCloud2, the same cloud with either engine."""
import os
import re
import signal
import subprocess
import sys
import time

import cv2
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
import numpy as np
import pytest
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
import yaml

from pointcloud_pipeline.monodepth import load_profile, postprocess, preprocess
from pointcloud_pipeline.nodes.depth_estimator_node import DepthEstimatorNode
from pointcloud_pipeline.ros.camera_messages import array_to_image, image_to_array
from pointcloud_pipeline.ros.data_field import set_data
from pointcloud_pipeline.ros.executable import NodeStartupError
from reference_monodepth import (build_encoder_decoder, build_unsupported_op_model,
                                 onnxruntime_session, tinygrad_unavailable_reason)
from ros_helpers import Collector, spinning, wait_for_subscribers, wait_until

pytestmark = [pytest.mark.ros,
              pytest.mark.skipif(bool(tinygrad_unavailable_reason()),
                                 reason=tinygrad_unavailable_reason() or '')]

TIMEOUT = 60.0  # generous: other builds share the machine
RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
BEST_EFFORT = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
K_7SCENES = [585.0, 0.0, 320.0, 0.0, 585.0, 240.0, 0.0, 0.0, 1.0]


@pytest.fixture(scope='module')
def model(tmp_path_factory):
    """A 240x320 encoder-decoder ONNX model (metric, 0..10 m) and its profile YAML file."""
    folder = tmp_path_factory.mktemp('node_model')
    path = folder / 'depth_240x320.onnx'
    build_encoder_decoder(path, 240, 320, output_gain=10.0, seed=11)
    profile = folder / 'test_metric.yaml'
    profile.write_text(yaml.safe_dump({
        'name': 'test_metric', 'input_size': [240, 320], 'mean': [0.485, 0.456, 0.406],
        'std': [0.229, 0.224, 0.225], 'interpolation': 'linear', 'output_kind': 'metric',
        'max_depth_m': 9.0}))
    return path, profile


@pytest.fixture(scope='module')
def color_rgb(shared_data):
    bgr = cv2.imread(str(shared_data / 'rgbd/7scenes_tsdf_fusion/frame-000000.color.jpg'))
    return np.ascontiguousarray(bgr[:, :, ::-1])


def color_message(rgb, stamp_sec, frame_id='kinect_rgb_optical'):
    msg = array_to_image(rgb, 'rgb8')
    msg.header.stamp.sec = stamp_sec
    msg.header.stamp.nanosec = 123
    msg.header.frame_id = frame_id
    return msg


def camera_info(width=640, height=480, frame_id='kinect_rgb_optical'):
    info = CameraInfo(width=width, height=height, distortion_model='plumb_bob')
    info.header.frame_id = frame_id
    info.k = K_7SCENES
    info.p = K_7SCENES[:3] + [0.0] + K_7SCENES[3:6] + [0.0] + K_7SCENES[6:] + [0.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.d = [0.0] * 5
    return info


def counts(node):
    """Frames received and published, and dropped per reason (0 when none), of the node."""
    snapshot = node.statistics.snapshot()
    dropped = snapshot['dropped_by_reason']
    reasons = ('busy', 'rate', 'bad_frame', 'error')
    return {'received': snapshot['received'], 'published': snapshot['published'],
            **{reason: dropped.get(reason, 0) for reason in reasons}}


def status_values(status):
    """The key/value pairs of a DiagnosticStatus as a dict of strings."""
    return {item.key: item.value for item in status.values}


def make_node(context, model, **params):
    path, profile = model
    values = {'model_path': str(path), 'profile': str(profile), 'qos': 'reliable', **params}
    return DepthEstimatorNode(context=context, parameter_overrides=[
        Parameter(name, value=value) for name, value in values.items()])


class DepthClient:
    """Publishes colour frames and camera_info, collects depth images and depth camera_info."""

    def __init__(self, context, namespace=''):
        self.node = Node('depth_test_client', namespace=namespace, context=context)
        self.images = self.node.create_publisher(Image, 'image', RELIABLE)
        self.infos = self.node.create_publisher(CameraInfo, 'camera_info', RELIABLE)
        self.depth = Collector()
        self.depth_info = Collector()
        self.node.create_subscription(Image, 'depth/image', self.depth, RELIABLE)
        self.node.create_subscription(CameraInfo, 'depth/camera_info', self.depth_info, RELIABLE)
        self.diagnostics = Collector()
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self.diagnostics, 10)

    def statuses(self, node):
        """The /diagnostics statuses received from ``node``, oldest first."""
        name = f'{node.get_name()}: monocular depth'
        return [status for array in self.diagnostics.messages for status in array.status
                if status.name == name]

    def wait_for_node(self):
        assert wait_for_subscribers(self.images, timeout=TIMEOUT)
        assert wait_for_subscribers(self.infos, timeout=TIMEOUT)
        assert wait_until(lambda: self.node.count_publishers('depth/image') >= 1, TIMEOUT)


def expected_depth(model, rgb, output_size=None):
    """The depth image computed by onnxruntime with the same pre/post-processing."""
    profile = load_profile(model[1])
    network_input, placement = preprocess(rgb, 'rgb8', profile)
    raw = onnxruntime_session(model[0]).run(None, {'input': network_input})[0]
    return postprocess(raw, placement, profile, output_size=output_size)


@pytest.mark.parametrize('engine,output_size', [('tinygrad', None), ('tinygrad', (240, 320)),
                                               ('onnxruntime', None)])
def test_rgb_frame_becomes_a_32fc1_depth_image(rclpy_context, model, color_rgb, engine,
                                               output_size):
    params = {} if output_size is None else {'output_height': output_size[0],
                                             'output_width': output_size[1]}
    node = make_node(rclpy_context, model, engine=engine, **params)
    assert (node._estimator.engine, node._estimator.device) == (engine, 'CPU')
    tester = DepthClient(rclpy_context)
    with spinning(rclpy_context, node, tester.node):
        tester.wait_for_node()
        tester.infos.publish(camera_info())
        assert wait_until(lambda: node._camera_info is not None, TIMEOUT)
        tester.images.publish(color_message(color_rgb, 42))
        depth_msgs = tester.depth.wait_for(1, TIMEOUT)
        info_msgs = tester.depth_info.wait_for(1, TIMEOUT)
    assert len(depth_msgs) == 1 and len(info_msgs) == 1
    msg = depth_msgs[0]
    height, width = output_size or (480, 640)
    assert (msg.encoding, msg.height, msg.width, msg.step) == ('32FC1', height, width, width * 4)
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (42, 123)
    assert msg.header.frame_id == 'kinect_rgb_optical'
    depth = image_to_array(msg)
    expected = expected_depth(model, color_rgb, output_size)
    np.testing.assert_allclose(depth, expected, atol=1e-4, equal_nan=True)
    assert 0.3 < np.isfinite(depth).mean()
    info = info_msgs[0]
    assert info.header == msg.header
    assert (info.width, info.height) == (width, height)
    scale = width / 640
    assert info.k[0] == pytest.approx(585.0 * scale) and info.k[4] == pytest.approx(585.0 * scale)
    assert info.k[2] == pytest.approx((320 + 0.5) * scale - 0.5)
    assert info.p[0] == pytest.approx(585.0 * scale) and info.p[10] == 1.0
    assert wait_until(lambda: counts(node)['published'] == 1, TIMEOUT)


def bad_frames(rgb):
    wrong_encoding = array_to_image(np.zeros((48, 64), np.uint16), '16UC1')
    truncated = array_to_image(rgb, 'rgb8')
    set_data(truncated, bytes(truncated.data)[:-100])
    unknown = Image(height=2, width=2, step=4, encoding='yuv422')
    set_data(unknown, bytes(8))
    return [wrong_encoding, truncated, unknown]


def test_bad_frames_are_counted_and_the_next_good_frame_is_processed(
        rclpy_context, model, color_rgb):
    node = make_node(rclpy_context, model)
    tester = DepthClient(rclpy_context)
    with spinning(rclpy_context, node, tester.node):
        tester.wait_for_node()
        for index, bad in enumerate(bad_frames(color_rgb)):
            bad.header.stamp.sec = index
            tester.images.publish(bad)
            assert wait_until(lambda: counts(node)['bad_frame'] == index + 1, TIMEOUT)
        tester.images.publish(color_message(color_rgb, 99))
        depth_msgs = tester.depth.wait_for(1, TIMEOUT)
        assert wait_until(lambda: counts(node)['published'] == 1, TIMEOUT)
        # bad frames are unexpected drops: the period they fall in is WARN, naming the reason
        assert wait_until(lambda: any(
            s.level == DiagnosticStatus.WARN and 'bad_frame' in s.message
            for s in tester.statuses(node)), TIMEOUT)
        stats = counts(node)
    assert [m.header.stamp.sec for m in depth_msgs] == [99]
    assert stats['bad_frame'] == 3 and stats['published'] == 1 and stats['error'] == 0
    assert stats['received'] == 4


def test_frames_arriving_while_busy_are_dropped_keeping_the_newest(
        rclpy_context, model, color_rgb):
    node = make_node(rclpy_context, model)
    tester = DepthClient(rclpy_context)
    frames = [color_message(color_rgb, sec) for sec in range(1, 31)]
    with spinning(rclpy_context, node, tester.node):
        tester.wait_for_node()
        for frame in frames:  # back to back: far faster than inference
            tester.images.publish(frame)
        assert wait_until(lambda: any(m.header.stamp.sec == 30 for m in tester.depth.messages),
                          TIMEOUT)
        time.sleep(0.5)  # nothing else may still be in flight
        stats = counts(node)
        stamps = [m.header.stamp.sec for m in tester.depth.messages]
        assert wait_until(lambda: any(status_values(s).get('published') == str(stats['published'])
                                      for s in tester.statuses(node)), TIMEOUT)
        statuses = tester.statuses(node)
    # (the subscription's DDS history, depth 10, may also discard some before the callback)
    assert stats['busy'] > 0
    assert stats['published'] + stats['busy'] == stats['received'] <= 30
    assert stats['published'] == len(stamps) < 30
    assert stamps == sorted(stamps) and stamps[-1] == 30  # the newest frame is never dropped
    # dropping for a busy network is normal operation: never WARN
    assert all(s.level != DiagnosticStatus.WARN for s in statuses), [s.message for s in statuses]
    last = statuses[-1]  # published after the last frame: the final counts
    values = status_values(last)
    assert last.hardware_id == node._estimator.device  # the tinygrad device, e.g. 'CPU'
    assert int(values['received']) == stats['received']
    assert int(values['dropped_by_reason.busy']) == stats['busy']
    assert int(values['latency_ms.samples']) == stats['published']
    assert int(values['inference_latency_ms.samples']) == stats['published']
    assert float(values['inference_latency_ms.p50']) <= float(values['latency_ms.max'])


def test_max_rate_skips_frames(rclpy_context, model, color_rgb):
    node = make_node(rclpy_context, model, max_rate=1.0)
    tester = DepthClient(rclpy_context)
    with spinning(rclpy_context, node, tester.node):
        tester.wait_for_node()
        for sec in range(10):  # 10 frames in about 0.45 s: one passes a 1 Hz limit
            tester.images.publish(color_message(color_rgb, sec))
            time.sleep(0.05)
        assert wait_until(lambda: counts(node)['received'] == 10, TIMEOUT)
        tester.depth.wait_for(1, TIMEOUT)
        assert wait_until(lambda: counts(node)['published'] >= 1, TIMEOUT)
        stats = counts(node)
    assert stats['rate'] >= 8 and 1 <= stats['published'] <= 2


def test_startup_error_in_process_is_raised_after_logging(rclpy_context, model, tmp_path):
    with pytest.raises(NodeStartupError, match='model file not found'):
        make_node(rclpy_context, (tmp_path / 'missing.onnx', model[1]))
    with pytest.raises(NodeStartupError, match='set both output_width and output_height'):
        make_node(rclpy_context, model, output_width=320)
    with pytest.raises(NodeStartupError, match="parameter engine='tensorflow' is not one of"):
        make_node(rclpy_context, model, engine='tensorflow')


def test_missing_onnxruntime_stops_the_node_naming_the_pip_command(rclpy_context, model,
                                                                   monkeypatch):
    # None in sys.modules: the import system refuses the import as if it were not installed
    monkeypatch.setitem(sys.modules, 'onnxruntime', None)
    with pytest.raises(NodeStartupError, match="engine 'onnxruntime' needs the Python package "
                                               'onnxruntime, which is not installed: pip '
                                               r'install onnxruntime==1\.31\.1'):
        make_node(rclpy_context, model, engine='onnxruntime')
    make_node(rclpy_context, model).destroy_node()  # tinygrad does not need it


NODE_MAIN = 'pointcloud_pipeline.nodes.depth_estimator_node'
# the node's main() in a process where onnxruntime cannot be imported (None in sys.modules)
WITHOUT_ONNXRUNTIME = ("import sys; sys.modules['onnxruntime'] = None; "
                       f'from {NODE_MAIN} import main; sys.exit(main())')


def run_node_process(*ros_args, timeout=TIMEOUT, without_onnxruntime=False):
    start = ['-c', WITHOUT_ONNXRUNTIME] if without_onnxruntime else ['-m', NODE_MAIN]
    return subprocess.run([sys.executable, *start, '--ros-args', *ros_args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize('case', ['missing_model', 'no_model_path', 'profile_mismatch',
                                  'unknown_profile', 'unsupported_operator', 'bad_qos',
                                  'out_of_range', 'bad_engine', 'onnxruntime_on_a_gpu',
                                  'no_onnxruntime'])
def test_node_process_exits_nonzero_with_a_clear_message(case, model, tmp_path):
    path, profile = model
    unsupported = tmp_path / 'det.onnx'
    build_unsupported_op_model(unsupported, 240, 320)
    args, message = {
        'missing_model': (['-p', f'model_path:={tmp_path}/missing.onnx'],
                          f'model file not found: {tmp_path}/missing.onnx'),
        'no_model_path': ([], 'parameter model_path is empty'),
        'profile_mismatch': (['-p', f'model_path:={path}', '-p', 'profile:=midas_v21_small'],
                             r"\(profile 'midas_v21_small'\): input 'input' has shape "
                             r'\(1, 3, 240, 320\) .* mismatch on axis 2'),
        'unknown_profile': (['-p', f'model_path:={path}', '-p', 'profile:=midas_v9'],
                            "no model profile named 'midas_v9'"),
        'unsupported_operator': (['-p', f'model_path:={unsupported}', '-p', f'profile:={profile}'],
                                 r"the model does not run in tinygrad \(warm-up failed\): "
                                 "NotImplementedError: op='Det' is not supported"),
        'bad_qos': (['-p', f'model_path:={path}', '-p', 'qos:=fast'],
                    "parameter qos='fast' is not one of"),
        'out_of_range': (['-p', f'model_path:={path}', '-p', 'output_width:=-1'],
                         'output_width out of range'),
        'bad_engine': (['-p', f'model_path:={path}', '-p', 'engine:=tensorflow'],
                       r"parameter engine='tensorflow' is not one of \('tinygrad', "
                       r"'onnxruntime'\)"),
        'onnxruntime_on_a_gpu': (['-p', f'model_path:={path}', '-p', f'profile:={profile}', '-p',
                                  'engine:=onnxruntime', '-p', 'device:=CUDA'],
                                 "engine 'onnxruntime' runs on the CPU only: device must be '' "
                                 "or 'CPU', got 'CUDA'"),
        'no_onnxruntime': (['-p', f'model_path:={path}', '-p', f'profile:={profile}', '-p',
                            'engine:=onnxruntime'],
                           "engine 'onnxruntime' needs the Python package onnxruntime, which is "
                           r'not installed: pip install onnxruntime==1\.31\.1'),
    }[case]
    result = run_node_process(*args, without_onnxruntime=case == 'no_onnxruntime')
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert 'FATAL' in output and 'cannot start' in output
    assert re.search(message, output), output
    assert 'Traceback' not in output


def test_node_process_runs_and_shuts_down_cleanly(rclpy_context, model, color_rgb):
    path, profile = model
    namespace = f'mono_{os.getpid()}'
    process = subprocess.Popen(
        [sys.executable, '-m', 'pointcloud_pipeline.nodes.depth_estimator_node', '--ros-args',
         '-r', f'__ns:=/{namespace}', '-p', f'model_path:={path}', '-p', f'profile:={profile}',
         '-p', 'qos:=reliable'], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        tester = DepthClient(rclpy_context, namespace=namespace)
        with spinning(rclpy_context, tester.node):
            tester.wait_for_node()
            tester.images.publish(color_message(color_rgb, 7))
            depth_msgs = tester.depth.wait_for(1, TIMEOUT)
        assert [m.header.stamp.sec for m in depth_msgs] == [7]
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0, output
    assert 'warm-up (compile + JIT capture) took' in output
    assert 'frame counts: received 1, published 1, dropped 0' in output


def cloud_xyz(cloud):
    """x, y, z float32 columns of a PointCloud2 (any point layout)."""
    offsets = {f.name: f.offset for f in cloud.fields}
    assert {'x', 'y', 'z'} <= set(offsets) and not cloud.is_bigendian
    dtype = np.dtype({'names': ['x', 'y', 'z'], 'formats': ['<f4'] * 3,
                      'offsets': [offsets['x'], offsets['y'], offsets['z']],
                      'itemsize': cloud.point_step})
    rows = np.frombuffer(cloud.data, np.uint8).reshape(cloud.height, cloud.row_step)
    points = rows[:, :cloud.width * cloud.point_step].copy().view(dtype)
    return points.reshape(cloud.height, cloud.width)


def run_chain(rclpy_context, model, color_rgb, engine):
    """RGB -> depth_estimator_node (``engine``) -> pipeline_node (depth/image_rect) -> points,
    each node in its own process; returns (first cloud, its depth image, its depth camera_info,
    the nodes' output)."""
    path, profile = model
    namespace = f'chain_{engine}_{os.getpid()}'
    common = ['-r', f'__ns:=/{namespace}']
    estimator = subprocess.Popen(
        [sys.executable, '-m', NODE_MAIN, '--ros-args', *common, '-p', f'model_path:={path}',
         '-p', f'profile:={profile}', '-p', 'qos:=reliable', '-p', f'engine:={engine}'],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pipeline = subprocess.Popen(
        [sys.executable, '-m', 'pointcloud_pipeline.nodes.pipeline_node', '--ros-args', *common,
         '-r', 'depth/image_rect:=depth/image'],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        tester = DepthClient(rclpy_context, namespace=namespace)
        clouds = Collector()
        # best effort: matches the pipeline's publisher whichever reliability it chose
        tester.node.create_subscription(PointCloud2, 'points', clouds, BEST_EFFORT)
        with spinning(rclpy_context, tester.node):
            tester.wait_for_node()
            assert wait_until(lambda: tester.node.count_publishers('points') >= 1, TIMEOUT)
            deadline = time.monotonic() + TIMEOUT
            sec = 0
            while not len(clouds) and time.monotonic() < deadline:  # until both are connected
                sec += 1
                tester.infos.publish(camera_info())
                tester.images.publish(color_message(color_rgb, sec))
                clouds.wait_for(1, 2.0)
            received = clouds.wait_for(1, 1.0)
            depth_by_stamp = {m.header.stamp.sec: m for m in tester.depth.messages}
            infos = list(tester.depth_info.messages)
    finally:
        for process in (estimator, pipeline):
            process.send_signal(signal.SIGINT)
        outputs = '\n'.join(p.communicate(timeout=TIMEOUT)[0] for p in (estimator, pipeline))
    assert received, 'no point cloud arrived:\n' + outputs
    cloud = received[0]
    depth = image_to_array(depth_by_stamp[cloud.header.stamp.sec])
    info = next(m for m in infos if m.header.stamp == cloud.header.stamp)
    return cloud, depth, info, outputs


def check_cloud_of_depth(cloud, depth, info):
    """The organised cloud is the depth image back-projected with the camera_info's P."""
    assert cloud.header.frame_id == 'kinect_rgb_optical'
    # the depth camera_info the pipeline used: the colour camera's (same size: no rescaling)
    assert (info.width, info.height) == (640, 480) and depth.shape == (480, 640)
    assert list(info.k) == K_7SCENES and info.p[0] == 585.0 and info.p[5] == 585.0
    fx, fy, cx, cy = info.p[0], info.p[5], info.p[2], info.p[6]  # the pipeline's default: P
    xyz = cloud_xyz(cloud)
    assert xyz.shape == depth.shape  # the pipeline's default: organised, one point per pixel
    z = xyz['z'].astype(np.float32)
    valid = np.isfinite(depth) & (depth > 0)
    assert np.count_nonzero(valid) > depth.size // 2
    np.testing.assert_allclose(z, np.where(valid, depth, np.nan), rtol=1e-6, equal_nan=True)
    # x = (u - cx) * z / fx, y = (v - cy) * z / fy (camera optical frame, metres)
    v, u = np.mgrid[0:depth.shape[0], 0:depth.shape[1]]
    np.testing.assert_allclose(xyz['x'][valid], ((u - cx) * depth / fx)[valid],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(xyz['y'][valid], ((v - cy) * depth / fy)[valid],
                               rtol=1e-5, atol=1e-6)
    assert np.isnan(xyz['x'][~valid]).all() and np.isnan(xyz['y'][~valid]).all()
    assert xyz['x'][valid].min() < -1.0 and xyz['y'][valid].max() > 0.5  # a spread, not ~0


def test_chain_rgb_to_depth_to_point_cloud_with_either_engine(rclpy_context, model, color_rgb):
    """The cloud follows from the depth image exactly, and both engines give the same cloud."""
    clouds = {}
    for engine in ('tinygrad', 'onnxruntime'):
        cloud, depth, info, outputs = run_chain(rclpy_context, model, color_rgb, engine)
        assert f'in {engine} on device CPU' in outputs
        check_cloud_of_depth(cloud, depth, info)
        clouds[engine] = cloud_xyz(cloud)
    tinygrad, onnxruntime = clouds['tinygrad'], clouds['onnxruntime']
    for axis in 'xyz':
        np.testing.assert_array_equal(np.isnan(onnxruntime[axis]), np.isnan(tinygrad[axis]))
        np.testing.assert_allclose(onnxruntime[axis], tinygrad[axis], atol=1e-4, rtol=0,
                                   equal_nan=True)
