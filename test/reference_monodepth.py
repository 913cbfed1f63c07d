"""Small monocular-depth-shaped ONNX models built with the ``onnx`` package (tests and benchmarks).

No real monocular depth weights can be downloaded here, so the tests and the benchmark build
encoder-decoder networks of the same kind (strided Conv + BatchNorm + Relu encoder, Resize + Concat
skip decoder, Sigmoid head) with fixed random weights, and compare tinygrad against onnxruntime.
"""
import numpy as np

from optional import require

onnx = require('onnx')
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

OPSET = 17


class _Graph:
    """Accumulates nodes and initializers; tracks each tensor's (channels, height, width)."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.nodes = []
        self.initializers = []
        self.shapes = {}
        self.flops = 0
        self._count = 0

    def name(self, prefix):
        self._count += 1
        return f'{prefix}_{self._count}'

    def constant(self, prefix, array):
        name = self.name(prefix)
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op, inputs, prefix, shape, **attrs):
        out = self.name(prefix)
        self.nodes.append(helper.make_node(op, inputs, [out], **attrs))
        self.shapes[out] = shape
        return out

    def conv(self, x, out_channels, stride=1, kernel=3):
        in_channels, height, width = self.shapes[x]
        fan_in = in_channels * kernel * kernel
        weight = self.rng.standard_normal((out_channels, in_channels, kernel, kernel))
        weight *= np.sqrt(2 / fan_in)
        bias = 0.1 * self.rng.standard_normal(out_channels)
        out_h = (height + 2 * (kernel // 2) - kernel) // stride + 1
        out_w = (width + 2 * (kernel // 2) - kernel) // stride + 1
        self.flops += 2 * out_h * out_w * out_channels * fan_in
        return self.node('Conv', [x, self.constant('w', weight.astype(np.float32)),
                                  self.constant('b', bias.astype(np.float32))], 'conv',
                         (out_channels, out_h, out_w), kernel_shape=[kernel, kernel],
                         strides=[stride, stride], pads=[kernel // 2] * 4)

    def batchnorm(self, x):
        channels = self.shapes[x][0]
        normal = self.rng.standard_normal
        params = [1 + 0.1 * normal(channels), 0.1 * normal(channels), 0.1 * normal(channels),
                  1 + 0.2 * self.rng.random(channels)]
        names = [self.constant(p, v.astype(np.float32)) for p, v in zip('sbmv', params)]
        return self.node('BatchNormalization', [x, *names], 'bn', self.shapes[x], epsilon=1e-5)

    def relu(self, x):
        return self.node('Relu', [x], 'relu', self.shapes[x])

    def upsample(self, x, mode, coordinates):
        channels, height, width = self.shapes[x]
        scales = self.constant('scales', np.array([1, 1, 2, 2], np.float32))
        attrs = {'mode': mode, 'coordinate_transformation_mode': coordinates}
        if mode == 'nearest':
            attrs['nearest_mode'] = 'floor' if coordinates == 'asymmetric' else 'round_prefer_floor'
        return self.node('Resize', [x, '', scales], 'resize', (channels, 2 * height, 2 * width),
                         **attrs)

    def concat(self, a, b):
        (ca, h, w), (cb, _, _) = self.shapes[a], self.shapes[b]
        return self.node('Concat', [a, b], 'concat', (ca + cb, h, w), axis=1)


def build_encoder_decoder(path, height, width, *, channels=(8, 16), layout='NCHW',
                          input_name='input', output_name='depth', output_rank=4,
                          output_gain=None, dynamic=False, seed=0):
    """Write a U-Net-like depth network to ``path``; returns its forward FLOPs (multiply-adds x 2).

    height, width: input size, divisible by 2 ** len(channels). channels: encoder widths; each level
    is Conv3x3/s2 + BatchNorm + Relu. The decoder goes back up with Resize (x2: bilinear
    align_corners, then bilinear half_pixel, then nearest) + Concat(skip) + Conv + BatchNorm + Relu;
    the head is Resize + Conv3x3 -> 1 channel + Sigmoid (times ``output_gain`` if given, e.g. a
    metric range in metres). layout: NCHW input 1x3xHxW, or NHWC 1xHxWx3 (a Transpose in the graph).
    output_rank: 4 (1x1xHxW) or 3 (1xHxW, a Squeeze). dynamic: symbolic batch/height/width dims.
    """
    factor = 2 ** len(channels)
    if height % factor or width % factor:
        raise ValueError(f'height and width must be divisible by {factor}')
    graph = _Graph(seed)
    x = input_name
    if layout == 'NHWC':
        graph.shapes[x] = (height, width, 3)
        x = graph.node('Transpose', [x], 'nchw', (3, height, width), perm=[0, 3, 1, 2])
    else:
        graph.shapes[x] = (3, height, width)
    skips = []
    for level_channels in channels:
        skips.append(x)
        x = graph.relu(graph.batchnorm(graph.conv(x, level_channels, stride=2)))
    modes = [('linear', 'align_corners'), ('linear', 'half_pixel'), ('nearest', 'asymmetric')]
    for level, skip in enumerate(reversed(skips[1:])):
        mode, coordinates = modes[level % len(modes)]
        x = graph.upsample(x, mode, coordinates)
        x = graph.concat(x, skip)
        x = graph.relu(graph.batchnorm(graph.conv(x, graph.shapes[skip][0])))
    x = graph.upsample(x, 'nearest', 'asymmetric')
    x = graph.conv(x, 1)
    x = graph.node('Sigmoid', [x], 'sigmoid', graph.shapes[x])
    if output_gain is not None:
        gain = graph.constant('gain', np.array(output_gain, np.float32))
        x = graph.node('Mul', [x, gain], 'gain', graph.shapes[x])
    if output_rank == 3:
        axes = graph.constant('axes', np.array([1], np.int64))
        x = graph.node('Squeeze', [x, axes], 'squeeze', graph.shapes[x])
    # rename the last node's output to output_name
    graph.nodes[-1].output[0] = output_name
    batch, h_dim, w_dim = ('batch', 'height', 'width') if dynamic else (1, height, width)
    in_shape = [batch, h_dim, w_dim, 3] if layout == 'NHWC' else [batch, 3, h_dim, w_dim]
    out_shape = [batch, 1, h_dim, w_dim] if output_rank == 4 else [batch, h_dim, w_dim]
    tensor = helper.make_tensor_value_info
    model = helper.make_model(
        helper.make_graph(graph.nodes, 'encoder_decoder_depth',
                          [tensor(input_name, TensorProto.FLOAT, in_shape)],
                          [tensor(output_name, TensorProto.FLOAT, out_shape)],
                          graph.initializers),
        opset_imports=[helper.make_opsetid('', OPSET)], producer_name='pointcloud_pipeline tests')
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return graph.flops


def build_two_input_model(path, height, width):
    """A model with two image inputs (``left``, ``right``) and one output: their sum's mean."""
    shape = [1, 3, height, width]
    nodes = [helper.make_node('Add', ['left', 'right'], ['sum']),
             helper.make_node('ReduceMean', ['sum'], ['depth'], axes=[1], keepdims=1)]
    tensor = helper.make_tensor_value_info
    model = helper.make_model(
        helper.make_graph(nodes, 'two_inputs',
                          [tensor(n, TensorProto.FLOAT, shape) for n in ('left', 'right')],
                          [tensor('depth', TensorProto.FLOAT, [1, 1, height, width])]),
        opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def build_unsupported_op_model(path, height, width):
    """A valid ONNX model using an operator tinygrad 0.14 does not implement (Det)."""
    nodes = [helper.make_node('Det', ['input'], ['depth'])]
    tensor = helper.make_tensor_value_info
    model = helper.make_model(
        helper.make_graph(nodes, 'unsupported',
                          [tensor('input', TensorProto.FLOAT, [1, 3, height, width])],
                          [tensor('depth', TensorProto.FLOAT, [1, 3])]),
        opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def onnxruntime_session(path, threads=None):
    """An onnxruntime CPU session (the reference implementation)."""
    ort = require('onnxruntime')
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), sess_options=options, providers=['CPUExecutionProvider'])


