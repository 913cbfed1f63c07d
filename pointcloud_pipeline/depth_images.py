"""Depth image -> depth image conversions: depth_image_proc's convert_metric, crop_foremost and
disparity (ROS 2 ``image_pipeline``, ``depth_image_proc/src/*.cpp``), GIL-free.

Depth images are 2-D numpy arrays (rows may be padded: any row stride, contiguous rows):
``uint16`` in units of ``depth_scale`` metres (16UC1 / mono16; 0 = no reading, REP 118) or
``float32`` metres (32FC1; valid = finite and > 0, so NaN, +-inf, 0 and negative values are
no reading). Outputs are new C-contiguous arrays, or written into ``out`` (a C-contiguous array
of the output's shape and dtype, e.g. a ROS message buffer view). The loops are in
``_depth_images.pyx``: one pass each, one thread, the GIL released.

Where we differ from depth_image_proc, and why, is said in each function.
"""
import math
from numbers import Real
from typing import NamedTuple

import numpy as np

from . import _depth_images

_UINT16 = np.dtype(np.uint16)
_FLOAT32 = np.dtype(np.float32)
_RELATIVE_UNIT_TOLERANCE = 1e-9  # distance / depth_scale this close to a whole number is it


def _depth(depth, name='depth'):
    """``depth`` as a 2-D uint16 or float32 array in native byte order (no copy unless the
    rows are not contiguous)."""
    if not isinstance(depth, np.ndarray):
        raise ValueError(f'{name} must be a numpy array, got {type(depth).__name__}')
    if depth.ndim != 2:
        raise ValueError(f'{name} must be 2-D (rows x columns), got shape {depth.shape}')
    if depth.dtype.newbyteorder('=') not in (_UINT16, _FLOAT32):
        raise ValueError(f'{name} must be uint16 (16UC1/mono16) or float32 (32FC1), got '
                         f'{depth.dtype}')
    if depth.size == 0:
        raise ValueError(f'{name} is empty: shape {depth.shape}')
    if not depth.dtype.isnative:
        depth = depth.astype(depth.dtype.newbyteorder('='))
    if depth.shape[1] > 1 and depth.strides[1] != depth.itemsize:
        depth = np.ascontiguousarray(depth)
    return depth


def _output(out, shape, dtype):
    if out is None:
        return np.empty(shape, dtype)
    if (not isinstance(out, np.ndarray) or out.dtype != dtype or out.shape != shape or
            not out.flags.c_contiguous or not out.flags.writeable):
        got = (f'{out.dtype} {out.shape}' if isinstance(out, np.ndarray) else
               type(out).__name__)
        raise ValueError(f'out must be a writable C-contiguous {np.dtype(dtype)} array of shape '
                         f'{shape}, got {got}')
    return out


def _positive(value, name, allow_inf=False):
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f'{name} must be a number, got {value!r}')
    value = float(value)
    if not (value > 0 and (math.isfinite(value) or (allow_inf and value == math.inf))):
        raise ValueError(f'{name} must be {"> 0" if allow_inf else "finite and > 0"}, '
                         f'got {value!r}')
    return value


def convert_metric(depth, depth_scale=0.001, out=None):
    """depth_image_proc ``convert_metric``, both ways.

    uint16 units -> float32 metres: ``raw * depth_scale`` (a float32 product, as
    depth_image_proc's ``raw * 0.001f`` and as ``depth.depth_to_cloud``'s z), NaN where raw is
    0 (REP 118).
    float32 metres -> uint16 units, as depth_image_proc does for a 32FC1 input (it publishes
    16UC1 millimetres): ``metres / depth_scale`` rounded to the nearest unit (ties to even),
    0 where there is no reading (NaN, +-inf, <= 0) or the value is outside 1 .. 65535 units.
    Differs from depth_image_proc: it truncates (``static_cast<uint16_t>(raw * 1000)``, so a
    float32 of 0.123 m can become 122 mm and a 16UC1 -> 32FC1 -> 16UC1 round trip is not exact;
    rounding makes it exact) and leaves inf, negative and out-of-range values undefined (C++
    conversion of an unrepresentable float); it also has no ``depth_scale`` (always mm).

    depth_scale: metres per unit (> 0, finite). out: see the module docstring.
    Returns the converted image (``out`` when given).
    """
    depth = _depth(depth)
    scale = _positive(depth_scale, 'depth_scale')
    if depth.dtype == _UINT16:
        result = _output(out, depth.shape, _FLOAT32)
        _depth_images.units_to_metres(depth, np.float32(scale), result)
    else:
        result = _output(out, depth.shape, _UINT16)
        _depth_images.metres_to_units(depth, scale, result)
    return result


