"""Message checks before conversion: every rule gives its reason (no ROS needed)."""
from types import SimpleNamespace

import numpy as np
import pytest

from pointcloud_pipeline.layouts import COLOR_ENCODINGS, DEPTH_ENCODINGS
from pointcloud_pipeline.ros.message_checks import (DuplicateDeliveries, FrameError,
                                                    camera_model, check_camera_matches,
                                                    check_color_matches, cloud_layout,
                                                    image_pixels)


def image(pixels, image_encoding, **overrides):
    pixels = np.ascontiguousarray(pixels)
    fields = dict(height=pixels.shape[0], width=pixels.shape[1], encoding=image_encoding,
                  is_bigendian=0, step=pixels.strides[0], data=pixels.tobytes())
    fields.update(overrides)
    return SimpleNamespace(**fields)


DEPTH = np.arange(12, dtype=np.uint16).reshape(3, 4)


def reason(call):
    with pytest.raises(FrameError) as raised:
        call()
    return raised.value.reason


def test_valid_depth_is_a_zero_copy_view():
    msg = image(DEPTH, '16UC1')
    pixels = image_pixels(msg, DEPTH_ENCODINGS, 1 << 20)
    np.testing.assert_array_equal(pixels, DEPTH)
    assert np.shares_memory(pixels, np.frombuffer(msg.data, np.uint8))


def test_big_endian_depth_is_swapped():
    msg = image(DEPTH.astype('>u2'), '16UC1', is_bigendian=1)
    np.testing.assert_array_equal(image_pixels(msg, DEPTH_ENCODINGS, 1 << 20), DEPTH)


def test_padded_rows_are_read_through_the_stride():
    padded = np.zeros((3, 6), np.uint16)
    padded[:, :4] = DEPTH
    msg = image(padded, '16UC1', width=4)  # step stays 12 bytes
    np.testing.assert_array_equal(image_pixels(msg, DEPTH_ENCODINGS, 1 << 20), DEPTH)


@pytest.mark.parametrize('overrides,expected', [
    ({'encoding': 'bgr8'}, 'bad_encoding'),
    ({'encoding': ''}, 'bad_encoding'),
    ({'width': 0}, 'empty_image'),
    ({'height': 0}, 'empty_image'),
    ({'step': 7}, 'bad_step'),
    ({'step': 10}, 'bad_step'),
    ({'height': 4}, 'bad_step'),
    ({'data': b''}, 'bad_step'),
    ({'width': 100000, 'step': 200000}, 'bad_step'),
])
def test_bad_depth_images(overrides, expected):
    msg = image(DEPTH, '16UC1', **overrides)
    assert reason(lambda: image_pixels(msg, DEPTH_ENCODINGS, 1 << 20)) == expected


def test_size_cap_and_colour_prefix():
    assert reason(lambda: image_pixels(image(DEPTH, '16UC1'), DEPTH_ENCODINGS, 10)) == \
        'too_large'
    colour = image(np.zeros((3, 4, 3), np.uint8), 'rgb16')
    assert reason(lambda: image_pixels(colour, COLOR_ENCODINGS, 1 << 20, 'rgb_')) == \
        'rgb_bad_encoding'


def camera_info(width=4, height=3, k=(2.0, 0, 1.5, 0, 2.0, 1.0, 0, 0, 1), p=None):
    p = p if p is not None else (k[0], 0, k[2], 0, 0, k[4], k[5], 0, 0, 0, 1, 0)
    return SimpleNamespace(width=width, height=height, k=list(k), p=list(p))


def test_camera_model_and_its_checks():
    model = camera_model(camera_info())
    assert (model.width, model.height) == (4, 3)
    assert model.intrinsics.fx == 2.0 and model.intrinsics.cx == 1.5
    check_camera_matches(model, (3, 4))
    assert reason(lambda: check_camera_matches(model, (4, 3))) == 'camera_info_mismatch'
    assert reason(lambda: camera_model(camera_info(width=0))) == 'bad_camera_info'
    assert reason(lambda: camera_model(camera_info(k=[0] * 9, p=[0] * 12))) == \
        'bad_camera_info'
    assert reason(lambda: camera_model(camera_info(k=[np.nan] * 9, p=[np.nan] * 12))) == \
        'bad_camera_info'