def reference_normalize(rgb, scale, mean, std):
    """(pixel * scale - mean) / std per channel in float64: the formula the profiles document."""
    return (np.asarray(rgb, np.float64) * scale - np.asarray(mean)) / np.asarray(std)


def tinygrad_unavailable_reason():
    """Why tinygrad cannot run kernels here (None when it can): its CPU device needs clang."""
    import importlib.util
    import os
    import shutil
    if importlib.util.find_spec('tinygrad') is None:
        return 'tinygrad is not installed: pip install tinygrad==0.14.0 (monocular depth)'
    device = os.environ.get('DEV', '')
    if device and not device.upper().startswith('CPU'):
        return None  # a GPU device chosen explicitly: assume it works (the estimator checks)
    compiler = os.environ.get('CC', 'clang')
    if shutil.which(compiler) is None:
        return (f'tinygrad\'s CPU device needs the {compiler!r} binary, which is not on PATH: '
                f'run `make setup` (installs clang with apt-get) or `apt-get install clang`')
    return None


def metric_profile(size, **overrides):
    """A metric-depth ModelProfile for the test networks of input ``size`` (height, width)."""
    from pointcloud_pipeline.monodepth import ModelProfile
    fields = dict(name=f'test_metric_{size[0]}x{size[1]}', input_size=size,
                  mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), interpolation='cubic',
                  output_kind='metric', max_depth_m=9.5)
    fields.update(overrides)
    return ModelProfile(**fields)


# (profile overrides, error message) for profiles that do not fit the 256x256 test network;
# every engine must refuse them with the same words
PROFILE_MISMATCHES = [
    (dict(input_size=(240, 320)), r'has shape \(1, 3, 256, 256\) .* needs \(1, 3, 240, 320\): '
                                  r'mismatch on axis 2'),
    (dict(layout='NHWC'), r'needs \(1, 256, 256, 3\): mismatch on axis 1'),
    (dict(input_name='image'), "profile input_name 'image' is not an input of the model "
                               r'\(inputs: input \(1, 3, 256, 256\)\)'),
    (dict(output='disparity'), "profile output 'disparity' is not an output of the model "
                               r'\(outputs: depth\)'),
    (dict(output=1), 'profile output index 1 but the model has 1 output'),
]
