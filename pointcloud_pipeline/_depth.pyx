# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False
"""Hot loops of depth image -> point cloud. Private: call :mod:`pointcloud_pipeline.depth`.

Arguments are trusted here (the public module validates them). Every entry point releases the
GIL for its whole parallel loop and touches no Python object inside it. Output rows are handed
out in chunks to the caller and the worker threads of ``_workers.h`` (a late or preempted worker
never stalls the call; see there); the dense writer gives each thread its own row buffer.
Writes stay inside each row's own slots even if the depth image changes during a call (the GIL
is released: another thread could write to it).

Output: ``points`` is the cloud buffer viewed as float32 rows of 4 (x, y, z, rgb-or-padding),
16 bytes per point. The 4th slot receives the packed colour ``0x00RRGGBB`` as raw uint32 bits,
or 0 without colour.

Per-pixel rule (the same everywhere, :func:`point_depth`): a sensor-valid pixel (uint16 != 0;
float finite and > 0) at z metres becomes a point when ``min_range <= z <= max_range``, else
NaN; a sensor-invalid pixel becomes a point at ``fill`` metres when ``fill_on``, else NaN.
A point (X, Y, Z) is (x_coef[column] * Z, y_coef[row] * Z, Z), all float32; NaN propagates
into X and Y.
"""
from libc.float cimport FLT_MAX
from libc.math cimport NAN
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy
from openmp cimport omp_get_max_threads

ctypedef fused depth_t:
    uint16_t
    float


cdef struct PixelRule:
    float scale      # metres per uint16 unit (unused for float depth)
    float min_range  # metres
    float max_range  # metres
    float fill       # metres for sensor-invalid pixels when fill_on
    bint fill_on


cdef struct Layout:
    Py_ssize_t columns       # output columns
    Py_ssize_t depth_step    # bytes between converted depth pixels of a row
    Py_ssize_t color_step    # bytes between sampled colour pixels of a row
    Py_ssize_t r, g, b       # byte offsets of the channels in a colour pixel


cdef inline float point_depth(depth_t raw, PixelRule rule, bint fill_on,
                              int* finite) noexcept nogil:
    """Z in metres of the point a pixel becomes (NaN: none); ``finite[0]`` = 1 for a point.

    Branch-free (bitwise operators and selects, integer count) so that GCC vectorizes the
    loops calling it; callers pass ``fill_on`` as a literal so that each loop is compiled
    for one case (the fill select costs ~20 %).
    """
    cdef float z
    cdef bint sensor_valid, kept
    if depth_t is uint16_t:
        z = <float>raw * rule.scale
        sensor_valid = z > <float>0  # raw != 0 (scale > 0 and 1 * scale does not underflow)
    else:
        z = raw
        sensor_valid = (z > <float>0) & (z <= FLT_MAX)  # false for NaN and +-inf
    kept = sensor_valid & (z >= rule.min_range) & (z <= rule.max_range)
    if fill_on:
        finite[0] = kept | (not sensor_valid)
        return z if kept else (NAN if sensor_valid else rule.fill)
    finite[0] = kept
    return z if kept else NAN


cdef inline depth_t depth_at(const depth_t* row, Py_ssize_t byte_offset) noexcept nogil:
    return (<const depth_t*>((<const char*>row) + byte_offset))[0]


cdef inline uint32_t packed_rgb(const uint8_t* pixel, Layout layout) noexcept nogil:
    return ((<uint32_t>pixel[layout.r] << 16) | (<uint32_t>pixel[layout.g] << 8)
            | <uint32_t>pixel[layout.b])


cdef inline int64_t xyz_row(const depth_t* row, const float* x_coef, float y_coef,
                            PixelRule rule, bint fill_on, Layout layout,
                            float* dst) noexcept nogil:
    """x, y, z and zero padding of one output row into ``dst``; returns the finite points."""
    cdef Py_ssize_t j, columns = layout.columns, step = layout.depth_step
    cdef float z
    cdef int finite, count = 0
    if step == sizeof(depth_t):  # contiguous row, no decimation: the common case
        for j in range(columns):
            z = point_depth(row[j], rule, fill_on, &finite)
            dst[4 * j] = x_coef[j] * z
            dst[4 * j + 1] = y_coef * z
            dst[4 * j + 2] = z
            dst[4 * j + 3] = 0  # float 0 has all bits 0
            count += finite
    else:
        for j in range(columns):
            z = point_depth(depth_at(row, j * step), rule, fill_on, &finite)
            dst[4 * j] = x_coef[j] * z
            dst[4 * j + 1] = y_coef * z
            dst[4 * j + 2] = z
            dst[4 * j + 3] = 0
            count += finite
    return count


