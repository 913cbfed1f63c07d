"""monodepth.processing, the pre/post-processing around the network: resize modes, normalisation,
output kinds -> metres, camera-intrinsics scaling. Pure numpy/OpenCV, checked against the
formulas the profiles document."""
import subprocess
import sys

import cv2
import numpy as np
import pytest

from pointcloud_pipeline.layouts import COLOR_ENCODINGS, ENCODINGS
from pointcloud_pipeline.monodepth import (ModelProfile, Placement, compute_placement,
                                           fit_inverse_relative, output_to_depth, postprocess,
                                           preprocess)
from reference_monodepth import reference_normalize

IMAGENET = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def profile(**overrides):
    fields = dict(name='test', input_size=(256, 256), interpolation='linear', **IMAGENET)
    fields.update(overrides)
    return ModelProfile(**fields)


@pytest.fixture(scope='module')
def color_bgr(shared_data):
    """A real Kinect colour frame (7-Scenes), 640x480, as OpenCV reads it (BGR)."""
    image = cv2.imread(str(shared_data / 'rgbd/7scenes_tsdf_fusion/frame-000000.color.jpg'))
    assert image is not None and image.shape == (480, 640, 3)
    return image


@pytest.fixture(scope='module')
def depth_m(shared_data):
    """The matching real depth frame in metres (16-bit PNG, mm; 0 = invalid -> NaN)."""
    raw = cv2.imread(str(shared_data / 'rgbd/7scenes_tsdf_fusion/frame-000000.depth.png'),
                     cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16 and raw.shape == (480, 640)
    depth = raw.astype(np.float32) / 1000.0
    depth[raw == 0] = np.nan
    return depth


# -- placement -------------------------------------------------------------------------------

def test_placement_of_each_resize_mode():
    assert compute_placement((480, 640), profile(resize='stretch')) == Placement(
        (480, 640), (256, 256), (0, 0, 640, 480), (0, 0, 256, 256))
    # letterbox: scale min(256/480, 256/640) = 0.4 -> 256 x 192 content, centred vertically
    assert compute_placement((480, 640), profile(resize='letterbox')) == Placement(
        (480, 640), (256, 256), (0, 0, 640, 480), (0, 32, 256, 192))
    # crop: scale max(...) = 256/480 -> the central 480 x 480 of the image
    assert compute_placement((480, 640), profile(resize='crop')) == Placement(
        (480, 640), (256, 256), (80, 0, 480, 480), (0, 0, 256, 256))
    # a portrait image into a landscape network
    letterbox = compute_placement((640, 480), profile(resize='letterbox', input_size=(240, 320)))
    assert letterbox.target == (70, 0, 180, 240)


# -- preprocess ------------------------------------------------------------------------------

def test_stretch_normalises_like_the_documented_formula(color_bgr):
    rgb = color_bgr[:, :, ::-1]
    tensor, placement = preprocess(rgb, 'rgb8', profile(interpolation='cubic'))
    assert tensor.shape == (1, 3, 256, 256) and tensor.dtype == np.float32
    assert tensor.flags.c_contiguous
    resized = cv2.resize(np.ascontiguousarray(rgb), (256, 256), interpolation=cv2.INTER_CUBIC)
    expected = reference_normalize(resized, 1 / 255, IMAGENET['mean'], IMAGENET['std'])
    np.testing.assert_allclose(tensor[0], expected.transpose(2, 0, 1), atol=2e-6)
    assert placement.source == (0, 0, 640, 480)


def test_encodings_and_channel_orders_agree(color_bgr):
    rgb = np.ascontiguousarray(color_bgr[:, :, ::-1])
    reference, _ = preprocess(rgb, 'rgb8', profile())
    np.testing.assert_array_equal(preprocess(color_bgr, 'bgr8', profile())[0], reference)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])
    np.testing.assert_array_equal(preprocess(rgba, 'rgba8', profile())[0], reference)
    bgra = np.dstack([color_bgr, np.full(rgb.shape[:2], 7, np.uint8)])
    np.testing.assert_array_equal(preprocess(bgra, 'bgra8', profile())[0], reference)
    # a BGR network gets the channels reversed (and its mean/std apply in its own order)
    bgr_net = profile(channel_order='bgr', mean=IMAGENET['mean'][::-1], std=IMAGENET['std'][::-1])
    bgr_reference, _ = preprocess(rgb, 'rgb8', bgr_net)
    np.testing.assert_allclose(bgr_reference, reference[:, ::-1], atol=1e-6)
    for image, encoding in ((color_bgr, 'bgr8'), (rgba, 'rgba8'), (bgra, 'bgra8')):
        np.testing.assert_array_equal(preprocess(image, encoding, bgr_net)[0], bgr_reference)
    # NHWC is the same numbers transposed
    nhwc, _ = preprocess(rgb, 'rgb8', profile(layout='NHWC'))
    np.testing.assert_array_equal(nhwc, reference.transpose(0, 2, 3, 1))


