"""Monocular depth: an RGB camera image -> a depth image in metres, by an ONNX model in tinygrad.

Three parts, each usable on its own:

* :class:`ModelProfile` / :func:`load_profile`: what a network expects and what it returns (input
  size, channel order, layout, normalisation, resize mode, output kind and its conversion to
  metres), from a small YAML file (``config/models/<name>.yaml``).
* :func:`preprocess` / :func:`postprocess` / :func:`output_to_depth`: the numpy/OpenCV maths
  around the network (no tinygrad, no ROS).
* :class:`DepthEstimator`: loads the ONNX file with ``tinygrad.nn.onnx.OnnxRunner``, checks it
  against the profile, runs it under ``TinyJit`` and returns ``H x W float32`` metres at the camera
  resolution (NaN where there is no valid depth, the ``32FC1`` convention).

Frames: the depth image is pixel-aligned with the input image (same camera optical frame: x right,
y down, z forward); depth is the z coordinate in metres, not the ray length.

Resize modes (``ModelProfile.resize``), camera image ``H x W`` -> network input ``h x w``:

* ``stretch``: the whole image is resized to ``h x w`` (aspect ratio not kept); the output is
  resized back, so every camera pixel gets a depth.
* ``letterbox``: scaled by ``min(h/H, w/W)`` keeping the aspect ratio, centred, the border filled
  with ``pad_value``; the padded part of the output is discarded and the rest resized back, so
  every camera pixel gets a depth.
* ``crop``: scaled by ``max(h/H, w/W)`` keeping the aspect ratio, centre-cropped to ``h x w``;
  only the central part of the camera image is seen by the network, the pixels outside it are NaN.

Output kinds (``ModelProfile.output_kind``), ``y`` the raw network output:

* ``metric``: ``depth_m = output_scale * y + output_shift`` (FastDepth: metres, scale 1, shift 0).
* ``inverse_relative``: ``depth_m = 1 / (output_scale * y + output_shift)``; the network predicts
  inverse depth up to an unknown scale and shift (MiDaS, Depth-Anything), so ``output_scale`` and
  ``output_shift`` must be calibrated for the camera and scene (:func:`fit_inverse_relative` does
  it by least squares from a few known depths). Pixels where ``output_scale * y + output_shift <=
  0`` are NaN.
* ``disparity``: ``depth_m = baseline_m * focal_px / d``, with ``d`` the disparity converted from
  network-output pixels to camera-image pixels and ``focal_px`` the camera's ``fx`` (the profile's
  value, or the camera_info's when the profile leaves it null).

Every kind then sets non-finite depths, depths ``<= 0``, ``< min_depth_m`` or ``> max_depth_m`` to
NaN (invalid, not saturated: a saturated value would put fake points at the limit).

Devices: ``DepthEstimator(device=None)`` uses tinygrad's default device: the ``DEV`` environment
variable when set (``DEV=CPU``, ``DEV=CUDA``, ``DEV=METAL``, ``DEV=CPU:LLVM`` for the LLVM back
end...), otherwise the first usable one of METAL, AMD, NV, CUDA, QCOM, CL, CPU. ``device='CUDA'``
(etc.) selects one explicitly. tinygrad's CPU device compiles kernels with the ``clang`` binary
(``make setup`` installs it). Compiled kernels are cached in ``~/.cache/tinygrad`` (``CACHEDB``
moves the cache); ``NUM_CPU_THREADS`` caps the CPU device's threads.
"""
from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
import threading
import time
from typing import NamedTuple

import cv2
import numpy as np
import yaml

from ..files import config_dirs


RESIZE_MODES = ('stretch', 'letterbox', 'crop')
OUTPUT_KINDS = ('metric', 'inverse_relative', 'disparity')
CHANNEL_ORDERS = ('rgb', 'bgr')
LAYOUTS = ('NCHW', 'NHWC')
INTERPOLATIONS = {
    'nearest': cv2.INTER_NEAREST,
    'linear': cv2.INTER_LINEAR,
    'cubic': cv2.INTER_CUBIC,
    'area': cv2.INTER_AREA,
}
# encoding -> (channels, how to reach 3-channel RGB); see image.COLOR_ENCODINGS
INPUT_ENCODINGS = {
    'rgb8': 3, 'bgr8': 3, 'rgba8': 4, 'bgra8': 4, 'mono8': 1,
}


