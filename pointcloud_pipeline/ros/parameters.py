"""Node parameters: declared with descriptors, and turned into checked runtime settings.

- :class:`ParameterDeclarer` declares a node's parameters up front (description, ranges,
  choices, read-only). rclpy checks ranges and read-only on every set (also for values from a
  params file) and rejects the change with its reason; the declarer adds the checks rclpy does
  not do itself (string choices, settings that must agree) for ``add_on_set_parameters_callback``.
- :meth:`PipelineSettings.from_parameters` / :meth:`BevSettings.from_parameters` take a dict of
  parameter name -> value (as declared in config/pipeline.yaml) and return an immutable
  settings object with the derived objects the kernels take (``BevGrid``, the 4x4 mounting
  transform), or raise ValueError naming the parameter. Nodes call them at start and for every
  runtime change, so a bad change is rejected with that reason and the running settings stay.
- :func:`qos_profile`: the QoS of a data topic by name.
"""
from dataclasses import dataclass
import math

import numpy as np
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

from ..bev import BevGrid
from ..rays import DEPTH_KINDS
from ..transforms import camera_mount_transform, validated_transform

QOS_CHOICES = ('sensor_data', 'reliable')


class ParameterDeclarer:
    """Declares a node's parameters up front and remembers their allowed choices."""

    def __init__(self, node):
        self._node = node
        self._choices = {}

    def declare(self, name, default, description, *, value_range=None, choices=None,
                read_only=False):
        """Declare ``name`` with ``default`` and return its effective value.

        value_range: (lowest, highest) inclusive, for int and float parameters.
        choices: allowed string values (checked by :meth:`check`).
        read_only: True for parameters that cannot change after start (rclpy rejects the change
            with the reason "Trying to set a read-only parameter").
        """
        constraints = []
        descriptor = ParameterDescriptor(description=description, read_only=read_only)
        if value_range is not None:
            low, high = value_range
            if isinstance(default, bool) or not isinstance(default, (int, float)):
                raise TypeError(f'{name}: a range needs an int or float default')
            if isinstance(default, int):
                descriptor.integer_range = [IntegerRange(from_value=int(low), to_value=int(high),
                                                         step=1)]
            else:
                descriptor.floating_point_range = [
                    FloatingPointRange(from_value=float(low), to_value=float(high), step=0.0)]
        if choices is not None:
            self._choices[name] = tuple(choices)
            constraints.append('one of: ' + ', '.join(choices))
        if read_only:
            constraints.append('read-only: set at start (params file or --ros-args -p)')
        descriptor.additional_constraints = '; '.join(constraints)
        value = self._node.declare_parameter(name, default, descriptor).value
        if name in self._choices and value not in self._choices[name]:
            raise ValueError(f'parameter {name}={value!r} is not one of {self._choices[name]}')
        return value

    def declare_reporting(self):
        """Declare the diagnostics and logging parameters every node has (config/pipeline.yaml):
        ``diagnostics_period``, ``log_period``, ``warn_throttle``, seconds."""
        self.declare('diagnostics_period', 1.0, 'seconds between /diagnostics messages',
                     value_range=(0.01, 3600.0), read_only=True)
        self.declare('log_period', 10.0, 'seconds between summary log lines (0: never)',
                     value_range=(0.0, 86400.0))
        self.declare('warn_throttle', 5.0, 'seconds between repeated warnings of one kind',
                     value_range=(0.0, 3600.0))

    def check(self, parameters):
        """SetParametersResult rejecting a string parameter outside its choices."""
        for parameter in parameters:
            allowed = self._choices.get(parameter.name)
            if allowed is not None and parameter.value not in allowed:
                return SetParametersResult(
                    successful=False,
                    reason=f'{parameter.name}={parameter.value!r} is not one of {allowed}')
        return SetParametersResult(successful=True)

    def values(self, changes=()):
        """{name: value} of every parameter of the node, with ``changes`` (Parameters) applied."""
        values = {name: parameter.value
                  for name, parameter in self._node.get_parameters_by_prefix('').items()}
        values.update((parameter.name, parameter.value) for parameter in changes)
        return values

    def validator(self, build_settings):
        """An ``add_on_set_parameters_callback`` callback: rejects a change outside the choices,
        or one for which ``build_settings(values)`` raises (ValueError, TypeError, KeyError),
        with the reason; the running settings stay."""
        def validate(parameters):
            result = self.check(parameters)
            if not result.successful:
                return result
            try:
                build_settings(self.values(parameters))
            except (ValueError, TypeError, KeyError) as error:
                return SetParametersResult(successful=False, reason=str(error))
            return SetParametersResult(successful=True)
        return validate


def qos_profile(name, depth):
    """The QoS of a data topic: ``sensor_data`` (best effort, keep last ``depth``) or
    ``reliable`` (reliable, keep last ``depth``); both volatile."""
    if name == 'sensor_data':
        profile = QoSProfile(depth=depth)
        profile.history = qos_profile_sensor_data.history
        profile.reliability = qos_profile_sensor_data.reliability
        profile.durability = qos_profile_sensor_data.durability
        return profile
    if name == 'reliable':
        return QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)
    raise ValueError(f'unknown QoS {name!r} (expected one of {QOS_CHOICES})')


