"""Declaring node parameters with descriptors (description, ranges, choices, read-only).

rclpy checks ranges and read-only on every set (also for values from a params file) and rejects
the change with its reason; :class:`ParameterDeclarer` adds the checks rclpy does not do itself
(string choices) for the nodes' ``add_on_set_parameters_callback``.
"""
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)

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
    from rclpy.qos import QoSProfile, qos_profile_sensor_data, ReliabilityPolicy
    if name == 'sensor_data':
        profile = QoSProfile(depth=depth)
        profile.history = qos_profile_sensor_data.history
        profile.reliability = qos_profile_sensor_data.reliability
        profile.durability = qos_profile_sensor_data.durability
        return profile
    if name == 'reliable':
        return QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)
    raise ValueError(f'unknown QoS {name!r} (expected one of {QOS_CHOICES})')
