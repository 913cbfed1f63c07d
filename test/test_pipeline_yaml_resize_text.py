"""config/pipeline.yaml describes ``resize_rgb`` as the depth module does it: cv2.resize with
INTER_AREA when the colour image is at least as large as the depth image in both axes, else
INTER_LINEAR (never nearest neighbour)."""
import re

import cv2
import numpy as np
import pytest

from conftest import REPO_ROOT
from pointcloud_pipeline.camera import CameraIntrinsics
from pointcloud_pipeline.depth import depth_to_cloud


def resize_rgb_comment():
    """The comment lines of ``resize_rgb`` in config/pipeline.yaml, joined."""
    lines = (REPO_ROOT / 'config' / 'pipeline.yaml').read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith('resize_rgb:'))
    comment = [lines[start].split('#', 1)[1]]
    for line in lines[start + 1:]:
        if not re.match(r'^\s+#', line):
            break
        comment.append(line.split('#', 1)[1])
    return ' '.join(part.strip() for part in comment)


def test_comment_names_the_interpolations_the_code_uses():
    text = resize_rgb_comment()
    assert 'nearest' not in text.lower()
    assert 'INTER_AREA when it is at least as large in both axes, else INTER_LINEAR' in text


@pytest.mark.parametrize('color_shape,interpolation', [
    ((96, 128), cv2.INTER_AREA),      # larger in both axes: shrink
    ((48, 64), cv2.INTER_AREA),       # the same size in one axis counts as at least as large
    ((24, 32), cv2.INTER_LINEAR),     # smaller: enlarge
    ((96, 16), cv2.INTER_LINEAR),     # taller but narrower
])
def test_resized_colour_is_the_documented_interpolation(color_shape, interpolation):
    height, width = 48, 64
    depth = np.full((height, width), 1000, np.uint16)
    intrinsics = CameraIntrinsics(50.0, 50.0, 32.0, 24.0)
    rng = np.random.default_rng(0)
    color = rng.integers(0, 256, (*color_shape, 3), dtype=np.uint8)
    cloud = depth_to_cloud(depth, intrinsics, color=color, color_encoding='rgb8',
                           resize_color=True, organized=True)
    expected = cv2.resize(color, (width, height), interpolation=interpolation)
    np.testing.assert_array_equal(cloud.rgb(), expected)
    nearest = cv2.resize(color, (width, height), interpolation=cv2.INTER_NEAREST)
    assert color_shape == (height, width) or not np.array_equal(cloud.rgb(), nearest)
