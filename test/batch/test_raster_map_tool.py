"""The raster-map command end to end: hillshade, slope and fill of a real DSM (Megaplot) equal the
kernels on the whole raster and gdaldem's files; output naming, resume, --cog; bad inputs
(not a raster, no such band, no or a rotated geotransform), an unwritable output and usage
errors are reported by name with the runner's exit codes and leave no partial file; an interrupt
(should_stop, SIGINT) leaves nothing."""
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

from conftest import REPO_ROOT
from pointcloud_pipeline import terrain
from pointcloud_pipeline.batch import cli, raster_map, runner
import reference_terrain as reference

rasterio = pytest.importorskip('rasterio', reason='rasterio is not installed: pip install '
                                                  'rasterio==1.4.4')
from affine import Affine  # noqa: E402 (rasterio's dependency)

GDALDEM = shutil.which('gdaldem')
SUMMARY = re.compile(r'^raster-map: (\d+) files: (\d+) written, (\d+) skipped \(up to date\), '
                     r'(\d+) failed.* -> .*; (\d+) windows, (\d+) cells, [\d.]+ s, '
                     r'[\d.]+ Mcells/s$', re.MULTILINE)
MANIFEST = '.raster-map.manifest.json'
NODATA = -9999.0
RESOLUTION = 1.0
QUANTUM = 1 / 128  # heights that float32 adds exactly: gdaldem's results are then the kernel's


@pytest.fixture(scope='module')
def dsm(shared_data):
    """A 1 m max-height DSM of Megaplot.laz (NaN = empty), heights on a 1/128 m grid, and its
    geotransform."""
    laspy = pytest.importorskip('laspy', reason='laspy is not installed: pip install '
                                                'laspy==2.7.0 lazrs==0.8.2')
    path = shared_data / 'las' / 'lidr' / 'Megaplot.laz'
    if not path.is_file():
        pytest.skip(f'{path} is not in the shared data')
    las = laspy.read(path)
    heights, transform = reference.max_grid(np.asarray(las.x), np.asarray(las.y),
                                            np.asarray(las.z), RESOLUTION)
    return np.round(heights / QUANTUM) * QUANTUM, transform


def write_raster(path, values, transform=(500000.0, 1.0, 0.0, 4900000.0, 0.0, -1.0),
                 dtype='float32', nodata=NODATA, crs='EPSG:26917', block_size=None):
    """Write ``values`` (NaN -> nodata) as a GeoTIFF; ``transform=None``: no geotransform."""
    values = np.asarray(values)
    values = values[np.newaxis] if values.ndim == 2 else values
    options = {'tiled': True, 'blockxsize': block_size, 'blockysize': block_size} \
        if block_size else {}
    if transform is not None:
        options['transform'] = Affine.from_gdal(*transform)
    with warnings.catch_warnings():  # no transform: rasterio warns, as it should
        warnings.simplefilter('ignore', rasterio.errors.NotGeoreferencedWarning)
        dataset = rasterio.open(path, 'w', driver='GTiff', width=values.shape[2],
                                height=values.shape[1], count=values.shape[0], dtype=dtype,
                                nodata=nodata, crs=crs, **options)
    with dataset:
        dataset.write(np.where(np.isnan(values), nodata, values).astype(dtype)
                      if nodata is not None else values.astype(dtype))
    return path


@pytest.fixture
def dsm_file(dsm, tmp_path):
    heights, transform = dsm
    (tmp_path / 'in').mkdir()
    return write_raster(tmp_path / 'in' / 'dsm.tif', heights, transform)


def run_here(capsys, *args):
    """raster-map in this process: (exit code, stdout, stderr)."""
    code = raster_map.main([*map(str, args), '--no-progress'])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def summary_of(stdout, stderr=''):
    match = SUMMARY.search(stdout)
    assert match, stdout + stderr
    names = ('total', 'written', 'skipped', 'failed', 'windows', 'cells')
    return dict(zip(names, map(int, match.groups())))


def read(path):
    with rasterio.open(path) as dataset:
        return dataset.read(1), dataset.profile, dataset.descriptions


def without_nodata(values, nodata):
    return np.where(values == nodata, np.nan, values.astype(np.float64))


def hidden(directory):
    return sorted(name for name in os.listdir(directory)
                  if name.startswith('.') and name != MANIFEST)


