"""Shared test setup.

Every test process keeps DDS on loopback (see pointcloud_pipeline.ros_env): discovery limited to
localhost, a random ROS_DOMAIN_ID, ROS_LOG_DIR in a temporary directory. This runs at import,
before any test module imports rclpy, and is inherited by every subprocess a test starts.
"""
import os
from pathlib import Path

import pytest

from pointcloud_pipeline.ros.dds_environment import apply_loopback_ros_env

apply_loopback_ros_env()

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir():
    """The real sample data: $POINTCLOUD_PIPELINE_DATA, else ../shared/data beside the checkout."""
    configured = os.environ.get('POINTCLOUD_PIPELINE_DATA')
    return Path(configured) if configured else REPO_ROOT.parent / 'shared' / 'data'


@pytest.fixture(scope='session')
def shared_data():
    """Path of the real sample data (KITTI, RGB-D, LAS); skips the test when it is absent."""
    path = shared_data_dir()
    if not (path / 'MANIFEST.md').is_file():
        pytest.skip(f'real sample data not found at {path} (set POINTCLOUD_PIPELINE_DATA)')
    return path


@pytest.fixture
def rclpy_context():
    """An initialised rclpy context of its own, shut down after the test."""
    import rclpy
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        context.try_shutdown()


@pytest.fixture(scope='session')
def seven_scenes_frame(shared_data):
    """A real 7-Scenes depth frame (uint16 mm) and its colour image (BGR), 640x480."""
    import cv2
    folder = shared_data / 'rgbd' / '7scenes_tsdf_fusion'
    depth = cv2.imread(str(folder / 'frame-000000.depth.png'), cv2.IMREAD_UNCHANGED)
    color = cv2.imread(str(folder / 'frame-000000.color.jpg'), cv2.IMREAD_COLOR)
    return depth, color
