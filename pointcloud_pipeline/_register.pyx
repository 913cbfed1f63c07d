# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False
"""Hot loops of depth registration (depth camera -> colour camera). Private: call
:mod:`pointcloud_pipeline.register`, which validates every argument (trusted here).

One call runs three passes on the caller and the worker threads of ``_workers.h`` (GIL
released throughout, no Python object touched): (1) every output pixel is set to "empty",
(2) every depth row is scattered into the colour image through a z-buffer (an atomic minimum),
(3) uint16 output only: "empty" becomes 0. Each pass is a ``pp_parallel_for``, which returns
only when every claimed chunk is done, so the passes do not overlap. Pass 2 per row, without
hole filling: a branch-free loop that GCC vectorizes computes every pixel's colour pixel and
value into per-thread row buffers, then a scalar loop does the stores; with hole filling, one
scalar loop (five projections per pixel: its centre and four corners).

Arithmetic (float64): the pixel's ray ``xc = (u - cx) / fx`` (a per-column table), ``yc = (v -
cy) / fy``; ``p_color = (R[:, 0] xc + (R[:, 1] yc + R[:, 2])) z + t`` (= R p_depth + t); colour
pixel ``floor(fx' X / Z + cx' + 0.5)`` (and v alike); uint16 value ``floor(Z / scale + 0.5)``.

Determinism: the value a depth pixel offers to a colour pixel is computed from that depth pixel
alone (double precision, the same instructions whichever thread runs it), and the z-buffer keeps
the minimum of the offers, which does not depend on their order. The minimum is taken with a
compare-and-swap loop on the stored value's integer bits: uint16 output holds the rounded depth
units themselves, "empty" being 0xFFFF (larger than any kept value, which is at most 65534);
float32 output holds the colour-frame z whose IEEE bits, for positive finite floats, order like
the values, "empty" being the quiet NaN 0x7FC00000 (larger than +inf's bits 0x7F800000). So the
output bytes are the same for any thread count. With one thread the stores are plain
compare-and-store (no other thread writes).
"""
from libc.float cimport FLT_MAX
from libc.stdint cimport int32_t, int64_t, uint16_t, uint32_t
from libc.stdlib cimport free, malloc
from openmp cimport omp_get_max_threads


cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    static inline void pp_atomic_min_u16(uint16_t *slot, uint16_t value)
    {
        uint16_t current = __atomic_load_n(slot, __ATOMIC_RELAXED);
        while (value < current &&
               !__atomic_compare_exchange_n(slot, &current, value, 1, __ATOMIC_RELAXED,
                                            __ATOMIC_RELAXED)) {
        }
    }
    static inline void pp_atomic_min_u32(uint32_t *slot, uint32_t value)
    {
        uint32_t current = __atomic_load_n(slot, __ATOMIC_RELAXED);
        while (value < current &&
               !__atomic_compare_exchange_n(slot, &current, value, 1, __ATOMIC_RELAXED,
                                            __ATOMIC_RELAXED)) {
        }
    }
    static inline uint32_t pp_float_bits(float value)
    {
        uint32_t bits;
        memcpy(&bits, &value, sizeof bits);
        return bits;
    }
    """
    void pp_atomic_min_u16(uint16_t* slot, uint16_t value) nogil
    void pp_atomic_min_u32(uint32_t* slot, uint32_t value) nogil
    uint32_t pp_float_bits(float value) nogil


cdef extern from "_workers.h" nogil:
    ctypedef void (*pp_chunk_fn)(void* context, int64_t begin, int64_t end,
                                 int worker) noexcept nogil
    void pp_parallel_for(int64_t items, int threads, pp_chunk_fn fn, void* context)


cdef enum:
    EMPTY_U16 = 0xFFFF
    EMPTY_F32_BITS = 0x7FC00000  # quiet NaN


# One call's arguments, shared by the threads.
cdef struct RegisterJob:
    const char* depth0          # first depth pixel
    Py_ssize_t row_stride       # bytes between depth rows (may be negative)
    Py_ssize_t column_stride    # bytes between depth pixels of a row (may be negative)
    Py_ssize_t depth_width
    bint depth_is_float         # float32 metres (else uint16 units of scale)
    double scale                # metres per uint16 unit
    double inv_scale            # uint16 units per metre
    double inv_fx, inv_fy, dcx, dcy     # depth camera
    double r00, r01, r02, r10, r11, r12, r20, r21, r22, t0, t1, t2  # depth -> colour
    double fx, fy, cx, cy       # colour camera
    Py_ssize_t width, height    # colour image
    const double* x_coef        # per depth column: (u - cx) / fx
    double* scratch_z           # per thread: one depth row in metres
    int32_t* scratch_target     # per thread: one row's colour pixel indices (-1: none)
    uint32_t* scratch_value     # per thread: one row's stored values
    bint fill_holes
    bint atomic                 # more than one thread: compare-and-swap (else a plain min)
    bint out_is_float
    uint16_t* out_u16           # height x width, C order
    uint32_t* out_bits          # the float32 output as integer bits


cdef inline bint offer_value(RegisterJob* job, double z, uint32_t* value) noexcept nogil:
    """The stored integer for colour-frame depth ``z`` metres (False: nothing to store)."""
    cdef double units
    cdef float metres
    if job.out_is_float:
        metres = <float>z
        if not metres <= FLT_MAX:
            return False
        value[0] = pp_float_bits(metres)
        return True
    units = z * job.inv_scale + 0.5  # nearest unit, halves up (depth_image_proc's fromMeters)
    if not (units >= 1.0 and units < <double>EMPTY_U16):
        return False  # rounds to 0 (no data) or does not fit below the empty marker
    value[0] = <uint32_t>units
    return True


cdef inline void store(RegisterJob* job, Py_ssize_t index, uint32_t value) noexcept nogil:
    if job.out_is_float:
        if job.atomic:
            pp_atomic_min_u32(job.out_bits + index, value)
        elif value < job.out_bits[index]:
            job.out_bits[index] = value
    elif job.atomic:
        pp_atomic_min_u16(job.out_u16 + index, <uint16_t>value)
    elif value < job.out_u16[index]:
        job.out_u16[index] = <uint16_t>value


cdef inline void project(RegisterJob* job, double u, double v, double z, double* pu,
                         double* pv, double* pz) noexcept nogil:
    """Depth pixel position (u, v) at depth z metres -> colour frame z and colour pixel
    position (not rounded); ``pz[0] <= 0`` when the point is not in front of the colour
    camera (then pu, pv are not set). The same operations, in the same order, as the row loop
    of :func:`scatter_row` (so a pixel centre gives the same value in both modes)."""
    cdef double xc = (u - job.dcx) * job.inv_fx
    cdef double yc = (v - job.dcy) * job.inv_fy
    cdef double cx_ = (job.r00 * xc + (job.r01 * yc + job.r02)) * z + job.t0
    cdef double cy_ = (job.r10 * xc + (job.r11 * yc + job.r12)) * z + job.t1
    cdef double cz = (job.r20 * xc + (job.r21 * yc + job.r22)) * z + job.t2
    cdef double inverse
    pz[0] = cz
    if cz > 0:
        inverse = 1.0 / cz
        pu[0] = job.fx * cx_ * inverse + job.cx
        pv[0] = job.fy * cy_ * inverse + job.cy


cdef void register_pixel(RegisterJob* job, Py_ssize_t u, Py_ssize_t v,
                                double z) noexcept nogil:
    cdef double pu, pv, pz, cu, cv, cz, lo_u, hi_u, lo_v, hi_v
    cdef double du, dv
    cdef uint32_t value
    cdef Py_ssize_t col, row, first_col, last_col, first_row, last_row
    cdef int corner
    project(job, u, v, z, &pu, &pv, &pz)
    if not pz > 0 or not offer_value(job, pz, &value):
        return
    # the rectangle spanned by the projections of the pixel's four corners, at its depth
    lo_u = lo_v = 1e300
    hi_u = hi_v = -1e300
    for corner in range(4):
        du = -0.5 if corner & 1 == 0 else 0.5
        dv = -0.5 if corner & 2 == 0 else 0.5
        project(job, u + du, v + dv, z, &cu, &cv, &cz)
        if not cz > 0:
            return
        lo_u = cu if cu < lo_u else lo_u
        hi_u = cu if cu > hi_u else hi_u
        lo_v = cv if cv < lo_v else lo_v
        hi_v = cv if cv > hi_v else hi_v
    # nearest pixels of the extremes, floor(p + 0.5), clipped to the image
    lo_u += 0.5
    hi_u += 0.5
    lo_v += 0.5
    hi_v += 0.5
    if hi_u < 0 or lo_u >= job.width or hi_v < 0 or lo_v >= job.height:
        return
    first_col = 0 if lo_u < 0 else <Py_ssize_t>lo_u
    last_col = job.width - 1 if hi_u >= job.width else <Py_ssize_t>hi_u
    first_row = 0 if lo_v < 0 else <Py_ssize_t>lo_v
    last_row = job.height - 1 if hi_v >= job.height else <Py_ssize_t>hi_v
    for row in range(first_row, last_row + 1):
        for col in range(first_col, last_col + 1):
            store(job, row * job.width + col, value)


cdef inline void load_row(RegisterJob* job, const char* row, double* z) noexcept nogil:
    """Depth row -> metres in ``z`` (0 where there is no reading)."""
    cdef Py_ssize_t u, step = job.column_stride
    cdef float metres
    cdef uint16_t raw
    if job.depth_is_float:
        for u in range(job.depth_width):
            metres = (<const float*>(row + u * step))[0]
            z[u] = metres if (metres > 0) & (metres <= FLT_MAX) else 0.0  # NaN, inf, <= 0
    else:
        for u in range(job.depth_width):
            raw = (<const uint16_t*>(row + u * step))[0]
            z[u] = raw * job.scale


cdef inline void scatter_row(RegisterJob* job, Py_ssize_t v, const double* z, int32_t* target,
                             uint32_t* value) noexcept nogil:
    """One depth row, no hole filling: (1) a branch-free loop (GCC vectorizes it) computes each
    pixel's colour pixel (``target``, -1 for none) and stored value, (2) the z-buffer stores."""
    cdef Py_ssize_t u, width = job.depth_width
    cdef double yc = (v - job.dcy) * job.inv_fy
    cdef double b0 = job.r01 * yc + job.r02, b1 = job.r11 * yc + job.r12
    cdef double b2 = job.r21 * yc + job.r22
    cdef double r00 = job.r00, r10 = job.r10, r20 = job.r20, t0 = job.t0, t1 = job.t1
    cdef double t2 = job.t2, fx = job.fx, fy = job.fy, cx = job.cx, cy = job.cy
    cdef double inv_scale = job.inv_scale, columns = job.width, rows = job.height
    cdef double depth, xc, px, py, pz, inverse, pu, pv, units
    cdef const double* x_coef = job.x_coef
    cdef float metres
    cdef float* value_f32 = <float*>value
    cdef bint ok
    cdef int32_t colour_width = <int32_t>job.width
    if job.out_is_float:
        for u in range(width):
            depth = z[u]
            xc = x_coef[u]
            px = (r00 * xc + b0) * depth + t0
            py = (r10 * xc + b1) * depth + t1
            pz = (r20 * xc + b2) * depth + t2
            inverse = 1.0 / pz
            pu = fx * px * inverse + cx + 0.5
            pv = fy * py * inverse + cy + 0.5
            metres = <float>pz
            ok = ((depth > 0) & (pz > 0) & (pu >= 0) & (pu < columns) & (pv >= 0)
                  & (pv < rows) & (metres <= FLT_MAX))
            pu = pu if ok else 0.0
            pv = pv if ok else 0.0
            target[u] = <int32_t>pv * colour_width + <int32_t>pu if ok else -1
            value_f32[u] = metres
        for u in range(width):
            if target[u] >= 0:
                store(job, target[u], pp_float_bits(value_f32[u]))
        return
    for u in range(width):
        depth = z[u]
        xc = x_coef[u]
        px = (r00 * xc + b0) * depth + t0
        py = (r10 * xc + b1) * depth + t1
        pz = (r20 * xc + b2) * depth + t2
        inverse = 1.0 / pz
        pu = fx * px * inverse + cx + 0.5
        pv = fy * py * inverse + cy + 0.5
        units = pz * inv_scale + 0.5  # nearest unit, halves up (depth_image_proc's fromMeters)
        ok = ((depth > 0) & (pz > 0) & (pu >= 0) & (pu < columns) & (pv >= 0) & (pv < rows)
              & (units >= 1.0) & (units < <double>EMPTY_U16))
        pu = pu if ok else 0.0
        pv = pv if ok else 0.0
        units = units if ok else 0.0
        target[u] = <int32_t>pv * colour_width + <int32_t>pu if ok else -1
        value[u] = <uint32_t><int32_t>units
    for u in range(width):
        if target[u] >= 0:
            store(job, target[u], value[u])


