# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False
# distutils: extra_compile_args = -O3 -fopenmp -ffp-contract=off
"""Hot loops of per-point normals. Private: call :mod:`pointcloud_pipeline.normals`.

Arguments are trusted here (the public module validates them and chooses the grid). The GIL is
released for the whole call; no Python object is touched inside it. ``-ffp-contract=off`` keeps
the compiler from fusing multiply-adds, so squared distances are the IEEE results of
``(dx * dx + dy * dy) + dz * dz``, bit for bit those of the numpy reference.

Cell list (built once per call, O(N), per-chunk histograms and a parallel scatter): the XY plane
is cut into square columns of ``cell`` metres from (x0, y0) and each column is sorted by
(z, id). A column is a 3-D cell of unbounded height; the public module sizes ``cell`` so that a
point's own cube of cell^3 holds a few points, so flat airborne tiles have a few points per
column and walls, trees and terrestrial scans have tall columns that are searched along z.

Neighbour search, per query point (a core point), columns processed in parallel:
- block fast path: the points of the 3 x 3 columns around a column are copied once into a
  scratch block shared by that column's queries. For a query, the squared distances to the
  block (a vectorisable loop) are filtered by a threshold (grown until it holds k + 1 points)
  and only those are inserted into the sorted list of the k + 1 best. The result is final when
  its (k+1)-th distance is below the distance from the query to the block's outside.
- ring search (tall columns, or a block that does not settle it): Chebyshev rings of columns
  around the query's column, continuing from the block's result; a column is skipped, and the
  search stops, once a lower bound of the horizontal distance to it (to every further ring)
  exceeds the current (k+1)-th distance; inside a column the scan runs outwards from the
  query's z and stops once |dz| alone exceeds it.
- radius: the block when it holds the whole ball, else every column that can hold points of
  it; the neighbours are then sorted by (squared distance, id) (introsort, no allocation).
Candidates are ranked by the exact pair (squared distance, id), so equal distances go to the
smaller id. Every distance is computed from raw coordinate differences ``p_j - p_i``
(float64), so it does not depend on the grid, the tile or any centre; the lower bounds carry a
safety ``margin`` (metres) for the rounding of the column coordinates, so the search is exact.

Per point: covariance of the neighbourhood (sums in (distance, id) order, relative to the query
point, two passes: mean, then centred products), its smallest eigenpair
(:func:`smallest_eigenpair`: trigonometric with a cross-product eigenvector, cyclic Jacobi where
eigenvalues meet), the normal oriented; curvature = |l0| / (l0 + l1 + l2). Each point's result
is a function of its neighbourhood only: any thread count, point order or grid gives the same
bytes.
"""
from cython.parallel cimport parallel, prange
from libc.float cimport DBL_EPSILON
from libc.math cimport INFINITY, NAN, acos, cos, fabs, sqrt
from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t
from libc.stdlib cimport free, malloc, qsort, realloc
from libc.string cimport memset
from openmp cimport omp_get_max_threads

cdef enum:
    ORIENT_NONE = 0        # sign as the solver returns it
    ORIENT_UP = 1          # nz >= 0 (then ny, then nx, for nz == 0)
    ORIENT_VIEWPOINT = 2   # towards the viewpoint (the up rule when exactly perpendicular)

# (l1 - l0) <= GAP * l2: the smallest eigenvalue is not separated, its eigenvector undefined
cdef double GAP = 1e-8

ORIENTATION_MODES = {'none': ORIENT_NONE, 'up': ORIENT_UP, 'viewpoint': ORIENT_VIEWPOINT}
DEGENERATE_GAP = GAP
DEF MAX_SWEEPS = 32               # Jacobi sweeps (3 x 3 converges in about 4)
DEF FAST_GAP = 1e-2                # trigonometric eigenpair only when (l1 - l0) / trace >= this
DEF TWO_THIRDS_PI = 2.0943951023931957
DEF BLOCK_CAPACITY = 512           # most points copied from a 3 x 3 block of columns
DEF SMALL_CELL = 24                # longer columns are sorted by qsort, shorter by insertion
DEF RADIUS_START_CAPACITY = 64     # first size of the growable radius lists


ctypedef struct Point:
    double x
    double y
    double z
    int64_t id
    int64_t source     # index in the caller's array


ctypedef struct Neighbour:
    double d2          # squared distance to the query point, metres^2
    int64_t position   # index into the sorted points (its id breaks ties)


ctypedef struct RadiusNeighbour:
    double d2
    int64_t id
    int64_t position


ctypedef struct Grid:
    const Point* points      # sorted by (column, z, id)
    const int64_t* start     # column c holds points[start[c]:start[c + 1]]
    int64_t nx
    int64_t ny
    double x0
    double y0
    double cell              # metres
    double inv_cell          # 1 / cell
    double margin            # metres subtracted from every horizontal lower bound


ctypedef struct Scratch:
    Neighbour* items          # the neighbour list (k + 1, or growable for a radius)
    RadiusNeighbour* found    # radius mode: the neighbours while they are sorted
    int64_t capacity          # of items (and found)
    double* block             # 3 x 3 block of columns: x, y, z, d2 rows of BLOCK_CAPACITY
    int64_t* block_id
    int64_t* block_position
    int64_t* block_selected


ctypedef struct Orientation:
    int mode
    double vx
    double vy
    double vz


def default_threads():
    """Threads used for ``threads=0``: OpenMP's default (all cores unless OMP_NUM_THREADS)."""
    return omp_get_max_threads()


cdef inline int resolved_threads(int threads) noexcept nogil:
    return threads if threads > 0 else omp_get_max_threads()


# --- 3 x 3 symmetric eigen-solver ----------------------------------------------------------

