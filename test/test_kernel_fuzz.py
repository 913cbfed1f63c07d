"""Property-based fuzz of the kernels' public APIs: every call raises ValueError (for arguments
that are wrong) or returns the numpy reference's result (test/reference_*.py).

Inputs: random shapes (1 pixel or point up), strides from slicing (negative, column steps,
padded rows), odd byte offsets, byte-swapped dtypes, decimations beyond the image, ranges,
colour images of other sizes, caller buffers (aligned, misaligned, too small), odd point steps
and unaligned fields, NaN / inf values, ties, tiny and multi-block grids.

Example counts: small by default (deterministic, part of ``make test``, the whole file in a
few seconds); ``KERNEL_FUZZ_PROFILE=sanitize`` (set by test/sanitize/run_sanitized.py, i.e.
``make sanitize``) runs many more random examples against the ASan/UBSan build.
"""
import math
import os

import cv2
import numpy as np
import pytest

from optional import require

require('hypothesis')

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from pointcloud_pipeline import raster, terrain  # noqa: E402
from pointcloud_pipeline.bev import BevGrid, bev_image, bev_image_from_buffer  # noqa: E402
from pointcloud_pipeline.camera import CameraIntrinsics  # noqa: E402
from pointcloud_pipeline.depth import depth_to_cloud, max_cloud_bytes  # noqa: E402
from pointcloud_pipeline.layouts import ENCODINGS  # noqa: E402
from pointcloud_pipeline.normals import estimate_normals  # noqa: E402
from pointcloud_pipeline.rays import RayTable  # noqa: E402
from pointcloud_pipeline.raster import RasterGrid, RasterSettings  # noqa: E402
import reference_bev  # noqa: E402
import reference_depth  # noqa: E402
import reference_normals  # noqa: E402
import reference_raster  # noqa: E402
import reference_terrain  # noqa: E402

# no shrinking: a failure is reported as generated (shrinking can take minutes), and under the
# sanitiser a report ends the process anyway
_COMMON = dict(deadline=None, database=None, print_blob=True,
               phases=(Phase.explicit, Phase.generate),
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                      HealthCheck.filter_too_much])
settings.register_profile('kernel-fuzz', max_examples=25, derandomize=True, **_COMMON)
settings.register_profile('sanitize', max_examples=1000, **_COMMON)
PROFILE = os.environ.get('KERNEL_FUZZ_PROFILE', 'kernel-fuzz')
FUZZ = settings(settings.get_profile(PROFILE))

COLOR_ENCODINGS = ('rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8')
RGB_CHANNELS = {'rgb8': [0, 1, 2], 'bgr8': [2, 1, 0], 'rgba8': [0, 1, 2], 'bgra8': [2, 1, 0],
                'mono8': [0, 0, 0]}


def seeded_rng(data):
    return np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1), label='seed'))


def strided_view(data, rng, shape, make):
    """An array of ``shape`` cut from a larger one (``make(rng, big_shape)``) with random
    steps (negative too) and offsets, sometimes made Fortran-ordered: its values only."""
    steps = [data.draw(st.sampled_from([1, 1, 2, 3, -1, -2]), label='step') for _ in shape]
    big = tuple(abs(s) * n + 3 for s, n in zip(steps, shape))
    base = make(rng, big + shape[len(steps):])
    index = []
    for step, n, size in zip(steps, shape, big):
        if n == 0:
            index.append(slice(0, 0))
            continue
        start = data.draw(st.integers(0, size - abs(step) * (n - 1) - 1), label='offset')
        index.append(slice(start, start + step * n, step) if step > 0 else
                     slice(size - 1 - start, size - 1 - start + step * n if
                           size - 1 - start + step * n >= 0 else None, step))
    view = base[tuple(index)]
    assert view.shape[:len(shape)] == shape
    if data.draw(st.booleans(), label='fortran'):
        view = np.asfortranarray(view)
    return view


def out_buffer(data, nbytes):
    """(out, problem): a caller buffer for ``nbytes`` and whether it must be rejected."""
    kind = data.draw(st.sampled_from(['none', 'numpy', 'bytearray', 'larger', 'offset4',
                                      'misaligned', 'small']), label='out')
    if kind == 'none':
        return None, False
    if kind == 'numpy':
        return np.empty(nbytes, np.uint8), False
    if kind == 'bytearray':
        return bytearray(nbytes), False
    if kind == 'larger':
        return np.full(nbytes + 37, 0xAB, np.uint8), False
    backing = np.zeros(nbytes + 16, np.uint8)
    start = -backing.ctypes.data % 16
    if kind == 'offset4':
        return backing[start + 4:start + 4 + nbytes], False
    if kind == 'misaligned':
        shift = data.draw(st.integers(1, 3), label='shift')
        return memoryview(backing)[start + shift:start + shift + nbytes], nbytes > 0
    return bytearray(max(0, nbytes - data.draw(st.integers(1, 16), label='short'))), nbytes > 0


# --- depth image -> cloud ---------------------------------------------------------------------

