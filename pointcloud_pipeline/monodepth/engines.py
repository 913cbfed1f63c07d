"""Inference engines for the ONNX depth networks: tinygrad (default, any tinygrad device) and
onnxruntime (CPU).

Both are optional dependencies, imported when an engine is opened (:func:`open_engine`), never
when this module is: a missing package is a :class:`ModuleNotFoundError` naming the pip command.
An engine loads one ONNX file and describes its inputs (:class:`NetworkInput`) and outputs;
:class:`.DepthEstimator` checks them against the profile, then calls :meth:`bind` once and
:meth:`run` per frame (serialised by the estimator's lock). ``run`` takes a C-contiguous array
of the input's shape and dtype and returns a new float32 array that the engine never reuses.

* ``tinygrad``: ``tinygrad.nn.onnx.OnnxRunner`` under ``TinyJit`` on a tinygrad device
  (:func:`select_device`); the first runs compile kernels (cached in ``~/.cache/tinygrad``) and
  capture the JIT, hence 3 warm-up runs.
* ``onnxruntime``: an ``InferenceSession`` on ``CPUExecutionProvider`` with every graph
  optimisation, sequential execution (one inter-op thread), one intra-op thread per core the
  process may use, and idle threads that sleep instead of spinning (:data:`ORT_SESSION_CONFIG`);
  1 warm-up run (allocates its memory arena). Measured on 2 cores
  (``bench/bench_monodepth.py --ort-settings``, a 0.8 GFLOP network): 2 threads 6.3-6.9 ms per
  run against 11.2-11.3 ms with 1; without spinning 0.2-0.6 ms slower than a default session
  on a quiet machine, faster beside one busy process (9.0-11.3 ms against 10.6-12.8), and 0.08
  ms of CPU in the 50 ms after a run instead of 39-45 ms.
"""
import importlib
import os
from typing import NamedTuple

import numpy as np

ENGINES = ('tinygrad', 'onnxruntime')
ENGINE_PACKAGES = {
    'tinygrad': 'pip install tinygrad==0.14.0',
    'onnxruntime': 'pip install onnxruntime==1.31.1',
}
# onnxruntime session entries: idle intra-op threads sleep instead of spinning, so between
# frames they leave the cores to the camera driver and the other nodes (module docstring)
ORT_SESSION_CONFIG = {'session.intra_op.allow_spinning': '0'}


class NetworkInput(NamedTuple):
    """An input of the network as the engine reads it from the ONNX file.

    shape: ints for fixed dimensions, a name (str) or None for symbolic ones.
    dtype: numpy float32 or float16, None for any other element type.
    dtype_name: the element type as the engine names it (for messages).
    """

    shape: tuple
    dtype: object
    dtype_name: str


def check_engine_name(engine):
    """``engine`` if it is one of :data:`ENGINES`, else ValueError saying which exist."""
    if engine not in ENGINES:
        raise ValueError(f'engine {engine!r} is not one of {", ".join(ENGINES)}')
    return engine


def import_engine_package(engine):
    """Import the Python package of ``engine``; ModuleNotFoundError with the pip command when
    it is not installed (an import error inside the package itself is raised unchanged)."""
    check_engine_name(engine)
    try:
        return importlib.import_module(engine)
    except ModuleNotFoundError as exc:
        if exc.name != engine:
            raise
        raise ModuleNotFoundError(f'engine {engine!r} needs the Python package {engine}, which '
                                  f'is not installed: {ENGINE_PACKAGES[engine]}',
                                  name=engine) from None


def usable_cpu_count():
    """Cores this process may run on (its affinity mask), at least 1."""
    if hasattr(os, 'sched_getaffinity'):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def select_device(device=None):
    """Canonical tinygrad device name, checked by compiling and running a one-element kernel.

    device: None or '' for tinygrad's default (``DEV`` env var, else the first usable device), or a
    name such as 'CPU', 'CUDA', 'METAL', 'CUDA:1'. Raises RuntimeError saying what is missing (the
    CPU device needs the clang binary) when the device cannot run kernels.
    """
    import_engine_package('tinygrad')
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


