"""GeoTIFF helpers: creation profiles read back with rasterio, the window writer shared by
threads, COG copies (validated by gdalinfo and rasterio), and map_windows: equal to numpy on the
whole raster (hillshade, slope, fill, halo functions), independent of workers and window size
(pixels; file bytes for workers), halo contents at window edges, bounded look-ahead,
interrupts and errors that leave no output."""
from concurrent.futures import ThreadPoolExecutor
import hashlib
import os
import shutil
import subprocess
import threading

import numpy as np
import pytest

from pointcloud_pipeline import geotiff, terrain

rasterio = pytest.importorskip('rasterio', reason='rasterio is not installed: pip install '
                                                  'rasterio==1.4.4')
from affine import Affine  # noqa: E402 (rasterio's dependency)
from rasterio.env import get_gdal_config  # noqa: E402

GDALINFO = shutil.which('gdalinfo')
GEOTRANSFORM = (500000.0, 0.5, 0.0, 4900000.0, 0.0, -0.5)
CRS = 'EPSG:26917'
NODATA = -9999.0


def profile(width=300, height=200, count=1, dtype='float32', nodata=NODATA, crs=CRS,
            **options):
    return geotiff.creation_profile(width=width, height=height, count=count, dtype=dtype,
                                    nodata=nodata, transform=GEOTRANSFORM, crs=crs, **options)


def image_structure(path):
    with rasterio.open(path) as dataset:
        return dataset.tags(ns='IMAGE_STRUCTURE')


def digest(path):
    return hashlib.sha256(open(path, 'rb').read()).hexdigest()


def surface(height, width, seed=0, empty_fraction=0.2):
    """A rough terrain (heights in metres, float32 values) with NaN holes."""
    rng = np.random.default_rng(seed)
    row, col = np.mgrid[0:height, 0:width]
    heights = (20 * np.sin(row / 17.0) * np.cos(col / 23.0) + 0.02 * row * col / 10
               + rng.normal(0, 0.3, (height, width)))
    heights[rng.random((height, width)) < empty_fraction] = np.nan
    heights[40:55, 60:90] = np.nan  # a large hole: fill has cells without donors
    return heights.astype(np.float32).astype(np.float64)


def write_source(path, values, dtype='float32', nodata=NODATA, block_size=64, **options):
    values = np.asarray(values)
    values = values[np.newaxis] if values.ndim == 2 else values
    count, height, width = values.shape
    options = profile(width=width, height=height, count=count, dtype=dtype, nodata=nodata,
                      block_size=block_size, **options)
    with rasterio.open(path, 'w', **options) as dataset:
        dataset.write(np.where(np.isnan(values), nodata, values).astype(dtype)
                      if nodata is not None else values.astype(dtype))
    return path


def read(path, band=1):
    with rasterio.open(path) as dataset:
        return dataset.read(band)


def as_written(values, dtype='float32', nodata=NODATA):
    return np.where(np.isnan(values), nodata, values).astype(dtype)


@pytest.fixture(scope='module')
def dem_file(tmp_path_factory):
    """A 300 x 200 DSM GeoTIFF (float32, nodata -9999, 64 x 64 tiles) and its heights."""
    heights = surface(200, 300)
    path = write_source(tmp_path_factory.mktemp('dem') / 'dem.tif', heights)
    return path, heights


# --- creation_profile -------------------------------------------------------------------------

@pytest.mark.parametrize('compress', geotiff.COMPRESSIONS)
@pytest.mark.parametrize('dtype, predictor', [('float32', '3'), ('float64', '3'),
                                              ('uint8', '2'), ('int16', '2'), ('uint32', '2')])
def test_creation_profile_is_what_rasterio_reads_back(tmp_path, compress, dtype, predictor):
    options = profile(dtype=dtype, nodata=0, block_size=128, compress=compress, num_threads=2)
    path = tmp_path / 'out.tif'
    values = (np.arange(200 * 300).reshape(1, 200, 300) % 251).astype(dtype)
    with rasterio.open(path, 'w', **options) as dataset:
        dataset.write(values)
    with rasterio.open(path) as dataset:
        read_back = dataset.profile
        assert read_back['driver'] == 'GTiff' and read_back['tiled'] is True
        assert (read_back['blockxsize'], read_back['blockysize']) == (128, 128)
        assert dataset.block_shapes == [(128, 128)]
        assert read_back['interleave'] == 'band'
        assert read_back['dtype'] == dtype and read_back['nodata'] == 0
        assert dataset.crs.to_epsg() == 26917
        assert dataset.transform.to_gdal() == GEOTRANSFORM
        structure = dataset.tags(ns='IMAGE_STRUCTURE')
        if compress == 'none':
            assert dataset.compression is None and 'PREDICTOR' not in structure
        else:
            assert dataset.compression.value.lower() == compress
            assert structure['PREDICTOR'] == predictor
        np.testing.assert_array_equal(dataset.read(), values)


