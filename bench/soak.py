"""Soak: the demo chain for N frames at VGA and 30 Hz; memory, losses and latency over time.

Processes (each its own, DDS on loopback with the shared-memory large-data profile,
:func:`pointcloud_pipeline.ros.dds_environment.loopback_ros_env`), wired as ``make demo`` and
``launch/demo.launch.py`` wire them:
1. ``synthetic_camera_node`` (640x480 depth + colour + camera info at 30 Hz);
2. ``pipeline_node`` with colour and BEV (config/pipeline.yaml + config/demo.yaml);
3. a subscriber (this script with ``--subscriber``): ``points``, ``bev/image`` and the camera's
   ``depth/camera_info`` (one per frame published), recording header stamps and receive times.

Measured: RSS of each process (``VmRSS`` of /proc/PID/status) every second, its growth after
the warm-up (the first 60 s or 10 % of the run, whichever is shorter): the median of the last 5
samples minus the median of the 5 samples after the warm-up; frames published (camera infos
seen) vs clouds and BEV images received, the first second not counted (discovery); latency
(header stamp -> cloud received, system clock) p50/p99 over the first and the last 1000 clouds.

Targets (issue 11): growth < 20 MB per process, 0 clouds and BEV images lost; exit 1 when one
is missed, 0 otherwise.

Run: python bench/soak.py [--frames 10000]
"""
import argparse
import json
import os
from pathlib import Path
import subprocess
import sys
import tempfile
import time

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(1, str(REPO))

from bench_pipeline import stop  # noqa: E402 (SIGINT, then kill after a timeout)
from pointcloud_pipeline.demo.run import node_command  # noqa: E402
from pointcloud_pipeline.files import config_file  # noqa: E402
from pointcloud_pipeline.ros.dds_environment import loopback_ros_env  # noqa: E402

RATE_HZ = 30.0
WIDTH, HEIGHT = 640, 480
WARMUP_S, WARMUP_FRACTION = 60.0, 0.10
STARTUP_S = 1.0  # frames stamped in the first second are not counted (discovery)
LATENCY_WINDOW = 1000  # clouds
GROWTH_LIMIT_MB = 20.0
SMOOTHING_SAMPLES = 5
DISCOVERY_S = 3.0  # pipeline and subscriber up before the camera starts
GRACE_S = 2.0  # the subscriber waits this long after the last counted frame
OUTPUT_QUEUE_DEPTH = 30  # the subscriber's queue of clouds and BEV images (1 s at 30 Hz)


# --- the subscriber process -------------------------------------------------------------------