@dataclasses.dataclass(frozen=True)
class ModelProfile:
    """How to feed a monocular depth network and read its output (see the module docstring).

    Every field is a key of the profile YAML file of the same name.
    """

    name: str
    input_size: tuple[int, int]          # network input (height, width), pixels
    input_name: str | None = None        # ONNX input name; None: the model's only input
    output: int | str = 0                # ONNX output: index or name
    channel_order: str = 'rgb'           # 'rgb' | 'bgr' channel order the network expects
    layout: str = 'NCHW'                 # 'NCHW' | 'NHWC'
    scale: float = 1.0 / 255.0           # x = (pixel * scale - mean) / std, pixel in 0..255
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)   # in the network's channel order
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    resize: str = 'stretch'              # 'stretch' | 'letterbox' | 'crop'
    interpolation: str = 'linear'        # image resize filter: nearest | linear | cubic | area
    pad_value: float = 0.0               # letterbox border in pixel units (0..255), not normalised
    output_kind: str = 'metric'          # 'metric' | 'inverse_relative' | 'disparity'
    output_scale: float = 1.0            # see output_to_depth
    output_shift: float = 0.0
    baseline_m: float | None = None      # disparity only: stereo baseline the network learnt
    focal_px: float | None = None        # disparity only: camera fx, pixels; None: camera_info
    min_depth_m: float = 0.0             # depths below are invalid (NaN)
    max_depth_m: float | None = None     # depths above are invalid (NaN); None: no limit
    description: str = ''

    def __post_init__(self):
        def fail(key, why):
            raise ValueError(f'model profile {self.name!r}: {key} {why}')

        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f'model profile: name must be a non-empty string, got {self.name!r}')
        size = self.input_size
        if (not isinstance(size, (list, tuple)) or len(size) != 2
                or not all(_is_int(v) and v > 0 for v in size)):
            fail('input_size', f'must be [height, width] of positive integers, got {size!r}')
        object.__setattr__(self, 'input_size', (int(size[0]), int(size[1])))
        if self.input_name is not None and not (isinstance(self.input_name, str)
                                                and self.input_name):
            fail('input_name', f'must be a non-empty string or null, got {self.input_name!r}')
        if not (isinstance(self.output, str) and self.output) and not (
                _is_int(self.output) and self.output >= 0):
            fail('output', f'must be an output index >= 0 or an output name, got {self.output!r}')
        for key, allowed in (('channel_order', CHANNEL_ORDERS), ('layout', LAYOUTS),
                             ('resize', RESIZE_MODES), ('interpolation', tuple(INTERPOLATIONS)),
                             ('output_kind', OUTPUT_KINDS)):
            if getattr(self, key) not in allowed:
                fail(key, f'must be one of {", ".join(allowed)}, got {getattr(self, key)!r}')
        for key in ('mean', 'std'):
            value = getattr(self, key)
            if _is_number(value):
                value = (value,) * 3
            if (not isinstance(value, (list, tuple)) or len(value) != 3
                    or not all(_is_number(v) and math.isfinite(v) for v in value)):
                fail(key, f'must be 3 finite numbers (or one for all channels), got {value!r}')
            object.__setattr__(self, key, tuple(float(v) for v in value))
        if any(v == 0 for v in self.std):
            fail('std', f'must not contain 0, got {self.std!r}')
        for key in ('scale', 'pad_value', 'output_scale', 'output_shift', 'min_depth_m'):
            value = getattr(self, key)
            if not _is_number(value) or not math.isfinite(value):
                fail(key, f'must be a finite number, got {value!r}')
            object.__setattr__(self, key, float(value))
        if self.scale <= 0:
            fail('scale', f'must be > 0, got {self.scale}')
        if self.output_scale == 0:
            fail('output_scale', 'must not be 0')
        if self.min_depth_m < 0:
            fail('min_depth_m', f'must be >= 0, got {self.min_depth_m}')
        for key in ('baseline_m', 'focal_px', 'max_depth_m'):
            value = getattr(self, key)
            if value is None:
                continue
            if not _is_number(value) or not value > 0 or math.isnan(value):
                fail(key, f'must be a number > 0 or null, got {value!r}')
            object.__setattr__(self, key, float(value))
        if self.max_depth_m is not None and self.max_depth_m <= self.min_depth_m:
            fail('max_depth_m', f'({self.max_depth_m}) must be greater than min_depth_m '
                                f'({self.min_depth_m})')
        if self.output_kind == 'disparity' and self.baseline_m is None:
            fail('baseline_m', 'is required when output_kind is disparity')
        if self.output_kind != 'disparity':
            for key in ('baseline_m', 'focal_px'):
                if getattr(self, key) is not None:
                    fail(key, f'is only used when output_kind is disparity (this is '
                              f'{self.output_kind})')
        if not isinstance(self.description, str):
            fail('description', 'must be a string')

    @property
    def network_channels_from_rgb(self):
        """Channel indices that turn an RGB image into the network's channel order."""
        return (0, 1, 2) if self.channel_order == 'rgb' else (2, 1, 0)


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


