# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False
# distutils: extra_compile_args = -O3 -fopenmp -ffp-contract=off
"""Hot loops of point cloud -> raster (PDAL writers.gdal). Private: call
:mod:`pointcloud_pipeline.raster`.

Arguments are trusted here (the public module validates them, chooses the candidate cells and
the exact radius threshold). The GIL is released for the whole of every call; no Python object
is touched inside it. ``-ffp-contract=off`` keeps the compiler from fusing multiply-adds, so
every distance is the IEEE result of PDAL's ``sqrt((cx - x)^2 + (cy - y)^2)``.

Window kernel (:func:`rasterize_window`): one window of the grid and its window-fill halo (the
"region", clipped to the grid) get accumulators of their own, in rows from the bottom like
PDAL's cell index j. Every point, in the order given, is scattered into the region cells it
reaches: bin mode, the cell holding it (distance 0); radius mode, the cells of the candidate
rows and columns around its cell (``column_reach[b]``: how far a cell of row offset b may be
and still be within the radius, chosen conservatively by the caller), each kept when
``d2 < d2_threshold``, the smallest float64 whose square root is >= radius, which is exactly
PDAL's ``sqrt(d2) < radius``. Updates are PDAL's ``GDALGrid::update`` in PDAL's operation order
(count, std::min / std::max, Welford mean and m2, IDW sums or the exact-hit value). Then
PDAL's finalize (stdev, idw) over the region, and the window's cells are written: the values,
or for empty cells PDAL's window fill (donors: non-empty cells of the (2N+1)^2 window clipped
to the grid, column outer, row-from-bottom inner) or NaN. Each cell depends only on its own
points in input order and its donors, so any window, block or thread gives the same bytes.

Bucketing (:func:`bucket_count`, :func:`bucket_fill`): a two-pass counting sort of point
indices into blocks of the grid, the points split into contiguous chunks processed in parallel;
chunk t writes after chunks 0..t-1 inside every block, so each block lists its points in input
order. Pass 1 keeps each point's block (or "several", near block edges) for pass 2, and both
passes keep the counter of the current run of points in one block in a register (consecutive
points of a scan mostly share a block).
"""
from cython.parallel cimport prange
from libc.float cimport DBL_MAX
from libc.math cimport NAN, fabs, floor, isnan, pow, sqrt
from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t
from openmp cimport omp_get_max_threads

# bits of the ``stats`` argument; the band order of ``band_of`` is OUTPUT_TYPES
STAT_BITS = {'min': 1, 'max': 2, 'mean': 4, 'idw': 8, 'count': 16, 'stdev': 32}
DEF STAT_MIN = 1
DEF STAT_MAX = 2
DEF STAT_MEAN = 4
DEF STAT_IDW = 8
DEF STAT_COUNT = 16
DEF STAT_STDEV = 32
DEF BAND_MIN = 0        # indices into band_of, in PDAL's band order
DEF BAND_MAX = 1
DEF BAND_MEAN = 2
DEF BAND_IDW = 3
DEF BAND_COUNT = 4
DEF BAND_STDEV = 5


def default_threads():
    """Threads used for ``threads=0``: OpenMP's default (all cores unless OMP_NUM_THREADS)."""
    return omp_get_max_threads()


ctypedef struct Lattice:
    double resolution
    double base_x
    double base_y
    int64_t offset_x
    int64_t offset_y
    int64_t width      # grid columns
    int64_t height     # grid rows


ctypedef struct Accumulators:
    int64_t cols       # region size, cells
    int64_t rows
    int64_t col0       # grid column of the region's column 0
    int64_t row0       # grid row from the bottom of the region's row 0
    int64_t* count     # PDAL keeps a double; an integer is the same number, cheaper
    double* minimum    # NULL when not needed
    double* maximum
    double* mean       # mean or stdev
    double* m2         # stdev: sum of squared deviations, then the stdev
    double* idw        # idw: sum of val / d^p, then the idw
    double* idw_weight  # idw: sum of 1 / d^p; NaN after an exact hit (d == 0)
    double* centre_x   # cell centres of the region's columns and rows
    double* centre_y
    double* dx2        # scratch: squared offsets of a point to its candidate columns, rows
    double* dy2


cdef double* carve(double** cursor, int64_t size, double value, bint wanted) noexcept nogil:
    """The next ``size`` doubles of the workspace set to ``value``, or NULL when not wanted."""
    cdef double* array
    cdef int64_t i
    if not wanted:
        return NULL
    array = cursor[0]
    cursor[0] += size
    for i in range(size):
        array[i] = value
    return array


