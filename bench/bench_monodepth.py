"""Monocular depth: the two engines (tinygrad, onnxruntime) against onnxruntime alone, same ONNX.

Encoder-decoder networks built with the onnx package (test/reference_monodepth.py; no real
monocular weights are obtainable here): a small one (~0.1 GFLOP), a FastDepth-sized one
(~1 GFLOP) and a larger one (~3 GFLOP), at 256x256 and 240x320 (H x W). "onnxruntime alone" is
a plain default ``InferenceSession`` (CPU) running the preprocessed input: the floor.

``make bench`` (``main``) prints three tables, every time measured interleaved (blocks of 5 calls
of each contender in turn, :func:`blocked_times`) so that all see the same machine load:
1. the network alone: onnxruntime alone, the engine ``onnxruntime`` (its tuned session) and
   ``tinygrad`` (TinyJit); tinygrad's warm-up (compile with the disk cache off + JIT capture);
2. per frame: ``DepthEstimator.predict`` on a 640x480 rgb8 frame (pre-processing, network,
   post-processing to metres) with each engine, over onnxruntime alone. Target (issue 12):
   engine onnxruntime <= 1.2x;
3. the node: ``depth_estimator_node`` (engine onnxruntime) in a child process over DDS on
   loopback, frames sent one at a time; its own receive -> publish latency p50 over onnxruntime
   alone measured in the same child just before.

Further measurements, each in a few minutes (run them under the bench lock, one at a time):
    python bench/bench_monodepth.py --ort-settings       # onnxruntime session options
    python bench/bench_monodepth.py --tinygrad-settings [NAME ...] [--model KEY] [--size HxW]
        [--cache-dir DIR]
tinygrad's settings are environment variables read at import, so each runs in a child process
with its own kernel cache (``CACHEDB``; new, so that the first start includes every compile and
BEAM search, or kept in DIR), started twice (the second start: what a prepared cache gives);
the children are then timed in blocks interleaved with each other and onnxruntime alone. A BEAM
search takes minutes: prepare its cache outside the bench lock, at low priority, with the same
command and ``--cache-dir DIR --repeat 1``, then time it under the lock with the same DIR.
"""
import argparse
import json
import os
from pathlib import Path
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
for _path in (str(BENCH_DIR), str(REPO), str(REPO / 'test')):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from timing import ms, print_table  # noqa: E402

MODELS = {'small': (8, 16), 'fastdepth': (16, 32, 64, 128), 'large': (32, 64, 128, 256)}
MODEL_LABELS = {'small': 'small (8,16)', 'fastdepth': 'FastDepth-sized (16,32,64,128)',
                'large': 'larger (32,64,128,256)'}
SIZES = [(256, 256), (240, 320)]
TARGET_NODE_RATIO = 1.2
FRAME_SHAPE = (480, 640, 3)

TINYGRAD_SETTINGS = {
    'default (DEV=CPU, clang)': {},
    'NUM_CPU_THREADS=1': {'NUM_CPU_THREADS': '1'},
    'DEV=CPU:X86': {'DEV': 'CPU:X86'},
    'DEV=CPU:LLVM': {'DEV': 'CPU:LLVM'},
    'WINO=1': {'WINO': '1'},
    'JIT=2': {'JIT': '2'},
    'BEAM=1': {'BEAM': '1'},
    'BEAM=2': {'BEAM': '2'},
    'DEV=CPU:LLVM BEAM=2': {'DEV': 'CPU:LLVM', 'BEAM': '2'},
}


def model_path(folder, key, size):
    """Build (once) the ONNX model ``key`` at ``size``; returns (path, GFLOP)."""
    from reference_monodepth import build_encoder_decoder
    height, width = size
    path = Path(folder) / f'{key}_{height}x{width}.onnx'
    flops = build_encoder_decoder(path, height, width, channels=MODELS[key], output_gain=10.0)
    return path, flops / 1e9


def bench_profile(size):
    from pointcloud_pipeline.monodepth import ModelProfile
    return ModelProfile(name='bench', input_size=size, mean=(0.485, 0.456, 0.406),
                        std=(0.229, 0.224, 0.225), interpolation='cubic', output_kind='metric')


def test_frame():
    return np.random.default_rng(1).integers(0, 256, FRAME_SHAPE, dtype=np.uint8)


BLOCK = 5  # timed calls per block
# pause before each block: a default onnxruntime session's idle threads spin ~20-50 ms after a
# run (40 ms of CPU measured here, --ort-settings), which would slow whatever runs next
PAUSE_S = 0.06