PROFILE_KEYS = tuple(f.name for f in dataclasses.fields(ModelProfile))


def profile_from_dict(data, source='<dict>'):
    """A validated :class:`ModelProfile` from a mapping (a parsed profile YAML).

    Raises ValueError naming the unknown, missing or bad key and the source.
    """
    if not isinstance(data, dict):
        raise ValueError(f'{source}: a model profile must be a mapping of keys, got '
                         f'{type(data).__name__}')
    unknown = sorted(set(data) - set(PROFILE_KEYS), key=str)
    if unknown:
        raise ValueError(f'{source}: unknown key {unknown[0]!r} (known keys: '
                         f'{", ".join(PROFILE_KEYS)})')
    for required in ('name', 'input_size'):
        if required not in data:
            raise ValueError(f'{source}: missing required key {required!r}')
    try:
        return ModelProfile(**data)
    except ValueError as exc:
        raise ValueError(f'{source}: {exc}') from None


def profile_dirs():
    """Directories searched for profiles by name: the source tree's config/models, then the
    installed share/pointcloud_pipeline/config/models (when the package is installed)."""
    return config_dirs('models')


def available_profiles():
    """Names of the profiles shipped with the package (``config/models/*.yaml``)."""
    return sorted({p.stem for d in profile_dirs() for p in d.glob('*.yaml')})


def load_profile(path_or_name):
    """Load a :class:`ModelProfile` from a YAML file path or a shipped profile name.

    ``path_or_name``: an existing file, a path ending in .yaml/.yml, or a name from
    :func:`available_profiles` (e.g. ``'midas_v21_small'``). Raises FileNotFoundError when no such
    profile exists and ValueError (naming the key) when the file is not a valid profile.
    """
    text = os.fspath(path_or_name)
    path = Path(text).expanduser()
    if not (path.is_file() or path.suffix in ('.yaml', '.yml') or os.sep in text):
        candidates = [d / f'{text}.yaml' for d in profile_dirs()]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            raise FileNotFoundError(f'no model profile named {text!r} (shipped profiles: '
                                    f'{", ".join(available_profiles()) or "none found"}; '
                                    f'or give a YAML file path)')
    if not path.is_file():
        raise FileNotFoundError(f'model profile file not found: {path}')
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f'{path}: cannot read the profile YAML: {exc}') from None
    return profile_from_dict(data, source=str(path))


# ---------------------------------------------------------------------------------------------
# Geometry of the resize, pre- and post-processing (numpy + OpenCV)

class Placement(NamedTuple):
    """Where the camera image went in the network input (all boxes ``(x, y, width, height)``).

    image_size: camera image (height, width). network_size: network input (height, width).
    source: the camera-image box the network sees (the whole image except in ``crop`` mode).
    target: the network-input box it fills (the whole input except in ``letterbox`` mode).
    """

    image_size: tuple[int, int]
    network_size: tuple[int, int]
    source: tuple[int, int, int, int]
    target: tuple[int, int, int, int]


