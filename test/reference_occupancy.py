"""Straightforward numpy reference of the occupancy grid (rules in pointcloud_pipeline.occupancy).

Used by the tests (exact equality with the kernel) and by bench/bench_occupancy.py (the
vectorised numpy baseline). Only the grid and bands definitions come from the package; the cell
rule is written out again here (the transform and float32 height: reference_bev's).
"""
import numpy as np

from reference_bev import transformed_xyz


def reference_occupancy(x, y, z, grid, bands, transform=None):
    """int8 height x width grid (row along y from y_min, column along x from x_min): 100 where a
    point is in the obstacle band, else 0 where one is in the ground band, else -1."""
    width, height = grid.rows, grid.cols
    x, y, z = transformed_xyz(x, y, z, transform)
    cells_per_metre = 1.0 / grid.resolution
    with np.errstate(invalid='ignore'):
        qx = (x - grid.x_range[0]) * cells_per_metre
        qy = (y - grid.y_range[0]) * cells_per_metre
        inside = (qx >= 0) & (qx < width) & (qy >= 0) & (qy < height)
        obstacle = (inside & (z >= bands.ground_z + bands.min_height)
                    & (z <= bands.ground_z + bands.max_height))
        ground = (inside & (z >= bands.ground_z - bands.ground_tolerance)
                  & (z <= bands.ground_z + bands.ground_tolerance))
    cell = np.zeros(x.shape, np.int64)
    cell[inside] = (np.floor(qy[inside]).astype(np.int64) * width
                    + np.floor(qx[inside]).astype(np.int64))
    out = np.full(height * width, -1, np.int8)
    out[cell[ground]] = 0
    out[cell[obstacle]] = 100
    return out.reshape(height, width)
