# cython: language_level=3
"""Hot loops of pointcloud_pipeline.terrain: Horn's 3 x 3 slope and hillshade (GIL released).

The public module validates the arguments and documents the semantics; these kernels assume
C-contiguous float64 arrays of the same shape and an ``out`` filled with NaN (the cells they do
not compute stay NaN: the border and every cell with a no-data cell among its 9).
"""
from cython.parallel cimport prange
from libc.math cimport atan, isnan, sqrt
from libc.stdint cimport uint8_t
from openmp cimport omp_get_max_threads

cdef double RADIANS_TO_DEGREES = 180.0 / 3.14159265358979323846


def default_threads():
    """Threads used for ``threads=0``: OpenMP's default (all cores unless OMP_NUM_THREADS)."""
    return omp_get_max_threads()


cdef inline int resolved_threads(int threads) noexcept nogil:
    return threads if threads > 0 else omp_get_max_threads()


cdef inline bint window_has_nodata(const double[:, ::1] dem, const uint8_t[:, ::1] mask,
                                   bint use_mask, Py_ssize_t i, Py_ssize_t j) noexcept nogil:
    cdef Py_ssize_t r, c
    for r in range(i - 1, i + 2):
        for c in range(j - 1, j + 2):
            if isnan(dem[r, c]) or (use_mask and mask[r, c]):
                return True
    return False


cdef inline double horn_x(const double[:, ::1] w, Py_ssize_t i, Py_ssize_t j) noexcept nogil:
    """(west column) - (east column), weights 1 2 1: 8 * cell size * -dz/dx (GDAL's order of
    additions)."""
    return ((w[i - 1, j - 1] + w[i, j - 1] + w[i, j - 1] + w[i + 1, j - 1])
            - (w[i - 1, j + 1] + w[i, j + 1] + w[i, j + 1] + w[i + 1, j + 1]))


cdef inline double horn_y(const double[:, ::1] w, Py_ssize_t i, Py_ssize_t j) noexcept nogil:
    """(south row) - (north row), weights 1 2 1 (rows are top-down)."""
    return ((w[i + 1, j - 1] + w[i + 1, j] + w[i + 1, j] + w[i + 1, j + 1])
            - (w[i - 1, j - 1] + w[i - 1, j] + w[i - 1, j] + w[i - 1, j + 1]))


def slope(const double[:, ::1] dem, const uint8_t[:, ::1] mask, bint use_mask,
          double[:, ::1] out, double x_res_scaled, double y_res_scaled, bint percent,
          int threads):
    """Slope of every interior cell without no data: gdaldem's GDALSlopeHornAlg, with
    ``*_res_scaled`` = cell size / z factor (gdaldem's ``ewres * scale``)."""
    cdef Py_ssize_t rows = dem.shape[0], cols = dem.shape[1], i, j
    cdef double dx, dy, gradient
    if rows < 3 or cols < 3:
        return
    for i in prange(1, rows - 1, nogil=True, schedule='dynamic', chunksize=4,
                    num_threads=resolved_threads(threads)):
        for j in range(1, cols - 1):
            if window_has_nodata(dem, mask, use_mask, i, j):
                continue
            dx = horn_x(dem, i, j) / x_res_scaled
            dy = horn_y(dem, i, j) / y_res_scaled
            gradient = sqrt(dx * dx + dy * dy) / 8
            if percent:
                out[i, j] = 100 * gradient
            else:
                out[i, j] = atan(gradient) * RADIANS_TO_DEGREES


def hillshade(const double[:, ::1] dem, const uint8_t[:, ::1] mask, bint use_mask,
              double[:, ::1] out, double inv_x_res, double inv_y_res, double sin_alt_254,
              double x_factor, double y_factor, double square_z, int threads):
    """Shade 1..255 of every interior cell without no data: gdaldem's GDALHillshadeAlg (exact
    reciprocal square root instead of GDAL's approximate one). With ``gx``, ``gy`` the Horn
    differences over the cell size: ``cang = (sin_alt_254 + gx * x_factor + gy * y_factor) /
    sqrt(1 + square_z * (gx^2 + gy^2))``, the shade ``1 + cang`` (1 where cang <= 0)."""
    cdef Py_ssize_t rows = dem.shape[0], cols = dem.shape[1], i, j
    cdef double gx, gy, cang
    if rows < 3 or cols < 3:
        return
    for i in prange(1, rows - 1, nogil=True, schedule='dynamic', chunksize=4,
                    num_threads=resolved_threads(threads)):
        for j in range(1, cols - 1):
            if window_has_nodata(dem, mask, use_mask, i, j):
                continue
            gx = horn_x(dem, i, j) * inv_x_res
            gy = horn_y(dem, i, j) * inv_y_res
            cang = ((sin_alt_254 + (gx * x_factor + gy * y_factor))
                    / sqrt(1 + square_z * (gx * gx + gy * gy)))
            out[i, j] = 1.0 if cang <= 0.0 else 1.0 + cang
