"""Rigid transforms between a camera's optical frame and a z-up robot (body) frame.

Frames (REP 103 / REP 105):
- camera optical frame: x right, y down, z forward (what depth images are converted into);
- body frame: x forward, y left, z up, origin on the ground below the camera mount (what BEV
  images are drawn in).

Transforms are 4x4 homogeneous float64 matrices ``T`` mapping points of the source frame to the
target frame: ``p_body = T @ [x, y, z, 1]``.
"""
import math

import numpy as np

# p_body = OPTICAL_TO_BODY_ROTATION @ p_optical: x_body = z_opt, y_body = -x_opt, z_body = -y_opt
OPTICAL_TO_BODY_ROTATION = np.array([[0.0, 0.0, 1.0],
                                     [-1.0, 0.0, 0.0],
                                     [0.0, -1.0, 0.0]])


def rotation_from_rpy(roll, pitch, yaw):
    """3x3 rotation of fixed-axis roll (about x), then pitch (about y), then yaw (about z),
    radians: ``Rz(yaw) @ Ry(pitch) @ Rx(roll)`` (the ROS / tf2 convention)."""
    for name, angle in (('roll', roll), ('pitch', pitch), ('yaw', yaw)):
        if not math.isfinite(angle):
            raise ValueError(f'{name} must be a finite angle in radians, got {angle!r}')
    cr, sr = math.cos(roll), math.sin(roll)
    cp, sp = math.cos(pitch), math.sin(pitch)
    cy, sy = math.cos(yaw), math.sin(yaw)
    return np.array([
        [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
        [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
        [-sp, cp * sr, cp * cr],
    ])


def camera_mount_transform(height=0.0, roll=0.0, pitch=0.0, yaw=0.0, x=0.0, y=0.0):
    """4x4 transform from the camera optical frame to the z-up body frame.

    height: metres of the camera above the body origin (the ground); x, y: metres of the camera
    ahead of / left of the origin. roll, pitch, yaw: radians, orientation of the camera's body-
    style frame (x along the optical axis, z up) relative to the body frame; ``pitch > 0`` tilts
    the camera down, ``yaw > 0`` turns it left. All zero: the camera looks along body x, level.
    """
    for name, value in (('height', height), ('x', x), ('y', y)):
        if not math.isfinite(value):
            raise ValueError(f'{name} must be finite metres, got {value!r}')
    transform = np.eye(4)
    transform[:3, :3] = rotation_from_rpy(roll, pitch, yaw) @ OPTICAL_TO_BODY_ROTATION
    transform[:3, 3] = (x, y, height)
    return transform


def validated_transform(matrix, tolerance=1e-4):
    """``matrix`` (4x4, or 16 numbers row-major) as a float64 4x4 rigid transform.

    Raises ValueError unless it is finite, its last row is ``[0, 0, 0, 1]`` and its 3x3 part is
    a rotation (orthonormal with determinant +1, within ``tolerance``).
    """
    array = np.asarray(matrix, dtype=np.float64)
    if array.size != 16:
        raise ValueError(f'a transform needs 16 numbers (4x4), got {array.size}')
    array = array.reshape(4, 4)
    if not np.isfinite(array).all():
        raise ValueError('the transform contains NaN or infinite values')
    if not np.allclose(array[3], (0.0, 0.0, 0.0, 1.0), atol=tolerance):
        raise ValueError(f'the last row of the transform must be [0, 0, 0, 1], got {array[3]}')
    rotation = array[:3, :3]
    if not np.allclose(rotation @ rotation.T, np.eye(3), atol=tolerance):
        raise ValueError('the 3x3 part of the transform is not orthonormal (not a rotation)')
    if np.linalg.det(rotation) < 0:
        raise ValueError('the 3x3 part of the transform is a reflection (determinant -1)')
    return array