def _finite(values, name, low=-math.inf, high=math.inf, low_inclusive=True):
    value = float(values[name])
    if not math.isfinite(value) or value > high or (value < low if low_inclusive else
                                                    value <= low):
        bound = '>=' if low_inclusive else '>'
        raise ValueError(f'{name} must be finite, {bound} {low:g} and <= {high:g}, got {value}')
    return value


def _choice(values, name, choices):
    value = str(values[name])
    if value not in choices:
        raise ValueError(f'{name} must be one of {", ".join(choices)}, got {value!r}')
    return value


def _transform(values, prefix):
    try:
        return validated_transform(values[f'{prefix}transform'])
    except ValueError as error:
        raise ValueError(f'{prefix}transform: {error}') from None


def _grid(values, prefix, intensity_range=(0.0, 1.0)):
    try:
        return BevGrid(x_range=tuple(values[f'{prefix}x_range']),
                       y_range=tuple(values[f'{prefix}y_range']),
                       z_range=tuple(values[f'{prefix}z_range']),
                       resolution=float(values[f'{prefix}resolution']),
                       intensity_range=intensity_range)
    except ValueError as error:
        raise ValueError(f'BEV grid ({prefix}x_range/y_range/z_range/resolution): {error}') \
            from None


@dataclass(frozen=True)
class PipelineSettings:
    """Settings of the pipeline node that may change while it runs."""

    depth_scale: float
    depth_kind: str  # 'z' (along the optical axis) or 'radial' (along the pixel's ray)
    rectified: bool  # False: unrectified image, rays from K and D
    use_projection_matrix: bool
    min_range: float
    max_range: float
    invalid_depth: float
    decimation_x: int
    decimation_y: int
    organized: bool
    threads: int
    frame_id: str
    resize_rgb: bool
    max_image_bytes: int
    sync_slop: float
    sync_max_age: float
    bev_enable: bool
    bev_grid: BevGrid
    bev_frame_id: str
    mount: np.ndarray  # 4x4 optical -> body
    log_period: float
    warn_throttle: float

    @classmethod
    def from_parameters(cls, values):
        min_range = _finite(values, 'min_range', 0.0)
        max_range = _finite(values, 'max_range', 0.0, low_inclusive=False)
        if not min_range < max_range:
            raise ValueError(f'min_range ({min_range}) must be smaller than max_range '
                             f'({max_range})')
        if values['mount.use_transform']:
            mount = _transform(values, 'mount.')
        else:
            mount = camera_mount_transform(
                height=_finite(values, 'mount.height'), x=_finite(values, 'mount.x'),
                y=_finite(values, 'mount.y'), roll=_finite(values, 'mount.roll'),
                pitch=_finite(values, 'mount.pitch'), yaw=_finite(values, 'mount.yaw'))
        for name in ('decimation_x', 'decimation_y', 'max_image_bytes'):
            if int(values[name]) < 1:
                raise ValueError(f'{name} must be >= 1, got {values[name]}')
        if int(values['threads']) < 0:
            raise ValueError(f'threads must be >= 0 (0 = all cores), got {values["threads"]}')
        return cls(
            depth_scale=_finite(values, 'depth_scale', 0.0, low_inclusive=False),
            depth_kind=_choice(values, 'depth_kind', DEPTH_KINDS),
            rectified=bool(values['rectified']),
            use_projection_matrix=bool(values['use_projection_matrix']),
            min_range=min_range, max_range=max_range,
            invalid_depth=_finite(values, 'invalid_depth', 0.0),
            decimation_x=int(values['decimation_x']), decimation_y=int(values['decimation_y']),
            organized=bool(values['organized']), threads=int(values['threads']),
            frame_id=str(values['frame_id']), resize_rgb=bool(values['resize_rgb']),
            max_image_bytes=int(values['max_image_bytes']),
            sync_slop=_finite(values, 'sync_slop', 0.0),
            sync_max_age=_finite(values, 'sync_max_age', 0.0, low_inclusive=False),
            bev_enable=bool(values['bev.enable']),
            bev_grid=_grid(values, 'bev.', tuple(values['bev.intensity_range'])),
            bev_frame_id=str(values['bev.frame_id']), mount=mount,
            log_period=_finite(values, 'log_period', 0.0),
            warn_throttle=_finite(values, 'warn_throttle', 0.0))


@dataclass(frozen=True)
class BevSettings:
    """Settings of the BEV node that may change while it runs."""

    grid: BevGrid
    transform: np.ndarray | None
    threads: int
    frame_id: str
    max_cloud_bytes: int
    log_period: float
    warn_throttle: float

    @classmethod
    def from_parameters(cls, values):
        if int(values['threads']) < 0:
            raise ValueError(f'threads must be >= 0 (0 = all cores), got {values["threads"]}')
        if int(values['max_cloud_bytes']) < 1:
            raise ValueError(f'max_cloud_bytes must be >= 1, got {values["max_cloud_bytes"]}')
        return cls(
            grid=_grid(values, '', intensity_range=tuple(values['intensity_range'])),
            transform=_transform(values, '') if values['use_transform'] else None,
            threads=int(values['threads']), frame_id=str(values['frame_id']),
            max_cloud_bytes=int(values['max_cloud_bytes']),
            log_period=_finite(values, 'log_period', 0.0),
            warn_throttle=_finite(values, 'warn_throttle', 0.0))
