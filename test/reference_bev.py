"""Straightforward numpy reference of the BEV image (see pointcloud_pipeline.bev for the rules).

Used by the tests (exact equality with the kernel) and by bench/bench_bev.py (the vectorised
numpy baseline: np.maximum.at + bincount) and the per-point Python loop of classic scripts.
Only the grid definition comes from the package; every formula is written out again here.
"""
import math

import numpy as np


def transformed_xyz(x, y, z, transform):
    """float64 x, y, z after an optional 4x4 transform (terms in the kernel's order); z is then
    rounded to float32 (exact without a transform) and gets + 0.0 so that -0.0 sorts as +0.0."""
    x, y, z = (np.asarray(v, dtype=np.float64) for v in (x, y, z))
    if transform is not None:
        m = np.asarray(transform, dtype=np.float64)
        x, y, z = (m[k, 0] * x + m[k, 1] * y + m[k, 2] * z + m[k, 3] for k in range(3))
    return x, y, (z.astype(np.float32) + np.float32(0.0)).astype(np.float64)


def reference_bev(x, y, z, intensity, grid, transform=None, dtype=np.uint8):
    """BEV image (rows x cols x 3: intensity, height, density) of points given as 1-D arrays of
    float32 x, y, z and intensity (None: 0), with numpy's scatter operations."""
    rows, cols = grid.rows, grid.cols
    x, y, z = transformed_xyz(x, y, z, transform)
    if intensity is None:
        intensity = np.zeros(x.shape, np.float32)
    intensity = np.asarray(intensity, np.float32) + np.float32(0.0)
    intensity = np.where(np.isnan(intensity), -np.inf, intensity)

    cells_per_metre = 1.0 / grid.resolution
    with np.errstate(invalid='ignore'):
        qx = (x - grid.x_range[0]) * cells_per_metre
        qy = (y - grid.y_range[0]) * cells_per_metre
        inside = ((qx >= 0) & (qx < rows) & (qy >= 0) & (qy < cols)
                  & (z >= grid.z_range[0]) & (z <= grid.z_range[1]))
    row = rows - 1 - np.floor(qx[inside]).astype(np.int64)
    col = cols - 1 - np.floor(qy[inside]).astype(np.int64)
    cell = row * cols + col
    z, intensity = z[inside], intensity[inside].astype(np.float64)

    # per occupied cell: point count, highest z, largest intensity among the highest points
    occupied, point_cell, count = np.unique(cell, return_inverse=True, return_counts=True)
    z_top = np.full(occupied.size, -np.inf)
    np.maximum.at(z_top, point_cell, z)
    is_top = z == z_top[point_cell]
    intensity_top = np.full(occupied.size, -np.inf)
    np.maximum.at(intensity_top, point_cell[is_top], intensity[is_top])

    z_min, z_max = grid.z_range
    i_min, i_max = grid.intensity_range
    values = np.empty((occupied.size, 3))
    values[:, 0] = np.clip((intensity_top - i_min) * (1.0 / (i_max - i_min)), 0.0, 1.0)
    values[:, 1] = np.minimum((z_top - z_min) * (1.0 / (z_max - z_min)), 1.0)
    values[:, 2] = np.minimum(1.0, np.log(count + 1.0) / np.log(64.0))
    if np.dtype(dtype) == np.uint8:
        values = np.floor(values * 255.0 + 0.5)
    image = np.zeros((rows * cols, 3), dtype)
    image[occupied] = values
    return image.reshape(rows, cols, 3)


def reference_bev_points(points, grid, transform=None, dtype=np.uint8):
    """:func:`reference_bev` of an N x 4 (or N x 3) float32 array."""
    points = np.asarray(points, np.float32)
    intensity = points[:, 3] if points.shape[1] == 4 else None
    return reference_bev(points[:, 0], points[:, 1], points[:, 2], intensity, grid, transform,
                         dtype)


def python_loop_maps(points, grid):
    """The classic per-point Python loop (as in the scripts the kernel replaces): one pass over
    the points filling height, intensity and count maps (rows x cols)."""
    rows, cols = grid.rows, grid.cols
    x_min, y_min = grid.x_range[0], grid.y_range[0]
    z_min, z_max = grid.z_range
    cells_per_metre = 1.0 / grid.resolution
    height_map = np.zeros((rows, cols))
    intensity_map = np.zeros((rows, cols))
    count_map = np.zeros((rows, cols), np.int64)
    for x, y, z, intensity in points.tolist():
        qx = (x - x_min) * cells_per_metre
        qy = (y - y_min) * cells_per_metre
        if not (0 <= qx < rows and 0 <= qy < cols and z_min <= z <= z_max):
            continue
        row, col = rows - 1 - math.floor(qx), cols - 1 - math.floor(qy)
        intensity = -math.inf if math.isnan(intensity) else intensity
        if count_map[row, col] == 0 or z > height_map[row, col] or (
                z == height_map[row, col] and intensity > intensity_map[row, col]):
            height_map[row, col] = z
            intensity_map[row, col] = intensity
        count_map[row, col] += 1
    return height_map, intensity_map, count_map


def maps_to_image(height_map, intensity_map, count_map, grid):
    """The classic scripts' vectorised second step: normalise the maps into a uint8 image."""
    z_min, z_max = grid.z_range
    i_min, i_max = grid.intensity_range
    occupied = count_map > 0
    height = np.minimum((height_map - z_min) * (1.0 / (z_max - z_min)), 1.0)
    intensity = np.clip((intensity_map - i_min) * (1.0 / (i_max - i_min)), 0.0, 1.0)
    density = np.minimum(1.0, np.log(count_map + 1.0) / np.log(64.0))
    image = np.stack([intensity, height, density], axis=-1)
    image[~occupied] = 0.0
    return np.floor(image * 255.0 + 0.5).astype(np.uint8)


def python_loop_bev(points, grid):
    """uint8 BEV image by the per-point loop; equal to :func:`reference_bev_points` for
    untransformed N x 4 input."""
    return maps_to_image(*python_loop_maps(points, grid), grid)
