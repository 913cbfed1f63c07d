"""The depth estimator: an ONNX monocular depth network run by an inference engine
(:mod:`.engines`: tinygrad, the default, or onnxruntime on the CPU), with its profile's pre- and
post-processing (:mod:`.processing`).

:class:`DepthEstimator` loads the ONNX file, checks it against the :class:`.ModelProfile` (input
name, rank, shape, layout, dtype; output name or index) and returns ``H x W float32`` metres at
the camera resolution, pixel-aligned with the camera image (optical frame: x right, y down,
z forward), NaN where there is no valid depth. Both engines get the same checks, the same
pre/post-processing code and the same contract (thread-safe :meth:`~DepthEstimator.predict`,
:meth:`~DepthEstimator.warm_up` before timing-critical use); their outputs agree to 1e-4 on the
test models.

Devices (engine ``tinygrad``): ``device=None`` uses tinygrad's default device: the ``DEV``
environment variable when set (``DEV=CPU``, ``DEV=CUDA``, ``DEV=METAL``...), otherwise the first
usable one of METAL, AMD, NV, CUDA, QCOM, CL, CPU. ``device='CUDA'`` (etc.) selects one
explicitly. tinygrad's CPU device compiles kernels with the ``clang`` binary (``make setup``
installs it). Compiled kernels are cached in ``~/.cache/tinygrad`` (``CACHEDB`` moves the cache).
tinygrad's fastest CPU setting measured here is ``BEAM=2`` (environment variable): 1.6x faster
kernels, after a kernel search of minutes at the first start for each model (cached: later starts
with ``BEAM=2`` take seconds), so it is not the default; tinygrad 0.14's CPU device runs the
kernels on one thread (``NUM_CPU_THREADS`` changes nothing). Engine ``onnxruntime`` runs on the
CPU only (``device`` None, '' or 'CPU'): on a CPU-only robot it is several times faster than
tinygrad (README, bench/bench_monodepth.py).

The engines' packages are optional dependencies: each is imported when an estimator is built
with it, not when this module is.
"""
import os
from pathlib import Path
import threading
import time

import numpy as np

from .engines import ENGINES, check_engine_name, open_engine, select_device
from .processing import postprocess, preprocess
from .profiles import ModelProfile, load_profile

__all__ = ['DepthEstimator', 'ENGINES', 'select_device']


def _check_model_file(model_path):
    if model_path is None or os.fspath(model_path) == '':
        raise FileNotFoundError('no model file given (model_path is empty)')
    path = Path(os.fspath(model_path)).expanduser()
    if not path.exists():
        raise FileNotFoundError(f'model file not found: {path}')
    if not path.is_file():
        raise ValueError(f'model path is not a file: {path}')
    if not os.access(path, os.R_OK):
        raise ValueError(f'model file is not readable: {path}')
    return path


