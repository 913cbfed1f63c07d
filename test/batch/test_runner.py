"""The shared batch runner, with the tiny text tool of runner_tools.py and the real BEV tool:
one input's failure of any kind, no partial outputs, settings-aware resume, exit codes, SIGTERM,
dying workers, and the same bytes from threads, processes and Dask."""
import json
import os
from pathlib import Path
import re
import shutil
import signal
import subprocess
import time

import pytest

from optional import missing
from pointcloud_pipeline.batch import bev as batch_bev, runner
from pointcloud_pipeline.files import PARTIAL_SUFFIX
import runner_tools
from runner_tools import TextTool

SUMMARY = re.compile(r'^text: (\d+) files: (\d+) written, (\d+) skipped \(up to date\), '
                     r'(\d+) failed(?:, (\d+) not done \(interrupted\))? in [\d.]+ s '
                     r'\([\d.]+ written/s, ([^)]+)\) -> (.+)$', re.MULTILINE)
MANIFEST = '.text.manifest.json'
GOOD = {'a': b'alpha\n', 'b': b'bravo bravo\n', 'c': b'charlie\n'}


def summary(stdout):
    match = SUMMARY.search(stdout)
    assert match, stdout
    total, written, skipped, failed, not_done = (int(v or 0) for v in match.groups()[:5])
    return dict(total=total, written=written, skipped=skipped, failed=failed, not_done=not_done)


def counts(**expected):
    return dict(dict(total=0, written=0, skipped=0, failed=0, not_done=0), **expected)


@pytest.fixture
def inputs(tmp_path):
    directory = tmp_path / 'inputs'
    directory.mkdir()
    for stem, data in GOOD.items():
        (directory / f'{stem}.txt').write_bytes(data)
    return directory


def replace_file(path, data, ns=None):
    """Replace ``path`` by a new file (as rsync or an archive extraction does); ``ns``:
    (atime_ns, mtime_ns) to give it."""
    replacement = path.with_name(path.name + '.new')
    replacement.write_bytes(data)
    if ns:
        os.utime(replacement, ns=ns)
    os.replace(replacement, path)


def run_text(capsys, *args):
    """runner_tools.main in this process; returns (exit code, summary counts, stderr)."""
    code = runner_tools.main([*map(str, args), '--no-progress'])
    captured = capsys.readouterr()
    return code, summary(captured.out), captured.err


def outputs(out_dir):
    """{name: bytes} of the outputs; asserts that nothing but them and the manifest is there
    (no temporary file)."""
    names = sorted(p.name for p in out_dir.iterdir())
    assert not [n for n in names if n.endswith(PARTIAL_SUFFIX)], names
    assert [n for n in names if n.startswith('.')] in ([], [MANIFEST]), names
    return {n: (out_dir / n).read_bytes() for n in names if not n.startswith('.')}


def stamps(out_dir):
    return {p.name: p.stat().st_mtime_ns for p in out_dir.iterdir() if p.suffix == '.out'}


@pytest.mark.parametrize('executor', ['threads', 'processes'])
def test_any_exception_in_one_input_fails_only_that_input(inputs, tmp_path, capsys, executor):
    (inputs / 'memory.txt').write_bytes(b'memory-error\nrest of the file\n')
    (inputs / 'opencv.txt').write_bytes(b'cv2-error\nrest of the file\n')
    (inputs / 'own.txt').write_bytes(b'input-error\nrest of the file\n')
    out_dir = tmp_path / 'out'
    # one task of all six inputs: the task goes on after each failure
    code, result, err = run_text(capsys, inputs, '-o', out_dir, '--executor', executor,
                                 '--batch-size', '6', '--workers', '2')
    assert code == 1
    assert result == counts(total=6, written=3, failed=3)
    errors = {line.split(': ', 2)[1]: line.split(': ', 2)[2]
              for line in err.splitlines() if line.startswith('error: ')}
    assert errors == {
        str(inputs / 'memory.txt'): 'MemoryError',
        str(inputs / 'opencv.txt'): errors[str(inputs / 'opencv.txt')],
        str(inputs / 'own.txt'): 'line 1 is not a number',  # the tool's own message, as is
    }
    assert errors[str(inputs / 'opencv.txt')].startswith('cv2.error: OpenCV(')
    assert '!_img.empty()' in errors[str(inputs / 'opencv.txt')]
    # the failed ones had written half their output: nothing of it is left
    assert outputs(out_dir) == {f'{stem}.out': data for stem, data in GOOD.items()}