def nearest_depth(depth, depth_scale=0.001):
    """Metres of the nearest valid pixel (float), None when no pixel is valid."""
    depth = _depth(depth)
    scale = _positive(depth_scale, 'depth_scale')
    if depth.dtype == _UINT16:
        raw = int(_depth_images.smallest_nonzero(depth))
        return raw * scale if raw else None
    # positive float32 values order like their bits, below +inf, NaN and negative values
    bits = np.uint32(_depth_images.smallest_nonzero(depth.view(np.uint32)))
    metres = bits.view(np.float32)
    return float(metres) if 0 < metres < np.inf else None


def _whole_units(distance, scale):
    """``distance / scale`` in whole units: rounded down, except that a quotient within a
    relative 1e-9 of a whole number is that number (0.3 m / 0.1 m is 2.9999999999999996)."""
    units = distance / scale
    nearest = round(units)
    if abs(units - nearest) <= _RELATIVE_UNIT_TOLERANCE * max(1.0, units):
        return int(nearest)
    return math.floor(units)


def crop_foremost(depth, distance, depth_scale=0.001, out=None):
    """depth_image_proc ``crop_foremost``: keep the pixels at most ``distance`` metres behind the
    nearest valid pixel; every other pixel becomes no reading (0 in uint16, NaN in float32).
    Same dtype and shape as ``depth``.

    uint16: kept where ``raw <= nearest_raw + n`` with ``n`` = ``distance / depth_scale`` whole
    units (see :func:`_whole_units`); float32: kept where ``0 < value <= nearest + distance``
    (computed exactly: the threshold is the largest float32 not above the float64 sum), so
    ``distance`` 0 keeps exactly the pixels at the nearest depth. An image with no valid pixel
    comes out all invalid.

    Matches depth_image_proc's rule (``cv::threshold(min + distance, THRESH_TOZERO_INV)``, the
    minimum taken over non-zero pixels). Differs: ``distance`` is metres for every encoding
    (depth_image_proc: the image's units, i.e. millimetres for 16UC1); float32 pixels cropped
    become NaN, not 0.0 (0.0 is a valid depth to depth_image_proc's own float consumers), and
    NaN/inf/negative pixels are invalid (there, -inf or a negative value can be the minimum).

    distance: metres, finite and >= 0. depth_scale: metres per uint16 unit.
    """
    depth = _depth(depth)
    if isinstance(distance, bool) or not isinstance(distance, Real) or not (
            math.isfinite(distance) and distance >= 0):
        raise ValueError(f'distance must be finite metres >= 0, got {distance!r}')
    scale = _positive(depth_scale, 'depth_scale')
    result = _output(out, depth.shape, depth.dtype)
    if depth.dtype == _UINT16:
        nearest = int(_depth_images.smallest_nonzero(depth))
        limit = min(0xFFFF, nearest + _whole_units(float(distance), scale)) if nearest else 0
        _depth_images.crop(depth, np.uint16(limit), result)
        return result
    nearest = nearest_depth(depth)
    if nearest is None:
        limit = np.float32(0)  # nothing is > 0 and <= 0
    else:
        bound = nearest + float(distance)
        limit = np.float32(bound)
        if float(limit) > bound:
            limit = np.nextafter(limit, np.float32(0))
    _depth_images.crop(depth, limit, result)
    return result


