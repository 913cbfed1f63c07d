"""Per-point normals and curvature of a point cloud (PDAL ``filters.normal`` style), GIL-free.

Frame and units: the points' own frame and units (LAS: the file's CRS, metres or feet); z is
"up" for the ``always_up`` orientation. Coordinates are float64 as stored (LAS x ~ 500000,
y ~ 4900000 are fine): every distance and covariance is computed from coordinate differences
``p_j - p_i`` between a point and its neighbours, which are exact in float64 for nearby points,
so precision does not depend on the absolute position and no centre is subtracted.

Neighbourhood of a point p (the same in the kernel and in test/reference_normals.py)
    k nearest (default, k = 8): the k + 1 points with the smallest (squared distance, id)
    pairs among all input points, p itself included (PDAL's ``knn``: the point and its k
    neighbours; Open3D's ``KDTreeSearchParamKNN(k + 1)``). Ties in distance go to the smaller
    id, so point order, tiling and thread count cannot change the set. Duplicate points
    (distance 0) are neighbours like any other.
    radius: every point q with ``d2(p, q) <= radius * radius`` (p included), in the points'
    units.
    Squared distances are ``(dx * dx + dy * dy) + dz * dz`` with ``d = q - p`` in float64,
    without fused multiply-adds.

Normal and curvature
    The covariance of the neighbourhood (centred on its mean; the scaling does not matter) has
    eigenvalues l0 <= l1 <= l2. The normal is the unit eigenvector of l0 and the curvature
    ``|l0| / (l0 + l1 + l2)`` (PDAL's definition, in [0, 1/3]). The covariance sums run over
    the neighbours in (distance, id) order, relative to p. The smallest eigenpair comes from a
    solver of the kernel's own: trigonometric eigenvalues and a cross-product eigenvector when
    ``(l1 - l0) / (l0 + l1 + l2) >= 1e-2`` (normal error about 1e-16 / gap^2 <= 1e-12), the
    cyclic Jacobi of :func:`symmetric_eigen` closer to a repeated eigenvalue (error about
    1e-16 / gap), so no normal is off by more than about 1e-8.

Degenerate neighbourhoods give NaN normal and NaN curvature (counted in ``nan_count``)
    - fewer than 3 points (only when the input has fewer than 3 points, or in radius mode);
    - ``l0 + l1 + l2`` (the trace) not > 0: all points identical;
    - ``l1 - l0 <= DEGENERATE_GAP * l2`` (1e-8): the smallest eigenvalue is repeated to
      rounding, so its eigenvector is not defined: collinear points (l0 = l1 = 0) and
      isotropic neighbourhoods (l0 = l1 = l2, e.g. a cubic lattice's 6 face neighbours).
    Planar neighbourhoods are never degenerate (l0 = 0 < l1): 3 distinct non-collinear points
    suffice.

Orientation (PDAL's rule, made deterministic where PDAL keeps the solver's sign)
    viewpoint given: flip the normal when ``dot(viewpoint - p, n) < 0``; ``always_up`` is
        ignored (PDAL logs "Viewpoint provided. Ignoring always_up = TRUE."). PDAL keeps a
        normal with dot == 0 as its solver returned it; here it gets the up rule.
    else always_up (default): flip when ``nz < 0`` (PDAL). PDAL keeps a normal with nz == 0
        as returned; here it is flipped when ny < 0, and when also ny == 0, when nx < 0, so
        horizontal normals have a defined sign too.
    always_up=False and no viewpoint: no flip; the sign is the solver's (deterministic for a
        neighbourhood, but arbitrary: orient later, e.g. by propagation).
    PDAL's optional ``refine`` (orientation by minimum-spanning-tree propagation, a global step)
    is not part of this per-point kernel. -0.0 components are written as +0.0.

Neighbour distance (for tilers)
    k nearest: the distance to the farthest neighbour used (the (k+1)-th pair), or +inf when
    the input has fewer than k + 1 points (the neighbourhood is incomplete). radius: the radius.
    A core point's result equals the result on any larger cloud when every point of that cloud
    within ``neighbour_distance`` (closed ball) of it is among the input points, e.g. when the
    halo reaches farther than ``neighbour_distance`` from the point.

Speed: the kernel (``_normals.pyx``) builds a cell list once per call (square XY columns
sorted by z, sized so that a point's own cube holds a few points: flat airborne tiles and
walls or trees alike), copies each column's 3 x 3 block once for the column's queries and
falls back to a ring-by-ring search where the block does not settle a query; the whole loop
runs in ``prange(..., nogil=True)`` on ``threads`` cores. No library index is used: the grid
is faster than pykdtree and scipy's cKDTree here (bench/bench_normals.py). Any thread count,
any point order (with ids carried along) and any tiling give the same bytes.
"""
from dataclasses import dataclass
import math
from numbers import Integral, Real