def workspace_size(int stats, int64_t cols, int64_t rows, int64_t reach):
    """Doubles of workspace :func:`rasterize_window` needs for a region of cols x rows and
    candidate cells up to ``reach`` cells from a point's cell."""
    cdef int64_t planes = 1
    if stats & STAT_MIN:
        planes += 1
    if stats & STAT_MAX:
        planes += 1
    if stats & (STAT_MEAN | STAT_STDEV):
        planes += 1
    if stats & STAT_STDEV:
        planes += 1
    if stats & STAT_IDW:
        planes += 2
    return planes * cols * rows + cols + rows + 2 * (2 * reach + 1)


cdef void carve_accumulators(Accumulators* acc, int stats, int64_t reach,
                             double* workspace) noexcept nogil:
    """Accumulators initialised as PDAL's rasters (min = DBL_MAX, max = lowest, others 0)."""
    cdef int64_t size = acc.cols * acc.rows
    cdef double* cursor = workspace
    acc.count = <int64_t*>carve(&cursor, size, 0.0, True)  # +0.0 and int64 0: the same bits
    acc.minimum = carve(&cursor, size, DBL_MAX, stats & STAT_MIN)
    acc.maximum = carve(&cursor, size, -DBL_MAX, stats & STAT_MAX)
    acc.mean = carve(&cursor, size, 0.0, stats & (STAT_MEAN | STAT_STDEV))
    acc.m2 = carve(&cursor, size, 0.0, stats & STAT_STDEV)
    acc.idw = carve(&cursor, size, 0.0, stats & STAT_IDW)
    acc.idw_weight = carve(&cursor, size, 0.0, stats & STAT_IDW)
    acc.centre_x = carve(&cursor, acc.cols, 0.0, True)
    acc.centre_y = carve(&cursor, acc.rows, 0.0, True)
    acc.dx2 = carve(&cursor, 2 * reach + 1, 0.0, True)
    acc.dy2 = carve(&cursor, 2 * reach + 1, 0.0, True)


cdef inline void update(Accumulators* acc, int64_t cell, double val, double dist,
                        double power) noexcept nogil:
    """PDAL's GDALGrid::update, operation for operation."""
    cdef double count = <double>(acc.count[cell] + 1)
    cdef double delta, mean, weight
    acc.count[cell] += 1
    if acc.minimum != NULL:
        # std::min(val, min) == (min < val) ? min : val, also for NaN
        if not (acc.minimum[cell] < val):
            acc.minimum[cell] = val
    if acc.maximum != NULL:
        # std::max(val, max) == (val < max) ? max : val
        if not (val < acc.maximum[cell]):
            acc.maximum[cell] = val
    if acc.mean != NULL:
        mean = acc.mean[cell]
        delta = val - mean
        mean = mean + delta / count
        acc.mean[cell] = mean
        if acc.m2 != NULL:
            acc.m2[cell] += delta * (val - mean)
    if acc.idw != NULL and not isnan(acc.idw_weight[cell]):
        if dist == 0:
            acc.idw[cell] = val
            acc.idw_weight[cell] = NAN
        else:
            weight = dist if power == 1.0 else pow(dist, power)
            acc.idw[cell] += val / weight
            acc.idw_weight[cell] += 1 / weight


cdef void scatter_bins(Accumulators* acc, const Lattice* grid, const double* x,
                       const double* y, const double* values, const int64_t* index,
                       int64_t count, double power) noexcept nogil:
    """Bin mode: every point into the cell that holds it (PDAL's pointToCell), distance 0."""
    cdef int64_t k, p
    cdef double fx, fy
    cdef double first_col = <double>(grid.offset_x + acc.col0)
    cdef double first_row = <double>(grid.offset_y + acc.row0)
    cdef double cols = <double>acc.cols
    cdef double rows = <double>acc.rows
    for k in range(count):
        p = index[k] if index != NULL else k
        fx = floor((x[p] - grid.base_x) / grid.resolution) - first_col
        fy = floor((y[p] - grid.base_y) / grid.resolution) - first_row
        if fx < 0 or fx >= cols or fy < 0 or fy >= rows:
            continue
        update(acc, <int64_t>fy * acc.cols + <int64_t>fx, values[p], 0.0, power)


ctypedef union Bits:
    double value
    uint64_t bits