cdef inline void rotate(double* a, double* v, int p, int q) noexcept nogil:
    """One Jacobi rotation zeroing a[p, q] (a: symmetric 3 x 3 row-major, v: eigenvectors as
    columns), the stable form of Numerical Recipes (11.1)."""
    cdef int r = 3 - p - q, i
    cdef double apq = a[3 * p + q]
    cdef double theta = (a[3 * q + q] - a[3 * p + p]) / (2.0 * apq)
    cdef double t, c, s, arp, arq, vip, viq
    if fabs(theta) > 1e150:  # theta * theta would overflow; t -> 1 / (2 theta)
        t = 0.5 / theta
    else:
        t = 1.0 / (fabs(theta) + sqrt(theta * theta + 1.0))
        if theta < 0.0:
            t = -t
    c = 1.0 / sqrt(t * t + 1.0)
    s = t * c
    a[3 * p + p] -= t * apq
    a[3 * q + q] += t * apq
    a[3 * p + q] = 0.0
    a[3 * q + p] = 0.0
    arp = a[3 * r + p]
    arq = a[3 * r + q]
    a[3 * r + p] = c * arp - s * arq
    a[3 * p + r] = a[3 * r + p]
    a[3 * r + q] = s * arp + c * arq
    a[3 * q + r] = a[3 * r + q]
    for i in range(3):
        vip = v[3 * i + p]
        viq = v[3 * i + q]
        v[3 * i + p] = c * vip - s * viq
        v[3 * i + q] = s * vip + c * viq


cdef void symmetric_eigen3(double* a, double* w, double* v) noexcept nogil:
    """Eigenvalues ``w`` (ascending) and unit eigenvectors (columns of ``v``, row-major) of the
    symmetric 3 x 3 ``a`` (destroyed) by cyclic Jacobi.

    An off-diagonal element is zeroed without a rotation once it is below DBL_EPSILON times the
    geometric mean of its two diagonal elements (the relative criterion of Demmel and Veselic:
    eigenvalues of a positive semi-definite matrix keep their relative accuracy). Jacobi's
    eigenvectors stay orthonormal to rounding however close the eigenvalues are.
    """
    cdef int sweep, p, q, i, j, rotated
    cdef double apq, tmp
    cdef int pairs_p[3]
    cdef int pairs_q[3]
    pairs_p[0] = 0
    pairs_q[0] = 1
    pairs_p[1] = 0
    pairs_q[1] = 2
    pairs_p[2] = 1
    pairs_q[2] = 2
    for i in range(9):
        v[i] = 0.0
    v[0] = 1.0
    v[4] = 1.0
    v[8] = 1.0
    for sweep in range(MAX_SWEEPS):
        rotated = 0
        for i in range(3):
            p = pairs_p[i]
            q = pairs_q[i]
            apq = a[3 * p + q]
            if apq == 0.0:
                continue
            if fabs(apq) <= DBL_EPSILON * sqrt(fabs(a[3 * p + p]) * fabs(a[3 * q + q])):
                a[3 * p + q] = 0.0
                a[3 * q + p] = 0.0
                continue
            rotate(a, v, p, q)
            rotated = 1
        if not rotated:
            break
    for i in range(3):
        w[i] = a[4 * i]
    # ascending order: a 3-element sort that carries the columns along
    for i in range(2):
        for j in range(2 - i):
            if w[j + 1] < w[j]:
                tmp = w[j]
                w[j] = w[j + 1]
                w[j + 1] = tmp
                for p in range(3):
                    tmp = v[3 * p + j]
                    v[3 * p + j] = v[3 * p + j + 1]
                    v[3 * p + j + 1] = tmp


def symmetric_eigen(const double[:, :, ::1] matrices, double[:, ::1] values,
                    double[:, :, ::1] vectors, int threads):
    """Batch entry of the solver (M x 3 x 3 symmetric -> M x 3 ascending, M x 3 x 3 columns)."""
    cdef Py_ssize_t m, count = matrices.shape[0]
    for m in prange(count, nogil=True, schedule='dynamic', chunksize=256,
                   num_threads=resolved_threads(threads)):
        eigen_of_copy(&matrices[m, 0, 0], &values[m, 0], &vectors[m, 0, 0])


cdef void eigen_of_copy(const double* matrix, double* w, double* v) noexcept nogil:
    cdef double a[9]
    cdef int i
    for i in range(9):
        a[i] = matrix[i]
    symmetric_eigen3(a, w, v)


cdef bint smallest_eigenpair(const double* a, double* w, double* n) noexcept nogil:
    """Eigenvalues ``w`` (ascending) of ``a / trace(a)`` and the unit eigenvector ``n`` of the
    smallest, for a symmetric positive semi-definite 3 x 3 ``a`` (row-major, unchanged).
    Returns False when that eigenvector is not defined: trace not > 0 (all points identical),
    or ``w[1] - w[0] <= GAP * w[2]`` (the smallest eigenvalue repeated to rounding).

    Fast path: trigonometric eigenvalues and the eigenvector as the largest cross product of two
    rows of ``b - l0 I``, whose error is about 1e-16 / (l1 - l0). The trigonometric eigenvalues
    lose half their digits where two of them meet, so when ``(l1 - l0) < FAST_GAP`` (relative
    to the trace) the cyclic Jacobi solver decides instead.
    """
    cdef double trace = a[0] + a[4] + a[8]
    cdef double inv, b00, b01, b02, b11, b12, b22, q, d0, d1, d2, p1, p2, p, det, r, phi
    cdef double l0, l1, l2, best, norm2, length
    cdef double m[9]
    cdef double v[9]
    cdef double c[9]
    cdef int i, pick
    if not (trace > 0.0 and trace < INFINITY):
        return False
    inv = 1.0 / trace
    b00 = a[0] * inv
    b01 = a[1] * inv
    b02 = a[2] * inv
    b11 = a[4] * inv
    b12 = a[5] * inv
    b22 = a[8] * inv
    q = (b00 + b11 + b22) / 3.0
    d0 = b00 - q
    d1 = b11 - q
    d2 = b22 - q
    p1 = b01 * b01 + b02 * b02 + b12 * b12
    p2 = d0 * d0 + d1 * d1 + d2 * d2 + 2.0 * p1
    if p2 > 1e-20:  # else nearly isotropic: no gap, Jacobi decides
        p = sqrt(p2 / 6.0)
        det = (d0 * (d1 * d2 - b12 * b12) - b01 * (b01 * d2 - b12 * b02)
               + b02 * (b01 * b12 - d1 * b02))
        r = det / (2.0 * p * p * p)
        r = -1.0 if r < -1.0 else (1.0 if r > 1.0 else r)
        phi = acos(r) / 3.0
        l2 = q + 2.0 * p * cos(phi)
        l0 = q + 2.0 * p * cos(phi + TWO_THIRDS_PI)
        l1 = 3.0 * q - l0 - l2
        if l1 - l0 >= FAST_GAP:
            d0 = b00 - l0
            d1 = b11 - l0
            d2 = b22 - l0
            # rows (d0, b01, b02), (b01, d1, b12), (b02, b12, d2): their three cross products
            c[0] = b01 * b12 - b02 * d1
            c[1] = b02 * b01 - d0 * b12
            c[2] = d0 * d1 - b01 * b01
            c[3] = b01 * d2 - b02 * b12
            c[4] = b02 * b02 - d0 * d2
            c[5] = d0 * b12 - b01 * b02
            c[6] = d1 * d2 - b12 * b12
            c[7] = b12 * b02 - b01 * d2
            c[8] = b01 * b12 - d1 * b02
            best = -1.0
            pick = 0
            for i in range(3):
                norm2 = (c[3 * i] * c[3 * i] + c[3 * i + 1] * c[3 * i + 1]
                         + c[3 * i + 2] * c[3 * i + 2])
                if norm2 > best:
                    best = norm2
                    pick = i
            length = sqrt(best)
            n[0] = c[3 * pick] / length
            n[1] = c[3 * pick + 1] / length
            n[2] = c[3 * pick + 2] / length
            w[0] = l0
            w[1] = l1
            w[2] = l2
            return True
    m[0] = b00
    m[1] = b01
    m[2] = b02
    m[3] = b01
    m[4] = b11
    m[5] = b12
    m[6] = b02
    m[7] = b12
    m[8] = b22
    symmetric_eigen3(m, w, v)
    # w[2] > 0 is False for NaN too
    if not (w[2] > 0.0) or w[1] - w[0] <= GAP * w[2]:
        return False
    length = sqrt(v[0] * v[0] + v[3] * v[3] + v[6] * v[6])
    n[0] = v[0] / length
    n[1] = v[3] / length
    n[2] = v[6] / length
    return True


