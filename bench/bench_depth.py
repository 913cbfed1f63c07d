"""Depth image -> point cloud: the Cython kernel (1 thread, all threads) against the numpy
reference (test/reference_depth.py) and the memcpy floor of the output bytes.

The kernel is timed through the public ``depth_to_cloud`` (argument checks included) writing
into a preallocated ``out``. Frames: the real 7-Scenes frame-000000 (Kinect, ~11 % holes)
resized with nearest neighbour to each size when the sample data is present, else a synthetic
scene with clustered holes (~10 %).

Also at 640x480: the ray-table path (``rays=``: unrectified plumb_bob z-depth, and radial
depth) and intensity clouds (XYZI, XYZRGBI), each against the numpy reference and the memcpy
floor like the pinhole lines (whose targets are unchanged).
"""
import os
from pathlib import Path

import cv2
import numpy as np

from pointcloud_pipeline import _depth
from pointcloud_pipeline.camera import (CameraIntrinsics, intrinsics_from_camera_info,
                                        scale_intrinsics)
from pointcloud_pipeline.depth import depth_to_cloud, max_cloud_bytes
from pointcloud_pipeline.rays import ray_table
from reference_depth import reference_points
from timing import median_seconds, memcpy_floor_seconds, ms, print_table

SIZES = ((320, 240), (640, 480), (1280, 720), (1920, 1080))
SEVEN_SCENES_K = CameraIntrinsics(585.0, 585.0, 320.0, 240.0)  # at 640 x 480
TARGET_MEMCPY_RATIO = 1.5   # kernel (all threads) / memcpy floor at 640x480, at most
TARGET_NUMPY_SPEEDUP = 5.0  # numpy / kernel (all threads) at 640x480, at least
TARGET_SCALING = 1.7        # kernel 1 thread / 2 threads at 1920x1080, at least
PLUMB_BOB = (-0.28, 0.09, 0.0012, -0.0008, -0.015)  # a wide-angle lens (k1, k2, p1, p2, k3)


def real_frame():
    """7-Scenes frame-000000 (uint16 mm, 640 x 480) or None without the sample data."""
    configured = os.environ.get('POINTCLOUD_PIPELINE_DATA')
    repo = Path(__file__).resolve().parents[1]
    data = Path(configured) if configured else repo.parent / 'shared' / 'data'
    path = data / 'rgbd' / '7scenes_tsdf_fusion' / 'frame-000000.depth.png'
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED) if path.is_file() else None


def synthetic_frame(width, height, seed=0):
    """A room-like uint16 mm frame: slanted floor and wall, a box, smooth holes and speckle."""
    rng = np.random.default_rng(seed)
    v, u = np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]
    metres = np.minimum(3.5 - 1.5 * u, 1.0 / np.maximum(v - 0.35, 0.08))
    box = (np.abs(u - 0.55) < 0.12) & (np.abs(v - 0.6) < 0.15)
    metres[box] = 1.2 + 0.3 * u[box]
    depth = (metres * 1000 + rng.normal(0, 3, metres.shape)).astype(np.uint16)
    blobs = cv2.GaussianBlur(rng.random((height, width)).astype(np.float32), (0, 0),
                             sigmaX=max(width, height) / 80)
    depth[blobs > np.quantile(blobs, 0.92)] = 0  # clustered holes
    depth[rng.random((height, width)) < 0.02] = 0  # speckle
    return depth


def frames():
    """(width, height, depth, intrinsics, source) for every benchmark size."""
    real = real_frame()
    for width, height in SIZES:
        k, _ = scale_intrinsics(SEVEN_SCENES_K.camera_matrix(), None, (480, 640), (height, width))
        intrinsics = intrinsics_from_camera_info(k, None, use_projection_matrix=False)
        if real is not None:
            depth = cv2.resize(real, (width, height), interpolation=cv2.INTER_NEAREST)
            yield width, height, depth, intrinsics, '7-Scenes frame-000000 (resized)'
        else:
            yield width, height, synthetic_frame(width, height), intrinsics, 'synthetic'


