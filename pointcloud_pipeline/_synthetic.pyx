# cython: language_level=3
"""Ray-casting kernel of the synthetic depth camera (see synthetic.py for the API).

One ray per pixel from a pinhole camera into a room (the inside of an axis-aligned box with a
floor and walls, open at the top) holding axis-aligned boxes. Writes z-depth in millimetres and,
when asked, a shaded RGB image. World frame z up, metres.
"""
from cython.parallel cimport prange
from libc.math cimport fabs, floor, sqrt

# surface ids (index into surface_colors): 0 floor, 1..4 walls -x,+x,-y,+y, 5+i box i
cdef enum:
    SKY = -1


cdef inline unsigned char shade(double base, double light) noexcept nogil:
    cdef double value = base * light
    if value > 255.0:
        value = 255.0
    return <unsigned char>(value + 0.5)


def render(const double[:, ::1] world_from_optical, double fx, double fy, double cx, double cy,
           const double[::1] room, const double[:, ::1] boxes, const int[:, ::1] box_pixels,
           const unsigned char[:, ::1] surface_colors, double max_depth,
           unsigned short[:, ::1] depth_mm, unsigned char[:, :, ::1] rgb, bint with_color,
           int threads):
    """Render into ``depth_mm`` (H x W uint16, 0 = no return) and, if ``with_color``, into
    ``rgb`` (H x W x 3). ``room``: xmin, ymin, zmin, xmax, ymax, zmax; ``boxes``: N x 6 corners;
    ``box_pixels``: N x 4 (first row, last row, first column, last column) of the image area
    where box i can appear (empty when first > last); ``surface_colors``: (5 + N) x 3. The
    caller validates shapes."""
    cdef Py_ssize_t height = depth_mm.shape[0], width = depth_mm.shape[1]
    cdef Py_ssize_t box_count = boxes.shape[0]
    cdef Py_ssize_t row, col, b
    cdef int axis, surface, hit_axis
    cdef double ox = world_from_optical[0, 3], oy = world_from_optical[1, 3]
    cdef double oz = world_from_optical[2, 3]
    cdef double r00 = world_from_optical[0, 0], r01 = world_from_optical[0, 1]
    cdef double r02 = world_from_optical[0, 2], r10 = world_from_optical[1, 0]
    cdef double r11 = world_from_optical[1, 1], r12 = world_from_optical[1, 2]
    cdef double r20 = world_from_optical[2, 0], r21 = world_from_optical[2, 1]
    cdef double r22 = world_from_optical[2, 2]
    cdef double u, v, dx, dy, dz, ix, iy, iz, t, best, t_near, t_far, t1, t2, hx, hy
    cdef double light, norm, checker, depth
    cdef double inv_fx = 1.0 / fx, inv_fy = 1.0 / fy

    for row in prange(height, nogil=True, schedule='static', num_threads=threads):
        for col in range(width):
            u = (col - cx) * inv_fx
            v = (row - cy) * inv_fy
            # ray direction in the world; its optical z component is 1, so t is the z-depth
            dx = r00 * u + r01 * v + r02
            dy = r10 * u + r11 * v + r12
            dz = r20 * u + r21 * v + r22
            ix = 1.0 / dx
            iy = 1.0 / dy
            iz = 1.0 / dz
            # leave the room through a wall, the floor, or the open top
            best = ((room[3] if dx > 0 else room[0]) - ox) * ix
            surface = 2 if dx > 0 else 1
            hit_axis = 0
            t = ((room[4] if dy > 0 else room[1]) - oy) * iy
            if t < best:
                best = t
                surface = 4 if dy > 0 else 3
                hit_axis = 1
            t = ((room[5] if dz > 0 else room[2]) - oz) * iz
            if t < best:
                best = t
                surface = SKY if dz > 0 else 0
                hit_axis = 2
            for b in range(box_count):
                if (row < box_pixels[b, 0] or row > box_pixels[b, 1] or
                        col < box_pixels[b, 2] or col > box_pixels[b, 3]):
                    continue
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
                if t_near <= t_far and t_near > 0 and t_near < best:
                    best = t_near
                    surface = 5 + b
                    hit_axis = axis
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
            # headlight Lambert shading: cosine between the ray and the face normal
            norm = sqrt(dx * dx + dy * dy + dz * dz)
            if hit_axis == 0:
                light = fabs(dx) / norm
            elif hit_axis == 1:
                light = fabs(dy) / norm
            else:
                light = fabs(dz) / norm
            light = 0.35 + 0.65 * light
            if surface == 0:  # 1 m checkerboard floor tiles
                hx = ox + best * dx
                hy = oy + best * dy
                checker = floor(hx) + floor(hy)
                if checker - 2.0 * floor(checker * 0.5) > 0.5:
                    light = light * 0.7
            rgb[row, col, 0] = shade(surface_colors[surface, 0], light)
            rgb[row, col, 1] = shade(surface_colors[surface, 1], light)
            rgb[row, col, 2] = shade(surface_colors[surface, 2], light)