def smallest_eigen(const double[:, :, ::1] matrices, double[:, ::1] values,
                   double[:, ::1] vectors, uint8_t[::1] defined, int threads):
    """Batch entry of :func:`smallest_eigenpair` (values scaled back by the trace)."""
    cdef Py_ssize_t m, count = matrices.shape[0]
    for m in prange(count, nogil=True, schedule='dynamic', chunksize=256,
                   num_threads=resolved_threads(threads)):
        defined[m] = smallest_eigenpair(&matrices[m, 0, 0], &values[m, 0], &vectors[m, 0])
        scale_values(&matrices[m, 0, 0], &values[m, 0])


cdef inline void scale_values(const double* a, double* w) noexcept nogil:
    cdef double trace = a[0] + a[4] + a[8]
    w[0] *= trace
    w[1] *= trace
    w[2] *= trace


# --- cell list -----------------------------------------------------------------------------

cdef inline int64_t column_of(double value, double origin, double inv_cell,
                              int64_t cells) noexcept nogil:
    """Column index of a coordinate >= origin (truncation is floor there); the last column
    also takes the points on the far border."""
    cdef int64_t c = <int64_t>((value - origin) * inv_cell)
    return c if c < cells else cells - 1


cdef inline bint before(double d2, int64_t id, const Neighbour* other,
                        const Point* points) noexcept nogil:
    """(d2, id) < (other's d2, other's id): the neighbour order."""
    return d2 < other.d2 or (d2 == other.d2 and id < points[other.position].id)


cdef inline bint point_before(const Point* a, const Point* b) noexcept nogil:
    return a.z < b.z or (a.z == b.z and a.id < b.id)


cdef int compare_points(const void* a, const void* b) noexcept nogil:
    if point_before(<const Point*>a, <const Point*>b):
        return -1
    return 1 if point_before(<const Point*>b, <const Point*>a) else 0


cdef void sort_column(Point* points, int64_t count) noexcept nogil:
    """Sort one column by (z, id): insertion sort when short, qsort otherwise."""
    cdef int64_t i, j
    cdef Point item
    if count > SMALL_CELL:
        qsort(points, count, sizeof(Point), compare_points)
        return
    for i in range(1, count):
        item = points[i]
        j = i
        while j > 0 and point_before(&item, &points[j - 1]):
            points[j] = points[j - 1]
            j -= 1
        points[j] = item


cdef inline uint64_t mix(uint64_t x) noexcept nogil:
    """splitmix64's finaliser: a well-mixed 64-bit hash of an index."""
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9u
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBu
    return x ^ (x >> 31)


def hashed_sample(const double[:, :] points, Py_ssize_t stride, double[:, ::1] out):
    """Copy about one point in ``stride`` (chosen by a hash of the index, independently of
    the file order) into ``out``, at most its rows; returns the rows written."""
    cdef Py_ssize_t n = points.shape[0], i, m = 0, rows = out.shape[0]
    cdef uint64_t keep = (0xFFFFFFFFFFFFFFFFu if stride <= 1
                          else <uint64_t>(18446744073709551615.0 / stride))
    with nogil:
        for i in range(n):
            if mix(<uint64_t>i) <= keep and m < rows:
                out[m, 0] = points[i, 0]
                out[m, 1] = points[i, 1]
                out[m, 2] = points[i, 2]
                m += 1
    return m


def voxel_occupancy(const double[:, :] points, double x0, double y0, double z0,
                    double inv_cell, double fraction):
    """Mean number of points in a point's own cube of 1 / inv_cell (the point-weighted mean
    occupancy of the voxels), from a random ``fraction`` of the points: sum of count^2 over the
    voxels / samples, corrected for the sampling (binomial thinning)."""
    cdef Py_ssize_t n = points.shape[0], i, slot, size = 16
    cdef int bits = 4
    cdef int64_t* keys
    cdef int64_t* counts
    cdef int64_t key, ix, iy, iz
    cdef uint64_t hashed
    cdef double total = 0.0
    while size < 2 * n:
        size *= 2
        bits += 1
    keys = <int64_t*>malloc(size * sizeof(int64_t))
    counts = <int64_t*>malloc(size * sizeof(int64_t))
    if keys == NULL or counts == NULL:
        free(keys)
        free(counts)
        raise MemoryError(f'no memory for {size} voxel counts')
    with nogil:
        memset(counts, 0, size * sizeof(int64_t))
        for i in range(n):
            ix = <int64_t>((points[i, 0] - x0) * inv_cell)
            iy = <int64_t>((points[i, 1] - y0) * inv_cell)
            iz = <int64_t>((points[i, 2] - z0) * inv_cell)
            key = (ix * 2097152 + iy) * 2097152 + iz  # wraps for huge grids: speed only
            hashed = <uint64_t>key * 0x9E3779B97F4A7C15u
            slot = <Py_ssize_t>(hashed >> (64 - bits))  # Fibonacci hashing: the top bits
            while counts[slot] != 0 and keys[slot] != key:
                slot = (slot + 1) & (size - 1)
            keys[slot] = key
            counts[slot] += 1
        for i in range(size):
            total += <double>counts[i] * <double>counts[i]
    free(keys)
    free(counts)
    return (total / n - (1.0 - fraction)) / fraction if n else 0.0