def random_depth(rng, shape, dtype):
    if dtype == np.uint16:
        depth = rng.integers(0, 6000, shape).astype(np.uint16)
        depth[rng.random(shape) < 0.2] = 0
        depth[rng.random(shape) < 0.02] = 65535
        return depth
    depth = rng.uniform(-1.0, 8.0, shape).astype(np.float32)
    special = np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 1e-40, 3e38], np.float32)
    mask = rng.random(shape) < 0.2
    depth[mask] = rng.choice(special, mask.sum())
    return depth


def reference_rgb(color, encoding):
    if color.ndim == 2:
        color = color[:, :, np.newaxis]
    return color[:, :, RGB_CHANNELS[encoding]]


@FUZZ
@given(st.data())
def test_depth_to_cloud_equals_the_reference(data):
    rng = seeded_rng(data)
    height, width = data.draw(st.integers(1, 12), label='h'), data.draw(st.integers(1, 12))
    dtype = data.draw(st.sampled_from([np.uint16, np.float32]), label='dtype')
    depth = strided_view(data, rng, (height, width), lambda r, s: random_depth(r, s, dtype))
    layout = data.draw(st.sampled_from(['as is', 'swapped', 'unaligned']), label='layout')
    if layout == 'swapped':
        depth = depth.astype(depth.dtype.newbyteorder('>'))
    elif layout == 'unaligned':
        raw = np.zeros(depth.nbytes + 1, np.uint8)
        depth = np.ndarray(depth.shape, depth.dtype, raw[1:])
        depth[...] = random_depth(rng, (height, width), dtype)
    fx, fy = (data.draw(st.floats(0.5, 2000.0), label='f') for _ in range(2))
    cx, cy = (data.draw(st.floats(-50.0, 50.0), label='c') for _ in range(2))
    intrinsics = CameraIntrinsics(fx, fy, cx, cy)
    scale = data.draw(st.sampled_from([0.001, 0.0002, 1.0, 1e-30]), label='scale')
    min_range = data.draw(st.sampled_from([0.0, 0.5, 2.0, 10.0]), label='min')
    max_range = data.draw(st.sampled_from([math.inf, 0.0, 1.0, 4.0, 100.0]), label='max')
    invalid_depth = data.draw(st.sampled_from([0.0, 0.0, 1.5]), label='invalid_depth')
    dx = data.draw(st.integers(1, width + 3), label='dx')
    dy = data.draw(st.integers(1, height + 3), label='dy')
    organized = data.draw(st.booleans(), label='organized')
    encoding = data.draw(st.sampled_from(COLOR_ENCODINGS), label='encoding')
    kwargs = dict(depth_scale=scale, min_range=min_range, max_range=max_range,
                  invalid_depth=invalid_depth, decimation_x=dx, decimation_y=dy,
                  organized=organized, threads=data.draw(st.sampled_from([0, 1, 2, 5])))
    color = rgb = None
    wrong = min_range > max_range
    if data.draw(st.booleans(), label='with colour'):
        channels = ENCODINGS[encoding].channels
        resize = data.draw(st.booleans(), label='resize')
        ch, cw = ((data.draw(st.integers(1, 16)), data.draw(st.integers(1, 16))) if resize
                  else (height, width))
        shape = (ch, cw) if channels == 1 and data.draw(st.booleans()) else (ch, cw, channels)
        color = strided_view(data, rng, shape,
                             lambda r, s: r.integers(0, 256, s).astype(np.uint8))
        different = (ch, cw) != (height, width)
        kwargs.update(color=color, color_encoding=encoding, resize_color=resize)
        if different and resize:
            shrink = ch >= height and cw >= width
            color = cv2.resize(np.ascontiguousarray(color), (width, height),
                               interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        rgb = reference_rgb(color, encoding)
    rows, columns = -(-height // dy), -(-width // dx)
    expected = None
    if not wrong:
        with np.errstate(over='ignore'):  # 3e38 m float depths: inf x and y in both
            expected = reference_depth.reference_points(
                np.asarray(depth, depth.dtype.newbyteorder('=')), intrinsics, scale, min_range,
                max_range, invalid_depth, dx, dy, organized, rgb)
    nbytes = expected.size * 4 if expected is not None else max_cloud_bytes(depth.shape, dx, dy)
    out, bad_out = out_buffer(data, nbytes)
    if wrong or bad_out:
        with pytest.raises(ValueError):
            depth_to_cloud(depth, intrinsics, out=out, **kwargs)
        return
    cloud = depth_to_cloud(depth, intrinsics, out=out, **kwargs)
    if organized:
        assert (cloud.height, cloud.width) == (rows, columns)
    assert cloud.data.nbytes == expected.size * 4 == cloud.height * cloud.row_step
    if out is not None and cloud.data.nbytes:
        assert np.shares_memory(cloud.data, np.frombuffer(out, np.uint8))
    points = cloud.data.view(np.float32).reshape(expected.shape)
    np.testing.assert_array_equal(np.isnan(points[..., :3]), np.isnan(expected[..., :3]))
    np.testing.assert_allclose(points[..., :3], expected[..., :3], rtol=1e-6, atol=0)
    np.testing.assert_array_equal(points[..., 3].view(np.uint32),
                                  expected[..., 3].view(np.uint32))
    assert cloud.valid_points == int((~np.isnan(expected[..., 2])).sum())
    assert cloud.is_dense == (not np.isnan(expected[..., 2]).any())


@FUZZ
@given(st.data())
def test_depth_to_cloud_with_intensity_and_rays_equals_the_reference(data):
    """The extended kernel paths (XYZI, XYZRGBI, ray tables) on strided inputs, every option."""
    rng = seeded_rng(data)
    height, width = data.draw(st.integers(1, 12), label='h'), data.draw(st.integers(1, 12))
    dtype = data.draw(st.sampled_from([np.uint16, np.float32]), label='dtype')
    depth = strided_view(data, rng, (height, width), lambda r, s: random_depth(r, s, dtype))
    dx = data.draw(st.integers(1, width + 3), label='dx')
    dy = data.draw(st.integers(1, height + 3), label='dy')
    rows, columns = -(-height // dy), -(-width // dx)
    intensity = table = rgb = None
    if data.draw(st.booleans(), label='with intensity'):
        kind = data.draw(st.sampled_from([np.uint8, np.uint16, np.float32]), label='kind')
        intensity = strided_view(data, rng, (height, width), lambda r, s: (
            r.uniform(-5, 70000, s) if kind == np.float32 else r.integers(0, 65536, s)
        ).astype(kind))
    if data.draw(st.booleans(), label='with rays') or intensity is None:
        rays = rng.uniform(-3, 3, (rows, columns, 3)).astype(np.float32)
        rays[..., 2] = rng.uniform(1e-3, 2, (rows, columns))
        table = RayTable(rays, width, height, dx, dy, data.draw(st.sampled_from(['z', 'radial'])))
    min_range = data.draw(st.sampled_from([0.0, 0.5, 2.0]), label='min')
    max_range = data.draw(st.sampled_from([r for r in (math.inf, 1.0, 4.0) if r >= min_range]),
                          label='max')  # min > max is refused: test_depth.py covers it
    kwargs = dict(depth_scale=data.draw(st.sampled_from([0.001, 1.0]), label='scale'),
                  min_range=min_range, max_range=max_range,
                  invalid_depth=data.draw(st.sampled_from([0.0, 1.5]), label='invalid_depth'),
                  decimation_x=dx, decimation_y=dy,
                  organized=data.draw(st.booleans(), label='organized'))
    if data.draw(st.booleans(), label='with colour'):
        color = strided_view(data, rng, (height, width, 3),
                             lambda r, s: r.integers(0, 256, s).astype(np.uint8))
        kwargs.update(color=color)
        rgb = color
    intrinsics = CameraIntrinsics(data.draw(st.floats(0.5, 2000.0), label='f'), 300.0,
                                  data.draw(st.floats(-50.0, 50.0), label='c'), 2.0)
    with np.errstate(over='ignore', invalid='ignore'):  # 3e38 m depths: inf in both
        expected = reference_depth.reference_points(
            depth, intrinsics, kwargs['depth_scale'], kwargs['min_range'], kwargs['max_range'],
            kwargs['invalid_depth'], dx, dy, kwargs['organized'], rgb, intensity,
            None if table is None else table.rays)
    out, bad_out = out_buffer(data, expected.size * 4)
    threads = data.draw(st.sampled_from([0, 1, 2, 5]), label='threads')
    if bad_out:
        with pytest.raises(ValueError):
            depth_to_cloud(depth, intrinsics, intensity=intensity, rays=table, out=out,
                           threads=threads, **kwargs)
        return
    cloud = depth_to_cloud(depth, intrinsics, intensity=intensity, rays=table, out=out,
                           threads=threads, **kwargs)
    assert cloud.data.nbytes == expected.size * 4 == cloud.height * cloud.row_step
    assert cloud.point_step == expected.shape[-1] * 4
    points = cloud.data.view(np.float32).reshape(expected.shape)
    np.testing.assert_array_equal(np.isnan(points[..., :3]), np.isnan(expected[..., :3]))
    np.testing.assert_allclose(points[..., :3], expected[..., :3], rtol=1e-6, atol=0)
    np.testing.assert_array_equal(points[..., 3:].view(np.uint32),
                                  expected[..., 3:].view(np.uint32))
    assert cloud.valid_points == int((~np.isnan(expected[..., 2])).sum())


# --- ROS image views (no DDS: the message's raw fields) -------------------------------------

def reference_pixels(raw, width, height, step, encoding, big_endian):
    """The pixels of a raw image, row by row from its bytes, or None if inconsistent."""
    if encoding not in ENCODINGS or width <= 0 or height <= 0:
        return None
    layout = ENCODINGS[encoding]
    row_bytes = width * layout.dtype.itemsize * layout.channels
    if step < row_bytes or len(raw) != step * height:
        return None
    dtype = layout.dtype.newbyteorder('>' if big_endian else '<')
    rows = [np.frombuffer(raw[r * step:r * step + row_bytes], dtype) for r in range(height)]
    pixels = np.stack(rows).astype(layout.dtype)
    return pixels.reshape(height, width, layout.channels) if layout.channels > 1 else pixels


@FUZZ
@given(st.data())
def test_image_views_equal_the_bytes_and_feed_the_depth_kernel(data):
    from pointcloud_pipeline.ros.camera_messages import image_array, image_to_array
    from sensor_msgs.msg import Image
    rng = seeded_rng(data)
    encoding = data.draw(st.sampled_from(tuple(ENCODINGS) + ('8UC3', 'yuv422', '')),
                         label='encoding')
    pixel_bytes = (ENCODINGS[encoding].dtype.itemsize * ENCODINGS[encoding].channels
                   if encoding in ENCODINGS else 3)
    width = data.draw(st.integers(-1, 9), label='width')
    height = data.draw(st.integers(-1, 9), label='height')
    step = max(0, width) * pixel_bytes + data.draw(st.integers(-2, 7), label='padding')
    size = max(0, step * height) + data.draw(st.sampled_from([0, 0, 0, -1, 1, 5]))
    big_endian = data.draw(st.booleans(), label='big endian')
    raw = rng.integers(0, 256, max(0, size)).astype(np.uint8).tobytes()
    holder = data.draw(st.sampled_from(['bytes', 'bytearray', 'odd memoryview', 'numpy']))
    if holder == 'bytearray':
        buffer = bytearray(raw)
    elif holder == 'odd memoryview':  # starts at an odd address: unaligned uint16 / float32
        buffer = memoryview(bytearray(b'\0' + raw))[1:]
    elif holder == 'numpy':
        buffer = np.frombuffer(raw, np.uint8)
    else:
        buffer = raw
    expected = reference_pixels(raw, width, height, step, encoding, big_endian)
    if expected is None:
        with pytest.raises(ValueError):
            image_array(buffer, width, height, step, encoding, big_endian)
        return
    pixels = image_array(buffer, width, height, step, encoding, big_endian)
    assert pixels.dtype == ENCODINGS[encoding].dtype and pixels.dtype.isnative
    np.testing.assert_array_equal(pixels, expected)
    msg = Image(height=height, width=width, step=step, encoding=encoding,
                is_bigendian=int(big_endian))
    msg.data = raw
    np.testing.assert_array_equal(image_to_array(msg), expected)
    if encoding in ('16UC1', 'mono16', '32FC1'):
        intrinsics = CameraIntrinsics(100.0, 100.0, width / 2, height / 2)
        for organized in (True, False):
            cloud = depth_to_cloud(pixels, intrinsics, organized=organized)
            reference = reference_depth.reference_points(expected, intrinsics,
                                                         organized=organized)
            points = cloud.data.view(np.float32).reshape(reference.shape)
            np.testing.assert_array_equal(np.isnan(points), np.isnan(reference))
            np.testing.assert_allclose(points, reference, rtol=1e-6, atol=0)


# --- BEV --------------------------------------------------------------------------------------

def bev_grid(data):
    resolution = data.draw(st.sampled_from([0.25, 0.5, 1.0, 0.1]), label='resolution')
    cells_x, cells_y = data.draw(st.integers(1, 24), label='rows'), data.draw(st.integers(1, 24))
    x0 = data.draw(st.integers(-8, 4), label='x0') * resolution
    y0 = data.draw(st.integers(-8, 4), label='y0') * resolution
    return BevGrid(x_range=(x0, x0 + cells_x * resolution),
                   y_range=(y0, y0 + cells_y * resolution),
                   z_range=data.draw(st.sampled_from([(-1.0, 1.0), (-2.73, 1.27), (0.0, 0.5)])),
                   resolution=resolution,
                   intensity_range=data.draw(st.sampled_from([(0.0, 1.0), (0.0, 255.0)])))


def bev_points(rng, grid, count):
    """Points around the grid (some outside), on cell borders, NaN, inf, ties."""
    (x0, x1), (y0, y1), (z0, z1) = grid.x_range, grid.y_range, grid.z_range
    points = np.column_stack([rng.uniform(x0 - 1, x1 + 1, count), rng.uniform(y0 - 1, y1 + 1,
                                                                              count),
                              rng.uniform(z0 - 0.5, z1 + 0.5, count),
                              rng.uniform(-10, 300, count)]).astype(np.float32)
    if count:
        border = rng.random(count) < 0.15
        points[border, 0] = np.float32(x0 + grid.resolution * rng.integers(0, grid.rows + 1,
                                                                           border.sum()))
        special = rng.random((count, 4)) < 0.03
        points[special] = rng.choice(np.array([np.nan, np.inf, -np.inf, 0.0, -0.0],
                                              np.float32), special.sum())
        ties = rng.random(count) < 0.1
        points[ties, 2] = np.float32(z0 + 0.25 * (z1 - z0))
    return points


def rigid_transform(rng):
    angle = rng.uniform(-math.pi, math.pi)
    c, s = math.cos(angle), math.sin(angle)
    matrix = np.eye(4)
    matrix[:2, :2] = [[c, -s], [s, c]]
    matrix[:3, 3] = rng.uniform(-1, 1, 3)
    return matrix


@FUZZ
@given(st.data())
def test_bev_image_equals_the_reference(data):
    rng = seeded_rng(data)
    grid = bev_grid(data)
    count = data.draw(st.integers(0, 300), label='points')
    columns = data.draw(st.sampled_from([3, 4]), label='columns')
    points = strided_view(data, rng, (count,), lambda r, s: bev_points(r, grid, s[0]))
    points = np.ascontiguousarray(points[:, :columns]) if data.draw(st.booleans()) \
        else points[:, :columns]
    transform = rigid_transform(rng) if data.draw(st.booleans(), label='transform') else None
    dtype = np.dtype(data.draw(st.sampled_from([np.uint8, np.float32]), label='dtype'))
    nbytes = grid.rows * grid.cols * 3 * dtype.itemsize
    out, bad_out = out_buffer(data, nbytes)
    if isinstance(out, np.ndarray):  # an array must have the image's dtype and shape
        out = out[:nbytes].view(dtype).reshape(grid.shape)
    threads = data.draw(st.sampled_from([0, 1, 3]), label='threads')
    if bad_out and isinstance(out, memoryview) and dtype.itemsize == 1:
        bad_out = False  # a uint8 image needs no alignment
    if bad_out:
        with pytest.raises(ValueError):
            bev_image(points, grid, transform=transform, out=out, dtype=dtype, threads=threads)
        return
    image = bev_image(points, grid, transform=transform, out=out, dtype=dtype, threads=threads)
    with np.errstate(invalid='ignore'):  # NaN and inf coordinates
        expected = reference_bev.reference_bev_points(points, grid, transform, dtype)
    assert image.shape == grid.shape and image.dtype == dtype
    np.testing.assert_array_equal(image, expected)


@FUZZ
@given(st.data())
def test_bev_from_buffer_with_any_point_step_and_offsets_equals_the_reference(data):
    rng = seeded_rng(data)
    grid = bev_grid(data)
    count = data.draw(st.integers(0, 200), label='points')
    point_step = data.draw(st.integers(4, 40), label='point_step')
    offsets = [data.draw(st.integers(0, point_step - 4), label=name)
               for name in ('x', 'y', 'z', 'intensity')]
    use_intensity = data.draw(st.booleans(), label='intensity')
    values = bev_points(rng, grid, count)
    raw = rng.integers(0, 256, point_step * count + 3).astype(np.uint8)

    def field(offset):  # the float32 field at `offset` of every point (unaligned: numpy copes)
        if not count:
            return np.empty(0, '<f4')
        return np.ndarray((count,), '<f4', raw, offset, (point_step,))

    for column, offset in enumerate(offsets if use_intensity else offsets[:3]):
        field(offset)[...] = values[:, column]
    read = [field(offset).copy() for offset in offsets]  # overlapping fields: the last write
    start = data.draw(st.integers(0, 3), label='buffer start')
    extra = data.draw(st.sampled_from([0, 0, -1, 1]), label='extra bytes')
    buffer = raw[:max(0, point_step * count + extra)]
    if start:  # the same bytes at an odd address: every field unaligned
        moved = np.empty(buffer.size + start, np.uint8)[start:]
        moved[...] = buffer
        buffer = moved
    holder = data.draw(st.sampled_from(['numpy', 'bytes', 'memoryview']), label='holder')
    buffer = {'numpy': buffer, 'bytes': buffer.tobytes(), 'memoryview': memoryview(buffer)}[
        holder]
    num_points = count
    dtype = np.dtype(data.draw(st.sampled_from([np.uint8, np.float32]), label='dtype'))
    kwargs = dict(x_offset=offsets[0], y_offset=offsets[1], z_offset=offsets[2],
                  intensity_offset=offsets[3] if use_intensity else None, grid=grid,
                  dtype=dtype, threads=data.draw(st.sampled_from([0, 1, 2])))
    if extra < 0 and count:
        with pytest.raises(ValueError):
            bev_image_from_buffer(buffer, point_step, num_points, **kwargs)
        return
    image = bev_image_from_buffer(buffer, point_step, num_points, **kwargs)
    with np.errstate(invalid='ignore'):  # NaN and inf coordinates
        expected = reference_bev.reference_bev(read[0], read[1], read[2],
                                               read[3] if use_intensity else None, grid,
                                               dtype=dtype)
    np.testing.assert_array_equal(image, expected)


@FUZZ
@given(st.data())
def test_bev_from_buffer_rejects_fields_outside_the_point(data):
    point_step = data.draw(st.integers(-2, 12), label='point_step')
    offset = data.draw(st.integers(-3, 14), label='offset')
    num_points = data.draw(st.integers(-1, 5), label='num_points')
    buffer = bytes(max(0, max(0, point_step) * max(0, num_points) + data.draw(st.integers(-1, 1))))
    valid = (point_step >= 4 and num_points >= 0 and 0 <= offset <= point_step - 4
             and len(buffer) >= point_step * num_points)
    call = lambda: bev_image_from_buffer(  # noqa: E731
        buffer, point_step, num_points, x_offset=0, y_offset=0, z_offset=offset,
        intensity_offset=offset, grid=BevGrid(x_range=(0, 2), y_range=(0, 2), resolution=1))
    if valid:
        assert call().shape == (2, 2, 3)
    else:
        with pytest.raises(ValueError):
            call()


# --- normals ----------------------------------------------------------------------------------

def normal_points(rng, shape):
    count = shape[0]
    kind = rng.integers(0, 4)
    if kind == 0:  # integer lattice: many equal distances (ties broken by id)
        points = rng.integers(0, 4, (count, 3)).astype(np.float64)
    elif kind == 1:  # a plane with noise, far from the origin
        xy = rng.uniform(0, 10, (count, 2))
        points = np.column_stack([xy, 0.01 * rng.normal(size=count)]) + [5e5, 4.9e6, 100.0]
    elif kind == 2:  # duplicates and collinear points
        points = np.repeat(rng.uniform(-1, 1, (max(1, count // 3), 3)), 3, axis=0)[:count]
        points = np.concatenate([points, np.zeros((count - len(points), 3))])
        points[::4, 1:] = 0.0
    else:
        points = rng.normal(size=(count, 3))
    return points


@FUZZ
@given(st.data())
def test_normals_neighbourhoods_equal_the_reference(data):
    rng = seeded_rng(data)
    count = data.draw(st.integers(0, 60), label='points')
    points = normal_points(rng, (count, 3))
    row_step = data.draw(st.sampled_from([1, 2, -1, -3]), label='row step')
    column = data.draw(st.integers(0, 3), label='first column')
    layout = data.draw(st.sampled_from(['strided', 'fortran', 'swapped']), label='layout')
    if layout == 'strided':  # rows apart, columns at an offset, maybe reversed
        big = rng.uniform(-1e3, 1e3, (abs(row_step) * count + 2, 7))
        view = big[::row_step][:count, column:column + 3]
        view[...] = points
        points = view
    elif layout == 'fortran':
        points = np.asfortranarray(points)
    else:
        points = points.astype('>f8')
    radius_mode = data.draw(st.booleans(), label='radius')
    kwargs = ({'radius': data.draw(st.sampled_from([0.5, 1.0, 1.5, 3.0]))} if radius_mode
              else {'k': data.draw(st.integers(2, 12), label='k')})
    ids = (rng.permutation(count).astype(np.int64) * 3 + 1 if data.draw(st.booleans())
           else None)
    core = data.draw(st.sampled_from(['all', 'leading', 'mask']), label='core')
    core = (None if core == 'all' else int(rng.integers(0, count + 1)) if core == 'leading'
            else rng.random(count) < 0.5)
    viewpoint = tuple(rng.uniform(-5, 5, 3)) if data.draw(st.booleans()) else None
    result = estimate_normals(points, ids=ids, core=core, viewpoint=viewpoint,
                              always_up=data.draw(st.booleans()),
                              threads=data.draw(st.sampled_from([0, 1, 3])), **kwargs)
    rows = (np.arange(count) if core is None else np.arange(core) if isinstance(core, int)
            else np.flatnonzero(core))
    assert result.normals.shape == (len(rows), 3)
    nan_rows = np.isnan(result.normals).any(axis=1)
    assert result.nan_count == int(nan_rows.sum())
    np.testing.assert_array_equal(nan_rows, np.isnan(result.curvature))
    finite = result.normals[~nan_rows]
    np.testing.assert_allclose(np.linalg.norm(finite, axis=1), 1.0, rtol=0, atol=1e-9)
    assert ((result.curvature[~nan_rows] >= 0)
            & (result.curvature[~nan_rows] <= 1 / 3 + 1e-9)).all()
    if count == 0:
        return
    expected = reference_normals.reference_normals(np.array(points), ids=ids, **kwargs)
    np.testing.assert_array_equal(result.neighbour_count, expected['neighbour_count'][rows])
    np.testing.assert_allclose(result.neighbour_distance,
                               expected['neighbour_distance'][rows], rtol=1e-12, atol=0)


@FUZZ
@given(st.data())
def test_normals_reject_bad_arguments(data):
    points = np.zeros((4, 3))
    case = data.draw(st.sampled_from(range(7)), label='case')
    with pytest.raises(ValueError):
        if case == 0:
            estimate_normals(np.array([[0.0, np.nan, 0.0]] * 3))
        elif case == 1:
            estimate_normals(points.astype(np.float32))
        elif case == 2:
            estimate_normals(points, k=data.draw(st.sampled_from([0, 1, 1025, -3])))
        elif case == 3:
            estimate_normals(points, radius=data.draw(st.sampled_from([0.0, -1.0, math.inf])))
        elif case == 4:
            estimate_normals(points, ids=np.array([1, 1, 2, 3]))
        elif case == 5:
            estimate_normals(points, core=data.draw(st.sampled_from([5, -1])))
        else:
            estimate_normals(np.full((3, 3), 1e13))


# --- raster -----------------------------------------------------------------------------------

def raster_grid(data):
    resolution = data.draw(st.sampled_from([1.0, 0.5, 2.5]), label='resolution')
    return RasterGrid(resolution, data.draw(st.integers(1, 14), label='width'),
                      data.draw(st.integers(1, 14), label='height'),
                      data.draw(st.sampled_from([0.0, -3.25, 1000.0]), label='base_x'),
                      data.draw(st.sampled_from([0.0, 7.5]), label='base_y'),
                      data.draw(st.integers(-3, 3), label='offset_x'),
                      data.draw(st.integers(-3, 3), label='offset_y'))


def raster_points(rng, grid, count):
    left, top = grid.transform[0], grid.transform[3]
    x = rng.uniform(left - 3 * grid.resolution, left + (grid.width + 3) * grid.resolution, count)
    y = rng.uniform(top - (grid.height + 3) * grid.resolution, top + 3 * grid.resolution, count)
    if count:
        centre = rng.random(count) < 0.1  # exact hits on cell centres and on cell corners
        row, col = rng.integers(0, grid.height, centre.sum()), rng.integers(0, grid.width,
                                                                            centre.sum())
        x[centre], y[centre] = grid.cell_centre(row, col)
        corner = rng.random(count) < 0.1
        x[corner] = left + grid.resolution * rng.integers(0, grid.width + 1, corner.sum())
    values = rng.normal(10.0, 5.0, count)
    if count:
        values[rng.random(count) < 0.05] = np.nan
    return x, y, values


def raster_settings(data):
    return RasterSettings(
        output_types=data.draw(st.sets(st.sampled_from(raster.OUTPUT_TYPES), min_size=1)),
        radius=data.draw(st.sampled_from([None, None, 0.4, 1.0, 3.7])),
        power=data.draw(st.sampled_from([1.0, 2.0, 0.5])),
        binmode=data.draw(st.booleans(), label='binmode'),
        window_size=data.draw(st.sampled_from([0, 0, 1, 3])))


@FUZZ
@given(st.data())
def test_rasterize_and_windows_equal_the_reference(data):
    rng = seeded_rng(data)
    grid = raster_grid(data)
    settings_ = raster_settings(data)
    count = data.draw(st.integers(0, 150), label='points')
    x, y, values = raster_points(rng, grid, count)
    nan_values = any(name in settings_.output_types for name in ('min', 'max')) and \
        np.isnan(values).any()
    if nan_values:  # min / max follow std::min / std::max order on NaN: no numpy reference
        values = np.where(np.isnan(values), 0.0, values)
    block_size = data.draw(st.sampled_from([1, 3, 5, 256]), label='block_size')
    threads = data.draw(st.sampled_from([0, 1, 2, 4]), label='threads')
    strided_x = np.repeat(x, 2)[::2]  # any strides are read
    result = raster.rasterize(strided_x, y, values, grid, settings_, threads,
                              block_size=block_size)
    with np.errstate(invalid='ignore'):  # NaN values
        expected = reference_raster.reference_raster(
            x, y, values, grid, radius=settings_.radius_for(grid.resolution),
            power=settings_.power, binmode=settings_.binmode, window_size=settings_.window_size)
    assert set(result) == set(settings_.output_types)
    reference_raster.assert_matches_reference(result, {n: expected[n] for n in result},
                                              values)
    col_off = data.draw(st.integers(0, grid.width - 1), label='col_off')
    row_off = data.draw(st.integers(0, grid.height - 1), label='row_off')
    window = (col_off, row_off, data.draw(st.integers(1, grid.width - col_off)),
              data.draw(st.integers(1, grid.height - row_off)))
    index = np.flatnonzero(rng.random(count) < 2.0) if data.draw(st.booleans()) else None
    part = raster.rasterize_window(x, y, values, grid, window, settings_, index=index)
    for name in result:
        cells = result[name][row_off:row_off + window[3], col_off:col_off + window[2]]
        assert part[name].tobytes() == cells.tobytes(), name


@FUZZ
@given(st.data())
def test_raster_rejects_bad_points_and_windows(data):
    grid = RasterGrid(1.0, 4, 3)
    case = data.draw(st.sampled_from(range(6)), label='case')
    x, y, v = np.array([0.5, 1.5]), np.array([0.5, 2.5]), np.array([1.0, 2.0])
    with pytest.raises(ValueError):
        if case == 0:
            raster.rasterize(np.array([0.5, np.nan]), y, v, grid)
        elif case == 1:
            raster.rasterize(x, y[:1], v, grid)
        elif case == 2:
            raster.rasterize_window(x, y, v, grid, data.draw(st.sampled_from(
                [(0, 0, 5, 1), (4, 0, 1, 1), (-1, 0, 1, 1), (0, 0, 0, 1), (0, 2, 1, 2)])))
        elif case == 3:
            raster.rasterize_window(x, y, v, grid, (0, 0, 1, 1),
                                    index=data.draw(st.sampled_from([[2], [-1], [0.5]])))
        elif case == 4:
            raster.bucket_points(x, y, grid, 2, data.draw(st.sampled_from([-1.0, math.nan])))
        else:
            raster.rasterize(x, y, v, grid, block_size=data.draw(st.sampled_from([0, -4])))


@FUZZ
@given(st.data())
def test_bucket_points_holds_every_point_within_the_margin(data):
    rng = seeded_rng(data)
    grid = raster_grid(data)
    count = data.draw(st.integers(0, 200), label='points')
    x, y, _ = raster_points(rng, grid, count)
    block_size = data.draw(st.integers(1, 6), label='block_size')
    margin = data.draw(st.sampled_from([0.0, 0.3, 1.0, 4.0]), label='margin')
    order, starts = raster.bucket_points(x, y, grid, block_size, margin,
                                         threads=data.draw(st.sampled_from([0, 1, 3])))
    windows = raster.blocks(grid, block_size)
    assert len(starts) == len(windows) + 1 and starts[0] == 0 and starts[-1] == len(order)
    res = grid.resolution
    left, top = grid.transform[0], grid.transform[3]
    for b, (col_off, row_off, width, height) in enumerate(windows):
        members = order[starts[b]:starts[b + 1]]
        assert (np.diff(members) > 0).all()
        x0, x1 = left + col_off * res, left + (col_off + width) * res
        y1, y0 = top - row_off * res, top - (row_off + height) * res

        def within(m):
            return (x >= x0 - m) & (x <= x1 + m) & (y >= y0 - m) & (y <= y1 + m)
        assert set(np.flatnonzero(within(margin))) <= set(members.tolist())
        assert set(members.tolist()) <= set(np.flatnonzero(within(margin + res)))


@FUZZ
@given(st.data())
def test_fill_nodata_equals_the_reference_window_fill(data):
    rng = seeded_rng(data)
    rows, cols = data.draw(st.integers(1, 12), label='rows'), data.draw(st.integers(1, 12))
    values = strided_view(data, rng, (rows, cols), lambda r, s: r.normal(0, 100, s))
    empty = rng.random((rows, cols)) < data.draw(st.sampled_from([0.0, 0.3, 0.8, 1.0]))
    if data.draw(st.booleans(), label='nan donors'):
        values = values.copy()
        values[rng.random((rows, cols)) < 0.05] = np.nan
    window = data.draw(st.integers(1, 5), label='window')
    dtype = data.draw(st.sampled_from(['<f8', '>f8', 'f4', 'i4']), label='dtype')
    source = values.astype(dtype) if dtype != 'i4' else np.nan_to_num(values).astype(dtype)
    result = raster.fill_nodata(source, empty, window,
                                threads=data.draw(st.sampled_from([0, 1, 2])))
    as_float = source.astype(np.float64)
    expected = reference_raster.window_fill(
        {'v': as_float[::-1].ravel()}, (~empty[::-1]).ravel().astype(np.float64), cols, rows,
        window)['v'].reshape(rows, cols)[::-1]
    np.testing.assert_array_equal(np.isnan(result), np.isnan(expected))
    np.testing.assert_allclose(result, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(result[~empty], as_float[~empty])


# --- terrain ----------------------------------------------------------------------------------

@FUZZ
@given(st.data())
def test_slope_and_hillshade_equal_the_reference(data):
    rng = seeded_rng(data)
    rows, cols = data.draw(st.integers(1, 10), label='rows'), data.draw(st.integers(1, 10))
    dem = strided_view(data, rng, (rows, cols),
                       lambda r, s: np.cumsum(r.normal(0, 2, s), axis=-1) + 100)
    dem = dem.copy()
    dem[rng.random((rows, cols)) < 0.05] = np.nan
    mask = rng.random((rows, cols)) < 0.1 if data.draw(st.booleans(), label='mask') else None
    resolution = (data.draw(st.sampled_from([1.0, 0.5, 3.0])),
                  data.draw(st.sampled_from([1.0, 2.0, 0.25])))
    z_factor = data.draw(st.sampled_from([1.0, 0.5, 3.0]), label='z_factor')
    threads = data.draw(st.sampled_from([0, 1, 3]), label='threads')
    dem_in = dem.astype(data.draw(st.sampled_from(['<f8', '>f8', 'f4'])))
    dem64 = dem_in.astype(np.float64)
    units = data.draw(st.sampled_from(['degrees', 'percent']), label='units')
    result = terrain.slope(dem_in, resolution, nodata_mask=mask, units=units, z_factor=z_factor,
                           threads=threads)
    expected = reference_terrain.slope(dem64, resolution, mask, units, z_factor)
    np.testing.assert_array_equal(np.isnan(result), np.isnan(expected))
    np.testing.assert_allclose(result, expected, rtol=1e-12, atol=1e-10)
    azimuth = data.draw(st.sampled_from([315.0, 0.0, 90.0, -30.0, 725.0]), label='azimuth')
    altitude = data.draw(st.sampled_from([45.0, 0.0, 10.0, 90.0]), label='altitude')
    shade = terrain.hillshade(dem_in, resolution, azimuth=azimuth, altitude=altitude,
                              z_factor=z_factor, nodata_mask=mask, threads=threads)
    expected = reference_terrain.hillshade(dem64, resolution, azimuth, altitude, z_factor, mask)
    np.testing.assert_array_equal(np.isnan(shade), np.isnan(expected))
    np.testing.assert_allclose(shade, expected, rtol=0, atol=1e-9)
    with pytest.raises(ValueError):
        terrain.slope(np.full(dem64.shape, np.inf), resolution)