class TinygradEngine:
    """An ONNX file in ``tinygrad.nn.onnx.OnnxRunner``, run under ``TinyJit`` on ``device``."""

    name = 'tinygrad'
    warm_up_runs = 3  # TinyJit: 1st run plain (compiles), 2nd captures, 3rd replays
    warm_up_description = 'compile + JIT capture'

    def __init__(self, model_path, device=None):
        self.device = select_device(device)
        from tinygrad import dtypes
        from tinygrad.nn.onnx import OnnxRunner
        try:
            runner = OnnxRunner(model_path)
        except Exception as exc:  # the protobuf parser raises assorted errors on garbage
            raise ValueError(f'{model_path} is not a readable ONNX model: '
                             f'{type(exc).__name__}: {exc}') from None
        numpy_types = {dtypes.float32: np.float32, dtypes.float16: np.float16}
        self.inputs = {name: NetworkInput(tuple(spec.shape), numpy_types.get(spec.dtype),
                                          str(spec.dtype))
                       for name, spec in runner.graph_inputs.items()}
        self.outputs = tuple(runner.graph_outputs)
        self._runner = runner
        self._jit = None

    def bind(self, input_name, output_name):
        """Move the weights to the device and set up the JIT for this input and output."""
        from tinygrad import TinyJit
        runner = self._runner.to(self.device)

        def forward(network_input):
            return runner({input_name: network_input})[output_name]

        self._jit = TinyJit(forward)

    def run(self, network_input):
        from tinygrad import Tensor
        output = self._jit(Tensor(network_input, device=self.device))
        # the JIT reuses its output buffer: copy it out before the next call
        return output.numpy().astype(np.float32, copy=True)


class OnnxruntimeEngine:
    """An ONNX file in an onnxruntime ``InferenceSession`` on the CPU (module docstring)."""

    name = 'onnxruntime'
    warm_up_runs = 1
    warm_up_description = 'first run'

    def __init__(self, model_path, device=None, threads=None):
        ort = import_engine_package('onnxruntime')
        if device not in (None, '') and str(device).upper() != 'CPU':
            raise ValueError(f"engine 'onnxruntime' runs on the CPU only: device must be '' or "
                             f"'CPU', got {device!r} (engine 'tinygrad' runs on other devices)")
        self.device = 'CPU'
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = threads or usable_cpu_count()
        for key, value in ORT_SESSION_CONFIG.items():
            options.add_session_config_entry(key, value)
        errors = ort.capi.onnxruntime_pybind11_state
        try:
            session = ort.InferenceSession(os.fspath(model_path), sess_options=options,
                                           providers=['CPUExecutionProvider'])
        except errors.InvalidProtobuf as exc:
            raise ValueError(f'{model_path} is not a readable ONNX model: {exc}') from None
        except Exception as exc:  # InvalidGraph, NotImplemented (an operator), Fail, ...
            raise ValueError(f'onnxruntime cannot load {model_path}: {type(exc).__name__}: '
                             f'{exc}') from None
        numpy_types = {'tensor(float)': np.float32, 'tensor(float16)': np.float16}
        self.inputs = {arg.name: NetworkInput(tuple(arg.shape), numpy_types.get(arg.type),
                                              arg.type)
                       for arg in session.get_inputs()}
        self.outputs = tuple(arg.name for arg in session.get_outputs())
        self.threads = options.intra_op_num_threads
        self._session = session
        self._input_name = self._output_names = None

    def bind(self, input_name, output_name):
        self._input_name, self._output_names = input_name, [output_name]

    def run(self, network_input):
        output = self._session.run(self._output_names, {self._input_name: network_input})[0]
        return output.astype(np.float32, copy=False)  # a new array per run


def open_engine(engine, model_path, device=None):
    """Load ``model_path`` in ``engine`` (one of :data:`ENGINES`) on ``device``."""
    check_engine_name(engine)
    if engine == 'tinygrad':
        return TinygradEngine(model_path, device)
    return OnnxruntimeEngine(model_path, device)
