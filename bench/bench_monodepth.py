"""Monocular depth: tinygrad (OnnxRunner + TinyJit) against onnxruntime (CPU), same ONNX model.

Encoder-decoder networks built with the onnx package (test/reference_monodepth.py; no real
monocular weights are obtainable here): a small one (~0.1 GFLOP) and a FastDepth-sized one
(~1 GFLOP), at 256x256 and 240x320 (H x W). Per-frame latency of the network alone, measured
interleaved (one onnxruntime run, one tinygrad run, repeated) so that both see the same machine
load; tinygrad's warm-up (kernel compile with the disk cache off + JIT capture); and the whole
DepthEstimator.predict on a VGA frame (pre-processing, network, post-processing to metres).
Target: tinygrad per frame <= 2x onnxruntime.

Environment knobs that tinygrad reads at import (set them before running): BEAM=<n> (kernel search
at compile time; minutes), NUM_CPU_THREADS=<n>, DEV=<device>.
"""
import os
from pathlib import Path
import tempfile
import time

import numpy as np

from pointcloud_pipeline.monodepth import DepthEstimator, ModelProfile
from reference_monodepth import build_encoder_decoder, onnxruntime_session
from timing import ms, print_table

MODELS = {'small (8,16)': (8, 16), 'fastdepth-size (16,32,64,128)': (16, 32, 64, 128)}
SIZES = [(256, 256), (240, 320)]
TARGET_RATIO = 2.0


def interleaved_medians(functions, repeat, warmup=3):
    """Median seconds of each function, timed in turn, round after round (same load for all)."""
    for _ in range(warmup):
        for fn in functions:
            fn()
    times = [[] for _ in functions]
    for _ in range(repeat):
        for fn, bucket in zip(functions, times):
            start = time.perf_counter()
            fn()
            bucket.append(time.perf_counter() - start)
    return [float(np.median(bucket)) for bucket in times]


def measure(folder, label, channels, size, repeat):
    from tinygrad.helpers import Context
    height, width = size
    path = Path(folder) / f'{label.split()[0]}_{height}x{width}.onnx'
    flops = build_encoder_decoder(path, height, width, channels=channels, output_gain=10.0)
    profile = ModelProfile(name='bench', input_size=size, mean=(0.485, 0.456, 0.406),
                           std=(0.229, 0.224, 0.225), output_kind='metric')
    session = onnxruntime_session(path)
    single_thread = onnxruntime_session(path, threads=1)
    start = time.perf_counter()
    with Context(CACHELEVEL=0):  # compile every kernel: the cost on a fresh machine
        estimator = DepthEstimator(path, profile)
        estimator.warm_up()
    warm_up = time.perf_counter() - start
    network_input = np.random.default_rng(0).random((1, 3, height, width), dtype=np.float32)
    expected = session.run(None, {'input': network_input})[0]
    error = float(np.abs(estimator.run_network(network_input) - expected).max())
    feed = {'input': network_input}
    ort, ort_single, tiny = interleaved_medians(
        [lambda: session.run(None, feed), lambda: single_thread.run(None, feed),
         lambda: estimator.run_network(network_input)], repeat)
    frame = np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    predict = float(np.median([_timed(lambda: estimator.predict(frame, 'rgb8'))
                               for _ in range(max(5, repeat // 3))]))
    return [label, f'{flops / 1e9:.2f}', f'{height}x{width}', ms(ort), ms(ort_single), ms(tiny),
            f'{tiny / ort:.2f}', f'{tiny / ort_single:.2f}', f'{warm_up:.1f}', ms(predict),
            f'{error:.1e}'], tiny / ort


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(quick=False):
    from tinygrad import Device
    from tinygrad.helpers import BEAM, NUM_CPU_THREADS
    repeat = 10 if quick else 30
    models = dict(list(MODELS.items())[-1:]) if quick else MODELS
    rows, ratios = [], []
    with tempfile.TemporaryDirectory(prefix='bench_monodepth_') as folder:
        for label, channels in models.items():
            for size in SIZES:
                row, ratio = measure(folder, label, channels, size, repeat)
                rows.append(row)
                ratios.append(ratio)
    print_table(
        f'monocular depth network: tinygrad {Device.DEFAULT} (TinyJit, BEAM={BEAM.value}, '
        f'NUM_CPU_THREADS={NUM_CPU_THREADS.value}) vs onnxruntime CPU, median of {repeat} '
        f'interleaved runs',
        ['model', 'GFLOP', 'input', 'ort ms', 'ort 1-thread ms', 'tinygrad ms', 'tinygrad/ort',
         'tinygrad/ort 1-thread', 'warm-up s', 'predict VGA ms', 'max |diff|'], rows)
    worst = max(ratios)
    verdict = 'met' if worst <= TARGET_RATIO else f'MISSED by {worst / TARGET_RATIO:.1f}x'
    print(f'target tinygrad <= {TARGET_RATIO:.0f}x onnxruntime per frame: {verdict} '
          f'(worst ratio {worst:.2f}). ort = onnxruntime default threads '
          f'(OMP_NUM_THREADS={os.environ.get("OMP_NUM_THREADS", "unset")}); warm-up = compile '
          f'with the disk cache off + JIT capture; predict VGA = 640x480 rgb8 -> depth metres, '
          f'incl. resize, normalisation and conversion')
