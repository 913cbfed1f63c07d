"""Run the benchmarks: every bench/bench_*.py module's ``main(quick)``, in name order.

Usage: python bench/run.py [--only NAME ...] [--quick]
Numbers are medians of repeated runs on this machine; each benchmark prints ratios against the
references it measures in the same run (numpy reference, memcpy floor, naive node).
"""
import argparse
import importlib
import os
from pathlib import Path
import platform
import sys

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(1, str(BENCH_DIR.parent))
sys.path.insert(2, str(BENCH_DIR.parent / 'test'))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--only', nargs='*', default=[],
                        help='benchmark names to run (e.g. depth bev normals); default all')
    parser.add_argument('--quick', action='store_true', help='fewer repetitions, smaller sizes')
    args = parser.parse_args()
    names = sorted(p.stem[len('bench_'):] for p in BENCH_DIR.glob('bench_*.py'))
    selected = [n for n in names if not args.only or n in args.only]
    print(f'# pointcloud_pipeline benchmarks: {platform.processor() or platform.machine()}, '
          f'{os.cpu_count()} cores, OMP_NUM_THREADS={os.environ.get("OMP_NUM_THREADS", "unset")}')
    for name in selected:
        importlib.import_module(f'bench_{name}').main(quick=args.quick)


if __name__ == '__main__':
    main()