class DepthEstimator:
    """A monocular depth network (ONNX file) run by an inference engine, with its profile's pre-
    and post-processing.

    model_path: the .onnx file. profile: a :class:`ModelProfile`, a profile name or a YAML path.
    device: tinygrad device (None: tinygrad's default, see the module docstring); with engine
    'onnxruntime' only None, '' or 'CPU'. engine: 'tinygrad' (default) or 'onnxruntime'.

    Construction loads and checks everything: ValueError (unknown engine, unreadable ONNX, a
    profile that does not fit the model's inputs/outputs, a device the engine cannot use),
    FileNotFoundError (missing model or profile), ModuleNotFoundError (the engine's package is
    not installed: the message names the pip command), RuntimeError (tinygrad device unusable,
    e.g. no clang for CPU). :meth:`predict` is thread-safe (calls are serialised); call
    :meth:`warm_up` once before timing-critical use.
    """

    def __init__(self, model_path, profile, device=None, engine='tinygrad'):
        self.engine = check_engine_name(engine)
        self.profile = profile if isinstance(profile, ModelProfile) else load_profile(profile)
        self.model_path = _check_model_file(model_path)
        self._engine = open_engine(engine, self.model_path, device)
        self.device = self._engine.device
        self.input_name, self.input_shape, self._input_dtype = self._match_input()
        self.output_name = self._match_output()
        self._engine.bind(self.input_name, self.output_name)
        self._lock = threading.Lock()

    def _where(self):
        return f'{self.model_path.name} (profile {self.profile.name!r})'

    def _match_input(self):
        profile = self.profile
        inputs = self._engine.inputs
        where = self._where()
        listing = ', '.join(f'{n} {tuple(v.shape)}' for n, v in inputs.items()) or 'none'
        if profile.input_name is None:
            if len(inputs) != 1:
                raise ValueError(f'{where}: the model has {len(inputs)} inputs ({listing}); set '
                                 f'input_name in the profile to choose one')
            name = next(iter(inputs))
        else:
            name = profile.input_name
            if name not in inputs:
                raise ValueError(f'{where}: profile input_name {name!r} is not an input of the '
                                 f'model (inputs: {listing})')
            if len(inputs) != 1:
                raise ValueError(f'{where}: the model has {len(inputs)} inputs ({listing}); only '
                                 f'single-input models are supported')
        spec = inputs[name]
        net_h, net_w = profile.input_size
        expected = (1, 3, net_h, net_w) if profile.layout == 'NCHW' else (1, net_h, net_w, 3)
        if len(spec.shape) != 4:
            raise ValueError(f'{where}: input {name!r} has rank {len(spec.shape)} '
                             f'{tuple(spec.shape)}, the profile needs rank 4 {profile.layout} '
                             f'{expected}')
        for axis, (model_dim, wanted) in enumerate(zip(spec.shape, expected)):
            if isinstance(model_dim, int) and model_dim != wanted:
                raise ValueError(
                    f'{where}: input {name!r} has shape {tuple(spec.shape)} but the profile '
                    f'(input_size {list(profile.input_size)}, layout {profile.layout}) needs '
                    f'{expected}: mismatch on axis {axis} ({model_dim} != {wanted})')
        if spec.dtype is None:
            raise ValueError(f'{where}: input {name!r} has dtype {spec.dtype_name}, only float32 '
                             f'and float16 inputs are supported')
        return name, expected, spec.dtype

    def _match_output(self):
        outputs = self._engine.outputs
        where = self._where()
        wanted = self.profile.output
        if isinstance(wanted, str):
            if wanted not in outputs:
                raise ValueError(f'{where}: profile output {wanted!r} is not an output of the '
                                 f'model (outputs: {", ".join(outputs)})')
            return wanted
        if wanted >= len(outputs):
            raise ValueError(f'{where}: profile output index {wanted} but the model has '
                             f'{len(outputs)} output(s): {", ".join(outputs)}')
        return outputs[wanted]

    @property
    def warm_up_description(self):
        """What :meth:`warm_up` does in this engine (for log lines)."""
        return self._engine.warm_up_description

    def run_network(self, network_input):
        """Run the network on a preprocessed ``input_shape`` array; returns its raw output (a
        new float32 numpy array). The first calls compile (see :meth:`warm_up`)."""
        network_input = np.ascontiguousarray(network_input, dtype=self._input_dtype)
        if network_input.shape != self.input_shape:
            raise ValueError(f'network input must have shape {self.input_shape}, got '
                             f'{network_input.shape}')
        with self._lock:
            return self._engine.run(network_input)

    def warm_up(self):
        """Run the network on a dummy frame until it is ready for timing-critical use (tinygrad:
        compile and capture the JIT, three runs; onnxruntime: one run); returns the seconds
        taken."""
        start = time.perf_counter()
        dummy = np.zeros(self.input_shape, self._input_dtype)
        for _ in range(self._engine.warm_up_runs):
            self.run_network(dummy)
        return time.perf_counter() - start

    def predict(self, image, encoding='rgb8', output_size=None, focal_px=None):
        """Depth in metres for one camera image.

        image: ``H x W x 3|4`` uint8 (``H x W`` for mono8) in ``encoding`` (rgb8, bgr8, rgba8,
        bgra8, mono8). output_size: (height, width) of the result, None for ``H x W``.
        focal_px: camera fx (pixels), needed only by disparity profiles without ``focal_px``.
        Returns float32 metres, NaN where invalid. ValueError for a bad image or encoding.
        """
        network_input, placement = preprocess(image, encoding, self.profile)
        raw = self.run_network(network_input)
        return postprocess(raw, placement, self.profile, output_size=output_size,
                           focal_px=focal_px)
