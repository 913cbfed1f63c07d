"""Pre- and post-processing around a monocular depth network (numpy + OpenCV; no tinygrad).

:func:`preprocess` turns a camera image into the network input of a :class:`.ModelProfile`,
:func:`postprocess` turns the network output back into a depth image in metres at the camera
resolution, and :func:`fit_inverse_relative` calibrates ``inverse_relative`` profiles.

Frames and units: the depth image is pixel-aligned with the input image (same camera optical
frame: x right, y down, z forward); depth is the z coordinate in metres, not the ray length;
``H x W float32``, NaN where there is no valid depth (the ``32FC1`` convention). Boxes are
``(x, y, width, height)`` in pixels.

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
"""
from typing import NamedTuple

import cv2
import numpy as np

from ..layouts import color_encoding
from .profiles import INTERPOLATIONS

CV2_INTERPOLATIONS = {name: getattr(cv2, f'INTER_{name.upper()}') for name in INTERPOLATIONS}


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


def _checked_pixels(image, encoding):
    """Check ``image`` against ``encoding``; returns (H x W x C uint8 array, rgb_index)."""
    layout = color_encoding(encoding)
    image = np.asarray(image)
    if image.dtype != layout.dtype:
        raise ValueError(f'{encoding} image must be {layout.dtype}, got {image.dtype}')
    if image.ndim == 2 and layout.channels == 1:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] != layout.channels:
        raise ValueError(f'{encoding} image must be H x W x {layout.channels}, got shape '
                         f'{image.shape}')
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f'empty image: shape {image.shape}')
    return image, layout.rgb_index


def _to_network_channels(pixels, rgb_index, profile):
    """H x W x C uint8 whose red, green, blue are at ``rgb_index`` -> H x W x 3 uint8 in the
    profile's channel order (alpha dropped, grey replicated)."""
    order = tuple(rgb_index[channel] for channel in profile.network_channels_from_rgb)
    if order == (0, 1, 2):
        return pixels[:, :, :3]
    if order == (2, 1, 0):
        return pixels[:, :, 2::-1]
    return pixels[:, :, list(order)]  # mono8: (0, 0, 0)


def preprocess(image, encoding, profile):
    """Camera image -> network input tensor.

    image: ``H x W x C`` uint8 (``H x W`` for mono8) in ``encoding`` (rgb8, bgr8, rgba8, bgra8 or
    mono8; alpha is dropped, mono is replicated to three channels).
    Returns ``(tensor, placement)``: tensor is ``1 x 3 x h x w`` (NCHW) or ``1 x h x w x 3`` (NHWC)
    float32 holding ``(pixel * scale - mean) / std`` in the profile's channel order, and the
    :class:`Placement` that :func:`postprocess` needs. ValueError for a bad image or encoding.
    """
    pixels, rgb_index = _checked_pixels(image, encoding)
    placement = compute_placement(pixels.shape[:2], profile)
    sx, sy, sw, sh = placement.source
    tx, ty, tw, th = placement.target
    net_h, net_w = placement.network_size
    region = pixels[sy:sy + sh, sx:sx + sw]
    # resize first (fewer pixels to convert), then reorder channels
    if (sw, sh) != (tw, th):
        filter_ = CV2_INTERPOLATIONS[profile.interpolation]
        if region.shape[2] == 1:
            region = cv2.resize(region[:, :, 0], (tw, th), interpolation=filter_)[:, :, None]
        else:
            region = cv2.resize(np.ascontiguousarray(region), (tw, th), interpolation=filter_)
    region = _to_network_channels(region, rgb_index, profile)
    gain = np.float32(profile.scale) / np.asarray(profile.std, np.float32)
    offset = -np.asarray(profile.mean, np.float32) / np.asarray(profile.std, np.float32)
    if profile.layout == 'NCHW':
        network = np.empty((1, 3, net_h, net_w), np.float32)
        planes = network[0]
    else:
        network = np.empty((1, net_h, net_w, 3), np.float32)
        planes = network[0].transpose(2, 0, 1)
    letterboxed = (tw, th) != (net_w, net_h)
    # one channel plane at a time: numpy's inner loop over a length-3 axis is ~10x slower
    for channel, plane in enumerate(planes):
        if letterboxed:  # the border: (pad_value * scale - mean) / std
            plane[...] = np.float32(profile.pad_value) * gain[channel] + offset[channel]
            plane = plane[ty:ty + th, tx:tx + tw]
        np.multiply(region[:, :, channel], gain[channel], out=plane, dtype=np.float32)
        plane += offset[channel]
    return network, placement


def output_to_depth(raw, profile, focal_px=None, disparity_scale=1.0):
    """Raw network output -> depth in metres (float32, NaN where invalid); see the module
    docstring (output kinds).

    raw: array of network output values. focal_px: camera fx in pixels for ``disparity`` profiles
    whose ``focal_px`` is null. disparity_scale: camera-image pixels per network-output pixel along
    x (disparity profiles only; :func:`postprocess` computes it from the placement).
    """
    raw = np.asarray(raw, dtype=np.float32)
    with np.errstate(divide='ignore', invalid='ignore', over='ignore'):
        if profile.output_kind == 'metric' and (profile.output_scale, profile.output_shift) == (
                1.0, 0.0):
            depth = raw  # already metres (FastDepth): two passes over the image saved
        elif profile.output_kind == 'metric':
            depth = raw * np.float32(profile.output_scale) + np.float32(profile.output_shift)
        elif profile.output_kind == 'inverse_relative':
            inverse = raw * np.float32(profile.output_scale) + np.float32(profile.output_shift)
            depth = np.where(inverse > 0, np.float32(1.0) / inverse, np.float32(np.nan))
        else:
            focal = profile.focal_px if profile.focal_px is not None else focal_px
            if focal is None or not focal > 0:
                raise ValueError(f'profile {profile.name!r} outputs disparity and has no '
                                 f'focal_px: the camera fx is needed (no camera_info yet?), '
                                 f'got {focal!r}')
            disparity = raw * np.float32(disparity_scale)
            depth = np.where(disparity > 0, np.float32(profile.baseline_m * focal) / disparity,
                             np.float32(np.nan))
    # valid: finite, > 0, >= min_depth_m and <= max_depth_m (comparisons with NaN are false)
    lowest, highest = np.float32(profile.min_depth_m), np.float32(np.inf)
    if profile.max_depth_m is not None:
        highest = np.float32(min(profile.max_depth_m, float(np.finfo(np.float32).max)))
    valid = depth > 0 if lowest <= 0 else depth >= lowest
    valid &= depth <= highest if highest < np.inf else depth < highest
    return np.where(valid, depth, np.float32(np.nan))


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
    image, see :func:`pointcloud_pipeline.camera.scale_intrinsics`). focal_px: camera fx for
    disparity profiles without one.
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