# --- neighbour search ----------------------------------------------------------------------

cdef inline double squared_distance(const Point* a, double x, double y, double z) noexcept nogil:
    cdef double dx = a.x - x, dy = a.y - y, dz = a.z - z
    return dx * dx + dy * dy + dz * dz


cdef inline int64_t lower_bound_z(const Point* points, int64_t begin, int64_t end,
                                  double z) noexcept nogil:
    """First position in [begin, end) whose z >= ``z`` (the column is sorted by z)."""
    cdef int64_t middle
    while begin < end:
        middle = begin + (end - begin) // 2
        if points[middle].z < z:
            begin = middle + 1
        else:
            end = middle
    return begin


cdef inline void offer(Neighbour* best, int64_t* count, int64_t capacity, double d2, int64_t id,
                       int64_t position, const Point* points) noexcept nogil:
    """Insert (d2, id) into the sorted list of the ``capacity`` best when it belongs there."""
    cdef int64_t i = count[0]
    if i == capacity:
        if not before(d2, id, &best[i - 1], points):
            return
        i -= 1
    else:
        count[0] = i + 1
    while i > 0 and before(d2, id, &best[i - 1], points):
        best[i] = best[i - 1]
        i -= 1
    best[i].d2 = d2
    best[i].position = position


cdef void scan_column_knn(const Grid* g, int64_t column, double x, double y, double z,
                          Neighbour* best, int64_t* count, int64_t capacity) noexcept nogil:
    """Offer the points of one column, outwards from z, while |dz| can still beat the worst.

    Exact: the computed d2 of a point is >= its computed dz * dz (a sum of non-negative
    rounded terms), and dz grows monotonically along the sorted column."""
    cdef const Point* points = g.points
    cdef int64_t begin = g.start[column], end = g.start[column + 1]
    cdef int64_t middle = lower_bound_z(points, begin, end, z), j
    cdef double dz, d2
    j = middle
    while j < end:
        dz = points[j].z - z
        if count[0] == capacity and dz * dz > best[capacity - 1].d2:
            break
        d2 = squared_distance(&points[j], x, y, z)
        offer(best, count, capacity, d2, points[j].id, j, points)
        j += 1
    j = middle - 1
    while j >= begin:
        dz = points[j].z - z
        if count[0] == capacity and dz * dz > best[capacity - 1].d2:
            break
        d2 = squared_distance(&points[j], x, y, z)
        offer(best, count, capacity, d2, points[j].id, j, points)
        j -= 1


cdef inline double gap_below(int64_t column, int64_t own, double position) noexcept nogil:
    """Distance in columns from ``position`` (column coordinates) to column ``column``."""
    if column > own:
        return column - position
    if column < own:
        return position - (column + 1)
    return 0.0


cdef inline void visit_knn(const Grid* g, int64_t cx, int64_t cy, int64_t ci, int64_t cj,
                           double gx, double gy, double x, double y, double z, Neighbour* best,
                           int64_t* count, int64_t capacity) noexcept nogil:
    cdef double hx, hy
    if count[0] == capacity:
        hx = gap_below(cx, ci, gx) * g.cell - g.margin
        hy = gap_below(cy, cj, gy) * g.cell - g.margin
        hx = hx if hx > 0.0 else 0.0
        hy = hy if hy > 0.0 else 0.0
        if hx * hx + hy * hy > best[capacity - 1].d2:
            return
    scan_column_knn(g, cy * g.nx + cx, x, y, z, best, count, capacity)


cdef int64_t knn_search(const Grid* g, const Point* query, Neighbour* best, int64_t capacity,
                        int64_t ring, int64_t count) noexcept nogil:
    """The ``capacity`` smallest (d2, id) over all points (the query point included), sorted;
    returns how many were found (fewer only when the input has fewer points).

    ``best`` already holds the ``count`` best of the columns of rings < ``ring`` (the block
    path hands over its 3 x 3 result with ring 2), or nothing with ring 0."""
    cdef double x = query.x, y = query.y, z = query.z
    cdef double gx = (x - g.x0) * g.inv_cell, gy = (y - g.y0) * g.inv_cell
    cdef int64_t ci = column_of(x, g.x0, g.inv_cell, g.nx)
    cdef int64_t cj = column_of(y, g.y0, g.inv_cell, g.ny)
    cdef int64_t cx, cy, x_lo, x_hi, y_lo, y_hi
    cdef double bound, reach
    cdef bint sides
    while True:
        x_lo = ci - ring if ci - ring > 0 else 0
        x_hi = ci + ring if ci + ring < g.nx - 1 else g.nx - 1
        y_lo = cj - ring if cj - ring > 0 else 0
        y_hi = cj + ring if cj + ring < g.ny - 1 else g.ny - 1
        for cy in range(y_lo, y_hi + 1):
            if cy == cj - ring or cy == cj + ring:
                for cx in range(x_lo, x_hi + 1):
                    visit_knn(g, cx, cy, ci, cj, gx, gy, x, y, z, best, &count, capacity)
            else:
                if ci - ring >= 0:
                    visit_knn(g, ci - ring, cy, ci, cj, gx, gy, x, y, z, best, &count,
                              capacity)
                if ring > 0 and ci + ring < g.nx:
                    visit_knn(g, ci + ring, cy, ci, cj, gx, gy, x, y, z, best, &count,
                              capacity)
        ring += 1
        # lower bound of the horizontal distance to any column of ring >= ``ring``
        bound = INFINITY
        sides = False
        if ci - ring >= 0:
            sides = True
            bound = min(bound, gx - (ci - ring + 1))
        if ci + ring < g.nx:
            sides = True
            bound = min(bound, (ci + ring) - gx)
        if cj - ring >= 0:
            sides = True
            bound = min(bound, gy - (cj - ring + 1))
        if cj + ring < g.ny:
            sides = True
            bound = min(bound, (cj + ring) - gy)
        if not sides:
            break
        if count == capacity:
            reach = bound * g.cell - g.margin
            if reach > 0.0 and reach * reach > best[capacity - 1].d2:
                break
    return count