def test_creation_profile_defaults_and_transform_forms():
    options = profile()
    assert options['blockxsize'] == options['blockysize'] == geotiff.DEFAULT_BLOCK_SIZE == 256
    assert options['compress'] == 'deflate' and options['predictor'] == 3
    assert options['BIGTIFF'] == 'IF_SAFER' and options['NUM_THREADS'] == 'ALL_CPUS'
    assert 'predictor' not in profile(compress='none')
    from_affine = geotiff.creation_profile(width=3, height=2, count=1, dtype='uint8',
                                           nodata=None, transform=Affine.from_gdal(
                                               *GEOTRANSFORM))
    assert from_affine['transform'] == options['transform'] and from_affine['crs'] is None
    wkt = options['crs'].to_wkt()
    assert profile(crs=wkt)['crs'] == options['crs']


@pytest.mark.parametrize('change, message', [
    ({'block_size': 100}, 'block_size must be a positive multiple of 16'),
    ({'block_size': 0}, 'block_size'),
    ({'compress': 'jpeg'}, 'compress must be one of'),
    ({'width': 0}, 'width must be an integer >= 1'),
    ({'count': 1.5}, 'count must be'),
    ({'dtype': 'complex64'}, 'dtype must be'),
    ({'dtype': 'bool'}, 'dtype must be'),
    ({'dtype': 'uint8', 'nodata': -1}, 'nodata -1.0 is not a value of uint8'),
    ({'dtype': 'float32', 'nodata': 1e40}, 'does not fit float32'),
    ({'transform': (0, 1, 0, 0, 0)}, 'transform must be a GDAL geotransform 6-tuple'),
    ({'transform': 'north-up'}, 'transform'),
    ({'crs': 'EPSG:nonsense'}, 'crs is not a CRS'),
    ({'num_threads': 0}, 'num_threads must be'),
])
def test_creation_profile_rejects_bad_arguments_by_name(change, message):
    arguments = dict(width=10, height=10, count=1, dtype='float32', nodata=NODATA,
                     transform=GEOTRANSFORM, crs=CRS)
    arguments.update(change)
    with pytest.raises(ValueError, match=message):
        geotiff.creation_profile(**arguments)


# --- WindowWriter -----------------------------------------------------------------------------

def test_window_writer_from_two_threads(tmp_path):
    height, width, count = 150, 170, 2
    values = np.random.default_rng(1).normal(size=(count, height, width)).astype(np.float32)
    windows = geotiff.grid_windows(width, height, 16, 16)  # edge windows are clipped
    path = tmp_path / 'out.tif'
    before = get_gdal_config('GDAL_CACHEMAX')
    writers = set()
    with geotiff.WindowWriter(path, profile(width=width, height=height, count=count,
                                            block_size=16),
                              descriptions=['a', 'b'], cache_mb=8) as writer:
        assert get_gdal_config('GDAL_CACHEMAX') == min(8 << 20, before)

        def write(window):
            col, row, w, h = window
            writers.add(threading.get_ident())
            writer.write(window, values[:, row:row + h, col:col + w])

        with ThreadPoolExecutor(2) as pool:
            list(pool.map(write, windows))
    assert get_gdal_config('GDAL_CACHEMAX') == before
    assert writer.windows_written == len(windows) and len(writers) >= 1
    with rasterio.open(path) as dataset:
        np.testing.assert_array_equal(dataset.read(), values)
        assert dataset.descriptions == ('a', 'b') and dataset.nodata == NODATA