def ros_camera_info(width=1280, height=960, binning=(0, 0), roi=(0, 0, 0, 0),
                    k=(1170.0, 0, 641.5, 0, 1172.0, 479.25, 0, 0, 1), p=None):
    """A real sensor_msgs/CameraInfo (no ROS graph needed) with full-resolution calibration."""
    from sensor_msgs.msg import CameraInfo, RegionOfInterest
    p = p if p is not None else (k[0], 0, k[2], 0, 0, k[4], k[5], 0, 0, 0, 1, 0)
    x, y, roi_width, roi_height = roi
    return CameraInfo(width=width, height=height, k=[float(v) for v in k],
                      p=[float(v) for v in p], binning_x=binning[0], binning_y=binning[1],
                      roi=RegionOfInterest(x_offset=x, y_offset=y, width=roi_width,
                                           height=roi_height))


def test_binned_and_cropped_camera_info_describes_the_published_image():
    model = camera_model(ros_camera_info(binning=(2, 2), roi=(160, 120, 640, 480)))
    assert (model.width, model.height) == (320, 240) and model.fallback is None
    assert tuple(model.intrinsics) == (1170.0 / 2, 1172.0 / 2, (641.5 - 160) / 2,
                                       (479.25 - 120) / 2)
    check_camera_matches(model, (240, 320))
    assert reason(lambda: check_camera_matches(model, (960, 1280))) == 'camera_info_mismatch'
    by_k = camera_model(ros_camera_info(binning=(2, 0), p=(1100.0, 0, 600.0, 0, 0, 1100.0,
                                                           450.0, 0, 0, 0, 1, 0)),
                        use_projection_matrix=False)
    assert tuple(by_k.intrinsics) == (585.0, 1172.0, 320.75, 479.25)
    assert (by_k.width, by_k.height) == (640, 960)


def test_camera_model_keeps_k_and_the_lens_model_for_ray_tables():
    info = ros_camera_info(binning=(2, 2), roi=(160, 120, 640, 480),
                           p=(1100.0, 0, 600.0, 0, 0, 1100.0, 450.0, 0, 0, 0, 1, 0))
    info.distortion_model = 'rational_polynomial'
    info.d = [0.1, -0.2, 0.001, 0.002, 0.03, 0.0, 0.0, 0.0]
    model = camera_model(info)
    assert tuple(model.intrinsics) == (550.0, 550.0, (600.0 - 160) / 2, (450.0 - 120) / 2)
    assert tuple(model.raw_intrinsics) == (1170.0 / 2, 1172.0 / 2, (641.5 - 160) / 2,
                                           (479.25 - 120) / 2)
    assert model.distortion_model == 'rational_polynomial'
    assert model.distortion == (0.1, -0.2, 0.001, 0.002, 0.03, 0.0, 0.0, 0.0)
    p_only = camera_model(ros_camera_info(k=[0.0] * 9, p=(1100.0, 0, 600.0, 0, 0, 1100.0,
                                                          450.0, 0, 0, 0, 1, 0)))
    assert p_only.raw_intrinsics is None


@pytest.mark.parametrize('binning,roi', [
    ((1, 1), (1, 0, 1280, 960)), ((1, 1), (0, 0, 0, 10)), ((1, 1), (5, 5, 0, 0)),
    ((2048, 1), (0, 0, 0, 0))])
def test_invalid_binning_or_roi_is_a_bad_camera_info(binning, roi):
    assert reason(lambda: camera_model(ros_camera_info(binning=binning, roi=roi))) == \
        'bad_camera_info'


def test_all_zero_p_falls_back_to_k():
    model = camera_model(ros_camera_info(p=[0.0] * 12))
    assert tuple(model.intrinsics) == (1170.0, 1172.0, 641.5, 479.25)
    assert 'P is all zeros' in model.fallback
    assert camera_model(ros_camera_info(p=[0.0] * 12), use_projection_matrix=False).fallback \
        is None
    assert reason(lambda: camera_model(ros_camera_info(k=[0.0] * 9, p=[0.0] * 12))) == \
        'bad_camera_info'
    assert reason(lambda: camera_model(ros_camera_info(k=[np.nan] * 9, p=[0.0] * 12))) == \
        'bad_camera_info'


def delivery(gid, sequence, source_timestamp=0):
    """An rclpy MessageInfo dict as rmw_fastrtps_cpp fills it."""
    return {'source_timestamp': source_timestamp, 'received_timestamp': 0,
            'publication_sequence_number': sequence, 'reception_sequence_number': None,
            'publisher_gid': {'implementation_identifier': 'rmw_fastrtps_cpp', 'data': gid}}


