"""Build every Cython kernel with AddressSanitizer + UBSan and run the kernel tests under them.

Usage (from the repository root; ``make sanitize`` runs exactly this)::

    .venv/bin/python test/sanitize/run_sanitized.py [pytest options] [test paths]

    With no test path it runs :data:`KERNEL_TESTS` (pytest options such as ``-x`` are added).

What it does
    1. Mirrors the package (``pointcloud_pipeline/``, ``setup.py``, ``package.xml``; ``config/``
       as a symlink) into ``build/sanitize/tree`` (``--tree``), never touching the in-place
       ``.so`` files of the checkout that other processes use. Files are copied only when they
       differ, so a rerun rebuilds only the kernels whose sources changed.
    2. Builds there with ``setup.py build_ext --inplace`` and
       ``CFLAGS = -fsanitize=address,undefined,float-cast-overflow -fno-omit-frame-pointer
       -fno-sanitize-recover=all -g`` (distutils adds CFLAGS to the compile and the link line;
       the build's own ``-O3 -fopenmp`` stay: the optimised code is what is checked).
    3. Checks that the interpreter imports the instrumented ``_depth`` from the tree with the
       ASan runtime mapped, then runs pytest on the kernel tests (:data:`KERNEL_TESTS`) with that
       tree first on ``sys.path`` (pytest is started with the tree as working directory; the
       test files are the checkout's) and the sanitiser runtimes preloaded.
    4. Prints the number of sanitiser reports (ASan: files ``build/sanitize/reports/asan.<pid>``;
       UBSan: ``runtime error:`` lines of pytest's stderr, kept in
       ``build/sanitize/reports/pytest-stderr.log``) and exits 1 if there is any report or any
       test failed.

    Before the tests, two positive controls call the private depth kernel directly (past the
    public checks) with a misaligned and with a too-small buffer: exactly one UBSan and one ASan
    report must come back, else the run stops (the sanitisers would not be active).

Sanitiser options (environment; set here, override by exporting them first)
    LD_PRELOAD: ``gcc -print-file-name=libasan.so`` then ``libubsan.so``: the interpreter is not
        instrumented, so the ASan runtime must be loaded before anything else.
    ASAN_OPTIONS: ``detect_leaks=0`` (CPython does not free everything at exit: LeakSanitizer
        would report the interpreter, not the kernels), ``halt_on_error=1``,
        ``abort_on_error=0``, ``log_path=<reports>/asan`` (one file per reporting process: the
        count below), ``strict_string_checks=1``, ``detect_stack_use_after_return=1``,
        ``check_initialization_order=1``.
    UBSAN_OPTIONS: ``halt_on_error=1``, ``print_stacktrace=1`` (with
        ``-fno-sanitize-recover=all`` a UBSan report also stops the process). GCC's UBSan
        writes to stderr whatever its log_path: pytest runs with ``--capture=sys`` so that
        file descriptor 2 stays the pipe this script reads.
    PYTHONMALLOC=malloc: every Python object (small ``bytes`` images too) comes from malloc,
        so ASan's redzones surround them as well, not only numpy's buffers.
    KERNEL_FUZZ_PROFILE=sanitize: test/test_kernel_fuzz.py runs its larger example counts.
"""
import argparse
import filecmp
import os
from pathlib import Path
import shutil
import subprocess
import sys
import time

REPO = Path(__file__).resolve().parents[2]
KERNEL_TESTS = ('test/test_depth.py', 'test/test_depth_intensity.py', 'test/test_rays.py',
                'test/test_depth_images.py', 'test/test_register.py',
                'test/test_compressed_images.py', 'test/test_occupancy.py',
                'test/test_bev.py', 'test/test_normals.py',
                'test/test_raster.py', 'test/test_terrain.py', 'test/test_tiling.py',
                'test/test_layouts.py', 'test/demo/test_synthetic.py',
                'test/test_kernel_fuzz.py', 'test/test_workers.py')
SANITIZE_FLAGS = ('-fsanitize=address,undefined,float-cast-overflow', '-fno-omit-frame-pointer',
                  '-fno-sanitize-recover=all', '-g')
SKIPPED_SUFFIXES = ('.so', '.pyc', '.html')


