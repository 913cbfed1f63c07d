"""monodepth.runner: DepthEstimator in tinygrad (OnnxRunner + TinyJit) against onnxruntime on
encoder-decoder models built here with the onnx package, the real colour frames, and the
construction-time checks; both engines (tinygrad, onnxruntime) give the same depths.
(test_monodepth_engines.py: the onnxruntime engine on its own.)"""
import os

import cv2
import numpy as np
import pytest

from pointcloud_pipeline.monodepth import (DepthEstimator, ModelProfile, output_to_depth,
                                           postprocess, preprocess, select_device)
from reference_monodepth import (PROFILE_MISMATCHES, build_encoder_decoder, build_two_input_model,
                                 metric_profile, onnxruntime_session,
                                 tinygrad_unavailable_reason)

pytestmark = pytest.mark.skipif(bool(tinygrad_unavailable_reason()),
                                reason=tinygrad_unavailable_reason() or '')

TOLERANCE = 1e-4  # tinygrad vs onnxruntime, absolute, on outputs in 0..10
SIZES = {'256x256': (256, 256), '240x320': (240, 320)}


@pytest.fixture(scope='module')
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp('onnx_models')
    paths = {}
    for key, (height, width) in SIZES.items():
        paths[key] = folder / f'depth_{key}.onnx'
        build_encoder_decoder(paths[key], height, width, output_gain=10.0, seed=height)
    paths['nhwc_rank3_dynamic'] = folder / 'nhwc_rank3_dynamic.onnx'
    build_encoder_decoder(paths['nhwc_rank3_dynamic'], 240, 320, layout='NHWC', output_rank=3,
                          dynamic=True, output_gain=10.0, seed=3)
    paths['two_inputs'] = folder / 'two_inputs.onnx'
    build_two_input_model(paths['two_inputs'], 64, 64)
    return paths


@pytest.fixture(scope='module')
def estimators(models):
    """One compiled estimator per input size, shared by the tests of this module."""
    built = {}
    for key, size in SIZES.items():
        built[key] = DepthEstimator(models[key], metric_profile(size))
        built[key].warm_up_seconds = built[key].warm_up()
    return built


@pytest.fixture(scope='module')
def color_rgb(shared_data):
    bgr = cv2.imread(str(shared_data / 'rgbd/7scenes_tsdf_fusion/frame-000000.color.jpg'))
    return np.ascontiguousarray(bgr[:, :, ::-1])


@pytest.mark.parametrize('key', sorted(SIZES))
def test_tinygrad_matches_onnxruntime(key, models, estimators, color_rgb):
    estimator = estimators[key]
    assert estimator.input_shape == (1, 3, *SIZES[key])
    assert estimator.warm_up_seconds > 0
    session = onnxruntime_session(models[key])
    real_input, _ = preprocess(color_rgb, 'rgb8', estimator.profile)
    rng = np.random.default_rng(7)
    inputs = [real_input, rng.normal(0, 1, real_input.shape).astype(np.float32), real_input * 0.5]
    outputs = [estimator.run_network(x) for x in inputs]  # consecutive JIT runs
    for x, out in zip(inputs, outputs):  # every output is its own copy, not the JIT's buffer
        expected = session.run(None, {'input': x})[0]
        assert out.shape == expected.shape == (1, 1, *SIZES[key])
        np.testing.assert_allclose(out, expected, atol=TOLERANCE, rtol=0)
    assert not np.allclose(outputs[0], outputs[1])


@pytest.mark.parametrize('key', sorted(SIZES))
def test_predict_on_a_real_frame_matches_onnxruntime(key, models, estimators, color_rgb):
    estimator = estimators[key]
    depth = estimator.predict(color_rgb, 'rgb8')
    assert depth.shape == (480, 640) and depth.dtype == np.float32
    network_input, placement = preprocess(color_rgb, 'rgb8', estimator.profile)
    raw = onnxruntime_session(models[key]).run(None, {'input': network_input})[0]
    expected = postprocess(raw, placement, estimator.profile)
    np.testing.assert_array_equal(np.isnan(depth), np.isnan(expected))
    np.testing.assert_allclose(depth, expected, atol=TOLERANCE, equal_nan=True)
    assert np.isfinite(depth).mean() > 0.5  # sigmoid * 10 m, values above 9.5 m are NaN
    # BGR input of the same picture and another output size give the same depths
    np.testing.assert_array_equal(estimator.predict(color_rgb[:, :, ::-1], 'bgr8'), depth)
    small = estimator.predict(color_rgb, 'rgb8', output_size=(120, 160))
    assert small.shape == (120, 160)


