"""Message fuzzing over real DDS (loopback): hypothesis strategies of malformed and good
``sensor_msgs`` messages, the node under test run as a subprocess, and the runners that send the
messages, read the drop counters from ``/diagnostics`` and check every good frame's output
against the numpy references (test/reference_depth.py, test/reference_bev.py, onnxruntime).

Shared by test/nodes/test_fuzz_over_dds.py (small runs inside ``make test``) and bench/fuzz.py
(``make fuzz``: >= 10,000 malformed messages per node). Each generated case carries the drop
reason the node must count it under (None: a good frame), derived from the rules documented in
pointcloud_pipeline/ros/message_checks.py and camera_messages.py; the runners know the node's
check order (camera_info, then depth, then the camera size, then colour).

Counting rules the nodes cannot do better than (asserted as such):
- pipeline_node: a depth image of another size than the current camera_info is counted
  ``camera_info_mismatch`` whichever of the two is odd (an accepted camera_info of another size
  makes every later right-sized frame a mismatch until a matching one comes); a pair with a bad
  depth image is counted under the depth reason even when its colour is bad too. An accepted
  camera_info is followed by a rejected one (a barrier: same topic, so processed in order) and
  frames are sent once its rejection is counted, so each frame meets a known camera.
- depth_estimator_node: a frame still waiting when a newer one arrives is dropped ``busy``
  without being checked, by design. The runner leaves a gap after each bad image so that the
  worker checks it first, and waits for each good image's depth; a bad image counted ``busy``
  anyway is accepted as such (bad_frame + busy must equal the bad images sent, exactly).

Left out on purpose (defects of issue 11 fixed in parallel, the expected outcome changes):
- stamps that go backwards: issue 11 defect 1 (the stamp synchroniser never resets);
- CameraInfo binning / ROI (in or out of range) and an all-zero P with a valid K: issue 11
  defect 2 (ignored today, applied / K fallback after the fix); every CameraInfo here has
  binning 0 and an empty ROI, and K holds the same intrinsics as P;
- PointCloud2 ``intensity`` that is not one FLOAT32: issue 11 defect 4 (silently ignored today).
"""
import collections
import dataclasses
import math
import os
from pathlib import Path
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
from hypothesis import HealthCheck, Phase, given, seed, settings, strategies as st
import numpy as np
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header

from pointcloud_pipeline.bev import BevGrid
from pointcloud_pipeline.layouts import COLOR_ENCODINGS, DEPTH_ENCODINGS, ENCODINGS
from pointcloud_pipeline.ros.camera_messages import array_to_image, image_to_array
from pointcloud_pipeline.ros.data_field import set_data
from pointcloud_pipeline.ros.dds_environment import loopback_ros_env
from reference_bev import reference_bev
from reference_depth import reference_points

RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
TIMEOUT = 60.0
DIAGNOSTICS_PERIOD = 0.02  # seconds: the runners poll the counters on /diagnostics
BATCH = 40  # frames in flight at most (the node's reliable queues hold 100)

# every encoding string the nodes may meet: the package's, other REP/cv_bridge ones, junk
OTHER_ENCODINGS = ['8UC1', '8UC3', '8UC4', '8SC1', '16SC1', '16UC3', '32SC1', '32FC3', '64FC1',
                   'rgb16', 'bgr16', 'rgba16', 'bgra16', 'mono1', 'yuv422', 'uyvy', 'yuyv',
                   'nv21', 'bayer_rggb8', 'bayer_bggr16', 'jpeg', 'png', '16uc1', 'RGB8',
                   ' 16UC1', '16UC1 ', '', '\u00e9', 'x' * 300]
ALL_ENCODINGS = list(ENCODINGS) + OTHER_ENCODINGS
FLOAT32, FLOAT64 = PointField.FLOAT32, PointField.FLOAT64
POINTFIELD_DATATYPES = list(range(0, 10))  # 0 is not a valid datatype, 1..8 are, 9 neither


def text_encoding(allowed):
    """Any encoding string (listed or random text) that is not in ``allowed``."""
    return st.one_of(st.sampled_from(ALL_ENCODINGS), st.text(max_size=20)).filter(
        lambda encoding: encoding not in allowed)


# --- images ------------------------------------------------------------------------------------
def image_message(encoding, width, height, step, data, is_bigendian=False):
    msg = Image(encoding=encoding, width=width, height=height, step=step,
                is_bigendian=bool(is_bigendian))
    set_data(msg, bytes(data))
    return msg


def packed_rows(pixels, pad, big_endian):
    """(step, data bytes) of ``pixels`` (H x W or H x W x C) with ``pad`` bytes per row."""
    dtype = pixels.dtype.newbyteorder('>' if big_endian else '<')
    rows = np.ascontiguousarray(pixels, dtype=dtype).reshape(pixels.shape[0], -1).view(np.uint8)
    padded = np.zeros((rows.shape[0], rows.shape[1] + pad), np.uint8)
    padded[:, :rows.shape[1]] = rows
    return rows.shape[1] + pad, padded.tobytes()


@st.composite
def pixel_arrays(draw, encoding, width, height):
    """Good pixels of ``encoding``: uint16 depth (0 = no reading), float32 metres with NaN,
    inf, negative and zero values, or 8-bit colour."""
    layout = ENCODINGS[encoding]
    shape = (height, width) if layout.channels == 1 else (height, width, layout.channels)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if layout.dtype == np.uint16:
        pixels = rng.integers(0, 25_000, size=shape, dtype=np.uint16)
        pixels[rng.random(shape) < 0.1] = 0
    elif layout.dtype == np.float32:
        pixels = rng.uniform(-1.0, 25.0, size=shape).astype(np.float32)
        specials = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0], np.float32)
        mask = rng.random(shape) < 0.15
        pixels[mask] = rng.choice(specials, size=int(mask.sum()))
    else:
        pixels = rng.integers(0, 256, size=shape, dtype=np.uint8)
    return pixels


