"""Slope and hillshade kernels: against the real ``gdaldem`` on a DSM of real LiDAR (Megaplot),
against the numpy reference on the whole raster, on analytic planes; gdaldem's no-data rules
(border, no-data neighbours, nodata_mask), thread independence, the GIL and every rejection."""
import math
from pathlib import Path
import shutil
import subprocess

import numpy as np
import pytest

from gil_probe import gil_probe
from pointcloud_pipeline import terrain
import reference_terrain as reference

rasterio = pytest.importorskip('rasterio', reason='rasterio is not installed: pip install '
                                                  'rasterio==1.4.4')
GDALDEM = shutil.which('gdaldem')
needs_gdaldem = pytest.mark.skipif(GDALDEM is None, reason='gdaldem (Debian gdal-bin) is not '
                                                           'installed: apt install gdal-bin')
RESOLUTION = 1.0  # metres: Megaplot (about 1.5 points/m2) leaves 17 % of the cells empty
QUANTUM = 1 / 128  # metres: heights on this grid add exactly in float32 (as gdaldem adds them)
NODATA = -9999.0
HILLSHADE_CASES = [({}, []),
                   ({'azimuth': 200.0, 'altitude': 30.0, 'z_factor': 2.0},
                    ['-az', '200', '-alt', '30', '-z', '2']),
                   ({'azimuth': 45.0, 'altitude': 80.0}, ['-az', '45', '-alt', '80'])]
SLOPE_CASES = [({}, []), ({'units': 'percent'}, ['-p']), ({'z_factor': 2.0}, ['-s', '0.5']),
               ({'units': 'percent', 'z_factor': 0.25}, ['-p', '-s', '4'])]
# How close to a half grey level a shade must be for gdaldem's Byte to differ from ours:
# GDAL's approximate 1/sqrt (SSE rsqrt + one Newton step: relative error < 1e-6, times 255
# levels) on heights that float32 adds exactly; plus, on raw float32 heights, its float32 sums
# (slope error < 1e-3 degrees here, see the slope bound below, times 254 * pi / 180 levels)
HALF_LEVEL_MARGIN = {'quantized_dsm': 3e-4, 'megaplot_dsm': 5e-3}


@pytest.fixture(scope='module')
def megaplot_dsm(shared_data):
    """(DSM heights as float32 values in float64, NaN = empty, geotransform) of Megaplot.laz."""
    laspy = pytest.importorskip('laspy', reason='laspy is not installed: pip install '
                                                'laspy==2.7.0 lazrs==0.8.2')
    path = shared_data / 'las' / 'lidr' / 'Megaplot.laz'
    if not path.is_file():
        pytest.skip(f'{path} is not in the shared data')
    las = laspy.read(path)
    dsm, transform = reference.max_grid(np.asarray(las.x), np.asarray(las.y),
                                        np.asarray(las.z), RESOLUTION)
    return dsm.astype(np.float32).astype(np.float64), transform


@pytest.fixture(scope='module')
def quantized_dsm(megaplot_dsm):
    dsm, transform = megaplot_dsm
    return np.round(dsm / QUANTUM) * QUANTUM, transform


def write_dsm(path, dsm, transform):
    from affine import Affine
    with rasterio.open(path, 'w', driver='GTiff', width=dsm.shape[1], height=dsm.shape[0],
                       count=1, dtype='float32', nodata=NODATA, crs='EPSG:26917',
                       transform=Affine.from_gdal(*transform)) as dataset:
        dataset.write(np.where(np.isnan(dsm), NODATA, dsm).astype(np.float32)[np.newaxis])
    return path


def gdaldem(tmp_path, dsm, transform, mode, options):
    """gdaldem MODE on the DSM: (the output band as float64 with NaN = no data, its raw
    values)."""
    source = write_dsm(tmp_path / 'dsm.tif', dsm, transform)
    target = tmp_path / f'{mode}.tif'
    subprocess.run([GDALDEM, mode, '-q', str(source), str(target), *options], check=True,
                   capture_output=True)
    with rasterio.open(target) as dataset:
        raw, nodata = dataset.read(1), dataset.nodata
    return np.where(raw == nodata, np.nan, raw.astype(np.float64)), raw