cdef bint reserve(Scratch* scratch, int64_t count) noexcept nogil:
    """Grow the neighbour lists to hold ``count``; False when memory runs out."""
    cdef int64_t capacity = scratch.capacity
    cdef Neighbour* items
    cdef RadiusNeighbour* found
    if count <= capacity:
        return True
    while capacity < count:
        capacity *= 2
    items = <Neighbour*>realloc(scratch.items, capacity * sizeof(Neighbour))
    if items == NULL:
        return False
    scratch.items = items
    found = <RadiusNeighbour*>realloc(scratch.found, capacity * sizeof(RadiusNeighbour))
    if found == NULL:
        return False
    scratch.found = found
    scratch.capacity = capacity
    return True


cdef inline bint push(Scratch* scratch, int64_t* count, double d2, int64_t id,
                      int64_t position) noexcept nogil:
    """Append to the growable radius list; False when memory runs out."""
    if not reserve(scratch, count[0] + 1):
        return False
    scratch.found[count[0]].d2 = d2
    scratch.found[count[0]].id = id
    scratch.found[count[0]].position = position
    count[0] += 1
    return True


cdef inline bint radius_before(const RadiusNeighbour* a, const RadiusNeighbour* b) noexcept nogil:
    return a.d2 < b.d2 or (a.d2 == b.d2 and a.id < b.id)


cdef void insertion_sort_radius(RadiusNeighbour* items, int64_t count) noexcept nogil:
    cdef RadiusNeighbour item
    cdef int64_t i, j
    for i in range(1, count):
        item = items[i]
        j = i
        while j > 0 and radius_before(&item, &items[j - 1]):
            items[j] = items[j - 1]
            j -= 1
        items[j] = item


cdef inline void swap_radius(RadiusNeighbour* a, RadiusNeighbour* b) noexcept nogil:
    cdef RadiusNeighbour item = a[0]
    a[0] = b[0]
    b[0] = item


cdef void sift_down(RadiusNeighbour* items, int64_t root, int64_t count) noexcept nogil:
    cdef int64_t child
    while 2 * root + 1 < count:
        child = 2 * root + 1
        if child + 1 < count and radius_before(&items[child], &items[child + 1]):
            child += 1
        if not radius_before(&items[root], &items[child]):
            return
        swap_radius(&items[root], &items[child])
        root = child


