"""monodepth.engines: the onnxruntime CPU engine behind DepthEstimator (same profile checks, same
pre/post-processing as tinygrad) against a plain onnxruntime session; engine names, devices and
the errors when an engine's package is missing. Needs onnxruntime, not tinygrad."""
import os
import sys

import cv2
import numpy as np
import pytest

from optional import require
from pointcloud_pipeline.monodepth import (DepthEstimator, ENGINES, postprocess,
                                           preprocess)
from pointcloud_pipeline.monodepth.engines import ORT_SESSION_CONFIG, usable_cpu_count
from reference_monodepth import (PROFILE_MISMATCHES, build_encoder_decoder, build_two_input_model,
                                 metric_profile, onnxruntime_session)

require('onnxruntime')

TOLERANCE = 1e-4  # absolute, on outputs in 0..10 m


@pytest.fixture(scope='module')
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp('onnx_models')
    paths = {'256x256': folder / 'depth_256x256.onnx',
             'nhwc_rank3_dynamic': folder / 'nhwc_rank3_dynamic.onnx',
             'two_inputs': folder / 'two_inputs.onnx'}
    build_encoder_decoder(paths['256x256'], 256, 256, output_gain=10.0, seed=256)
    build_encoder_decoder(paths['nhwc_rank3_dynamic'], 240, 320, layout='NHWC', output_rank=3,
                          dynamic=True, output_gain=10.0, seed=3)
    build_two_input_model(paths['two_inputs'], 64, 64)
    return paths


@pytest.fixture(scope='module')
def color_rgb(shared_data):
    bgr = cv2.imread(str(shared_data / 'rgbd/7scenes_tsdf_fusion/frame-000000.color.jpg'))
    return np.ascontiguousarray(bgr[:, :, ::-1])


def test_engine_names():
    assert ENGINES == ('tinygrad', 'onnxruntime')


@pytest.mark.parametrize('key,profile', [
    ('256x256', metric_profile((256, 256))),
    ('nhwc_rank3_dynamic', metric_profile((240, 320), layout='NHWC', resize='letterbox',
                                          max_depth_m=None)),
])
def test_onnxruntime_engine_matches_a_plain_session(key, profile, models, color_rgb):
    estimator = DepthEstimator(models[key], profile, engine='onnxruntime')
    assert (estimator.engine, estimator.device) == ('onnxruntime', 'CPU')
    assert estimator.warm_up() > 0
    session = onnxruntime_session(models[key])
    network_input, placement = preprocess(color_rgb, 'rgb8', profile)
    noise = np.random.default_rng(5).normal(0, 1, network_input.shape).astype(np.float32)
    outputs = [estimator.run_network(x) for x in (network_input, noise)]
    for x, out in zip((network_input, noise), outputs):
        expected = session.run(None, {'input': x})[0]
        assert out.shape == expected.shape and out.dtype == np.float32
        np.testing.assert_allclose(out, expected, atol=TOLERANCE, rtol=0)
    assert not np.allclose(outputs[0], outputs[1])  # each run its own array
    depth = estimator.predict(color_rgb, 'rgb8')
    expected = postprocess(session.run(None, {'input': network_input})[0], placement, profile)
    assert depth.shape == (480, 640) and depth.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(depth), np.isnan(expected))
    np.testing.assert_allclose(depth, expected, atol=TOLERANCE, equal_nan=True)
    assert np.isfinite(depth).mean() > 0.5


def test_onnxruntime_session_settings(models):
    """CPU provider, all graph optimisations, sequential, one thread per usable core, no
    spinning between frames (engines module docstring)."""
    estimator = DepthEstimator(models['256x256'], metric_profile((256, 256)),
                               engine='onnxruntime')
    session = estimator._engine._session
    options = session.get_session_options()
    ort = require('onnxruntime')
    assert session.get_providers() == ['CPUExecutionProvider']
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (
        usable_cpu_count(), 1)
    for key, value in ORT_SESSION_CONFIG.items():
        assert options.get_session_config_entry(key) == value


