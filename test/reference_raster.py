"""Plain numpy reference of PDAL writers.gdal statistics, written from the definitions (not from
the kernel): the whole cloud in memory, vectorised over the candidate cell offsets.

A point contributes to a grid cell when ``sqrt((cx - x)**2 + (cy - y)**2) < radius`` (radius
mode; every offset within ceil(radius / res) + 1 cells is tried) or when the cell holds it (bin
mode, distance 0). Per cell: count (np.bincount), min / max (np.minimum.at / np.maximum.at),
mean = sum / count, stdev = sqrt(sum((v - mean)^2) / count) (two passes), idw = the value of
the first point (input order) at distance 0 if any, else sum(v / d^p) / sum(1 / d^p). Window
fill: every empty cell gets sum(src / d) / sum(1 / d) over the non-empty cells of its
(2N+1)^2 window, d = max(|di|, |dj|), donors visited column outer, row-from-bottom inner.
Arrays are returned top-down (row 0 = north), NaN where empty, 0 in count.
"""
import math

import numpy as np

STATISTICS = ('min', 'max', 'mean', 'idw', 'count', 'stdev')


def contributions(x, y, grid, radius, binmode):
    """(cell index j * width + i with j counted from the bottom, point index, distance) of
    every contributing (point, cell) pair, sorted by point index within each cell."""
    res = grid.resolution
    col = np.floor((x - grid.base_x) / res).astype(np.int64) - grid.offset_x
    row = np.floor((y - grid.base_y) / res).astype(np.int64) - grid.offset_y
    points = np.arange(len(x))
    if binmode:
        inside = (col >= 0) & (col < grid.width) & (row >= 0) & (row < grid.height)
        return (row[inside] * grid.width + col[inside], points[inside],
                np.zeros(inside.sum()))
    reach = int(math.ceil(radius / res)) + 1
    cells, indices, distances = [], [], []
    for a in range(-reach, reach + 1):
        for b in range(-reach, reach + 1):
            c, r = col + a, row + b
            inside = (c >= 0) & (c < grid.width) & (r >= 0) & (r < grid.height)
            cx = grid.base_x + ((grid.offset_x + c[inside]).astype(np.float64) + 0.5) * res
            cy = grid.base_y + ((grid.offset_y + r[inside]).astype(np.float64) + 0.5) * res
            d = np.sqrt((cx - x[inside]) ** 2 + (cy - y[inside]) ** 2)
            near = d < radius
            cells.append((r[inside] * grid.width + c[inside])[near])
            indices.append(points[inside][near])
            distances.append(d[near])
    cells, indices, distances = (np.concatenate(v) for v in (cells, indices, distances))
    order = np.lexsort((indices, cells))
    return cells[order], indices[order], distances[order]


def window_fill(bands, count, width, height, window_size):
    """PDAL's window fill of the bands (flat, rows from the bottom) where count == 0."""
    donor = (count > 0).reshape(height, width)
    n = window_size
    padded_donor = np.zeros((height + 2 * n, width + 2 * n), bool)
    padded_donor[n:n + height, n:n + width] = donor
    weight_sum = np.zeros((height, width))
    sums = {name: np.zeros((height, width)) for name in bands}
    padded = {}
    for name, band in bands.items():
        padded[name] = np.zeros((height + 2 * n, width + 2 * n))
        padded[name][n:n + height, n:n + width] = np.where(donor, band.reshape(height, width),
                                                           0.0)
    for di in range(-n, n + 1):          # column offset: outer
        for dj in range(-n, n + 1):      # row-from-bottom offset: inner
            if di == 0 and dj == 0:
                continue
            d = float(max(abs(di), abs(dj)))
            use = padded_donor[n + dj:n + dj + height, n + di:n + di + width]
            for name in bands:
                src = padded[name][n + dj:n + dj + height, n + di:n + di + width]
                sums[name] += np.where(use, src / d, 0.0)
            weight_sum += np.where(use, 1 / d, 0.0)
    empty = ~donor
    filled = {}
    for name, band in bands.items():
        result = band.reshape(height, width).copy()
        value = np.where(weight_sum > 0, sums[name] / np.where(weight_sum > 0, weight_sum, 1),
                         np.nan)
        result[empty] = value[empty]
        filled[name] = result.ravel()
    return filled


def reference_raster(x, y, values, grid, *, radius=None, power=1.0, binmode=False,
                     window_size=0):
    """{statistic: (height, width) float64} for all six statistics (module docstring)."""
    x, y, values = (np.asarray(a, dtype=np.float64) for a in (x, y, values))
    radius = grid.resolution * math.sqrt(2.0) if radius is None else radius
    cells, points, distances = contributions(x, y, grid, radius, binmode)
    size = grid.width * grid.height
    v = values[points]
    count = np.bincount(cells, minlength=size).astype(np.float64)
    has = count > 0
    minimum = np.full(size, np.inf)
    np.minimum.at(minimum, cells, v)
    maximum = np.full(size, -np.inf)
    np.maximum.at(maximum, cells, v)
    mean = np.bincount(cells, weights=v, minlength=size) / np.where(has, count, 1)
    squares = np.bincount(cells, weights=(v - mean[cells]) ** 2, minlength=size)
    stdev = np.sqrt(squares / np.where(has, count, 1))
    exact = distances == 0
    first_exact = np.full(size, len(x))
    np.minimum.at(first_exact, cells[exact], points[exact])
    weights = np.zeros_like(distances)
    weights[~exact] = 1 / distances[~exact] ** power
    with np.errstate(invalid='ignore', divide='ignore'):  # cells of exact hits only: 0 / 0
        idw = (np.bincount(cells, weights=v * weights, minlength=size)
               / np.where(has, np.bincount(cells, weights=weights, minlength=size), 1))
    hit = first_exact < len(x)
    idw[hit] = values[first_exact[hit]]
    bands = {'min': minimum, 'max': maximum, 'mean': mean, 'idw': idw, 'stdev': stdev}
    for band in bands.values():
        band[~has] = np.nan
    if window_size > 0:
        bands = window_fill(bands, count, grid.width, grid.height, window_size)
    bands['count'] = count
    return {name: bands[name].reshape(grid.height, grid.width)[::-1].copy()
            for name in STATISTICS}


def assert_matches_reference(result, expected, values):
    """min, max, count exact (NaN where empty); mean, stdev, idw within 1e-9 relative (plus
    1e-12 of the finite values' scale, for the stdev of equal values: 0 against a rounding
    residue)."""
    scale = np.nanmax(np.abs(values)) if np.isfinite(values).any() else 1.0
    for name in result:
        if name in ('min', 'max', 'count'):
            np.testing.assert_array_equal(result[name], expected[name], err_msg=name)
        else:
            np.testing.assert_array_equal(np.isnan(result[name]), np.isnan(expected[name]),
                                          err_msg=name)
            np.testing.assert_allclose(result[name], expected[name], rtol=1e-9,
                                       atol=1e-12 * scale, err_msg=name)
