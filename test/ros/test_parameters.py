"""Node settings from parameter values: derived objects and the reasons for rejections."""
import math

import numpy as np
import pytest
import yaml

from conftest import REPO_ROOT
from pointcloud_pipeline.ros.diagnostics import flatten
from pointcloud_pipeline.ros.parameters import BevSettings, PipelineSettings


def defaults(node):
    config = yaml.safe_load((REPO_ROOT / 'config' / 'pipeline.yaml').read_text())
    return flatten(config[f'/**/{node}']['ros__parameters'])


# optical -> body with the camera level at the body origin, written out (REP 103): x_body =
# z_optical (forward), y_body = -x_optical (left), z_body = -y_optical (up)
LEVEL = np.array([[0.0, 0.0, 1.0, 0.0],
                  [-1.0, 0.0, 0.0, 0.0],
                  [0.0, -1.0, 0.0, 0.0],
                  [0.0, 0.0, 0.0, 1.0]])


def mount_from(values):
    return PipelineSettings.from_parameters(values).mount


def test_pipeline_defaults():
    settings = PipelineSettings.from_parameters(defaults('pointcloud_pipeline'))
    assert settings.bev_grid.shape == (200, 200, 3)
    np.testing.assert_array_equal(settings.mount, LEVEL)
    assert settings.max_range == 20.0 and settings.organized is True


def expected_mount(optical_x, optical_y, optical_z, translation):
    """4x4 whose columns are the body-frame directions of the optical x (right), y (down) and
    z (forward) axes, and the camera position in the body frame (metres)."""
    matrix = np.eye(4)
    matrix[:3, 0], matrix[:3, 1], matrix[:3, 2] = optical_x, optical_y, optical_z
    matrix[:3, 3] = translation
    return matrix


@pytest.mark.parametrize('changes,expected', [
    # pitch > 0 tilts the camera down: forward (cos, 0, -sin), down (-sin, 0, -cos)
    ({'mount.height': 0.8, 'mount.pitch': 0.15},
     expected_mount((0, -1, 0), (-math.sin(0.15), 0, -math.cos(0.15)),
                    (math.cos(0.15), 0, -math.sin(0.15)), (0, 0, 0.8))),
    # yaw > 0 turns the camera left: forward (cos, sin, 0), right (sin, -cos, 0)
    ({'mount.yaw': 0.4, 'mount.x': 0.3, 'mount.y': -0.2},
     expected_mount((math.sin(0.4), -math.cos(0.4), 0), (0, 0, -1),
                    (math.cos(0.4), math.sin(0.4), 0), (0.3, -0.2, 0))),
    # roll > 0 about the forward axis: right (0, -cos, -sin), down (0, sin, -cos)
    ({'mount.roll': 0.25},
     expected_mount((0, -math.cos(0.25), -math.sin(0.25)), (0, math.sin(0.25), -math.cos(0.25)),
                    (1, 0, 0), (0, 0, 0))),
])
def test_mount_from_each_angle_and_offset(changes, expected):
    values = defaults('pointcloud_pipeline')
    values.update(changes)
    np.testing.assert_allclose(mount_from(values), expected, atol=1e-12)


def test_mount_matrix_replaces_the_angles_only_when_use_transform():
    values = defaults('pointcloud_pipeline')
    values.update({'mount.height': 0.8, 'mount.pitch': 0.15})
    from_angles = mount_from(values)
    yaw = 0.5  # another mount than the angles': camera 2 m up, turned left, 1 m ahead
    matrix = expected_mount((math.sin(yaw), -math.cos(yaw), 0), (0, 0, -1),
                            (math.cos(yaw), math.sin(yaw), 0), (1.0, 0, 2.0))
    values['mount.transform'] = matrix.ravel().tolist()
    np.testing.assert_allclose(mount_from(values), from_angles)  # use_transform false: ignored
    values['mount.use_transform'] = True
    np.testing.assert_array_equal(mount_from(values), matrix)
    assert not np.allclose(matrix, from_angles)
    # the matrix maps a point 1 m along the optical axis to 1 m ahead along the yawed axis
    np.testing.assert_allclose(mount_from(values) @ [0.0, 0.0, 1.0, 1.0],
                               [1.0 + math.cos(yaw), math.sin(yaw), 2.0, 1.0])


@pytest.mark.parametrize('changes,message', [
    ({'min_range': 5.0, 'max_range': 5.0}, 'min_range'),
    ({'depth_scale': 0.0}, 'depth_scale'),
    ({'bev.resolution': 0.3}, 'whole number'),
    ({'bev.x_range': [1.0, 0.0]}, 'x_range'),
    ({'bev.z_range': [0.0]}, 'z_range'),
    ({'mount.use_transform': True, 'mount.transform': [1.0] * 16}, 'mount.transform'),
    ({'mount.pitch': math.nan}, 'mount.pitch'),
    ({'sync_max_age': 0.0}, 'sync_max_age'),
    ({'decimation_x': 0}, 'decimation_x'),
])
def test_pipeline_rejections_name_the_parameter(changes, message):
    values = defaults('pointcloud_pipeline')
    values.update(changes)
    with pytest.raises(ValueError, match=message):
        PipelineSettings.from_parameters(values)


def test_bev_settings():
    values = defaults('bev_node')
    settings = BevSettings.from_parameters(values)
    assert settings.grid.shape == (800, 800, 3) and settings.transform is None
    values.update({'use_transform': True, 'intensity_range': [0.0, 255.0]})
    settings = BevSettings.from_parameters(values)
    np.testing.assert_array_equal(settings.transform, np.eye(4))
    assert settings.grid.intensity_range == (0.0, 255.0)
    values['intensity_range'] = [1.0, 1.0]
    with pytest.raises(ValueError, match='intensity_range'):
        BevSettings.from_parameters(values)
