"""Intensity clouds (XYZI, XYZRGBI) from depth_to_cloud: against the numpy reference on real
7-Scenes frames (their colour converted to mono8 as the intensity, and that as uint16 and
float32), layouts, threads, strides and rejections."""
import cv2
import numpy as np
import pytest

from pointcloud_pipeline.camera import CameraIntrinsics
from pointcloud_pipeline.depth import (POINT_STEP, cloud_fields, depth_to_cloud, max_cloud_bytes,
                                       point_step)
from pointcloud_pipeline.layouts import PointFieldSpec
from reference_depth import reference_points

SEVEN_SCENES_K = CameraIntrinsics(585.0, 585.0, 320.0, 240.0)
FRAMES = ('frame-000000', 'frame-000010', 'frame-000020')


@pytest.fixture(scope='module')
def frames(shared_data):
    """[(depth uint16 mm, colour BGR, mono8 intensity)] of real 7-Scenes frames."""
    folder = shared_data / 'rgbd' / '7scenes_tsdf_fusion'
    result = []
    for name in FRAMES:
        depth = cv2.imread(str(folder / f'{name}.depth.png'), cv2.IMREAD_UNCHANGED)
        bgr = cv2.imread(str(folder / f'{name}.color.jpg'), cv2.IMREAD_COLOR)
        assert depth.shape == (480, 640) and bgr.shape == (480, 640, 3)
        result.append((depth, bgr, cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)))
    return result


def intensity_as(mono8, kind):
    """The mono8 image as uint8, uint16 (x 257: full mono16 range) or float32 (0..1)."""
    if kind == 'uint8':
        return mono8
    if kind == 'uint16':
        return mono8.astype(np.uint16) * np.uint16(257)
    return mono8.astype(np.float32) / np.float32(255)