cdef void scatter_chunk(void* context, int64_t begin, int64_t end, int worker) noexcept nogil:
    # a private copy: the output stores cannot alias it, so its fields stay in registers
    cdef RegisterJob local = (<RegisterJob*>context)[0]
    cdef RegisterJob* job = &local
    cdef int64_t v
    cdef Py_ssize_t u, width = job.depth_width
    cdef double* z = job.scratch_z + worker * width
    cdef int32_t* target = job.scratch_target + worker * width
    cdef uint32_t* value = job.scratch_value + worker * width
    for v in range(begin, end):
        load_row(job, job.depth0 + v * job.row_stride, z)
        if not job.fill_holes:
            scatter_row(job, v, z, target, value)
            continue
        for u in range(width):
            if z[u] > 0:
                register_pixel(job, u, v, z[u])


cdef void clear_chunk(void* context, int64_t begin, int64_t end, int worker) noexcept nogil:
    cdef RegisterJob* job = <RegisterJob*>context
    cdef int64_t i
    cdef Py_ssize_t first = begin * job.width, last = end * job.width
    if job.out_is_float:
        for i in range(first, last):
            job.out_bits[i] = EMPTY_F32_BITS
    else:
        for i in range(first, last):
            job.out_u16[i] = EMPTY_U16


