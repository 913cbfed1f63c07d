# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# distutils: extra_compile_args = -ffp-contract=off
"""Hot loop of point cloud -> bird's-eye-view image. Private: call :mod:`pointcloud_pipeline.bev`.

Arguments are trusted here (the public module validates them and sizes the workspace). The GIL
is released for the whole call; no Python object is touched inside it. ``-ffp-contract=off``
keeps the compiler from fusing multiply-adds, so every value is the IEEE result of the written
float64 expression, bit for bit the same as the numpy reference.

Algorithm (no atomics, no full-grid accumulator planes, no allocation, no data-dependent
branches in the per-point loops):

1. bin: the points are split into ``chunks`` contiguous ranges; each computes, per point, its
   row (``rows`` = outside), its column and a 64-bit key ordered like (z, intensity), and counts
   points per row in its own histogram.
2. prefix sums over (row, chunk) give every chunk its write position inside every row bucket.
3. scatter: each chunk copies (key, column) into the row buckets (a counting sort by row).
4. render: a thread clears an output row, reduces the row's bucket into a ``cols``-cell scratch
   row of its own (max key, count, list of occupied columns), then writes the occupied pixels
   and resets those cells. Max and count do not depend on the order of the points, so any
   thread count gives the same bytes.

Passes 1, 3 and 4 hand out their point chunks and rows to the caller and the worker threads of
``_workers.h`` (a late or preempted worker never stalls the call; see there): with ``threads``
> 1 the points are cut into ``CHUNKS_PER_THREAD * threads`` chunks so that the others take over
a late thread's share.

The (z, intensity) key: both float32 values mapped to uint32 so that integer order is float
order (z in the high half), so "highest point, ties broken by the largest intensity" is one
integer maximum.
"""
from libc.math cimport INFINITY
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset
from openmp cimport omp_get_max_threads

cdef extern from "_workers.h" nogil:
    ctypedef void (*pp_chunk_fn)(void* context, int64_t begin, int64_t end,
                                 int worker) noexcept nogil
    void pp_parallel_for(int64_t items, int threads, pp_chunk_fn fn, void* context)

DENSITY_SATURATION_COUNT = 63  # density table has entries for counts 0..63; more reads 63
DEF SATURATION = 63


ctypedef struct CellState:
    uint64_t key       # max over the cell's points of (z, intensity) keys; 0 = empty
    int64_t count


ctypedef struct Params:
    const uint8_t* points
    int64_t num_points
    int64_t point_step
    int64_t x_offset
    int64_t y_offset
    int64_t z_offset
    int64_t intensity_offset   # -1: no intensity field (intensity 0)
    bint has_transform
    double m[12]               # row-major 3 x 4 [R | t]
    double x_min
    double y_min
    double cells_per_metre     # 1 / resolution
    double z_min
    double z_max
    double z_scale             # 1 / (z_max - z_min)
    double intensity_min
    double intensity_scale     # 1 / (intensity_max - intensity_min)
    int32_t rows
    int32_t cols
    int32_t chunks
    const double* density      # density value for counts 0..SATURATION


CHUNKS_PER_THREAD = 4  # point chunks per thread when threads > 1 (1 chunk for 1 thread)


def point_chunks(int threads):
    """Point chunks of a call on ``threads`` threads (the row-count workspace has one histogram
    of ``rows + 1`` per chunk)."""
    return threads * CHUNKS_PER_THREAD if threads > 1 else 1


def default_threads():
    """Threads used for ``threads=0``: OpenMP's default (all cores unless OMP_NUM_THREADS)."""
    return omp_get_max_threads()


cdef inline float load_float(const uint8_t* address) noexcept nogil:
    """A native-endian float32 that may be unaligned."""
    cdef float value
    memcpy(&value, address, 4)
    return value


cdef inline uint32_t order_bits(float value) noexcept nogil:
    """Monotonic map of a non-NaN float32 to uint32: a < b  <=>  order_bits(a) < order_bits(b)
    (-0.0 is normalised to +0.0 by the caller)."""
    cdef uint32_t bits
    memcpy(&bits, &value, 4)
    return bits ^ (<uint32_t>(<int32_t>bits >> 31) | 0x80000000u)


cdef inline float from_order_bits(uint32_t key) noexcept nogil:
    cdef uint32_t bits = key ^ ((key >> 31) - 1u | 0x80000000u)
    cdef float value
    memcpy(&value, &bits, 4)
    return value


