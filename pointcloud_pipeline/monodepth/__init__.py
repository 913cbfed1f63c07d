"""Monocular depth: an RGB camera image -> a depth image in metres, by an ONNX model in tinygrad
(default) or onnxruntime (CPU).

Four modules, each usable on its own:

* :mod:`.profiles`: :class:`ModelProfile` / :func:`load_profile`, what a network expects and
  what it returns (input size, channel order, layout, normalisation, resize mode, output kind and
  its conversion to metres), from a small YAML file (``config/models/<name>.yaml``).
* :mod:`.processing`: :func:`preprocess` / :func:`postprocess` / :func:`output_to_depth`, the
  numpy/OpenCV maths around the network (no tinygrad, no ROS).
* :mod:`.engines`: the inference engines, ``tinygrad`` (``tinygrad.nn.onnx.OnnxRunner`` under
  ``TinyJit``, any tinygrad device) and ``onnxruntime`` (an ``InferenceSession`` on the CPU).
* :mod:`.runner`: :class:`DepthEstimator` loads the ONNX file in an engine
  (``engine='tinygrad'`` or ``'onnxruntime'``), checks it against the profile, runs it and
  returns ``H x W float32`` metres at the camera resolution (NaN where there is no valid depth,
  the ``32FC1`` convention).

Frames: the depth image is pixel-aligned with the input image (same camera optical frame: x right,
y down, z forward); depth is the z coordinate in metres, not the ray length. tinygrad and
onnxruntime are optional: each is imported only when a :class:`DepthEstimator` is built with it
(tinygrad also by :func:`select_device`); a missing one is a ModuleNotFoundError naming the pip
command.
"""
from .engines import ENGINES, select_device
from .processing import (Placement, compute_placement, fit_inverse_relative, output_to_depth,
                         postprocess, preprocess)
from .profiles import (ModelProfile, available_profiles, load_profile, profile_dirs,
                       profile_from_dict)
from .runner import DepthEstimator

__all__ = [
    'ModelProfile', 'profile_from_dict', 'load_profile', 'available_profiles', 'profile_dirs',
    'Placement', 'compute_placement', 'preprocess', 'postprocess', 'output_to_depth',
    'fit_inverse_relative',
    'ENGINES', 'select_device', 'DepthEstimator',
]