def compute_placement(image_size, profile):
    """The :class:`Placement` of an ``image_size = (height, width)`` image for ``profile``."""
    height, width = (int(v) for v in image_size)
    if height <= 0 or width <= 0:
        raise ValueError(f'empty image: {height} x {width}')
    net_h, net_w = profile.input_size
    full_image = (0, 0, width, height)
    full_network = (0, 0, net_w, net_h)
    if profile.resize == 'stretch':
        return Placement((height, width), (net_h, net_w), full_image, full_network)
    if profile.resize == 'letterbox':
        factor = min(net_h / height, net_w / width)
        content_w = min(net_w, max(1, round(width * factor)))
        content_h = min(net_h, max(1, round(height * factor)))
        target = ((net_w - content_w) // 2, (net_h - content_h) // 2, content_w, content_h)
        return Placement((height, width), (net_h, net_w), full_image, target)
    factor = max(net_h / height, net_w / width)  # crop
    source_w = min(width, max(1, round(net_w / factor)))
    source_h = min(height, max(1, round(net_h / factor)))
    source = ((width - source_w) // 2, (height - source_h) // 2, source_w, source_h)
    return Placement((height, width), (net_h, net_w), source, full_network)


def _as_rgb_pixels(image, encoding):
    """Check ``image`` against ``encoding``; returns (H x W x C uint8 array, channels)."""
    if encoding not in INPUT_ENCODINGS:
        raise ValueError(f'unsupported colour encoding {encoding!r} (expected one of '
                         f'{", ".join(INPUT_ENCODINGS)})')
    image = np.asarray(image)
    channels = INPUT_ENCODINGS[encoding]
    if image.dtype != np.uint8:
        raise ValueError(f'{encoding} image must be uint8, got {image.dtype}')
    if image.ndim == 2 and channels == 1:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] != channels:
        raise ValueError(f'{encoding} image must be H x W x {channels}, got shape {image.shape}')
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f'empty image: shape {image.shape}')
    return image


def _to_network_channels(pixels, encoding, profile):
    """H x W x C uint8 in ``encoding`` -> H x W x 3 uint8 in the profile's channel order."""
    if encoding == 'mono8':
        return np.repeat(pixels.reshape(pixels.shape[0], pixels.shape[1], 1), 3, axis=2)
    source_order = 'rgb' if encoding in ('rgb8', 'rgba8') else 'bgr'
    pixels = pixels[:, :, :3]
    if source_order != profile.channel_order:
        pixels = pixels[:, :, ::-1]
    return pixels


def preprocess(image, encoding, profile):
    """Camera image -> network input tensor.

    image: ``H x W x C`` uint8 (``H x W`` for mono8) in ``encoding`` (rgb8, bgr8, rgba8, bgra8 or
    mono8; alpha is dropped, mono is replicated to three channels).
    Returns ``(tensor, placement)``: tensor is ``1 x 3 x h x w`` (NCHW) or ``1 x h x w x 3`` (NHWC)
    float32 holding ``(pixel * scale - mean) / std`` in the profile's channel order, and the
    :class:`Placement` that :func:`postprocess` needs. ValueError for a bad image or encoding.
    """
    pixels = _as_rgb_pixels(image, encoding)
    placement = compute_placement(pixels.shape[:2], profile)
    sx, sy, sw, sh = placement.source
    tx, ty, tw, th = placement.target
    net_h, net_w = placement.network_size
    region = pixels[sy:sy + sh, sx:sx + sw]
    # resize first (fewer pixels to convert), then reorder channels
    if (sw, sh) != (tw, th):
        filter_ = INTERPOLATIONS[profile.interpolation]
        if region.shape[2] == 1:
            region = cv2.resize(region[:, :, 0], (tw, th), interpolation=filter_)[:, :, None]
        else:
            region = cv2.resize(np.ascontiguousarray(region), (tw, th), interpolation=filter_)
    region = _to_network_channels(region, encoding, profile)
    gain = np.float32(profile.scale) / np.asarray(profile.std, np.float32)
    offset = -np.asarray(profile.mean, np.float32) / np.asarray(profile.std, np.float32)
    if (tw, th) == (net_w, net_h):
        network = region.astype(np.float32)
    else:
        network = np.full((net_h, net_w, 3), profile.pad_value, np.float32)
        network[ty:ty + th, tx:tx + tw] = region
    network *= gain
    network += offset
    if profile.layout == 'NCHW':
        network = network.transpose(2, 0, 1)
    return np.ascontiguousarray(network[None]), placement