cdef void finish_chunk(void* context, int64_t begin, int64_t end, int worker) noexcept nogil:
    cdef RegisterJob* job = <RegisterJob*>context
    cdef int64_t i
    cdef uint16_t value
    for i in range(begin * job.width, end * job.width):
        value = job.out_u16[i]
        job.out_u16[i] = 0 if value == EMPTY_U16 else value


cdef inline int resolved_threads(int threads) noexcept nogil:
    return threads if threads > 0 else omp_get_max_threads()


cdef RegisterJob make_job(const double[:, ::1] depth_to_color, double fx, double fy, double cx,
                          double cy, double dfx, double dfy, double dcx, double dcy,
                          double scale, bint fill_holes):
    cdef RegisterJob job
    job.scale = scale
    job.inv_scale = 1.0 / scale
    job.inv_fx = 1.0 / dfx
    job.inv_fy = 1.0 / dfy
    job.dcx = dcx
    job.dcy = dcy
    job.r00, job.r01, job.r02 = depth_to_color[0, 0], depth_to_color[0, 1], depth_to_color[0, 2]
    job.r10, job.r11, job.r12 = depth_to_color[1, 0], depth_to_color[1, 1], depth_to_color[1, 2]
    job.r20, job.r21, job.r22 = depth_to_color[2, 0], depth_to_color[2, 1], depth_to_color[2, 2]
    job.t0, job.t1, job.t2 = depth_to_color[0, 3], depth_to_color[1, 3], depth_to_color[2, 3]
    job.fx, job.fy, job.cx, job.cy = fx, fy, cx, cy
    job.fill_holes = fill_holes
    job.out_u16 = NULL
    job.out_bits = NULL
    return job