def mirror(source, target):
    """Copy the files of ``source`` into ``target`` where they differ (mtimes kept, so Cython
    and distutils only rebuild what changed); delete target files that source no longer has,
    except build outputs (``.so``). Returns the number of files copied."""
    copied = 0
    wanted = set()
    for path in source.rglob('*'):
        if '__pycache__' in path.parts or not path.is_file() or path.suffix in SKIPPED_SUFFIXES:
            continue
        relative = path.relative_to(source)
        wanted.add(relative)
        destination = target / relative
        if destination.is_file() and filecmp.cmp(path, destination, shallow=False):
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, destination)
        copied += 1
    for path in target.rglob('*'):
        if (path.is_file() and '__pycache__' not in path.parts
                and path.suffix not in SKIPPED_SUFFIXES
                and path.relative_to(target) not in wanted):
            path.unlink()
    return copied


def prepare_tree(tree):
    """The package, setup.py and package.xml mirrored into ``tree``; config/ linked."""
    tree.mkdir(parents=True, exist_ok=True)
    copied = mirror(REPO / 'pointcloud_pipeline', tree / 'pointcloud_pipeline')
    for name in ('setup.py', 'package.xml'):
        if not (tree / name).is_file() or not filecmp.cmp(REPO / name, tree / name, False):
            shutil.copy2(REPO / name, tree / name)
            copied += 1
    config = tree / 'config'
    if not config.is_symlink():
        if config.exists():
            shutil.rmtree(config)
        config.symlink_to(REPO / 'config', target_is_directory=True)
    return copied


def build(tree, python):
    env = dict(os.environ, CFLAGS=' '.join(SANITIZE_FLAGS))
    env.pop('LD_PRELOAD', None)
    started = time.monotonic()
    subprocess.run([python, 'setup.py', '--quiet', 'build_ext', '--inplace', '--parallel',
                    str(os.cpu_count() or 1)], cwd=tree, env=env, check=True)
    built = sorted(tree.glob('pointcloud_pipeline/**/_*.so'))
    sources = sorted(tree.glob('pointcloud_pipeline/**/_*.pyx'))
    if len(built) != len(sources):
        sys.exit(f'sanitize: {len(sources)} kernels but {len(built)} extension modules built')
    for so in built:
        linked = subprocess.run(['ldd', str(so)], capture_output=True, text=True).stdout
        if 'libasan' not in linked or 'libubsan' not in linked:
            sys.exit(f'sanitize: {so} is not linked with libasan and libubsan')
    print(f'sanitize: {len(built)} kernels built with {" ".join(SANITIZE_FLAGS)} in '
          f'{time.monotonic() - started:.0f} s: '
          + ', '.join(str(so.relative_to(tree)).split('.')[0] for so in built), flush=True)
    return built


def runtime(name):
    path = subprocess.run(['gcc', f'-print-file-name={name}'], capture_output=True, text=True,
                          check=True).stdout.strip()
    if not os.path.isabs(path) or not os.path.exists(path):
        sys.exit(f'sanitize: gcc does not know {name} (apt-get install gcc: it ships libasan '
                 f'and libubsan)')
    return os.path.realpath(path)