cdef void heap_sort_radius(RadiusNeighbour* items, int64_t count) noexcept nogil:
    cdef int64_t i
    for i in range(count // 2 - 1, -1, -1):
        sift_down(items, i, count)
    for i in range(count - 1, 0, -1):
        swap_radius(&items[0], &items[i])
        sift_down(items, 0, i)


cdef void intro_sort_radius(RadiusNeighbour* items, int64_t count, int depth) noexcept nogil:
    """Quicksort (median of three, keys are unique), insertion sort for short runs, heapsort
    when the recursion gets deep: O(n log n), in place, no allocation."""
    cdef int64_t i, j, middle
    cdef RadiusNeighbour pivot
    while count > 16:
        if depth == 0:
            heap_sort_radius(items, count)
            return
        depth -= 1
        middle = count // 2
        if radius_before(&items[middle], &items[0]):
            swap_radius(&items[middle], &items[0])
        if radius_before(&items[count - 1], &items[0]):
            swap_radius(&items[count - 1], &items[0])
        if radius_before(&items[count - 1], &items[middle]):
            swap_radius(&items[count - 1], &items[middle])
        pivot = items[middle]
        i = 0
        j = count - 1
        while True:  # Hoare partition
            while radius_before(&items[i], &pivot):
                i += 1
            while radius_before(&pivot, &items[j]):
                j -= 1
            if i >= j:
                break
            swap_radius(&items[i], &items[j])
            i += 1
            j -= 1
        # recurse into the smaller part, loop on the larger one
        if j + 1 < count - j - 1:
            intro_sort_radius(items, j + 1, depth)
            items += j + 1
            count -= j + 1
        else:
            intro_sort_radius(items + j + 1, count - j - 1, depth)
            count = j + 1
    insertion_sort_radius(items, count)


cdef void sort_radius(Scratch* scratch, int64_t count) noexcept nogil:
    """Sort the radius list by (d2, id) and copy it into the neighbour list."""
    cdef int64_t i, depth = 0
    while (1 << depth) < count:
        depth += 1
    intro_sort_radius(scratch.found, count, 2 * depth)
    for i in range(count):
        scratch.items[i].d2 = scratch.found[i].d2
        scratch.items[i].position = scratch.found[i].position


cdef int64_t radius_search(const Grid* g, const Point* query, double r2, double radius,
                           Scratch* scratch) noexcept nogil:
    """Every point with d2 <= r2 (the query point included) into ``scratch``, sorted by
    (d2, id); returns the count, or -1 when memory runs out."""
    cdef double x = query.x, y = query.y, z = query.z
    cdef double gx = (x - g.x0) * g.inv_cell, gy = (y - g.y0) * g.inv_cell
    cdef int64_t ci = column_of(x, g.x0, g.inv_cell, g.nx)
    cdef int64_t cj = column_of(y, g.y0, g.inv_cell, g.ny)
    cdef double reach = (radius + g.margin) * g.inv_cell
    cdef int64_t x_lo = ci, x_hi = ci, y_lo = cj, y_hi = cj, cx, cy, begin, end, middle, j
    cdef int64_t count = 0
    cdef double hx, hy, dz, d2
    cdef const Point* points = g.points
    # columns that can hold points within the radius: position +- reach (clamped to the grid)
    while x_lo > 0 and gx - x_lo < reach:
        x_lo -= 1
    while x_hi < g.nx - 1 and (x_hi + 1) - gx <= reach:
        x_hi += 1
    while y_lo > 0 and gy - y_lo < reach:
        y_lo -= 1
    while y_hi < g.ny - 1 and (y_hi + 1) - gy <= reach:
        y_hi += 1
    for cy in range(y_lo, y_hi + 1):
        hy = gap_below(cy, cj, gy) * g.cell - g.margin
        hy = hy if hy > 0.0 else 0.0
        for cx in range(x_lo, x_hi + 1):
            hx = gap_below(cx, ci, gx) * g.cell - g.margin
            hx = hx if hx > 0.0 else 0.0
            if hx * hx + hy * hy > r2:
                continue
            begin = g.start[cy * g.nx + cx]
            end = g.start[cy * g.nx + cx + 1]
            middle = lower_bound_z(points, begin, end, z)
            j = middle
            while j < end:
                dz = points[j].z - z
                if dz * dz > r2:
                    break
                d2 = squared_distance(&points[j], x, y, z)
                if d2 <= r2 and not push(scratch, &count, d2, points[j].id, j):
                    return -1
                j += 1
            j = middle - 1
            while j >= begin:
                dz = points[j].z - z
                if dz * dz > r2:
                    break
                d2 = squared_distance(&points[j], x, y, z)
                if d2 <= r2 and not push(scratch, &count, d2, points[j].id, j):
                    return -1
                j -= 1
    sort_radius(scratch, count)
    return count


# --- per-point normal ----------------------------------------------------------------------

cdef inline bint flip_up(double nx, double ny, double nz) noexcept nogil:
    """The up rule: nz < 0; for nz == 0 (either sign of zero) ny < 0; then nx < 0."""
    if nz != 0.0:
        return nz < 0.0
    if ny != 0.0:
        return ny < 0.0
    return nx < 0.0


cdef bint neighbourhood_normal(const Point* points, const Neighbour* neighbours, int64_t count,
                               const Point* query, const Orientation* orientation,
                               double* normal, double* curvature) noexcept nogil:
    """Normal and curvature of one neighbourhood; False (NaN written) when degenerate."""
    cdef double x = query.x, y = query.y, z = query.z
    cdef double mx = 0.0, my = 0.0, mz = 0.0, dx, dy, dz, dot
    cdef double a[9]
    cdef double w[3]
    cdef double n[3]
    cdef int64_t j
    cdef const Point* p
    cdef bint flip
    if count >= 3:
        for j in range(count):
            p = &points[neighbours[j].position]
            mx += p.x - x
            my += p.y - y
            mz += p.z - z
        mx /= count
        my /= count
        mz /= count
        for j in range(9):
            a[j] = 0.0
        for j in range(count):
            p = &points[neighbours[j].position]
            dx = (p.x - x) - mx
            dy = (p.y - y) - my
            dz = (p.z - z) - mz
            a[0] += dx * dx
            a[1] += dx * dy
            a[2] += dx * dz
            a[4] += dy * dy
            a[5] += dy * dz
            a[8] += dz * dz
        a[3] = a[1]
        a[6] = a[2]
        a[7] = a[5]
    if count < 3 or not smallest_eigenpair(a, w, n):
        normal[0] = NAN
        normal[1] = NAN
        normal[2] = NAN
        curvature[0] = NAN
        return False
    if orientation.mode == ORIENT_VIEWPOINT:
        dot = ((orientation.vx - x) * n[0] + (orientation.vy - y) * n[1]
               + (orientation.vz - z) * n[2])
        flip = dot < 0.0 if dot != 0.0 else flip_up(n[0], n[1], n[2])
    elif orientation.mode == ORIENT_UP:
        flip = flip_up(n[0], n[1], n[2])
    else:
        flip = False
    if flip:
        n[0] = -n[0]
        n[1] = -n[1]
        n[2] = -n[2]
    normal[0] = n[0] + 0.0  # + 0.0 turns -0.0 into +0.0
    normal[1] = n[1] + 0.0
    normal[2] = n[2] + 0.0
    curvature[0] = fabs(w[0]) / (w[0] + w[1] + w[2])
    return True


# --- block fast path -----------------------------------------------------------------------

cdef int64_t gather_block(const Grid* g, int64_t ci, int64_t cj, Scratch* scratch) noexcept nogil:
    """Copy the points of the 3 x 3 columns around (ci, cj) into the scratch block, the own
    column first, then its edge neighbours, then the corners (near candidates first fill the
    neighbour list early, so fewer later ones are inserted); returns their number, or -1 when
    more than BLOCK_CAPACITY (tall columns: the ring search's z pruning is faster there)."""
    cdef int64_t cx, cy, j, m = 0, begin, end, column
    cdef int o
    cdef const Point* points = g.points
    cdef int offsets_x[9]
    cdef int offsets_y[9]
    offsets_x[:] = [0, -1, 1, 0, 0, -1, 1, -1, 1]
    offsets_y[:] = [0, 0, 0, -1, 1, -1, -1, 1, 1]
    for o in range(9):
        cx = ci + offsets_x[o]
        cy = cj + offsets_y[o]
        if cx < 0 or cx >= g.nx or cy < 0 or cy >= g.ny:
            continue
        column = cy * g.nx + cx
        begin = g.start[column]
        end = g.start[column + 1]
        if m + end - begin > BLOCK_CAPACITY:
            return -1
        for j in range(begin, end):
            scratch.block[m] = points[j].x
            scratch.block[BLOCK_CAPACITY + m] = points[j].y
            scratch.block[2 * BLOCK_CAPACITY + m] = points[j].z
            scratch.block_id[m] = points[j].id
            scratch.block_position[m] = j
            m += 1
    return m


cdef double block_reach(const Grid* g, const Point* query, int64_t ci,
                        int64_t cj) noexcept nogil:
    """Lower bound of the distance from the query to any point outside the 3 x 3 block of
    columns around its column (ci, cj), metres; inf when the block is the whole grid."""
    cdef double gx = (query.x - g.x0) * g.inv_cell, gy = (query.y - g.y0) * g.inv_cell
    cdef double bound = INFINITY
    # points outside the block lie in columns <= ci - 2 or >= ci + 2 (or the same in y)
    if ci - 2 >= 0:
        bound = min(bound, gx - (ci - 1))
    if ci + 2 < g.nx:
        bound = min(bound, (ci + 2) - gx)
    if cj - 2 >= 0:
        bound = min(bound, gy - (cj - 1))
    if cj + 2 < g.ny:
        bound = min(bound, (cj + 2) - gy)
    return bound * g.cell - g.margin


cdef int64_t knn_in_block(const Grid* g, const Point* query, int64_t ci, int64_t cj,
                          Scratch* scratch, int64_t m, double guess, Neighbour* best,
                          int64_t capacity, bint* certain) noexcept nogil:
    """The k + 1 nearest among the block's ``m`` points (their count), and ``certain`` when
    that is provably the global answer (the (k+1)-th squared distance is below the squared
    distance to any point outside the block, strictly, so no outside point can tie); -1 when
    the block cannot give k + 1 points (use the ring search from scratch).

    Only the points within a threshold are offered to the sorted list: starting from
    ``guess`` (> 0, a squared distance), the threshold grows 4-fold until at least k + 1
    block points lie within it, so every one of the k + 1 nearest (and their ties) is offered.
    """
    cdef double x = query.x, y = query.y, z = query.z
    cdef double reach, dx, dy, dz, threshold = guess
    cdef const double* bx = scratch.block
    cdef const double* by = scratch.block + BLOCK_CAPACITY
    cdef const double* bz = scratch.block + 2 * BLOCK_CAPACITY
    cdef double* d2 = scratch.block + 3 * BLOCK_CAPACITY
    cdef int64_t* selected = scratch.block_selected
    cdef int64_t count = 0, j, within
    reach = block_reach(g, query, ci, cj)
    certain[0] = False
    if m < capacity and reach < INFINITY:
        return -1
    within = 0
    for j in range(m):
        dx = bx[j] - x
        dy = by[j] - y
        dz = bz[j] - z
        d2[j] = dx * dx + dy * dy + dz * dz
        within += d2[j] <= threshold
    while within < capacity and within < m:
        threshold *= 4.0
        within = 0
        for j in range(m):
            within += d2[j] <= threshold
    # branch-free compaction of the candidates within the threshold, then the sorted inserts
    within = 0
    for j in range(m):
        selected[within] = j
        within += d2[j] <= threshold
    for j in range(within):
        offer(best, &count, capacity, d2[selected[j]], scratch.block_id[selected[j]],
              scratch.block_position[selected[j]], g.points)
    certain[0] = reach == INFINITY or (reach > 0.0 and best[capacity - 1].d2 < reach * reach)
    return count


cdef int64_t radius_in_block(const Grid* g, const Point* query, int64_t ci, int64_t cj,
                             Scratch* scratch, int64_t m, double radius) noexcept nogil:
    """Every block point within ``radius`` into the sorted neighbour list when the block holds
    the whole ball (the radius is below the distance to any point outside the block); -1 when
    it does not (use the column scan), -2 when memory runs out."""
    cdef double x = query.x, y = query.y, z = query.z, r2 = radius * radius
    cdef double dx, dy, dz
    cdef const double* bx = scratch.block
    cdef const double* by = scratch.block + BLOCK_CAPACITY
    cdef const double* bz = scratch.block + 2 * BLOCK_CAPACITY
    cdef double* d2 = scratch.block + 3 * BLOCK_CAPACITY
    cdef int64_t* selected = scratch.block_selected
    cdef int64_t j, within = 0
    if not radius < block_reach(g, query, ci, cj):
        return -1
    for j in range(m):
        dx = bx[j] - x
        dy = by[j] - y
        dz = bz[j] - z
        d2[j] = dx * dx + dy * dy + dz * dz
        selected[within] = j
        within += d2[j] <= r2
    if not reserve(scratch, within):
        return -2
    for j in range(within):
        scratch.found[j].d2 = d2[selected[j]]
        scratch.found[j].id = scratch.block_id[selected[j]]
        scratch.found[j].position = scratch.block_position[selected[j]]
    sort_radius(scratch, within)
    return within


# --- entry point ---------------------------------------------------------------------------

cdef void build_cells(const double[:, :] xyz, const int64_t[::1] ids, double x0, double y0,
                      double inv_cell, int64_t nx, int64_t ny, int64_t* start,
                      int64_t* counts, int64_t chunks, int64_t* column, Point* points,
                      int threads) noexcept nogil:
    """Counting sort of the points by column (``chunks`` contiguous ranges of points, each
    with its own histogram row in ``counts``: chunks x cells), then each column by (z, id),
    which makes the result independent of the chunking."""
    cdef int64_t n = xyz.shape[0], cells = nx * ny, i, c, chunk, total = 0, size
    cdef int64_t* row
    for chunk in prange(chunks, schedule='static', num_threads=threads):
        row = counts + chunk * cells
        memset(row, 0, cells * sizeof(int64_t))
        for i in range(n * chunk // chunks, n * (chunk + 1) // chunks):
            c = (column_of(xyz[i, 1], y0, inv_cell, ny) * nx
                 + column_of(xyz[i, 0], x0, inv_cell, nx))
            column[i] = c
            row[c] += 1
    for c in range(cells):  # histogram counts -> write positions of every chunk in column c
        start[c] = total
        for chunk in range(chunks):
            size = counts[chunk * cells + c]
            counts[chunk * cells + c] = total
            total += size
    start[cells] = total
    for chunk in prange(chunks, schedule='static', num_threads=threads):
        row = counts + chunk * cells
        for i in range(n * chunk // chunks, n * (chunk + 1) // chunks):
            c = column[i]
            points[row[c]].x = xyz[i, 0]
            points[row[c]].y = xyz[i, 1]
            points[row[c]].z = xyz[i, 2]
            points[row[c]].id = ids[i]
            points[row[c]].source = i
            row[c] += 1
    for c in prange(cells, schedule='dynamic', chunksize=256, num_threads=threads):
        if start[c + 1] - start[c] > 1:
            sort_column(points + start[c], start[c + 1] - start[c])


def bounds(const double[:, :] xyz):
    """(all finite, x min, x max, y min, y max, z min, z max, largest |coordinate|) in one
    pass."""
    cdef Py_ssize_t i, n = xyz.shape[0]
    cdef double x, y, z, x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY
    cdef double z0 = INFINITY, z1 = -INFINITY
    cdef double largest = 0.0
    cdef bint finite = True
    with nogil:
        for i in range(n):
            x = xyz[i, 0]
            y = xyz[i, 1]
            z = xyz[i, 2]
            finite = finite & (fabs(x) < INFINITY) & (fabs(y) < INFINITY) & (fabs(z) < INFINITY)
            x0 = min(x0, x)
            x1 = max(x1, x)
            y0 = min(y0, y)
            y1 = max(y1, y)
            z0 = min(z0, z)
            z1 = max(z1, z)
            largest = max(largest, max(fabs(x), max(fabs(y), fabs(z))))
    return finite, x0, x1, y0, y1, z0, z1, largest


cdef Scratch* new_scratch(int64_t capacity) noexcept nogil:
    cdef Scratch* scratch = <Scratch*>malloc(sizeof(Scratch))
    if scratch == NULL:
        return NULL
    scratch.capacity = capacity
    scratch.items = <Neighbour*>malloc(capacity * sizeof(Neighbour))
    scratch.found = <RadiusNeighbour*>malloc(capacity * sizeof(RadiusNeighbour))
    scratch.block = <double*>malloc(4 * BLOCK_CAPACITY * sizeof(double))
    scratch.block_id = <int64_t*>malloc(BLOCK_CAPACITY * sizeof(int64_t))
    scratch.block_position = <int64_t*>malloc(BLOCK_CAPACITY * sizeof(int64_t))
    scratch.block_selected = <int64_t*>malloc(BLOCK_CAPACITY * sizeof(int64_t))
    if (scratch.items == NULL or scratch.found == NULL or scratch.block == NULL
            or scratch.block_id == NULL or scratch.block_selected == NULL
            or scratch.block_position == NULL):
        free_scratch(scratch)
        return NULL
    return scratch


cdef void free_scratch(Scratch* scratch) noexcept nogil:
    if scratch != NULL:
        free(scratch.items)
        free(scratch.found)
        free(scratch.block)
        free(scratch.block_id)
        free(scratch.block_position)
        free(scratch.block_selected)
        free(scratch)


cdef int64_t column_normals(const Grid* g, int64_t column, const int64_t* core_rank,
                            int64_t k, double radius, const Orientation* orientation,
                            Scratch* scratch, double* normals, double* curvature,
                            double* neighbour_distance, int32_t* neighbour_count,
                            int64_t* nan_count) noexcept nogil:
    """Results of the core points of one column; returns the points that ran out of memory."""
    cdef int64_t begin = g.start[column], end = g.start[column + 1]
    cdef int64_t ci = column % g.nx, cj = column // g.nx
    cdef int64_t capacity = k + 1, q, rank, count, block = -2, failures = 0
    cdef double guess = 0.0
    cdef bint certain
    cdef const Point* query
    for q in range(begin, end):
        query = &g.points[q]
        rank = core_rank[query.source]
        if rank < 0:
            continue
        if block == -2:
            block = gather_block(g, ci, cj, scratch)
            # area holding k + 1 points at the block's mean density (columns of cell^2)
            guess = 2.0 * capacity * 9.0 * g.cell * g.cell / (3.14159 * max(block, 1))
        if k > 0:
            count = -1
            certain = False
            if block >= 0:
                count = knn_in_block(g, query, ci, cj, scratch, block, guess, scratch.items,
                                     capacity, &certain)
                if count == capacity and scratch.items[count - 1].d2 > 0.0:
                    guess = 2.0 * scratch.items[count - 1].d2  # the next query is nearby
            if count < 0:
                count = knn_search(g, query, scratch.items, capacity, 0, 0)
            elif not certain:
                count = knn_search(g, query, scratch.items, capacity, 2, count)
            neighbour_distance[rank] = (sqrt(scratch.items[count - 1].d2)
                                        if count == capacity else INFINITY)
        else:
            count = -1
            if block >= 0:
                count = radius_in_block(g, query, ci, cj, scratch, block, radius)
            if count == -1:
                count = radius_search(g, query, radius * radius, radius, scratch)
            if count < 0:
                failures += 1
                continue
            neighbour_distance[rank] = radius
        neighbour_count[rank] = <int32_t>count
        if not neighbourhood_normal(g.points, scratch.items, count, query, orientation,
                                    &normals[3 * rank], &curvature[rank]):
            nan_count[0] += 1
    return failures


def estimate(const double[:, :] xyz, const int64_t[::1] ids, const int64_t[::1] core_rank,
             double x0, double y0, double cell, int64_t nx, int64_t ny, double margin,
             int64_t k, double radius, int orientation_mode, double vx, double vy, double vz,
             double[:, ::1] normals, double[::1] curvature, double[::1] neighbour_distance,
             int32_t[::1] neighbour_count, int threads):
    """Normals of the core points (``core_rank[i]`` = output row of point i, -1: not core).

    k > 0: the k + 1 nearest (the point itself included); radius > 0 (k = 0): every point
    within ``radius`` (the points' units). Returns the number of NaN results (MemoryError when
    out of memory).
    """
    cdef int64_t n = xyz.shape[0], cells = nx * ny, c, column_nans
    cdef int64_t capacity = k + 1 if k > 0 else RADIUS_START_CAPACITY
    cdef int nthreads = resolved_threads(threads)
    cdef int64_t nan_count = 0, failures = 0
    cdef Grid grid
    cdef Orientation orientation
    cdef Scratch* scratch = NULL
    # one histogram row per chunk of points, while the rows fit in about the points' memory
    cdef int64_t chunks = max(1, min(nthreads, n * 5 // max(cells, 1)))
    cdef int64_t* start = <int64_t*>malloc((cells + 1) * sizeof(int64_t))
    cdef int64_t* counts = <int64_t*>malloc(chunks * cells * sizeof(int64_t))
    cdef int64_t* column = <int64_t*>malloc(max(n, 1) * sizeof(int64_t))
    cdef Point* points = <Point*>malloc(max(n, 1) * sizeof(Point))
    if start == NULL or counts == NULL or column == NULL or points == NULL:
        free(start)
        free(counts)
        free(column)
        free(points)
        raise MemoryError(f'no memory for the cell list of {n} points in {cells} columns')
    orientation.mode = orientation_mode
    orientation.vx = vx
    orientation.vy = vy
    orientation.vz = vz
    grid.points = points
    grid.start = start
    grid.nx = nx
    grid.ny = ny
    grid.x0 = x0
    grid.y0 = y0
    grid.cell = cell
    grid.inv_cell = 1.0 / cell
    grid.margin = margin
    with nogil:
        build_cells(xyz, ids, x0, y0, grid.inv_cell, nx, ny, start, counts, chunks, column,
                    points, nthreads)
        free(counts)
        free(column)
        with parallel(num_threads=nthreads):
            scratch = new_scratch(capacity)
            for c in prange(cells, schedule='dynamic', chunksize=16):
                if start[c + 1] == start[c]:
                    continue
                if scratch == NULL:
                    failures += start[c + 1] - start[c]
                    continue
                column_nans = 0
                failures += column_normals(&grid, c, &core_rank[0], k, radius, &orientation,
                                           scratch, &normals[0, 0], &curvature[0],
                                           &neighbour_distance[0], &neighbour_count[0],
                                           &column_nans)
                nan_count += column_nans
            free_scratch(scratch)
    free(start)
    free(points)
    if failures:
        raise MemoryError(f'no memory for the neighbour lists ({failures} points)')
    return nan_count
