"""Depth image -> depth image conversions (depth_images: convert_metric, crop_foremost,
disparity_from_depth): the Cython kernels against the numpy references
(test/reference_depth_images.py) and the memcpy floor of the output bytes.

Each kernel is timed through its public function (argument checks included) writing into a
preallocated ``out``; the kernels are single-threaded memory-bound passes. The numpy reference
allocates its result (as a numpy user would). Before timing, every kernel output is asserted
equal, bit for bit, to its reference (NaN where NaN). Frames: the real 7-Scenes
frame-000000 (Kinect, uint16 mm, ~11 % holes) resized with nearest neighbour, else the
synthetic frame of bench_depth; the float32 inputs are that frame in metres (NaN holes).
"""
import cv2
import numpy as np

from bench_depth import real_frame, synthetic_frame
from pointcloud_pipeline.depth_images import convert_metric, crop_foremost, disparity_from_depth
import reference_depth_images as reference
from timing import median_seconds, memcpy_floor_seconds, ms, print_table

SIZES = ((640, 480), (1920, 1080))
CROP_DISTANCE = 0.25  # metres behind the nearest pixel
FOCAL_LENGTH = 585.0  # pixels (7-Scenes Kinect at 640 x 480)
BASELINE = 0.075      # metres (Kinect-like)


def frames():
    """(width, height, uint16 mm depth, source) for every benchmark size."""
    real = real_frame()
    for width, height in SIZES:
        if real is not None:
            depth = cv2.resize(real, (width, height), interpolation=cv2.INTER_NEAREST)
            yield width, height, depth, '7-Scenes frame-000000 (resized)'
        else:
            yield width, height, synthetic_frame(width, height), 'synthetic'


def cases(raw):
    """(label, kernel(out), numpy reference(), output dtype) for one uint16 frame."""
    metres = reference.units_to_metres(raw)
    return (
        ('convert_metric 16UC1 -> 32FC1', lambda out: convert_metric(raw, out=out),
         lambda: reference.units_to_metres(raw), np.float32),
        ('convert_metric 32FC1 -> 16UC1', lambda out: convert_metric(metres, out=out),
         lambda: reference.metres_to_units(metres), np.uint16),
        ('crop_foremost uint16', lambda out: crop_foremost(raw, CROP_DISTANCE, out=out),
         lambda: reference.crop_foremost(raw, CROP_DISTANCE), np.uint16),
        ('crop_foremost float32', lambda out: crop_foremost(metres, CROP_DISTANCE, out=out),
         lambda: reference.crop_foremost(metres, CROP_DISTANCE), np.float32),
        ('disparity uint16', lambda out: disparity_from_depth(raw, FOCAL_LENGTH, BASELINE,
                                                              out=out).image,
         lambda: reference.disparity(raw, FOCAL_LENGTH, BASELINE)[0], np.float32),
        ('disparity float32', lambda out: disparity_from_depth(metres, FOCAL_LENGTH, BASELINE,
                                                               out=out).image,
         lambda: reference.disparity(metres, FOCAL_LENGTH, BASELINE)[0], np.float32),
    )


def check_equal(label, raw):
    """The kernel equals its numpy reference bit for bit, valid window included."""
    for name, kernel, numpy_ref, dtype in cases(raw):
        got = kernel(np.empty(raw.shape, dtype))
        expected = numpy_ref()
        assert got.dtype == expected.dtype and got.shape == expected.shape, (label, name)
        np.testing.assert_array_equal(got, expected, err_msg=f'{label}: {name}')
    for depth in (raw, reference.units_to_metres(raw)):
        window = disparity_from_depth(depth, FOCAL_LENGTH, BASELINE).valid_window
        assert tuple(window) == reference.disparity(depth, FOCAL_LENGTH, BASELINE)[1], label


def main(quick=False):
    repeat = 5 if quick else 25
    rows, source = [], None
    for width, height, raw, source in frames():
        if quick and width > 640:
            continue
        size = f'{width}x{height}'
        check_equal(size, raw)
        for name, kernel, numpy_ref, dtype in cases(raw):
            out = np.empty(raw.shape, dtype)
            kernel_s = median_seconds(lambda: kernel(out), repeat=repeat)
            numpy_s = median_seconds(numpy_ref, repeat=max(repeat // 2, 3))
            floor = memcpy_floor_seconds(out.nbytes, repeat=repeat)
            rows.append([size, name, f'{out.nbytes / 1e6:.2f}', ms(kernel_s), ms(numpy_s),
                         ms(floor), f'{kernel_s / floor:.2f}', f'{numpy_s / kernel_s:.1f}'])
    print_table(f'depth_images conversions, 1 thread ({source}; float32 inputs = that frame in '
                f'metres); outputs equal to the numpy reference checked first; ms = median of '
                f'{repeat}',
                ['size', 'conversion', 'MB out', 'kernel', 'numpy', 'memcpy', 'kernel/memcpy',
                 'numpy/kernel'], rows)
