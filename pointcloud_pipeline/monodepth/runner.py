"""The tinygrad runner: an ONNX monocular depth network run by ``tinygrad.nn.onnx.OnnxRunner``
under ``TinyJit``, with its profile's pre- and post-processing (:mod:`.processing`).

:class:`DepthEstimator` loads the ONNX file, checks it against the :class:`.ModelProfile` (input
name, rank, shape, layout, dtype; output name or index) and returns ``H x W float32`` metres at
the camera resolution, pixel-aligned with the camera image (optical frame: x right, y down,
z forward), NaN where there is no valid depth.

Devices: ``DepthEstimator(device=None)`` uses tinygrad's default device: the ``DEV`` environment
variable when set (``DEV=CPU``, ``DEV=CUDA``, ``DEV=METAL``, ``DEV=CPU:LLVM`` for the LLVM back
end...), otherwise the first usable one of METAL, AMD, NV, CUDA, QCOM, CL, CPU. ``device='CUDA'``
(etc.) selects one explicitly. tinygrad's CPU device compiles kernels with the ``clang`` binary
(``make setup`` installs it). Compiled kernels are cached in ``~/.cache/tinygrad`` (``CACHEDB``
moves the cache); ``NUM_CPU_THREADS`` caps the CPU device's threads.

tinygrad is an optional dependency: it is imported when a device is selected, not when this
module is.
"""
import os
from pathlib import Path
import threading
import time

import numpy as np

from .processing import postprocess, preprocess
from .profiles import ModelProfile, load_profile


def select_device(device=None):
    """Canonical tinygrad device name, checked by compiling and running a one-element kernel.

    device: None or '' for tinygrad's default (``DEV`` env var, else the first usable device), or a
    name such as 'CPU', 'CUDA', 'METAL', 'CUDA:1'. Raises RuntimeError saying what is missing (the
    CPU device needs the clang binary) when the device cannot run kernels.
    """
    from tinygrad import Device, Tensor
    try:
        name = Device.canonicalize(device or None)
        probe = (Tensor([1.0], device=name) + 1.0).tolist()
        if probe != [2.0]:
            raise RuntimeError(f'probe kernel returned {probe}, expected [2.0]')
    except Exception as exc:  # tinygrad raises RuntimeError, FileNotFoundError (clang), ...
        requested = device or os.environ.get('DEV') or 'default'
        hint = ''
        if str(requested).upper().startswith(('CPU', 'DEFAULT')):
            hint = (' tinygrad\'s CPU device compiles kernels with the clang binary: install it '
                    '(make setup, or apt-get install clang).')
        raise RuntimeError(f'tinygrad device {requested!r} cannot run kernels: '
                           f'{type(exc).__name__}: {exc}.{hint}') from None
    return name


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
    """A monocular depth network (ONNX file) run by tinygrad, with its profile's pre- and
    post-processing.

    model_path: the .onnx file. profile: a :class:`ModelProfile`, a profile name or a YAML path.
    device: tinygrad device (None: tinygrad's default, see the module docstring).

    Construction loads and checks everything: FileNotFoundError (missing model or profile),
    ValueError (unreadable ONNX, or a profile that does not fit the model's inputs/outputs),
    RuntimeError (device unusable, e.g. no clang for CPU). :meth:`predict` is thread-safe
    (calls are serialised); call :meth:`warm_up` once before timing-critical use.
    """

    def __init__(self, model_path, profile, device=None):
        self.profile = profile if isinstance(profile, ModelProfile) else load_profile(profile)
        self.model_path = _check_model_file(model_path)
        self.device = select_device(device)
        from tinygrad import TinyJit
        from tinygrad.nn.onnx import OnnxRunner
        try:
            runner = OnnxRunner(self.model_path)
        except Exception as exc:  # the protobuf parser raises assorted errors on garbage
            raise ValueError(f'{self.model_path} is not a readable ONNX model: '
                             f'{type(exc).__name__}: {exc}') from None
        self.input_name, self.input_shape, self._input_dtype = self._match_input(runner)
        self.output_name = self._match_output(runner)
        self._runner = runner.to(self.device)
        self._jit = TinyJit(self._forward)
        self._lock = threading.Lock()

    def _match_input(self, runner):
        from tinygrad import dtypes
        profile = self.profile
        inputs = runner.graph_inputs
        where = f'{self.model_path.name} (profile {profile.name!r})'
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
        if spec.dtype == dtypes.float32:
            dtype = np.float32
        elif spec.dtype == dtypes.float16:
            dtype = np.float16
        else:
            raise ValueError(f'{where}: input {name!r} has dtype {spec.dtype}, only float32 and '
                             f'float16 inputs are supported')
        return name, expected, dtype

    def _match_output(self, runner):
        outputs = runner.graph_outputs
        where = f'{self.model_path.name} (profile {self.profile.name!r})'
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

    def _forward(self, network_input):
        return self._runner({self.input_name: network_input})[self.output_name]

    def run_network(self, network_input):
        """Run the network on a preprocessed ``input_shape`` array; returns its raw output (a
        new numpy array). The first calls compile (see :meth:`warm_up`)."""
        from tinygrad import Tensor
        network_input = np.ascontiguousarray(network_input, dtype=self._input_dtype)
        if network_input.shape != self.input_shape:
            raise ValueError(f'network input must have shape {self.input_shape}, got '
                             f'{network_input.shape}')
        with self._lock:
            output = self._jit(Tensor(network_input, device=self.device))
            # the JIT reuses its output buffer: copy it out before the next call
            return output.numpy().astype(np.float32, copy=True)

    def warm_up(self):
        """Compile and capture the JIT on a dummy frame (three runs); returns the seconds taken."""
        start = time.perf_counter()
        dummy = np.zeros(self.input_shape, self._input_dtype)
        for _ in range(3):  # TinyJit: 1st run plain (compiles), 2nd captures, 3rd replays
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