def output_to_depth(raw, profile, focal_px=None, disparity_scale=1.0):
    """Raw network output -> depth in metres (float32, NaN where invalid); see the module docstring.

    raw: array of network output values. focal_px: camera fx in pixels for ``disparity`` profiles
    whose ``focal_px`` is null. disparity_scale: camera-image pixels per network-output pixel along
    x (disparity profiles only; :func:`postprocess` computes it from the placement).
    """
    raw = np.asarray(raw, dtype=np.float32)
    with np.errstate(divide='ignore', invalid='ignore', over='ignore'):
        if profile.output_kind == 'metric':
            depth = raw * np.float32(profile.output_scale) + np.float32(profile.output_shift)
        elif profile.output_kind == 'inverse_relative':
            inverse = raw * np.float32(profile.output_scale) + np.float32(profile.output_shift)
            depth = np.where(inverse > 0, np.float32(1.0) / inverse, np.float32(np.nan))
        else:
            focal = profile.focal_px if profile.focal_px is not None else focal_px
            if focal is None or not focal > 0:
                raise ValueError(f'profile {profile.name!r} outputs disparity and has no focal_px: '
                                 f'the camera fx is needed (no camera_info yet?), got {focal!r}')
            disparity = raw * np.float32(disparity_scale)
            depth = np.where(disparity > 0,
                             np.float32(profile.baseline_m * focal) / disparity, np.float32(np.nan))
        invalid = ~np.isfinite(depth) | (depth <= 0) | (depth < profile.min_depth_m)
        if profile.max_depth_m is not None:
            invalid |= depth > profile.max_depth_m
    depth = depth.astype(np.float32, copy=False)
    depth[invalid] = np.nan
    return depth


def _squeeze_output(raw):
    """Network output of shape (1, 1, h, w), (1, h, w), (1, h, w, 1) or (h, w) -> (h, w)."""
    out = np.asarray(raw)
    while out.ndim > 2 and out.shape[0] == 1:
        out = out[0]
    if out.ndim == 3 and out.shape[-1] == 1:
        out = out[..., 0]
    if out.ndim != 2:
        raise ValueError(f'expected a single-channel depth map from the network, got shape '
                         f'{np.shape(raw)}')
    return out


def postprocess(raw, placement, profile, output_size=None, focal_px=None):
    """Network output -> depth image in metres, aligned with the camera image.

    raw: network output (1 x 1 x h' x w', 1 x h' x w', 1 x h' x w' x 1 or h' x w'; h' x w' may
    differ from the input size). placement: from :func:`preprocess`. output_size: (height, width)
    of the result; None: the camera image size (a different size is a plain resize of the camera
    image, see :func:`scale_intrinsics`). focal_px: camera fx for disparity profiles without one.
    Returns ``height x width`` float32 metres, NaN where invalid or outside a ``crop``.
    """
    out = _squeeze_output(raw).astype(np.float32, copy=False)
    image_h, image_w = placement.image_size
    out_h, out_w = (image_h, image_w) if output_size is None else (int(v) for v in output_size)
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f'output_size must be positive, got {output_size!r}')
    net_h, net_w = placement.network_size
    raw_h, raw_w = out.shape
    # the network-input target box, in network-output pixels
    tx, ty, tw, th = placement.target
    fx, fy = raw_w / net_w, raw_h / net_h
    x0, y0 = round(tx * fx), round(ty * fy)
    x1, y1 = max(x0 + 1, round((tx + tw) * fx)), max(y0 + 1, round((ty + th) * fy))
    region = out[y0:y1, x0:x1]
    # the camera source box, in output-image pixels
    sx, sy, sw, sh = placement.source
    gx, gy = out_w / image_w, out_h / image_h
    dx0, dy0 = round(sx * gx), round(sy * gy)
    dx1, dy1 = max(dx0 + 1, round((sx + sw) * gx)), max(dy0 + 1, round((sy + sh) * gy))
    if region.shape != (dy1 - dy0, dx1 - dx0):
        region = cv2.resize(np.ascontiguousarray(region), (dx1 - dx0, dy1 - dy0),
                            interpolation=cv2.INTER_LINEAR)
    disparity_scale = sw / (x1 - x0)  # camera-image pixels per network-output pixel along x
    depth = output_to_depth(region, profile, focal_px=focal_px, disparity_scale=disparity_scale)
    if (dx0, dy0, dx1, dy1) == (0, 0, out_w, out_h):
        return depth
    full = np.full((out_h, out_w), np.nan, np.float32)
    full[dy0:dy1, dx0:dx1] = depth
    return full