# --- results ----------------------------------------------------------------------------------

@pytest.mark.parametrize('operation, options', [
    ('hillshade', []), ('hillshade', ['--azimuth', '200', '--altitude', '30', '--z-factor', '2']),
    ('slope', []), ('slope', ['--units', 'percent', '--z-factor', '0.5']),
    ('fill', ['--window-size', '3'])])
def test_each_operation_equals_the_kernel_on_the_whole_raster(dsm, dsm_file, tmp_path, capsys,
                                                              operation, options):
    heights, transform = dsm
    target = tmp_path / 'out' / f'{operation}.tif'
    code, stdout, stderr = run_here(capsys, operation, dsm_file, '-o', target, *options,
                                    '--block-size', '32', '--workers', '2')
    assert code == 0, stderr
    summary = summary_of(stdout, stderr)
    rows, cols = heights.shape
    assert summary['written'] == 1 and summary['cells'] == rows * cols
    assert summary['windows'] == -(-rows // 32) * -(-cols // 32)
    values, profile, descriptions = read(target)
    assert profile['transform'].to_gdal() == transform and profile['crs'].to_epsg() == 26917
    assert (profile['blockxsize'], profile['blockysize']) == (32, 32)
    named = dict(zip(options[::2], options[1::2]))
    z_factor = float(named.get('--z-factor', 1))
    if operation == 'hillshade':
        expected = terrain.hillshade_byte(terrain.hillshade(
            heights, (RESOLUTION, RESOLUTION), azimuth=float(named.get('--azimuth', 315)),
            altitude=float(named.get('--altitude', 45)), z_factor=z_factor))
        assert profile['dtype'] == 'uint8' and profile['nodata'] == 0
        assert descriptions == ('hillshade',)
    elif operation == 'slope':
        units = named.get('--units', 'degrees')
        expected = terrain.slope(heights, (RESOLUTION, RESOLUTION), units=units,
                                 z_factor=z_factor)
        expected = np.where(np.isnan(expected), NODATA, expected).astype(np.float32)
        assert profile['dtype'] == 'float32' and profile['nodata'] == NODATA
        assert descriptions == (f'slope ({units})',)
    else:
        from pointcloud_pipeline.raster import fill_nodata
        expected = fill_nodata(heights, np.isnan(heights), 3)
        assert (~np.isnan(expected)).sum() > (~np.isnan(heights)).sum()
        expected = np.where(np.isnan(expected), NODATA, expected).astype(np.float32)
        assert profile['dtype'] == 'float32' and profile['nodata'] == NODATA
    np.testing.assert_array_equal(values, expected)
    assert hidden(target.parent) == []


@pytest.mark.skipif(GDALDEM is None, reason='gdaldem (Debian gdal-bin) is not installed: '
                                            'apt install gdal-bin')
@pytest.mark.parametrize('operation, options', [('hillshade', []), ('slope', []),
                                                ('slope', ['-p'])])
def test_the_outputs_equal_gdaldem(dsm_file, tmp_path, capsys, operation, options):
    """On a DSM whose heights float32 adds exactly: the same pixels as gdaldem's file (see
    test_terrain.py for the hillshade's possible 1-level differences on other heights)."""
    ours = tmp_path / 'ours.tif'
    mine = ['--units', 'percent'] if options == ['-p'] else []
    code, _, stderr = run_here(capsys, operation, dsm_file, '-o', ours, *mine)
    assert code == 0, stderr
    theirs = tmp_path / 'gdaldem.tif'
    subprocess.run([GDALDEM, operation, '-q', str(dsm_file), str(theirs), *options],
                   check=True, capture_output=True)
    values, profile, _ = read(ours)
    expected, expected_profile, _ = read(theirs)
    assert (profile['dtype'], profile['nodata']) == (expected_profile['dtype'],
                                                     expected_profile['nodata'])
    np.testing.assert_array_equal(values, expected)
    assert (values == expected_profile['nodata']).sum() > 1000


def test_a_directory_of_inputs_resume_and_output_names(tmp_path, capsys):
    inputs = tmp_path / 'in'
    inputs.mkdir()
    rng = np.random.default_rng(5)
    for name in ('a.tif', 'b.TIFF'):
        write_raster(inputs / name, rng.uniform(0, 50, (70, 90)))
    (inputs / 'notes.txt').write_text('not an input')
    out = tmp_path / 'out'
    code, stdout, stderr = run_here(capsys, 'slope', inputs, '-o', out)
    assert code == 0, stderr
    assert summary_of(stdout)['written'] == 2
    assert sorted(os.listdir(out)) == [MANIFEST, 'a.tif', 'b.TIFF']
    code, stdout, _ = run_here(capsys, 'slope', inputs, '-o', out)
    assert code == 0 and summary_of(stdout)['skipped'] == 2
    code, stdout, _ = run_here(capsys, 'slope', inputs, '-o', out, '--units', 'percent')
    assert code == 0 and summary_of(stdout)['written'] == 2  # other settings: redone


def test_cog_output(tmp_path, capsys):
    source = write_raster(tmp_path / 'dem.tif', np.random.default_rng(2).uniform(0, 9, (600, 700)))
    out = tmp_path / 'out'
    code, _, stderr = run_here(capsys, 'hillshade', source, '-o', out, '--cog',
                               '--block-size', '128', '--compress', 'zstd')
    assert code == 0, stderr
    with rasterio.open(out / 'dem.tif') as dataset:
        assert dataset.tags(ns='IMAGE_STRUCTURE')['LAYOUT'] == 'COG'
        assert dataset.overviews(1) and dataset.nodata == 0
        assert dataset.compression.value == 'ZSTD'
    assert hidden(out) == []


def test_fill_keeps_an_integer_type_and_its_nodata(tmp_path, capsys):
    from pointcloud_pipeline.raster import fill_nodata
    values = np.random.default_rng(7).integers(0, 1000, (50, 60)).astype(np.float64)
    values[np.random.default_rng(8).random(values.shape) < 0.3] = np.nan
    source = write_raster(tmp_path / 'counts.tif', values, dtype='int16', nodata=-1,
                          transform=None, crs=None)  # fill needs no geotransform
    code, _, stderr = run_here(capsys, 'fill', source, '-o', tmp_path / 'out',
                               '--window-size', '2', '--block-size', '16')
    assert code == 0, stderr
    filled, profile, _ = read(tmp_path / 'out' / 'counts.tif')
    assert profile['dtype'] == 'int16' and profile['nodata'] == -1
    expected = fill_nodata(values, np.isnan(values), 2)
    np.testing.assert_array_equal(filled, np.where(np.isnan(expected), -1, np.rint(expected)))


# --- bad inputs, usage errors -----------------------------------------------------------------

def test_bad_inputs_are_reported_by_name_and_leave_nothing(tmp_path, capsys):
    inputs = tmp_path / 'in'
    inputs.mkdir()
    good = write_raster(inputs / 'good.tif', np.random.default_rng(1).uniform(0, 5, (40, 40)))
    (inputs / 'text.tif').write_text('this is not a GeoTIFF\n')
    write_raster(inputs / 'bare.tif', np.ones((20, 20)), transform=None, crs=None)
    write_raster(inputs / 'rotated.tif', np.ones((20, 20)),
                 transform=(500000.0, 1.0, 0.2, 4900000.0, 0.1, -1.0))
    out = tmp_path / 'out'
    code, stdout, stderr = run_here(capsys, 'slope', inputs, '-o', out, '--cog')
    assert code == 1
    assert summary_of(stdout)['written'] == 1 and summary_of(stdout)['failed'] == 3
    assert re.search(r'error: .*text\.tif: not a readable raster \(rasterio\.', stderr), stderr
    assert re.search(r'error: .*bare\.tif: has no geotransform: slope needs the cell size',
                     stderr), stderr
    assert re.search(r'error: .*rotated\.tif: its geotransform is not north-up', stderr), stderr
    assert sorted(os.listdir(out)) == [MANIFEST, 'good.tif']
    code, _, stderr = run_here(capsys, 'hillshade', good, '-o', out / 'x.tif', '--band', '2')
    assert code == 1 and re.search(r'error: .*good\.tif: has no band 2 \(it has 1\)', stderr)
    assert sorted(os.listdir(out)) == [MANIFEST, 'good.tif']


def test_an_unwritable_output_and_an_output_replacing_its_input(tmp_path, capsys):
    source = write_raster(tmp_path / 'dem.tif', np.ones((20, 20)))
    blocker = tmp_path / 'file'
    blocker.write_text('a file, not a directory')
    code, _, stderr = run_here(capsys, 'slope', source, '-o', blocker / 'out')
    assert code == 1 and f'cannot create {blocker / "out"}' in stderr
    before = source.read_bytes()
    code, _, stderr = run_here(capsys, 'slope', source, '-o', tmp_path)
    assert code == 1 and 'would replace the input' in stderr
    assert source.read_bytes() == before
    assert hidden(tmp_path) == []


@pytest.mark.parametrize('arguments, message', [
    (['fill'], 'fill needs --window-size'),
    (['slope', '--azimuth', '10'], '--azimuth is an option of hillshade, not of slope'),
    (['hillshade', '--units', 'percent'], '--units is an option of slope'),
    (['hillshade', '--window-size', '2'], '--window-size is an option of fill'),
    (['fill', '--window-size', '0'], 'must be >= 1'),
    (['fill', '--window-size', '5000'], '--window-size must be at most 4096'),
    (['hillshade', '--altitude', '100'], '--altitude must be from 0 to 90'),
    (['slope', '--z-factor', '-1'], 'must be a number > 0'),
    (['slope', '--block-size', '20'], 'must be a multiple of 16'),
    (['slope', '--compress', 'jpeg'], 'invalid choice'),
    (['slope', '--executor', 'processes'], '--executor processes and --dask-scheduler are not'),
    (['aspect'], 'invalid choice'),
])
def test_usage_errors_exit_2(tmp_path, capsys, arguments, message):
    source = write_raster(tmp_path / 'dem.tif', np.ones((20, 20)))
    with pytest.raises(SystemExit) as exit_info:
        raster_map.main([arguments[0], str(source), '-o', str(tmp_path / 'out'),
                         *arguments[1:]])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / 'out').exists()


