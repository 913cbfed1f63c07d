"""Node settings from parameter values: derived objects and the reasons for rejections."""
import math

import numpy as np
import pytest
from test_config import flatten
import yaml

from conftest import REPO_ROOT
from pointcloud_pipeline.ros.parameters import BevSettings, PipelineSettings
from pointcloud_pipeline.transforms import camera_mount_transform


def defaults(node):
    config = yaml.safe_load((REPO_ROOT / 'config' / 'pipeline.yaml').read_text())
    return flatten(config[f'/**/{node}']['ros__parameters'])


def test_pipeline_defaults():
    settings = PipelineSettings.from_parameters(defaults('pointcloud_pipeline'))
    assert settings.bev_grid.shape == (200, 200, 3)
    np.testing.assert_array_equal(settings.mount, camera_mount_transform())
    assert settings.max_range == 20.0 and settings.organized is True


def test_mount_from_angles_or_matrix():
    values = defaults('pointcloud_pipeline')
    values.update({'mount.height': 0.8, 'mount.pitch': 0.15})
    from_angles = PipelineSettings.from_parameters(values).mount
    np.testing.assert_allclose(from_angles, camera_mount_transform(height=0.8, pitch=0.15))
    values.update({'mount.use_transform': True, 'mount.transform': from_angles.ravel().tolist()})
    np.testing.assert_allclose(PipelineSettings.from_parameters(values).mount, from_angles)


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