def assert_close(actual, expected, rtol=1e-12, atol=1e-10):
    assert np.array_equal(np.isnan(actual), np.isnan(expected))
    valid = ~np.isnan(expected)
    np.testing.assert_allclose(actual[valid], expected[valid], rtol=rtol, atol=atol)


# --- against gdaldem --------------------------------------------------------------------------

@needs_gdaldem
@pytest.mark.parametrize('options, gdal_options', SLOPE_CASES)
def test_slope_equals_gdaldem_on_a_real_dsm(quantized_dsm, tmp_path, options, gdal_options):
    """Heights that float32 adds exactly: the Float32 slopes are gdaldem's bit for bit."""
    dsm, transform = quantized_dsm
    expected, raw = gdaldem(tmp_path, dsm, transform, 'slope', gdal_options)
    assert raw.dtype == np.float32
    result = terrain.slope(dsm, (RESOLUTION, RESOLUTION), **options)
    assert np.array_equal(np.isnan(result), np.isnan(expected))
    valid = ~np.isnan(expected)
    assert valid.sum() > 10000 and np.isnan(expected).sum() > 1000  # data and no data
    assert np.array_equal(result.astype(np.float32)[valid], raw[valid])


@needs_gdaldem
@pytest.mark.parametrize('options, gdal_options', SLOPE_CASES[:2])
def test_gdaldem_slope_is_the_reference_with_float32_sums(megaplot_dsm, tmp_path, options,
                                                          gdal_options):
    """Heights as LiDAR gives them: gdaldem adds them in float32 (the reference does so too,
    bit for bit); the kernel's float64 sums differ from it by that rounding only."""
    dsm, transform = megaplot_dsm
    expected, raw = gdaldem(tmp_path, dsm, transform, 'slope', gdal_options)
    in_float32 = reference.slope(dsm, (RESOLUTION, RESOLUTION), sum_dtype=np.float32,
                                 **options)
    assert np.array_equal(in_float32.astype(np.float32), np.where(np.isnan(expected), np.nan,
                                                                  raw), equal_nan=True)
    result = terrain.slope(dsm, (RESOLUTION, RESOLUTION), **options)
    # float32 rounding of the 1-2-1 sums (heights <= 40 m here): <= 2^-24 * 32 * 40 m per sum,
    # times d(slope)/d(sum) <= 1 / (8 * resolution) (x 100 for percent, 180 / pi for degrees)
    per_sum = 2.0 ** -24 * 32 * np.nanmax(np.abs(dsm)) / (8 * RESOLUTION)
    bound = 2 * per_sum * (100 if options.get('units') == 'percent' else 180 / math.pi)
    valid = ~np.isnan(expected)
    difference = np.abs(result[valid] - expected[valid])
    assert difference.max() <= bound + 4 * np.spacing(np.float32(90)), (difference.max(), bound)
    assert difference.max() > 0  # float32 sums do round on these heights


@needs_gdaldem
@pytest.mark.parametrize('dsm_fixture', ['quantized_dsm', 'megaplot_dsm'])
@pytest.mark.parametrize('options, gdal_options', HILLSHADE_CASES)
def test_hillshade_bytes_equal_gdaldem_on_a_real_dsm(request, tmp_path, dsm_fixture, options,
                                                     gdal_options):
    """Byte shades equal gdaldem's except (none seen on these DSMs) within a hair of a half
    grey level, where GDAL's approximate 1/sqrt may round to the neighbouring level."""
    dsm, transform = request.getfixturevalue(dsm_fixture)
    _, raw = gdaldem(tmp_path, dsm, transform, 'hillshade', gdal_options)
    assert raw.dtype == np.uint8
    shade = terrain.hillshade(dsm, (RESOLUTION, RESOLUTION), **options)
    result = terrain.hillshade_byte(shade)
    assert np.array_equal(result == 0, raw == 0)  # the same no data
    assert (raw == 0).sum() > 1000 and len(np.unique(raw)) > 100
    difference = result.astype(int) - raw
    assert np.abs(difference).max() <= 1
    differing = difference != 0
    assert (np.abs(shade[differing] % 1 - 0.5) < HALF_LEVEL_MARGIN[dsm_fixture]).all()
    assert differing.sum() <= 0.001 * differing.size