cdef inline void simple_update(int64_t* counts, double* minimum, double* maximum,
                               int64_t cell, bint inside, double val, bint has_min,
                               bint has_max) noexcept nogil:
    """count, min and max of ``cell`` without a branch on ``inside`` (the test is as good as
    random: a branch on it is mispredicted about once per point): the count adds the test's
    result; min and max compare the kept value with ``val`` when inside, with itself (which
    returns it unchanged, NaN included) when not. The value is selected by bit masks: a
    conditional expression compiles to a branch."""
    cdef uint64_t mask = -(<uint64_t>inside)
    cdef Bits candidate, kept
    counts[cell] += inside
    candidate.value = val
    # (kept < val) ? kept : val is std::min(val, kept) (minsd), and (kept > val) ? kept : val
    # is std::max(val, kept) (maxsd), NaN included
    if has_min:
        kept.value = minimum[cell]
        candidate.bits = (candidate.bits & mask) | (kept.bits & ~mask)
        minimum[cell] = kept.value if kept.value < candidate.value else candidate.value
        candidate.value = val
    if has_max:
        kept.value = maximum[cell]
        candidate.bits = (candidate.bits & mask) | (kept.bits & ~mask)
        maximum[cell] = kept.value if kept.value > candidate.value else candidate.value


cdef inline void scatter_radius(Accumulators* acc, const Lattice* grid, const double* x,
                                const double* y, const double* values, const int64_t* index,
                                int64_t count, double d2_threshold, double power,
                                const int64_t* column_reach, int64_t reach,
                                bint own_cell_inside, bint simple, bint has_min, bint has_max,
                                bint unrolled) noexcept nogil:
    """Radius mode: every point into the region cells of its candidate rows and columns whose
    centre passes PDAL's test. Per point, the squared offsets to the candidate columns and rows
    are computed once, so a candidate costs an addition (the same IEEE ``dx*dx + dy*dy``) and
    the test. Inlined with constant flags: ``simple`` (only count, min, max wanted):
    branch-free updates (:func:`simple_update`); ``unrolled`` (simple, candidates 3 x 3): the nine
    candidates of a point away from the region's edge written out. ``own_cell_inside``: the
    radius holds the whole of a point's own cell (and the slack), so that cell needs no test.
    """
    cdef int64_t k, p, ci, cj, a, b, a_lo, a_hi, b_lo, b_hi, row_lo, row_hi, row_start
    cdef int64_t extent, cell, above, below
    cdef int64_t cols_1 = acc.cols - 1
    cdef int64_t rows_1 = acc.rows - 1
    cdef double px, py, val, fx, fy, dx, dy, d2, dy2
    cdef double dx_l, dx_c, dx_r, dy_b, dy_c, dy_t
    cdef bint inside
    # the candidate cells are a superset (CANDIDATE_SLACK), so the cell of a point may come
    # from a multiplication; the exact distance test decides
    cdef double cells_per_unit = 1.0 / grid.resolution
    cdef double first_col = <double>(grid.offset_x + acc.col0)
    cdef double first_row = <double>(grid.offset_y + acc.row0)
    cdef double cols = <double>acc.cols
    cdef double rows = <double>acc.rows
    cdef double far = <double>reach
    cdef int64_t* counts = acc.count
    cdef double* minimum = acc.minimum
    cdef double* maximum = acc.maximum
    cdef const double* centre_x = acc.centre_x
    cdef const double* centre_y = acc.centre_y
    cdef double* dx2 = acc.dx2 + reach    # dx2[a], a = -reach..reach
    cdef double* dy2s = acc.dy2 + reach
    for k in range(count):
        p = index[k] if index != NULL else k
        px = x[p]
        py = y[p]
        val = values[p]
        fx = floor((px - grid.base_x) * cells_per_unit) - first_col
        fy = floor((py - grid.base_y) * cells_per_unit) - first_row
        if fx < -far or fx >= cols + far or fy < -far or fy >= rows + far:
            continue
        ci = <int64_t>fx
        cj = <int64_t>fy
        if unrolled and 0 < ci < cols_1 and 0 < cj < rows_1:
            dx_l = centre_x[ci - 1] - px
            dx_l = dx_l * dx_l
            dx_c = centre_x[ci] - px
            dx_c = dx_c * dx_c
            dx_r = centre_x[ci + 1] - px
            dx_r = dx_r * dx_r
            dy_b = centre_y[cj - 1] - py
            dy_b = dy_b * dy_b
            dy_c = centre_y[cj] - py
            dy_c = dy_c * dy_c
            dy_t = centre_y[cj + 1] - py
            dy_t = dy_t * dy_t
            cell = cj * acc.cols + ci
            below = cell - acc.cols
            above = cell + acc.cols
            simple_update(counts, minimum, maximum, below - 1,
                          dx_l + dy_b < d2_threshold, val, has_min, has_max)
            simple_update(counts, minimum, maximum, below,
                          dx_c + dy_b < d2_threshold, val, has_min, has_max)
            simple_update(counts, minimum, maximum, below + 1,
                          dx_r + dy_b < d2_threshold, val, has_min, has_max)
            simple_update(counts, minimum, maximum, cell - 1,
                          dx_l + dy_c < d2_threshold, val, has_min, has_max)
            simple_update(counts, minimum, maximum, cell,
                          own_cell_inside or dx_c + dy_c < d2_threshold, val, has_min, has_max)
            simple_update(counts, minimum, maximum, cell + 1,
                          dx_r + dy_c < d2_threshold, val, has_min, has_max)
            simple_update(counts, minimum, maximum, above - 1,
                          dx_l + dy_t < d2_threshold, val, has_min, has_max)
            simple_update(counts, minimum, maximum, above,
                          dx_c + dy_t < d2_threshold, val, has_min, has_max)
            simple_update(counts, minimum, maximum, above + 1,
                          dx_r + dy_t < d2_threshold, val, has_min, has_max)
            continue
        a_lo = -reach if ci >= reach else -ci
        a_hi = reach if ci + reach < acc.cols else acc.cols - 1 - ci
        b_lo = -reach if cj >= reach else -cj
        b_hi = reach if cj + reach < acc.rows else acc.rows - 1 - cj
        for a in range(a_lo, a_hi + 1):
            dx = centre_x[ci + a] - px
            dx2[a] = dx * dx
        for b in range(b_lo, b_hi + 1):
            dy = centre_y[cj + b] - py
            dy2s[b] = dy * dy
        for b in range(b_lo, b_hi + 1):
            extent = column_reach[b + reach]
            row_lo = -extent if a_lo < -extent else a_lo
            row_hi = extent if a_hi > extent else a_hi
            dy2 = dy2s[b]
            row_start = (cj + b) * acc.cols + ci
            for a in range(row_lo, row_hi + 1):
                d2 = dx2[a] + dy2
                inside = d2 < d2_threshold
                if simple:
                    simple_update(counts, minimum, maximum, row_start + a, inside, val,
                                  has_min, has_max)
                elif inside:
                    update(acc, row_start + a, val, sqrt(d2), power)