cdef inline int64_t organized_row(const depth_t* row, const uint8_t* color_row,
                                  const float* x_coef, float y_coef, PixelRule rule,
                                  Layout layout, float* dst) noexcept nogil:
    """Convert one output row into ``dst``; returns the number of finite points."""
    cdef Py_ssize_t j
    cdef int64_t count
    cdef uint32_t* dst_bits = <uint32_t*>dst
    if rule.fill_on:
        count = xyz_row(row, x_coef, y_coef, rule, True, layout, dst)
    else:
        count = xyz_row(row, x_coef, y_coef, rule, False, layout, dst)
    if color_row != NULL:
        for j in range(layout.columns):
            dst_bits[4 * j + 3] = packed_rgb(color_row + j * layout.color_step, layout)
    return count


cdef inline int64_t count_row(const depth_t* row, PixelRule rule, bint fill_on,
                              Layout layout) noexcept nogil:
    """Finite points one output row will have."""
    cdef Py_ssize_t j, columns = layout.columns, step = layout.depth_step
    cdef int finite, count = 0
    if step == sizeof(depth_t):
        for j in range(columns):
            point_depth(row[j], rule, fill_on, &finite)
            count += finite
    else:
        for j in range(columns):
            point_depth(depth_at(row, j * step), rule, fill_on, &finite)
            count += finite
    return count


cdef inline void compact_row(const float* row_points, Py_ssize_t columns, Py_ssize_t points,
                             float* dst) noexcept nogil:
    """Copy the ``points`` finite points (z not NaN) of an organized row to ``dst``, in order.

    Branch-free: every point is copied to the next free slot, which only advances past a
    finite one; the loop stops once all ``points`` are placed, so nothing is written beyond
    them (the next row's slots belong to another thread).
    """
    cdef Py_ssize_t j, k = 0
    cdef float z
    for j in range(columns):
        if k == points:
            break
        memcpy(dst + 4 * k, row_points + 4 * j, 4 * sizeof(float))
        z = row_points[4 * j + 2]
        k += z == z


cdef inline int resolved_threads(int threads) noexcept nogil:
    return threads if threads > 0 else omp_get_max_threads()


cdef inline PixelRule pixel_rule(float scale, float min_range, float max_range,
                                 float invalid_depth) noexcept:
    cdef PixelRule rule
    rule.scale = scale
    rule.min_range = min_range
    rule.max_range = max_range
    rule.fill_on = invalid_depth > 0
    rule.fill = invalid_depth if rule.fill_on else NAN
    return rule


cdef Layout row_layout(Py_ssize_t columns, Py_ssize_t depth_column_stride, Py_ssize_t dx,
                       const uint8_t[:, :, :] color, Py_ssize_t r, Py_ssize_t g, Py_ssize_t b):
    cdef Layout layout
    layout.columns = columns
    layout.depth_step = depth_column_stride * dx
    layout.color_step = color.strides[1] * dx if color is not None else 0
    layout.r = r * color.strides[2] if color is not None else 0
    layout.g = g * color.strides[2] if color is not None else 0
    layout.b = b * color.strides[2] if color is not None else 0
    return layout


cdef extern from "_workers.h" nogil:
    ctypedef void (*pp_chunk_fn)(void* context, int64_t begin, int64_t end,
                                 int worker) noexcept nogil
    void pp_parallel_for(int64_t items, int threads, pp_chunk_fn fn, void* context)
    void pp_add_int64(int64_t* total, int64_t value)


# One call's arguments, shared by the threads converting its rows.
cdef struct RowJob:
    const char* depth0          # first depth pixel
    Py_ssize_t row_stride       # bytes between converted depth rows
    bint is_float               # float depth (else uint16)
    const uint8_t* color0       # first colour pixel, or NULL
    Py_ssize_t color_row_stride
    const float* x_coef
    const float* y_coef
    PixelRule rule
    Layout layout
    float* points               # organized: rows x columns points; dense: finite points
    int64_t* row_counts         # count pass: finite points per output row
    const int64_t* row_offsets  # dense pass: first point of each row (rows + 1 entries)
    float* scratch              # dense pass: one organized row per thread
    int64_t finite              # organized pass: finite points (summed atomically)


cdef inline int64_t job_row(RowJob* job, Py_ssize_t i, float* dst) noexcept nogil:
    """Convert output row ``i`` of the job into ``dst``; returns its finite points."""
    cdef const char* row = job.depth0 + i * job.row_stride
    cdef const uint8_t* color_row = (job.color0 + i * job.color_row_stride
                                     if job.color0 != NULL else NULL)
    if job.is_float:
        return organized_row(<const float*>row, color_row, job.x_coef, job.y_coef[i], job.rule,
                             job.layout, dst)
    return organized_row(<const uint16_t*>row, color_row, job.x_coef, job.y_coef[i], job.rule,
                         job.layout, dst)


