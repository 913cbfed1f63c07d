"""``registered:=false`` in the launch files: register_node (depth_image_proc's ``register``)
between an unregistered camera and the pipeline node, with a real ``ros2 launch`` where a ROS 2
install with this package exists (colcon test); skipped on the bare path."""
import pytest

from test_launch_rviz_optional import launch, ros2_launch


@ros2_launch
def test_demo_unregistered_starts_the_register_node_and_the_pipeline_converts():
    code, output, orphans = launch(
        'demo.launch.py', 'registered:=false',
        until=('depth -> /launch_test_',  # each node's start log line
               'depth_registered/image_rect, extrinsic from', 'unregistered colour camera'))
    assert orphans == [], 'nodes left running'
    assert output.count('process started') == 3, output
    assert code == 0, output


@ros2_launch
@pytest.mark.parametrize('registered,processes', [('true', 1), ('false', 2)])
def test_pipeline_launch_adds_register_node_only_when_unregistered(registered, processes):
    started = ('depth -> /launch_test_',) + (
        ('depth_registered/image_rect, extrinsic from',) if registered == 'false' else ())
    code, output, orphans = launch('pipeline.launch.py', f'registered:={registered}',
                                   until=started)
    assert orphans == [], 'nodes left running'
    assert output.count('process started') == processes, output
    assert code == 0, output
