"""The normals batch command end to end on real LAS/LAZ/COPC files: tiled == untiled == the kernel
on the whole cloud (byte for byte), independent of point order, chunk size, workers and executor
(threads, processes, Dask); the round trip keeps every dimension, header field, VLR, EVLR and the
CRS; bad inputs, an unwritable output directory and a full disk are reported by name and leave
nothing behind; SIGINT leaves nothing, SIGKILL leaves what the next run removes."""
import importlib
import os
from pathlib import Path
import re
import resource
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO_ROOT
from las_inputs import (read_only_directory, real_file, replicated_las, run_command,
                        run_in_process, write_damaged_inputs)
from optional import missing
from pointcloud_pipeline import tiling
from pointcloud_pipeline.batch import cli, normals as batch_normals
from pointcloud_pipeline.files import PARTIAL_SUFFIX

laspy = pytest.importorskip('laspy', reason='laspy is not installed: pip install laspy==2.7.0 '
                                            'lazrs==0.8.2')

DIMENSIONS = ('NormalX', 'NormalY', 'NormalZ', 'Curvature')
SUMMARY = re.compile(r'^normals: (\d+) files: (\d+) written, (\d+) skipped \(up to date\), '
                     r'(\d+) failed.* -> .*; (\d+) points, (\d+) NaN normals, (\d+) tiles, '
                     r'(\d+) halo re-queries, [\d.]+ s, [\d.]+ Mpts/s, peak RSS \d+ MB',
                     re.MULTILINE)
MANIFEST = '.normals.manifest.json'
ROUND_TRIP = [('pdal', 'autzen_trim.las'), ('laspy', 'autzen_trim.laz'),
              ('laspy', '1_4_w_evlr.las'), ('laspy', '1_4_w_evlr.laz'),
              ('laspy', 'extrabytes.las'), ('laspy', 'simple.copc.laz'),
              ('lidr', 'MixedConifer.laz'), ('pdal', 'test1_4.las')]


def run_cli(*args, **kwargs):
    """``python -m pointcloud_pipeline normals ...`` in a subprocess."""
    return run_command('normals', *args, **kwargs)


def run_here(capsys, *args):
    """The normals command in this process: (exit code, stdout, stderr)."""
    return run_in_process(batch_normals, capsys, *args)


def summary_of(stdout, stderr=''):
    match = SUMMARY.search(stdout)
    assert match, stdout + stderr
    names = ('total', 'written', 'skipped', 'failed', 'points', 'nan', 'tiles', 'requeries')
    return dict(zip(names, map(int, match.groups())))


def leftovers(directory):
    """Hidden files and directories in ``directory`` other than the manifest (temporary tiles,
    partial outputs)."""
    return sorted(name for name in os.listdir(directory)
                  if name.startswith('.') and name != MANIFEST)


def new_dims(path):
    las = laspy.read(path)
    return np.column_stack([np.asarray(las[name]) for name in DIMENSIONS])


def bits(values):
    return values.view(np.uint32 if values.dtype.itemsize == 4 else np.uint64)


def whole_cloud_normals(path, **options):
    """The kernel on the whole cloud in one call, ties broken by the tool's fixed order."""
    from pointcloud_pipeline.normals import estimate_normals
    las = laspy.read(path)
    records = np.zeros(len(las.points), tiling.TILE_RECORD)
    records['index'] = np.arange(len(records))
    records['X'], records['Y'], records['Z'] = las.X, las.Y, las.Z
    ids = np.empty(len(records), np.int64)
    ids[tiling.tie_break_order(records)] = np.arange(len(records))
    result = estimate_normals(np.column_stack([las.x, las.y, las.z]), ids=ids, **options)
    return np.column_stack([result.normals, result.curvature])


@pytest.fixture(scope='module')
def large_las(tmp_path_factory, shared_data):
    """About 1.1 M real points: autzen_trim.las replicated 10 times side by side (LAS)."""
    path = tmp_path_factory.mktemp('large') / 'autzen_x10.las'
    return replicated_las(laspy, real_file(shared_data, 'pdal', 'autzen_trim.las'), 10, path)


# --- exactness ------------------------------------------------------------------------------

