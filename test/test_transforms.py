"""Camera mounting transforms: optical frame -> z-up body frame."""
import math

import numpy as np
import pytest

from pointcloud_pipeline.transforms import (OPTICAL_TO_BODY_ROTATION, camera_mount_transform,
                                            rotation_from_rpy, validated_transform)


def transform_points(transform, points):
    """Apply a 4x4 ``transform`` to ``N x 3`` points (float64)."""
    points = np.asarray(points, dtype=np.float64)
    return points @ transform[:3, :3].T + transform[:3, 3]


def test_default_mount_is_the_standard_optical_to_body_rotation_raised_by_the_height():
    transform = camera_mount_transform(height=1.2)
    # a point 2 m ahead, 0.5 m right and 0.3 m below the optical centre
    optical = np.array([[0.5, 0.3, 2.0]])
    body = transform_points(transform, optical)
    np.testing.assert_allclose(body, [[2.0, -0.5, 1.2 - 0.3]])
    np.testing.assert_allclose(transform[:3, :3], OPTICAL_TO_BODY_ROTATION)


def test_pitch_down_brings_the_optical_axis_to_the_floor():
    height = 1.0
    pitch = math.radians(45)  # looking down at 45 degrees
    transform = camera_mount_transform(height=height, pitch=pitch)
    along_axis = transform_points(transform, [[0.0, 0.0, height * math.sqrt(2)]])
    np.testing.assert_allclose(along_axis, [[1.0, 0.0, 0.0]], atol=1e-12)


def test_yaw_left_and_roll():
    transform = camera_mount_transform(yaw=math.pi / 2)
    np.testing.assert_allclose(transform_points(transform, [[0, 0, 1.0]]), [[0, 1.0, 0]],
                               atol=1e-12)
    rolled = camera_mount_transform(roll=math.pi / 2)  # image right now points down
    np.testing.assert_allclose(transform_points(rolled, [[1.0, 0, 0]]), [[0, 0, -1.0]],
                               atol=1e-12)


def test_rpy_matches_composed_axis_rotations():
    roll, pitch, yaw = 0.1, -0.2, 0.3

    def axis(index, angle):
        c, s = math.cos(angle), math.sin(angle)
        i, j = [(1, 2), (2, 0), (0, 1)][index]
        r = np.eye(3)
        r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
        return r

    expected = axis(2, yaw) @ axis(1, pitch) @ axis(0, roll)
    np.testing.assert_allclose(rotation_from_rpy(roll, pitch, yaw), expected, atol=1e-12)


def test_translation_offsets():
    transform = camera_mount_transform(height=0.5, x=0.2, y=-0.1)
    np.testing.assert_allclose(transform[:3, 3], [0.2, -0.1, 0.5])


def test_validated_transform_accepts_flat_and_square():
    transform = camera_mount_transform(height=1.0, pitch=0.3, yaw=-0.2)
    np.testing.assert_array_equal(validated_transform(transform.ravel().tolist()), transform)
    assert validated_transform(np.eye(4, dtype=np.float32)).dtype == np.float64


@pytest.mark.parametrize('matrix,message', [
    (np.eye(3), '16 numbers'),
    (np.diag([1.0, 1.0, 1.0, 2.0]), 'last row'),
    (np.diag([2.0, 1.0, 1.0, 1.0]), 'not orthonormal'),
    (np.diag([-1.0, 1.0, 1.0, 1.0]), 'reflection'),
    (np.full((4, 4), np.nan), 'NaN'),
])
def test_validated_transform_rejects(matrix, message):
    with pytest.raises(ValueError, match=message):
        validated_transform(matrix)


@pytest.mark.parametrize('kwargs', [{'height': float('nan')}, {'pitch': float('inf')}])
def test_mount_rejects_non_finite(kwargs):
    with pytest.raises(ValueError, match='finite'):
        camera_mount_transform(**kwargs)
