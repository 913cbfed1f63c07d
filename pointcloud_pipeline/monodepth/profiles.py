"""Model profiles: what a monocular depth network expects and what it returns.

A profile (:class:`ModelProfile`) is a small YAML file, ``config/models/<name>.yaml``, whose keys
are the fields of the class: the network input size (height, width in pixels), its channel order
and layout, the normalisation ``(pixel * scale - mean) / std`` (pixels in 0..255), the resize mode,
the output kind and its conversion to metres, and the valid depth range in metres.
:mod:`.processing` documents how each field is applied. numpy and PyYAML only: no OpenCV, no
tinygrad, no ROS.
"""
import dataclasses
import math
import os
from pathlib import Path

import numpy as np
import yaml

from ..files import config_dirs


RESIZE_MODES = ('stretch', 'letterbox', 'crop')
OUTPUT_KINDS = ('metric', 'inverse_relative', 'disparity')
CHANNEL_ORDERS = ('rgb', 'bgr')
LAYOUTS = ('NCHW', 'NHWC')
INTERPOLATIONS = ('nearest', 'linear', 'cubic', 'area')  # image resize filters


@dataclasses.dataclass(frozen=True)
class ModelProfile:
    """How to feed a monocular depth network and read its output.

    Every field is a key of the profile YAML file of the same name; :mod:`.processing` applies
    them (resize modes, output kinds).
    """

    name: str
    input_size: tuple[int, int]          # network input (height, width), pixels
    input_name: str | None = None        # ONNX input name; None: the model's only input
    output: int | str = 0                # ONNX output: index or name
    channel_order: str = 'rgb'           # 'rgb' | 'bgr' channel order the network expects
    layout: str = 'NCHW'                 # 'NCHW' | 'NHWC'
    scale: float = 1.0 / 255.0           # x = (pixel * scale - mean) / std, pixel in 0..255
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)   # in the network's channel order
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    resize: str = 'stretch'              # 'stretch' | 'letterbox' | 'crop'
    interpolation: str = 'linear'        # image resize filter: nearest | linear | cubic | area
    pad_value: float = 0.0               # letterbox border in pixel units (0..255), not normalised
    output_kind: str = 'metric'          # 'metric' | 'inverse_relative' | 'disparity'
    output_scale: float = 1.0            # see processing.output_to_depth
    output_shift: float = 0.0
    baseline_m: float | None = None      # disparity only: stereo baseline the network learnt
    focal_px: float | None = None        # disparity only: camera fx, pixels; None: camera_info
    min_depth_m: float = 0.0             # depths below are invalid (NaN)
    max_depth_m: float | None = None     # depths above are invalid (NaN); None: no limit
    description: str = ''

    def __post_init__(self):
        def fail(key, why):
            raise ValueError(f'model profile {self.name!r}: {key} {why}')

        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f'model profile: name must be a non-empty string, got {self.name!r}')
        size = self.input_size
        if (not isinstance(size, (list, tuple)) or len(size) != 2
                or not all(_is_int(v) and v > 0 for v in size)):
            fail('input_size', f'must be [height, width] of positive integers, got {size!r}')
        object.__setattr__(self, 'input_size', (int(size[0]), int(size[1])))
        if self.input_name is not None and not (isinstance(self.input_name, str)
                                                and self.input_name):
            fail('input_name', f'must be a non-empty string or null, got {self.input_name!r}')
        if not (isinstance(self.output, str) and self.output) and not (
                _is_int(self.output) and self.output >= 0):
            fail('output', f'must be an output index >= 0 or an output name, got {self.output!r}')
        for key, allowed in (('channel_order', CHANNEL_ORDERS), ('layout', LAYOUTS),
                             ('resize', RESIZE_MODES), ('interpolation', INTERPOLATIONS),
                             ('output_kind', OUTPUT_KINDS)):
            if getattr(self, key) not in allowed:
                fail(key, f'must be one of {", ".join(allowed)}, got {getattr(self, key)!r}')
        for key in ('mean', 'std'):
            value = getattr(self, key)
            if _is_number(value):
                value = (value,) * 3
            if (not isinstance(value, (list, tuple)) or len(value) != 3
                    or not all(_is_number(v) and math.isfinite(v) for v in value)):
                fail(key, f'must be 3 finite numbers (or one for all channels), got {value!r}')
            object.__setattr__(self, key, tuple(float(v) for v in value))
        if any(v == 0 for v in self.std):
            fail('std', f'must not contain 0, got {self.std!r}')
        for key in ('scale', 'pad_value', 'output_scale', 'output_shift', 'min_depth_m'):
            value = getattr(self, key)
            if not _is_number(value) or not math.isfinite(value):
                fail(key, f'must be a finite number, got {value!r}')
            object.__setattr__(self, key, float(value))
        if self.scale <= 0:
            fail('scale', f'must be > 0, got {self.scale}')
        if self.output_scale == 0:
            fail('output_scale', 'must not be 0')
        if self.min_depth_m < 0:
            fail('min_depth_m', f'must be >= 0, got {self.min_depth_m}')
        for key in ('baseline_m', 'focal_px', 'max_depth_m'):
            value = getattr(self, key)
            if value is None:
                continue
            if not _is_number(value) or not value > 0 or math.isnan(value):
                fail(key, f'must be a number > 0 or null, got {value!r}')
            object.__setattr__(self, key, float(value))
        if self.max_depth_m is not None and self.max_depth_m <= self.min_depth_m:
            fail('max_depth_m', f'({self.max_depth_m}) must be greater than min_depth_m '
                                f'({self.min_depth_m})')
        if self.output_kind == 'disparity' and self.baseline_m is None:
            fail('baseline_m', 'is required when output_kind is disparity')
        if self.output_kind != 'disparity':
            for key in ('baseline_m', 'focal_px'):
                if getattr(self, key) is not None:
                    fail(key, f'is only used when output_kind is disparity (this is '
                              f'{self.output_kind})')
        if not isinstance(self.description, str):
            fail('description', 'must be a string')

    @property
    def network_channels_from_rgb(self):
        """For each network input channel, the RGB channel (0 red, 1 green, 2 blue) it takes."""
        return (0, 1, 2) if self.channel_order == 'rgb' else (2, 1, 0)


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