cdef void scatter(Accumulators* acc, const Lattice* grid, const double* x, const double* y,
                  const double* values, const int64_t* index, int64_t count, bint binmode,
                  double d2_threshold, double power, const int64_t* column_reach,
                  int64_t reach, bint own_cell_inside) noexcept nogil:
    """Adds every point to the region cells it reaches, in the given order."""
    cdef bint has_min = acc.minimum != NULL
    cdef bint has_max = acc.maximum != NULL
    cdef bint three_by_three = (reach == 1 and column_reach[0] == 1 and column_reach[1] == 1
                                and column_reach[2] == 1)
    if binmode:
        scatter_bins(acc, grid, x, y, values, index, count, power)
    elif acc.mean != NULL or acc.idw != NULL:
        scatter_radius(acc, grid, x, y, values, index, count, d2_threshold, power,
                       column_reach, reach, own_cell_inside, False, has_min, has_max, False)
    elif three_by_three and has_min and has_max:
        scatter_radius(acc, grid, x, y, values, index, count, d2_threshold, power,
                       column_reach, reach, own_cell_inside, True, True, True, True)
    elif three_by_three and has_max:
        scatter_radius(acc, grid, x, y, values, index, count, d2_threshold, power,
                       column_reach, reach, own_cell_inside, True, False, True, True)
    elif three_by_three and has_min:
        scatter_radius(acc, grid, x, y, values, index, count, d2_threshold, power,
                       column_reach, reach, own_cell_inside, True, True, False, True)
    elif three_by_three:
        scatter_radius(acc, grid, x, y, values, index, count, d2_threshold, power,
                       column_reach, reach, own_cell_inside, True, False, False, True)
    else:
        scatter_radius(acc, grid, x, y, values, index, count, d2_threshold, power,
                       column_reach, reach, own_cell_inside, True, has_min, has_max, False)


