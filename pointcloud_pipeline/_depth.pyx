# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False
"""Hot loops of depth image -> point cloud. Private: call :mod:`pointcloud_pipeline.depth`.

Arguments are trusted here (the public module validates them). Every entry point releases the
GIL for its whole parallel loop and touches no Python object inside it. Output rows are handed
out in chunks to the caller and the worker threads of ``_workers.h`` (a late or preempted worker
never stalls the call; see there); the dense writer gives each thread its own row buffer.
Writes stay inside each row's own slots even if the depth image changes during a call (the GIL
is released: another thread could write to it).

Output: ``points`` is the cloud buffer viewed as float32 rows of 4 (x, y, z, 4th slot), 16
bytes per point, or of 5 (x, y, z, rgb, intensity), 20 bytes, for XYZRGBI. The 4th slot receives
the packed colour ``0x00RRGGBB`` as raw uint32 bits, or the intensity (XYZI), or 0; the 5th slot
of XYZRGBI the intensity. Intensity is the raw pixel value converted to float32.

Per-pixel rule (the same everywhere, :func:`point_depth`): a sensor-valid pixel (uint16 != 0;
float finite and > 0) at z metres becomes a point when ``min_range <= z <= max_range``, else
NaN; a sensor-invalid pixel becomes a point at ``fill`` metres when ``fill_on``, else NaN.
A point (X, Y, Z) is (x_coef[column] * Z, y_coef[row] * Z, Z), all float32; NaN propagates
into X and Y. With a ray table the pixel's value d (z or the range along the ray) gives
(ray_x * d, ray_y * d, ray_z * d), float32; the public module guarantees ray_z > 0 and finite
rays, so a point is NaN exactly when d is and the dense count pass (which sees only d) agrees
with the points written.

Two families of row loops: the rectified pinhole XYZ / XYZRGB loops (``organized_row``,
``xyz_row``), which the pinhole entry points alone use, and the extended loops (``extended_row``:
ray tables, intensity, the 20-byte XYZRGBI point) behind separate entry points; the extended
loops get their point size (4 or 5 floats) and the fill case as literals, so each is compiled
for one case and the pinhole loops are untouched by the new cases.
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

ctypedef fused intensity_t:
    uint8_t
    uint16_t
    float

cdef enum IntensityKind:
    NO_INTENSITY = 0
    INTENSITY_U8 = 1
    INTENSITY_U16 = 2
    INTENSITY_F32 = 3


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
    Py_ssize_t intensity_step  # bytes between sampled intensity pixels of a row


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


# --- extended rows: ray tables, intensity, the 20-byte XYZRGBI point ----------------------------

cdef inline int64_t ray_xyz_row(const depth_t* row, const float* rays, PixelRule rule,
                                bint fill_on, Py_ssize_t point_floats, Layout layout,
                                float* dst) noexcept nogil:
    """x, y, z = ray * d of one output row into ``dst`` (``rays``: the row's columns x 3 floats;
    ``point_floats``: a literal 4 or 5; with 4 the 4th slot gets 0). Returns the finite points."""
    cdef Py_ssize_t j, columns = layout.columns, step = layout.depth_step
    cdef float d
    cdef int finite, count = 0
    if step == sizeof(depth_t):
        for j in range(columns):
            d = point_depth(row[j], rule, fill_on, &finite)
            dst[point_floats * j] = rays[3 * j] * d
            dst[point_floats * j + 1] = rays[3 * j + 1] * d
            dst[point_floats * j + 2] = rays[3 * j + 2] * d
            if point_floats == 4:
                dst[4 * j + 3] = 0
            count += finite
    else:
        for j in range(columns):
            d = point_depth(depth_at(row, j * step), rule, fill_on, &finite)
            dst[point_floats * j] = rays[3 * j] * d
            dst[point_floats * j + 1] = rays[3 * j + 1] * d
            dst[point_floats * j + 2] = rays[3 * j + 2] * d
            if point_floats == 4:
                dst[4 * j + 3] = 0
            count += finite
    return count


cdef inline int64_t pinhole_xyz_row5(const depth_t* row, const float* x_coef, float y_coef,
                                     PixelRule rule, bint fill_on, Layout layout,
                                     float* dst) noexcept nogil:
    """x, y, z of one output row of 20-byte points (slots 3 and 4 are left to the colour and
    intensity passes); returns the finite points."""
    cdef Py_ssize_t j, columns = layout.columns, step = layout.depth_step
    cdef float z
    cdef int finite, count = 0
    for j in range(columns):
        z = point_depth(depth_at(row, j * step), rule, fill_on, &finite)
        dst[5 * j] = x_coef[j] * z
        dst[5 * j + 1] = y_coef * z
        dst[5 * j + 2] = z
        count += finite
    return count


cdef inline void color_slots(const uint8_t* color_row, Layout layout, Py_ssize_t point_floats,
                             float* dst) noexcept nogil:
    """Packed colours of one output row into slot 3 of points of ``point_floats`` floats."""
    cdef Py_ssize_t j
    cdef uint32_t* dst_bits = <uint32_t*>dst
    for j in range(layout.columns):
        dst_bits[point_floats * j + 3] = packed_rgb(color_row + j * layout.color_step, layout)


cdef inline void intensity_slots(const intensity_t* row, Layout layout, Py_ssize_t point_floats,
                                 Py_ssize_t slot, float* dst) noexcept nogil:
    """Raw intensities of one output row, as float32, into ``slot`` of each point."""
    cdef Py_ssize_t j, step = layout.intensity_step
    for j in range(layout.columns):
        dst[point_floats * j + slot] = <float>(
            <const intensity_t*>((<const char*>row) + j * step))[0]


cdef inline void intensity_pass(const char* row, int kind, Layout layout,
                                Py_ssize_t point_floats, Py_ssize_t slot,
                                float* dst) noexcept nogil:
    if kind == INTENSITY_U8:
        intensity_slots(<const uint8_t*>row, layout, point_floats, slot, dst)
    elif kind == INTENSITY_U16:
        intensity_slots(<const uint16_t*>row, layout, point_floats, slot, dst)
    elif kind == INTENSITY_F32:
        intensity_slots(<const float*>row, layout, point_floats, slot, dst)


cdef inline int64_t extended_row(const depth_t* row, const float* ray_row,
                                 const uint8_t* color_row, const char* intensity_row,
                                 int intensity_kind, const float* x_coef, float y_coef,
                                 PixelRule rule, Layout layout, Py_ssize_t point_floats,
                                 float* dst) noexcept nogil:
    """One output row with a ray table (``ray_row`` not NULL) and/or intensity; 16-byte points
    (``point_floats`` 4: XYZ / XYZRGB with rays, XYZI) or 20-byte XYZRGBI points (5)."""
    cdef int64_t count
    if point_floats == 4:
        if ray_row == NULL:  # XYZI: the pinhole XYZ row, then the intensity in the 4th slot
            count = organized_row(row, NULL, x_coef, y_coef, rule, layout, dst)
        elif rule.fill_on:
            count = ray_xyz_row(row, ray_row, rule, True, 4, layout, dst)
        else:
            count = ray_xyz_row(row, ray_row, rule, False, 4, layout, dst)
        if color_row != NULL:
            color_slots(color_row, layout, 4, dst)
        intensity_pass(intensity_row, intensity_kind, layout, 4, 3, dst)
        return count
    if ray_row == NULL:
        if rule.fill_on:
            count = pinhole_xyz_row5(row, x_coef, y_coef, rule, True, layout, dst)
        else:
            count = pinhole_xyz_row5(row, x_coef, y_coef, rule, False, layout, dst)
    elif rule.fill_on:
        count = ray_xyz_row(row, ray_row, rule, True, 5, layout, dst)
    else:
        count = ray_xyz_row(row, ray_row, rule, False, 5, layout, dst)
    color_slots(color_row, layout, 5, dst)
    intensity_pass(intensity_row, intensity_kind, layout, 5, 4, dst)
    return count


cdef inline void compact_row5(const float* row_points, Py_ssize_t columns, Py_ssize_t points,
                              float* dst) noexcept nogil:
    """:func:`compact_row` for 20-byte (5-float) points."""
    cdef Py_ssize_t j, k = 0
    cdef float z
    for j in range(columns):
        if k == points:
            break
        memcpy(dst + 5 * k, row_points + 5 * j, 5 * sizeof(float))
        z = row_points[5 * j + 2]
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
    layout.intensity_step = 0
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
    const char* rays0           # ray table (rows x columns x 3 float32, C order), or NULL
    Py_ssize_t ray_row_stride   # bytes between ray table rows
    const char* intensity0      # first intensity pixel, or NULL
    Py_ssize_t intensity_row_stride
    int intensity_kind
    Py_ssize_t point_floats     # 4 (16-byte points) or 5 (20-byte XYZRGBI points)


cdef inline int64_t job_row(RowJob* job, Py_ssize_t i, float* dst) noexcept nogil:
    """Convert output row ``i`` of the job into ``dst``; returns its finite points."""
    cdef const char* row = job.depth0 + i * job.row_stride
    cdef const uint8_t* color_row = (job.color0 + i * job.color_row_stride
                                     if job.color0 != NULL else NULL)
    cdef const float* ray_row
    cdef const char* intensity_row
    if job.rays0 == NULL and job.intensity0 == NULL:  # the rectified pinhole XYZ / XYZRGB path
        if job.is_float:
            return organized_row(<const float*>row, color_row, job.x_coef, job.y_coef[i],
                                 job.rule, job.layout, dst)
        return organized_row(<const uint16_t*>row, color_row, job.x_coef, job.y_coef[i],
                             job.rule, job.layout, dst)
    ray_row = (<const float*>(job.rays0 + i * job.ray_row_stride) if job.rays0 != NULL
               else NULL)
    intensity_row = (job.intensity0 + i * job.intensity_row_stride if job.intensity0 != NULL
                     else NULL)
    if job.is_float:
        return extended_row(<const float*>row, ray_row, color_row, intensity_row,
                            job.intensity_kind, job.x_coef, job.y_coef[i], job.rule, job.layout,
                            job.point_floats, dst)
    return extended_row(<const uint16_t*>row, ray_row, color_row, intensity_row,
                        job.intensity_kind, job.x_coef, job.y_coef[i], job.rule, job.layout,
                        job.point_floats, dst)


cdef void organized_chunk(void* context, int64_t begin, int64_t end,
                          int worker) noexcept nogil:
    cdef RowJob* job = <RowJob*>context
    cdef int64_t i, finite = 0
    cdef Py_ssize_t columns = job.layout.columns
    cdef Py_ssize_t point_floats = job.point_floats
    for i in range(begin, end):
        finite += job_row(job, i, job.points + point_floats * i * columns)
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
    cdef float* row_points = job.scratch + job.point_floats * worker * columns
    for i in range(begin, end):
        job_row(job, i, row_points)
        if job.point_floats == 4:
            compact_row(row_points, columns, job.row_offsets[i + 1] - job.row_offsets[i],
                        job.points + 4 * job.row_offsets[i])
        else:
            compact_row5(row_points, columns, job.row_offsets[i + 1] - job.row_offsets[i],
                         job.points + 5 * job.row_offsets[i])


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
    job.rays0 = NULL
    job.ray_row_stride = 0
    job.intensity0 = NULL
    job.intensity_row_stride = 0
    job.intensity_kind = NO_INTENSITY
    job.point_floats = 4
    return job


cdef void set_conversion(RowJob* job, Py_ssize_t dy, const float[::1] x_coef,
                         const float[::1] y_coef, const uint8_t[:, :, :] color):
    """The coefficients and the optional colour image of a converting (not counting) job."""
    job.x_coef = &x_coef[0]
    job.y_coef = &y_coef[0]
    if color is not None:
        job.color0 = &color[0, 0, 0]
        job.color_row_stride = color.strides[0] * dy


# The ray table and intensity image of an extended call (all zero / NULL for the pinhole path).
cdef struct Extras:
    const char* rays0
    Py_ssize_t ray_row_stride
    const char* intensity0
    Py_ssize_t intensity_row_stride  # bytes between converted intensity rows
    Py_ssize_t intensity_step        # bytes between sampled intensity pixels of a row
    int intensity_kind


cdef inline Extras no_extras() noexcept:
    cdef Extras extras
    extras.rays0 = NULL
    extras.ray_row_stride = 0
    extras.intensity0 = NULL
    extras.intensity_row_stride = 0
    extras.intensity_step = 0
    extras.intensity_kind = NO_INTENSITY
    return extras


cdef Extras call_extras(Py_ssize_t dx, Py_ssize_t dy, const float[:, :, ::1] rays,
                        const uint8_t[:, :] intensity_u8, const uint16_t[:, :] intensity_u16,
                        const float[:, :] intensity_f32):
    """Extras from the optional ray table and the (at most one) intensity image."""
    cdef Extras extras = no_extras()
    if rays is not None:
        extras.rays0 = <const char*>&rays[0, 0, 0]
        extras.ray_row_stride = rays.strides[0]
    if intensity_u8 is not None:
        extras.intensity0 = <const char*>&intensity_u8[0, 0]
        extras.intensity_row_stride = intensity_u8.strides[0] * dy
        extras.intensity_step = intensity_u8.strides[1] * dx
        extras.intensity_kind = INTENSITY_U8
    elif intensity_u16 is not None:
        extras.intensity0 = <const char*>&intensity_u16[0, 0]
        extras.intensity_row_stride = intensity_u16.strides[0] * dy
        extras.intensity_step = intensity_u16.strides[1] * dx
        extras.intensity_kind = INTENSITY_U16
    elif intensity_f32 is not None:
        extras.intensity0 = <const char*>&intensity_f32[0, 0]
        extras.intensity_row_stride = intensity_f32.strides[0] * dy
        extras.intensity_step = intensity_f32.strides[1] * dx
        extras.intensity_kind = INTENSITY_F32
    return extras


cdef void set_extras(RowJob* job, Extras extras, Py_ssize_t point_floats):
    job.rays0 = extras.rays0
    job.ray_row_stride = extras.ray_row_stride
    job.intensity0 = extras.intensity0
    job.intensity_row_stride = extras.intensity_row_stride
    job.layout.intensity_step = extras.intensity_step
    job.intensity_kind = extras.intensity_kind
    job.point_floats = point_floats


cdef int64_t organized_impl(const depth_t[:, :] depth, Py_ssize_t dx, Py_ssize_t dy,
                            const float[::1] x_coef, const float[::1] y_coef, PixelRule rule,
                            const uint8_t[:, :, :] color, Py_ssize_t r, Py_ssize_t g,
                            Py_ssize_t b, float[:, ::1] points, int threads,
                            Extras extras):
    cdef RowJob job = row_job(depth, dy, rule, row_layout(x_coef.shape[0], depth.strides[1], dx,
                                                          color, r, g, b))
    set_conversion(&job, dy, x_coef, y_coef, color)
    set_extras(&job, extras, points.shape[1])
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
                    const int64_t[::1] row_offsets, float[:, ::1] points, int threads,
                    Extras extras) except -1:
    cdef Py_ssize_t columns = x_coef.shape[0], point_floats = points.shape[1]
    cdef int n_threads = resolved_threads(threads)
    cdef RowJob job = row_job(depth, dy, rule,
                              row_layout(columns, depth.strides[1], dx, color, r, g, b))
    if points.shape[0] == 0:
        return 0
    set_conversion(&job, dy, x_coef, y_coef, color)
    set_extras(&job, extras, point_floats)
    job.points = &points[0, 0]
    job.row_offsets = &row_offsets[0]
    job.scratch = <float*>malloc(n_threads * columns * point_floats * sizeof(float))
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
                          color, r, g, b, points, threads, no_extras())


def organized_f32(const float[:, :] depth, Py_ssize_t dx, Py_ssize_t dy,
                  const float[::1] x_coef, const float[::1] y_coef, float scale,
                  float min_range, float max_range, float invalid_depth,
                  const uint8_t[:, :, :] color, Py_ssize_t r, Py_ssize_t g, Py_ssize_t b,
                  float[:, ::1] points, int threads):
    """Organized cloud (one point per output pixel) into ``points``; returns finite points."""
    return organized_impl(depth, dx, dy, x_coef, y_coef,
                          pixel_rule(scale, min_range, max_range, invalid_depth),
                          color, r, g, b, points, threads, no_extras())


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
               color, r, g, b, row_offsets, points, threads, no_extras())


def dense_f32(const float[:, :] depth, Py_ssize_t dx, Py_ssize_t dy,
              const float[::1] x_coef, const float[::1] y_coef, float scale, float min_range,
              float max_range, float invalid_depth, const uint8_t[:, :, :] color,
              Py_ssize_t r, Py_ssize_t g, Py_ssize_t b, const int64_t[::1] row_offsets,
              float[:, ::1] points, int threads):
    """Dense pass 2: finite points only, row ``i`` starting at point ``row_offsets[i]``."""
    dense_impl(depth, dx, dy, x_coef, y_coef,
               pixel_rule(scale, min_range, max_range, invalid_depth),
               color, r, g, b, row_offsets, points, threads, no_extras())


# Extended entry points: the pinhole ones' arguments plus ``rays`` (rows x columns x 3 float32,
# C order, the output grid's rays; None: the pinhole coefficients) and at most one intensity
# image (H x W uint8, uint16 or float32, any strides; the others None). ``points`` has 4
# floats a point (16-byte XYZI, or XYZ / XYZRGB with rays) or 5 (20-byte XYZRGBI).

def organized_ext_u16(const uint16_t[:, :] depth, Py_ssize_t dx, Py_ssize_t dy,
                      const float[::1] x_coef, const float[::1] y_coef, float scale,
                      float min_range, float max_range, float invalid_depth,
                      const uint8_t[:, :, :] color, Py_ssize_t r, Py_ssize_t g, Py_ssize_t b,
                      const float[:, :, ::1] rays, const uint8_t[:, :] intensity_u8,
                      const uint16_t[:, :] intensity_u16, const float[:, :] intensity_f32,
                      float[:, ::1] points, int threads):
    """Organized cloud with a ray table and/or intensity; returns finite points."""
    return organized_impl(depth, dx, dy, x_coef, y_coef,
                          pixel_rule(scale, min_range, max_range, invalid_depth),
                          color, r, g, b, points, threads,
                          call_extras(dx, dy, rays, intensity_u8, intensity_u16, intensity_f32))


def organized_ext_f32(const float[:, :] depth, Py_ssize_t dx, Py_ssize_t dy,
                      const float[::1] x_coef, const float[::1] y_coef, float scale,
                      float min_range, float max_range, float invalid_depth,
                      const uint8_t[:, :, :] color, Py_ssize_t r, Py_ssize_t g, Py_ssize_t b,
                      const float[:, :, ::1] rays, const uint8_t[:, :] intensity_u8,
                      const uint16_t[:, :] intensity_u16, const float[:, :] intensity_f32,
                      float[:, ::1] points, int threads):
    """Organized cloud with a ray table and/or intensity; returns finite points."""
    return organized_impl(depth, dx, dy, x_coef, y_coef,
                          pixel_rule(scale, min_range, max_range, invalid_depth),
                          color, r, g, b, points, threads,
                          call_extras(dx, dy, rays, intensity_u8, intensity_u16, intensity_f32))


def dense_ext_u16(const uint16_t[:, :] depth, Py_ssize_t dx, Py_ssize_t dy,
                  const float[::1] x_coef, const float[::1] y_coef, float scale, float min_range,
                  float max_range, float invalid_depth, const uint8_t[:, :, :] color,
                  Py_ssize_t r, Py_ssize_t g, Py_ssize_t b, const float[:, :, ::1] rays,
                  const uint8_t[:, :] intensity_u8, const uint16_t[:, :] intensity_u16,
                  const float[:, :] intensity_f32, const int64_t[::1] row_offsets,
                  float[:, ::1] points, int threads):
    """Dense pass 2 with a ray table and/or intensity (pass 1 is ``count_rows_u16``)."""
    dense_impl(depth, dx, dy, x_coef, y_coef,
               pixel_rule(scale, min_range, max_range, invalid_depth),
               color, r, g, b, row_offsets, points, threads,
               call_extras(dx, dy, rays, intensity_u8, intensity_u16, intensity_f32))


def dense_ext_f32(const float[:, :] depth, Py_ssize_t dx, Py_ssize_t dy,
                  const float[::1] x_coef, const float[::1] y_coef, float scale, float min_range,
                  float max_range, float invalid_depth, const uint8_t[:, :, :] color,
                  Py_ssize_t r, Py_ssize_t g, Py_ssize_t b, const float[:, :, ::1] rays,
                  const uint8_t[:, :] intensity_u8, const uint16_t[:, :] intensity_u16,
                  const float[:, :] intensity_f32, const int64_t[::1] row_offsets,
                  float[:, ::1] points, int threads):
    """Dense pass 2 with a ray table and/or intensity (pass 1 is ``count_rows_f32``)."""
    dense_impl(depth, dx, dy, x_coef, y_coef,
               pixel_rule(scale, min_range, max_range, invalid_depth),
               color, r, g, b, row_offsets, points, threads,
               call_extras(dx, dy, rays, intensity_u8, intensity_u16, intensity_f32))


def max_threads():
    """Threads a call with ``threads=0`` uses (OpenMP default, e.g. from OMP_NUM_THREADS)."""
    return omp_get_max_threads()