def blocked_times(functions, repeat):
    """Seconds of each call of each function (``repeat`` calls each) and CPU seconds of this
    process per call: blocks of BLOCK calls of one function after one untimed call, the
    functions in turn, block after block, so that all see the same machine load. Blocks rather
    than single calls, PAUSE_S apart: onnxruntime's idle threads spin for a while after a run
    and would slow whatever runs next."""
    times = [[] for _ in functions]
    cpu = [0.0 for _ in functions]
    for _ in range(max(1, -(-repeat // BLOCK))):
        for index, fn in enumerate(functions):
            time.sleep(PAUSE_S)
            fn()
            cpu_start = time.process_time()
            for _ in range(BLOCK):
                start = time.perf_counter()
                fn()
                times[index].append(time.perf_counter() - start)
            cpu[index] += time.process_time() - cpu_start
    return times, [total / len(bucket) for total, bucket in zip(cpu, times)]


def blocked_medians(functions, repeat):
    """Median seconds of each function (:func:`blocked_times`)."""
    return [float(np.median(bucket)) for bucket in blocked_times(functions, repeat)[0]]


def measure_engines(path, size, repeat):
    """Network-alone and per-frame medians of onnxruntime alone and both engines."""
    from tinygrad.helpers import Context
    from pointcloud_pipeline.monodepth import DepthEstimator, postprocess, preprocess
    from reference_monodepth import onnxruntime_session
    profile = bench_profile(size)
    alone = onnxruntime_session(path)
    single = onnxruntime_session(path, threads=1)
    ort = DepthEstimator(path, profile, engine='onnxruntime')
    ort.warm_up()
    start = time.perf_counter()
    with Context(CACHELEVEL=0):  # compile every kernel: the cost on a fresh machine
        tiny = DepthEstimator(path, profile)
        tiny.warm_up()
    warm_up = time.perf_counter() - start
    frame = test_frame()
    network_input = preprocess(frame, 'rgb8', profile)[0]
    feed = {'input': network_input}
    raw = alone.run(None, feed)[0]
    error = float(np.abs(tiny.run_network(network_input) - raw).max())
    frame_error = float(np.nanmax(np.abs(ort.predict(frame) - tiny.predict(frame))))

    def pre_and_post_processing():
        postprocess(raw, preprocess(frame, 'rgb8', profile)[1], profile)

    names = ['alone', 'single', 'ort_net', 'tiny_net', 'ort_frame', 'tiny_frame', 'pre_post']
    medians = blocked_medians([
        lambda: alone.run(None, feed), lambda: single.run(None, feed),
        lambda: ort.run_network(network_input), lambda: tiny.run_network(network_input),
        lambda: ort.predict(frame), lambda: tiny.predict(frame), pre_and_post_processing],
        repeat)
    result = dict(zip(names, medians))
    result.update(warm_up=warm_up, error=error, frame_error=frame_error)
    return result


def node_child(path, size, frames):
    """In a child process (DDS on loopback): onnxruntime alone, then depth_estimator_node with
    engine onnxruntime fed one frame at a time; prints one JSON line. The process is set up as
    the node's executable sets up its own (malloc tuning, ros/executable.py)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    import yaml
    from pointcloud_pipeline.memory import keep_large_buffers
    from pointcloud_pipeline.monodepth import preprocess
    from pointcloud_pipeline.nodes.depth_estimator_node import DepthEstimatorNode
    from pointcloud_pipeline.ros.camera_messages import array_to_image
    from reference_monodepth import onnxruntime_session
    from timing import median_seconds

    keep_large_buffers()
    profile = bench_profile(size)
    frame = test_frame()
    feed = {'input': preprocess(frame, 'rgb8', profile)[0]}
    alone_session = onnxruntime_session(path)
    alone = median_seconds(lambda: alone_session.run(None, feed), repeat=frames)
    profile_file = Path(path).with_suffix('.yaml')
    profile_file.write_text(yaml.safe_dump({
        'name': 'bench', 'input_size': list(size), 'mean': list(profile.mean),
        'std': list(profile.std), 'interpolation': 'cubic', 'output_kind': 'metric'}))
    context = rclpy.Context()
    rclpy.init(context=context)
    reliable = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    try:
        parameters = {'model_path': str(path), 'profile': str(profile_file),
                      'engine': 'onnxruntime', 'qos': 'reliable'}
        node = DepthEstimatorNode(context=context, parameter_overrides=[
            Parameter(name, value=value) for name, value in parameters.items()])
        client = Node('bench_client', context=context)
        images = client.create_publisher(Image, 'image', reliable)
        arrived = []
        client.create_subscription(Image, 'depth/image', arrived.append, reliable)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        executor.add_node(client)

        def spin_until(predicate, timeout):
            deadline = time.monotonic() + timeout
            while not predicate() and time.monotonic() < deadline:
                executor.spin_once(timeout_sec=0.01)
            return predicate()

        spin_until(lambda: images.get_subscription_count() > 0
                   and client.count_publishers('depth/image') > 0, 30.0)
        message = array_to_image(frame, 'rgb8')
        for sent in range(1, frames + 1):
            images.publish(message)
            if not spin_until(lambda: len(arrived) >= sent, 30.0):
                raise RuntimeError(f'depth image {sent} did not arrive')
        snapshot = node.statistics.snapshot()
        executor.shutdown()
        node.destroy_node()
        client.destroy_node()
    finally:
        context.try_shutdown()
    print(json.dumps({'alone': alone, 'latency': snapshot['latency_ms'],
                      'inference': snapshot['inference_latency_ms'],
                      'dropped': snapshot['dropped']}))


def measure_node(path, size, frames):
    from pointcloud_pipeline.ros.dds_environment import loopback_ros_env
    env = loopback_ros_env(large_data_profile=True)
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(REPO), env.get('PYTHONPATH')]))
    result = subprocess.run(
        [sys.executable, __file__, '--node-child', str(path), '--size', f'{size[0]}x{size[1]}',
         '--frames', str(frames)], env=env, capture_output=True, text=True, timeout=300)
    lines = [line for line in result.stdout.splitlines() if line.startswith('{')]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f'node benchmark failed: {result.stderr[-3000:]}')
    return json.loads(lines[-1])


def main(quick=False):
    """The three tables (module docstring), computed in a child process set up as the node's
    executable sets up its own (malloc tuning, ros/executable.py), which bench/run.py's process
    must not be (it changes every later benchmark's memory behaviour)."""
    subprocess.run([sys.executable, __file__, '--tables', *(['--quick'] if quick else [])],
                   check=True, timeout=1800)


def tables(quick):
    from pointcloud_pipeline.memory import keep_large_buffers
    keep_large_buffers()  # as in the node: freed frame-sized buffers stay mapped
    from tinygrad import Device
    from tinygrad.helpers import BEAM, NUM_CPU_THREADS
    import onnxruntime
    repeat = 10 if quick else 30
    keys = ['fastdepth'] if quick else list(MODELS)
    network_rows, frame_rows, node_rows, verdicts = [], [], [], []
    with tempfile.TemporaryDirectory(prefix='bench_monodepth_') as folder:
        for key in keys:
            for size in SIZES:  # the node runs on the last size
                path, gflop = model_path(folder, key, size)
                r = measure_engines(path, size, repeat)
                label, shape = MODEL_LABELS[key], f'{size[0]}x{size[1]}'
                network_rows.append([
                    label, f'{gflop:.2f}', shape, ms(r['alone']), ms(r['single']),
                    ms(r['ort_net']), ms(r['tiny_net']), f"{r['tiny_net'] / r['alone']:.2f}",
                    f"{r['warm_up']:.1f}", f"{r['error']:.1e}"])
                verdicts.append((f'predict {key} {shape}', r['ort_frame'] / r['alone']))
                frame_rows.append([
                    label, shape, ms(r['alone']), ms(r['pre_post']), ms(r['ort_frame']),
                    f"{r['ort_frame'] / r['alone']:.2f}", ms(r['tiny_frame']),
                    f"{r['tiny_frame'] / r['alone']:.2f}", f"{r['frame_error']:.1e}"])
            node = measure_node(path, SIZES[-1], 15 if quick else 40)
            verdicts.append((f'node {key} {SIZES[-1][0]}x{SIZES[-1][1]}',
                             node['latency']['p50'] / 1e3 / node['alone']))
            node_rows.append([
                label, f'{SIZES[-1][0]}x{SIZES[-1][1]}', ms(node['alone']),
                ms(node['latency']['p50'] / 1e3), ms(node['latency']['p99'] / 1e3),
                ms(node['inference']['p50'] / 1e3), str(node['latency']['samples']),
                str(node['dropped']), f"{node['latency']['p50'] / 1e3 / node['alone']:.2f}"])
    print_table(
        f'monocular depth network alone: onnxruntime {onnxruntime.__version__} alone (default '
        f'session) vs the engines onnxruntime and tinygrad {Device.DEFAULT} (TinyJit, '
        f'BEAM={BEAM.value}, NUM_CPU_THREADS={NUM_CPU_THREADS.value}), median of {repeat} '
        f'runs in interleaved blocks',
        ['model', 'GFLOP', 'input', 'ort alone ms', 'ort 1-thread ms', 'engine ort ms',
         'tinygrad ms', 'tinygrad/ort', 'tinygrad warm-up s', 'max |diff|'], network_rows)
    print_table(
        'monocular depth per frame: DepthEstimator.predict, 640x480 rgb8 -> metres (pre-process,'
        ' network, post-process) with each engine, over onnxruntime alone',
        ['model', 'input', 'ort alone ms', 'pre+post ms', 'predict ort ms', 'ort/alone',
         'predict tinygrad ms', 'tinygrad/alone', 'max |ort - tinygrad| m'], frame_rows)
    print_table(
        'depth_estimator_node, engine onnxruntime, one 640x480 rgb8 frame at a time over DDS '
        '(loopback): its receive -> publish latency over onnxruntime alone',
        ['model', 'input', 'ort alone ms', 'node p50 ms', 'node p99 ms', 'inference p50 ms',
         'frames', 'dropped', 'node p50/alone'], node_rows)
    met = [name for name, ratio in verdicts if ratio <= TARGET_NODE_RATIO]
    missed = [f'{name} {ratio:.2f}x' for name, ratio in verdicts if ratio > TARGET_NODE_RATIO]
    print(f'target engine onnxruntime per frame <= {TARGET_NODE_RATIO}x onnxruntime alone: met '
          f'by {len(met)} of {len(verdicts)} ({", ".join(met) or "none"}); missed by '
          f'{", ".join(missed) or "none"}. Pre/post-processing and messaging are a fixed cost '
          f'per frame, so the ratio falls as the network grows. ort 1-thread = '
          f'intra_op_num_threads 1; warm-up = compile with the disk cache off + JIT capture')


# -- onnxruntime session options -------------------------------------------------------------

def ort_settings(key, size, repeat):
    """Median and p90 of session.run for session-option variants, quiet and beside one busy
    process (started and stopped here)."""
    import onnxruntime as ort
    from pointcloud_pipeline.monodepth import preprocess
    from pointcloud_pipeline.monodepth.engines import OnnxruntimeEngine, usable_cpu_count

    def session(intra=0, inter=0, sequential=False, spinning=True, level='all',
                stop_spinning=False):
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = intra, inter
        if sequential:
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = {
            'all': ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            'basic': ort.GraphOptimizationLevel.ORT_ENABLE_BASIC}[level]
        if not spinning:
            options.add_session_config_entry('session.intra_op.allow_spinning', '0')
        if stop_spinning:
            options.add_session_config_entry('session.force_spinning_stop', '1')
        return ort.InferenceSession(str(path), sess_options=options,
                                    providers=['CPUExecutionProvider'])

    cores = usable_cpu_count()
    with tempfile.TemporaryDirectory(prefix='bench_ort_') as folder:
        path, gflop = model_path(folder, key, size)
        feed = {'input': preprocess(test_frame(), 'rgb8', bench_profile(size))[0]}
        engine = OnnxruntimeEngine(path)
        engine.bind('input', 'depth')
        variants = {
            'default (all optimisations, threads 0 = ORT picks)': session(),
            f'intra {cores}, inter 1, sequential': session(cores, 1, True),
            f'intra {cores}, inter 1, sequential, no spinning': session(cores, 1, True, False),
            f'intra {cores}, inter 1, sequential, spinning stopped after each run': session(
                cores, 1, True, stop_spinning=True),
            'intra 1': session(1, 1, True),
            f'intra {cores}, basic optimisations only': session(cores, 1, True, level='basic'),
            'the engine (engines.OnnxruntimeEngine)': engine,
        }
        calls = [(lambda s=s: s.run(None, feed)) if not isinstance(s, OnnxruntimeEngine)
                 else (lambda: engine.run(feed['input'])) for s in variants.values()]
        rows = {name: [] for name in variants}
        for busy in (0, 1):
            hogs = [subprocess.Popen([sys.executable, '-c', 'while True: pass'])
                    for _ in range(busy)]
            try:
                times, cpu = blocked_times(calls, repeat)
            finally:
                for hog in hogs:
                    hog.kill()
                    hog.wait()
            for name, bucket, cpu_per_call in zip(variants, times, cpu):
                rows[name] += [ms(np.median(bucket)), ms(np.percentile(bucket, 90)),
                               ms(cpu_per_call)]
        for name, call in zip(variants, calls):
            rows[name].append(ms(idle_cpu_seconds(call)))
    print_table(f'onnxruntime session options, {MODEL_LABELS[key]} {size[0]}x{size[1]} '
                f'({gflop:.2f} GFLOP), {repeat} runs each in blocks of {BLOCK}, {cores} cores',
                ['session', 'quiet p50 ms', 'quiet p90 ms', 'CPU ms/run', '1 busy p50 ms',
                 '1 busy p90 ms', 'CPU ms/run', 'idle CPU ms'],
                [[name, *values] for name, values in rows.items()])
    print('CPU ms/run: CPU time of this process per run, all its threads (spinning included); '
          f'idle CPU ms: CPU time it takes in the {IDLE_S * 1e3:.0f} ms after a run while the '
          'caller sleeps (median of 5): what a node would take from its neighbours between '
          'frames')


IDLE_S = 0.05


def idle_cpu_seconds(call, rounds=5):
    """Median CPU seconds this process uses in the IDLE_S seconds after ``call()`` returns."""
    used = []
    for _ in range(rounds):
        call()
        start = time.process_time()
        time.sleep(IDLE_S)
        used.append(time.process_time() - start)
    return float(np.median(used))


# -- tinygrad settings -------------------------------------------------------------------------

def tinygrad_child(path, size):
    """A contender in a child process with the setting's environment: builds and warms up the
    estimator, prints {warm_up, error} as a JSON line, then for each line ``N`` read from stdin
    times N runs of the network and prints their seconds; stops at end of input."""
    from pointcloud_pipeline.monodepth import DepthEstimator, preprocess
    from reference_monodepth import onnxruntime_session
    profile = bench_profile(size)
    network_input = preprocess(test_frame(), 'rgb8', profile)[0]
    start = time.perf_counter()
    tiny = DepthEstimator(path, profile)
    tiny.warm_up()
    warm_up = time.perf_counter() - start
    expected = onnxruntime_session(path).run(None, {'input': network_input})[0]
    error = float(np.abs(tiny.run_network(network_input) - expected).max())
    print(json.dumps({'warm_up': warm_up, 'error': error}), flush=True)
    for line in sys.stdin:
        tiny.run_network(network_input)  # untimed, as in blocked_times
        times = []
        for _ in range(int(line)):
            start = time.perf_counter()
            tiny.run_network(network_input)
            times.append(time.perf_counter() - start)
        print(json.dumps(times), flush=True)


class TinygradContender:
    """A :func:`tinygrad_child` process: started, warmed up, then timed block by block."""

    def __init__(self, path, size, overrides, cache, timeout):
        env = dict(os.environ, CACHEDB=str(cache), **overrides)
        env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(REPO), env.get('PYTHONPATH')]))
        self.process = subprocess.Popen(
            [sys.executable, __file__, '--tinygrad-child', str(path), '--size',
             f'{size[0]}x{size[1]}'], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        self.times = []
        self.ready = self._read(timeout)

    def _read(self, timeout):
        import selectors
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            if not selector.select(timeout):
                self.stop()
                return {'failed': f'over {timeout:.0f} s'}
        line = self.process.stdout.readline()
        if not line.startswith(('{', '[')):
            self.stop()
            last = (self.process.stderr.read().strip().splitlines() or ['?'])[-1]
            return {'failed': last[:90]}
        return json.loads(line)

    def run_block(self):
        self.process.stdin.write(f'{BLOCK}\n')
        self.process.stdin.flush()
        self.times += self._read(600)

    def stop(self):
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def cache_file(folder, setting):
    """The kernel cache file of ``setting`` in ``folder``."""
    return Path(folder) / (re.sub(r'[^A-Za-z0-9]+', '_', setting).strip('_') + '.db')


def tinygrad_settings(names, key, size, repeat, timeout, cache_dir=None):
    """One row per setting. Each setting runs in a child process of its own, started twice on
    the same kernel cache (a new one, so that the 1st start compiles everything, or the
    setting's :func:`cache_file` in ``cache_dir``, kept: e.g. a BEAM search prepared beforehand
    outside the bench lock); the second stays and is timed in blocks interleaved with the other
    settings' and onnxruntime alone's."""
    from pointcloud_pipeline.monodepth import preprocess
    from reference_monodepth import onnxruntime_session
    rows, contenders = [], []
    with tempfile.TemporaryDirectory(prefix='bench_tinygrad_') as folder:
        path, gflop = model_path(folder, key, size)
        try:
            for name in names:
                cache = cache_file(cache_dir or folder, name)
                first = TinygradContender(path, size, TINYGRAD_SETTINGS[name], cache, timeout)
                first.stop()
                if 'failed' in first.ready:
                    rows.append([name, 'failed: ' + first.ready['failed'], '', '', '', ''])
                    continue
                contender = TinygradContender(path, size, TINYGRAD_SETTINGS[name], cache,
                                              timeout)
                contenders.append((name, first.ready, contender))
            alone = onnxruntime_session(path)
            feed = {'input': preprocess(test_frame(), 'rgb8', bench_profile(size))[0]}
            alone_times = []
            for _ in range(max(1, -(-repeat // BLOCK))):
                time.sleep(PAUSE_S)
                alone.run(None, feed)
                for _ in range(BLOCK):
                    start = time.perf_counter()
                    alone.run(None, feed)
                    alone_times.append(time.perf_counter() - start)
                for _, _, contender in contenders:
                    time.sleep(PAUSE_S)
                    contender.run_block()
        finally:
            for _, _, contender in contenders:
                contender.stop()
    ort_s = float(np.median(alone_times))
    for name, first, contender in contenders:
        tiny_s = float(np.median(contender.times))
        rows.append([name, f"{first['warm_up']:.1f}", f"{contender.ready['warm_up']:.1f}",
                     ms(tiny_s), f'{tiny_s / ort_s:.2f}', f"{contender.ready['error']:.1e}"])
    print_table(f'tinygrad CPU settings, {MODEL_LABELS[key]} {size[0]}x{size[1]} '
                f'({gflop:.2f} GFLOP), network alone, median of {repeat} runs in blocks '
                f'interleaved across settings; onnxruntime alone (default session) '
                f'{ms(ort_s).strip()} ms',
                ['setting', 'warm-up s (1st start)', 'warm-up s (cache kept)', 'tinygrad ms',
                 'tinygrad/ort alone', 'max |diff|'], rows)


def parse_size(text):
    height, width = (int(v) for v in text.lower().split('x'))
    return height, width


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true')
    parser.add_argument('--ort-settings', action='store_true',
                        help='compare onnxruntime session options (quiet and 1 busy process)')
    parser.add_argument('--tinygrad-settings', nargs='*', metavar='NAME', default=None,
                        choices=list(TINYGRAD_SETTINGS),
                        help='compare tinygrad settings (default: all), each in a child process')
    parser.add_argument('--model', choices=list(MODELS), default='fastdepth')
    parser.add_argument('--size', type=parse_size, default=(256, 256), help='H x W')
    parser.add_argument('--repeat', type=int, default=30)
    parser.add_argument('--timeout', type=float, default=170.0,
                        help='seconds for a tinygrad child process to warm up (a BEAM search is '
                             'long: prepare it with --cachedb)')
    parser.add_argument('--cache-dir', type=Path, default=None,
                        help='folder of the tinygrad kernel caches to use and keep, one file per '
                             'setting (default: new ones, so that the 1st start compiles all)')
    parser.add_argument('--tables', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--node-child', metavar='MODEL', help=argparse.SUPPRESS)
    parser.add_argument('--tinygrad-child', metavar='MODEL', help=argparse.SUPPRESS)
    parser.add_argument('--frames', type=int, default=40, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.tables:
        tables(arguments.quick)
    elif arguments.node_child:
        node_child(arguments.node_child, arguments.size, arguments.frames)
    elif arguments.tinygrad_child:
        tinygrad_child(arguments.tinygrad_child, arguments.size)
    elif arguments.ort_settings:
        ort_settings(arguments.model, arguments.size, arguments.repeat)
    elif arguments.tinygrad_settings is not None:
        tinygrad_settings(arguments.tinygrad_settings or list(TINYGRAD_SETTINGS),
                          arguments.model, arguments.size, arguments.repeat, arguments.timeout,
                          arguments.cache_dir)
    else:
        main(quick=arguments.quick)