cdef void bin_chunk(const Params* p, int64_t chunk, uint64_t* keys, int32_t* point_cols,
                    int32_t* point_rows, int64_t* row_counts) noexcept nogil:
    """Pass 1 for the points of ``chunk``: row (``rows`` when outside), column, key, histogram."""
    cdef int64_t begin = p.num_points * chunk // p.chunks
    cdef int64_t end = p.num_points * (chunk + 1) // p.chunks
    cdef int32_t rows = p.rows, cols = p.cols
    cdef int64_t* histogram = row_counts + chunk * (rows + 1)
    cdef const uint8_t* base = p.points
    cdef int64_t step = p.point_step
    cdef int64_t x_offset = p.x_offset, y_offset = p.y_offset, z_offset = p.z_offset
    cdef int64_t intensity_offset = p.intensity_offset
    cdef bint has_transform = p.has_transform, has_intensity = p.intensity_offset >= 0
    cdef double m0 = p.m[0], m1 = p.m[1], m2 = p.m[2], m3 = p.m[3]
    cdef double m4 = p.m[4], m5 = p.m[5], m6 = p.m[6], m7 = p.m[7]
    cdef double m8 = p.m[8], m9 = p.m[9], m10 = p.m[10], m11 = p.m[11]
    cdef double x_min = p.x_min, y_min = p.y_min, cells_per_metre = p.cells_per_metre
    cdef double z_min = p.z_min, z_max = p.z_max
    cdef int64_t i
    cdef const uint8_t* point
    cdef double x, y, z, qx, qy, fx, fy, fz
    cdef float z32, intensity
    cdef bint inside
    cdef int32_t row
    memset(histogram, 0, (rows + 1) * sizeof(int64_t))
    for i in range(begin, end):
        point = base + i * step
        x = load_float(point + x_offset)
        y = load_float(point + y_offset)
        z = load_float(point + z_offset)
        if has_transform:
            fx = x
            fy = y
            fz = z
            x = m0 * fx + m1 * fy + m2 * fz + m3
            y = m4 * fx + m5 * fy + m6 * fz + m7
            z = m8 * fx + m9 * fy + m10 * fz + m11
        z32 = <float>z + <float>0.0  # float32 height; + 0.0 turns -0.0 into +0.0
        qx = (x - x_min) * cells_per_metre
        qy = (y - y_min) * cells_per_metre
        # every comparison is false for NaN: points without a return are skipped here
        inside = ((qx >= 0.0) & (qx < rows) & (qy >= 0.0) & (qy < cols)
                  & (z32 >= z_min) & (z32 <= z_max))
        if has_intensity:
            intensity = load_float(point + intensity_offset) + <float>0.0
            intensity = intensity if intensity == intensity else -INFINITY
        else:
            intensity = 0.0
        # truncation == floor for q >= 0; outside points go to the extra bucket ``rows``
        row = rows - 1 - <int32_t>(qx if inside else -1.0)
        point_rows[i] = row
        point_cols[i] = cols - 1 - <int32_t>(qy if inside else 0.0)
        keys[i] = (<uint64_t>order_bits(z32) << 32) | order_bits(intensity)
        histogram[row] += 1


cdef void scatter_chunk(const Params* p, int64_t chunk, const uint64_t* keys,
                        const int32_t* point_cols, const int32_t* point_rows,
                        int64_t* row_positions, uint64_t* bucket_keys,
                        int32_t* bucket_cols) noexcept nogil:
    """Pass 3: copy the chunk's (key, column) pairs into its slots of the row buckets."""
    cdef int64_t begin = p.num_points * chunk // p.chunks
    cdef int64_t end = p.num_points * (chunk + 1) // p.chunks
    cdef int64_t* position = row_positions + chunk * (p.rows + 1)
    cdef int64_t i, slot
    cdef int32_t row
    for i in range(begin, end):
        row = point_rows[i]
        slot = position[row]
        position[row] = slot + 1
        bucket_keys[slot] = keys[i]
        bucket_cols[slot] = point_cols[i]


cdef inline uint8_t to_byte(double value) noexcept nogil:
    """[0, 1] -> 0..255, rounding half up."""
    return <uint8_t>(value * 255.0 + 0.5)


cdef inline void cell_values(const Params* p, const CellState* cell, double* intensity,
                             double* height, double* density) noexcept nogil:
    """Channel values in [0, 1] of an occupied cell (formulas in pointcloud_pipeline.bev)."""
    cdef double z = from_order_bits(<uint32_t>(cell.key >> 32))
    cdef double value = from_order_bits(<uint32_t>cell.key)
    value = (value - p.intensity_min) * p.intensity_scale
    value = value if value > 0.0 else 0.0
    intensity[0] = value if value < 1.0 else 1.0
    value = (z - p.z_min) * p.z_scale
    height[0] = value if value < 1.0 else 1.0
    density[0] = p.density[cell.count if cell.count < SATURATION else SATURATION]