cdef void finalize(Accumulators* acc) noexcept nogil:
    """PDAL's finalize on the non-empty region cells: stdev = sqrt(m2 / count), idw /= sum of
    weights unless an exact hit set it."""
    cdef int64_t i
    cdef double weight
    for i in range(acc.cols * acc.rows):
        if acc.count[i] <= 0:
            continue
        if acc.m2 != NULL:
            acc.m2[i] = sqrt(acc.m2[i] / <double>acc.count[i])
        if acc.idw != NULL:
            weight = acc.idw_weight[i]
            if not isnan(weight):
                acc.idw[i] /= weight


cdef inline void put(double[:, :, ::1] out, const int64_t* band_of, int band, int64_t row,
                     int64_t col, double value) noexcept nogil:
    if band_of[band] >= 0:
        out[band_of[band], row, col] = value


cdef void write_window(Accumulators* acc, const Lattice* grid, int64_t col_off, int64_t row_off,
                       int64_t win_width, int64_t win_height, int64_t window_size,
                       double[:, :, ::1] out, int64_t out_row0, int64_t out_col0,
                       const int64_t* band_of) noexcept nogil:
    cdef int64_t r, c, gi, gj, cell, i, j, i_lo, i_hi, j_lo, j_hi, src, di, dj, orow, ocol
    cdef double s_min, s_max, s_mean, s_idw, s_stdev, dist_sum, distance
    cdef int64_t n = window_size
    for r in range(win_height):
        gj = grid.height - 1 - (row_off + r)   # PDAL's row index j (from the bottom)
        orow = out_row0 + r
        for c in range(win_width):
            gi = col_off + c
            ocol = out_col0 + c
            cell = (gj - acc.row0) * acc.cols + (gi - acc.col0)
            put(out, band_of, BAND_COUNT, orow, ocol, <double>acc.count[cell])
            if acc.count[cell] > 0:
                if acc.minimum != NULL:
                    put(out, band_of, BAND_MIN, orow, ocol, acc.minimum[cell])
                if acc.maximum != NULL:
                    put(out, band_of, BAND_MAX, orow, ocol, acc.maximum[cell])
                if acc.mean != NULL:
                    put(out, band_of, BAND_MEAN, orow, ocol, acc.mean[cell])
                if acc.idw != NULL:
                    put(out, band_of, BAND_IDW, orow, ocol, acc.idw[cell])
                if acc.m2 != NULL:
                    put(out, band_of, BAND_STDEV, orow, ocol, acc.m2[cell])
                continue
            s_min = 0
            s_max = 0
            s_mean = 0
            s_idw = 0
            s_stdev = 0
            dist_sum = 0
            if n > 0:
                # PDAL's windowFill(dstI, dstJ): donors column outer, row from the bottom inner
                i_lo = gi - n if gi > n else 0
                i_hi = grid.width if gi + n + 1 > grid.width else gi + n + 1
                j_lo = gj - n if gj > n else 0
                j_hi = grid.height if gj + n + 1 > grid.height else gj + n + 1
                for i in range(i_lo, i_hi):
                    for j in range(j_lo, j_hi):
                        src = (j - acc.row0) * acc.cols + (i - acc.col0)
                        if acc.count[src] <= 0:
                            continue
                        di = i - gi if i > gi else gi - i
                        dj = j - gj if j > gj else gj - j
                        distance = <double>(di if di > dj else dj)
                        if acc.minimum != NULL:
                            s_min += acc.minimum[src] / distance
                        if acc.maximum != NULL:
                            s_max += acc.maximum[src] / distance
                        if acc.mean != NULL:
                            s_mean += acc.mean[src] / distance
                        if acc.idw != NULL:
                            s_idw += acc.idw[src] / distance
                        if acc.m2 != NULL:
                            s_stdev += acc.m2[src] / distance
                        dist_sum += 1 / distance
            if dist_sum > 0:
                s_min /= dist_sum
                s_max /= dist_sum
                s_mean /= dist_sum
                s_idw /= dist_sum
                s_stdev /= dist_sum
            else:
                s_min = NAN
                s_max = NAN
                s_mean = NAN
                s_idw = NAN
                s_stdev = NAN
            put(out, band_of, BAND_MIN, orow, ocol, s_min)
            put(out, band_of, BAND_MAX, orow, ocol, s_max)
            put(out, band_of, BAND_MEAN, orow, ocol, s_mean)
            put(out, band_of, BAND_IDW, orow, ocol, s_idw)
            put(out, band_of, BAND_STDEV, orow, ocol, s_stdev)