import numpy as np

from . import _normals
from .threads import checked_threads

DEFAULT_K = 8
MAX_K = 1024
MAX_COORDINATE = 1e12
"""Largest accepted |coordinate| (any unit): squared distances stay far from overflow."""
DEGENERATE_GAP = _normals.DEGENERATE_GAP

_CELL_POINTS = 6.0         # target mean number of points in a point's own cell^3 (speed only)
_OCCUPANCY_SAMPLES = 16384  # points sampled to measure that occupancy
_GRID_STEPS = 24


@dataclass(frozen=True)
class Normals:
    """Result of :func:`estimate_normals`, one row per core point in input order.

    normals: M x 3 float64 unit normals (nx, ny, nz), oriented; NaN rows when degenerate.
    curvature: M float64, ``|l0| / (l0 + l1 + l2)`` in [0, 1/3]; NaN when degenerate.
    neighbour_distance: M float64, distance (points' units) to the farthest neighbour used
        (k nearest), +inf when the input has fewer than k + 1 points; the radius (radius mode).
    neighbour_count: M int32, points in the neighbourhood (the point itself included).
    nan_count: number of degenerate (NaN) rows.
    """

    normals: np.ndarray
    curvature: np.ndarray
    neighbour_distance: np.ndarray
    neighbour_count: np.ndarray
    nan_count: int


def _checked_points(points):
    if not isinstance(points, np.ndarray):
        raise ValueError(f'points must be a numpy array, got {type(points).__name__}')
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f'points must be an N x 3 array (x, y, z), got shape {points.shape}')
    if points.dtype != np.float64:
        if points.dtype.kind == 'f' and points.dtype.itemsize == 8:
            points = points.astype(np.float64)  # non-native byte order: swapped copy
        else:
            raise ValueError(f'points must be float64, got {points.dtype} '
                             f'(convert with points.astype(np.float64))')
    if not points.flags.aligned:
        points = points.copy()
    return points


def _checked_bounds(points):
    """(x0, x1, y0, y1, z0, z1) of non-empty points; ValueError for non-finite or huge
    coordinates."""
    finite, x0, x1, y0, y1, z0, z1, largest = _normals.bounds(points)
    if not finite:
        bad = np.flatnonzero(~np.isfinite(points).all(axis=1))
        raise ValueError(f'points has {bad.size} rows with NaN or infinite coordinates '
                         f'(first: row {bad[0]})')
    if largest > MAX_COORDINATE:
        raise ValueError(f'points has a coordinate of magnitude {largest:g}, '
                         f'more than {MAX_COORDINATE:g}')
    return x0, x1, y0, y1, z0, z1


def _checked_ids(ids, count):
    if ids is None:
        return np.arange(count, dtype=np.int64)
    if not isinstance(ids, np.ndarray):
        raise ValueError(f'ids must be a numpy integer array, got {type(ids).__name__}')
    if ids.dtype.kind not in 'iu':
        raise ValueError(f'ids must be integers, got dtype {ids.dtype}')
    if ids.shape != (count,):
        raise ValueError(f'ids must have shape ({count},) (one per point), got {ids.shape}')
    if ids.dtype.kind == 'u' and count and int(ids.max()) > np.iinfo(np.int64).max:
        raise ValueError('ids must fit in int64')
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if count > 1 and not (np.diff(ids) > 0).all() and np.unique(ids).size != count:
        raise ValueError('ids must be unique (they break ties between equal distances)')
    return ids


