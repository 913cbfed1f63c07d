"""The bev batch command end to end: real KITTI scans and corrupted files in a temp dir, the real
CLI in a subprocess, atomic outputs, settings-aware resume, --overwrite, exit codes, processes,
Dask; --format png|npy|npz and the PNG encoders (the cv2 fallback with fpng made unimportable)."""
from concurrent.futures import ThreadPoolExecutor
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from conftest import REPO_ROOT
from optional import missing
from pointcloud_pipeline import bev_files
from pointcloud_pipeline.batch import bev as batch_bev, cli, runner
from pointcloud_pipeline.batch.bev import ScanError, read_kitti_scan
from pointcloud_pipeline.bev import BevGrid, bev_image
from pointcloud_pipeline.files import PARTIAL_SUFFIX

GOOD = ('000000', '000001', 'copy_of_000000')
BAD = {
    'truncated': 'not a multiple of 16',
    'empty': 'empty file',
    'has_nan': 'non-finite',
    'has_inf': 'non-finite',
}
SUMMARY = re.compile(r'^bev: (\d+) files: (\d+) written, (\d+) skipped \(up to date\), '
                     r'(\d+) failed.* in [\d.]+ s', re.MULTILINE)
MANIFEST = '.bev.manifest.json'


@pytest.fixture
def scans_dir(shared_data, tmp_path):
    """A directory of real scans and corrupted ones."""
    source = shared_data / 'kitti' / 'velodyne'
    directory = tmp_path / 'velodyne'
    directory.mkdir()
    for name in ('000000', '000001'):
        shutil.copy(source / f'{name}.bin', directory / f'{name}.bin')
    shutil.copy(source / '000000.bin', directory / 'copy_of_000000.bin')
    raw = (source / '000000.bin').read_bytes()
    (directory / 'truncated.bin').write_bytes(raw[:-5])
    (directory / 'empty.bin').write_bytes(b'')
    points = np.frombuffer(raw, np.float32).copy()
    points[4 * 1000 + 2] = np.nan
    (directory / 'has_nan.bin').write_bytes(points.tobytes())
    points[4 * 1000 + 2] = np.inf
    (directory / 'has_inf.bin').write_bytes(points.tobytes())
    (directory / 'notes.txt').write_text('not a scan: ignored by the directory expansion')
    return directory


