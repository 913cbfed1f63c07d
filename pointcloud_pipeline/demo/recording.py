"""Writing recorded outputs: BEV PNG, binary PLY cloud, JSON statistics (no ROS).

Every file is written to a temporary name in the target directory and renamed into place, so a
failure never leaves a partial output file.
"""
import json

import cv2
import numpy as np
from plyfile import PlyData, PlyElement

from ..files import atomic_output, write_atomically


def write_png(path, image):
    """Write an H x W (x 3 BGR) uint8 image as PNG."""
    ok, encoded = cv2.imencode('.png', np.ascontiguousarray(image))
    if not ok:
        raise ValueError(f'could not encode an image of shape {image.shape} as PNG')
    return write_atomically(path, encoded, make_parents=True)


def write_ply(path, xyz, rgb=None):
    """Write ``N x 3`` points (metres) and optional ``N x 3`` uint8 colours as binary PLY
    (vertex properties x, y, z float32 and red, green, blue uchar)."""
    xyz = np.asarray(xyz, dtype=np.float32).reshape(-1, 3)
    dtype = [('x', 'f4'), ('y', 'f4'), ('z', 'f4')]
    if rgb is not None:
        rgb = np.asarray(rgb, dtype=np.uint8).reshape(-1, 3)
        if len(rgb) != len(xyz):
            raise ValueError(f'{len(rgb)} colours for {len(xyz)} points')
        dtype += [('red', 'u1'), ('green', 'u1'), ('blue', 'u1')]
    vertices = np.empty(len(xyz), dtype=dtype)
    vertices['x'], vertices['y'], vertices['z'] = xyz.T
    if rgb is not None:
        vertices['red'], vertices['green'], vertices['blue'] = rgb.T
    ply = PlyData([PlyElement.describe(vertices, 'vertex')], text=False)
    with atomic_output(path, make_parents=True) as temporary:
        ply.write(temporary)
    return path


def write_json(path, data):
    """Write ``data`` as indented JSON."""
    text = json.dumps(data, indent=2, sort_keys=True) + '\n'
    return write_atomically(path, text.encode(), make_parents=True)


def unpack_rgb(packed):
    """PCL-style packed colours (float32 or uint32 views of 0x00RRGGBB) -> ``N x 3`` uint8."""
    values = np.ascontiguousarray(packed).view(np.uint32)
    return np.stack([(values >> 16) & 0xFF, (values >> 8) & 0xFF, values & 0xFF],
                    axis=-1).astype(np.uint8)


def finite_points(x, y, z, packed_rgb=None):
    """``N x 3`` float32 points with any NaN/inf coordinate removed, and their colours."""
    xyz = np.stack([x, y, z], axis=-1).astype(np.float32, copy=False)
    keep = np.isfinite(xyz).all(axis=1)
    rgb = None if packed_rgb is None else unpack_rgb(packed_rgb)[keep]
    return xyz[keep], rgb