def test_mono8_is_replicated_to_three_channels(color_bgr):
    gray = cv2.cvtColor(color_bgr, cv2.COLOR_BGR2GRAY)
    tensor, _ = preprocess(gray, 'mono8', profile(mean=0.5, std=0.25))
    expected = reference_normalize(cv2.resize(gray, (256, 256)), 1 / 255, 0.5, 0.25)
    for channel in range(3):
        np.testing.assert_allclose(tensor[0, channel], expected, atol=2e-6)
    np.testing.assert_array_equal(preprocess(gray[:, :, None], 'mono8', profile())[0],
                                  preprocess(gray, 'mono8', profile())[0])
    bgr_net = profile(channel_order='bgr', mean=0.5, std=0.25)
    np.testing.assert_array_equal(preprocess(gray, 'mono8', bgr_net)[0], tensor)


def test_every_colour_encoding_of_the_package_is_accepted():
    for encoding in COLOR_ENCODINGS:
        layout = ENCODINGS[encoding]
        image = np.zeros((4, 6, layout.channels), layout.dtype)
        assert preprocess(image, encoding, profile())[0].shape == (1, 3, 256, 256)


def test_letterbox_pads_with_the_normalised_pad_value(color_bgr):
    rgb = np.ascontiguousarray(color_bgr[:, :, ::-1])
    tensor, placement = preprocess(rgb, 'rgb8', profile(resize='letterbox', pad_value=114))
    assert placement.target == (0, 32, 256, 192)
    pad = reference_normalize(np.full(3, 114.0), 1 / 255, IMAGENET['mean'], IMAGENET['std'])
    for rows in (slice(0, 32), slice(224, 256)):
        np.testing.assert_allclose(tensor[0, :, rows, :],
                                   np.broadcast_to(pad[:, None, None], (3, 32, 256)), atol=1e-6)
    content = reference_normalize(cv2.resize(rgb, (256, 192)), 1 / 255, IMAGENET['mean'],
                                  IMAGENET['std'])
    np.testing.assert_allclose(tensor[0, :, 32:224, :], content.transpose(2, 0, 1), atol=2e-6)
    # NHWC: the same numbers, border included, transposed
    nhwc, _ = preprocess(rgb, 'rgb8', profile(resize='letterbox', pad_value=114, layout='NHWC'))
    np.testing.assert_array_equal(nhwc, tensor.transpose(0, 2, 3, 1))


def test_crop_feeds_the_central_square(color_bgr):
    rgb = np.ascontiguousarray(color_bgr[:, :, ::-1])
    tensor, placement = preprocess(rgb, 'rgb8', profile(resize='crop'))
    assert placement.source == (80, 0, 480, 480)
    centre = np.ascontiguousarray(rgb[:, 80:560])
    expected = reference_normalize(cv2.resize(centre, (256, 256)), 1 / 255, IMAGENET['mean'],
                                   IMAGENET['std'])
    np.testing.assert_allclose(tensor[0], expected.transpose(2, 0, 1), atol=2e-6)


@pytest.mark.parametrize('image,encoding,message', [
    (np.zeros((4, 4, 3), np.uint16), 'rgb8', 'must be uint8'),
    (np.zeros((4, 4, 4), np.uint8), 'rgb8', 'rgb8 image must be H x W x 3'),
    (np.zeros((4, 4), np.uint8), 'bgr8', 'bgr8 image must be H x W x 3'),
    (np.zeros((4, 4), np.uint16), '16UC1', "unsupported colour encoding '16UC1'"),
    (np.zeros((0, 4, 3), np.uint8), 'rgb8', 'empty image'),
])
def test_bad_images_raise_value_error(image, encoding, message):
    with pytest.raises(ValueError, match=message):
        preprocess(image, encoding, profile())


