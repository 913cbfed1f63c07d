"""A/B of the BEV batch tool between two checkouts: same 100 KITTI scans, runs alternating.

    python bench/bev_batch_ab.py --before ../old-checkout [--after .] [--runs 5]
                                 [--executor threads|processes] [--after-options '...']

Each checkout needs its kernels built in place (``python setup.py build_ext --inplace`` there).
Prints the median wall time of each (interpreter start included), their ratio, and whether the
PNGs of the last runs are byte-identical and pixel-identical (decoded by OpenCV); exit status 1
when the pixels differ. Used to check that a change of the batch machinery keeps bev's images and
speed; a change of PNG encoder (fpng against cv2) keeps the pixels, not the bytes.
``--after-options`` (e.g. ``'--png-encoder cv2'``) are passed to the after checkout only.
"""
import argparse
import os
from pathlib import Path
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
KITTI = Path(os.environ.get('POINTCLOUD_PIPELINE_DATA', REPO_ROOT.parent / 'shared' / 'data'),
             'kitti', 'velodyne')
VARIANTS = {}
SUMMARY = re.compile(r' in ([\d.]+) s \(')


def run_once(name, scan_dir, out_dir, executor, options=()):
    root = VARIANTS[name]
    env = dict(os.environ, PYTHONPATH=str(root))
    argv = [sys.executable, '-m', 'pointcloud_pipeline', 'bev', str(scan_dir), '-o', str(out_dir),
            '--workers', '2', '--executor', executor, '--no-progress', *options]
    start = time.perf_counter()
    result = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    inner = float(SUMMARY.search(result.stdout).group(1))
    assert ' 100 written' in result.stdout, result.stdout
    return wall, inner, result.stdout.strip()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--before', type=Path, required=True, help='the other checkout')
    parser.add_argument('--after', type=Path, default=REPO_ROOT, help='default: this checkout')
    parser.add_argument('--runs', type=int, default=5)
    parser.add_argument('--executor', default='threads', choices=('threads', 'processes'))
    parser.add_argument('--after-options', default='', help='bev options for the after run')
    args = parser.parse_args()
    options = {'before': (), 'after': tuple(shlex.split(args.after_options))}
    VARIANTS.update(before=args.before.resolve(), after=args.after.resolve())
    sources = sorted(KITTI.glob('*.bin'))
    with tempfile.TemporaryDirectory(prefix='bev_before_after_') as temp:
        scan_dir = Path(temp) / 'velodyne'
        scan_dir.mkdir()
        for i in range(100):  # as bench/bench_bev.py builds its scan set
            shutil.copy(sources[i % len(sources)], scan_dir / f'{i:06d}.bin')
        times = {name: [] for name in VARIANTS}
        for name in VARIANTS:  # warm-up: page cache, .pyc files
            run_once(name, scan_dir, Path(temp) / f'warm_{name}', args.executor, options[name])
        last = {}
        for i in range(args.runs):
            for name in (VARIANTS if i % 2 == 0 else reversed(list(VARIANTS))):
                out_dir = Path(temp) / f'{name}_{i}'
                wall, inner, line = run_once(name, scan_dir, out_dir, args.executor,
                                             options[name])
                times[name].append((wall, inner))
                last[name] = out_dir
                print(f'run {i} {name:6s} wall {wall:.3f} s, runner {inner:.2f} s: {line}',
                      flush=True)
        pngs = {name: {p.name: p.read_bytes() for p in d.glob('*.png')}
                for name, d in last.items()}
        identical = pngs['before'] == pngs['after'] and len(pngs['after']) == 100
        same_pixels = pngs['before'].keys() == pngs['after'].keys() and len(pngs['after']) == 100
        same_pixels = same_pixels and all(
            np.array_equal(decoded(pngs['before'][name]), decoded(pngs['after'][name]))
            for name in pngs['after'])
        print(f'\nexecutor {args.executor}, 2 workers, 100 scans, {args.runs} runs each, '
              'alternating:')
        for name, values in times.items():
            walls, inners = zip(*values)
            print(f'  {name:6s}: median wall {statistics.median(walls):.3f} s '
                  f'(min {min(walls):.3f}, max {max(walls):.3f}); median runner time '
                  f'{statistics.median(inners):.2f} s; '
                  f'{100 / statistics.median(walls):.1f} scans/s wall')
        ratio = (statistics.median(w for w, _ in times['after'])
                 / statistics.median(w for w, _ in times['before']))
        print(f'  after / before (median wall): {ratio:.3f}')
        print(f'  PNGs byte-identical (100 files): {identical}')
        print(f'  PNGs pixel-identical (100 files, decoded by OpenCV): {same_pixels}')
        return 0 if same_pixels else 1


def decoded(png):
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)


if __name__ == '__main__':
    sys.exit(main())