# --- against the numpy reference, analytic surfaces -------------------------------------------

@pytest.mark.parametrize('options', [{}, {'units': 'percent'}, {'z_factor': 3.0}])
def test_slope_equals_the_reference_on_the_whole_raster(megaplot_dsm, options):
    dsm, _ = megaplot_dsm
    for resolution in ((RESOLUTION, RESOLUTION), (0.5, 2.0)):
        assert_close(terrain.slope(dsm, resolution, **options),
                     reference.slope(dsm, resolution, **options))


@pytest.mark.parametrize('options', [{}, {'azimuth': 90.0, 'altitude': 10.0},
                                     {'azimuth': -30.0, 'altitude': 90.0, 'z_factor': 0.5},
                                     {'azimuth': 725.0, 'altitude': 0.0}])
def test_hillshade_equals_the_reference_on_the_whole_raster(megaplot_dsm, options):
    """The kernel's one-square-root formula against gdaldem's trigonometric one."""
    dsm, _ = megaplot_dsm
    for resolution in ((RESOLUTION, RESOLUTION), (2.0, 0.5)):
        assert_close(terrain.hillshade(dsm, resolution, **options),
                     reference.hillshade(dsm, resolution, **options), atol=1e-9)


def plane(rows, cols, dz_dx, dz_dy, resolution):
    """Heights of the plane z = dz_dx * x + dz_dy * y (x east, y north) on a top-down grid."""
    row, col = np.mgrid[0:rows, 0:cols].astype(np.float64)
    return dz_dx * col * resolution[0] + dz_dy * -row * resolution[1]


