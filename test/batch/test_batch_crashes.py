"""Every batch tool (bev, normals, raster, raster-map) killed with SIGKILL at random moments of a
run over real files, then rerun into the same output directory; and an output directory on a
small file system that fills up.

After a kill: every file under a final name opens (PNG decodes, LAS reads with laspy, GeoTIFF
reads with rasterio) and equals an uninterrupted run's byte for byte; the rerun exits 0, leaves
no hidden temporary (``.NAME.*.partial``, ``.TOOL-tiles.*``: it removes those of dead
processes) and makes exactly the uninterrupted run's outputs. The kill moments come from fixed
seeds: a random time into the run, or a random delay after a hidden temporary appears (in the
middle of writing an output). A full disk (a tmpfs of a few hundred kB, where this machine
lets us mount one): the input whose output does not fit fails with ``error: INPUT: ... No space
left on device``, exit 1, no partial output; the other inputs are written.
"""
import os
import shutil
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from conftest import REPO_ROOT
from pointcloud_pipeline import files
from pointcloud_pipeline.files import PARTIAL_SUFFIX

laspy = pytest.importorskip('laspy', reason='laspy is not installed: pip install '
                                            '-r requirements.txt')
rasterio = pytest.importorskip('rasterio', reason='rasterio is not installed: pip install '
                                                  '-r requirements.txt')

TOOLS = ('bev', 'normals', 'raster', 'raster-map')
# (seed, how the kill moment is chosen): 'time' = uniform over the uninterrupted run's duration,
# 'writing' = a random delay (0..20 ms) after the first hidden temporary appears
KILLS = ((11, 'time'), (12, 'writing'), (13, 'time'), (14, 'writing'))
RASTER_OPTIONS = ('--resolution', '5', '--compress', 'none')
LAS_INPUTS = (('laspy', 'simple.las'), ('laspy', 'simple.laz'), ('laspy', '1_4_w_evlr.las'),
              ('pdal', 'test1_4.las'), ('lidr', 'MixedConifer.laz'))
BEV_COPIES = 40
POLL_S = 0.001
RUN_TIMEOUT_S = 120


def command(tool, inputs, out_dir, *options, operation='hillshade'):
    """``python -m pointcloud_pipeline TOOL ...``: raster with RASTER_OPTIONS (before
    ``options``, which may override them), raster-map with ``operation``."""
    arguments = [operation] if tool == 'raster-map' else []
    if tool == 'raster':
        arguments += RASTER_OPTIONS
    return [sys.executable, '-m', 'pointcloud_pipeline', tool, *arguments, *map(str, inputs),
            '-o', str(out_dir), '--no-progress', *options]


def run_tool(tool, inputs, out_dir, *options, operation='hillshade'):
    return subprocess.run(command(tool, inputs, out_dir, *options, operation=operation),
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)


def manifest_name(tool):
    return f'.{tool}.manifest.json'


def is_temporary(tool, name):
    """A hidden temporary a killed run may leave: ``.NAME.*.partial`` or ``.TOOL-tiles.*``."""
    return name.startswith('.') and (name.endswith(PARTIAL_SUFFIX)
                                     or name.startswith(f'.{tool}-tiles.'))


def check_opens(path):
    """Open an output the way its users would; fails on a partial or corrupt file."""
    if path.suffix == '.png':
        image = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
        assert image is not None and image.size, path
    elif path.suffix in ('.las', '.laz'):
        las = laspy.read(path)
        assert len(las.points) == las.header.point_count, path
    else:
        with rasterio.open(path) as raster:
            assert raster.read().shape == (raster.count, raster.height, raster.width), path


def final_outputs(tool, out_dir):
    """{name: bytes} of the files under a final name (every name but the manifest and the
    temporaries, which must be the only hidden ones), each opened and checked."""
    outputs = {}
    for path in sorted(out_dir.iterdir()):
        if path.name.startswith('.'):
            assert path.name == manifest_name(tool) or is_temporary(tool, path.name), path
            continue
        check_opens(path)
        outputs[path.name] = path.read_bytes()
    return outputs


def link_inputs(sources, directory):
    directory.mkdir()
    for name, source in sources.items():
        if os.stat(source).st_dev == os.stat(directory).st_dev:
            os.link(source, directory / name)
        else:
            shutil.copy(source, directory / name)
    return directory