@pytest.mark.parametrize('key', [*sorted(SIZES), 'nhwc_rank3_dynamic'])
def test_both_engines_give_the_same_depths(key, models, estimators, color_rgb):
    if key in estimators:
        tinygrad = estimators[key]
    else:
        profile = metric_profile((240, 320), layout='NHWC', resize='letterbox')
        tinygrad = DepthEstimator(models[key], profile)
    onnxruntime = DepthEstimator(models[key], tinygrad.profile, engine='onnxruntime')
    assert (tinygrad.engine, onnxruntime.engine) == ('tinygrad', 'onnxruntime')
    assert onnxruntime.input_shape == tinygrad.input_shape
    assert onnxruntime.input_name == tinygrad.input_name == 'input'
    assert onnxruntime.output_name == tinygrad.output_name == 'depth'
    network_input, _ = preprocess(color_rgb, 'rgb8', tinygrad.profile)
    noise = np.random.default_rng(9).normal(0, 1, network_input.shape).astype(np.float32)
    for x in (network_input, noise):
        np.testing.assert_allclose(onnxruntime.run_network(x), tinygrad.run_network(x),
                                   atol=TOLERANCE, rtol=0)
    for encoding, image in (('rgb8', color_rgb), ('bgr8', color_rgb[:, :, ::-1])):
        depth = onnxruntime.predict(image, encoding, output_size=(240, 320))
        expected = tinygrad.predict(image, encoding, output_size=(240, 320))
        np.testing.assert_array_equal(np.isnan(depth), np.isnan(expected))
        np.testing.assert_allclose(depth, expected, atol=TOLERANCE, equal_nan=True)
        assert np.isfinite(depth).mean() > 0.5


def test_inverse_relative_profile_on_the_same_network(models, estimators, color_rgb):
    """Same model file, other output kind: the JIT output goes through 1 / (scale * y + shift)."""
    profile = ModelProfile(name='inverse', input_size=(256, 256), interpolation='cubic',
                           mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                           output_kind='inverse_relative', output_scale=0.1, output_shift=0.05)
    estimator = DepthEstimator(models['256x256'], profile)
    depth = estimator.predict(color_rgb, 'rgb8')
    network_input, placement = preprocess(color_rgb, 'rgb8', profile)
    raw = estimators['256x256'].run_network(network_input)
    np.testing.assert_allclose(depth, postprocess(raw, placement, profile), rtol=1e-5)
    full = cv2.resize(raw[0, 0], (640, 480), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(depth, output_to_depth(full, profile), rtol=1e-5)


def test_nhwc_rank3_dynamic_model(models, color_rgb):
    profile = metric_profile((240, 320), layout='NHWC', resize='letterbox', max_depth_m=None)
    estimator = DepthEstimator(models['nhwc_rank3_dynamic'], profile)
    assert estimator.input_shape == (1, 240, 320, 3)
    depth = estimator.predict(color_rgb, 'rgb8')
    network_input, placement = preprocess(color_rgb, 'rgb8', profile)
    raw = onnxruntime_session(models['nhwc_rank3_dynamic']).run(None, {'input': network_input})[0]
    assert raw.shape == (1, 240, 320)
    np.testing.assert_allclose(depth, postprocess(raw, placement, profile), atol=TOLERANCE)


# -- construction-time checks ------------------------------------------------------------------

def test_missing_and_unreadable_model_files(tmp_path):
    profile = metric_profile((256, 256))
    with pytest.raises(FileNotFoundError, match='model file not found: .*nope.onnx'):
        DepthEstimator(tmp_path / 'nope.onnx', profile)
    with pytest.raises(FileNotFoundError, match='model_path is empty'):
        DepthEstimator('', profile)
    with pytest.raises(ValueError, match='model path is not a file'):
        DepthEstimator(tmp_path, profile)
    garbage = tmp_path / 'garbage.onnx'
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(ValueError, match='garbage.onnx is not a readable ONNX model'):
        DepthEstimator(garbage, profile)
    with pytest.raises(FileNotFoundError, match="no model profile named 'no_such_profile'"):
        DepthEstimator(garbage, 'no_such_profile')


@pytest.mark.skipif(os.geteuid() == 0, reason='root reads files whatever their mode')
def test_model_without_read_permission(models, tmp_path):
    locked = tmp_path / 'locked.onnx'
    locked.write_bytes(models['256x256'].read_bytes())
    locked.chmod(0)
    with pytest.raises(ValueError, match='not readable'):
        DepthEstimator(locked, metric_profile((256, 256)))


@pytest.mark.parametrize('overrides,message', PROFILE_MISMATCHES)
def test_profile_that_does_not_fit_the_model(models, overrides, message):
    with pytest.raises(ValueError, match=message):
        DepthEstimator(models['256x256'], metric_profile((256, 256), **overrides))


def test_multi_input_model_is_refused(models):
    with pytest.raises(ValueError, match=r'the model has 2 inputs \(left .*, right .*\); set '
                                         'input_name'):
        DepthEstimator(models['two_inputs'], metric_profile((64, 64)))
    with pytest.raises(ValueError, match='only single-input models are supported'):
        DepthEstimator(models['two_inputs'], metric_profile((64, 64), input_name='left'))


def test_unusable_device_is_a_clear_error(models):
    with pytest.raises(RuntimeError, match="tinygrad device 'NOSUCHDEVICE' cannot run kernels"):
        DepthEstimator(models['256x256'], metric_profile((256, 256)), device='NOSUCHDEVICE')
    assert select_device(None) == select_device('CPU') == 'CPU'


def test_bad_frames_raise_value_error(estimators):
    estimator = estimators['256x256']
    with pytest.raises(ValueError, match='rgb8 image must be H x W x 3'):
        estimator.predict(np.zeros((48, 64), np.uint8), 'rgb8')
    with pytest.raises(ValueError, match="unsupported colour encoding '32FC1'"):
        estimator.predict(np.zeros((48, 64), np.float32), '32FC1')
    with pytest.raises(ValueError, match='network input must have shape'):
        estimator.run_network(np.zeros((1, 3, 8, 8), np.float32))
    # a good frame still works afterwards
    assert estimator.predict(np.zeros((48, 64, 3), np.uint8), 'rgb8').shape == (48, 64)