def test_window_writer_checks_windows_and_closes_on_error(tmp_path):
    path = tmp_path / 'out.tif'
    options = profile(width=40, height=30, dtype='int16', nodata=-1, block_size=16)
    with pytest.raises(RuntimeError, match='boom'):
        with geotiff.WindowWriter(path, options) as writer:
            writer.write((0, 0, 40, 30), np.full((1, 30, 40), 7, np.int16))
            with pytest.raises(ValueError, match='not inside the raster'):
                writer.write((30, 0, 16, 16), np.zeros((1, 16, 16), np.int16))
            with pytest.raises(ValueError, match='array must have shape'):
                writer.write((0, 0, 16, 16), np.zeros((16, 16), np.int16))
            with pytest.raises(ValueError, match='array must be of int16'):
                writer.write((0, 0, 16, 16), np.zeros((1, 16, 16), np.float32))
            writer.write((0, 0, 2, 1), np.array([[[1, 2]]], np.int8))  # safe cast
            raise RuntimeError('boom')
    assert writer.dataset is None
    with pytest.raises(ValueError, match='not open'):
        writer.write((0, 0, 1, 1), np.zeros((1, 1, 1), np.int16))
    written = read(path)  # closed, so complete and readable
    assert written[0, :3].tolist() == [1, 2, 7] and (written[1:] == 7).all()
    with pytest.raises(ValueError, match='descriptions must be 1 strings'):
        geotiff.WindowWriter(path, options, descriptions=['a', 'b'])
    with pytest.raises(ValueError, match='cache_mb'):
        geotiff.WindowWriter(path, options, cache_mb=0)


# --- copy_to_cog ------------------------------------------------------------------------------

def test_copy_to_cog_is_a_valid_cog_with_overviews(tmp_path):
    values = surface(700, 900, seed=4)
    source = write_source(tmp_path / 'tiled.tif', np.stack([values, values * 2]),
                          block_size=256)
    with rasterio.open(source, 'r+') as dataset:
        dataset.descriptions = ('height', 'double')
    target = tmp_path / 'cog.tif'
    geotiff.copy_to_cog(source, target, block_size=256, compress='zstd')
    assert image_structure(target)['LAYOUT'] == 'COG'
    with rasterio.open(target) as dataset:
        assert dataset.overviews(1) == [2, 4] and dataset.overviews(2) == [2, 4]
        assert dataset.block_shapes == [(256, 256)] * 2
        assert dataset.nodata == NODATA and dataset.crs.to_epsg() == 26917
        assert dataset.descriptions == ('height', 'double')
        assert dataset.transform.to_gdal() == GEOTRANSFORM
        assert dataset.compression.value == 'ZSTD'
        np.testing.assert_array_equal(dataset.read(1), as_written(values))
        overview = dataset.read(1, out_shape=(175, 225))  # the 4x overview, averaged
        assert np.isfinite(overview).all() and (overview != NODATA).mean() > 0.9
    if GDALINFO is None:
        pytest.skip('gdalinfo (Debian gdal-bin) is not installed: the rest checks with it')
    info = subprocess.run([GDALINFO, str(target)], capture_output=True, text=True,
                          check=True).stdout
    assert 'LAYOUT=COG' in info and 'Overviews: 450x350, 225x175' in info


def test_copy_to_cog_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match='resampling must be one of'):
        geotiff.copy_to_cog(tmp_path / 'a.tif', tmp_path / 'b.tif', resampling='magic')
    with pytest.raises(ValueError, match='block_size'):
        geotiff.copy_to_cog(tmp_path / 'a.tif', tmp_path / 'b.tif', block_size=500)


# --- map_windows ------------------------------------------------------------------------------

def slope_window(array, window):
    return terrain.slope(array[0], (0.5, 0.5), threads=1)[1:-1, 1:-1]


def hillshade_window(array, window):
    return terrain.hillshade_byte(terrain.hillshade(array[0], (0.5, 0.5), threads=1)[1:-1, 1:-1])