def rasterize_window(const double[::1] x, const double[::1] y, const double[::1] values,
                     const int64_t[::1] index, bint use_index,
                     double resolution, double base_x, double base_y, int64_t offset_x,
                     int64_t offset_y, int64_t grid_width, int64_t grid_height,
                     int64_t col_off, int64_t row_off, int64_t win_width, int64_t win_height,
                     int64_t region_col0, int64_t region_row0, int64_t region_cols,
                     int64_t region_rows, int stats, bint binmode, double d2_threshold,
                     double power, int64_t window_size, const int64_t[::1] column_reach,
                     bint own_cell_inside, double[::1] workspace, double[:, :, ::1] out,
                     int64_t out_row0, int64_t out_col0, const int64_t[::1] band_of):
    """Rasterises one window (col_off, row_off top-down, win_width x win_height cells) into
    ``out[band_of[band], out_row0 + r, out_col0 + c]``. The region (grid columns from
    region_col0, rows from the bottom from region_row0) must hold the window and its
    window_size halo clipped to the grid; ``workspace``: at least :func:`workspace_size`
    doubles. The points are ``x[index[k]]`` in the order of ``index`` (or all points in order
    without ``use_index``). ``column_reach`` has 2 R + 1 entries: the largest |column offset|
    of a candidate cell in row offset b - R (negative: none); ``own_cell_inside``: every point
    is within the radius of its own cell's centre (no test needed there). ``stats``: bits of
    STAT_BITS (the accumulators to keep), ``band_of``: for min, max, mean, idw, count, stdev,
    the output band or -1.
    """
    cdef Lattice grid
    cdef Accumulators acc
    cdef int64_t i
    cdef int64_t count = index.shape[0] if use_index else x.shape[0]
    cdef int64_t reach = (column_reach.shape[0] - 1) // 2
    cdef const int64_t* index_data = &index[0] if use_index and count > 0 else NULL
    if workspace.shape[0] < workspace_size(stats, region_cols, region_rows, reach):
        raise ValueError('workspace too small')
    grid.resolution = resolution
    grid.base_x = base_x
    grid.base_y = base_y
    grid.offset_x = offset_x
    grid.offset_y = offset_y
    grid.width = grid_width
    grid.height = grid_height
    acc.col0 = region_col0
    acc.row0 = region_row0
    acc.cols = region_cols
    acc.rows = region_rows
    with nogil:
        carve_accumulators(&acc, stats, reach, &workspace[0])
        # PDAL's xCellPos: origin + (i + .5) * edge, i the cell's global lattice index
        for i in range(acc.cols):
            acc.centre_x[i] = base_x + (<double>(offset_x + acc.col0 + i) + 0.5) * resolution
        for i in range(acc.rows):
            acc.centre_y[i] = base_y + (<double>(offset_y + acc.row0 + i) + 0.5) * resolution
        if count > 0:
            scatter(&acc, &grid, &x[0], &y[0], &values[0], index_data, count, binmode,
                    d2_threshold, power, &column_reach[0], reach, own_cell_inside)
        finalize(&acc)
        write_window(&acc, &grid, col_off, row_off, win_width, win_height, window_size,
                     out, out_row0, out_col0, &band_of[0])


cdef void fill_row(const double[:, :] array, const uint8_t[:, :] empty, int64_t window_size,
                   double[:, ::1] out, int64_t r) noexcept nogil:
    cdef int64_t height = array.shape[0]
    cdef int64_t width = array.shape[1]
    cdef int64_t n = window_size
    cdef int64_t c, cc, rr, c_lo, c_hi, r_lo, r_hi, dr, dc
    cdef double total, dist_sum, distance
    for c in range(width):
        if not empty[r, c]:
            out[r, c] = array[r, c]
            continue
        total = 0
        dist_sum = 0
        c_lo = c - n if c > n else 0
        c_hi = width - 1 if c + n >= width else c + n
        r_lo = r - n if r > n else 0
        r_hi = height - 1 if r + n >= height else r + n
        # the rasteriser's donor order: column outer, row from the bottom (r descending) inner
        for cc in range(c_lo, c_hi + 1):
            for rr in range(r_hi, r_lo - 1, -1):
                if empty[rr, cc]:
                    continue
                dr = rr - r if rr > r else r - rr
                dc = cc - c if cc > c else c - cc
                distance = <double>(dr if dr > dc else dc)
                total += array[rr, cc] / distance
                dist_sum += 1 / distance
        out[r, c] = total / dist_sum if dist_sum > 0 else NAN


def fill_nodata(const double[:, :] array, const uint8_t[:, :] empty, int64_t window_size,
                double[:, ::1] out, int threads):
    """PDAL's window fill of the cells where ``empty`` is set; other cells copied."""
    cdef int64_t r
    cdef int n_threads = threads if threads > 0 else omp_get_max_threads()
    for r in prange(array.shape[0], nogil=True, schedule='dynamic', num_threads=n_threads):
        fill_row(array, empty, window_size, out, r)