def test_output_file_needs_exactly_one_input(tmp_path, capsys):
    source = write_raster(tmp_path / 'dem.tif', np.ones((20, 20)))
    with pytest.raises(SystemExit) as exit_info:
        raster_map.main(['slope', str(source), str(source), '-o', str(tmp_path / 'x.tif')])
    assert exit_info.value.code == 2 and 'exactly one input file' in capsys.readouterr().err


# --- interrupts -------------------------------------------------------------------------------

def test_should_stop_discards_the_file_at_hand(tmp_path):
    source = write_raster(tmp_path / 'dem.tif', np.random.default_rng(3).uniform(0, 9, (300, 300)))
    tool = raster_map.RasterMapTool('slope', block_size=16, cog=True)
    calls = [0]

    def should_stop():
        calls[0] += 1
        return calls[0] > 20

    parallelism = runner.Parallelism('threads', 2, None, should_stop, False)
    out = tmp_path / 'out'
    out.mkdir()
    outcome = runner.run_job(tool, str(source), str(out / 'dem.tif'), parallelism)
    assert outcome.error is not None and 'InterruptedError' in outcome.error
    assert os.listdir(out) == []


def test_sigint_leaves_no_partial_output(tmp_path):
    values = np.random.default_rng(4).uniform(0, 9, (3000, 3000))
    values[np.random.default_rng(5).random(values.shape) < 0.6] = np.nan
    source = write_raster(tmp_path / 'dem.tif', values, block_size=256)
    out = tmp_path / 'out'
    process = subprocess.Popen([sys.executable, '-m', 'pointcloud_pipeline.batch.raster_map',
                                'fill', str(source), '-o', str(out), '--window-size', '24',
                                '--workers', '2', '--cog'],
                               cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not [
            name for name in (os.listdir(out) if out.is_dir() else [])
            if name.endswith('.tiled.partial')]:
        time.sleep(0.01)
    assert process.poll() is None, process.communicate()
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert '0 written, 0 skipped (up to date), 0 failed, 1 not done (interrupted)' in stdout
    assert 'error:' not in stderr
    assert os.listdir(out) == []


def test_raster_map_is_a_command_of_the_cli():
    assert cli.COMMANDS['raster-map'][0] == 'pointcloud_pipeline.batch.raster_map'
    result = subprocess.run([sys.executable, '-m', 'pointcloud_pipeline', 'raster-map', '--help'],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for option in ('hillshade', '--azimuth', '--altitude', '--z-factor', '--units',
                   '--window-size', '--band', '--compress', '--block-size', '--cog',
                   '--workers'):
        assert option in result.stdout, option