cdef void render_row(const Params* p, int64_t row, const uint64_t* bucket_keys,
                     const int32_t* bucket_cols, const int64_t* row_start, CellState* cells,
                     int32_t* occupied, uint8_t* out, bint float_output) noexcept nogil:
    """Pass 4 for one output row: clear it, reduce its bucket per cell, write occupied pixels.

    cells: this thread's ``cols`` scratch cells, all empty on entry and on return.
    occupied: this thread's ``cols + 1`` scratch slots for the columns of the occupied cells
        (the branch-free append writes one slot past the last occupied cell).
    """
    cdef int64_t k, n = 0
    cdef int64_t first = row_start[row]
    cdef int64_t last = row_start[row + 1]
    cdef int64_t cols = p.cols
    cdef int32_t col
    cdef CellState* cell
    cdef uint64_t key
    cdef double intensity, height, density
    cdef uint8_t* out_row = out + row * cols * 3
    cdef float* out_row_float = (<float*>out) + row * cols * 3
    if float_output:
        memset(out_row_float, 0, cols * 3 * sizeof(float))
    else:
        memset(out_row, 0, cols * 3)
    for k in range(first, last):
        col = bucket_cols[k]
        cell = cells + col
        occupied[n] = col
        n += cell.count == 0  # a cell's first point appends its column (branch-free)
        key = bucket_keys[k]
        cell.key = key if key > cell.key else cell.key
        cell.count += 1
    for k in range(n):
        col = occupied[k]
        cell = cells + col
        cell_values(p, cell, &intensity, &height, &density)
        if float_output:
            out_row_float[col * 3] = <float>intensity
            out_row_float[col * 3 + 1] = <float>height
            out_row_float[col * 3 + 2] = <float>density
        else:
            out_row[col * 3] = to_byte(intensity)
            out_row[col * 3 + 1] = to_byte(height)
            out_row[col * 3 + 2] = to_byte(density)
        cell.key = 0
        cell.count = 0


# One call's arrays, shared by the threads of its passes.
cdef struct Job:
    const Params* p
    uint64_t* keys
    int32_t* point_cols
    int32_t* point_rows
    uint64_t* bucket_keys
    int32_t* bucket_cols
    int64_t* row_counts   # per chunk: histogram, then write positions
    const int64_t* row_start
    CellState* cells      # per thread: cols cells
    int32_t* occupied     # per thread: cols + 1 columns
    uint8_t* out
    bint float_output


cdef void bin_chunks(void* context, int64_t begin, int64_t end, int worker) noexcept nogil:
    cdef Job* job = <Job*>context
    cdef int64_t chunk
    for chunk in range(begin, end):
        bin_chunk(job.p, chunk, job.keys, job.point_cols, job.point_rows, job.row_counts)


cdef void scatter_chunks(void* context, int64_t begin, int64_t end, int worker) noexcept nogil:
    cdef Job* job = <Job*>context
    cdef int64_t chunk
    for chunk in range(begin, end):
        scatter_chunk(job.p, chunk, job.keys, job.point_cols, job.point_rows, job.row_counts,
                      job.bucket_keys, job.bucket_cols)


cdef void render_rows(void* context, int64_t begin, int64_t end, int worker) noexcept nogil:
    cdef Job* job = <Job*>context
    cdef int64_t row, cols = job.p.cols
    for row in range(begin, end):
        render_row(job.p, row, job.bucket_keys, job.bucket_cols, job.row_start,
                   job.cells + worker * cols, job.occupied + worker * (cols + 1), job.out,
                   job.float_output)