cdef void organized_chunk(void* context, int64_t begin, int64_t end,
                          int worker) noexcept nogil:
    cdef RowJob* job = <RowJob*>context
    cdef int64_t i, finite = 0
    cdef Py_ssize_t columns = job.layout.columns
    for i in range(begin, end):
        finite += job_row(job, i, job.points + 4 * i * columns)
    pp_add_int64(&job.finite, finite)


cdef void count_chunk(void* context, int64_t begin, int64_t end, int worker) noexcept nogil:
    cdef RowJob* job = <RowJob*>context
    cdef int64_t i
    cdef const char* row
    for i in range(begin, end):
        row = job.depth0 + i * job.row_stride
        if job.is_float:
            if job.rule.fill_on:
                job.row_counts[i] = count_row(<const float*>row, job.rule, True, job.layout)
            else:
                job.row_counts[i] = count_row(<const float*>row, job.rule, False, job.layout)
        elif job.rule.fill_on:
            job.row_counts[i] = count_row(<const uint16_t*>row, job.rule, True, job.layout)
        else:
            job.row_counts[i] = count_row(<const uint16_t*>row, job.rule, False, job.layout)


cdef void dense_chunk(void* context, int64_t begin, int64_t end, int worker) noexcept nogil:
    cdef RowJob* job = <RowJob*>context
    cdef int64_t i
    cdef Py_ssize_t columns = job.layout.columns
    cdef float* row_points = job.scratch + 4 * worker * columns
    for i in range(begin, end):
        job_row(job, i, row_points)
        compact_row(row_points, columns, job.row_offsets[i + 1] - job.row_offsets[i],
                    job.points + 4 * job.row_offsets[i])


cdef RowJob row_job(const depth_t[:, :] depth, Py_ssize_t dy, PixelRule rule, Layout layout):
    """A job over ``depth``'s output rows without colour, coefficients or output yet."""
    cdef RowJob job
    job.depth0 = <const char*>&depth[0, 0]
    job.row_stride = depth.strides[0] * dy
    job.is_float = depth_t is float
    job.color0 = NULL
    job.color_row_stride = 0
    job.x_coef = NULL
    job.y_coef = NULL
    job.rule = rule
    job.layout = layout
    job.points = NULL
    job.row_counts = NULL
    job.row_offsets = NULL
    job.scratch = NULL
    job.finite = 0
    return job


cdef void set_conversion(RowJob* job, Py_ssize_t dy, const float[::1] x_coef,
                         const float[::1] y_coef, const uint8_t[:, :, :] color):
    """The coefficients and the optional colour image of a converting (not counting) job."""
    job.x_coef = &x_coef[0]
    job.y_coef = &y_coef[0]
    if color is not None:
        job.color0 = &color[0, 0, 0]
        job.color_row_stride = color.strides[0] * dy


cdef int64_t organized_impl(const depth_t[:, :] depth, Py_ssize_t dx, Py_ssize_t dy,
                            const float[::1] x_coef, const float[::1] y_coef, PixelRule rule,
                            const uint8_t[:, :, :] color, Py_ssize_t r, Py_ssize_t g,
                            Py_ssize_t b, float[:, ::1] points, int threads):
    cdef RowJob job = row_job(depth, dy, rule, row_layout(x_coef.shape[0], depth.strides[1], dx,
                                                          color, r, g, b))
    set_conversion(&job, dy, x_coef, y_coef, color)
    job.points = &points[0, 0]
    with nogil:
        pp_parallel_for(y_coef.shape[0], resolved_threads(threads), organized_chunk, &job)
    return job.finite


cdef void count_impl(const depth_t[:, :] depth, Py_ssize_t dx, Py_ssize_t dy,
                     PixelRule rule, int64_t[::1] row_counts, int threads):
    cdef RowJob job = row_job(depth, dy, rule, row_layout((depth.shape[1] + dx - 1) // dx,
                                                          depth.strides[1], dx, None, 0, 0, 0))
    job.row_counts = &row_counts[0]
    with nogil:
        pp_parallel_for(row_counts.shape[0], resolved_threads(threads), count_chunk, &job)