def fit_inverse_relative(raw, depth_m, valid=None):
    """Least-squares ``(output_scale, output_shift)`` for an ``inverse_relative`` profile.

    raw: network output resized to the depth image (e.g. by a stretch to the camera size);
    depth_m: known depths in metres (a depth sensor frame, measured points), NaN/0 = unknown;
    valid: optional boolean mask. Solves ``1 / depth = output_scale * raw + output_shift``.
    Raises ValueError with fewer than 2 usable pixels or a degenerate (constant) ``raw``.
    """
    raw = np.asarray(raw, np.float64).ravel()
    depth = np.asarray(depth_m, np.float64).ravel()
    if raw.shape != depth.shape:
        raise ValueError(f'raw has {raw.size} values but depth_m has {depth.size}')
    mask = np.isfinite(raw) & np.isfinite(depth) & (depth > 0)
    if valid is not None:
        mask &= np.asarray(valid, bool).ravel()
    if mask.sum() < 2 or np.ptp(raw[mask]) == 0:
        raise ValueError('need at least 2 pixels with known depth and varying network output')
    design = np.stack([raw[mask], np.ones(mask.sum())], axis=1)
    (scale, shift), *_ = np.linalg.lstsq(design, 1.0 / depth[mask], rcond=None)
    return float(scale), float(shift)


# ---------------------------------------------------------------------------------------------
# tinygrad

def select_device(device=None):
    """Canonical tinygrad device name, checked by compiling and running a one-element kernel.

    device: None or '' for tinygrad's default (``DEV`` env var, else the first usable device), or a
    name such as 'CPU', 'CUDA', 'METAL', 'CUDA:1'. Raises RuntimeError saying what is missing (the
    CPU device needs the clang binary) when the device cannot run kernels.
    """
    from tinygrad import Device, Tensor
    try:
        name = Device.canonicalize(device or None)
        probe = (Tensor([1.0], device=name) + 1.0).tolist()
        if probe != [2.0]:
            raise RuntimeError(f'probe kernel returned {probe}, expected [2.0]')
    except Exception as exc:  # tinygrad raises RuntimeError, FileNotFoundError (clang), ...
        requested = device or os.environ.get('DEV') or 'default'
        hint = ''
        if str(requested).upper().startswith(('CPU', 'DEFAULT')):
            hint = (' tinygrad\'s CPU device compiles kernels with the clang binary: install it '
                    '(make setup, or apt-get install clang).')
        raise RuntimeError(f'tinygrad device {requested!r} cannot run kernels: '
                           f'{type(exc).__name__}: {exc}.{hint}') from None
    return name


def _check_model_file(model_path):
    if model_path is None or os.fspath(model_path) == '':
        raise FileNotFoundError('no model file given (model_path is empty)')
    path = Path(os.fspath(model_path)).expanduser()
    if not path.exists():
        raise FileNotFoundError(f'model file not found: {path}')
    if not path.is_file():
        raise ValueError(f'model path is not a file: {path}')
    if not os.access(path, os.R_OK):
        raise ValueError(f'model file is not readable: {path}')
    return path