def test_duplicate_deliveries_are_recognised_per_publisher_and_sequence():
    deliveries = DuplicateDeliveries(remember=3)
    a, b = bytes(range(16)), bytes(range(1, 17))
    assert not deliveries.is_duplicate(delivery(a, 1))
    assert deliveries.is_duplicate(delivery(a, 1))       # the second subscription's copy
    assert not deliveries.is_duplicate(delivery(b, 1))   # another publisher
    assert not deliveries.is_duplicate(delivery(a, 2))
    assert not deliveries.is_duplicate(delivery(a, None, 5))  # no sequence: source time
    assert deliveries.is_duplicate(delivery(a, None, 5))
    assert not deliveries.is_duplicate(delivery(a, 1))   # forgotten beyond ``remember``
    assert deliveries.duplicates == 2
    no_gid = {'publisher_gid': None, 'publication_sequence_number': 1}
    assert not deliveries.is_duplicate(no_gid) and not deliveries.is_duplicate(no_gid)
    assert not deliveries.is_duplicate(None)


def test_colour_size_rule():
    check_color_matches((3, 4, 3), (3, 4), resize=False)
    check_color_matches((6, 8, 3), (3, 4), resize=True)
    assert reason(lambda: check_color_matches((6, 8, 3), (3, 4), False)) == \
        'rgb_size_mismatch'


def field(name, offset, datatype=7, count=1):
    return SimpleNamespace(name=name, offset=offset, datatype=datatype, count=count)


def cloud(points, fields, point_step=16, row_step=None, height=1, **overrides):
    data = np.ascontiguousarray(points).tobytes()
    width = len(data) // point_step // height
    fields_ = dict(height=height, width=width, point_step=point_step,
                   row_step=row_step if row_step is not None else width * point_step,
                   is_bigendian=False, fields=fields, data=data)
    fields_.update(overrides)
    return SimpleNamespace(**fields_)


XYZI = [field('x', 0), field('y', 4), field('z', 8), field('intensity', 12)]


def test_cloud_layout_finds_fields_by_name():
    points = np.zeros((5, 8), np.float32)  # 32-byte points: intensity at 16, extras elsewhere
    fields = [field('ring', 0, datatype=4), field('z', 12), field('x', 4), field('y', 8),
              field('intensity', 16)]
    layout = cloud_layout(cloud(points, fields, point_step=32), 1 << 20)
    assert (layout.x_offset, layout.y_offset, layout.z_offset, layout.intensity_offset) == (
        4, 8, 12, 16)
    assert layout.num_points == 5 and layout.point_step == 32


def test_cloud_layout_ignores_a_non_float_intensity_and_copies_padded_rows():
    points = np.zeros((2, 4), np.float32)
    fields = XYZI[:3] + [field('intensity', 12, datatype=4)]
    assert cloud_layout(cloud(points, fields), 1 << 20).intensity_offset is None
    rows = np.zeros((2, 40), np.uint8)  # two rows of 2 points + 8 padding bytes
    rows[:, :32].view(np.float32)[:] = np.arange(16, dtype=np.float32).reshape(2, 8)
    msg = cloud(rows, XYZI, row_step=40, height=2)
    msg.width = 2
    layout = cloud_layout(msg, 1 << 20)
    np.testing.assert_array_equal(np.frombuffer(layout.buffer, np.float32),
                                  np.arange(16, dtype=np.float32))


def test_empty_cloud_is_valid():
    layout = cloud_layout(cloud(np.zeros((0, 4), np.float32), XYZI), 1 << 20)
    assert layout.num_points == 0


@pytest.mark.parametrize('change,expected', [
    (lambda c: setattr(c, 'is_bigendian', True), 'big_endian'),
    (lambda c: setattr(c, 'fields', XYZI[:2]), 'missing_field'),
    (lambda c: setattr(c, 'fields', XYZI[:2] + [field('z', 8, datatype=8)]), 'bad_field'),
    (lambda c: setattr(c, 'fields', XYZI[:2] + [field('z', 8, count=3)]), 'bad_field'),
    (lambda c: setattr(c, 'fields', XYZI[:2] + [field('z', 14)]), 'bad_field'),
    (lambda c: setattr(c, 'row_step', 10), 'bad_size'),
    (lambda c: setattr(c, 'width', 7), 'bad_size'),
    (lambda c: setattr(c, 'data', c.data[:-1]), 'bad_size'),
    (lambda c: setattr(c, 'point_step', 2), 'bad_field'),
])
def test_bad_clouds(change, expected):
    msg = cloud(np.zeros((5, 4), np.float32), XYZI)
    change(msg)
    assert reason(lambda: cloud_layout(msg, 1 << 20)) == expected


def test_cloud_size_cap():
    msg = cloud(np.zeros((5, 4), np.float32), XYZI)
    assert reason(lambda: cloud_layout(msg, 79)) == 'too_large'
