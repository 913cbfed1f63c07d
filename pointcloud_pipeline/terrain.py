"""Slope and hillshade of a surface model (DSM/DTM), as GDAL's ``gdaldem`` computes them.

Grid: ``dem`` is a 2-D float64 array of heights, rows top-down (row 0 is the northern edge,
columns go east), NaN = no data; ``resolution`` = (x, y) cell size in the CRS's horizontal
units, both positive (a north-up raster's geotransform ``(x0, x, 0, y0, 0, -y)``). Heights in
the same units, or set ``z_factor`` (vertical units -> horizontal units, e.g. 0.3048 for feet
over metres; gdaldem's ``-s scale`` is ``z_factor = 1 / scale``).

Method: Horn's 3 x 3 weighted differences (gdaldem's default algorithm), with the cell's 8
neighbours ``a b c / d e f / g h i`` (``a`` north-west)::

    gx = ((a + 2d + g) - (c + 2f + i)) / x      (8 * -dz/dx)
    gy = ((g + 2h + i) - (a + 2b + c)) / y      (8 * -dz/dy, y north)

No data, as gdaldem without ``-compute_edges``: the cells of the raster's border and every cell
with a no-data cell (NaN or ``nodata_mask``) among its 9 are NaN. So windows of a larger raster
computed with a halo of 1 cell give the same values as the whole raster.

Precision: sums and trigonometry in float64. gdaldem reads the heights as float32 and adds
them in float32 (in the order used here), then works in float64: on heights that float32 adds
exactly (e.g. multiples of 1/128 m below 16 km) the slopes cast to float32 are gdaldem's bit
for bit; on other heights they differ by gdaldem's float32 rounding of the sums (about 1e-4
degrees on a 30 m canopy DSM at 1 m). gdaldem's hillshade also uses an approximate reciprocal
square root (relative error below 1e-6): a shade that close to a half grey level may round to
the neighbouring level in its Byte output (:func:`hillshade_byte` rounds as gdaldem does; on
real DSMs the bytes came out equal, test/test_terrain.py).

Both kernels run in ``prange`` over rows with the GIL released (``_terrain.pyx``); any thread
count gives the same bytes.
"""
import math
from numbers import Real

import numpy as np

from . import _terrain
from .threads import checked_threads

SLOPE_UNITS = ('degrees', 'percent')
HILLSHADE_NODATA_BYTE = 0  # gdaldem hillshade's no-data value (shades are 1..255)
SLOPE_NODATA = -9999.0  # gdaldem slope's no-data value (Float32 output)


def _checked_dem(dem):
    dem = np.asarray(dem)
    if dem.ndim != 2:
        raise ValueError(f'dem must be a 2-D array (rows, columns), got shape {dem.shape}')
    if dem.dtype.kind not in 'fiu':
        raise ValueError(f'dem must hold numbers, got {dem.dtype}')
    dem = np.ascontiguousarray(dem, dtype=np.float64)
    if np.isinf(dem).any():
        raise ValueError('dem must hold finite heights or NaN (no data), it has infinities')
    return dem


def _checked_mask(nodata_mask, shape):
    if nodata_mask is None:
        return np.zeros((1, 1), np.uint8), False
    mask = np.asarray(nodata_mask)
    if mask.shape != shape or mask.dtype != np.bool_:
        raise ValueError(f'nodata_mask must be a bool array of the dem\'s shape {shape}, got '
                         f'{mask.dtype} {mask.shape}')
    return np.ascontiguousarray(mask).view(np.uint8), True


def _checked_resolution(resolution):
    try:
        x_res, y_res = (float(value) for value in resolution)
    except (TypeError, ValueError):
        raise ValueError(f'resolution must be (x, y) cell sizes, got {resolution!r}') from None
    if not (math.isfinite(x_res) and math.isfinite(y_res) and x_res > 0 and y_res > 0):
        raise ValueError(f'resolution must be positive finite (x, y) cell sizes, '
                         f'got {resolution!r}')
    return x_res, y_res


def _checked_number(name, value, low=-math.inf, high=math.inf, positive=False):
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ValueError(f'{name} must be a finite number, got {value!r}')
    value = float(value)
    if positive and not value > 0:
        raise ValueError(f'{name} must be > 0, got {value}')
    if not low <= value <= high:
        raise ValueError(f'{name} must be from {low} to {high}, got {value}')
    return value