def main(quick=False):
    repeat = 5 if quick else 25
    all_threads = _depth.max_threads()
    rows, ratios = [], {}
    source = None
    for width, height, depth, intrinsics, source in frames():
        if quick and width > 640:
            continue
        out = np.empty(max_cloud_bytes(depth.shape), np.uint8)
        nbytes = out.nbytes
        one = median_seconds(lambda: depth_to_cloud(depth, intrinsics, out=out, threads=1),
                             repeat=repeat)
        every = median_seconds(lambda: depth_to_cloud(depth, intrinsics, out=out, threads=0),
                               repeat=repeat)
        numpy_ref = median_seconds(lambda: reference_points(depth, intrinsics),
                                   repeat=max(repeat // 2, 3) if quick else 20)
        floor = memcpy_floor_seconds(nbytes, repeat=repeat)
        ratios[(width, height)] = (every / floor, numpy_ref / every, one / every)
        rows.append([f'{width}x{height}', f'{nbytes / 1e6:.1f}', ms(one), ms(every),
                     ms(numpy_ref), ms(floor), f'{every / floor:.2f}',
                     f'{numpy_ref / every:.1f}', f'{one / every:.2f}'])
    wait_policy = os.environ.get('OMP_WAIT_POLICY', 'unset')
    print_table(f'depth_to_cloud, organized XYZ, uint16 ({source}); {all_threads} threads = '
                f'all; OMP_WAIT_POLICY={wait_policy}; ms = median of {repeat}',
                ['size', 'MB out', 'kernel_1', f'kernel_{all_threads}', 'numpy', 'memcpy',
                 'all/memcpy', 'numpy/all', '1/all'], rows)
    variants_at_vga(repeat)
    extended_at_vga(repeat)
    print_targets(ratios, all_threads)


def variants_at_vga(repeat):
    """Dense and coloured clouds at 640 x 480 (7-Scenes colour when present)."""
    _, _, depth, intrinsics, _ = next(f for f in frames() if f[0] == 640)
    rgb = np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    out = np.empty(max_cloud_bytes(depth.shape), np.uint8)
    rows = []
    for label, kwargs in (('XYZ organized', dict()),
                          ('XYZ dense', dict(organized=False)),
                          ('XYZRGB organized', dict(color=rgb)),
                          ('XYZRGB dense', dict(organized=False, color=rgb)),
                          ('XYZ organized, decimation 2', dict(decimation_x=2, decimation_y=2))):
        one = median_seconds(lambda: depth_to_cloud(depth, intrinsics, out=out, threads=1,
                                                    **kwargs), repeat=repeat)
        every = median_seconds(lambda: depth_to_cloud(depth, intrinsics, out=out, threads=0,
                                                      **kwargs), repeat=repeat)
        ref_kwargs = {key: value for key, value in kwargs.items() if key != 'color'}
        if 'color' in kwargs:
            ref_kwargs['rgb'] = rgb
        numpy_ref = median_seconds(lambda: reference_points(depth, intrinsics, **ref_kwargs),
                                   repeat=max(repeat // 2, 3))
        nbytes = depth_to_cloud(depth, intrinsics, out=out, **kwargs).data.nbytes
        floor = memcpy_floor_seconds(nbytes, repeat=repeat)
        rows.append([label, f'{nbytes / 1e6:.2f}', ms(one), ms(every), ms(numpy_ref), ms(floor),
                     f'{every / floor:.2f}', f'{numpy_ref / every:.1f}', f'{one / every:.2f}'])
    print_table('depth_to_cloud variants at 640x480',
                ['variant', 'MB out', 'kernel_1', 'kernel_all', 'numpy', 'memcpy',
                 'all/memcpy', 'numpy/all', '1/all'], rows)


def extended_at_vga(repeat):
    """Ray tables (unrectified plumb_bob z-depth, radial) and intensity at 640 x 480."""
    _, _, depth, intrinsics, _ = next(f for f in frames() if f[0] == 640)
    rgb = np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    mono8 = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    out = np.empty(max_cloud_bytes(depth.shape, with_color=True, with_intensity=True), np.uint8)
    unrectified = ray_table(intrinsics, 640, 480, rectified=False, distortion_model='plumb_bob',
                            distortion=PLUMB_BOB)
    radial = ray_table(intrinsics, 640, 480, depth_kind='radial')
    rows = []
    for label, kwargs in (('rays: unrectified plumb_bob z, organized', dict(rays=unrectified)),
                          ('rays: unrectified plumb_bob z, dense',
                           dict(rays=unrectified, organized=False)),
                          ('rays: radial, organized', dict(rays=radial)),
                          ('rays: radial + rgb, organized', dict(rays=radial, color=rgb)),
                          ('XYZI organized (mono8)', dict(intensity=mono8)),
                          ('XYZI dense (mono8)', dict(intensity=mono8, organized=False)),
                          ('XYZRGBI organized (20 B)', dict(intensity=mono8, color=rgb))):
        one = median_seconds(lambda: depth_to_cloud(depth, intrinsics, out=out, threads=1,
                                                    **kwargs), repeat=repeat)
        every = median_seconds(lambda: depth_to_cloud(depth, intrinsics, out=out, threads=0,
                                                      **kwargs), repeat=repeat)
        ref_kwargs = dict(organized=kwargs.get('organized', True), rgb=kwargs.get('color'),
                          intensity=kwargs.get('intensity'))
        if 'rays' in kwargs:
            ref_kwargs['rays'] = kwargs['rays'].rays
        numpy_ref = median_seconds(lambda: reference_points(depth, intrinsics, **ref_kwargs),
                                   repeat=max(repeat // 2, 3))
        nbytes = depth_to_cloud(depth, intrinsics, out=out, **kwargs).data.nbytes
        floor = memcpy_floor_seconds(nbytes, repeat=repeat)
        rows.append([label, f'{nbytes / 1e6:.2f}', ms(one), ms(every), ms(numpy_ref), ms(floor),
                     f'{every / floor:.2f}', f'{numpy_ref / every:.1f}', f'{one / every:.2f}'])
    print_table('depth_to_cloud with ray tables and intensity at 640x480 (ray tables built once, '
                'outside the timing)',
                ['variant', 'MB out', 'kernel_1', 'kernel_all', 'numpy', 'memcpy',
                 'all/memcpy', 'numpy/all', '1/all'], rows)


def print_targets(ratios, all_threads):
    print()
    if (640, 480) in ratios:
        memcpy_ratio, speedup, _ = ratios[(640, 480)]
        print(f'target 640x480 kernel_all <= {TARGET_MEMCPY_RATIO}x memcpy: {memcpy_ratio:.2f}x '
              f'{"met" if memcpy_ratio <= TARGET_MEMCPY_RATIO else "MISSED"}')
        print(f'target 640x480 numpy/kernel_all >= {TARGET_NUMPY_SPEEDUP}x: {speedup:.1f}x '
              f'{"met" if speedup >= TARGET_NUMPY_SPEEDUP else "MISSED"}')
    if (1920, 1080) in ratios:
        scaling = ratios[(1920, 1080)][2]
        verdict = ('met' if scaling >= TARGET_SCALING else 'MISSED') if all_threads == 2 else \
            f'not applicable as measured ({all_threads} threads)'
        print(f'target 1920x1080 2-thread scaling >= {TARGET_SCALING}x: {scaling:.2f}x '
              f'({all_threads} threads) {verdict}')