ctypedef struct Blocking:
    double cells_per_unit  # 1 / resolution
    double shift_x         # column coordinate of x: x * cells_per_unit - shift_x
    double shift_top       # row coordinate from the top of y: shift_top - y * cells_per_unit
    double width           # grid size, cells
    double height
    double margin_x        # margin plus rounding slack, cells
    double margin_y
    double blocks_per_cell  # 1 / block_size
    int64_t blocks_across
    int64_t blocks_down


cdef inline bint block_range(const Blocking* p, double px, double py, int64_t* c_lo,
                             int64_t* c_hi, int64_t* r_lo, int64_t* r_hi) noexcept nogil:
    """The blocks whose cell rectangle is within the margin of (px, py), False for none.
    The cell coordinates are a multiplication and a subtraction whose rounding is inside the
    slack of the margins (more points than needed are harmless)."""
    cdef double fx = px * p.cells_per_unit - p.shift_x
    cdef double fr = p.shift_top - py * p.cells_per_unit
    cdef double lo, hi
    if not (fx + p.margin_x >= 0 and fx - p.margin_x <= p.width
            and fr + p.margin_y >= 0 and fr - p.margin_y <= p.height):
        return False
    # both >= 0 here (clipped), so truncation is floor
    lo = (fx - p.margin_x) * p.blocks_per_cell
    hi = (fx + p.margin_x) * p.blocks_per_cell
    c_lo[0] = <int64_t>(lo if lo > 0 else 0.0)
    c_hi[0] = min(<int64_t>hi, p.blocks_across - 1)
    lo = (fr - p.margin_y) * p.blocks_per_cell
    hi = (fr + p.margin_y) * p.blocks_per_cell
    r_lo[0] = <int64_t>(lo if lo > 0 else 0.0)
    r_hi[0] = min(<int64_t>hi, p.blocks_down - 1)
    return True


cdef enum:
    OUTSIDE = -2       # block codes of pass 1: no block
    SEVERAL = -1       # near block edges: in several blocks (pass 2 recomputes them)


cdef int64_t count_chunk(const Blocking* p, const double* x, const double* y, int64_t start,
                         int64_t stop, int64_t* counts, int32_t* codes) noexcept nogil:
    """Pass 1 over points start..stop: counts per block, and each point's block code (its
    block, SEVERAL or OUTSIDE). Runs of points in one block are counted in a register.
    Returns the index of the first point with a NaN or infinite coordinate (those are OUTSIDE,
    so only OUTSIDE points are checked), -1 when none."""
    cdef int64_t i, bc, br
    cdef int64_t c_lo = 0, c_hi = -1, r_lo = 0, r_hi = -1  # set by block_range
    cdef int64_t current = -1
    cdef int64_t run = 0
    cdef int64_t non_finite = -1
    cdef int32_t code
    for i in range(start, stop):
        if not block_range(p, x[i], y[i], &c_lo, &c_hi, &r_lo, &r_hi):
            codes[i] = OUTSIDE
            if non_finite < 0 and not (fabs(x[i]) <= DBL_MAX and fabs(y[i]) <= DBL_MAX):
                non_finite = i
            continue
        if c_lo == c_hi and r_lo == r_hi:
            code = <int32_t>(r_lo * p.blocks_across + c_lo)
            codes[i] = code
            if code == current:
                run += 1
            else:
                if current >= 0:
                    counts[current] += run
                current = code
                run = 1
            continue
        codes[i] = SEVERAL
        for br in range(r_lo, r_hi + 1):
            for bc in range(c_lo, c_hi + 1):
                counts[br * p.blocks_across + bc] += 1
    if current >= 0:
        counts[current] += run
    return non_finite


cdef void fill_chunk(const Blocking* p, const double* x, const double* y, int64_t start,
                     int64_t stop, const int32_t* codes, int64_t* positions,
                     int64_t* order) noexcept nogil:
    """Pass 2: every point's index at the next position of each of its blocks; the position of
    the block of the current run is kept in a register."""
    cdef int64_t i, b, bc, br
    cdef int64_t c_lo = 0, c_hi = -1, r_lo = 0, r_hi = -1  # set by block_range
    cdef int64_t current = -1
    cdef int64_t position = 0
    cdef int32_t code
    for i in range(start, stop):
        code = codes[i]
        if code >= 0:
            if code != current:
                if current >= 0:
                    positions[current] = position
                current = code
                position = positions[code]
            order[position] = i
            position += 1
        elif code == SEVERAL:
            if current >= 0:
                positions[current] = position
                current = -1
            block_range(p, x[i], y[i], &c_lo, &c_hi, &r_lo, &r_hi)
            for br in range(r_lo, r_hi + 1):
                for bc in range(c_lo, c_hi + 1):
                    b = br * p.blocks_across + bc
                    order[positions[b]] = i
                    positions[b] += 1
    if current >= 0:
        positions[current] = position