def sanitizer_env(reports):
    env = dict(os.environ)
    env['LD_PRELOAD'] = f'{runtime("libasan.so")}:{runtime("libubsan.so")}'
    env.setdefault('ASAN_OPTIONS', ':'.join([
        'detect_leaks=0', 'halt_on_error=1', 'abort_on_error=0', 'strict_string_checks=1',
        'detect_stack_use_after_return=1', 'check_initialization_order=1',
        f'log_path={reports / "asan"}']))
    env.setdefault('UBSAN_OPTIONS', 'halt_on_error=1:print_stacktrace=1')
    env['PYTHONMALLOC'] = 'malloc'
    env.setdefault('KERNEL_FUZZ_PROFILE', 'sanitize')
    return env


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--tree', type=Path, default=REPO / 'build' / 'sanitize' / 'tree',
                        help='where the instrumented copy of the package is built')
    parser.add_argument('--build-only', action='store_true', help='build, run no test')
    parser.add_argument('--no-control', action='store_true',
                        help='skip the positive controls (one UBSan and one ASan report)')
    args, pytest_args = parser.parse_known_args(argv)
    python = sys.executable
    tree = args.tree.resolve()
    copied = prepare_tree(tree)
    print(f'sanitize: {copied} files updated in {tree}', flush=True)
    build(tree, python)
    if args.build_only:
        return 0
    reports = tree.parent / 'reports'
    shutil.rmtree(reports, ignore_errors=True)
    reports.mkdir(parents=True)
    env = sanitizer_env(reports)
    probe = subprocess.run(
        [python, '-c', 'import pointcloud_pipeline._depth as k, pathlib; print(k.__file__); '
                       "print(any('libasan' in l for l in open('/proc/self/maps')))"],
        cwd=tree, env=env, capture_output=True, text=True)
    lines = probe.stdout.split()
    if probe.returncode or len(lines) != 2 or not lines[0].startswith(str(tree)) \
            or lines[1] != 'True':
        sys.exit(f'sanitize: the instrumented kernels are not the ones imported: '
                 f'{probe.stdout}{probe.stderr}')
    print(f'sanitize: tests import {lines[0]} with the ASan runtime loaded', flush=True)
    if all(arg.startswith('-') for arg in pytest_args):  # options only: the kernel tests
        pytest_args = [str(REPO / test) for test in KERNEL_TESTS] + pytest_args
    tests = pytest_args
    tests = [str((REPO / t).resolve()) if (REPO / t).exists() else t for t in tests]
    if not args.no_control:
        control(tree, env, reports)
    command = [python, '-m', 'pytest', '-p', 'no:cacheprovider', '-q', '--capture=sys',
               '--rootdir', str(REPO), '-c', str(REPO / 'setup.cfg'), *tests]
    print(f'sanitize: running {" ".join(command[1:])}', flush=True)
    started = time.monotonic()
    returncode, ubsan = run_logged(command, tree, env, reports / 'pytest-stderr.log')
    asan = asan_reports(reports)
    count = len(asan) + len(ubsan)
    print(f'sanitize: pytest exit code {returncode} in {time.monotonic() - started:.0f} s; '
          f'{count} sanitiser report(s) ({len(asan)} ASan, {len(ubsan)} UBSan)')
    for path in asan:
        print(f'--- {path.name}\n{path.read_text(errors="replace")}')
    for line in ubsan:
        print(f'--- UBSan: {line}')
    return 1 if count or returncode else 0


def asan_reports(reports):
    return sorted(path for path in reports.iterdir() if path.name.startswith('asan.'))


def run_logged(command, cwd, env, log_path):
    """Run ``command`` with its stderr copied to ``log_path`` and to ours; returns the exit
    code and the UBSan report lines. UBSan (served by GCC's libasan) writes to file descriptor
    2 whatever its log_path, so pytest runs with ``--capture=sys``: fd 2 stays the pipe and a
    report is kept even when it ends the process."""
    ubsan = []
    with open(log_path, 'w') as log, subprocess.Popen(command, cwd=cwd, env=env,
                                                      stderr=subprocess.PIPE, text=True,
                                                      errors='replace') as process:
        for line in process.stderr:
            sys.stderr.write(line)
            log.write(line)
            if 'runtime error:' in line:
                ubsan.append(line.rstrip())
    return process.returncode, ubsan


CONTROL = """
import sys
import numpy as np
from pointcloud_pipeline import _depth
depth, x, y = np.full((2, 3), 1000, np.uint16), np.zeros(3, np.float32), np.zeros(2, np.float32)
if sys.argv[1] == 'ubsan':  # a float32 store 1 byte past an aligned address
    points = np.zeros(6 * 16 + 1, np.uint8)[1:].view(np.float32).reshape(6, 4)
else:  # one point short: a heap-buffer-overflow
    points = np.zeros((5, 4), np.float32)
_depth.organized_u16(depth, 1, 1, x, y, 0.001, 0.0, np.inf, 0.0, None, 0, 0, 0, points, 1)
"""


def control(tree, env, reports):
    """Positive controls: the private depth kernel called (bypassing the public checks) with a
    misaligned and with a too-small buffer must give one UBSan and one ASan report."""
    directory = reports.parent / 'control'
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    control_env = dict(env, ASAN_OPTIONS=env['ASAN_OPTIONS'].replace(
        f'log_path={reports / "asan"}', f'log_path={directory / "asan"}'))
    command = [sys.executable, '-c', CONTROL]
    ubsan = subprocess.run(command + ['ubsan'], cwd=tree, env=control_env,
                           capture_output=True, text=True).stderr.count('runtime error:')
    subprocess.run(command + ['asan'], cwd=tree, env=control_env, capture_output=True)
    asan = len(asan_reports(directory))
    if ubsan != 1 or asan != 1:
        sys.exit(f'sanitize: the controls gave {ubsan} UBSan and {asan} ASan reports, '
                 f'expected 1 each: the sanitisers are not active')
    print('sanitize: controls detected (a misaligned store: UBSan; a heap-buffer-overflow: '
          'ASan)', flush=True)


if __name__ == '__main__':
    sys.exit(main())
