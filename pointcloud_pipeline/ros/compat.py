"""The one place that handles rclpy API differences between the ROS 2 distributions the package
runs on: Jazzy (rclpy 7.x) and Kilted (rclpy 9.x).

Everything else in the package calls these helpers instead of testing versions itself. Found by
running the whole test suite on both (``make test`` and ``make test ROS_DISTRO=jazzy``):

- ``MessageInfo`` (the second argument of a subscription callback): Kilted's has
  ``publisher_gid``; Jazzy's has only ``source_timestamp``, ``received_timestamp``,
  ``publication_sequence_number`` and ``reception_sequence_number``.
  :func:`publication_key` identifies one publication with either.
- Fast DDS reads its XML profiles file from ``FASTRTPS_DEFAULT_PROFILES_FILE`` in 2.x (Jazzy's
  2.14) and from ``FASTDDS_DEFAULT_PROFILES_FILE`` in 3.x (Kilted's 3.2, which warns about the
  old name): :func:`fastdds_profiles_variable` names the one the installed Fast DDS reads.
  Without it the large-data profile is silently ignored on Jazzy (most multi-MB best-effort
  messages between processes lost).

Import-light (no rclpy): the loopback environment uses it before rclpy is imported.
"""
from functools import lru_cache
from importlib import metadata
import os

FASTDDS_2_DISTROS = ('humble', 'iron', 'jazzy')
"""ROS 2 distributions whose Fast DDS is 2.x (``ROS_DISTRO`` of a sourced ROS install)."""


def publication_key(message_info):
    """A hashable key of the publication a subscription callback received, equal for every
    delivery of one publication to this process (e.g. through two subscriptions of one topic),
    or None when ``message_info`` cannot tell publications apart.

    message_info: the ``MessageInfo`` dict rclpy passes to a two-argument callback.
    Kilted: (publisher gid bytes, publication sequence number), else the source timestamp (ns)
    in place of the sequence number. Jazzy has no publisher gid: (source timestamp in ns,
    publication sequence number), both set by the writer for each publication, so two
    publications share a key only if two publishers stamp the same nanosecond with the same
    sequence number.
    """
    if not message_info:
        return None
    sequence = message_info.get('publication_sequence_number')
    sequence = None if sequence is None else int(sequence)
    gid = message_info.get('publisher_gid')
    if isinstance(gid, dict) and gid.get('data'):
        data = bytes(gid['data'])
        if sequence is not None:
            return data, 'sequence', sequence
        return data, 'source_time', message_info.get('source_timestamp')
    source_time = message_info.get('source_timestamp')
    if sequence is None or not source_time:
        return None
    return 'source_time+sequence', int(source_time), sequence


@lru_cache(maxsize=1)
def _wheel_fastdds_major():
    """Major version of the Fast DDS of the PyPI ROS wheels in this environment (ros-fastdds
    3.x on Kilted, ros-fastrtps 2.x on Jazzy), None when neither is installed (a ROS install)."""
    for distribution in ('ros-fastdds', 'ros-fastrtps'):
        try:
            return int(metadata.version(distribution).split('.')[0])
        except (metadata.PackageNotFoundError, ValueError):
            continue
    return None


def fastdds_profiles_variable(environ=None):
    """The environment variable the installed Fast DDS reads its default XML profiles file from:
    ``FASTRTPS_DEFAULT_PROFILES_FILE`` for Fast DDS 2.x (Jazzy), else
    ``FASTDDS_DEFAULT_PROFILES_FILE`` (3.x: Kilted and later).

    environ: where to read ``ROS_DISTRO`` when no PyPI Fast DDS wheel is installed (a sourced
    ROS install); default ``os.environ``.
    """
    major = _wheel_fastdds_major()
    if major is None:
        distro = (os.environ if environ is None else environ).get('ROS_DISTRO', '')
        major = 2 if distro.lower() in FASTDDS_2_DISTROS else 3
    return 'FASTRTPS_DEFAULT_PROFILES_FILE' if major < 3 else 'FASTDDS_DEFAULT_PROFILES_FILE'


__all__ = ['publication_key', 'fastdds_profiles_variable', 'FASTDDS_2_DISTROS']
