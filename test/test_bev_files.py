"""BEV files: real KITTI BEVs through each PNG encoder decoded by OpenCV and Pillow, the cv2
fallback (fpng made unimportable in a subprocess), npy and npz contents and names, rejections."""
import subprocess
import sys
import zipfile

import cv2
import numpy as np
import pytest

from conftest import REPO_ROOT
from pointcloud_pipeline import bev_files
from pointcloud_pipeline.bev import CHANNELS, BevGrid, bev_image

GRIDS = {'default': BevGrid(), 'complex-yolo': BevGrid.complex_yolo()}
FPNG = pytest.mark.skipif(not bev_files.fpng_installed(),
                          reason=f'fpng is not installed: {bev_files.FPNG_INSTALL}')
ENCODERS = [pytest.param('fpng', marks=FPNG), 'cv2']
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
# a subprocess where fpng cannot be imported, as on a machine without it
WITHOUT_FPNG = '''
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] == 'fpng':
            raise ImportError('fpng is blocked: as if it were not installed')
sys.meta_path.insert(0, Blocker())
'''


@pytest.fixture(scope='module')
def kitti_points(shared_data):
    paths = sorted((shared_data / 'kitti' / 'velodyne').glob('*.bin'))
    assert paths, 'no KITTI scans in the shared data'
    return {p.stem: np.fromfile(p, np.float32).reshape(-1, 4) for p in paths}


def run_python(code, timeout=120):
    return subprocess.run([sys.executable, '-c', code], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize('grid_name', GRIDS)
@pytest.mark.parametrize('encoder', ENCODERS)
def test_png_of_real_scans_decodes_to_the_image(kitti_points, tmp_path, encoder, grid_name):
    for scan, points in kitti_points.items():
        image = bev_image(points, GRIDS[grid_name])
        assert np.count_nonzero(image) > 1000  # a real picture, not a blank one
        path = tmp_path / f'{scan}.png'
        bev_files.write_png(path, image, encoder)
        assert path.read_bytes().startswith(PNG_SIGNATURE)
        decoded = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)  # bgr8, as cv2.imwrite's
        np.testing.assert_array_equal(decoded, image, err_msg=f'{scan} {encoder}')
        written_by_cv2 = tmp_path / f'{scan}.cv2.png'
        assert cv2.imwrite(str(written_by_cv2), image)
        np.testing.assert_array_equal(decoded, cv2.imread(str(written_by_cv2),
                                                          cv2.IMREAD_UNCHANGED))


@pytest.mark.parametrize('encoder', ENCODERS)
def test_png_decodes_with_pillow_as_rgb(kitti_points, tmp_path, encoder):
    image_module = pytest.importorskip(
        'PIL.Image',
        reason='Pillow is not installed (pip install pillow==13.0.0): the second reader')
    image = bev_image(kitti_points['000000'])
    path = tmp_path / 'bev.png'
    bev_files.write_png(path, image, encoder)
    with image_module.open(path) as png:
        assert (png.format, png.mode, png.size) == ('PNG', 'RGB', (image.shape[1], image.shape[0]))
        rgb = np.asarray(png)
    np.testing.assert_array_equal(rgb[..., 0], image[..., 2])  # red = density
    np.testing.assert_array_equal(rgb[..., 1], image[..., 1])  # green = height
    np.testing.assert_array_equal(rgb[..., 2], image[..., 0])  # blue = intensity


def test_cv2_encoder_is_libpng_with_the_fast_settings(kitti_points):
    image = bev_image(kitti_points['000001'])
    png = bev_files.encode_png(image, 'cv2')
    assert bytes(png) == bytes(cv2.imencode('.png', image, bev_files.CV2_PNG_PARAMS)[1])


@FPNG
def test_fpng_is_the_default_where_installed_and_smaller_files_need_cv2(kitti_points):
    assert bev_files.default_png_encoder() == 'fpng'
    assert bev_files.check_png_encoder(None) == 'fpng'
    image = bev_image(kitti_points['000000'])
    fast, small = bev_files.encode_png(image), bev_files.encode_png(image, 'cv2')
    assert fast.startswith(PNG_SIGNATURE) and bytes(fast) != bytes(small)


def test_without_fpng_the_default_is_cv2_and_fpng_is_refused(tmp_path):
    result = run_python(WITHOUT_FPNG + f'''
import numpy as np
from pointcloud_pipeline import bev_files
assert not bev_files.fpng_installed()
assert bev_files.default_png_encoder() == 'cv2'
image = np.zeros((4, 5, 3), np.uint8)
image[1, 2] = (10, 20, 30)
bev_files.write_png({str(tmp_path / 'small.png')!r}, image)
try:
    bev_files.encode_png(image, 'fpng')
except ValueError as error:
    print(error)
''')
    assert result.returncode == 0, result.stderr
    assert 'not installed: pip install fpng==0.1.0' in result.stdout
    expected = np.zeros((4, 5, 3), np.uint8)
    expected[1, 2] = (10, 20, 30)
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / 'small.png'),
                                             cv2.IMREAD_UNCHANGED), expected)