@pytest.mark.parametrize('overrides,message', PROFILE_MISMATCHES)
def test_profile_checks_are_the_same_in_onnxruntime(models, overrides, message):
    with pytest.raises(ValueError, match=message):
        DepthEstimator(models['256x256'], metric_profile((256, 256), **overrides),
                       engine='onnxruntime')


def test_model_file_checks_in_onnxruntime(models, tmp_path):
    profile = metric_profile((256, 256))
    with pytest.raises(FileNotFoundError, match='model file not found: .*nope.onnx'):
        DepthEstimator(tmp_path / 'nope.onnx', profile, engine='onnxruntime')
    garbage = tmp_path / 'garbage.onnx'
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(ValueError, match='garbage.onnx is not a readable ONNX model'):
        DepthEstimator(garbage, profile, engine='onnxruntime')
    with pytest.raises(ValueError, match=r'the model has 2 inputs \(left .*, right .*\); set '
                                         'input_name'):
        DepthEstimator(models['two_inputs'], metric_profile((64, 64)), engine='onnxruntime')


def test_bad_frames_raise_value_error_in_onnxruntime(models):
    estimator = DepthEstimator(models['256x256'], metric_profile((256, 256)),
                               engine='onnxruntime')
    with pytest.raises(ValueError, match='rgb8 image must be H x W x 3'):
        estimator.predict(np.zeros((48, 64), np.uint8), 'rgb8')
    with pytest.raises(ValueError, match='network input must have shape'):
        estimator.run_network(np.zeros((1, 3, 8, 8), np.float32))
    assert estimator.predict(np.zeros((48, 64, 3), np.uint8), 'rgb8').shape == (48, 64)


@pytest.mark.parametrize('engine', ['tensorflow', 'TINYGRAD', '', None])
def test_unknown_engine_is_a_clear_error(models, engine):
    with pytest.raises(ValueError, match=f'engine {engine!r} is not one of tinygrad, '
                                         'onnxruntime'):
        DepthEstimator(models['256x256'], metric_profile((256, 256)), engine=engine)


@pytest.mark.parametrize('device', ['CUDA', 'METAL', 'CPU:LLVM'])
def test_onnxruntime_runs_on_the_cpu_only(models, device):
    with pytest.raises(ValueError, match=f"engine 'onnxruntime' runs on the CPU only: device "
                                         f"must be '' or 'CPU', got {device!r}"):
        DepthEstimator(models['256x256'], metric_profile((256, 256)), device=device,
                       engine='onnxruntime')
    for accepted in (None, '', 'cpu', 'CPU'):
        assert DepthEstimator(models['256x256'], metric_profile((256, 256)), device=accepted,
                              engine='onnxruntime').device == 'CPU'


@pytest.mark.parametrize('engine,package', [('onnxruntime', 'onnxruntime==1.31.1'),
                                            ('tinygrad', 'tinygrad==0.14.0')])
def test_missing_engine_package_names_the_pip_command(models, monkeypatch, engine, package):
    # None in sys.modules: the import system refuses the import as if it were not installed
    monkeypatch.setitem(sys.modules, engine, None)
    with pytest.raises(ModuleNotFoundError,
                       match=f"engine '{engine}' needs the Python package {engine}, which is "
                             f'not installed: pip install {package}') as caught:
        DepthEstimator(models['256x256'], metric_profile((256, 256)), engine=engine)
    assert caught.value.name == engine


def test_concurrent_predict_calls_give_the_sequential_results(models, color_rgb):
    """predict is thread-safe in either engine (the estimator serialises the network runs)."""
    from concurrent.futures import ThreadPoolExecutor
    estimator = DepthEstimator(models['256x256'], metric_profile((256, 256)),
                               engine='onnxruntime')
    frames = [np.roll(color_rgb, 40 * index, axis=1) for index in range(6)]
    sequential = [estimator.predict(frame, 'rgb8', output_size=(120, 160)) for frame in frames]
    with ThreadPoolExecutor(4) as pool:
        concurrent = list(pool.map(
            lambda frame: estimator.predict(frame, 'rgb8', output_size=(120, 160)), frames * 3))
    for index, depth in enumerate(concurrent):
        np.testing.assert_array_equal(depth, sequential[index % len(frames)])