PROFILE_KEYS = tuple(f.name for f in dataclasses.fields(ModelProfile))


def profile_from_dict(data, source='<dict>'):
    """A validated :class:`ModelProfile` from a mapping (a parsed profile YAML).

    Raises ValueError naming the unknown, missing or bad key and the source.
    """
    if not isinstance(data, dict):
        raise ValueError(f'{source}: a model profile must be a mapping of keys, got '
                         f'{type(data).__name__}')
    unknown = sorted(set(data) - set(PROFILE_KEYS), key=str)
    if unknown:
        raise ValueError(f'{source}: unknown key {unknown[0]!r} (known keys: '
                         f'{", ".join(PROFILE_KEYS)})')
    for required in ('name', 'input_size'):
        if required not in data:
            raise ValueError(f'{source}: missing required key {required!r}')
    try:
        return ModelProfile(**data)
    except ValueError as exc:
        raise ValueError(f'{source}: {exc}') from None


def profile_dirs():
    """Directories searched for profiles by name: the source tree's config/models, then the
    installed share/pointcloud_pipeline/config/models (when the package is installed)."""
    return config_dirs('models')


def available_profiles():
    """Names of the profiles shipped with the package (``config/models/*.yaml``)."""
    return sorted({p.stem for d in profile_dirs() for p in d.glob('*.yaml')})


def load_profile(path_or_name):
    """Load a :class:`ModelProfile` from a YAML file path or a shipped profile name.

    ``path_or_name``: an existing file, a path ending in .yaml/.yml, or a name from
    :func:`available_profiles` (e.g. ``'midas_v21_small'``). Raises FileNotFoundError when no such
    profile exists and ValueError (naming the key) when the file is not a valid profile.
    """
    text = os.fspath(path_or_name)
    path = Path(text).expanduser()
    if not (path.is_file() or path.suffix in ('.yaml', '.yml') or os.sep in text):
        candidates = [d / f'{text}.yaml' for d in profile_dirs()]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            raise FileNotFoundError(f'no model profile named {text!r} (shipped profiles: '
                                    f'{", ".join(available_profiles()) or "none found"}; '
                                    f'or give a YAML file path)')
    if not path.is_file():
        raise FileNotFoundError(f'model profile file not found: {path}')
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f'{path}: cannot read the profile YAML: {exc}') from None
    return profile_from_dict(data, source=str(path))