def _core_rank(core, count):
    """Output row of every input point, -1 for non-core points; and the number of rows."""
    if core is None:
        return np.arange(count, dtype=np.int64), count
    if isinstance(core, Integral) and not isinstance(core, bool):
        if not 0 <= core <= count:
            raise ValueError(f'core must be from 0 to the number of points ({count}) '
                             f'(the first core points are core), got {core}')
        rank = np.full(count, -1, dtype=np.int64)
        rank[:core] = np.arange(core)
        return rank, int(core)
    if isinstance(core, np.ndarray) and core.dtype == np.bool_:
        if core.shape != (count,):
            raise ValueError(f'core mask must have shape ({count},), got {core.shape}')
        rank = np.cumsum(core, dtype=np.int64) - 1
        rank[~core] = -1
        return rank, int(np.count_nonzero(core))
    raise ValueError(f'core must be None (all points), a number of leading points or a boolean '
                     f'mask of the points, got {type(core).__name__}')


def _checked_neighbourhood(k, radius):
    if radius is not None:
        if k is not None:
            raise ValueError('give either k or radius, not both')
        if (isinstance(radius, bool) or not isinstance(radius, Real)
                or not math.isfinite(radius) or radius <= 0):
            raise ValueError(f'radius must be a finite number > 0 (points\' units), '
                             f'got {radius!r}')
        return 0, float(radius)
    k = DEFAULT_K if k is None else k
    if isinstance(k, bool) or not isinstance(k, Integral) or not 2 <= k <= MAX_K:
        raise ValueError(f'k must be an integer from 2 to {MAX_K} (neighbours besides the '
                         f'point itself), got {k!r}')
    return int(k), 0.0


def _checked_orientation(always_up, viewpoint):
    if not isinstance(always_up, (bool, np.bool_)):
        raise ValueError(f'always_up must be True or False, got {always_up!r}')
    if viewpoint is None:
        mode = 'up' if always_up else 'none'
        return _normals.ORIENTATION_MODES[mode], (0.0, 0.0, 0.0)
    try:
        values = tuple(float(v) for v in viewpoint)
    except (TypeError, ValueError):
        raise ValueError(f'viewpoint must be three numbers (x, y, z), got {viewpoint!r}') \
            from None
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise ValueError(f'viewpoint must be three finite numbers (x, y, z), got {viewpoint!r}')
    return _normals.ORIENTATION_MODES['viewpoint'], values