@pytest.fixture(scope='module')
def crash_inputs(shared_data, tmp_path_factory):
    """{tool: input directory} of real files: 40 names for the 2 KITTI scans, 5 LAS/LAZ files,
    and for raster-map the raster tool's GeoTIFFs of them."""
    base = tmp_path_factory.mktemp('crash_inputs')
    scans = sorted((shared_data / 'kitti' / 'velodyne').glob('*.bin'))
    las_files = [shared_data.joinpath('las', *parts) for parts in LAS_INPUTS]
    if not scans or not all(path.is_file() for path in las_files):
        pytest.skip(f'KITTI scans or LAS files missing in {shared_data}')
    inputs = {'bev': link_inputs({f'scan_{i:03d}.bin': scans[i % len(scans)]
                                  for i in range(BEV_COPIES)}, base / 'kitti')}
    inputs['normals'] = link_inputs({path.name: path for path in las_files}, base / 'las')
    inputs['raster'] = link_inputs({path.name: path for path in las_files
                                    if path.name != 'simple.laz'}, base / 'las_for_raster')
    made = run_tool('raster', [inputs['raster']], base / 'tif')
    assert made.returncode == 0, made.stderr
    os.unlink(base / 'tif' / manifest_name('raster'))
    inputs['raster-map'] = base / 'tif'
    return inputs


@pytest.fixture(scope='module')
def references(crash_inputs, tmp_path_factory):
    """{tool: ({name: bytes} of an uninterrupted run, its duration s)}."""
    base = tmp_path_factory.mktemp('crash_references')
    result = {}
    for tool in TOOLS:
        start = time.monotonic()
        done = run_tool(tool, [crash_inputs[tool]], base / tool)
        duration = time.monotonic() - start
        assert done.returncode == 0, done.stderr
        names = sorted(os.listdir(base / tool))
        assert names == sorted([manifest_name(tool), *final_outputs(tool, base / tool)]), names
        result[tool] = (final_outputs(tool, base / tool), duration)
    return result


def kill_at_random_moment(tool, inputs, out_dir, seed, mode, duration):
    """Start the tool, SIGKILL it at the moment ``seed`` and ``mode`` choose; returns whether
    it was still running when killed."""
    rng = np.random.default_rng(seed)
    process = subprocess.Popen(command(tool, inputs, out_dir), cwd=REPO_ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if mode == 'time':
            time.sleep(rng.uniform(0.1, duration))
        else:
            deadline = time.monotonic() + RUN_TIMEOUT_S
            while process.poll() is None and time.monotonic() < deadline:
                if out_dir.is_dir() and any(is_temporary(tool, name)
                                            for name in os.listdir(out_dir)):
                    break
                time.sleep(POLL_S)
            time.sleep(rng.uniform(0, 0.02))
        running = process.poll() is None
        process.kill()
    finally:
        process.wait(timeout=RUN_TIMEOUT_S)
    return running


@pytest.mark.parametrize('tool', TOOLS)
def test_sigkill_at_random_moments_then_a_rerun_gives_the_uninterrupted_bytes(
        tool, crash_inputs, references, tmp_path):
    expected, duration = references[tool]
    killed_running = 0
    for seed, mode in KILLS:
        out_dir = tmp_path / f'out_{seed}'
        killed_running += kill_at_random_moment(tool, [crash_inputs[tool]], out_dir, seed,
                                                mode, duration)
        if out_dir.is_dir():  # a kill before the output directory was made leaves nothing
            left = final_outputs(tool, out_dir)
            for name, data in left.items():
                assert data == expected[name], f'{name} after the kill (seed {seed})'
        rerun = run_tool(tool, [crash_inputs[tool]], out_dir)
        assert rerun.returncode == 0, (seed, rerun.stderr)
        names = sorted(os.listdir(out_dir))
        assert names == sorted([manifest_name(tool), *expected]), (seed, names)
        assert final_outputs(tool, out_dir) == expected, seed
    assert killed_running, 'every kill came after the run had ended: nothing was tested'


def test_only_the_temporaries_of_dead_writers_of_this_host_are_removed(tmp_path):
    live = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    try:
        host = files.host_label()
        names = {
            'dead': f'.a.png.{host}.{dead.pid}-1.x1{PARTIAL_SUFFIX}',
            'live': f'.b.png.{host}.{live.pid}-{files.process_start_time(live.pid)}.x2'
                    f'{PARTIAL_SUFFIX}',
            # the pid of a live process, but another start time: that pid was reused
            'reused': f'.c.png.{host}.{live.pid}-1.x3{PARTIAL_SUFFIX}',
            'other_host': f'.d.png.otherhost.{dead.pid}-1.x4{PARTIAL_SUFFIX}',
            'no_owner': f'.e.png.x5{PARTIAL_SUFFIX}',
            'output': 'f.png',
        }
        for name in names.values():
            (tmp_path / name).write_bytes(b'x')
        # a temporary made by atomic_output now names this (live) process
        with files.atomic_output(tmp_path / 'g.png') as temporary:
            removed = sorted(files.remove_stale_partials(tmp_path))
            assert removed == sorted(str(tmp_path / names[key]) for key in ('dead', 'reused'))
            assert os.path.exists(temporary)
        left = sorted(os.listdir(tmp_path))
        assert left == sorted([names['live'], names['other_host'], names['no_owner'],
                               names['output'], 'g.png'])
    finally:
        live.kill()
        live.wait()


# --- full disk ------------------------------------------------------------------------------

@pytest.fixture
def small_filesystem(tmp_path):
    """``mount(size_kb)``: a tmpfs of that size on a new directory (unmounted at the end);
    skips the test where this machine does not allow mounting one (not root, a container)."""
    mounted = []

    def mount(size_kb):
        point = tmp_path / f'small_{len(mounted)}'
        point.mkdir()
        done = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size_kb}k,mode=0755',
                               'tmpfs', str(point)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f'cannot mount a small tmpfs here ({done.stderr.strip()}): a full disk '
                        'is not tested')
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(['umount', str(point)], check=True)


