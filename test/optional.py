"""Optional packages of the tests (no side effects: also imported by bench/).

They are installed by requirements.txt on the bare-machine path; on a ROS 2 install they come
from pip (README), and the tests of the feature skip with the reason below without them.
"""
import importlib.util

import pytest

OPTIONAL_PACKAGES = {
    'plyfile': 'pip install plyfile==1.1.5 (the demo recorder writes PLY with it)',
    'rosbags': 'pip install rosbags==0.11.9 (the demo replays rosbag2 files with it)',
    'dask': 'pip install dask==2026.8.0 distributed==2026.8.0 (bev --dask-scheduler)',
    'tinygrad': 'pip install tinygrad==0.14.0 (monocular depth)',
    'onnx': 'pip install onnx==1.23.2 (the monocular tests build ONNX models with it)',
    'onnxruntime': 'pip install onnxruntime==1.31.1 (monocular engine onnxruntime; the reference '
                   'of the monocular tests)',
    'hypothesis': 'pip install hypothesis==6.170.0 (property-based fuzzing)',
    'viser': 'pip install viser==1.1.1 (the browser view: python -m pointcloud_pipeline view)',
    'playwright': 'pip install playwright==1.65.2 (the browser-view tests drive chromium with it)',
}


def require(module):
    """Import an optional package or skip the calling test module, saying how to install it."""
    return pytest.importorskip(module, reason=f'{module} is not installed: '
                                              f'{OPTIONAL_PACKAGES[module]}')


def missing(module):
    """pytest.mark.skipif for a test that needs the optional package ``module``."""
    return pytest.mark.skipif(importlib.util.find_spec(module) is None,
                              reason=f'{module} is not installed: {OPTIONAL_PACKAGES[module]}')