cdef int dense_impl(const depth_t[:, :] depth, Py_ssize_t dx, Py_ssize_t dy,
                    const float[::1] x_coef, const float[::1] y_coef, PixelRule rule,
                    const uint8_t[:, :, :] color, Py_ssize_t r, Py_ssize_t g, Py_ssize_t b,
                    const int64_t[::1] row_offsets, float[:, ::1] points, int threads) except -1:
    cdef Py_ssize_t columns = x_coef.shape[0]
    cdef int n_threads = resolved_threads(threads)
    cdef RowJob job = row_job(depth, dy, rule,
                              row_layout(columns, depth.strides[1], dx, color, r, g, b))
    if points.shape[0] == 0:
        return 0
    set_conversion(&job, dy, x_coef, y_coef, color)
    job.points = &points[0, 0]
    job.row_offsets = &row_offsets[0]
    job.scratch = <float*>malloc(n_threads * columns * 4 * sizeof(float))
    if job.scratch == NULL:
        raise MemoryError(f'no memory for {n_threads} row buffers of {columns} points')
    with nogil:
        pp_parallel_for(y_coef.shape[0], n_threads, dense_chunk, &job)
    free(job.scratch)
    return 0


# Python entry points, one per depth type (a fused def function dispatches slowly per call).
# Depth: any strides (in bytes, may be negative); colour: H x W x C uint8, any strides, or None;
# r, g, b: channel indices; invalid_depth: metres, 0 disables.

def organized_u16(const uint16_t[:, :] depth, Py_ssize_t dx, Py_ssize_t dy,
                  const float[::1] x_coef, const float[::1] y_coef, float scale,
                  float min_range, float max_range, float invalid_depth,
                  const uint8_t[:, :, :] color, Py_ssize_t r, Py_ssize_t g, Py_ssize_t b,
                  float[:, ::1] points, int threads):
    """Organized cloud (one point per output pixel) into ``points``; returns finite points."""
    return organized_impl(depth, dx, dy, x_coef, y_coef,
                          pixel_rule(scale, min_range, max_range, invalid_depth),
                          color, r, g, b, points, threads)


def organized_f32(const float[:, :] depth, Py_ssize_t dx, Py_ssize_t dy,
                  const float[::1] x_coef, const float[::1] y_coef, float scale,
                  float min_range, float max_range, float invalid_depth,
                  const uint8_t[:, :, :] color, Py_ssize_t r, Py_ssize_t g, Py_ssize_t b,
                  float[:, ::1] points, int threads):
    """Organized cloud (one point per output pixel) into ``points``; returns finite points."""
    return organized_impl(depth, dx, dy, x_coef, y_coef,
                          pixel_rule(scale, min_range, max_range, invalid_depth),
                          color, r, g, b, points, threads)


def count_rows_u16(const uint16_t[:, :] depth, Py_ssize_t dx, Py_ssize_t dy, float scale,
                   float min_range, float max_range, float invalid_depth,
                   int64_t[::1] row_counts, int threads):
    """Dense pass 1: finite points of each output row into ``row_counts``."""
    count_impl(depth, dx, dy, pixel_rule(scale, min_range, max_range, invalid_depth),
               row_counts, threads)


def count_rows_f32(const float[:, :] depth, Py_ssize_t dx, Py_ssize_t dy, float scale,
                   float min_range, float max_range, float invalid_depth,
                   int64_t[::1] row_counts, int threads):
    """Dense pass 1: finite points of each output row into ``row_counts``."""
    count_impl(depth, dx, dy, pixel_rule(scale, min_range, max_range, invalid_depth),
               row_counts, threads)


def dense_u16(const uint16_t[:, :] depth, Py_ssize_t dx, Py_ssize_t dy,
              const float[::1] x_coef, const float[::1] y_coef, float scale, float min_range,
              float max_range, float invalid_depth, const uint8_t[:, :, :] color,
              Py_ssize_t r, Py_ssize_t g, Py_ssize_t b, const int64_t[::1] row_offsets,
              float[:, ::1] points, int threads):
    """Dense pass 2: finite points only, row ``i`` starting at point ``row_offsets[i]``."""
    dense_impl(depth, dx, dy, x_coef, y_coef,
               pixel_rule(scale, min_range, max_range, invalid_depth),
               color, r, g, b, row_offsets, points, threads)


def dense_f32(const float[:, :] depth, Py_ssize_t dx, Py_ssize_t dy,
              const float[::1] x_coef, const float[::1] y_coef, float scale, float min_range,
              float max_range, float invalid_depth, const uint8_t[:, :, :] color,
              Py_ssize_t r, Py_ssize_t g, Py_ssize_t b, const int64_t[::1] row_offsets,
              float[:, ::1] points, int threads):
    """Dense pass 2: finite points only, row ``i`` starting at point ``row_offsets[i]``."""
    dense_impl(depth, dx, dy, x_coef, y_coef,
               pixel_rule(scale, min_range, max_range, invalid_depth),
               color, r, g, b, row_offsets, points, threads)


def max_threads():
    """Threads a call with ``threads=0`` uses (OpenMP default, e.g. from OMP_NUM_THREADS)."""
    return omp_get_max_threads()
