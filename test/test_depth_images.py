"""depth_images: convert_metric, crop_foremost, disparity against independent numpy
expressions on a real 7-Scenes frame, and hand-made edge cases."""
import math

import numpy as np
import pytest

from gil_probe import gil_probe
from pointcloud_pipeline.depth_images import (ValidWindow, convert_metric, crop_foremost,
                                              disparity_from_depth, nearest_depth)


def metres_reference(raw, scale):
    metres = raw.astype(np.float32) * np.float32(scale)
    metres[raw == 0] = np.nan
    return metres


def test_units_to_metres_on_a_real_frame(seven_scenes_frame):
    raw, _ = seven_scenes_frame
    metres = convert_metric(raw)
    assert metres.dtype == np.float32 and metres.shape == raw.shape
    np.testing.assert_array_equal(metres, metres_reference(raw, 0.001))
    assert np.isnan(metres).sum() == (raw == 0).sum() > 0
    np.testing.assert_allclose(convert_metric(raw, 0.0002),
                               np.where(raw > 0, raw * 0.0002, np.nan), rtol=1e-7)


def test_metres_to_units_round_trips_and_rounds_half_to_even(seven_scenes_frame):
    raw, _ = seven_scenes_frame
    np.testing.assert_array_equal(convert_metric(convert_metric(raw)), raw)
    metres = np.array([[np.nan, np.inf, -np.inf, -0.5, 0.0, 0.0004, 0.0005, 0.0015, 0.0025,
                        1.2344, 65.535, 65.5355, 70.0]], np.float32)
    units = convert_metric(metres)
    expected = np.rint(metres.astype(np.float64) / 0.001)
    expected[~((expected >= 1) & (expected <= 65535))] = 0
    assert units.dtype == np.uint16
    np.testing.assert_array_equal(units, expected.astype(np.uint16))
    halves = np.array([[0.25, 0.75, 1.25, 1.75]], np.float32)  # 0.5 .. 3.5 units of 0.5 m
    np.testing.assert_array_equal(convert_metric(halves, 0.5), [[0, 2, 2, 4]])
    # 65535.5 units rounds to 65536, beyond uint16: no reading (the sanitizer run caught the cast)
    top = np.array([[32767.75, 32767.7, 32767.5]], np.float32)
    np.testing.assert_array_equal(convert_metric(top, 0.5), [[0, 65535, 65535]])


def test_padded_big_endian_rows_and_out(seven_scenes_frame):
    raw, _ = seven_scenes_frame
    padded = np.zeros((raw.shape[0], raw.shape[1] + 8), np.uint16)
    padded[:, :raw.shape[1]] = raw
    view = padded[:, :raw.shape[1]]
    out = np.empty(raw.shape, np.float32)
    assert convert_metric(view, out=out) is out
    np.testing.assert_array_equal(out, metres_reference(raw, 0.001))
    np.testing.assert_array_equal(convert_metric(raw.astype('>u2')), out)


def test_crop_foremost_on_a_real_frame(seven_scenes_frame):
    raw, _ = seven_scenes_frame
    nearest = raw[raw > 0].min()
    cropped = crop_foremost(raw, 0.25)
    assert cropped.dtype == np.uint16
    np.testing.assert_array_equal(cropped, np.where(raw <= nearest + 250, raw, 0))
    assert 0 < (cropped > 0).sum() < (raw > 0).sum()
    metres = metres_reference(raw, 0.001)
    cropped_metres = crop_foremost(metres, 0.25)
    keep = metres.astype(np.float64) <= float(np.nanmin(metres)) + 0.25
    np.testing.assert_array_equal(cropped_metres, np.where(keep, metres, np.nan))
    assert nearest_depth(raw) == pytest.approx(nearest * 0.001)
    assert nearest_depth(metres) == float(np.nanmin(metres))


def test_crop_foremost_edge_cases():
    raw = np.array([[0, 1000, 1050, 1051], [0, 2000, 1000, 0]], np.uint16)
    np.testing.assert_array_equal(crop_foremost(raw, 0.05),
                                  [[0, 1000, 1050, 0], [0, 0, 1000, 0]])
    np.testing.assert_array_equal(crop_foremost(raw, 0.0), [[0, 1000, 0, 0], [0, 0, 1000, 0]])
    # 0.3 / 0.1 is 2.9999999999999996 in floats: still 3 whole units
    np.testing.assert_array_equal(crop_foremost(np.array([[10, 13, 14]], np.uint16), 0.3, 0.1),
                                  [[10, 13, 0]])
    assert not crop_foremost(np.zeros((3, 4), np.uint16), 1.0).any()
    metres = np.array([[np.nan, np.inf, -np.inf, -1.0, 0.0, 2.0, 2.5, 2.5000002]], np.float32)
    out = crop_foremost(metres, 0.5)
    np.testing.assert_array_equal(out, [[np.nan] * 5 + [2.0, 2.5, np.nan]])
    assert np.isnan(crop_foremost(np.full((2, 2), np.nan, np.float32), 1.0)).all()
    assert nearest_depth(np.full((2, 2), np.nan, np.float32)) is None
    assert nearest_depth(np.zeros((2, 2), np.uint16)) is None