def subscriber(frames, output, namespace):
    """Record (stamp, receive time) of clouds, BEV images and camera infos until ``frames``
    camera infos and GRACE_S more; then write them to ``output`` (JSON) and exit."""
    from diagnostic_msgs.msg import DiagnosticArray
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    rclpy.init()
    node = rclpy.create_node('soak_subscriber', namespace=namespace)
    # preallocated: the subscriber's own memory does not grow with the records
    capacity = 2 * frames + 1000
    records = {key: np.full((capacity, 2), np.nan) for key in ('points', 'bev', 'info')}
    counts = dict.fromkeys(records, 0)
    diagnostics = {}

    def recorder(key):
        table = records[key]

        def on_message(msg):
            if counts[key] < capacity:
                table[counts[key]] = (msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9,
                                      time.time())
                counts[key] += 1
        return on_message

    def on_diagnostics(array):
        for status in array.status:
            if status.name.startswith('pointcloud_pipeline'):
                diagnostics.update({kv.key: kv.value for kv in status.values})

    # best effort as the node publishes, but a deeper queue than sensor_data's 5: a measuring
    # process starved of CPU for a moment (2 cores, 3 processes) does not count as losses
    outputs = QoSProfile(depth=OUTPUT_QUEUE_DEPTH,
                         reliability=qos_profile_sensor_data.reliability,
                         durability=qos_profile_sensor_data.durability)
    node.create_subscription(PointCloud2, 'points', recorder('points'), outputs)
    node.create_subscription(Image, 'bev/image', recorder('bev'), outputs)
    node.create_subscription(CameraInfo, 'depth/camera_info', recorder('info'),
                             QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    node.create_subscription(DiagnosticArray, '/diagnostics', on_diagnostics, 10)
    done_at = None
    try:
        while rclpy.ok():
            rclpy.spin_once(node, timeout_sec=0.1)
            if done_at is None and counts['info'] >= frames:
                done_at = time.monotonic() + GRACE_S
            if done_at is not None and time.monotonic() >= done_at:
                break
    except KeyboardInterrupt:
        pass
    finally:
        with open(output, 'w') as stream:
            json.dump({'records': {key: table[:counts[key]].tolist()
                                   for key, table in records.items()},
                       'diagnostics': diagnostics, 'frames': frames}, stream)
        node.destroy_node()
        rclpy.try_shutdown()


# --- the driver ---------------------------------------------------------------------------------

def rss_mb(pid):
    """Resident set size of ``pid`` in MB (VmRSS of /proc/PID/status), None once it is gone."""
    try:
        with open(f'/proc/{pid}/status') as status:
            for line in status:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def growth(samples, warmup_s):
    """(RSS after the warm-up, at the end, growth; MB) from [(seconds, MB)] samples."""
    after = [mb for t, mb in samples if t >= warmup_s and mb is not None]
    if len(after) < 2:
        return float('nan'), float('nan'), float('nan')
    start = float(np.median(after[:SMOOTHING_SAMPLES]))
    end = float(np.median(after[-SMOOTHING_SAMPLES:]))
    return start, end, end - start


def latency_ms(points):
    """(p50, p99) in ms of receive time - stamp of ``points`` [(stamp, received)]."""
    if not points:
        return float('nan'), float('nan')
    delays = np.array([received - stamp for stamp, received in points]) * 1e3
    return float(np.percentile(delays, 50)), float(np.percentile(delays, 99))


def run_soak(frames):
    env = loopback_ros_env(large_data_profile=True)
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(REPO), env.get('PYTHONPATH')]))
    demo, pipeline_yaml = config_file('demo.yaml'), config_file('pipeline.yaml')
    # a namespace of our own: other runs on the same domain id (random, 1..100) stay apart
    namespace = f'/soak_{os.getpid()}'
    remap = ['-r', f'__ns:={namespace}']
    commands = {
        'pipeline_node': node_command('pipeline_node', {'use_rgb': True, 'bev.enable': True,
                                                        'log_period': 0.0},
                                      [pipeline_yaml, demo]) + remap,
        'synthetic_camera': node_command('synthetic_camera_node', {
            'width': WIDTH, 'height': HEIGHT, 'rate': RATE_HZ, 'publish_rgb': True},
            [demo]) + remap,
    }
    with tempfile.TemporaryDirectory(prefix='soak_') as tmp:
        output = Path(tmp) / 'subscriber.json'
        logs = {name: open(Path(tmp) / f'{name}.log', 'w')
                for name in ('pipeline_node', 'subscriber', 'synthetic_camera')}
        processes = {}
        try:
            processes['pipeline_node'] = subprocess.Popen(
                commands['pipeline_node'], env=env, stdout=logs['pipeline_node'],
                stderr=subprocess.STDOUT)
            processes['subscriber'] = subprocess.Popen(
                [sys.executable, __file__, '--subscriber', '--frames', str(frames),
                 '--output', str(output), '--namespace', namespace],
                env=env, stdout=logs['subscriber'], stderr=subprocess.STDOUT)
            time.sleep(DISCOVERY_S)
            processes['synthetic_camera'] = subprocess.Popen(
                commands['synthetic_camera'], env=env, stdout=logs['synthetic_camera'],
                stderr=subprocess.STDOUT)
            start = time.monotonic()
            samples = {name: [] for name in processes}
            limit = frames / RATE_HZ * 2 + 60
            while processes['subscriber'].poll() is None:
                if time.monotonic() - start > limit:
                    raise RuntimeError(f'the subscriber did not see {frames} frames in {limit} s')
                for name, process in processes.items():
                    samples[name].append((time.monotonic() - start, rss_mb(process.pid)))
                died = [n for n, p in processes.items() if n != 'subscriber' and
                        p.poll() is not None]
                if died:
                    raise RuntimeError(f'{died} exited early')
                time.sleep(1.0)
            elapsed = time.monotonic() - start
        finally:
            for name in ('synthetic_camera', 'pipeline_node', 'subscriber'):
                if name in processes:
                    stop(processes[name])
            for log in logs.values():
                log.close()
        tails = {name: (Path(tmp) / f'{name}.log').read_text()[-2000:] for name in logs}
        if not output.is_file():
            raise RuntimeError(f'no subscriber output; logs: {tails}')
        recorded = json.loads(output.read_text())
    return analyse(recorded, samples, elapsed, frames), tails