# -- output kinds ----------------------------------------------------------------------------

def test_metric_output():
    p = profile(output_kind='metric', output_scale=2.0, output_shift=0.5, min_depth_m=1.0,
                max_depth_m=8.0)
    raw = np.array([[1.0, 2.0, -1.0, np.nan], [0.2, 3.0, 4.0, np.inf]], np.float32)
    depth = output_to_depth(raw, p)
    expected = np.array([[2.5, 4.5, np.nan, np.nan], [np.nan, 6.5, np.nan, np.nan]], np.float32)
    np.testing.assert_array_equal(depth, expected)  # 0.9 < min, 8.5 > max, -1.5 <= 0
    assert depth.dtype == np.float32


def test_depth_limits_are_inclusive_and_infinities_invalid():
    raw = np.array([-np.inf, -0.0, 0.0, 1e-30, 0.5, 1.0, 8.0, 8.0001, 3e38, np.inf, np.nan],
                   np.float32)
    unlimited = output_to_depth(raw, profile(output_kind='metric'))
    np.testing.assert_array_equal(np.isnan(unlimited), [True, True, True, False, False, False,
                                                        False, False, False, True, True])
    limited = output_to_depth(raw, profile(output_kind='metric', min_depth_m=1.0,
                                           max_depth_m=8.0))
    np.testing.assert_array_equal(np.isnan(limited), [True, True, True, True, True, False,
                                                      False, True, True, True, True])
    huge = output_to_depth(raw, profile(output_kind='metric', max_depth_m=1e300))
    np.testing.assert_array_equal(huge, unlimited)
    valid = ~np.isnan(limited)
    np.testing.assert_array_equal(limited[valid], raw[valid])


def test_inverse_relative_output():
    p = profile(output_kind='inverse_relative', output_scale=0.5, output_shift=1.0)
    raw = np.array([0.0, 2.0, 18.0, -2.0, -4.0, np.nan], np.float32)
    # depth = 1 / (0.5 y + 1): 1, 0.5, 0.1; inverse 0 -> NaN, inverse < 0 -> NaN, NaN -> NaN
    np.testing.assert_allclose(output_to_depth(raw, p), [1.0, 0.5, 0.1, np.nan, np.nan, np.nan],
                               rtol=1e-6)
    clamped = profile(output_kind='inverse_relative', output_scale=0.5, output_shift=1.0,
                      min_depth_m=0.2, max_depth_m=0.8)
    np.testing.assert_array_equal(np.isnan(output_to_depth(raw, clamped)),
                                  [True, False, True, True, True, True])


def test_disparity_output_uses_profile_or_camera_focal():
    p = profile(output_kind='disparity', baseline_m=0.1)
    raw = np.array([10.0, 50.0, 0.0, -1.0], np.float32)
    # depth = 0.1 m * 500 px / (2 * d)
    np.testing.assert_allclose(output_to_depth(raw, p, focal_px=500.0, disparity_scale=2.0),
                               [2.5, 0.5, np.nan, np.nan], rtol=1e-6)
    with pytest.raises(ValueError, match='the camera fx is needed'):
        output_to_depth(raw, p)
    fixed = profile(output_kind='disparity', baseline_m=0.1, focal_px=1000.0)
    np.testing.assert_allclose(output_to_depth(raw[:2], fixed, focal_px=1.0), [10.0, 2.0])


# -- postprocess: the network output goes back onto the camera image --------------------------

