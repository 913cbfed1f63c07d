"""Pinhole intrinsics: from CameraInfo K and P, to K and P, and after a resize."""
import math

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo

from pointcloud_pipeline.camera import (CameraIntrinsics, ImageRegion, image_region,
                                        intrinsics_from_camera_info, reduced_intrinsics,
                                        scale_intrinsics)


def test_intrinsics_from_camera_info():
    k = [585.0, 0, 320.0, 0, 586.0, 240.0, 0, 0, 1]
    p = [580.0, 0, 318.0, 0, 0, 581.0, 241.0, 0, 0, 0, 1, 0]
    assert intrinsics_from_camera_info(k, p) == CameraIntrinsics(580.0, 581.0, 318.0, 241.0)
    assert intrinsics_from_camera_info(k, p, use_projection_matrix=False) == \
        CameraIntrinsics(585.0, 586.0, 320.0, 240.0)
    assert intrinsics_from_camera_info(np.array(k), None, False).fx == 585.0
    stereo_right = p[:3] + [-580.0 * 0.1] + p[4:]  # Tx (baseline) is ignored
    assert intrinsics_from_camera_info(k, stereo_right) == CameraIntrinsics(580.0, 581.0, 318.0,
                                                                            241.0)


def test_intrinsics_from_a_real_camera_info_message():
    msg = CameraInfo(k=[585.0, 0, 320.0, 0, 585.0, 240.0, 0, 0, 1],
                     p=[585.0, 0, 320.0, 0, 0, 585.0, 240.0, 0, 0, 0, 1, 0])
    assert intrinsics_from_camera_info(msg.k, msg.p) == CameraIntrinsics(585.0, 585.0, 320.0, 240.0)
    with pytest.raises(ValueError, match='P is all zeros'):
        intrinsics_from_camera_info(CameraInfo().k, CameraInfo().p)


@pytest.mark.parametrize('k,p,use_p,message', [
    ([1.0] * 8, [1.0] * 12, True, 'K must have 9 values, got 8'),
    ([1.0] * 9, [1.0] * 13, True, 'P must have 12 values, got 13'),
    ([1.0] * 9, [1.0] * 11, False, 'P must have 12 values, got 11'),
    ([0.0] * 9, [1.0] * 12, False, 'K is all zeros'),
    ([1.0] * 9, [0.0] * 12, True, 'P is all zeros'),
    ([1.0] * 9, None, True, 'P is missing'),
    ([-5.0, 0, 1, 0, 5, 1, 0, 0, 1], None, False, 'fx must be finite and > 0'),
    ([5.0, 0, 1, 0, 0, 1, 0, 0, 1], None, False, 'fy must be finite and > 0'),
    ([math.nan, 0, 1, 0, 5, 1, 0, 0, 1], None, False, 'fx must be finite and > 0'),
    ([5.0, 0, math.inf, 0, 5, 1, 0, 0, 1], None, False, 'cx must be finite'),
    ([5.0, 0, 1, 0, 5, math.nan, 0, 0, 1], None, False, 'cy must be finite'),
    (['a'] * 9, None, False, 'K is not numeric'),
])
def test_bad_camera_info(k, p, use_p, message):
    with pytest.raises(ValueError, match=message):
        intrinsics_from_camera_info(k, p, use_projection_matrix=use_p)


def test_scaled_intrinsics_follow_cv2_resize():
    """A resized image's pixel (u', v') shows original point ((u'+0.5)/s - 0.5, ...): the rays
    through it must be the same with the scaled intrinsics."""
    intrinsics = CameraIntrinsics(585.0, 570.0, 320.3, 239.6)
    u_map = np.tile(np.arange(640, dtype=np.float32), (480, 1))
    v_map = np.tile(np.arange(480, dtype=np.float32)[:, None], (1, 640))
    for width, height in ((320, 240), (1280, 960), (160, 360)):
        k, _ = scale_intrinsics(intrinsics.camera_matrix(), None, (480, 640), (height, width))
        scaled = intrinsics_from_camera_info(k, None, use_projection_matrix=False)
        resized_u = cv2.resize(u_map, (width, height), interpolation=cv2.INTER_LINEAR)
        resized_v = cv2.resize(v_map, (width, height), interpolation=cv2.INTER_LINEAR)
        inner = (slice(2, -2), slice(2, -2))  # away from the clamped borders
        u_new = np.arange(width)[None, :].repeat(height, 0)
        v_new = np.arange(height)[:, None].repeat(width, 1)
        np.testing.assert_allclose(((u_new - scaled.cx) / scaled.fx)[inner],
                                   ((resized_u - intrinsics.cx) / intrinsics.fx)[inner],
                                   atol=1e-5)
        np.testing.assert_allclose(((v_new - scaled.cy) / scaled.fy)[inner],
                                   ((resized_v - intrinsics.cy) / intrinsics.fy)[inner],
                                   atol=1e-5)
    with pytest.raises(ValueError, match='sizes must be positive'):
        scale_intrinsics(intrinsics.camera_matrix(), None, (480, 640), (0, 640))


def test_matrices_round_trip_through_camera_info():
    intrinsics = CameraIntrinsics(585.0, 570.0, 320.3, 239.6)
    msg = CameraInfo(k=intrinsics.camera_matrix(), p=intrinsics.projection_matrix())
    assert intrinsics_from_camera_info(msg.k, msg.p) == intrinsics
    assert intrinsics_from_camera_info(msg.k, None, use_projection_matrix=False) == intrinsics