@pytest.mark.parametrize('options,kernel', [
    ((), dict(k=8)),
    (('--knn', '12', '--viewpoint', '636000', '849000', '2000'),
     dict(k=12, viewpoint=(636000.0, 849000.0, 2000.0))),
    (('--radius', '6', '--no-always-up', '--dtype', 'float64'), dict(radius=6.0, always_up=False)),
])
def test_tiled_equals_untiled_equals_the_kernel_on_the_whole_cloud(shared_data, tmp_path, capsys,
                                                                   options, kernel):
    source = real_file(shared_data, 'pdal', 'autzen_trim.las')
    expected = whole_cloud_normals(source, **kernel)
    dtype = np.float64 if 'float64' in options else np.float32
    requeries = []
    for tile_size in ('100000', '300', '50'):
        out = tmp_path / tile_size
        code, stdout, stderr = run_here(capsys, source, '-o', out, '--tile-size', tile_size,
                                        *options)
        assert code == 0, stderr
        result = summary_of(stdout)
        assert result['points'] == 110000 and result['written'] == 1
        requeries.append(result['requeries'])
        got = new_dims(out / source.name)
        assert got.dtype == dtype
        np.testing.assert_array_equal(bits(got), bits(expected.astype(dtype)), err_msg=tile_size)
        assert leftovers(out) == []
    if 'radius' in kernel:
        assert requeries == [0, 0, 0]  # the margin is the radius: nothing can be missed
    else:
        assert requeries[0] == 0 and requeries[2] > 0  # the small tiles needed re-queries


def test_the_point_order_of_the_file_does_not_change_the_normals_of_a_point(shared_data,
                                                                           tmp_path, capsys):
    source = real_file(shared_data, 'laspy', 'autzen_trim.laz')
    las = laspy.read(source)
    permutation = np.random.default_rng(7).permutation(len(las.points))
    shuffled = tmp_path / 'shuffled.laz'
    las.points = las.points[permutation]
    las.write(shuffled)
    code, _, stderr = run_here(capsys, source, shuffled, '-o', tmp_path / 'out',
                               '--tile-size', '200')
    assert code == 0, stderr
    original = new_dims(tmp_path / 'out' / source.name)
    reordered = laspy.read(tmp_path / 'out' / 'shuffled.laz')
    np.testing.assert_array_equal(reordered.points.array['X'],
                                  las.points.array['X'])  # the file's own order is kept
    np.testing.assert_array_equal(bits(new_dims(tmp_path / 'out' / 'shuffled.laz')),
                                  bits(original[permutation]))


def test_chunk_size_workers_and_executors_do_not_change_a_byte(shared_data, tmp_path):
    source = real_file(shared_data, 'laspy', 'autzen_trim.laz')
    runs = {
        'one_worker_small_chunks': ('--workers', '1', '--chunk-points', '7000'),
        'two_threads': ('--workers', '2', '--tile-size', '300'),
        'two_processes': ('--workers', '2', '--executor', 'processes', '--tile-size', '120',
                          '--chunk-points', '33333'),
        'low_memory_limit': ('--memory-limit', '200', '--workers', '2'),
    }
    outputs = {}
    for name, options in runs.items():
        result = run_cli(source, '-o', tmp_path / name, *options)
        assert result.returncode == 0, result.stderr
        assert summary_of(result.stdout)['written'] == 1
        assert ('2 processes' in result.stdout) == ('processes' in options)
        assert ('(worker processes' in result.stdout) == ('processes' in options)
        outputs[name] = (tmp_path / name / source.name).read_bytes()
        assert leftovers(tmp_path / name) == []
    reference = outputs.pop('one_worker_small_chunks')
    for name, data in outputs.items():
        assert data == reference, name


@pytest.mark.slow
@missing('dask')
def test_tiles_on_a_dask_cluster_on_loopback(shared_data, tmp_path):
    from dask.distributed import LocalCluster
    source = real_file(shared_data, 'laspy', 'autzen_trim.laz')
    reference = run_cli(source, '-o', tmp_path / 'local', '--workers', '1')
    assert reference.returncode == 0, reference.stderr
    with LocalCluster(protocol='tcp://', host='127.0.0.1', dashboard_address=None, n_workers=2,
                      threads_per_worker=1, processes=False) as cluster:
        address = cluster.scheduler_address
        assert address.startswith('tcp://127.0.0.1:')
        result = run_cli(source, '-o', tmp_path / 'dask', '--dask-scheduler', address,
                         '--tile-size', '150')
    assert result.returncode == 0, result.stderr
    assert f'dask {address}' in result.stdout
    assert summary_of(result.stdout)['tiles'] > 10
    assert ((tmp_path / 'dask' / source.name).read_bytes()
            == (tmp_path / 'local' / source.name).read_bytes())
    assert leftovers(tmp_path / 'dask') == []


# --- the round trip -------------------------------------------------------------------------

def vlr_key(vlr):
    data = vlr.record_data_bytes() if hasattr(vlr, 'record_data_bytes') else vlr.record_data
    return vlr.user_id, vlr.record_id, vlr.description, bytes(data)