class DepthEstimator:
    """A monocular depth network (ONNX file) run by tinygrad, with its profile's pre- and
    post-processing.

    model_path: the .onnx file. profile: a :class:`ModelProfile`, a profile name or a YAML path.
    device: tinygrad device (None: tinygrad's default, see the module docstring).

    Construction loads and checks everything: FileNotFoundError (missing model or profile),
    ValueError (unreadable ONNX, or a profile that does not fit the model's inputs/outputs),
    RuntimeError (device unusable, e.g. no clang for CPU). :meth:`predict` is thread-safe
    (calls are serialised); call :meth:`warm_up` once before timing-critical use.
    """

    def __init__(self, model_path, profile, device=None):
        self.profile = profile if isinstance(profile, ModelProfile) else load_profile(profile)
        self.model_path = _check_model_file(model_path)
        self.device = select_device(device)
        from tinygrad import TinyJit
        from tinygrad.nn.onnx import OnnxRunner
        try:
            runner = OnnxRunner(self.model_path)
        except Exception as exc:  # the protobuf parser raises assorted errors on garbage
            raise ValueError(f'{self.model_path} is not a readable ONNX model: '
                             f'{type(exc).__name__}: {exc}') from None
        self.input_name, self.input_shape, self._input_dtype = self._match_input(runner)
        self.output_name = self._match_output(runner)
        self._runner = runner.to(self.device)
        self._jit = TinyJit(self._forward)
        self._lock = threading.Lock()

    def _match_input(self, runner):
        from tinygrad import dtypes
        profile = self.profile
        inputs = runner.graph_inputs
        where = f'{self.model_path.name} (profile {profile.name!r})'
        listing = ', '.join(f'{n} {tuple(v.shape)}' for n, v in inputs.items()) or 'none'
        if profile.input_name is None:
            if len(inputs) != 1:
                raise ValueError(f'{where}: the model has {len(inputs)} inputs ({listing}); set '
                                 f'input_name in the profile to choose one')
            name = next(iter(inputs))
        else:
            name = profile.input_name
            if name not in inputs:
                raise ValueError(f'{where}: profile input_name {name!r} is not an input of the '
                                 f'model (inputs: {listing})')
            if len(inputs) != 1:
                raise ValueError(f'{where}: the model has {len(inputs)} inputs ({listing}); only '
                                 f'single-input models are supported')
        spec = inputs[name]
        net_h, net_w = profile.input_size
        expected = (1, 3, net_h, net_w) if profile.layout == 'NCHW' else (1, net_h, net_w, 3)
        if len(spec.shape) != 4:
            raise ValueError(f'{where}: input {name!r} has rank {len(spec.shape)} '
                             f'{tuple(spec.shape)}, the profile needs rank 4 {profile.layout} '
                             f'{expected}')
        for axis, (model_dim, wanted) in enumerate(zip(spec.shape, expected)):
            if isinstance(model_dim, int) and model_dim != wanted:
                raise ValueError(
                    f'{where}: input {name!r} has shape {tuple(spec.shape)} but the profile '
                    f'(input_size {list(profile.input_size)}, layout {profile.layout}) needs '
                    f'{expected}: mismatch on axis {axis} ({model_dim} != {wanted})')
        if spec.dtype == dtypes.float32:
            dtype = np.float32
        elif spec.dtype == dtypes.float16:
            dtype = np.float16
        else:
            raise ValueError(f'{where}: input {name!r} has dtype {spec.dtype}, only float32 and '
                             f'float16 inputs are supported')
        return name, expected, dtype

    def _match_output(self, runner):
        outputs = runner.graph_outputs
        where = f'{self.model_path.name} (profile {self.profile.name!r})'
        wanted = self.profile.output
        if isinstance(wanted, str):
            if wanted not in outputs:
                raise ValueError(f'{where}: profile output {wanted!r} is not an output of the '
                                 f'model (outputs: {", ".join(outputs)})')
            return wanted
        if wanted >= len(outputs):
            raise ValueError(f'{where}: profile output index {wanted} but the model has '
                             f'{len(outputs)} output(s): {", ".join(outputs)}')
        return outputs[wanted]

    def _forward(self, network_input):
        return self._runner({self.input_name: network_input})[self.output_name]

    def run_network(self, network_input):
        """Run the network on a preprocessed ``input_shape`` array; returns its raw output (a
        new numpy array). The first calls compile (see :meth:`warm_up`)."""
        from tinygrad import Tensor
        network_input = np.ascontiguousarray(network_input, dtype=self._input_dtype)
        if network_input.shape != self.input_shape:
            raise ValueError(f'network input must have shape {self.input_shape}, got '
                             f'{network_input.shape}')
        with self._lock:
            output = self._jit(Tensor(network_input, device=self.device))
            # the JIT reuses its output buffer: copy it out before the next call
            return output.numpy().astype(np.float32, copy=True)

    def warm_up(self):
        """Compile and capture the JIT on a dummy frame (three runs); returns the seconds taken."""
        start = time.perf_counter()
        dummy = np.zeros(self.input_shape, self._input_dtype)
        for _ in range(3):  # TinyJit: 1st run plain (compiles), 2nd captures, 3rd replays
            self.run_network(dummy)
        return time.perf_counter() - start

    def predict(self, image, encoding='rgb8', output_size=None, focal_px=None):
        """Depth in metres for one camera image.

        image: ``H x W x 3|4`` uint8 (``H x W`` for mono8) in ``encoding`` (rgb8, bgr8, rgba8,
        bgra8, mono8). output_size: (height, width) of the result, None for ``H x W``.
        focal_px: camera fx (pixels), needed only by disparity profiles without ``focal_px``.
        Returns float32 metres, NaN where invalid. ValueError for a bad image or encoding.
        """
        network_input, placement = preprocess(image, encoding, self.profile)
        raw = self.run_network(network_input)
        return postprocess(raw, placement, self.profile, output_size=output_size,
                           focal_px=focal_px)
