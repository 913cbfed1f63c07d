"""numpy reference of pointcloud_pipeline.terrain (Horn's slope and hillshade, gdaldem's rules),
written from GDAL's apps/gdaldem_lib.cpp independently of the kernel: whole-array slicing.

``sum_dtype=np.float32`` adds the heights in float32 as gdaldem does (it reads Float32 and adds
``afWin[0] + afWin[3] + afWin[3] + afWin[6]`` in float32 before going to float64): then
:func:`slope` reproduces ``gdaldem slope``'s Float32 output bit for bit.
"""
import numpy as np


def _neighbours(dem):
    """The 9 shifted views a..i (a north-west, e the cell) of the interior cells."""
    rows, cols = dem.shape
    return [dem[r:rows - 2 + r, c:cols - 2 + c] for r in range(3) for c in range(3)]


def _valid(dem, nodata_mask):
    nodata = np.isnan(dem) if nodata_mask is None else np.isnan(dem) | nodata_mask
    valid = np.zeros(dem.shape, bool)
    if dem.shape[0] >= 3 and dem.shape[1] >= 3:
        valid[1:-1, 1:-1] = ~np.any([n for n in _neighbours(nodata)], axis=0)
    return valid


def horn_sums(dem, sum_dtype=np.float64):
    """(Hx, Hy) of the interior cells: (west - east) and (south - north) 1-2-1 sums, added in
    ``sum_dtype`` in gdaldem's order, as float64."""
    a, b, c, d, _, f, g, h, i = (w.astype(sum_dtype) for w in _neighbours(dem))
    hx = (a + d + d + g) - (c + f + f + i)
    hy = (g + h + h + i) - (a + b + b + c)
    return hx.astype(np.float64), hy.astype(np.float64)


def slope(dem, resolution, nodata_mask=None, units='degrees', z_factor=1.0,
          sum_dtype=np.float64):
    dem = np.asarray(dem, np.float64)
    out = np.full(dem.shape, np.nan)
    if dem.shape[0] < 3 or dem.shape[1] < 3:
        return out
    hx, hy = horn_sums(dem, sum_dtype)
    with np.errstate(invalid='ignore'):
        dx = hx / (resolution[0] / z_factor)
        dy = hy / (resolution[1] / z_factor)
        gradient = np.sqrt(dx * dx + dy * dy) / 8
        value = 100 * gradient if units == 'percent' else np.degrees(np.arctan(gradient))
    valid = _valid(dem, nodata_mask)
    out[valid] = value[valid[1:-1, 1:-1]]
    return out


def hillshade(dem, resolution, azimuth=315.0, altitude=45.0, z_factor=1.0, nodata_mask=None,
              sum_dtype=np.float64):
    """gdaldem's unoptimised formula: slope and aspect angles, then
    ``cang = sin(alt) cos(slope) + cos(alt) sin(slope) cos(az - pi/2 - aspect)``, shade
    ``1 + 254 cang`` (1 where cang <= 0)."""
    dem = np.asarray(dem, np.float64)
    out = np.full(dem.shape, np.nan)
    if dem.shape[0] < 3 or dem.shape[1] < 3:
        return out
    hx, hy = horn_sums(dem, sum_dtype)
    with np.errstate(invalid='ignore'):
        # gdaldem's x, y: nsres is negative for a north-up raster
        x = z_factor * hx / (8.0 * resolution[0])
        y = z_factor * hy / (8.0 * -resolution[1])
        slope_angle = np.arctan(np.sqrt(x * x + y * y))
        aspect = np.arctan2(y, x)
        alt, az = np.radians(altitude), np.radians(azimuth)
        cang = (np.sin(alt) * np.cos(slope_angle)
                + np.cos(alt) * np.sin(slope_angle) * np.cos(az - np.pi / 2 - aspect))
        value = np.where(cang <= 0, 1.0, 1.0 + 254.0 * cang)
    valid = _valid(dem, nodata_mask)
    out[valid] = value[valid[1:-1, 1:-1]]
    return out


def max_grid(x, y, z, resolution):
    """A DSM of points: the highest z per square cell of ``resolution``, rows top-down from the
    northernmost point, NaN where no point falls. Returns (dsm, GDAL geotransform)."""
    x0, y_top = np.floor(x.min()), np.ceil(y.max())
    cols = int(np.ceil((x.max() - x0) / resolution))
    rows = int(np.ceil((y_top - y.min()) / resolution))
    col = np.minimum(((x - x0) / resolution).astype(np.int64), cols - 1)
    row = np.minimum(((y_top - y) / resolution).astype(np.int64), rows - 1)
    dsm = np.full(rows * cols, -np.inf)
    np.maximum.at(dsm, row * cols + col, z)
    dsm = dsm.reshape(rows, cols)
    dsm[np.isinf(dsm)] = np.nan
    return dsm, (x0, resolution, 0.0, y_top, 0.0, -resolution)