cdef int run(RegisterJob* job, Py_ssize_t depth_height, int threads) except -1 nogil:
    cdef int n = resolved_threads(threads)
    cdef Py_ssize_t u, width = job.depth_width
    cdef double* x_coef = <double*>malloc(width * sizeof(double))
    cdef char* scratch = <char*>malloc(n * width * (sizeof(double) + 2 * sizeof(uint32_t)))
    if x_coef == NULL or scratch == NULL:
        free(x_coef)
        free(scratch)
        with gil:
            raise MemoryError(f'no memory for {n} row buffers of {width} pixels')
    for u in range(width):
        x_coef[u] = (u - job.dcx) * job.inv_fx
    job.x_coef = x_coef
    job.scratch_z = <double*>scratch
    job.scratch_target = <int32_t*>(scratch + n * width * sizeof(double))
    job.scratch_value = <uint32_t*>(scratch + n * width * (sizeof(double) + sizeof(int32_t)))
    job.atomic = n > 1
    pp_parallel_for(job.height, n, clear_chunk, job)
    pp_parallel_for(depth_height, n, scatter_chunk, job)
    if not job.out_is_float:
        pp_parallel_for(job.height, n, finish_chunk, job)
    free(x_coef)
    free(scratch)
    return 0


# Python entry points, one per depth type. depth: any strides (bytes, may be negative);
# depth_to_color: 4x4 rigid, metres; colour intrinsics fx, fy, cx, cy and depth intrinsics
# dfx, dfy, dcx, dcy in pixels; scale: metres per uint16 unit (input and uint16 output).

def register_u16(const uint16_t[:, :] depth, const double[:, ::1] depth_to_color,
                 double dfx, double dfy, double dcx, double dcy, double fx, double fy,
                 double cx, double cy, double scale, bint fill_holes, uint16_t[:, ::1] out,
                 int threads):
    """uint16 depth (units of ``scale``) -> ``out`` (colour size, same units, 0 = no data)."""
    cdef RegisterJob job = make_job(depth_to_color, fx, fy, cx, cy, dfx, dfy, dcx, dcy, scale,
                                    fill_holes)
    job.depth0 = <const char*>&depth[0, 0]
    job.row_stride = depth.strides[0]
    job.column_stride = depth.strides[1]
    job.depth_width = depth.shape[1]
    job.depth_is_float = False
    job.width = out.shape[1]
    job.height = out.shape[0]
    job.out_is_float = False
    job.out_u16 = &out[0, 0]
    with nogil:
        run(&job, depth.shape[0], threads)


def register_f32(const float[:, :] depth, const double[:, ::1] depth_to_color,
                 double dfx, double dfy, double dcx, double dcy, double fx, double fy,
                 double cx, double cy, bint fill_holes, float[:, ::1] out, int threads):
    """float32 depth (metres) -> ``out`` (colour size, metres, NaN = no data)."""
    cdef RegisterJob job = make_job(depth_to_color, fx, fy, cx, cy, dfx, dfy, dcx, dcy, 1.0,
                                    fill_holes)
    job.depth0 = <const char*>&depth[0, 0]
    job.row_stride = depth.strides[0]
    job.column_stride = depth.strides[1]
    job.depth_width = depth.shape[1]
    job.depth_is_float = True
    job.width = out.shape[1]
    job.height = out.shape[0]
    job.out_is_float = True
    job.out_bits = <uint32_t*>&out[0, 0]
    with nogil:
        run(&job, depth.shape[0], threads)


def max_threads():
    """Threads a call with ``threads=0`` uses (OpenMP default, e.g. from OMP_NUM_THREADS)."""
    return omp_get_max_threads()
