"""rclpy / Fast DDS differences between Jazzy and Kilted (pointcloud_pipeline.ros.compat)."""
from importlib import metadata

import pytest

from pointcloud_pipeline.ros.compat import fastdds_profiles_variable, publication_key

GID = {'implementation_identifier': 'rmw_fastrtps_cpp', 'data': b'\x01\x0f' + bytes(14)}
OTHER_GID = {'implementation_identifier': 'rmw_fastrtps_cpp', 'data': b'\x01\x10' + bytes(14)}


def kilted_info(gid, sequence, stamp=1_796_000_000_000_000_000):
    return {'source_timestamp': stamp, 'received_timestamp': stamp + 5,
            'publication_sequence_number': sequence, 'reception_sequence_number': None,
            'publisher_gid': gid}


def jazzy_info(sequence, stamp=1_796_000_000_000_000_000):
    return {'source_timestamp': stamp, 'received_timestamp': stamp + 5,
            'publication_sequence_number': sequence, 'reception_sequence_number': None}


@pytest.mark.parametrize('make', [lambda seq, stamp: kilted_info(GID, seq, stamp), jazzy_info],
                         ids=['kilted', 'jazzy'])
def test_one_publication_one_key(make):
    first = make(1, 100)
    delivered_again = dict(first, received_timestamp=first['received_timestamp'] + 1000)
    assert publication_key(first) == publication_key(delivered_again) is not None
    assert publication_key(make(2, 200)) != publication_key(first)


def test_kilted_publishers_told_apart_by_gid():
    assert publication_key(kilted_info(GID, 1)) != publication_key(kilted_info(OTHER_GID, 1))
    no_sequence = kilted_info(GID, None, stamp=7)
    assert publication_key(no_sequence) == publication_key(dict(no_sequence))


@pytest.mark.parametrize('info', [None, {}, jazzy_info(None), jazzy_info(3, stamp=0)])
def test_unidentifiable_deliveries_have_no_key(info):
    assert publication_key(info) is None


def test_profiles_variable_is_the_one_of_the_installed_fast_dds():
    try:
        major = int(metadata.version('ros-fastdds').split('.')[0])
    except metadata.PackageNotFoundError:
        try:
            major = int(metadata.version('ros-fastrtps').split('.')[0])
        except metadata.PackageNotFoundError:
            pytest.skip('no Fast DDS wheel: a ROS install (ROS_DISTRO decides)')
    expected = 'FASTRTPS' if major < 3 else 'FASTDDS'
    assert fastdds_profiles_variable() == f'{expected}_DEFAULT_PROFILES_FILE'