def run_cli(*args, timeout=120):
    """``python -m pointcloud_pipeline bev ...`` in a subprocess (the package of this checkout)."""
    return subprocess.run([sys.executable, '-m', 'pointcloud_pipeline', 'bev', *map(str, args)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)


def summary(result):
    return summary_of(result.stdout, result.stderr)


def summary_of(stdout, stderr=''):
    match = SUMMARY.search(stdout)
    assert match, stdout + stderr
    total, written, skipped, failed = map(int, match.groups())
    return dict(total=total, written=written, skipped=skipped, failed=failed)


def expected_image(scan_path, grid=BevGrid(), dtype=np.uint8):
    return bev_image(np.fromfile(scan_path, np.float32).reshape(-1, 4), grid, dtype=dtype)


def read_output(path):
    """The image in an output file of any format: bgr8 uint8 (png) or float32 (npy, npz)."""
    if path.suffix == '.npy':
        return np.load(path)
    if path.suffix == '.npz':
        with np.load(path) as arrays:
            return arrays['bev']
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def visible_names(out_dir):
    """Names of the outputs in ``out_dir``; asserts that the only hidden file is the resume
    manifest (no temporary file is left)."""
    names = sorted(p.name for p in out_dir.iterdir())
    assert not [n for n in names if n.endswith(PARTIAL_SUFFIX)], names
    assert [n for n in names if n.startswith('.')] in ([], [MANIFEST]), names
    return [n for n in names if not n.startswith('.')]


def assert_outputs(out_dir, scans_dir, names=GOOD, grid=BevGrid(), file_format='png',
                   others=()):
    """Exactly one complete file of ``file_format`` per good scan, equal to the kernel's image
    (uint8 for png, float32 for npy and npz); nothing else but the names in ``others``."""
    expected_names = sorted(f'{n}.{file_format}' for n in names)
    assert [n for n in visible_names(out_dir) if n not in others] == expected_names
    for name in names:
        decoded = read_output(out_dir / f'{name}.{file_format}')
        assert decoded is not None, name
        np.testing.assert_array_equal(decoded, expected_image(
            scans_dir / f'{name}.bin', grid, bev_files.FORMAT_DTYPES[file_format]))


def test_directory_with_real_and_corrupted_scans(scans_dir, tmp_path):
    out_dir = tmp_path / 'bev'
    result = run_cli(scans_dir, '-o', out_dir, '--workers', '2')
    assert result.returncode == 1, result.stderr
    assert summary(result) == dict(total=7, written=3, skipped=0, failed=4)
    for name, reason in BAD.items():
        line = next(l for l in result.stderr.splitlines() if f'{name}.bin' in l)
        assert line.startswith('error: ') and reason in line, line
    assert_outputs(out_dir, scans_dir)

    # a rerun resumes: done scans are skipped (not rewritten), bad ones fail again
    stamps = {p.name: p.stat().st_mtime_ns for p in out_dir.iterdir()}
    time.sleep(0.01)
    again = run_cli(scans_dir, '-o', out_dir)
    assert again.returncode == 1
    assert summary(again) == dict(total=7, written=0, skipped=3, failed=4)
    assert {p.name: p.stat().st_mtime_ns for p in out_dir.iterdir()} == stamps

    # only good inputs (files and a glob, overlapping): success, all skipped
    good = run_cli(scans_dir / '000000.bin', scans_dir / '0*.bin', '-o', out_dir)
    assert good.returncode == 0, good.stderr
    assert summary(good) == dict(total=2, written=0, skipped=2, failed=0)

    # --overwrite renders again
    rewritten = run_cli(scans_dir / '000001.bin', '-o', out_dir, '--overwrite')
    assert rewritten.returncode == 0
    assert summary(rewritten)['written'] == 1
    assert (out_dir / '000001.png').stat().st_mtime_ns != stamps['000001.png']
    assert_outputs(out_dir, scans_dir)


@pytest.mark.parametrize('file_format', ['npy', 'npz'])
def test_npy_and_npz_of_real_and_corrupted_scans(scans_dir, tmp_path, file_format):
    out_dir = tmp_path / 'bev'
    result = run_cli(scans_dir, '-o', out_dir, '--workers', '2', '--format', file_format)
    assert result.returncode == 1, result.stderr
    assert summary(result) == dict(total=7, written=3, skipped=0, failed=4)
    for name, reason in BAD.items():
        line = next(l for l in result.stderr.splitlines() if f'{name}.bin' in l)
        assert line.startswith('error: ') and reason in line, line
    assert_outputs(out_dir, scans_dir, file_format=file_format)  # no temporary file left
    again = run_cli(scans_dir, '-o', out_dir, '--format', file_format)
    assert summary(again) == dict(total=7, written=0, skipped=3, failed=4)


def test_resume_redoes_outputs_when_the_format_or_png_encoder_changes(scans_dir, tmp_path,
                                                                     capsys):
    out_dir = tmp_path / 'bev'
    scans = [str(scans_dir / f'{name}.bin') for name in GOOD]
    pngs = [f'{name}.png' for name in GOOD]

    def run(*args):
        code = batch_bev.main([*scans, '-o', str(out_dir), '--no-progress', *args])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        result = summary_of(captured.out, captured.err)
        return result['written'], result['skipped']

    assert run() == (3, 0)
    assert run('--format', 'npy') == (3, 0)
    assert_outputs(out_dir, scans_dir, file_format='npy', others=pngs)
    assert run('--format', 'npy') == (0, 3)
    assert run() == (0, 3)  # the PNGs are still those of these settings
    assert run('--format', 'npz') == (3, 0)
    assert run('--format', 'npz', '--preset', 'complex-yolo') == (3, 0)
    assert run('--png-encoder', 'cv2') == (3, 0)  # other bytes, the same picture
    assert_outputs(out_dir, scans_dir, others=[f'{name}.{suffix}' for name in GOOD
                                               for suffix in ('npy', 'npz')])
    cv2_pngs = {name: (out_dir / name).read_bytes() for name in pngs}
    assert cv2_pngs['000000.png'] == bytes(bev_files.encode_png(
        expected_image(scans_dir / '000000.bin'), 'cv2'))
    assert run('--png-encoder', 'cv2') == (0, 3)
    if bev_files.fpng_installed():
        assert run() == (3, 0)
        assert run('--png-encoder', 'fpng') == (0, 3)  # the default spelled out
        assert all((out_dir / name).read_bytes() != cv2_pngs[name] for name in pngs)
    assert_outputs(out_dir, scans_dir, others=[f'{name}.{suffix}' for name in GOOD
                                               for suffix in ('npy', 'npz')])


def test_without_fpng_pngs_are_written_by_cv2(scans_dir, tmp_path):
    out_dir = tmp_path / 'bev'
    without_fpng = (
        'import sys\n'
        'class Blocker:\n'
        '    def find_spec(self, name, path=None, target=None):\n'
        '        if name.split(".")[0] == "fpng":\n'
        '            raise ImportError("fpng is blocked: as if it were not installed")\n'
        'sys.meta_path.insert(0, Blocker())\n'
        'from pointcloud_pipeline.batch.cli import main\n'
        'sys.exit(main())\n')

    def run(*args):
        return subprocess.run([sys.executable, '-c', without_fpng, 'bev', *map(str, args)],
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)

    result = run(scans_dir / '000000.bin', scans_dir / '000001.bin', '-o', out_dir)
    assert result.returncode == 0, result.stderr
    assert_outputs(out_dir, scans_dir, names=('000000', '000001'))
    assert (out_dir / '000001.png').read_bytes() == bytes(bev_files.encode_png(
        expected_image(scans_dir / '000001.bin'), 'cv2'))
    refused = run(scans_dir / '000000.bin', '-o', out_dir, '--png-encoder', 'fpng')
    assert refused.returncode == 2
    assert 'pip install fpng==0.1.0' in refused.stderr


def test_resume_redoes_images_of_other_settings_or_changed_files(scans_dir, tmp_path, capsys):
    # The bug: a rerun with --preset complex-yolo into the same folder kept the 1600 x 1600
    # images and said "skipped".
    out_dir = tmp_path / 'bev'
    scans = [str(scans_dir / f'{name}.bin') for name in GOOD]

    def run(*args):
        code = batch_bev.main([*scans, '-o', str(out_dir), '--no-progress', *args])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        result = summary_of(captured.out, captured.err)
        assert result['total'] == 3 and result['failed'] == 0
        return result['written'], result['skipped']

    assert run() == (3, 0)
    assert run('--preset', 'complex-yolo') == (3, 0)
    assert_outputs(out_dir, scans_dir, grid=BevGrid.complex_yolo())
    assert run('--preset', 'complex-yolo') == (0, 3)
    assert run() == (3, 0)
    assert_outputs(out_dir, scans_dir)
    # the default grid spelled out is the same settings: up to date
    assert run('--x-range', '-80', '80', '--y-range', '-80', '80', '--resolution', '0.1',
               '--z-range', '-2.73', '1.27', '--intensity-range', '0', '1') == (0, 3)
    assert run('--z-range', '-2', '1') == (3, 0)
    assert run('--z-range', '-2', '1') == (0, 3)
    assert run() == (3, 0)

    stamps = {p.name: p.stat().st_mtime_ns for p in out_dir.glob('*.png')}
    later = time.time_ns() + 10 ** 9
    os.utime(scans_dir / '000001.bin', ns=(later, later))  # touched
    assert run() == (1, 2)
    assert (out_dir / '000000.png').stat().st_mtime_ns == stamps['000000.png']
    assert (out_dir / '000001.png').stat().st_mtime_ns != stamps['000001.png']
    replacement = scans_dir / 'replacement.tmp'
    shutil.copy(scans_dir / '000001.bin', replacement)
    os.replace(replacement, scans_dir / 'copy_of_000000.bin')  # replaced by another scan
    assert run() == (1, 2)
    assert_outputs(out_dir, scans_dir)  # copy_of_000000.png is now 000001's image
    (out_dir / '000000.png').unlink()
    with open(out_dir / '000001.png', 'r+b') as png:  # damaged
        png.truncate(100)
    assert run() == (2, 1)
    assert_outputs(out_dir, scans_dir)
    assert run('--overwrite') == (3, 0)
    assert run() == (0, 3)


def test_processes_executor_and_grid_options(scans_dir, tmp_path):
    out_dir = tmp_path / 'bev_cy'
    result = run_cli(scans_dir / '000000.bin', scans_dir / '000001.bin', '-o', out_dir,
                     '--executor', 'processes', '--workers', '2', '--batch-size', '1',
                     '--preset', 'complex-yolo')
    assert result.returncode == 0, result.stderr
    assert summary(result) == dict(total=2, written=2, skipped=0, failed=0)
    assert '2 processes' in result.stdout
    assert_outputs(out_dir, scans_dir, names=('000000', '000001'), grid=BevGrid.complex_yolo())

    custom = tmp_path / 'bev_custom'
    result = run_cli(scans_dir / '000001.bin', '-o', custom, '--x-range', '-20', '40',
                     '--y-range', '-15', '15', '--resolution', '0.2', '--z-range', '-2', '2',
                     '--intensity-range', '0', '0.5', '--workers', '1')
    assert result.returncode == 0, result.stderr
    grid = BevGrid(x_range=(-20, 40), y_range=(-15, 15), z_range=(-2, 2), resolution=0.2,
                   intensity_range=(0, 0.5))
    assert_outputs(custom, scans_dir, names=('000001',), grid=grid)


@pytest.mark.parametrize('args,message', [
    (['--resolution', '0.3'], 'whole number'),
    (['--workers', '0'], 'must be >= 1'),
    (['--executor', 'gpu'], 'invalid choice'),
    (['--preset', 'complex-yolo', '--x-range', '0', '40'], '--resolution'),
    (['--format', 'tif'], 'invalid choice'),
    (['--format', 'npy', '--png-encoder', 'cv2'], '--png-encoder applies to --format png'),
])
def test_usage_errors_exit_2(scans_dir, tmp_path, args, message):
    result = run_cli(scans_dir, '-o', tmp_path / 'out', *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / 'out').exists()


def test_missing_inputs_are_reported(tmp_path):
    empty_dir = tmp_path / 'nothing_here'
    empty_dir.mkdir()
    code = cli.main(['bev', str(tmp_path / 'missing.bin'), str(empty_dir),
                     str(tmp_path / '*.bin'), '-o', str(tmp_path / 'out'), '--no-progress'])
    assert code == 1
    assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('file_format', bev_files.FORMATS)
def test_unwritable_output_is_reported_and_leaves_no_temp_file(scans_dir, tmp_path, capsys,
                                                               file_format):
    out_dir = tmp_path / 'out'
    (out_dir / f'000001.{file_format}').mkdir(parents=True)  # os.replace onto a directory fails
    code = batch_bev.main([str(scans_dir / '000001.bin'), str(scans_dir / '000000.bin'),
                           '-o', str(out_dir), '--overwrite', '--no-progress',
                           '--format', file_format])
    captured = capsys.readouterr()
    assert code == 1
    assert '000001.bin' in captured.err and 'IsADirectoryError' in captured.err
    assert visible_names(out_dir) == [f'000000.{file_format}', f'000001.{file_format}']
    assert (out_dir / f'000001.{file_format}').is_dir()
    assert '1 written, 0 skipped (up to date), 1 failed' in captured.out


def test_output_dir_that_cannot_be_created_fails_every_scan(scans_dir, tmp_path, capsys):
    not_a_dir = tmp_path / 'file'
    not_a_dir.write_text('')
    code = batch_bev.main([str(scans_dir / '000000.bin'), str(scans_dir / '000001.bin'),
                           '-o', str(not_a_dir / 'bev'), '--no-progress'])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.err.count('cannot create') == 2
    assert '0 written, 0 skipped (up to date), 2 failed' in captured.out


def test_same_stem_in_two_directories_is_reported(scans_dir, tmp_path, capsys):
    other = tmp_path / 'other'
    other.mkdir()
    shutil.copy(scans_dir / '000001.bin', other / '000001.bin')
    code = batch_bev.main([str(scans_dir / '000001.bin'), str(other / '000001.bin'),
                           '-o', str(tmp_path / 'out'), '--no-progress'])
    assert code == 1
    assert 'same output name' in capsys.readouterr().err
    assert visible_names(tmp_path / 'out') == ['000001.png']


# about 2 s of work for one worker with fpng (6 s with cv2): the signal comes long before the end
INTERRUPTED_SCANS = 240


def test_interrupted_run_leaves_only_complete_images_and_resumes(scans_dir, tmp_path):
    many = tmp_path / 'many'
    many.mkdir()
    for i in range(INTERRUPTED_SCANS):
        os.link(scans_dir / f'{GOOD[i % 2]}.bin', many / f'scan_{i:03d}.bin')
    out_dir = tmp_path / 'out'
    process = subprocess.Popen(
        [sys.executable, '-m', 'pointcloud_pipeline', 'bev', str(many), '-o', str(out_dir),
         '--workers', '1', '--batch-size', '1'],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(out_dir.glob('*.png')):
        time.sleep(0.005)
    process.send_signal(signal.SIGINT)  # after the first image, ~8-25 ms per scan
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, (process.returncode, stdout, stderr)
    written = [out_dir / name for name in visible_names(out_dir)]  # and no temporary files
    assert written and all(p.suffix == '.png' for p in written), written
    not_done = INTERRUPTED_SCANS - len(written)
    assert not_done > 0, 'the run finished before the interrupt: nothing was tested'
    assert (f'{len(written)} written, 0 skipped (up to date), 0 failed, '
            f'{not_done} not done (interrupted)') in stdout, stdout
    for path in written:
        index = int(path.stem.split('_')[1])
        np.testing.assert_array_equal(cv2.imread(str(path), cv2.IMREAD_UNCHANGED),
                                      expected_image(many / f'{path.stem}.bin'),
                                      err_msg=f'{path.name} (scan {GOOD[index % 2]})')
    resumed = run_cli(many, '-o', out_dir)
    assert resumed.returncode == 0, resumed.stderr
    assert summary(resumed) == dict(total=INTERRUPTED_SCANS, written=not_done,
                                    skipped=len(written), failed=0)
    assert len(visible_names(out_dir)) == INTERRUPTED_SCANS


@pytest.mark.slow
@missing('dask')
def test_dask_cluster_on_loopback(scans_dir, tmp_path):
    from dask.distributed import LocalCluster
    out_dir = tmp_path / 'bev_dask'
    with LocalCluster(protocol='tcp://', host='127.0.0.1', dashboard_address=None, n_workers=2,
                      threads_per_worker=1, processes=False) as cluster:
        address = cluster.scheduler_address
        assert address.startswith('tcp://127.0.0.1:')
        result = run_cli(scans_dir, '-o', out_dir, '--dask-scheduler', address,
                         '--batch-size', '2')
    assert result.returncode == 1, result.stderr
    assert summary(result) == dict(total=7, written=3, skipped=0, failed=4)
    assert f'dask {address}' in result.stdout
    for name in BAD:
        assert f'{name}.bin' in result.stderr
    assert_outputs(out_dir, scans_dir)


# --- the pieces -------------------------------------------------------------------------------

def test_read_kitti_scan(scans_dir):
    points = read_kitti_scan(scans_dir / '000000.bin')
    assert points.shape == (115384, 4) and points.dtype == np.float32
    for name, reason in BAD.items():
        with pytest.raises(ScanError, match=reason):
            read_kitti_scan(scans_dir / f'{name}.bin')


def test_a_larger_scan_is_read_while_a_view_of_the_previous_one_is_alive(scans_dir):
    # Regression: the worker's buffer was grown in place, which raised BufferError when a view of
    # the previous scan was still referenced (as Dask's profiler does with worker frames).
    small, large = sorted((scans_dir / f'{name}.bin' for name in ('000000', '000001')),
                          key=lambda path: path.stat().st_size)
    assert small.stat().st_size < large.stat().st_size

    def in_a_new_worker_thread():  # its buffer starts empty
        held = read_kitti_scan(small, batch_bev.reused_scan_buffer)
        held_copy = held.copy()
        points = read_kitti_scan(large, batch_bev.reused_scan_buffer)
        np.testing.assert_array_equal(points, np.fromfile(large, np.float32).reshape(-1, 4))
        np.testing.assert_array_equal(held, held_copy)  # the old buffer was left alone
        again = read_kitti_scan(small, batch_bev.reused_scan_buffer)
        assert np.shares_memory(again, points)  # a scan that fits reuses the buffer

    with ThreadPoolExecutor(1) as pool:
        pool.submit(in_a_new_worker_thread).result()


def test_inputs_expand_dedup_and_report(scans_dir, tmp_path):
    scans, problems = runner.find_inputs([str(scans_dir / '000001.bin'), str(scans_dir),
                                          str(scans_dir / 'has_*.bin'), str(tmp_path / 'nope')],
                                         batch_bev.BevTool.input_suffixes)
    names = [p.name for p in scans]
    assert names[0] == '000001.bin' and len(names) == len(set(names)) == 7
    assert 'notes.txt' not in names
    assert problems == [(str(tmp_path / 'nope'), 'no such file or directory')]


def test_module_entry_point_help():
    result = subprocess.run([sys.executable, '-m', 'pointcloud_pipeline', '--help'],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and 'bev' in result.stdout