def test_a_dying_process_worker_fails_its_task_and_the_run_goes_on(inputs, tmp_path, capsys):
    for stem in 'defg':
        (inputs / f'{stem}.txt').write_bytes(f'{stem}\n'.encode())
    (inputs / 'c_exit.txt').write_bytes(b'exit-worker\n')
    out_dir = tmp_path / 'out'
    code, result, err = run_text(capsys, inputs, '-o', out_dir, '--executor', 'processes',
                                 '--workers', '1', '--batch-size', '1')
    assert code == 1
    assert result == counts(total=8, written=7, failed=1)
    assert err.splitlines() == [f'error: {inputs / "c_exit.txt"}: a worker process died while '
                                'this task was in flight (BrokenProcessPool)']
    assert sorted(outputs(out_dir)) == [f'{stem}.out' for stem in 'abcdefg']


def test_resume_redoes_what_changed_and_skips_what_is_up_to_date(inputs, tmp_path, capsys):
    out_dir = tmp_path / 'out'

    def run(*args):
        code, result, err = run_text(capsys, inputs, '-o', out_dir, *args)
        assert code == 0, err
        return result

    assert run() == counts(total=3, written=3)
    first = stamps(out_dir)
    assert run() == counts(total=3, skipped=3)
    assert stamps(out_dir) == first  # not rewritten
    assert run('--delay', '0.001') == counts(total=3, skipped=3)  # not an output setting

    # other settings: every output is redone, then up to date
    assert run('--prefix', '> ') == counts(total=3, written=3)
    assert outputs(out_dir) == {f'{s}.out': b'> ' + data for s, data in GOOD.items()}
    assert run('--prefix', '> ') == counts(total=3, skipped=3)
    assert run() == counts(total=3, written=3)

    # a touched input, a replaced one (same size, new mtime; or same mtime, other size), a
    # changed output and a deleted one are redone; the untouched ones are not
    before = stamps(out_dir)
    os.utime(inputs / 'a.txt', ns=(time.time_ns(), time.time_ns()))
    assert run() == counts(total=3, written=1, skipped=2)
    assert stamps(out_dir)['b.out'] == before['b.out']
    replace_file(inputs / 'b.txt', b'BRAVO BRAVO\n')
    c_stat = (inputs / 'c.txt').stat()
    replace_file(inputs / 'c.txt', b'CHARLIE, again\n', ns=(c_stat.st_atime_ns,
                                                           c_stat.st_mtime_ns))
    assert run() == counts(total=3, written=2, skipped=1)
    assert outputs(out_dir)['b.out'] == b'BRAVO BRAVO\n'
    assert outputs(out_dir)['c.out'] == b'CHARLIE, again\n'
    (out_dir / 'c.out').write_bytes(b'edited by hand')
    assert run() == counts(total=3, written=1, skipped=2)
    assert outputs(out_dir)['c.out'] == b'CHARLIE, again\n'
    (out_dir / 'a.out').unlink()
    assert run() == counts(total=3, written=1, skipped=2)

    # --overwrite redoes all; no manifest (an older run) or an unreadable one: all redone
    assert run('--overwrite') == counts(total=3, written=3)
    (out_dir / MANIFEST).unlink()
    assert run() == counts(total=3, written=3)
    (out_dir / MANIFEST).write_text('{"truncated')
    code, result, err = run_text(capsys, inputs, '-o', out_dir)
    assert (code, result) == (0, counts(total=3, written=3))
    assert f'warning: {out_dir / MANIFEST}: unreadable (' in err
    assert run() == counts(total=3, skipped=3)