def kept_vlrs(vlrs, dropped=('LasZipVlr', 'ExtraBytesVlr')):
    return [vlr_key(vlr) for vlr in vlrs or []
            if type(vlr).__name__ not in dropped and vlr.user_id != 'copc']


@pytest.mark.parametrize('parts', ROUND_TRIP, ids=lambda parts: '/'.join(parts))
def test_round_trip_keeps_every_dimension_header_field_vlr_and_evlr(shared_data, tmp_path,
                                                                    capsys, parts):
    source = real_file(shared_data, *parts)
    code, stdout, stderr = run_here(capsys, source, '-o', tmp_path, '--tile-size', '200')
    assert code == 0, stderr
    output = tmp_path / batch_normals.NormalsTool().output_name(str(source))
    assert output.suffix == source.suffix
    original, written = laspy.read(source), laspy.read(output)
    before, after = original.header, written.header

    assert after.are_points_compressed == source.name.endswith('.laz')
    for field in ('version', 'file_source_id', 'uuid', 'system_identifier',
                  'generating_software', 'creation_date', 'point_count', 'extra_header_bytes',
                  'extra_vlr_bytes'):
        assert getattr(after, field) == getattr(before, field), field
    assert after.global_encoding.value == before.global_encoding.value
    assert after.point_format.id == before.point_format.id
    np.testing.assert_array_equal(after.scales, before.scales)
    np.testing.assert_array_equal(after.offsets, before.offsets)
    np.testing.assert_array_equal(after.mins, before.mins)
    np.testing.assert_array_equal(after.maxs, before.maxs)
    np.testing.assert_array_equal(after.number_of_points_by_return,
                                  before.number_of_points_by_return)
    # VLRs (the CRS among them) and EVLRs byte for byte, in order
    assert kept_vlrs(after.vlrs) == kept_vlrs(before.vlrs)
    assert kept_vlrs(written.evlrs) == kept_vlrs(original.evlrs)
    if any(vlr.user_id == 'LASF_Projection' for vlr in before.vlrs):
        assert any(vlr.user_id == 'LASF_Projection' for vlr in after.vlrs)
    # every original dimension bit-exact, in the original order; the new ones under PDAL's names
    for field in original.points.array.dtype.names:
        np.testing.assert_array_equal(written.points.array[field],
                                      original.points.array[field], err_msg=field)
    old_extra = list(before.point_format.extra_dimension_names)
    assert list(after.point_format.extra_dimension_names) == old_extra + list(DIMENSIONS)
    values = new_dims(output)
    assert values.dtype == np.float32
    finite = np.isfinite(values).all(axis=1)
    assert finite.mean() > 0.99
    np.testing.assert_allclose(np.linalg.norm(values[finite, :3], axis=1), 1.0, atol=1e-6)
    assert (values[finite, 2] >= 0).all()  # always up
    # the Extra Bytes VLR describes the new dims with their real ranges
    structs = {s.format_name(): s for s in after.vlrs.get('ExtraBytesVlr')[0].extra_bytes_structs}
    for column, name in enumerate(DIMENSIONS):
        assert structs[name].min[0] == np.nanmin(values[:, column])
        assert structs[name].max[0] == np.nanmax(values[:, column])
    if parts[1].endswith('.copc.laz'):
        assert output.name == 'simple.laz'
        assert not [vlr for vlr in after.vlrs if vlr.user_id == 'copc']


def test_output_file_option_converts_las_to_laz_and_back(shared_data, tmp_path, capsys):
    las_source = real_file(shared_data, 'pdal', 'autzen_trim.las')
    code, _, stderr = run_here(capsys, las_source, '-o', tmp_path / 'converted.laz')
    assert code == 0, stderr
    converted = tmp_path / 'converted.laz'
    assert laspy.open(converted).header.are_points_compressed
    code, _, stderr = run_here(capsys, converted, '-o', tmp_path / 'back' / 'again.las',
                               '--overwrite-dims')
    assert code == 0, stderr
    again = laspy.read(tmp_path / 'back' / 'again.las')
    assert not again.header.are_points_compressed
    original = laspy.read(las_source)
    for field in original.points.array.dtype.names:
        np.testing.assert_array_equal(again.points.array[field], original.points.array[field])
    np.testing.assert_array_equal(bits(new_dims(tmp_path / 'back' / 'again.las')),
                                  bits(new_dims(converted)))