def _grid(points, x0, x1, y0, y1, z0, z1):
    """Column grid (x0, y0, cell, nx, ny, margin) for the kernel (speed only: the search is
    exact for any grid). The cell is sized so that a point's own cube of cell^3 holds about
    ``_CELL_POINTS`` points, which suits flat airborne tiles (a column holds one surface) as
    well as walls, trees and terrestrial scans (tall columns are searched along z), and is
    enlarged when more than max(16, 2 N) columns would be needed."""
    count = points.shape[0]
    width, depth, height = x1 - x0, y1 - y0, z1 - z0
    extent = max(width, depth, height)
    if extent == 0:
        return x0, y0, 1.0, 1, 1, 1e-12 * (abs(x0) + abs(y0) + 1.0)  # all points identical
    sample = points
    if count > 2 * _OCCUPANCY_SAMPLES:
        stride = count // _OCCUPANCY_SAMPLES
        expected = count / stride  # a binomial count: room for 8 standard deviations
        sample = np.empty((int(expected + 8 * math.sqrt(expected)) + 64, 3))
        sample = sample[:_normals.hashed_sample(points, stride, sample)]
    fraction = len(sample) / count
    cell = max(extent / count ** (1 / 3), 1e-9 * extent)  # a cube's spacing: grown below
    for _ in range(_GRID_STEPS):
        occupancy = _normals.voxel_occupancy(sample, x0, y0, z0, 1.0 / cell, fraction)
        if occupancy < _CELL_POINTS / 4:
            cell *= 2.0
        elif occupancy > 4 * _CELL_POINTS:
            cell *= 0.5
        else:
            cell *= math.sqrt(_CELL_POINTS / max(occupancy, 1.0))  # surfaces: ~ cell^2
            break
    max_columns = max(16, 2 * count)
    while (width // cell + 1) * (depth // cell + 1) > max_columns:
        cell *= 1.25
    nx, ny = int(width // cell) + 1, int(depth // cell) + 1
    scale = max(abs(x0), abs(x1), abs(y0), abs(y1))
    margin = 1e-12 * (scale + width + depth + cell)  # >> rounding of column coordinates
    return x0, y0, cell, nx, ny, margin


def estimate_normals(points, *, k=None, radius=None, ids=None, core=None, always_up=True,
                     viewpoint=None, threads=0) -> Normals:
    """Normal, curvature and neighbour distance of every core point (module docstring: rules).

    points: N x 3 float64 (x, y, z), any strides; all N points serve as neighbours.
    k: neighbours besides the point itself (2..MAX_K); default ``DEFAULT_K`` = 8 unless
        ``radius`` is given. radius: neighbourhood radius (points' units, > 0) instead of k.
    ids: N unique integers (default ``arange(N)``: the point's index in its file), used only
        to break ties between equal distances; pass the file indices when calling on a subset
        (tile + halo) so the result equals the whole file's.
    core: which points to compute: None (all), an integer c (the first c points: tile points
        first, then halo points), or an N-element boolean mask. Rows follow the input order of
        the core points.
    always_up, viewpoint: orientation (module docstring); viewpoint (x, y, z) in the points'
        frame overrides always_up, as in PDAL.
    threads: 0 = OpenMP default (all cores or OMP_NUM_THREADS), n > 0 = n threads. The bytes
        do not depend on it.

    An empty input gives empty arrays; fewer than 3 points give NaN rows. Raises ValueError
    saying what is wrong for any bad argument.
    """
    points = _checked_points(points)
    count = points.shape[0]
    bounds = _checked_bounds(points) if count else None
    k, radius = _checked_neighbourhood(k, radius)
    ids = _checked_ids(ids, count)
    rank, rows = _core_rank(core, count)
    mode, (vx, vy, vz) = _checked_orientation(always_up, viewpoint)
    threads = checked_threads(threads)
    normals = np.empty((rows, 3), np.float64)
    curvature = np.empty(rows, np.float64)
    distance = np.empty(rows, np.float64)
    neighbours = np.empty(rows, np.int32)
    if rows == 0:
        return Normals(normals, curvature, distance, neighbours, 0)
    x0, y0, cell, nx, ny, margin = _grid(points, *bounds)
    nan_count = _normals.estimate(points, ids, rank, x0, y0, cell, nx, ny, margin, k, radius,
                                  mode, vx, vy, vz, normals, curvature, distance, neighbours,
                                  threads)
    return Normals(normals, curvature, distance, neighbours, int(nan_count))


def symmetric_eigen(matrices, *, threads=0):
    """Eigen-decomposition of symmetric 3 x 3 matrices by the kernel's cyclic Jacobi solver
    (the one the normals fall back to where eigenvalues meet).

    matrices: (..., 3, 3) finite, exactly symmetric, converted to float64.
    Returns (eigenvalues (..., 3) ascending, eigenvectors (..., 3, 3) as orthonormal columns),
    like ``numpy.linalg.eigh``; eigenvalues within about 1e-16 of the largest magnitude.
    """
    matrices = np.asarray(matrices, dtype=np.float64)
    if matrices.ndim < 2 or matrices.shape[-2:] != (3, 3):
        raise ValueError(f'matrices must have shape (..., 3, 3), got {matrices.shape}')
    if not np.isfinite(matrices).all():
        raise ValueError('matrices must be finite')
    if not np.array_equal(matrices, np.swapaxes(matrices, -1, -2)):
        raise ValueError('matrices must be symmetric')
    threads = checked_threads(threads)
    batch = np.ascontiguousarray(matrices.reshape(-1, 3, 3))
    values = np.empty((batch.shape[0], 3), np.float64)
    vectors = np.empty((batch.shape[0], 3, 3), np.float64)
    _normals.symmetric_eigen(batch, values, vectors, threads)
    return values.reshape(matrices.shape[:-1]), vectors.reshape(matrices.shape)