def test_the_same_output_name_from_another_input_is_redone(inputs, tmp_path, capsys):
    out_dir = tmp_path / 'out'
    other = tmp_path / 'other'
    other.mkdir()
    shutil.copy2(inputs / 'a.txt', other / 'a.txt')  # same bytes and mtime, another path
    assert run_text(capsys, inputs / 'a.txt', '-o', out_dir)[:2] == (0, counts(total=1,
                                                                             written=1))
    assert run_text(capsys, other / 'a.txt', '-o', out_dir)[:2] == (0, counts(total=1,
                                                                            written=1))
    assert run_text(capsys, other / 'a.txt', '-o', out_dir)[:2] == (0, counts(total=1,
                                                                            skipped=1))


def test_manifest_records_input_settings_and_output(inputs, tmp_path, capsys):
    out_dir = tmp_path / 'out'
    run_text(capsys, inputs, '-o', out_dir, '--prefix', '#')
    manifest = json.loads((out_dir / MANIFEST).read_text())
    digest = runner.settings_digest(TextTool(prefix='#'))
    assert manifest['manifest_format'] == 1 and manifest['tool'] == 'text'
    assert manifest['settings'] == {digest: {'tool': 'text', 'format_version': 1,
                                             'settings': {'prefix': '#'}}}
    for stem in GOOD:
        source, output = (inputs / f'{stem}.txt').stat(), (out_dir / f'{stem}.out').stat()
        assert manifest['outputs'][f'{stem}.out'] == {
            'input': {'path': str((inputs / f'{stem}.txt').resolve()),
                      'size': source.st_size, 'mtime_ns': source.st_mtime_ns},
            'settings': digest,
            'output': {'size': output.st_size, 'mtime_ns': output.st_mtime_ns}}
    assert runner.settings_digest(TextTool(prefix='#', delay_s=1)) == digest
    assert runner.settings_digest(TextTool(prefix='')) != digest


def test_inputs_expand_dedup_and_report(inputs, tmp_path):
    (inputs / 'UPPER.TXT').write_bytes(b'upper\n')
    (inputs / 'notes.md').write_bytes(b'not an input\n')
    empty = tmp_path / 'empty'
    empty.mkdir()
    paths, problems = runner.find_inputs(
        [str(inputs / 'b.txt'), str(inputs), str(inputs / '*.txt'), str(empty),
         str(tmp_path / 'nope.txt'), str(tmp_path / 'no*match')], ('.txt',))
    assert [p.name for p in paths] == ['b.txt', 'UPPER.TXT', 'a.txt', 'c.txt']
    assert problems == [(str(empty), 'directory holds no .txt files'),
                        (str(tmp_path / 'nope.txt'), 'no such file or directory'),
                        (str(tmp_path / 'no*match'), 'pattern matches no files')]


def test_default_batch_size():
    assert runner.default_batch_size(100, 2) == 13  # about 4 tasks per worker
    assert runner.default_batch_size(10_000, 2) == 16
    assert runner.default_batch_size(3, 8) == 1


# --- the real command line in a subprocess: exit codes and signals ---------------------------

def run_command(*args, timeout=60):
    argv, env = runner_tools.command_line(*args)
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)


def test_exit_codes_0_and_1(inputs, tmp_path):
    ok = run_command(inputs, '-o', tmp_path / 'out')
    assert ok.returncode == 0, ok.stderr
    assert summary(ok.stdout) == counts(total=3, written=3)
    (inputs / 'bad.txt').write_bytes(b'input-error\n')
    failed = run_command(inputs, '-o', tmp_path / 'out')
    assert failed.returncode == 1
    assert summary(failed.stdout) == counts(total=4, skipped=3, failed=1)
    assert failed.stderr.strip() == f'error: {inputs / "bad.txt"}: line 1 is not a number'


