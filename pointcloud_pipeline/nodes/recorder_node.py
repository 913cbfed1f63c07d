"""ROS 2 node: record the pipeline's outputs for ``duration`` seconds, then write them and exit.

Subscribes ``points`` (PointCloud2), ``bev/image`` (Image, bgr8) and ``/diagnostics``. After
``duration`` seconds writes into ``output_dir``:
- ``bev.png``: the last BEV image;
- ``cloud.ply``: the last cloud's finite points (binary PLY, with colour when the cloud has rgb);
- ``stats.json``: message counts and rates per topic, end-to-end latency (header stamp -> received
  here, p50/p99), size of the last messages, and the pipeline's own diagnostics (frames in/out/
  dropped per reason, receive -> publish latency p50/p99).
The process exits 0 when every expected topic delivered at least one message, 1 otherwise.
"""
import os
import sys
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from sensor_msgs.msg import Image, PointCloud2

from ..demo.recording import finite_points, write_json, write_ply, write_png
from ..ros.camera_messages import image_to_array
from ..ros.cloud_messages import pointcloud2_points
from ..ros.diagnostics import FrameStatistics
from ..ros.executable import run_node
from ..ros.parameters import ParameterDeclarer, QOS_CHOICES, qos_profile
from ..ros.stamp_sync import stamp_to_ns


class TopicRecord:
    """Arrival count, rate and stamp -> arrival latency of one topic, and its last message."""

    def __init__(self):
        self.statistics = FrameStatistics(latency_window=100_000, rate_window=1e9)
        self.first_arrival = None
        self.last_arrival = None
        self.last_message = None

    def add(self, message, now_ns):
        arrival = time.monotonic()
        self.first_arrival = self.first_arrival or arrival
        self.last_arrival = arrival
        self.last_message = message
        self.statistics.count_received()
        self.statistics.count_published((now_ns - stamp_to_ns(message.header.stamp)) * 1e-9)

    def summary(self):
        snapshot = self.statistics.snapshot()
        count = snapshot['received']
        span = (self.last_arrival - self.first_arrival) if count > 1 else 0.0
        return {'received': count,
                'rate_hz': (count - 1) / span if span > 0 else 0.0,
                'latency_ms': snapshot['latency_ms']}


class RecorderNode(Node):
    """Records ``points``, ``bev/image`` and the pipeline's diagnostics, then writes them."""

    def __init__(self, **kwargs):
        super().__init__('recorder', **kwargs)
        params = ParameterDeclarer(self)
        self.duration = params.declare('duration', 10.0, 'recording time, seconds',
                                       value_range=(0.1, 86400.0), read_only=True)
        self.output_dir = params.declare('output_dir', 'out', 'directory of the outputs',
                                         read_only=True)
        self.expect_bev = params.declare('expect_bev', True,
                                         'fail unless bev/image delivered a frame',
                                         read_only=True)
        self.pipeline_name = params.declare(
            'pipeline_node', 'pointcloud_pipeline',
            'name of the node whose /diagnostics are recorded', read_only=True)
        qos = params.declare('qos', 'sensor_data', 'QoS of the subscriptions',
                             choices=QOS_CHOICES, read_only=True)
        profile = qos_profile(qos, depth=5)
        self.records = {'points': TopicRecord(), 'bev': TopicRecord()}
        self.diagnostics = {}
        self._lock = threading.Lock()
        self.create_subscription(PointCloud2, 'points', self._on('points'), profile)
        self.create_subscription(Image, 'bev/image', self._on('bev'), profile)
        self.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, 50)
        self.done = False
        self.exit_code = None
        self.started = time.monotonic()
        self._timer = self.create_timer(self.duration, self.finish)
        self.get_logger().info(f'recording for {self.duration:g} s into {self.output_dir}')

    def _on(self, name):
        def callback(message):
            with self._lock:
                self.records[name].add(message, self.get_clock().now().nanoseconds)
        return callback

    def _on_diagnostics(self, array):
        for status in array.status:
            if status.name.split(':')[0].strip().lstrip('/').endswith(self.pipeline_name):
                with self._lock:
                    self.diagnostics = {'level': int.from_bytes(status.level, 'little'),
                                        'message': status.message,
                                        **{kv.key: _number(kv.value) for kv in status.values}}

    def finish(self):
        """Write the outputs and the summary (called once by the timer)."""
        if self.done:
            return
        self._timer.cancel()
        with self._lock:
            records = {name: (record.summary(), record.last_message)
                       for name, record in self.records.items()}
            diagnostics = dict(self.diagnostics)
        stats = {'duration_s': round(time.monotonic() - self.started, 3),
                 'pipeline': diagnostics}
        problems = []
        points_summary, cloud = records['points']
        stats['points'] = points_summary
        if cloud is None:
            problems.append('no point cloud received on points')
        else:
            try:
                xyz, rgb = self._cloud_points(cloud)
                path = write_ply(os.path.join(self.output_dir, 'cloud.ply'), xyz, rgb)
                stats['points'].update(width=cloud.width, height=cloud.height,
                                       finite_points=int(len(xyz)), colored=rgb is not None,
                                       frame_id=cloud.header.frame_id, file=path)
            except (ValueError, OSError) as error:
                problems.append(f'could not write the cloud: {error}')
        bev_summary, bev = records['bev']
        stats['bev'] = bev_summary
        if bev is None:
            if self.expect_bev:
                problems.append('no BEV image received on bev/image')
        else:
            try:
                pixels = image_to_array(bev, allowed_encodings=('bgr8', 'mono8'))
                path = write_png(os.path.join(self.output_dir, 'bev.png'), pixels)
                stats['bev'].update(width=bev.width, height=bev.height,
                                    occupied_cells=int(np.count_nonzero(
                                        pixels.reshape(bev.height, bev.width, -1).any(axis=2))),
                                    frame_id=bev.header.frame_id, file=path)
            except (ValueError, OSError) as error:
                problems.append(f'could not write the BEV image: {error}')
        stats['problems'] = problems
        try:
            stats_path = write_json(os.path.join(self.output_dir, 'stats.json'), stats)
        except OSError as error:
            problems.append(f'could not write stats.json: {error}')
            stats_path = None
        self.exit_code = 1 if problems else 0
        self.stats = stats
        self.stats_path = stats_path
        self.done = True
        for problem in problems:
            self.get_logger().error(problem)

    @staticmethod
    def _cloud_points(cloud):
        fields = pointcloud2_points(cloud, ['x', 'y', 'z', 'rgb'])
        missing = {'x', 'y', 'z'} - set(fields)
        if missing:
            raise ValueError(f'the cloud has no {", ".join(sorted(missing))} field')
        return finite_points(fields['x'], fields['y'], fields['z'], fields.get('rgb'))


def _number(text):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text or None


def _spin_until_written(node, executor):
    """Spin until the outputs are written; exit code 0 when they all were, 1 otherwise."""
    try:
        while rclpy.ok() and not node.done:
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        return 1
    if not node.done:
        return 1
    print(f'recorder: wrote {node.output_dir} ({"ok" if node.exit_code == 0 else "FAILED"})',
          flush=True)
    return node.exit_code


def main(args=None):
    return run_node(RecorderNode, args, spin=_spin_until_written)


if __name__ == '__main__':
    sys.exit(main())