def full_disk_case(tool, shared_data, directory):
    """(inputs in run order, the one whose output does not fit, tmpfs size kB, options,
    raster-map operation)."""
    las = shared_data / 'las'
    small_las = [las / 'laspy' / '1_4_w_evlr.las', las / 'pdal' / 'test1_4.las']
    if tool == 'bev':
        scan = (shared_data / 'kitti' / 'velodyne' / '000001.bin').read_bytes()
        directory.mkdir()
        small_a, big, small_b = (directory / f'{n}.bin' for n in ('a_small', 'b_big', 'c_small'))
        small_a.write_bytes(scan[:16 * 3000])  # the first 3000 points of a real scan
        big.write_bytes(scan)  # a 151 kB PNG with OpenCV's encoder (fpng's: 319 kB)
        small_b.write_bytes(scan[16 * 3000:16 * 6000])
        return [small_a, big, small_b], big, 100, ('--png-encoder', 'cv2'), None
    if tool == 'normals':  # MixedConifer's tiles and output need 2.5 MB, the others 130 kB
        big = las / 'lidr' / 'MixedConifer.laz'
        return [small_las[0], big, small_las[1]], big, 400, (), None
    # 16-cell blocks: the small rasters (101 x 2 cells) take a few kB uncompressed
    options = ('--compress', 'none', '--block-size', '16')
    if tool == 'raster':  # simple.las: 674 x 929 cells x 8 float32 bands, 19 MB
        big = las / 'laspy' / 'simple.las'
        return [small_las[0], big, small_las[1]], big, 400, options, None
    made = run_tool('raster', [small_las[0], las / 'laspy' / 'simple.las', small_las[1]],
                    directory)
    assert made.returncode == 0, made.stderr
    tifs = [directory / name for name in ('1_4_w_evlr.tif', 'simple.tif', 'test1_4.tif')]
    # simple.tif filled: 674 x 929 float32 cells, 2.5 MB
    return tifs, tifs[1], 400, (*options, '--window-size', '10'), 'fill'


@pytest.mark.parametrize('tool', ['bev', 'normals', 'raster', 'raster-map'])
def test_a_full_disk_fails_the_file_that_does_not_fit_and_writes_the_others(
        tool, shared_data, small_filesystem, tmp_path):
    inputs, big, size_kb, options, operation = full_disk_case(tool, shared_data,
                                                              tmp_path / 'inputs')
    small = [path for path in inputs if path != big]
    reference = run_tool(tool, small, tmp_path / 'reference', *options, operation=operation)
    assert reference.returncode == 0, reference.stderr
    expected = final_outputs(tool, tmp_path / 'reference')
    out_dir = small_filesystem(size_kb) / 'out'

    result = run_tool(tool, inputs, out_dir, '--workers', '1', *options, operation=operation)
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith('error: ')]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(f'error: {big}: '), errors
    assert 'Traceback' not in result.stderr
    assert sorted(os.listdir(out_dir)) == sorted([manifest_name(tool), *expected])
    assert final_outputs(tool, out_dir) == expected
    assert errors[0].endswith('No space left on device'), errors
