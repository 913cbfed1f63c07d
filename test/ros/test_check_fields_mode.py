"""The message buffers and the nodes with rclpy's field checks on (ROS_PYTHON_CHECK_FIELDS=1).

rclpy reads the variable when a message module is imported, so the packing and node tests are
run again in a pytest subprocess with POINTCLOUD_PIPELINE_CHECK_FIELDS=1, which makes the
loopback environment (conftest) keep ROS_PYTHON_CHECK_FIELDS=1 instead of removing it. In that
mode the ``data`` setter stores an ``array('B')`` without copying it and rejects numpy arrays:
the published messages must still own their bytes and every node must still convert.
"""
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT
from pointcloud_pipeline.ros.dds_environment import CHECK_FIELDS_OPT_IN

pytestmark = [pytest.mark.ros, pytest.mark.slow]

CHECKED_TESTS = ['test/ros/test_data_field.py', 'test/ros/test_cloud_messages.py',
                 'test/ros/test_camera_messages.py', 'test/nodes/test_bev_node.py',
                 'test/nodes/test_pipeline_node.py', 'test/nodes/test_synthetic_camera_node.py']


def test_packing_and_node_tests_pass_with_field_checks_on():
    env = dict(os.environ, **{CHECK_FIELDS_OPT_IN: '1'})
    env.pop('ROS_PYTHON_CHECK_FIELDS', None)  # set again by the loopback environment
    result = subprocess.run(
        [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '-rfEp',
         *CHECKED_TESTS], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    summary = result.stdout[-4000:] + result.stderr[-2000:]
    assert result.returncode == 0, summary
    # the mode was on: test_data_field.py checks that the messages built by the code under
    # test check their fields
    assert ('PASSED test/ros/test_data_field.py::'
            'test_message_field_checks_follow_the_environment') in result.stdout
    assert ' passed' in result.stdout and ' failed' not in result.stdout, summary
