"""launch/monocular.launch.py wires the estimator into the pipeline node (needs launch_ros, which
is not on PyPI: this runs on a ROS 2 install, e.g. under colcon test)."""
import importlib.util

import pytest
import yaml

from conftest import REPO_ROOT

launch = pytest.importorskip('launch', reason='launch is not on PyPI; runs on a ROS 2 install')
launch_ros = pytest.importorskip('launch_ros.actions',
                                 reason='launch_ros is not on PyPI; runs on a ROS 2 install')

LAUNCH_FILE = REPO_ROOT / 'launch' / 'monocular.launch.py'


def load_description():
    spec = importlib.util.spec_from_file_location('monocular_launch', LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


def configure(description, **arguments):
    """A LaunchContext with the arguments given on the command line and the declared defaults."""
    from launch.actions import DeclareLaunchArgument
    context = launch.LaunchContext()
    context.launch_configurations.update(arguments)
    for action in description.entities:
        if isinstance(action, DeclareLaunchArgument):
            action.execute(context)
    return context


def nodes_by_executable(description):
    from launch_ros.actions import Node
    return {n.node_executable: n for n in description.entities if isinstance(n, Node)}


def parameters_of(node, context):
    """Evaluate the node's parameters as launch_ros does (a params file per dict)."""
    from launch.utilities import perform_substitutions
    node._perform_substitutions(context)
    context.extend_locals({'ros_specific_arguments': {'ns': '', 'name': ''}})  # set by execute()
    command = [perform_substitutions(context, part) for part in node.cmd[1:]]
    values = {}
    for flag, value in zip(command, command[1:]):
        if flag == '--params-file':
            for params in yaml.safe_load(open(value)).values():
                values.update(params['ros__parameters'])
    return values


def test_declares_the_documented_arguments():
    from launch.actions import DeclareLaunchArgument
    description = load_description()
    names = {a.name for a in description.entities if isinstance(a, DeclareLaunchArgument)}
    assert {'image', 'camera_info', 'model_path', 'profile', 'engine', 'device', 'rviz',
            'use_large_data_profile'} <= names
    nodes = nodes_by_executable(description)
    assert set(nodes) == {'depth_estimator_node', 'pipeline_node', 'rviz2'}
    assert all(n.node_package in ('pointcloud_pipeline', 'rviz2') for n in nodes.values())


def test_wiring_and_parameters():
    description = load_description()
    context = configure(description, image='/cam/color/image_rect', camera_info='/cam/color/info',
                        model_path='/models/model-small.onnx', profile='midas_v21_small',
                        namespace='mono')
    nodes = nodes_by_executable(description)
    estimator, pipeline = nodes['depth_estimator_node'], nodes['pipeline_node']
    params = parameters_of(estimator, context)
    assert params == {'model_path': '/models/model-small.onnx', 'profile': 'midas_v21_small',
                      'engine': 'tinygrad', 'device': '', 'max_rate': 0.0}
    assert isinstance(params['max_rate'], float)
    assert estimator.expanded_remapping_rules == [('image', '/cam/color/image_rect'),
                                                  ('camera_info', '/cam/color/info')]
    parameters_of(pipeline, context)
    assert pipeline.expanded_remapping_rules == [('depth/image_rect', 'depth/image'),
                                                 ('depth/camera_info', 'depth/camera_info')]
    assert estimator.expanded_node_namespace == pipeline.expanded_node_namespace == '/mono'


def test_rviz_is_optional():
    description = load_description()
    rviz = nodes_by_executable(description)['rviz2']
    assert not rviz.condition.evaluate(configure(description))
    assert rviz.condition.evaluate(configure(description, rviz='true'))