def points_of(cloud):
    return cloud.data.view(np.float32).reshape(cloud.height, cloud.width, cloud.point_step // 4)


def assert_matches(cloud, expected):
    """Same NaN mask, x/y/z within 1e-6 relative, identical bits in the rgb/intensity slots."""
    points = points_of(cloud).reshape(expected.shape)
    np.testing.assert_array_equal(np.isnan(points[..., :3]), np.isnan(expected[..., :3]))
    np.testing.assert_allclose(points[..., :3], expected[..., :3], rtol=1e-6, atol=0)
    np.testing.assert_array_equal(points[..., 3:].view(np.uint32),
                                  expected[..., 3:].view(np.uint32))


@pytest.mark.parametrize('kind', ['uint8', 'uint16', 'float32'])
@pytest.mark.parametrize('organized', [True, False])
@pytest.mark.parametrize('with_color', [False, True])
def test_real_frames_match_the_reference(frames, kind, organized, with_color):
    for depth, bgr, mono8 in frames:
        intensity = intensity_as(mono8, kind)
        color = dict(color=bgr, color_encoding='bgr8') if with_color else {}
        cloud = depth_to_cloud(depth, SEVEN_SCENES_K, intensity=intensity, organized=organized,
                               **color)
        expected = reference_points(depth, SEVEN_SCENES_K, organized=organized,
                                    rgb=bgr[..., ::-1] if with_color else None,
                                    intensity=intensity)
        assert_matches(cloud, expected)
        assert cloud.fields == cloud_fields(with_color, True)
        assert cloud.point_step == (20 if with_color else 16)
        valid = depth != 0
        values = intensity.astype(np.float32)
        if organized:
            np.testing.assert_array_equal(cloud.intensity(), values)  # invalid points too
            assert np.isnan(cloud.xyz()[~valid]).all()
        else:
            np.testing.assert_array_equal(cloud.intensity()[0], values[valid])
        if with_color:
            rgb = bgr[..., ::-1]
            np.testing.assert_array_equal(cloud.rgb().reshape(-1, 3),
                                          (rgb if organized else rgb[valid]).reshape(-1, 3))
        # the xyz part is the pinhole cloud's, bit for bit
        plain = depth_to_cloud(depth, SEVEN_SCENES_K, organized=organized)
        np.testing.assert_array_equal(cloud.xyz().view(np.uint32), plain.xyz().view(np.uint32))


def test_xyzi_layout_is_depth_image_procs(frames):
    depth, _, mono8 = frames[0]
    cloud = depth_to_cloud(depth, SEVEN_SCENES_K, intensity=mono8)
    assert cloud.fields == (PointFieldSpec('x', 0, 7, 1), PointFieldSpec('y', 4, 7, 1),
                            PointFieldSpec('z', 8, 7, 1), PointFieldSpec('intensity', 12, 7, 1))
    assert cloud.point_step == POINT_STEP == point_step(False, True) == 16
    assert cloud.row_step == 640 * 16 and cloud.rgb() is None
    raw = cloud.data.reshape(480, 640, 16)[..., 12:16].copy().view('<f4')[..., 0]
    np.testing.assert_array_equal(raw, mono8.astype(np.float32))
    rgbi = depth_to_cloud(depth, SEVEN_SCENES_K, intensity=mono8, color=mono8,
                          color_encoding='mono8')
    assert [(f.name, f.offset) for f in rgbi.fields] == \
        [('x', 0), ('y', 4), ('z', 8), ('rgb', 12), ('intensity', 16)]
    assert rgbi.point_step == point_step(True, True) == 20 and rgbi.row_step == 640 * 20
    assert rgbi.data.nbytes == max_cloud_bytes(depth.shape, with_color=True,
                                               with_intensity=True) == 480 * 640 * 20
    assert np.shares_memory(rgbi.intensity(), rgbi.data)
    assert rgbi.xyz().shape == (480, 640, 3) and rgbi.intensity().shape == (480, 640)
    np.testing.assert_array_equal(rgbi.rgb()[..., 0], mono8)
    assert max_cloud_bytes(depth.shape) == max_cloud_bytes(depth.shape, with_intensity=True) \
        == max_cloud_bytes(depth.shape, with_color=True) == 480 * 640 * 16
    assert cloud_fields(True) == cloud_fields(True, False)
    assert depth_to_cloud(depth, SEVEN_SCENES_K).intensity() is None


@pytest.mark.parametrize('dx,dy', [(2, 2), (3, 1), (1, 4), (7, 5)])
@pytest.mark.parametrize('organized', [True, False])
def test_decimation_and_options(frames, dx, dy, organized):
    depth, bgr, mono8 = frames[1]
    intensity = intensity_as(mono8, 'uint16')
    kwargs = dict(decimation_x=dx, decimation_y=dy, organized=organized, min_range=1.0,
                  max_range=3.0, invalid_depth=4.5)
    for color in (None, bgr):
        extra = dict(color=color, color_encoding='bgr8') if color is not None else {}
        cloud = depth_to_cloud(depth, SEVEN_SCENES_K, intensity=intensity, **kwargs, **extra)
        expected = reference_points(depth, SEVEN_SCENES_K, intensity=intensity,
                                    rgb=None if color is None else color[..., ::-1], **kwargs)
        assert_matches(cloud, expected)


@pytest.mark.parametrize('organized', [True, False])
def test_same_bytes_for_any_thread_count(frames, organized):
    depth, bgr, mono8 = frames[2]
    depth, bgr, mono8 = np.tile(depth, (3, 2)), np.tile(bgr, (3, 2, 1)), np.tile(mono8, (3, 2))
    for color in (None, bgr):
        extra = dict(color=color, color_encoding='bgr8') if color is not None else {}
        results = [depth_to_cloud(depth, SEVEN_SCENES_K, intensity=mono8, organized=organized,
                                  decimation_x=3, threads=threads, **extra).data
                   for threads in (1, 2, 3, 0)]
        for data in results[1:]:
            np.testing.assert_array_equal(data, results[0])


def test_float_intensity_is_written_raw(frames):
    depth, _, _ = frames[0]
    depth = depth[:4, :6]
    values = np.array([[np.nan, np.inf, -np.inf, -1.5, 0.0, 1e30]] * 4, np.float32)
    cloud = depth_to_cloud(depth, SEVEN_SCENES_K, intensity=values)
    np.testing.assert_array_equal(cloud.intensity().view(np.uint32), values.view(np.uint32))
    metres = depth.astype(np.float32) / 1000  # float depth with uint16 intensity
    wide = np.array([[0, 1, 255, 256, 65535, 40000]] * 4, np.uint16)
    cloud = depth_to_cloud(metres, SEVEN_SCENES_K, intensity=wide, organized=False)
    np.testing.assert_array_equal(cloud.intensity()[0], wide[depth != 0].astype(np.float32))


def test_strided_swapped_and_unaligned_intensity(frames):
    depth, _, mono8 = frames[0]
    wide = intensity_as(mono8, 'uint16')
    expected = depth_to_cloud(depth, SEVEN_SCENES_K, intensity=wide).data
    flipped = np.ascontiguousarray(wide[::-1, ::-1])[::-1, ::-1]
    padded = np.zeros((480, 700), np.uint16)
    padded[:, :640] = wide
    raw = np.zeros(wide.nbytes + 1, np.uint8)
    unaligned = raw[1:].view(np.uint16).reshape(480, 640)
    unaligned[...] = wide
    assert not unaligned.flags.aligned
    for view in (flipped, padded[:, :640], wide.astype('>u2'), unaligned,
                 np.ascontiguousarray(wide.T).T):
        np.testing.assert_array_equal(view, wide)
        np.testing.assert_array_equal(
            depth_to_cloud(depth, SEVEN_SCENES_K, intensity=view).data, expected)
    float_expected = depth_to_cloud(depth, SEVEN_SCENES_K,
                                    intensity=wide.astype(np.float32)).data
    np.testing.assert_array_equal(
        depth_to_cloud(depth, SEVEN_SCENES_K, intensity=wide.astype('>f4')).data, float_expected)


@pytest.mark.parametrize('kind', ['numpy', 'bytearray'])
def test_out_buffer_of_20_byte_points(frames, kind):
    depth, bgr, mono8 = frames[0]
    size = max_cloud_bytes(depth.shape, with_color=True, with_intensity=True)
    out = np.empty(size, np.uint8) if kind == 'numpy' else bytearray(size)
    base = np.frombuffer(out, np.uint8)
    for organized in (True, False):
        cloud = depth_to_cloud(depth, SEVEN_SCENES_K, intensity=mono8, color=bgr,
                               color_encoding='bgr8', organized=organized, out=out)
        assert cloud.data.ctypes.data == base.ctypes.data
        fresh = depth_to_cloud(depth, SEVEN_SCENES_K, intensity=mono8, color=bgr,
                               color_encoding='bgr8', organized=organized)
        np.testing.assert_array_equal(cloud.data, fresh.data)
    with pytest.raises(ValueError, match=f'out buffer too small: {size - 1} bytes, the cloud '
                                         f'needs {size}'):
        depth_to_cloud(depth, SEVEN_SCENES_K, intensity=mono8, color=bgr, color_encoding='bgr8',
                       out=bytearray(size - 1))


GOOD_DEPTH = np.full((4, 6), 1000, np.uint16)


@pytest.mark.parametrize('intensity,message', [
    (np.zeros((5, 6), np.uint8), 'intensity size 6x5 differs from depth size 6x4'),
    (np.zeros((4, 7), np.float32), 'intensity size 7x4 differs from depth size 6x4'),
    (np.zeros((4, 6), np.int16), r'intensity dtype must be uint8 \(mono8\), uint16 '
                                 r'\(mono16/16UC1\) or float32 \(32FC1\), got int16'),
    (np.zeros((4, 6), np.float64), 'got float64'),
    (np.zeros((4, 6), bool), 'got bool'),
    (np.zeros((4, 6, 1), np.uint8), r'2-D \(H x W\) array, got shape \(4, 6, 1\)'),
    (np.zeros(24, np.uint8), r'2-D \(H x W\) array, got shape \(24,\)'),
    ([[0] * 6] * 4, 'intensity must be a numpy array, got list'),
])
def test_bad_intensity_says_what_is_wrong(intensity, message):
    for organized in (True, False):
        with pytest.raises(ValueError, match=message):
            depth_to_cloud(GOOD_DEPTH, SEVEN_SCENES_K, intensity=intensity, organized=organized)