def test_existing_dims_are_refused_unless_overwrite_dims(shared_data, tmp_path, capsys):
    source = real_file(shared_data, 'laspy', 'simple.las')
    code, _, stderr = run_here(capsys, source, '-o', tmp_path / 'first')
    assert code == 0, stderr
    with_normals = tmp_path / 'first' / 'simple.las'
    code, stdout, stderr = run_here(capsys, with_normals, '-o', tmp_path / 'second')
    assert code == 1
    assert (f'error: {with_normals}: already has the dimensions NormalX, NormalY, NormalZ, '
            'Curvature (--overwrite-dims replaces them)') in stderr
    assert os.listdir(tmp_path / 'second') == []
    code, _, stderr = run_here(capsys, with_normals, '-o', tmp_path / 'third',
                               '--overwrite-dims', '--dtype', 'float64', '--knn', '10')
    assert code == 0, stderr
    third = laspy.read(tmp_path / 'third' / 'simple.las')
    assert list(third.point_format.extra_dimension_names) == list(DIMENSIONS)
    assert third.points.array['NormalX'].dtype == np.float64
    np.testing.assert_array_equal(new_dims(tmp_path / 'third' / 'simple.las'),
                                  whole_cloud_normals(source, k=10))


def test_resume_skips_done_files_and_redoes_other_settings(shared_data, tmp_path, capsys):
    source = real_file(shared_data, 'laspy', 'simple.laz')
    out = tmp_path / 'out'
    assert summary_of(run_here(capsys, source, '-o', out)[1])['written'] == 1
    assert summary_of(run_here(capsys, source, '-o', out, '--tile-size', '5',
                               '--workers', '1')[1])['skipped'] == 1  # same bytes: up to date
    assert summary_of(run_here(capsys, source, '-o', out, '--knn', '5')[1])['written'] == 1
    assert summary_of(run_here(capsys, source, '-o', out, '--knn', '5')[1])['skipped'] == 1


# --- bad inputs and failures ----------------------------------------------------------------

@pytest.fixture
def bad_inputs(shared_data, tmp_path):
    """A directory with one good file and every kind of bad one; -> {name: expected message}."""
    directory = tmp_path / 'inputs'
    directory.mkdir()
    shutil.copy(real_file(shared_data, 'laspy', 'simple.las'), directory / 'good.las')
    las = real_file(shared_data, 'pdal', 'autzen_trim.las').read_bytes()
    laz = real_file(shared_data, 'laspy', 'autzen_trim.laz').read_bytes()
    write_damaged_inputs(directory, las, laz)

    def points_file(name, xyz):
        data = laspy.create(point_format=3, file_version='1.2')
        data.x, data.y, data.z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
        data.write(directory / name)
    points_file('no_points.las', np.zeros((0, 3)))
    points_file('identical.las', np.tile([[10.0, 20.0, 30.0]], (50, 1)))
    points_file('too_few.las', np.random.default_rng(6).random((8, 3)) * 10)
    return directory, {
        'not_las.las': 'not a readable LAS/LAZ file',
        'truncated.las': 'point data cannot be read, corrupt or truncated',
        'truncated.laz': 'point data cannot be read, corrupt or truncated',
        'corrupt.laz': 'point data cannot be read, corrupt or truncated',
        'no_points.las': 'holds no points',
        'identical.las': 'all 50 points are at one position (10, 20, 30)',
        'too_few.las': 'holds 8 points: --knn 8 needs at least 9',
    }


def test_bad_inputs_are_reported_by_name_and_leave_nothing(bad_inputs, tmp_path):
    directory, problems = bad_inputs
    out = tmp_path / 'out'
    result = run_cli(directory, '-o', out, '--workers', '2')
    assert result.returncode == 1, result.stderr
    assert summary_of(result.stdout)['failed'] == len(problems)
    assert summary_of(result.stdout)['written'] == 1
    for name, message in problems.items():
        lines = [line for line in result.stderr.splitlines()
                 if line.startswith(f'error: {directory / name}: ')]
        assert lines and message in lines[0], (name, result.stderr)
    assert sorted(os.listdir(out)) == [MANIFEST, 'good.las']


def test_an_unwritable_output_directory_is_reported(bad_inputs, tmp_path):
    directory, _ = bad_inputs
    with read_only_directory(tmp_path / 'read_only') as out:
        result = run_cli(directory / 'good.las', '-o', out)
        listing = os.listdir(out)
    assert result.returncode == 1
    assert f'error: {directory / "good.las"}: ' in result.stderr
    assert 'not permitted' in result.stderr or 'denied' in result.stderr, result.stderr
    assert listing == []