class ValidWindow(NamedTuple):
    """``sensor_msgs/RegionOfInterest`` fields of the valid pixels' bounding box (pixels)."""

    x_offset: int
    y_offset: int
    width: int
    height: int


class Disparity(NamedTuple):
    """What a ``stereo_msgs/DisparityImage`` holds: ``image`` (float32 pixels, HxW), ``f``
    (pixels), ``t`` (metres), ``min_disparity``, ``max_disparity``, ``delta_d`` (pixels) and
    ``valid_window``; f, t, min/max disparity and delta_d as the float32 values the message
    stores."""

    image: np.ndarray
    f: float
    t: float
    min_disparity: float
    max_disparity: float
    delta_d: float
    valid_window: ValidWindow


def _float32(value):
    return float(np.float32(value))


def disparity_from_depth(depth, focal_length, baseline, *, depth_scale=0.001, min_range=0.0,
                         max_range=math.inf, delta_d=0.125, out=None):
    """depth_image_proc ``disparity``: disparity ``d = f * T / Z`` pixels for each valid depth
    ``Z`` metres, 0 where there is no reading (as depth_image_proc, whose image starts at 0).

    As depth_image_proc: f and T are stored as float32 (the message's fields), the constant
    ``f * T / depth_scale`` is float32 and each pixel is ``constant / raw`` in float32;
    ``min_disparity = f * T / max_range`` (0 for an infinite max_range),
    ``max_disparity = f * T / min_range`` (+inf for min_range 0); min_range and max_range only
    set those fields, no pixel is dropped by them (a consumer treats ``d < min_disparity`` as
    invalid, so with a finite max_range the 0 of a missing pixel reads as invalid).
    Differs: a float32 depth of 0, a negative or an inf one is no reading (depth_image_proc
    divides by it: inf or negative disparities); ``valid_window`` is the bounding box of the
    pixels with a disparity (depth_image_proc leaves it all zeros; here too when no pixel is
    valid); focal length and baseline must be positive (depth_image_proc publishes whatever
    ``-P[3] / P[0]`` gives, e.g. 0 for a monocular CameraInfo).

    focal_length: pixels (> 0; the right camera's P[0]). baseline: metres (> 0; the right
    camera's ``-P[3] / P[0]``). depth_scale: metres per uint16 unit. min_range, max_range:
    metres, ``0 <= min_range < max_range <= inf``. delta_d: pixels, > 0 (depth_image_proc's
    default 1/8). out: float32 HxW, see the module docstring.
    """
    depth = _depth(depth)
    f = _float32(_positive(focal_length, 'focal_length'))
    t = _float32(_positive(baseline, 'baseline'))
    scale = _positive(depth_scale, 'depth_scale')
    for name, value in (('min_range', min_range), ('max_range', max_range)):
        if isinstance(value, bool) or not isinstance(value, Real) or math.isnan(value):
            raise ValueError(f'{name} must be a number of metres, got {value!r}')
    if not 0 <= min_range < max_range:
        raise ValueError(f'ranges must satisfy 0 <= min_range < max_range (max_range may be '
                         f'inf), got min_range={min_range!r}, max_range={max_range!r}')
    delta = _float32(_positive(delta_d, 'delta_d'))
    result = _output(out, depth.shape, _FLOAT32)
    f32, t32 = np.float32(f), np.float32(t)
    unit = np.float32(scale) if depth.dtype == _UINT16 else np.float32(1)
    with np.errstate(over='ignore'):
        constant = f32 * t32 / unit
    top, bottom, left, right = _depth_images.disparity(depth, constant, result)
    window = (ValidWindow(left, top, right - left + 1, bottom - top + 1) if bottom >= 0 else
              ValidWindow(0, 0, 0, 0))
    ft = float(f32 * t32)
    min_disparity = _float32(ft / max_range) if max_range != math.inf else 0.0
    max_disparity = _float32(ft / min_range) if min_range > 0 else math.inf
    return Disparity(result, f, t, min_disparity, max_disparity, delta, window)