@pytest.mark.parametrize('workers', [1, 2])
@pytest.mark.parametrize('block_size', [16, 64, 256])
def test_map_windows_equals_the_whole_raster_for_slope_and_hillshade(dem_file, tmp_path,
                                                                     workers, block_size):
    path, heights = dem_file
    slope = terrain.slope(heights, (0.5, 0.5))
    shade = terrain.hillshade_byte(terrain.hillshade(heights, (0.5, 0.5)))
    counts = []
    result = geotiff.map_windows(path, tmp_path / 'slope.tif', slope_window, halo=1,
                                 workers=workers, block_size=block_size,
                                 progress=counts.append)
    windows = -(-300 // block_size) * -(-200 // block_size)
    assert result['windows'] == windows == len(counts) and result['cells'] == 60000
    np.testing.assert_array_equal(read(tmp_path / 'slope.tif'), as_written(slope))
    geotiff.map_windows(path, tmp_path / 'shade.tif', hillshade_window, halo=1,
                        workers=workers, block_size=block_size, dtype='uint8', nodata=0)
    np.testing.assert_array_equal(read(tmp_path / 'shade.tif'), shade)
    with rasterio.open(tmp_path / 'shade.tif') as dataset:
        assert dataset.block_shapes == [(block_size, block_size)] and dataset.nodata == 0
        assert dataset.crs.to_epsg() == 26917 and dataset.transform.to_gdal() == GEOTRANSFORM


@pytest.mark.parametrize('block_size', [16, 64, 256])
def test_map_windows_bytes_do_not_depend_on_workers(dem_file, tmp_path, block_size):
    path, _ = dem_file
    digests = set()
    for workers in (1, 2, 3):
        target = tmp_path / f'slope{workers}.tif'
        geotiff.map_windows(path, target, slope_window, halo=1, workers=workers,
                            block_size=block_size)
        digests.add(digest(target))
    assert len(digests) == 1


@pytest.mark.parametrize('window_size', [1, 4])
@pytest.mark.parametrize('block_size', [16, 64])
def test_map_windows_fill_equals_fill_nodata_on_the_whole_raster(dem_file, tmp_path,
                                                                 window_size, block_size):
    from pointcloud_pipeline.raster import fill_nodata
    path, heights = dem_file
    expected = fill_nodata(heights, np.isnan(heights), window_size)
    assert np.isnan(expected).any() and (~np.isnan(expected)).sum() > np.isfinite(
        heights).sum()  # filled some cells, not the middle of the large hole

    def fill_window(array, window):
        values = array[0]
        filled = fill_nodata(values, np.isnan(values), window_size, threads=1)
        return filled[window_size:-window_size, window_size:-window_size]

    for workers in (1, 2):
        target = tmp_path / f'fill{workers}.tif'
        geotiff.map_windows(path, target, fill_window, halo=window_size, workers=workers,
                            block_size=block_size)
        np.testing.assert_array_equal(read(target), as_written(expected))


@pytest.mark.parametrize('halo', [0, 1, 3, 20])
def test_map_windows_reads_the_halo_padded_with_nan(tmp_path, halo):
    """Every window's array is the NaN-padded raster around it, at the raster's edges too, with
    nodata cells as NaN; the cell (dr, dc) away from each cell comes out right everywhere."""
    height, width = 70, 90
    values = np.arange(height * width, dtype=np.float64).reshape(height, width)
    values[::7, ::5] = np.nan
    path = write_source(tmp_path / 'src.tif', values, dtype='int32', nodata=-1, block_size=16)
    padded = np.pad(values, halo, constant_values=np.nan)
    seen = []

    def shifted(array, window):
        col, row, w, h = window
        assert array.dtype == np.float64 and array.shape == (1, h + 2 * halo, w + 2 * halo)
        np.testing.assert_array_equal(array[0], padded[row:row + h + 2 * halo,
                                                       col:col + w + 2 * halo])
        seen.append(window)
        dr, dc = -min(halo, 2), min(halo, 3)
        return array[0, halo + dr:halo + dr + h, halo + dc:halo + dc + w]

    geotiff.map_windows(path, tmp_path / 'out.tif', shifted, halo=halo, workers=2,
                        block_size=32)
    assert len(seen) == 3 * 3
    dr, dc = -min(halo, 2), min(halo, 3)
    expected = padded[halo + dr:halo + dr + height, halo + dc:halo + dc + width]
    out = read(tmp_path / 'out.tif')
    assert out.dtype == np.int32  # dtype and nodata default to the source's
    np.testing.assert_array_equal(out, np.where(np.isnan(expected), -1, expected))


def test_map_windows_uses_the_source_blocks_and_keeps_few_windows_in_memory(dem_file, tmp_path):
    """Windows default to the source's 64 x 64 tiles; at most 2 windows per worker are read,
    computed or waiting for their turn at any time."""
    path, heights = dem_file
    lock = threading.Lock()
    started, written, most = [0], [0], [0]

    def identity(array, window):
        with lock:
            started[0] += 1
            most[0] = max(most[0], started[0] - written[0])
        return array[0]

    def progress(count):
        with lock:
            written[0] += count

    counters = geotiff.map_windows(path, tmp_path / 'out.tif', identity, workers=2,
                                   progress=progress)
    assert counters['windows'] == 5 * 4 and written[0] == 20
    assert 1 <= most[0] <= 2 * 2
    with rasterio.open(tmp_path / 'out.tif') as dataset:
        assert dataset.block_shapes == [(64, 64)]
        np.testing.assert_array_equal(dataset.read(1), as_written(heights))


def test_map_windows_several_bands_dtype_rounding_and_descriptions(tmp_path):
    values = np.linspace(-2, 300, 40 * 50).reshape(40, 50)
    values[3, 4] = np.nan
    path = write_source(tmp_path / 'src.tif', values, dtype='float64', block_size=16)

    def two_bands(array, window):
        return np.stack([array[0], array[0] + 0.5])

    target = tmp_path / 'out.tif'
    geotiff.map_windows(path, target, two_bands, dtype='int16', nodata=-32768,
                        descriptions=['value', 'value + 0.5'], compress='lzw')
    with rasterio.open(target) as dataset:
        assert dataset.count == 2 and dataset.dtypes == ('int16', 'int16')
        assert dataset.descriptions == ('value', 'value + 0.5') and dataset.nodata == -32768
        assert dataset.compression.value == 'LZW'
        first, second = dataset.read()
    assert first[3, 4] == second[3, 4] == -32768
    valid = ~np.isnan(values)
    np.testing.assert_array_equal(first[valid], np.rint(values[valid]))
    np.testing.assert_array_equal(second[valid], np.rint(values[valid] + 0.5))


def test_map_windows_cog(dem_file, tmp_path):
    path, heights = dem_file
    target = tmp_path / 'slope.tif'
    geotiff.map_windows(path, target, slope_window, halo=1, block_size=16, cog=True)
    assert image_structure(target)['LAYOUT'] == 'COG'
    np.testing.assert_array_equal(read(target), as_written(terrain.slope(heights, (0.5, 0.5))))
    assert sorted(os.listdir(tmp_path)) == ['slope.tif']  # the tiled temporary is gone


@pytest.mark.parametrize('cog', [False, True])
def test_map_windows_stops_when_asked_and_leaves_no_output(dem_file, tmp_path, cog):
    path, _ = dem_file
    finished = []

    def should_stop():
        return len(finished) >= 5

    with pytest.raises(InterruptedError):
        geotiff.map_windows(path, tmp_path / 'out.tif', slope_window, halo=1, workers=2,
                            block_size=16, cog=cog, should_stop=should_stop,
                            progress=finished.append)
    assert 5 <= len(finished) < 300 / 16 * 200 / 16
    assert os.listdir(tmp_path) == []


def test_map_windows_errors_leave_no_output(dem_file, tmp_path):
    path, _ = dem_file

    def failing(array, window):
        if window[:2] == (64, 64):
            raise ZeroDivisionError('bad window')
        return array[0]

    with pytest.raises(ZeroDivisionError, match='bad window'):
        geotiff.map_windows(path, tmp_path / 'out.tif', failing, workers=2, block_size=32)
    with pytest.raises(ValueError, match=r'func returned shape \(1, 3, 3\)'):
        geotiff.map_windows(path, tmp_path / 'out.tif', lambda array, window: np.zeros((1, 3, 3)))
    with pytest.raises(ValueError, match='output has no nodata value'):
        geotiff.map_windows(path, tmp_path / 'out.tif', lambda array, window: array,
                            dtype='uint8')
    assert os.listdir(tmp_path) == []
    for bad, message in (({'halo': -1}, 'halo must be'), ({'workers': -2}, 'workers must be'),
                         ({'block_size': 20}, 'block_size'), ({'bands': [2]}, 'bands must be'),
                         ({'compress': 'zip'}, 'compress must be')):
        with pytest.raises(ValueError, match=message):
            geotiff.map_windows(path, tmp_path / 'out.tif', lambda a, w: a, **bad)
    assert os.listdir(tmp_path) == []