def test_scale_intrinsics_keeps_projections_consistent():
    k = np.array([[585.0, 0.0, 320.0], [0.0, 585.0, 240.0], [0.0, 0.0, 1.0]])
    p = np.hstack([k, [[-585.0 * 0.075], [0.0], [0.0]]])
    k2, p2 = scale_intrinsics(k.ravel(), p.ravel(), (480, 640), (240, 320))
    assert k2[0, 0] == pytest.approx(292.5) and k2[1, 1] == pytest.approx(292.5)
    assert k2[0, 2] == pytest.approx((320 + 0.5) * 0.5 - 0.5)
    assert p2[0, 3] == pytest.approx(-585.0 * 0.075 * 0.5)
    points = np.random.default_rng(1).uniform([-1, -1, 0.5], [1, 1, 5], (100, 3))
    pixels = (k @ points.T).T
    pixels = pixels[:, :2] / pixels[:, 2:]
    resized = (k2 @ points.T).T
    resized = resized[:, :2] / resized[:, 2:]
    # cv2.resize pixel-centre mapping: u' = (u + 0.5) * s - 0.5
    np.testing.assert_allclose(resized, (pixels + 0.5) * 0.5 - 0.5, atol=1e-9)
    k3, p3 = scale_intrinsics(k, None, (480, 640), (480, 640))
    np.testing.assert_array_equal(k3, k)
    assert p3 is None


def test_scale_intrinsics_matches_a_resized_image():
    """A bright dot at a projected pixel lands where the scaled K projects it after cv2.resize."""
    k = np.array([[400.0, 0, 300.2], [0, 400.0, 200.7], [0, 0, 1]])
    point = np.array([0.3, -0.2, 2.0])
    u, v = (k @ point)[:2] / point[2]
    image = np.zeros((400, 600), np.float32)
    cv2.circle(image, (round(u * 16), round(v * 16)), 6 * 16, 1.0, -1, shift=4)
    small = cv2.resize(image, (150, 100), interpolation=cv2.INTER_AREA)
    k2, _ = scale_intrinsics(k, None, (400, 600), (100, 150))
    u2, v2 = (k2 @ point)[:2] / point[2]
    rows, cols = np.mgrid[0:100, 0:150]
    centroid = (np.sum(cols * small) / small.sum(), np.sum(rows * small) / small.sum())
    assert centroid == pytest.approx((u2, v2), abs=0.05)


FULL = CameraIntrinsics(fx=1170.0, fy=1172.0, cx=641.5, cy=479.25)


def image_geometry_reduced(intrinsics, binning_x, binning_y, x_offset, y_offset):
    """image_geometry's formulas (PinholeCameraModel.fromCameraInfo, REP 104): binning 0 is 1;
    fx / binning, (cx - roi offset) / binning."""
    bx, by = max(1, binning_x), max(1, binning_y)
    return (intrinsics.fx / bx, intrinsics.fy / by, (intrinsics.cx - x_offset) / bx,
            (intrinsics.cy - y_offset) / by)


@pytest.mark.parametrize('binning,roi,size', [
    ((0, 0), (0, 0, 0, 0), (1280, 960)),          # REP 104 defaults: full resolution
    ((1, 1), (0, 0, 1280, 960), (1280, 960)),     # an ROI of the whole image
    ((2, 2), (0, 0, 0, 0), (640, 480)),
    ((4, 2), (0, 0, 0, 0), (320, 480)),
    ((0, 3), (0, 0, 0, 0), (1280, 320)),          # binning_x 0 means 1
    ((1, 1), (160, 120, 640, 480), (640, 480)),   # cropped
    ((2, 2), (160, 120, 640, 480), (320, 240)),   # cropped, then binned
    ((3, 3), (1, 2, 100, 50), (33, 16)),          # sizes round down (reducedResolution)
])
def test_binning_and_roi_follow_image_geometry(binning, roi, size):
    region = image_region(1280, 960, *binning, *roi)
    assert region.image_size == size
    assert tuple(reduced_intrinsics(FULL, region)) == pytest.approx(
        image_geometry_reduced(FULL, *binning, roi[0], roi[1]), rel=0, abs=1e-12)


def test_reduced_intrinsics_project_a_point_where_the_full_image_has_it_after_crop_and_bin():
    region = image_region(1280, 960, 2, 2, 160, 120, 640, 480)
    reduced = reduced_intrinsics(FULL, region)
    x, y, z = 0.3, -0.2, 2.0
    u_full, v_full = FULL.fx * x / z + FULL.cx, FULL.fy * y / z + FULL.cy
    u, v = reduced.fx * x / z + reduced.cx, reduced.fy * y / z + reduced.cy
    assert (u, v) == pytest.approx(((u_full - 160) / 2, (v_full - 120) / 2))


def test_full_resolution_region_changes_nothing():
    region = image_region(640, 480)
    assert region == ImageRegion(0, 0, 640, 480, 1, 1)
    assert reduced_intrinsics(FULL, region) == FULL


@pytest.mark.parametrize('args,message', [
    ((0, 480), 'empty size'),
    ((640, 480, 1, 1, 0, 0, 0, 480), 'zero side'),
    ((640, 480, 1, 1, 0, 0, 640, 0), 'zero side'),
    ((640, 480, 1, 1, 10, 0, 0, 0), 'zero size at offset'),
    ((640, 480, 1, 1, 1, 0, 640, 480), 'beyond the full resolution'),
    ((640, 480, 1, 1, 0, 400, 320, 100), 'beyond the full resolution'),
    ((640, 480, 1, 1, 0, 0, 641, 480), 'beyond the full resolution'),
    ((640, 480, 8, 1, 0, 0, 4, 4), 'larger than the roi'),
])
def test_invalid_binning_or_roi(args, message):
    with pytest.raises(ValueError, match=message):
        image_region(*args)