def plane(height, width):
    """A tilted plane's depth, linear in the pixel coordinates (exact under a linear resize)."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    return (1.0 + 0.002 * u + 0.001 * v).astype(np.float32)


def simulate_network(depth, placement, output_shape):
    """What a perfect metric network would output: the camera depth placed like the input."""
    sx, sy, sw, sh = placement.source
    tx, ty, tw, th = placement.target
    net_h, net_w = placement.network_size
    canvas = np.full((net_h, net_w), -1.0, np.float32)  # padding: invalid
    canvas[ty:ty + th, tx:tx + tw] = cv2.resize(depth[sy:sy + sh, sx:sx + sw], (tw, th))
    return cv2.resize(canvas, output_shape[::-1])[None, None]


@pytest.mark.parametrize('resize', ['stretch', 'letterbox', 'crop'])
@pytest.mark.parametrize('network_output', [(256, 256), (128, 128)])
def test_postprocess_maps_output_back_onto_the_camera_image(resize, network_output):
    p = profile(resize=resize, output_kind='metric')
    camera = plane(480, 640)
    placement = compute_placement(camera.shape, p)
    raw = simulate_network(camera, placement, network_output)
    depth = postprocess(raw, placement, p)
    assert depth.shape == (480, 640) and depth.dtype == np.float32
    inner = (slice(8, -8), slice(88, -88)) if resize == 'crop' else (slice(8, -8), slice(8, -8))
    np.testing.assert_allclose(depth[inner], camera[inner], atol=2e-3)
    if resize == 'crop':
        assert np.isnan(depth[:, :80]).all() and np.isnan(depth[:, 560:]).all()
        assert np.isfinite(depth[:, 80:560]).all()
    else:
        assert np.isfinite(depth).all()


def test_postprocess_to_another_output_size():
    p = profile(resize='letterbox', output_kind='metric')
    camera = plane(480, 640)
    placement = compute_placement(camera.shape, p)
    depth = postprocess(simulate_network(camera, placement, (256, 256)), placement, p,
                        output_size=(240, 320))
    assert depth.shape == (240, 320)
    expected = cv2.resize(camera, (320, 240), interpolation=cv2.INTER_AREA)
    np.testing.assert_allclose(depth[4:-4, 4:-4], expected[4:-4, 4:-4], atol=3e-3)


def test_postprocess_accepts_output_ranks_and_rejects_multichannel():
    p = profile(output_kind='metric')
    placement = compute_placement((48, 64), p)
    flat = np.full((256, 256), 3.0, np.float32)
    for raw in (flat, flat[None], flat[None, None], flat[None, :, :, None]):
        np.testing.assert_array_equal(postprocess(raw, placement, p), np.full((48, 64), 3.0))
    with pytest.raises(ValueError, match='single-channel depth map'):
        postprocess(np.ones((1, 2, 256, 256), np.float32), placement, p)


def test_postprocess_disparity_counts_camera_pixels():
    """Disparity from a half-resolution output of a stretched 640-wide image: 4 camera px each."""
    p = profile(input_size=(240, 320), output_kind='disparity', baseline_m=0.1)
    placement = compute_placement((480, 640), p)
    raw = np.full((1, 1, 120, 160), 5.0, np.float32)
    depth = postprocess(raw, placement, p, focal_px=600.0)
    np.testing.assert_allclose(depth, 0.1 * 600.0 / (5.0 * 4), rtol=1e-6)


# -- calibration of relative inverse depth, on a real depth frame --------------------------------

def test_fit_inverse_relative_recovers_scale_and_shift(depth_m):
    scale, shift = 0.004, 0.08
    raw = (1.0 / depth_m - shift) / scale  # what a perfect inverse-relative network outputs
    noise = np.random.default_rng(0).normal(0, 0.5, raw.shape).astype(np.float32)
    fitted = fit_inverse_relative(raw + noise, depth_m)
    assert fitted == pytest.approx((scale, shift), rel=0.01)
    p = profile(output_kind='inverse_relative', output_scale=fitted[0], output_shift=fitted[1])
    recovered = output_to_depth(raw, p)
    valid = np.isfinite(depth_m)
    assert np.isnan(recovered[~valid]).all()
    np.testing.assert_allclose(recovered[valid], depth_m[valid], rtol=0.01)
    with pytest.raises(ValueError, match='at least 2 pixels'):
        fit_inverse_relative(np.ones(4), np.ones(4))


def test_the_package_imports_without_tinygrad_or_ros():
    """Profiles and processing are plain numpy/OpenCV: the engines' packages are imported only
    when an estimator is built."""
    code = ('import sys; import pointcloud_pipeline.monodepth as m; '
            'assert all(hasattr(m, name) for name in m.__all__); '
            "print(sorted(n for n in ('tinygrad', 'onnxruntime', 'rclpy') if n in sys.modules))")
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.strip() == '[]'
