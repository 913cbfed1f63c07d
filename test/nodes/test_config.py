"""config/pipeline.yaml documents exactly the parameters the nodes declare, with their defaults."""
import pytest
from rclpy.parameter import Parameter
import yaml

from conftest import REPO_ROOT
from pointcloud_pipeline.ros.diagnostics import flatten

ROS_BUILTIN = {'use_sim_time', 'start_type_description_service'}


def section(file, node):
    config = yaml.safe_load((REPO_ROOT / 'config' / file).read_text())
    return flatten(config[f'/**/{node}']['ros__parameters'])


def declared(node):
    return {name: parameter.value for name, parameter in
            node.get_parameters_by_prefix('').items() if name not in ROS_BUILTIN}


@pytest.mark.parametrize('module,cls,key', [
    ('pointcloud_pipeline.nodes.pipeline_node', 'PipelineNode', 'pointcloud_pipeline'),
    ('pointcloud_pipeline.nodes.bev_node', 'BevNode', 'bev_node'),
])
def test_yaml_defaults_are_the_declared_defaults(rclpy_context, module, cls, key):
    import importlib
    node = getattr(importlib.import_module(module), cls)(context=rclpy_context)
    try:
        assert section('pipeline.yaml', key) == declared(node)
    finally:
        node.destroy_node()


def test_demo_overrides_are_declared_and_valid(rclpy_context):
    from pointcloud_pipeline.nodes.pipeline_node import PipelineNode
    from pointcloud_pipeline.nodes.synthetic_camera_node import SyntheticCameraNode
    overrides = section('demo.yaml', 'pointcloud_pipeline')
    node = PipelineNode(context=rclpy_context, parameter_overrides=[
        Parameter(name, value=value) for name, value in overrides.items()])
    try:
        assert set(overrides) <= set(declared(node))
        assert node.settings.mount[2, 3] == pytest.approx(0.8)
    finally:
        node.destroy_node()
    camera_overrides = section('demo.yaml', 'synthetic_camera')
    camera = SyntheticCameraNode(context=rclpy_context, parameter_overrides=[
        Parameter(name, value=value) for name, value in camera_overrides.items()])
    try:
        assert set(camera_overrides) <= set(declared(camera))
    finally:
        camera.destroy_node()


def test_demo_register_node_gets_the_synthetic_rigs_extrinsic(rclpy_context):
    import numpy as np

    from pointcloud_pipeline.demo.synthetic import depth_to_color_transform
    from pointcloud_pipeline.nodes.register_node import RegisterNode
    overrides = section('demo.yaml', 'register_node')
    node = RegisterNode(context=rclpy_context, parameter_overrides=[
        Parameter(name, value=value) for name, value in overrides.items()])
    try:
        assert set(overrides) <= set(declared(node))
        matrix = np.array(node.get_parameter('depth_to_rgb_transform').value).reshape(4, 4)
        np.testing.assert_array_equal(matrix, depth_to_color_transform())
    finally:
        node.destroy_node()