def render(const uint8_t[::1] points, int64_t num_points, int64_t point_step,
           int64_t x_offset, int64_t y_offset, int64_t z_offset, int64_t intensity_offset,
           const double[::1] transform,
           double x_min, double y_min, double cells_per_metre, int32_t rows, int32_t cols,
           double z_min, double z_max, double z_scale,
           double intensity_min, double intensity_scale,
           const double[::1] density, uint8_t[::1] out, bint float_output,
           uint64_t[::1] keys, int32_t[::1] point_cols, int32_t[::1] point_rows,
           uint64_t[::1] bucket_keys, int32_t[::1] bucket_cols,
           int64_t[::1] row_counts, int64_t[::1] row_start, int64_t[::1] cells,
           int32_t[::1] occupied, int threads):
    """Render the BEV image of ``num_points`` points into ``out`` (see the module doc).

    points: raw bytes, point i at ``i * point_step``, float32 x/y/z/intensity at the offsets
    (``intensity_offset`` -1: none). transform: 12 float64 (3 x 4 row-major) or empty.
    density: float64 values for counts 0..63. out: rows*cols*3 uint8 or float32, as bytes.
    Workspace (sized by the caller, contents irrelevant): keys, point_cols, point_rows,
    bucket_keys, bucket_cols >= max(num_points, 1); row_counts >= point_chunks(threads) *
    (rows + 1);
    row_start >= rows + 2; cells >= 2 * threads * cols; occupied >= threads * (cols + 1).
    threads >= 1.
    """
    cdef Params p
    cdef Job job
    cdef int64_t chunk, row, total, count, c
    cdef int k
    cdef int64_t chunks = point_chunks(threads) if threads >= 1 else 1
    cdef int64_t slots = num_points if num_points > 1 else 1
    if (threads < 1 or rows < 1 or cols < 1 or num_points < 0
            or points.shape[0] < num_points * point_step
            or transform.shape[0] not in (0, 12) or density.shape[0] < SATURATION + 1
            or out.shape[0] != rows * cols * 3 * (4 if float_output else 1)
            or keys.shape[0] < slots or point_cols.shape[0] < slots
            or point_rows.shape[0] < slots or bucket_keys.shape[0] < slots
            or bucket_cols.shape[0] < slots or row_counts.shape[0] < chunks * (rows + 1)
            or row_start.shape[0] < rows + 2 or cells.shape[0] < 2 * threads * cols
            or occupied.shape[0] < threads * (cols + 1)):
        raise ValueError('_bev.render: inconsistent sizes (call pointcloud_pipeline.bev)')
    cdef uint64_t* keys_ptr = &keys[0]
    cdef int32_t* point_cols_ptr = &point_cols[0]
    cdef int32_t* point_rows_ptr = &point_rows[0]
    cdef uint64_t* bucket_keys_ptr = &bucket_keys[0]
    cdef int32_t* bucket_cols_ptr = &bucket_cols[0]
    cdef int64_t* row_counts_ptr = &row_counts[0]
    cdef int64_t* row_start_ptr = &row_start[0]
    cdef CellState* cell_ptr = <CellState*>&cells[0]
    cdef int32_t* occupied_ptr = &occupied[0]
    cdef uint8_t* out_ptr = &out[0]

    p.points = &points[0] if num_points > 0 else NULL
    p.num_points = num_points
    p.point_step = point_step
    p.x_offset = x_offset
    p.y_offset = y_offset
    p.z_offset = z_offset
    p.intensity_offset = intensity_offset
    p.has_transform = transform.shape[0] == 12
    for k in range(12):
        p.m[k] = transform[k] if p.has_transform else 0.0
    p.x_min = x_min
    p.y_min = y_min
    p.cells_per_metre = cells_per_metre
    p.z_min = z_min
    p.z_max = z_max
    p.z_scale = z_scale
    p.intensity_min = intensity_min
    p.intensity_scale = intensity_scale
    p.rows = rows
    p.cols = cols
    p.chunks = chunks
    p.density = &density[0]
    job.p = &p
    job.keys = keys_ptr
    job.point_cols = point_cols_ptr
    job.point_rows = point_rows_ptr
    job.bucket_keys = bucket_keys_ptr
    job.bucket_cols = bucket_cols_ptr
    job.row_counts = row_counts_ptr
    job.row_start = row_start_ptr
    job.cells = cell_ptr
    job.occupied = occupied_ptr
    job.out = out_ptr
    job.float_output = float_output

    with nogil:
        pp_parallel_for(chunks, threads, bin_chunks, &job)
        # exclusive prefix sum, row-major then chunk: a row's bucket holds its chunks in order;
        # bucket ``rows`` collects the points outside the grid
        total = 0
        for row in range(rows + 1):
            row_start_ptr[row] = total
            for chunk in range(chunks):
                count = row_counts_ptr[chunk * (rows + 1) + row]
                row_counts_ptr[chunk * (rows + 1) + row] = total
                total += count
        row_start_ptr[rows + 1] = total
        pp_parallel_for(chunks, threads, scatter_chunks, &job)
        for c in range(threads * cols):
            cell_ptr[c].key = 0
            cell_ptr[c].count = 0
        pp_parallel_for(rows, threads, render_rows, &job)