cdef Blocking blocking(double resolution, double base_x, double base_y, int64_t offset_x,
                       int64_t offset_y, int64_t grid_width, int64_t grid_height,
                       int64_t block_size, double margin_cells, int64_t blocks_across,
                       int64_t blocks_down):
    cdef Blocking p
    p.cells_per_unit = 1.0 / resolution
    p.shift_x = base_x * p.cells_per_unit + <double>offset_x
    p.shift_top = base_y * p.cells_per_unit + <double>(offset_y + grid_height)
    p.width = <double>grid_width
    p.height = <double>grid_height
    # rounding of the coordinates: a few ulps of |shift| + size + margin cells for any point
    # that can pass the test
    p.margin_x = (margin_cells * (1 + 1e-9) + 1e-9
                  + 1e-12 * (fabs(p.shift_x) + p.width + margin_cells))
    p.margin_y = (margin_cells * (1 + 1e-9) + 1e-9
                  + 1e-12 * (fabs(p.shift_top) + p.height + margin_cells))
    p.blocks_per_cell = 1.0 / <double>block_size
    p.blocks_across = blocks_across
    p.blocks_down = blocks_down
    return p


def bucket_count(const double[::1] x, const double[::1] y, double resolution, double base_x,
                 double base_y, int64_t offset_x, int64_t offset_y, int64_t grid_width,
                 int64_t grid_height, int64_t block_size, double margin_cells,
                 int64_t blocks_across, int64_t blocks_down, int64_t[:, ::1] counts,
                 int32_t[::1] codes, int64_t[::1] non_finite):
    """Pass 1: ``counts[t, b]`` += points of chunk t (the t-th of counts.shape[0] contiguous
    ranges) that belong to block b (``counts`` must be zero); ``codes``: one per point, for
    pass 2; ``non_finite[t]``: the first point of chunk t with a NaN or infinite coordinate,
    -1 for none."""
    cdef Blocking p = blocking(resolution, base_x, base_y, offset_x, offset_y, grid_width,
                               grid_height, block_size, margin_cells, blocks_across,
                               blocks_down)
    cdef int64_t chunks = counts.shape[0]
    cdef int64_t n = x.shape[0]
    cdef int64_t t
    if n == 0:
        return
    for t in prange(chunks, nogil=True, schedule='static', num_threads=chunks):
        non_finite[t] = count_chunk(&p, &x[0], &y[0], t * n // chunks, (t + 1) * n // chunks,
                                    &counts[t, 0], &codes[0])


def bucket_fill(const double[::1] x, const double[::1] y, double resolution, double base_x,
                double base_y, int64_t offset_x, int64_t offset_y, int64_t grid_width,
                int64_t grid_height, int64_t block_size, double margin_cells,
                int64_t blocks_across, int64_t blocks_down, const int32_t[::1] codes,
                int64_t[:, ::1] positions, int64_t[::1] order):
    """Pass 2: chunk t writes its points of block b at ``order[positions[t, b]...]``, in input
    order (``positions``: the first slot of each chunk in each block; advanced in place)."""
    cdef Blocking p = blocking(resolution, base_x, base_y, offset_x, offset_y, grid_width,
                               grid_height, block_size, margin_cells, blocks_across,
                               blocks_down)
    cdef int64_t chunks = positions.shape[0]
    cdef int64_t n = x.shape[0]
    cdef int64_t t
    if n == 0 or order.shape[0] == 0:
        return
    for t in prange(chunks, nogil=True, schedule='static', num_threads=chunks):
        fill_chunk(&p, &x[0], &y[0], t * n // chunks, (t + 1) * n // chunks, &codes[0],
                   &positions[t, 0], &order[0])


def first_non_finite(const double[::1] values):
    """Index of the first NaN or infinite value, -1 when all are finite."""
    cdef int64_t i
    cdef int64_t found = -1
    with nogil:
        for i in range(values.shape[0]):
            if not (fabs(values[i]) <= DBL_MAX):
                found = i
                break
    return found