def slope(dem, resolution, *, nodata_mask=None, units='degrees', z_factor=1.0, threads=0):
    """Slope of ``dem`` (module docstring): float64 array of its shape, NaN = no data.

    ``units='degrees'``: ``atan(z_factor * sqrt(gx^2 + gy^2) / 8)`` in degrees (0..90);
    ``'percent'``: ``100 * z_factor * sqrt(gx^2 + gy^2) / 8`` (rise over run, 100 = 45 deg).
    ``nodata_mask``: optional bool array, True = no data (besides NaN). ``threads``: 0 =
    OpenMP's default (all cores), n = n threads.
    """
    dem = _checked_dem(dem)
    x_res, y_res = _checked_resolution(resolution)
    mask, use_mask = _checked_mask(nodata_mask, dem.shape)
    if units not in SLOPE_UNITS:
        raise ValueError(f'units must be one of {", ".join(SLOPE_UNITS)}, got {units!r}')
    z_factor = _checked_number('z_factor', z_factor, positive=True)
    threads = checked_threads(threads)
    out = np.full(dem.shape, np.nan)
    # gdaldem divides by ewres * scale: the same divisions, scale = 1 / z_factor
    _terrain.slope(dem, mask, use_mask, out, x_res / z_factor, y_res / z_factor,
                   units == 'percent', threads)
    return out


def hillshade(dem, resolution, *, azimuth=315.0, altitude=45.0, z_factor=1.0,
              nodata_mask=None, threads=0):
    """Shaded relief of ``dem`` (module docstring), gdaldem's default hillshade: float64 array
    of its shape, values 1..255 (before rounding to gdaldem's Byte output), NaN = no data.

    The light comes from ``azimuth`` degrees (clockwise from north, 315 = north-west) at
    ``altitude`` degrees above the horizon (0..90). With ``zf = z_factor / 8``,
    ``cang = 254 * (sin(alt) + cos(alt) * zf * (gx * sin(az) + gy * cos(az)))
    / sqrt(1 + zf^2 * (gx^2 + gy^2))``; the shade is ``1 + cang``, or 1 where cang <= 0
    (facing away from the light). A flat cell gets ``1 + 254 * sin(alt)``.
    """
    dem = _checked_dem(dem)
    x_res, y_res = _checked_resolution(resolution)
    mask, use_mask = _checked_mask(nodata_mask, dem.shape)
    azimuth = _checked_number('azimuth', azimuth)
    altitude = _checked_number('altitude', altitude, 0.0, 90.0)
    z_factor = _checked_number('z_factor', z_factor, positive=True)
    threads = checked_threads(threads)
    # GDALCreateHillshadeData's constants, in its order of operations
    altitude_rad = altitude * (math.pi / 180.0)
    azimuth_rad = azimuth * (math.pi / 180.0)
    zf = z_factor / 8
    cos_alt_z = math.cos(altitude_rad) * zf
    x_factor = 254.0 * (math.sin(azimuth_rad) * cos_alt_z)
    y_factor = 254.0 * (math.cos(azimuth_rad) * cos_alt_z)
    out = np.full(dem.shape, np.nan)
    _terrain.hillshade(dem, mask, use_mask, out, 1.0 / x_res, 1.0 / y_res,
                       254.0 * math.sin(altitude_rad), x_factor, y_factor, zf * zf, threads)
    return out


def hillshade_byte(shade):
    """gdaldem's Byte output of :func:`hillshade`'s values: NaN -> 0 (no data), else the value
    as float32 plus 0.5 (in float32), truncated and clamped to 0..255 (GDAL's float -> Byte
    conversion)."""
    shade = np.asarray(shade)
    as_float = shade.astype(np.float32) + np.float32(0.5)
    out = np.clip(np.nan_to_num(as_float, nan=0.0), 0, 255).astype(np.uint8)
    out[np.isnan(shade)] = HILLSHADE_NODATA_BYTE
    return out


def default_threads():
    """Threads used for ``threads=0``."""
    return _terrain.default_threads()