def analyse(recorded, samples, elapsed, frames):
    records = recorded['records']
    infos = sorted(stamp for stamp, _ in records['info'])[:frames]
    first, last = infos[0], infos[-1]
    counted = [s for s in infos if s >= first + STARTUP_S]
    points = sorted(records['points'], key=lambda record: record[1])  # in receive order
    clouds = {round(stamp, 6) for stamp, _ in points}
    bevs = {round(stamp, 6) for stamp, _ in records['bev']}
    in_run = [record for record in points if first <= record[0] <= last]
    warmup_s = min(WARMUP_S, WARMUP_FRACTION * elapsed)
    return {
        'frames': len(infos), 'seconds': elapsed, 'warmup_s': warmup_s,
        'published_hz': (len(infos) - 1) / (last - first) if last > first else float('nan'),
        'counted': len(counted),
        'clouds_lost': sum(round(s, 6) not in clouds for s in counted),
        'bev_lost': sum(round(s, 6) not in bevs for s in counted),
        'clouds_lost_startup': sum(round(s, 6) not in clouds for s in infos
                                   if s < first + STARTUP_S),
        'latency_first': latency_ms(in_run[:LATENCY_WINDOW]),
        'latency_last': latency_ms(in_run[-LATENCY_WINDOW:]),
        'rss': {name: growth(values, warmup_s) for name, values in samples.items()},
        'rss_peak': {name: max((mb for _, mb in values if mb is not None), default=float('nan'))
                     for name, values in samples.items()},
        'diagnostics': recorded['diagnostics'],
        'rss_samples': samples,
    }


def report(result):
    """Print the result as tables; returns the list of missed targets."""
    print(f"soak: {result['frames']} frames at {result['published_hz']:.1f} Hz, VGA, "
          f"{result['seconds']:.0f} s; warm-up {result['warmup_s']:.0f} s")
    print(f"{'process':<18}{'RSS after warm-up MB':>22}{'at end MB':>12}{'growth MB':>12}"
          f"{'peak MB':>10}")
    missed = []
    for name, (start, end, grown) in result['rss'].items():
        print(f'{name:<18}{start:>22.1f}{end:>12.1f}{grown:>12.1f}'
              f"{result['rss_peak'][name]:>10.1f}")
        if not grown < GROWTH_LIMIT_MB:
            missed.append(f'{name} RSS grew {grown:.1f} MB (limit {GROWTH_LIMIT_MB:.0f})')
    print(f"frames published (counted after the first {STARTUP_S:.0f} s): {result['counted']}; "
          f"clouds lost: {result['clouds_lost']}, BEV images lost: {result['bev_lost']} "
          f"(in the first second: {result['clouds_lost_startup']} clouds)")
    if result['clouds_lost']:
        missed.append(f"{result['clouds_lost']} clouds lost")
    if result['bev_lost']:
        missed.append(f"{result['bev_lost']} BEV images lost")
    print(f"{'latency stamp -> cloud received':<36}{'p50 ms':>10}{'p99 ms':>10}")
    for label, key in ((f'first {LATENCY_WINDOW} clouds', 'latency_first'),
                       (f'last {LATENCY_WINDOW} clouds', 'latency_last')):
        p50, p99 = result[key]
        print(f'{label:<36}{p50:>10.1f}{p99:>10.1f}')
    diagnostics = result['diagnostics']
    if diagnostics:  # where the frames went missing: before, in or after the pipeline node
        dropped = {key.partition('.')[2]: value for key, value in diagnostics.items()
                   if key.startswith('dropped_by_reason.')}
        print(f"pipeline node (/diagnostics, whole run): {diagnostics.get('received')} depth "
              f"frames received, {diagnostics.get('published')} clouds published, "
              f"{diagnostics.get('dropped')} dropped {dropped or ''}; in-node latency p50 "
              f"{diagnostics.get('latency_ms.p50')} ms, p99 {diagnostics.get('latency_ms.p99')}"
              ' ms')
    for line in missed:
        print(f'target missed: {line}')
    return missed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--frames', type=int, default=10000,
                        help='frames the camera publishes (default 10000, ~5.6 min at 30 Hz)')
    parser.add_argument('--json', metavar='PATH',
                        help='also write the results and the RSS samples (s, MB) there')
    parser.add_argument('--subscriber', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--output', help=argparse.SUPPRESS)
    parser.add_argument('--namespace', default='', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.frames < 2 * 30:
        parser.error('--frames must be >= 60')
    if args.subscriber:
        subscriber(args.frames, args.output, args.namespace)
        return 0
    result, tails = run_soak(args.frames)
    missed = report(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    if missed:
        for name, tail in tails.items():
            if 'Traceback' in tail or 'ERROR' in tail:
                print(f'--- {name} log tail ---\n{tail}', file=sys.stderr)
    return 1 if missed else 0


if __name__ == '__main__':
    sys.exit(main())