@pytest.mark.parametrize('grid_name', GRIDS)
def test_npy_is_the_float32_image_under_exactly_the_given_name(kitti_points, tmp_path,
                                                               grid_name):
    grid = GRIDS[grid_name]
    image = bev_image(kitti_points['000001'], grid, dtype=np.float32)
    path = tmp_path / '.000001.npy.1234.partial'  # a temporary name: no .npy appended
    bev_files.write_npy(path, image)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    loaded = np.load(path)
    assert loaded.dtype == np.float32 and loaded.shape == (*grid.shape[:2], 3)
    np.testing.assert_array_equal(loaded, image)
    # the documented scaling: the channel values in [0, 1], which the PNG rounds to 1/255
    # (from float64: at a rounding tie the float32 value may fall on the other side)
    assert 0 <= loaded.min() and loaded.max() <= 1
    png = bev_image(kitti_points['000001'], grid)
    assert np.abs(loaded.astype(np.float64) * 255 - png).max() <= 0.5 + 1e-4
    assert np.count_nonzero(np.floor(loaded.astype(np.float64) * 255 + 0.5) != png) < 100
    np.testing.assert_array_equal(np.load(path, mmap_mode='r'), image)


@pytest.mark.parametrize('grid_name', GRIDS)
def test_npz_holds_the_named_arrays_compressed(kitti_points, tmp_path, grid_name):
    grid = GRIDS[grid_name]
    image = bev_image(kitti_points['000000'], grid, dtype=np.float32)
    path = tmp_path / 'bev.partial'
    bev_files.write_npz(path, image, grid)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['bev.partial']
    with np.load(path, allow_pickle=False) as arrays:
        assert sorted(arrays.files) == sorted(bev_files.NPZ_ARRAYS)
        np.testing.assert_array_equal(arrays['bev'], image)
        assert arrays['bev'].dtype == np.float32
        assert arrays['channels'].tolist() == list(CHANNELS)
        assert arrays['resolution'] == grid.resolution
        assert arrays['z_range'].tolist() == list(grid.z_range)
    with zipfile.ZipFile(path) as archive:
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_DEFLATED}
    assert path.stat().st_size < image.nbytes / 20  # sparse BEVs compress well
    loaded, loaded_grid = bev_files.read_npz(path)
    np.testing.assert_array_equal(loaded, image)
    assert loaded_grid == grid


def test_write_bev_dispatches_on_the_format(kitti_points, tmp_path):
    points = kitti_points['000000']
    grid = BevGrid.complex_yolo()
    for file_format in bev_files.FORMATS:
        image = bev_image(points, grid, dtype=bev_files.FORMAT_DTYPES[file_format])
        bev_files.write_bev(tmp_path / f'out.{file_format}', image, file_format, grid=grid,
                            encoder='cv2')
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / 'out.png'), cv2.IMREAD_UNCHANGED),
                                  bev_image(points, grid))
    np.testing.assert_array_equal(np.load(tmp_path / 'out.npy'),
                                  bev_files.read_npz(tmp_path / 'out.npz')[0])


@pytest.mark.parametrize('call,message', [
    (lambda: bev_files.encode_png(np.zeros((4, 4, 3), np.float32)), 'must be uint8'),
    (lambda: bev_files.encode_png(np.zeros((4, 4), np.uint8)), 'rows x cols x 3'),
    (lambda: bev_files.encode_png(np.zeros((0, 4, 3), np.uint8)), 'not empty'),
    (lambda: bev_files.encode_png([[0, 0, 0]]), 'numpy array'),
    (lambda: bev_files.encode_png(np.zeros((4, 4, 3), np.uint8), 'libpng'), 'one of fpng, cv2'),
    (lambda: bev_files.write_npy('x.npy', np.zeros((4, 4, 3), np.uint8)), 'must be float32'),
    (lambda: bev_files.write_npz('x.npz', np.zeros((4, 4, 3), np.float32), BevGrid()),
     'the grid makes (1600, 1600, 3)'),
    (lambda: bev_files.write_npz('x.npz', np.zeros((4, 4, 3), np.float32), None),
     'must be a BevGrid'),
    (lambda: bev_files.write_bev('x.npz', np.zeros((4, 4, 3), np.float32), 'npz'),
     'needs the grid'),
    (lambda: bev_files.write_bev('x.tif', np.zeros((4, 4, 3), np.uint8), 'tif'),
     'one of png, npy, npz'),
])
def test_rejections(tmp_path, monkeypatch, call, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=message.replace('(', r'\(').replace(')', r'\)')):
        call()
    assert not list(tmp_path.iterdir())  # nothing written


def test_keep_large_buffers_applies_in_its_own_process():
    result = run_python('from pointcloud_pipeline import memory\n'
                        'print(memory.keep_large_buffers())')
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == 'True'
