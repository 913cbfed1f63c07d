# cython: language_level=3
"""Ray-casting kernel of the synthetic depth camera (see synthetic.py for the API).

One ray per pixel from a pinhole camera into a room (the inside of an axis-aligned box with a
floor and walls, open at the top) holding axis-aligned boxes. Writes z-depth in millimetres and,
when asked, a shaded RGB image. World frame z up, metres.

Per image row: (1) where every ray leaves the room, (2) each box whose image rectangle covers the
row is tested only over its columns, (3) depth and colour are written. Each row is independent.
"""
from cython.parallel cimport prange
from libc.math cimport fabs, floor, sqrt


# surface ids (index into surface_colors): 0 floor, 1..4 walls -x,+x,-y,+y, 5+i box i
cdef enum:
    SKY = -1


cdef inline unsigned char shade(unsigned char base, int light) noexcept nogil:
    # light: brightness in 1/256 units, at most 256
    return <unsigned char>((base * light + 128) >> 8)


def render(const double[:, ::1] world_from_optical, double fx, double fy, double cx, double cy,
           const double[::1] room, const double[:, ::1] boxes, const int[:, ::1] box_pixels,
           const unsigned char[:, ::1] surface_colors, double max_depth,
           unsigned short[:, ::1] depth_mm, unsigned char[:, :, ::1] rgb, bint with_color,
           float[:, ::1] hit_depth, signed char[:, :, ::1] hit_surface, int threads):
    """Render into ``depth_mm`` (H x W uint16, 0 = no return) and, if ``with_color``, into
    ``rgb`` (H x W x 3). ``room``: xmin, ymin, zmin, xmax, ymax, zmax; ``boxes``: N x 6 corners;
    ``box_pixels``: N x 4 (first row, last row, first column, last column) of the image area
    where box i can appear (empty when first > last); ``surface_colors``: (5 + N) x 3;
    ``hit_depth`` (H x W) and ``hit_surface`` (H x W x 2: surface id, face axis) are scratch.
    The caller validates shapes; N <= 120."""
    cdef Py_ssize_t height = depth_mm.shape[0], width = depth_mm.shape[1]
    cdef Py_ssize_t box_count = boxes.shape[0]
    cdef Py_ssize_t row, col, b, first_col, last_col
    cdef int axis, surface, brightness
    cdef double ox = world_from_optical[0, 3], oy = world_from_optical[1, 3]
    cdef double oz = world_from_optical[2, 3]
    cdef double r00 = world_from_optical[0, 0], r01 = world_from_optical[0, 1]
    cdef double r02 = world_from_optical[0, 2], r10 = world_from_optical[1, 0]
    cdef double r11 = world_from_optical[1, 1], r12 = world_from_optical[1, 2]
    cdef double r20 = world_from_optical[2, 0], r21 = world_from_optical[2, 1]
    cdef double r22 = world_from_optical[2, 2]
    # ray direction (optical z component 1, so the ray parameter t is the z-depth):
    # d = row_base + col * col_step
    cdef double step_x = r00 / fx, step_y = r10 / fx, step_z = r20 / fx
    cdef double v, base_x, base_y, base_z, dx, dy, dz, ix, iy, iz
    cdef double t, best, t_near, t_far, t1, t2, hx, hy, light, depth

    with nogil:
        for row in prange(height, schedule='dynamic', chunksize=4, num_threads=threads):
            v = (row - cy) / fy
            base_x = r01 * v + r02 - cx * step_x
            base_y = r11 * v + r12 - cx * step_y
            base_z = r21 * v + r22 - cx * step_z
            # (1) leave the room through a wall, the floor or the open top
            for col in range(width):
                dx = base_x + col * step_x
                dy = base_y + col * step_y
                dz = base_z + col * step_z
                best = ((room[3] if dx > 0 else room[0]) - ox) / dx
                surface = 2 if dx > 0 else 1
                axis = 0
                t = ((room[4] if dy > 0 else room[1]) - oy) / dy
                if t < best:
                    best = t
                    surface = 4 if dy > 0 else 3
                    axis = 1
                t = ((room[5] if dz > 0 else room[2]) - oz) / dz
                if t < best:
                    best = t
                    surface = SKY if dz > 0 else 0
                    axis = 2
                hit_depth[row, col] = <float>best
                hit_surface[row, col, 0] = <signed char>surface
                hit_surface[row, col, 1] = <signed char>axis
            # (2) boxes in front of that, only over the columns each box can cover
            for b in range(box_count):
                if row < box_pixels[b, 0] or row > box_pixels[b, 1]:
                    continue
                first_col = box_pixels[b, 2]
                last_col = box_pixels[b, 3]
                for col in range(first_col, last_col + 1):
                    dx = base_x + col * step_x
                    dy = base_y + col * step_y
                    dz = base_z + col * step_z
                    ix = 1.0 / dx
                    iy = 1.0 / dy
                    iz = 1.0 / dz
                    t1 = (boxes[b, 0] - ox) * ix
                    t2 = (boxes[b, 3] - ox) * ix
                    t_near = t1 if t1 < t2 else t2
                    t_far = t2 if t1 < t2 else t1
                    axis = 0
                    t1 = (boxes[b, 1] - oy) * iy
                    t2 = (boxes[b, 4] - oy) * iy
                    if t1 > t2:
                        t1, t2 = t2, t1
                    if t1 > t_near:
                        t_near = t1
                        axis = 1
                    if t2 < t_far:
                        t_far = t2
                    t1 = (boxes[b, 2] - oz) * iz
                    t2 = (boxes[b, 5] - oz) * iz
                    if t1 > t2:
                        t1, t2 = t2, t1
                    if t1 > t_near:
                        t_near = t1
                        axis = 2
                    if t2 < t_far:
                        t_far = t2
                    if t_near <= t_far and t_near > 0 and t_near < hit_depth[row, col]:
                        hit_depth[row, col] = <float>t_near
                        hit_surface[row, col, 0] = <signed char>(5 + b)
                        hit_surface[row, col, 1] = <signed char>axis
            # (3) depth in millimetres and the shaded colour
            for col in range(width):
                best = hit_depth[row, col]
                surface = hit_surface[row, col, 0]
                depth = best * 1000.0
                if surface == SKY or best > max_depth or depth >= 65535.0:
                    depth_mm[row, col] = 0
                else:
                    depth_mm[row, col] = <unsigned short>(depth + 0.5)
                if not with_color:
                    continue
                if surface == SKY:
                    rgb[row, col, 0] = 200
                    rgb[row, col, 1] = 215
                    rgb[row, col, 2] = 235
                    continue
                dx = base_x + col * step_x
                dy = base_y + col * step_y
                dz = base_z + col * step_z
                # headlight Lambert shading: cosine between the ray and the face normal
                axis = hit_surface[row, col, 1]
                light = fabs(dx if axis == 0 else (dy if axis == 1 else dz))
                brightness = <int>(90.0 + 166.0 * light / sqrt(dx * dx + dy * dy + dz * dz))
                if surface == 0:  # 1 m checkerboard floor tiles
                    hx = ox + best * dx
                    hy = oy + best * dy
                    if (<long>floor(hx) + <long>floor(hy)) & 1:
                        brightness = (brightness * 179) >> 8
                rgb[row, col, 0] = shade(surface_colors[surface, 0], brightness)
                rgb[row, col, 1] = shade(surface_colors[surface, 1], brightness)
                rgb[row, col, 2] = shade(surface_colors[surface, 2], brightness)