@pytest.mark.parametrize('parts', [('pdal', 'autzen_trim.las'), ('laspy', 'autzen_trim.laz')])
def test_a_full_disk_for_the_temporary_tiles_fails_that_file_only(shared_data, bad_inputs,
                                                                  tmp_path, parts):
    # A real limit: RLIMIT_FSIZE makes writes past 1 MB fail with EFBIG (Python ignores SIGXFSZ),
    # as a full disk would fail them with ENOSPC. autzen's tiles need 2.2 MB, simple.las 21 kB;
    # for the LAZ the kept point records (3.7 MB) fail first.
    directory, _ = bad_inputs
    large = real_file(shared_data, *parts)
    out = tmp_path / 'out'

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
    result = run_cli(large, directory / 'good.las', '-o', out, preexec_fn=limit_file_size)
    assert result.returncode == 1, result.stderr
    line = next(line for line in result.stderr.splitlines() if str(large) in line)
    assert f'cannot write the temporary tiles in {out}' in line and 'File too large' in line
    assert summary_of(result.stdout)['written'] == 1
    assert sorted(os.listdir(out)) == [MANIFEST, 'good.las']


@pytest.mark.parametrize('args,message', [
    (('--knn', '5', '--radius', '2'), '--knn or --radius'),
    (('--viewpoint', '0', '0', '0', '--no-always-up'), '--viewpoint or --no-always-up'),
    (('--memory-limit', '120'), '--memory-limit must be at least'),
    (('--knn', '1'), '--knn must be from 2'),
    (('--radius', '-1'), 'must be a number > 0'),
    (('--dtype', 'float16'), 'invalid choice'),
])
def test_usage_errors_exit_2(shared_data, tmp_path, args, message):
    result = run_cli(real_file(shared_data, 'laspy', 'simple.las'), '-o', tmp_path / 'out', *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / 'out').exists()


def test_output_file_needs_exactly_one_input(shared_data, tmp_path):
    source = real_file(shared_data, 'laspy', 'simple.las')
    result = run_cli(source, source.with_name('simple.laz'), '-o', tmp_path / 'x.laz')
    assert result.returncode == 2 and 'exactly one input file' in result.stderr


def test_an_output_that_would_replace_its_input_is_refused(shared_data, tmp_path, capsys):
    source = tmp_path / 'simple.las'
    shutil.copy(real_file(shared_data, 'laspy', 'simple.las'), source)
    code, _, stderr = run_here(capsys, source, '-o', tmp_path)
    assert code == 1 and 'would replace the input' in stderr
    assert source.read_bytes() == real_file(shared_data, 'laspy', 'simple.las').read_bytes()


# --- interrupts -----------------------------------------------------------------------------

def start_and_wait_for_tiles(source, out):
    """Start the command on ``source`` and return once its tile phase has begun."""
    process = subprocess.Popen([sys.executable, '-m', 'pointcloud_pipeline', 'normals',
                                str(source), '-o', str(out), '--workers', '2',
                                '--tile-size', '100'],
                               cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(out.glob('.normals-tiles.*/results.bin')):
        time.sleep(0.01)
    assert process.poll() is None, process.communicate()
    return process


@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_leaves_no_partial_output_and_no_temporary_files(large_las, tmp_path,
                                                                      signum):
    out = tmp_path / 'out'
    process = start_and_wait_for_tiles(large_las, out)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert '0 written, 0 skipped (up to date), 0 failed, 1 not done (interrupted)' in stdout
    assert 'error:' not in stderr
    assert os.listdir(out) == []


def test_after_sigkill_the_next_run_removes_what_was_left(large_las, tmp_path):
    out = tmp_path / 'out'
    process = start_and_wait_for_tiles(large_las, out)
    process.kill()
    process.communicate(timeout=60)
    left = leftovers(out)
    assert [name for name in left if name.startswith('.normals-tiles.')], left
    assert [name for name in left if name.endswith(PARTIAL_SUFFIX)], left
    result = run_cli(large_las, '-o', out, '--workers', '2')
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(out)) == [MANIFEST, large_las.name]


def test_normals_is_a_command_of_the_cli():
    assert 'normals' in cli.COMMANDS
    module = importlib.import_module(cli.COMMANDS['normals'][0])
    assert module is batch_normals
    parser = cli.command_parser(module, 'pointcloud_pipeline normals')
    help_text = parser.format_help()
    for option in ('--knn', '--radius', '--viewpoint', '--no-always-up', '--dtype', '--tile-size',
                   '--memory-limit', '--workers', '--executor', '--dask-scheduler'):
        assert option in help_text, option
    assert Path(batch_normals.__file__).name == 'normals.py'