@pytest.mark.parametrize('dz_dx, dz_dy', [(0.0, 0.0), (1.0, 0.0), (0.3, -0.4), (-2.0, 5.0)])
def test_slope_of_a_plane(dz_dx, dz_dy):
    resolution = (0.5, 2.0)
    dem = plane(7, 9, dz_dx, dz_dy, resolution)
    gradient = math.hypot(dz_dx, dz_dy)
    degrees = terrain.slope(dem, resolution)
    percent = terrain.slope(dem, resolution, units='percent', z_factor=2.0)
    inner = (slice(1, -1), slice(1, -1))
    np.testing.assert_allclose(degrees[inner], math.degrees(math.atan(gradient)), atol=1e-12)
    np.testing.assert_allclose(percent[inner], 200 * gradient, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('dz_dx, dz_dy', [(0.0, 0.0), (0.5, -0.5), (-0.5, 0.5), (-0.2, -0.1),
                                          (3.0, -3.0)])
@pytest.mark.parametrize('azimuth, altitude', [(315.0, 45.0), (90.0, 20.0), (180.0, 60.0)])
def test_hillshade_of_a_plane_is_its_normal_dotted_with_the_light(dz_dx, dz_dy, azimuth,
                                                                  altitude):
    """Lambert: shade = 1 + 254 * cos(angle between the surface normal (-dz/dx, -dz/dy, 1) and
    the direction towards the light), 1 where the surface faces away (x east, y north, the
    azimuth clockwise from north)."""
    resolution = (0.5, 2.0)
    result = terrain.hillshade(plane(6, 8, dz_dx, dz_dy, resolution), resolution,
                               azimuth=azimuth, altitude=altitude)
    normal = np.array([-dz_dx, -dz_dy, 1.0]) / math.sqrt(dz_dx ** 2 + dz_dy ** 2 + 1)
    az, alt = math.radians(azimuth), math.radians(altitude)
    light = np.array([math.sin(az) * math.cos(alt), math.cos(az) * math.cos(alt),
                      math.sin(alt)])
    cang = normal @ light
    expected = 1 + 254 * cang if cang > 0 else 1.0
    np.testing.assert_allclose(result[1:-1, 1:-1], expected, rtol=1e-12)


# --- no data ----------------------------------------------------------------------------------

@pytest.mark.parametrize('function', [terrain.slope, terrain.hillshade])
def test_the_border_and_the_neighbours_of_no_data_are_no_data(function):
    rng = np.random.default_rng(3)
    dem = rng.uniform(0, 10, (12, 15))
    dem[5, 7] = np.nan
    result = function(dem, (1.0, 1.0))
    expected_nan = np.zeros(dem.shape, bool)
    expected_nan[[0, -1], :] = expected_nan[:, [0, -1]] = True
    expected_nan[4:7, 6:9] = True
    assert np.array_equal(np.isnan(result), expected_nan)
    masked = np.zeros(dem.shape, bool)
    masked[5, 7] = True
    filled = np.where(np.isnan(dem), 1e6, dem)  # a wild value behind the mask
    assert np.array_equal(function(filled, (1.0, 1.0), nodata_mask=masked), result,
                          equal_nan=True)


@pytest.mark.parametrize('function', [terrain.slope, terrain.hillshade])
@pytest.mark.parametrize('shape', [(1, 1), (2, 9), (9, 2), (3, 3), (0, 4)])
def test_small_rasters(function, shape):
    dem = np.arange(math.prod(shape), dtype=np.float64).reshape(shape)
    result = function(dem, (1.0, 1.0))
    assert result.shape == shape and result.dtype == np.float64
    if shape == (3, 3):
        assert np.isnan(result).sum() == 8 and not np.isnan(result[1, 1])
    else:
        assert np.isnan(result).all()


def test_hillshade_byte_rounds_as_gdal_does():
    shade = np.array([1.0, 1.49999, 1.5, 254.5, 255.0, np.nan, 100.49999999])
    # float32(100.49999999) == 100.5: GDAL rounds the float32 value, so does hillshade_byte
    np.testing.assert_array_equal(terrain.hillshade_byte(shade), [1, 1, 2, 255, 255, 0, 101])


# --- threads, GIL, rejections -----------------------------------------------------------------

def test_any_thread_count_gives_the_same_bytes(megaplot_dsm):
    dsm, _ = megaplot_dsm
    for function in (terrain.slope, terrain.hillshade):
        results = [function(dsm, (1.0, 1.0), threads=threads) for threads in (1, 2, 3, 0)]
        for other in results[1:]:
            assert other.tobytes() == results[0].tobytes()


@pytest.mark.parametrize('function', [terrain.slope, terrain.hillshade])
def test_the_kernels_release_the_gil(function):
    dem = np.random.default_rng(0).uniform(0, 30, (3000, 3000))
    with gil_probe() as ticks_during:
        assert ticks_during(lambda: function(dem, (1.0, 1.0), threads=1)) > 0


@pytest.mark.parametrize('call, message', [
    (lambda: terrain.slope(np.zeros(5), (1, 1)), 'dem must be a 2-D'),
    (lambda: terrain.slope(np.array([['a']]), (1, 1)), 'dem must hold numbers'),
    (lambda: terrain.slope(np.full((3, 3), np.inf), (1, 1)), 'infinities'),
    (lambda: terrain.slope(np.zeros((3, 3)), (1, 0)), 'resolution must be positive'),
    (lambda: terrain.slope(np.zeros((3, 3)), 1.0), 'resolution must be'),
    (lambda: terrain.slope(np.zeros((3, 3)), (1, 1), units='radians'), 'units must be'),
    (lambda: terrain.slope(np.zeros((3, 3)), (1, 1), z_factor=0), 'z_factor must be > 0'),
    (lambda: terrain.slope(np.zeros((3, 3)), (1, 1), threads=-1), 'threads must be'),
    (lambda: terrain.slope(np.zeros((3, 3)), (1, 1), nodata_mask=np.zeros((3, 3))),
     'nodata_mask must be a bool array'),
    (lambda: terrain.hillshade(np.zeros((3, 3)), (1, 1), altitude=91), 'altitude must be'),
    (lambda: terrain.hillshade(np.zeros((3, 3)), (1, 1), azimuth=math.nan), 'azimuth must be'),
    (lambda: terrain.hillshade(np.zeros((3, 3)), (1, 1), z_factor=True), 'z_factor must be'),
])
def test_bad_arguments_are_rejected_by_name(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_module_layout():
    assert Path(terrain.__file__).name == 'terrain.py'
    assert terrain.default_threads() >= 1