@pytest.mark.parametrize('args,message', [
    (['--workers', '0'], 'must be >= 1'),
    (['--batch-size', 'x'], 'invalid positive_int value'),
    (['--executor', 'gpu'], 'invalid choice'),
    (['--prefix', 'invalid'], '--prefix invalid is not allowed'),  # ValueError of the tool
    (['--prefix', 'needy'], 'text needs the Python package no_such_package_here: '
                            'pip install no-such-package-here'),  # the tool's requires
    ([], 'the following arguments are required: -o/--output-dir'),
])
def test_usage_errors_exit_2(inputs, tmp_path, args, message):
    out = [] if not args else ['-o', tmp_path / 'out']
    result = run_command(inputs, *out, *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('executor', ['threads', 'processes'])
def test_sigterm_stops_after_the_files_at_hand_and_resumes(inputs, tmp_path, executor):
    for i in range(40):
        (inputs / f'n{i:02d}.txt').write_bytes(f'file {i}\n'.encode())
    out_dir = tmp_path / 'out'
    argv, env = runner_tools.command_line(inputs, '-o', out_dir, '--executor', executor,
                                          '--workers', '2', '--batch-size', '4', '--delay',
                                          '0.1')
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(out_dir.glob('*.out')):
        time.sleep(0.005)
    process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert time.monotonic() - signalled < 5  # not the 2 s of work left, plus start-up
    result = summary(stdout)
    done = outputs(out_dir)
    assert result['written'] == len(done) and result['failed'] == 0
    assert result['not_done'] == 43 - len(done) > 0
    for name, data in done.items():  # every output is complete
        assert data == (inputs / name.replace('.out', '.txt')).read_bytes()

    resumed = run_command(inputs, '-o', out_dir)
    assert resumed.returncode == 0, resumed.stderr
    assert summary(resumed.stdout) == counts(total=43, written=43 - len(done),
                                             skipped=len(done))
    assert len(outputs(out_dir)) == 43


# --- executors: the same bytes ------------------------------------------------------------------

def bev_outputs(capsys, scans, out_dir, *args):
    code = batch_bev.main([*map(str, scans), '-o', str(out_dir), '--no-progress', *args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return {p.name: p.read_bytes() for p in Path(out_dir).glob('*.png')}


@pytest.mark.slow
@missing('dask')
def test_threads_processes_and_dask_write_identical_bytes(shared_data, tmp_path, capsys):
    from dask.distributed import LocalCluster
    scans = sorted((shared_data / 'kitti' / 'velodyne').glob('*.bin'))
    grid = ['--x-range', '-40', '40', '--y-range', '-30', '30', '--resolution', '0.1']
    threads = bev_outputs(capsys, scans, tmp_path / 'threads', '--workers', '2', *grid)
    processes = bev_outputs(capsys, scans, tmp_path / 'processes', '--executor', 'processes',
                            '--workers', '2', '--batch-size', '1', *grid)
    with LocalCluster(protocol='tcp://', host='127.0.0.1', dashboard_address=None, n_workers=2,
                      threads_per_worker=1, processes=False) as cluster:
        dask = bev_outputs(capsys, scans, tmp_path / 'dask', '--dask-scheduler',
                           cluster.scheduler_address, '--batch-size', '1', *grid)
    assert sorted(threads) == [f'{scan.stem}.png' for scan in scans]
    assert threads == processes == dask


@pytest.mark.slow
@missing('dask')
def test_a_dask_task_error_fails_that_tasks_inputs(inputs, tmp_path, capsys):
    import dask
    from dask.distributed import LocalCluster
    (inputs / 'b_exit.txt').write_bytes(b'exit-worker\n')  # kills the worker process
    out_dir = tmp_path / 'out'
    # no retry on another worker: the task that kills it fails with KilledWorker (and so may
    # others that the scheduler had handed to the same worker)
    with dask.config.set({'distributed.scheduler.allowed-failures': 0}), \
            LocalCluster(protocol='tcp://', host='127.0.0.1', dashboard_address=None,
                         n_workers=1, threads_per_worker=1, processes=True) as cluster:
        code, result, err = run_text(capsys, inputs, '-o', out_dir, '--dask-scheduler',
                                     cluster.scheduler_address, '--batch-size', '1')
    assert code == 1
    failures = dict(line.split(': ', 2)[1:] for line in err.splitlines()
                    if line.startswith('error: '))
    assert str(inputs / 'b_exit.txt') in failures
    assert all(reason.startswith('distributed.KilledWorker: ') for reason in failures.values())
    assert result == counts(total=4, written=4 - len(failures), failed=len(failures))
    # a task whose worker died after it finished may be reported failed: its output is there
    done = {f'{Path(p).stem}.out' for p in inputs.iterdir() if str(p) not in failures}
    assert done <= set(outputs(out_dir)) and 'b_exit.out' not in outputs(out_dir)