def test_disparity_on_a_real_frame(seven_scenes_frame):
    raw, _ = seven_scenes_frame
    result = disparity_from_depth(raw, 585.0, 0.075, min_range=0.5, max_range=10.0)
    f, t = float(np.float32(585.0)), float(np.float32(0.075))
    expected = np.where(raw > 0, f * t / (raw * 0.001), 0.0)
    assert result.image.dtype == np.float32
    np.testing.assert_allclose(result.image, expected, rtol=3e-7)
    assert (result.image[raw == 0] == 0).all()
    assert (result.f, result.t, result.delta_d) == (f, t, 0.125)
    assert result.min_disparity == pytest.approx(f * t / 10.0, rel=1e-7)
    assert result.max_disparity == pytest.approx(f * t / 0.5, rel=1e-7)
    rows, cols = np.nonzero(raw)
    assert result.valid_window == ValidWindow(cols.min(), rows.min(), cols.max() - cols.min() + 1,
                                              rows.max() - rows.min() + 1)
    metres = metres_reference(raw, 0.001)
    from_metres = disparity_from_depth(metres, 585.0, 0.075)
    np.testing.assert_allclose(from_metres.image, expected, rtol=3e-7)
    assert (from_metres.min_disparity, from_metres.max_disparity) == (0.0, math.inf)


def test_disparity_edge_cases():
    metres = np.array([[np.nan, np.inf, -1.0, 0.0], [0.0, 2.0, 0.0, 0.0]], np.float32)
    result = disparity_from_depth(metres, 500.0, 0.1)
    np.testing.assert_array_equal(result.image, [[0, 0, 0, 0], [0, 25.0, 0, 0]])
    assert result.valid_window == ValidWindow(1, 1, 1, 1)
    empty = disparity_from_depth(np.zeros((3, 5), np.uint16), 500.0, 0.1)
    assert not empty.image.any() and empty.valid_window == ValidWindow(0, 0, 0, 0)


@pytest.mark.parametrize('call,message', [
    (lambda: convert_metric(np.zeros((2, 2), np.int32)), 'uint16'),
    (lambda: convert_metric(np.zeros((2, 2, 1), np.uint16)), '2-D'),
    (lambda: convert_metric(np.zeros((0, 2), np.uint16)), 'empty'),
    (lambda: convert_metric(np.zeros((2, 2), np.uint16), 0.0), 'depth_scale'),
    (lambda: convert_metric(np.zeros((2, 2), np.uint16), out=np.empty((2, 2))), 'out'),
    (lambda: crop_foremost(np.zeros((2, 2), np.uint16), -0.1), 'distance'),
    (lambda: crop_foremost(np.zeros((2, 2), np.uint16), math.nan), 'distance'),
    (lambda: crop_foremost(np.zeros((2, 2), np.float32), 1.0, out=np.empty((2, 2), np.uint16)),
     'out'),
    (lambda: disparity_from_depth(np.zeros((2, 2), np.uint16), 0.0, 0.1), 'focal_length'),
    (lambda: disparity_from_depth(np.zeros((2, 2), np.uint16), 500.0, -0.1), 'baseline'),
    (lambda: disparity_from_depth(np.zeros((2, 2), np.uint16), 500.0, 0.1, min_range=2.0,
                                  max_range=1.0), 'min_range'),
    (lambda: disparity_from_depth(np.zeros((2, 2), np.uint16), 500.0, 0.1, delta_d=0.0),
     'delta_d'),
])
def test_argument_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_the_kernels_release_the_gil():
    raw = np.random.default_rng(3).integers(0, 5000, (1024, 1024)).astype(np.uint16)
    with gil_probe() as ticks_during:
        held = ticks_during(lambda: sum(i * i for i in range(300_000)))
        released = ticks_during(lambda: [(convert_metric(raw), crop_foremost(raw, 0.5),
                                          disparity_from_depth(raw, 500.0, 0.1))
                                         for _ in range(20)])
    assert held == 0
    assert released > 20, released