@dataclasses.dataclass
class ImageCase:
    """A ``sensor_msgs/Image`` and what its checks say: ``reason`` (without a prefix such as
    'rgb_') or None for a good image whose native pixels are ``pixels``."""
    label: str
    msg: Image
    reason: str | None
    pixels: np.ndarray | None = None


@st.composite
def good_images(draw, encodings, width, height, label='good'):
    """A good image: any of ``encodings``, row padding, either byte order."""
    encoding = draw(st.sampled_from(encodings))
    pixels = draw(pixel_arrays(encoding, width, height))
    pad = draw(st.sampled_from([0, 0, 0, 1, 2, 3, 4, 8, 16]))
    big_endian = draw(st.booleans())
    step, data = packed_rows(pixels, pad, big_endian)
    return ImageCase(f'{label} {encoding} pad {pad}{" big-endian" if big_endian else ""}',
                     image_message(encoding, width, height, step, data, big_endian), None,
                     pixels)


@st.composite
def bad_images(draw, encodings, width, height, max_bytes):
    """An image that the checks of camera_messages.image_array reject, with the reason."""
    good = draw(good_images(encodings, width, height))
    msg, pixel_bytes = good.msg, ENCODINGS[good.msg.encoding].dtype.itemsize * \
        ENCODINGS[good.msg.encoding].channels
    row = width * pixel_bytes
    kind = draw(st.sampled_from(['encoding', 'zero width', 'zero height', 'step < row',
                                 'short data', 'long data', 'step > row, data for row',
                                 'height beyond data', 'overflow 32 bits', 'too large']))
    data = bytes(msg.data)
    if kind == 'encoding':
        msg.encoding = draw(text_encoding(encodings))
        reason = 'bad_encoding'
    elif kind == 'zero width':
        msg.width = 0
        reason = 'empty_image'
    elif kind == 'zero height':  # with or without data
        msg.height = 0
        if draw(st.booleans()):
            set_data(msg, b'')
        reason = 'empty_image'
    elif kind == 'step < row':
        msg.step = draw(st.integers(0, row - 1))
        reason = 'bad_step'
    elif kind == 'short data':
        set_data(msg, data[:draw(st.integers(0, len(data) - 1))])
        reason = 'bad_step'
    elif kind == 'long data':
        set_data(msg, data + bytes(draw(st.integers(1, 64))))
        reason = 'bad_step'
    elif kind == 'step > row, data for row':
        msg.step = row + draw(st.integers(1, 64))
        set_data(msg, bytes(row * height))
        reason = 'bad_step'
    elif kind == 'height beyond data':
        msg.height = height + draw(st.integers(1, 2**32 - 1 - height))
        reason = 'bad_step'
    elif kind == 'overflow 32 bits':  # width * height (and step * height) beyond 2**32
        msg.width = draw(st.integers(2**16, 2**32 - 1))
        msg.height = draw(st.integers(2**32 // msg.width + 1, 2**32 - 1))
        msg.step = draw(st.sampled_from([(msg.width * pixel_bytes) % 2**32, 2**32 - 1,
                                         msg.step]))
        reason = 'bad_step'
    else:
        set_data(msg, bytes(draw(st.integers(max_bytes + 1, max_bytes + 4096))))
        reason = 'too_large'
    return ImageCase(f'{kind} ({msg.encoding!r} {msg.width}x{msg.height} step {msg.step}, '
                     f'{len(msg.data)} bytes)', msg, reason)


# --- camera_info -------------------------------------------------------------------------------
GOOD_INTRINSICS = (14.5, 13.0, 7.5, 5.5)  # fx, fy, cx, cy of the fuzzed 16x12 camera, pixels
DISTORTION_MODELS = ['plumb_bob', 'rational_polynomial', 'equidistant', 'fisheye', '', 'none',
                     'kannala_brandt', 'x' * 100]
BAD_NUMBERS = [math.nan, math.inf, -math.inf, 0.0, -0.0, -1.0, -1e-30, -1e30]


def camera_info(width, height, intrinsics, distortion_model='plumb_bob', d=(0.0,) * 5):
    """A CameraInfo with ``intrinsics`` (fx, fy, cx, cy) in both K and P; binning 0, no ROI."""
    fx, fy, cx, cy = intrinsics
    info = CameraInfo(width=width, height=height, distortion_model=distortion_model)
    info.header.frame_id = 'fuzz_optical'
    info.d = [float(x) for x in d]
    info.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


@dataclasses.dataclass
class InfoCase:
    """A CameraInfo; ``rejected``: the node must count it as camera_info_rejected, else it
    becomes the camera (``size`` width x height, ``intrinsics``)."""
    label: str
    info: CameraInfo
    rejected: bool
    size: tuple[int, int] = (0, 0)
    intrinsics: tuple | None = None


finite_intrinsic = st.floats(0.5, 1e4, allow_nan=False, allow_infinity=False)
centre = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


@st.composite
def camera_infos(draw, width, height):
    """A CameraInfo: rejected (empty size, NaN/inf/zero/negative fx or fy, NaN/inf cx or cy),
    or accepted (any distortion model and coefficients, other valid intrinsics, another size)."""
    kind = draw(st.sampled_from(['good', 'good', 'distortion', 'distortion', 'other intrinsics',
                                 'other size', 'zero width', 'zero height', 'bad fx/fy',
                                 'bad fx/fy', 'bad cx/cy', 'bad cx/cy']))
    intrinsics, size = GOOD_INTRINSICS, (width, height)
    model, d, rejected = 'plumb_bob', [0.0] * 5, False
    if kind == 'distortion':  # ignored: the depth images are rectified
        model = draw(st.sampled_from(DISTORTION_MODELS))
        d = draw(st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=14))
    elif kind == 'other intrinsics':
        intrinsics = (draw(finite_intrinsic), draw(finite_intrinsic), draw(centre),
                      draw(centre))
    elif kind == 'other size':
        size = (draw(st.integers(1, 64)), draw(st.integers(1, 64)))
    elif kind in ('zero width', 'zero height'):
        size = (0, height) if kind == 'zero width' else (width, 0)
        rejected = True
    elif kind == 'bad fx/fy':
        index = draw(st.sampled_from([0, 1]))
        values = list(intrinsics)
        values[index] = draw(st.sampled_from(BAD_NUMBERS))
        intrinsics, rejected = tuple(values), True
    elif kind == 'bad cx/cy':
        index = draw(st.sampled_from([2, 3]))
        values = list(intrinsics)
        values[index] = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
        intrinsics, rejected = tuple(values), True
    info = camera_info(*size, intrinsics, model, d)
    return InfoCase(f'camera_info {kind} {size[0]}x{size[1]} {intrinsics}', info, rejected,
                    size, None if rejected else intrinsics)


# --- pipeline_node cases -----------------------------------------------------------------------
PIPELINE_SIZE = (16, 12)  # width, height of the fuzzed depth camera
PIPELINE_MAX_IMAGE_BYTES = 4096
PIPELINE_PARAMETERS = {'use_rgb': True, 'qos': 'reliable', 'queue_size': 100,
                       'sync_queue_size': 1000, 'sync_max_age': 60.0,
                       'max_image_bytes': PIPELINE_MAX_IMAGE_BYTES, 'bev.enable': False,
                       'diagnostics_period': DIAGNOSTICS_PERIOD, 'log_period': 0.0,
                       'warn_throttle': 0.0}


@dataclasses.dataclass
class FrameCase:
    """A depth image and its colour partner (same stamp)."""
    label: str
    depth: ImageCase
    color: ImageCase
    depth_size: tuple[int, int]


@st.composite
def pipeline_frames(draw, good=None):
    width, height = PIPELINE_SIZE
    kind = draw(st.sampled_from(['good', 'good', 'bad depth', 'bad depth', 'bad colour',
                                 'bad colour', 'depth of another size',
                                 'colour of another size'])) if good is None else \
        ('good' if good else draw(st.sampled_from(['bad depth', 'bad colour',
                                                   'depth of another size',
                                                   'colour of another size'])))
    depth_size = (width, height)
    if kind == 'bad depth':
        depth = draw(bad_images(DEPTH_ENCODINGS, width, height, PIPELINE_MAX_IMAGE_BYTES))
    elif kind == 'depth of another size':  # camera_info_mismatch (colour of that size too)
        depth_size = draw(st.tuples(st.integers(1, 24), st.integers(1, 24)).filter(
            lambda size: size != PIPELINE_SIZE))
        depth = draw(good_images(DEPTH_ENCODINGS, *depth_size, label='depth of another size'))
    else:
        depth = draw(good_images(DEPTH_ENCODINGS, width, height))
    if kind == 'bad colour':
        color = draw(bad_images(COLOR_ENCODINGS, *depth_size, PIPELINE_MAX_IMAGE_BYTES))
    elif kind == 'colour of another size':  # rgb_size_mismatch (resize_rgb is false)
        color_size = draw(st.tuples(st.integers(1, 24), st.integers(1, 24)).filter(
            lambda size: size != PIPELINE_SIZE))
        color = draw(good_images(COLOR_ENCODINGS, *color_size, label='colour of another size'))
        color.reason = 'size_mismatch'
    else:
        color = draw(good_images(COLOR_ENCODINGS, *depth_size))
    return FrameCase(f'{kind}: depth {depth.label}; colour {color.label}', depth, color,
                     depth_size)


def pipeline_cases():
    """Frames (mostly) and camera_infos, in any order."""
    return st.one_of(pipeline_frames(), pipeline_frames(), pipeline_frames(),
                     camera_infos(*PIPELINE_SIZE))


def rgb_of(case):
    """r, g, b uint8 (H x W x 3) of a good colour ImageCase."""
    pixels = case.pixels
    if case.msg.encoding == 'mono8':
        return np.repeat(pixels[:, :, np.newaxis], 3, axis=2)
    index = list(ENCODINGS[case.msg.encoding].rgb_index)
    return np.ascontiguousarray(pixels[:, :, index])


# --- bev_node cases ----------------------------------------------------------------------------
BEV_MAX_CLOUD_BYTES = 1 << 16
BEV_GRID = BevGrid(x_range=(-10.0, 10.0), y_range=(-10.0, 10.0), z_range=(-2.0, 2.0),
                   resolution=0.5)
BEV_PARAMETERS = {'qos': 'reliable', 'queue_size': 100, 'max_cloud_bytes': BEV_MAX_CLOUD_BYTES,
                  'x_range': list(BEV_GRID.x_range), 'y_range': list(BEV_GRID.y_range),
                  'z_range': list(BEV_GRID.z_range), 'resolution': BEV_GRID.resolution,
                  'diagnostics_period': DIAGNOSTICS_PERIOD, 'log_period': 0.0,
                  'warn_throttle': 0.0}


@dataclasses.dataclass
class CloudCase:
    """A PointCloud2, its expected drop reason (None: good) and, for a good cloud, the float32
    x, y, z, intensity (None) of its points."""
    label: str
    msg: PointCloud2
    reason: str | None
    xyzi: tuple | None = None


def pointfield(name, offset, datatype=FLOAT32, count=1):
    return PointField(name=name, offset=offset, datatype=datatype, count=count)


@st.composite
def good_clouds(draw):
    """A cloud with float32 x, y, z (+ optional float32 intensity) anywhere in the point, extra
    fields, row padding, overlapping coordinates, or no points at all."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    height = draw(st.sampled_from([0, 1, 1, 1, 2, 3]))
    width = draw(st.integers(1, 200)) if height else draw(st.integers(0, 50))
    point_step = draw(st.sampled_from([12, 16, 20, 32]))
    slots = list(range(0, point_step - 3, 4))
    names = ['x', 'y', 'z'] + (['intensity'] if draw(st.booleans()) else [])
    overlap = draw(st.booleans()) and point_step >= 12
    if overlap:  # e.g. x and y at one offset: a readable, if odd, cloud
        offsets = {name: draw(st.sampled_from(slots)) for name in names}
    else:
        if len(slots) < len(names):
            names = names[:3]
        chosen = draw(st.permutations(slots))[:len(names)]
        offsets = dict(zip(names, chosen))
    fields = [pointfield(name, offset) for name, offset in offsets.items()]
    if draw(st.booleans()):  # a field the node ignores
        fields.insert(0, pointfield('ring', 0, PointField.UINT16))
    pad = draw(st.sampled_from([0, 0, 4, 7])) if width else 0  # no points: no data at all
    row_step = width * point_step + pad
    values = rng.uniform(-3.0, 3.0, size=(height, width, point_step // 4)).astype(np.float32)
    values[rng.random(values.shape) < 0.1] *= 5.0  # some beyond the grid (-10..10, z -2..2)
    values[rng.random(values.shape) < 0.05] = np.nan
    rows = np.zeros((height, row_step), np.uint8)
    rows[:, :width * point_step] = values.reshape(height, width * point_step // 4).view(np.uint8)
    msg = PointCloud2(height=height, width=width, point_step=point_step, row_step=row_step,
                      is_dense=False, is_bigendian=False, fields=fields)
    set_data(msg, rows.tobytes())
    flat = values.reshape(-1, point_step // 4)
    xyzi = tuple(flat[:, offsets[name] // 4] if name in offsets else None
                 for name in ('x', 'y', 'z', 'intensity'))
    return CloudCase(f'good ({width}x{height} step {point_step} pad {pad} {offsets})', msg, None,
                     xyzi)


@st.composite
def bad_clouds(draw):
    """A cloud that message_checks.cloud_layout rejects, with the reason."""
    good = draw(good_clouds())
    msg = good.msg
    kind = draw(st.sampled_from(['big-endian', 'too large', 'missing x/y/z',
                                 'non-float32 coordinate', 'count != 1',
                                 'point_step smaller than a field', 'row_step < row',
                                 'row_step inconsistent with data', 'short data', 'long data',
                                 'width * height overflows 32 bits', 'empty with data']))
    fields = list(msg.fields)
    xyz = [index for index, field in enumerate(fields) if field.name in ('x', 'y', 'z')]
    target = draw(st.sampled_from(xyz))
    data = bytes(msg.data)
    width, height, point_step = msg.width, msg.height, msg.point_step
    if kind == 'big-endian':
        msg.is_bigendian = True
        reason = 'big_endian'
    elif kind == 'too large':
        set_data(msg, bytes(draw(st.integers(BEV_MAX_CLOUD_BYTES + 1,
                                             BEV_MAX_CLOUD_BYTES + 4096))))
        reason = 'too_large'
    elif kind == 'missing x/y/z':
        del fields[target]
        if draw(st.booleans()):  # present under another name
            fields.append(pointfield(draw(st.sampled_from(['X', 'x ', 'z_', 'rgb', ''])), 0))
        reason = 'missing_field'
    elif kind == 'non-float32 coordinate':
        fields[target] = pointfield(fields[target].name, fields[target].offset,
                                    draw(st.sampled_from([d for d in POINTFIELD_DATATYPES
                                                          if d != FLOAT32])))
        reason = 'bad_field'
    elif kind == 'count != 1':
        fields[target] = pointfield(fields[target].name, fields[target].offset, FLOAT32,
                                    draw(st.sampled_from([0, 2, 3, 2**32 - 1])))
        reason = 'bad_field'
    elif kind == 'point_step smaller than a field':
        if draw(st.booleans()):
            msg.point_step = draw(st.integers(0, fields[target].offset + 3))
        else:
            fields[target] = pointfield(fields[target].name,
                                        draw(st.integers(point_step - 3, 2**32 - 1)))
        reason = 'bad_field'
    elif kind == 'row_step < row' and width * height:
        msg.row_step = draw(st.integers(0, width * point_step - 1))
        set_data(msg, bytes(msg.row_step * height))
        reason = 'bad_size'
    elif kind == 'row_step inconsistent with data' and width * height:
        msg.row_step = draw(st.integers(width * point_step, width * point_step + 64).filter(
            lambda step: step * height != len(data)))
        reason = 'bad_size'
    elif kind == 'short data' and width * height:
        set_data(msg, data[:draw(st.integers(0, len(data) - 1))])
        reason = 'bad_size'
    elif kind == 'width * height overflows 32 bits':
        msg.width = draw(st.integers(2**16, 2**32 - 1))
        msg.height = draw(st.integers(2**32 // msg.width + 1, 2**32 - 1))
        msg.row_step = (msg.width * point_step) % 2**32
        reason = 'bad_size'
    else:  # long data (also for clouds without points), or an empty cloud with data
        if draw(st.booleans()) or not width * height:
            msg.width = 0 if draw(st.booleans()) else width
            msg.height = 0 if msg.width else height
        set_data(msg, data + bytes(draw(st.integers(1, 64))))
        kind, reason = 'long data', 'bad_size'
    msg.fields = fields
    return CloudCase(f'{kind} ({msg.width}x{msg.height} point_step {msg.point_step} row_step '
                     f'{msg.row_step}, {len(msg.data)} bytes, fields '
                     f'{[(f.name, f.offset, f.datatype, f.count) for f in msg.fields]})',
                     msg, reason)


def bev_cases():
    return st.one_of(good_clouds(), bad_clouds(), bad_clouds())


# --- depth estimator cases ---------------------------------------------------------------------
ESTIMATOR_SIZE = (20, 15)


def estimator_cases():
    width, height = ESTIMATOR_SIZE
    return st.one_of(good_images(COLOR_ENCODINGS, width, height),
                     bad_images(COLOR_ENCODINGS, width, height, 4096),
                     bad_images(COLOR_ENCODINGS, width, height, 4096))


def estimator_model(folder):
    """A 16x16 encoder-decoder ONNX model (metric, 0..10 m) in ``folder`` and its profile
    YAML file: (model path, profile path)."""
    import yaml

    from reference_monodepth import build_encoder_decoder
    path = Path(folder) / 'depth_16x16.onnx'
    build_encoder_decoder(path, 16, 16, channels=(4, 8), output_gain=10.0, seed=5)
    profile = Path(folder) / 'fuzz_metric.yaml'
    profile.write_text(yaml.safe_dump({
        'name': 'fuzz_metric', 'input_size': [16, 16], 'mean': [0.485, 0.456, 0.406],
        'std': [0.229, 0.224, 0.225], 'interpolation': 'linear', 'output_kind': 'metric',
        'max_depth_m': 9.0}))
    return path, profile


# --- generation --------------------------------------------------------------------------------
def generate(strategy, count, random_seed=0):
    """``count`` examples of ``strategy`` drawn by hypothesis (generation phase only)."""
    examples = []
    while len(examples) < count:
        @seed(random_seed)
        @settings(max_examples=count - len(examples), database=None, deadline=None,
                  phases=[Phase.generate], suppress_health_check=list(HealthCheck))
        @given(strategy)
        def collect(example):
            examples.append(example)

        collect()
        random_seed += 1
    return examples[:count]


# --- the node under test -----------------------------------------------------------------------
class NodeProcess:
    """A node executable (``python -m pointcloud_pipeline.nodes.<module>``) in a subprocess on
    this process's ROS domain, with ROS_LOG_DIR and its output in a temporary directory."""

    def __init__(self, module, parameters):
        self.folder = Path(tempfile.mkdtemp(prefix='fuzz_node_'))
        self.log_dir = self.folder / 'ros_log'
        env = loopback_ros_env(domain_id=int(os.environ['ROS_DOMAIN_ID']),
                               log_dir=str(self.log_dir))
        arguments = []
        for name, value in parameters.items():
            text = str(value).lower() if isinstance(value, bool) else \
                '[' + ','.join(str(float(v)) for v in value) + ']' \
                if isinstance(value, list) else str(value)
            arguments += ['-p', f'{name}:={text}']
        self.output_path = self.folder / 'output.txt'
        self._output = open(self.output_path, 'wb')
        self.process = subprocess.Popen(
            [sys.executable, '-m', f'pointcloud_pipeline.nodes.{module}', '--ros-args',
             *arguments], env=env, stdout=self._output,
            stderr=subprocess.STDOUT)

    def alive(self):
        return self.process.poll() is None

    def stop(self):
        """SIGINT, then wait (SIGKILL after 20 s); returns the exit code."""
        if self.alive():
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._output.close()
        return self.process.returncode

    def output(self):
        """stdout + stderr and every file ROS logged to, as one text."""
        if not self._output.closed:
            self._output.flush()
        texts = [self.output_path.read_text(errors='replace')]
        texts += [path.read_text(errors='replace') for path in sorted(self.log_dir.rglob('*'))
                  if path.is_file()]
        return '\n'.join(texts)

    def tracebacks(self):
        """Lines that report an exception with a traceback, in the output or the ROS logs."""
        return [line for line in self.output().splitlines()
                if 'Traceback' in line or re.search(r'\bException\b.*\bignored\b', line)]

    def remove(self):
        shutil.rmtree(self.folder, ignore_errors=True)


class Diagnostics:
    """The newest /diagnostics values of one status name, as ints where they are ints."""

    def __init__(self, node, status_name):
        self.status_name = status_name
        self._lock = threading.Lock()
        self._values = None
        node.create_subscription(DiagnosticArray, '/diagnostics', self._on_array, 10)

    def _on_array(self, array):
        for status in array.status:
            if status.name == self.status_name:
                values = {item.key: item.value for item in status.values}
                with self._lock:
                    self._values = values

    def values(self):
        with self._lock:
            return dict(self._values or {})

    def count(self, key):
        value = self.values().get(key, '0')
        return int(value) if value.isdigit() else 0

    def drops(self):
        """{reason: count} of dropped frames."""
        prefix = 'dropped_by_reason.'
        return {key[len(prefix):]: int(value) for key, value in self.values().items()
                if key.startswith(prefix) and value.isdigit() and int(value)}

    def wait(self, predicate, what, timeout=TIMEOUT, process=None):
        deadline = time.monotonic() + timeout
        while not predicate():
            if process is not None and not process.alive():
                raise AssertionError(f'the node died while waiting for {what}:\n'
                                     f'{process.output()[-4000:]}')
            if time.monotonic() > deadline:
                raise AssertionError(f'timed out waiting for {what}; diagnostics '
                                     f'{self.values()}')
            time.sleep(0.005)


class Outputs:
    """Messages received on one topic, by header stamp (ns)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.by_stamp = {}
        self.count = 0

    def __call__(self, msg):
        with self._lock:
            self.by_stamp[msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec] = msg
            self.count += 1

    def __len__(self):
        with self._lock:
            return self.count


@dataclasses.dataclass
class FuzzResult:
    """What a run sent and what the node counted."""
    sent: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    good: int = 0
    expected_drops: collections.Counter = dataclasses.field(
        default_factory=collections.Counter)
    counted_drops: dict = dataclasses.field(default_factory=dict)
    rejected_infos_expected: int = 0
    rejected_infos_counted: int = 0
    unexamined: int = 0  # bad images the estimator dropped as 'busy' before checking them
    barrier_infos: int = 0  # rejected infos sent after an accepted one (not malformed input)
    wrong_frames: list = dataclasses.field(default_factory=list)
    published: int = 0
    skipped: int = 0

    @property
    def malformed(self):
        return (sum(self.expected_drops.values()) + self.rejected_infos_expected -
                self.barrier_infos)


class StampClock:
    """Strictly increasing stamps, 1 ms apart (backward jumps: issue 11 defect 1)."""

    def __init__(self, start_sec=1000):
        self.ns = start_sec * 10**9

    def header(self, frame_id='fuzz_optical'):
        self.ns += 1_000_000
        header = Header(frame_id=frame_id)
        header.stamp.sec, header.stamp.nanosec = divmod(self.ns, 10**9)
        return header


# --- runners -----------------------------------------------------------------------------------
class PipelineRunner:
    """Drives a pipeline_node subprocess (use_rgb, reliable): depth, colour and camera_info in;
    points and /diagnostics out."""

    STATUS = 'pointcloud_pipeline: frames'

    def __init__(self, client):
        self.client = client
        self.depth_pub = client.create_publisher(Image, 'depth/image_rect', RELIABLE)
        self.color_pub = client.create_publisher(Image, 'rgb/image_rect_color', RELIABLE)
        self.info_pub = client.create_publisher(CameraInfo, 'depth/camera_info', RELIABLE)
        self.points = Outputs()
        client.create_subscription(PointCloud2, 'points', self.points, RELIABLE)
        self.diagnostics = Diagnostics(client, self.STATUS)
        self.process = None
        self.clock = StampClock()
        self.result = FuzzResult()
        self.camera = None  # (width, height, intrinsics) the node uses
        self.frames_sent = 0
        self.startup_skipped = 0  # frames sent before the node matched the points subscription
        self.unconfirmed_infos = 0
        self.pending = {}  # stamp ns -> (expected points, label) of good frames in flight

    def start(self):
        self.process = NodeProcess('pipeline_node', PIPELINE_PARAMETERS)
        wait = self.diagnostics.wait
        wait(lambda: (self.depth_pub.get_subscription_count() and
                      self.color_pub.get_subscription_count() and
                      self.info_pub.get_subscription_count() and
                      self.client.count_publishers('points') and self.diagnostics.values()),
             'the pipeline node to connect', process=self.process)
        # Until the node has matched our points subscription it skips frames (nobody listens):
        # probe with frames sent before any camera_info, until one is dropped, not skipped.
        while True:
            self._send_frame(self._good_frame())  # expected: no_camera_info
            self._flush()
            if self.result.skipped == 0:
                return self
            self.result.expected_drops['no_camera_info'] -= 1
            self.startup_skipped += 1

    def run(self, cases):
        """Send ``cases`` (FrameCase / InfoCase) in order; return when all are counted."""
        if self.camera is None:
            for _ in range(3):  # before any camera_info: no_camera_info
                self._send_frame(self._good_frame())
            self._send_info(InfoCase('good camera_info', camera_info(*PIPELINE_SIZE,
                                                                      GOOD_INTRINSICS),
                                     False, PIPELINE_SIZE, GOOD_INTRINSICS))
        for case in cases:
            if isinstance(case, InfoCase):
                self._send_info(case)
            else:
                self._send_frame(case)
        self._flush()
        return self.result

    def _good_frame(self):
        width, height = PIPELINE_SIZE
        depth = np.full((height, width), 1500, np.uint16)
        color = np.zeros((height, width, 3), np.uint8)
        return FrameCase('good', ImageCase('good', array_to_image(depth, '16UC1'), None, depth),
                         ImageCase('good', array_to_image(color, 'rgb8'), None, color),
                         PIPELINE_SIZE)

    def _expected_reason(self, case):
        """The node's check order (pipeline_node._convert)."""
        if self.camera is None:
            return 'no_camera_info'
        if case.depth.reason is not None:
            return case.depth.reason
        if case.depth_size != self.camera[:2]:
            return 'camera_info_mismatch'
        if case.color.reason is not None:
            return 'rgb_' + case.color.reason
        return None

    def _send_frame(self, case):
        reason = self._expected_reason(case)
        header = self.clock.header()
        case.depth.msg.header = header
        case.color.msg.header = header
        if reason is None:
            expected = reference_points(case.depth.pixels, self.camera[2], depth_scale=0.001,
                                        max_range=20.0, rgb=rgb_of(case.color))
            self.pending[self.clock.ns] = (expected, case.label)
            self.result.good += 1
        else:
            self.result.expected_drops[reason] += 1
        self.result.sent[case.label.split(':')[0]] += 1
        self.color_pub.publish(case.color.msg)
        self.depth_pub.publish(case.depth.msg)
        self.frames_sent += 1
        if self.frames_sent % BATCH == 0:
            self._flush()

    def _send_info(self, case):
        if case.rejected:
            self.result.rejected_infos_expected += 1
            self.result.sent['camera_info rejected'] += 1
            self.info_pub.publish(case.info)
            self.unconfirmed_infos += 1
            if self.unconfirmed_infos >= 4:  # the node's camera_info queue holds 5
                self._wait_for_infos()
            return
        self.result.sent['camera_info accepted'] += 1
        self._flush()  # frames already sent are converted with the previous camera
        self.info_pub.publish(case.info)
        barrier = camera_info(0, 0, GOOD_INTRINSICS)  # rejected: counted after the one before
        self.info_pub.publish(barrier)
        self.result.rejected_infos_expected += 1
        self.result.barrier_infos += 1
        self.unconfirmed_infos += 1
        self._wait_for_infos()
        self.camera = (*case.size, case.intrinsics)

    def _wait_for_infos(self):
        expected = self.result.rejected_infos_expected
        self.diagnostics.wait(
            lambda: self.diagnostics.count('events.camera_info_rejected') >= expected,
            f'{expected} camera_info rejections', process=self.process)
        self.unconfirmed_infos = 0

    def _flush(self):
        sent, diagnostics = self.frames_sent, self.diagnostics
        diagnostics.wait(lambda: diagnostics.count('received') >= sent and
                         diagnostics.count('published') + diagnostics.count('dropped') +
                         diagnostics.count('skipped') >= sent,
                         f'{sent} frames counted', process=self.process)
        self._wait_for_infos()
        good = self.result.good
        diagnostics.wait(lambda: len(self.points) >= good, f'{good} clouds',
                         process=self.process)
        for stamp, (expected, label) in list(self.pending.items()):
            cloud = self.points.by_stamp.pop(stamp, None)
            problem = 'no cloud' if cloud is None else cloud_difference(cloud, expected)
            if problem:
                self.result.wrong_frames.append(f'{label}: {problem}')
            del self.pending[stamp]
        self.result.counted_drops = diagnostics.drops()
        self.result.rejected_infos_counted = diagnostics.count('events.camera_info_rejected')
        self.result.published = diagnostics.count('published')
        self.result.skipped = diagnostics.count('skipped') - self.startup_skipped


def cloud_difference(cloud, expected):
    """'' when the PointCloud2 holds exactly the reference points (x, y, z, rgb bits)."""
    rows, cols = expected.shape[:2]
    if (cloud.height, cloud.width, cloud.point_step) != (rows, cols, 16):
        return f'cloud is {cloud.width}x{cloud.height} step {cloud.point_step}, expected ' \
               f'{cols}x{rows} step 16'
    points = np.frombuffer(cloud.data, np.float32).reshape(rows, cols, 4)
    if not np.array_equal(points[..., :3], expected[..., :3], equal_nan=True):
        bad = ~((points[..., :3] == expected[..., :3]) |
                (np.isnan(points[..., :3]) & np.isnan(expected[..., :3])))
        return f'{int(bad.sum())} coordinates differ'
    valid = ~np.isnan(expected[..., 2])
    if not np.array_equal(points[..., 3].view(np.uint32)[valid],
                          expected[..., 3].view(np.uint32)[valid]):
        return 'colours differ'
    return ''


class BevRunner:
    """Drives a bev_node subprocess: PointCloud2 in, bev/image and /diagnostics out."""

    STATUS = 'bev_node: frames'

    def __init__(self, client):
        self.client = client
        self.cloud_pub = client.create_publisher(PointCloud2, 'points', RELIABLE)
        self.images = Outputs()
        client.create_subscription(Image, 'bev/image', self.images, RELIABLE)
        self.diagnostics = Diagnostics(client, self.STATUS)
        self.process = None
        self.clock = StampClock()
        self.result = FuzzResult()
        self.sent = 0
        self.startup_skipped = 0
        self.pending = {}

    def start(self):
        self.process = NodeProcess('bev_node', BEV_PARAMETERS)
        self.diagnostics.wait(lambda: self.cloud_pub.get_subscription_count() and
                              self.client.count_publishers('bev/image') and
                              self.diagnostics.values(), 'the BEV node to connect',
                              process=self.process)
        while True:  # until it matched our subscription, the node skips clouds
            probe = CloudCase('probe', PointCloud2(is_bigendian=True), 'big_endian')
            self.run([probe])
            if self.result.skipped == 0:
                return self
            self.result.expected_drops['big_endian'] -= 1
            self.startup_skipped += 1

    def run(self, cases):
        for case in cases:
            case.msg.header = self.clock.header('fuzz_lidar')
            if case.reason is None:
                x, y, z, intensity = case.xyzi
                self.pending[self.clock.ns] = (reference_bev(x, y, z, intensity, BEV_GRID),
                                               case.label)
                self.result.good += 1
            else:
                self.result.expected_drops[case.reason] += 1
            self.result.sent[case.label.split(' (')[0]] += 1
            self.cloud_pub.publish(case.msg)
            self.sent += 1
            if self.sent % BATCH == 0:
                self._flush()
        self._flush()
        return self.result

    def _flush(self):
        sent, diagnostics = self.sent, self.diagnostics
        diagnostics.wait(lambda: diagnostics.count('received') >= sent and
                         diagnostics.count('published') + diagnostics.count('dropped') +
                         diagnostics.count('skipped') >= sent,
                         f'{sent} clouds counted', process=self.process)
        good = self.result.good
        diagnostics.wait(lambda: len(self.images) >= good, f'{good} BEV images',
                         process=self.process)
        for stamp, (expected, label) in list(self.pending.items()):
            image = self.images.by_stamp.pop(stamp, None)
            if image is None:
                self.result.wrong_frames.append(f'{label}: no image')
            elif not np.array_equal(image_to_array(image), expected):
                self.result.wrong_frames.append(f'{label}: the BEV image differs')
            del self.pending[stamp]
        self.result.counted_drops = diagnostics.drops()
        self.result.published = diagnostics.count('published')
        self.result.skipped = diagnostics.count('skipped') - self.startup_skipped


class EstimatorRunner:
    """Drives a depth_estimator_node subprocess one image at a time (a frame arriving while one
    waits would replace it, counted 'busy'): image in, depth/image and /diagnostics out. Every
    bad image must be counted 'bad_frame'; a good one must give onnxruntime's depth."""

    STATUS = 'depth_estimator_node: monocular depth'

    def __init__(self, client, model_path, profile_path):
        self.client = client
        self.model_path, self.profile_path = model_path, profile_path
        self.image_pub = client.create_publisher(Image, 'image', RELIABLE)
        self.depth = Outputs()
        client.create_subscription(Image, 'depth/image', self.depth, RELIABLE)
        self.diagnostics = Diagnostics(client, self.STATUS)
        self.process = None
        self.clock = StampClock()
        self.result = FuzzResult()
        self.sent = 0
        self._session = self._profile = None
        self.bad_sent = 0

    def start(self, timeout=300.0):
        from pointcloud_pipeline.monodepth import load_profile
        from reference_monodepth import onnxruntime_session
        self._session = onnxruntime_session(self.model_path)
        self._profile = load_profile(self.profile_path)
        self.process = NodeProcess('depth_estimator_node', {
            'model_path': str(self.model_path), 'profile': str(self.profile_path),
            'qos': 'reliable', 'device': 'CPU'})
        self.diagnostics.wait(lambda: self.image_pub.get_subscription_count() and
                              self.client.count_publishers('depth/image') and
                              self.diagnostics.values(), 'the estimator to start',
                              timeout=timeout, process=self.process)
        width, height = ESTIMATOR_SIZE
        probe = ImageCase('probe', array_to_image(np.zeros((height, width, 3), np.uint8),
                                                  'rgb8'), None)
        while True:  # until the node matched our depth subscription, its output is lost
            probe.msg.header = self.clock.header('fuzz_rgb_optical')
            self.image_pub.publish(probe.msg)
            self.sent += 1
            self.result.good += 1
            stamp = self.clock.ns
            try:
                self.diagnostics.wait(lambda: stamp in self.depth.by_stamp, 'a first depth',
                                      timeout=3.0, process=self.process)
                return self
            except AssertionError:
                if not self.process.alive():
                    raise

    def expected_depth(self, case):
        from pointcloud_pipeline.monodepth import postprocess, preprocess
        network_input, placement = preprocess(case.pixels, case.msg.encoding, self._profile)
        raw = self._session.run(None, {'input': network_input})[0]
        return postprocess(raw, placement, self._profile,
                           output_size=(case.msg.height, case.msg.width))

    def run(self, cases, gap=0.02):
        """Send ``cases``; ``gap`` seconds after each bad image (the node's diagnostics come
        once a second, too slow to pace on: a gap lets the worker take the bad image before the
        next one arrives, else it is counted 'busy' and the totals below fail)."""
        diagnostics = self.diagnostics
        for case in cases:
            case.msg.header = self.clock.header('fuzz_rgb_optical')
            stamp = self.clock.ns
            self.result.sent['good' if case.reason is None else case.label.split(' (')[0]] += 1
            self.image_pub.publish(case.msg)
            self.sent += 1
            if case.reason is not None:
                self.bad_sent += 1
                time.sleep(gap)
                continue
            self.result.good += 1
            diagnostics.wait(lambda: stamp in self.depth.by_stamp, f'depth image {stamp}',
                             process=self.process)
            depth = image_to_array(self.depth.by_stamp.pop(stamp))
            expected = self.expected_depth(case)
            if depth.shape != expected.shape or not np.allclose(depth, expected, atol=1e-4,
                                                                equal_nan=True):
                self.result.wrong_frames.append(f'{case.label}: depth differs')
        sent = self.sent
        diagnostics.wait(lambda: diagnostics.count('received') >= sent and
                         diagnostics.count('published') + diagnostics.count('dropped') >= sent,
                         f'{sent} images counted', process=self.process)
        self.result.counted_drops = counted = diagnostics.drops()
        self.result.published = diagnostics.count('published')
        # The rule of the node: a frame still waiting when a newer one arrives is dropped as
        # 'busy' without being looked at, so a bad image can be counted 'busy' instead of
        # 'bad_frame' (rare with the gap; good images never are: each one's depth is awaited
        # before the next image goes). The totals must still be exact: bad_frame + busy = bad.
        bad, busy = self.bad_sent, counted.get('busy', 0)
        self.result.unexamined = busy if busy <= bad else 0
        expected = {'bad_frame': bad - self.result.unexamined, 'busy': self.result.unexamined}
        self.result.expected_drops = collections.Counter(
            {reason: count for reason, count in expected.items() if count})
        return self.result
