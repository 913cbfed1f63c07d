"""StampSynchronizer: exact and approximate pairing, bounds, counters."""
import threading
from types import SimpleNamespace

import pytest

from pointcloud_pipeline.ros.stamp_sync import (JUMP_BACK_SECONDS, NS_PER_SECOND,
                                                StampSynchronizer, stamp_to_ns)

MS = 1_000_000  # nanoseconds


def test_stamp_to_ns_reads_sec_and_nanosec():
    assert stamp_to_ns(SimpleNamespace(sec=3, nanosec=7)) == 3 * NS_PER_SECOND + 7


def test_exact_pairs_equal_stamps_in_stream_order():
    sync = StampSynchronizer(('depth', 'color'))
    assert sync.add('color', 100, 'c100') is None
    assert sync.add('depth', 100, 'd100') == ('d100', 'c100')
    assert sync.add('depth', 200, 'd200') is None
    assert sync.add('color', 200, 'c200') == ('d200', 'c200')
    assert sync.matched == 2
    assert sync.pending() == {'depth': 0, 'color': 0}


def test_exact_does_not_pair_one_nanosecond_apart():
    sync = StampSynchronizer(slop=0.0)
    sync.add('depth', 1000, 'd')
    assert sync.add('color', 1001, 'c') is None
    assert sync.pending() == {'depth': 1, 'color': 1}


def test_out_of_order_arrival_pairs_every_message():
    sync = StampSynchronizer()
    pairs = []
    for stream, stamp in [('depth', 1), ('depth', 2), ('depth', 3),
                          ('color', 3), ('color', 1), ('color', 2)]:
        pair = sync.add(stream, stamp * MS, f'{stream[0]}{stamp}')
        if pair:
            pairs.append(pair)
    assert pairs == [('d3', 'c3'), ('d1', 'c1'), ('d2', 'c2')]
    assert sync.unmatched == {'depth': 0, 'color': 0}


def test_approximate_pairs_within_slop_inclusive_and_not_beyond():
    sync = StampSynchronizer(slop=0.010)
    sync.add('depth', 0, 'd0')
    assert sync.add('color', 10 * MS, 'c10') == ('d0', 'c10')  # exactly at the slop edge
    sync.add('depth', 100 * MS, 'd100')
    assert sync.add('color', 110 * MS + 1, 'c110+') is None  # 1 ns beyond
    assert sync.pending() == {'depth': 1, 'color': 1}


def test_approximate_picks_the_closest_candidate():
    sync = StampSynchronizer(slop=0.020)
    sync.add('color', 0, 'c0')
    sync.add('color', 15 * MS, 'c15')
    sync.add('color', 28 * MS, 'c28')
    assert sync.add('depth', 20 * MS, 'd20') == ('d20', 'c15')
    assert sync.add('depth', 30 * MS, 'd30') == ('d30', 'c28')
    assert sync.add('depth', 1 * MS, 'd1') == ('d1', 'c0')


def test_missing_partner_is_dropped_when_the_queue_overflows():
    sync = StampSynchronizer(queue_size=3)
    sync.add('depth', 1, 'lonely')  # its colour frame was lost
    for stamp in range(10, 13):
        sync.add('depth', stamp, f'd{stamp}')  # colour lags behind: all wait
    assert sync.unmatched == {'depth': 1, 'color': 0}  # the oldest stamp was evicted
    assert sync.pending()['depth'] == 3
    assert [sync.add('color', s, f'c{s}') for s in range(10, 13)] == [
        ('d10', 'c10'), ('d11', 'c11'), ('d12', 'c12')]


def test_max_age_drops_a_message_whose_partner_never_comes():
    sync = StampSynchronizer(max_age=0.1)
    sync.add('depth', 0, 'lonely')
    for stamp_ms in (33, 66, 99):
        sync.add('depth', stamp_ms * MS, stamp_ms)
        sync.add('color', stamp_ms * MS, stamp_ms)
    assert sync.unmatched == {'depth': 0, 'color': 0}
    assert sync.pending() == {'depth': 1, 'color': 0}
    sync.add('depth', 133 * MS, 133)  # 133 ms newer than 'lonely' > max_age
    assert sync.unmatched == {'depth': 1, 'color': 0}
    assert sync.pending() == {'depth': 1, 'color': 0}  # only 133 waits
    assert sync.add('color', 10 * MS, 'late') is None  # arrives after its window closed
    assert sync.unmatched == {'depth': 1, 'color': 1}
    assert sync.pending() == {'depth': 1, 'color': 0}


def test_pairs_come_in_stream_order_and_time_messages_are_accepted():
    sync = StampSynchronizer(('a', 'b'))
    stamp = SimpleNamespace(sec=5, nanosec=500)
    assert sync.add('b', stamp, 'B') is None
    assert sync.add('a', 5 * NS_PER_SECOND + 500, 'A') == ('A', 'B')


def test_slop_and_max_age_can_change_at_runtime():
    sync = StampSynchronizer()
    sync.add('depth', 0, 'd0')
    assert sync.add('color', 5 * MS, 'c5') is None
    sync.slop = 0.005
    assert sync.add('depth', 5 * MS, 'd5') == ('d5', 'c5')
    sync.max_age = 0.25
    assert sync.max_age == 0.25
    sync.add('depth', 300 * MS, 'd300')  # the waiting d0 is now older than max_age
    assert sync.pending() == {'depth': 1, 'color': 0}
    assert sync.unmatched == {'depth': 1, 'color': 0}


@pytest.mark.parametrize('kwargs', [
    {'slop': -0.1}, {'slop': float('nan')}, {'queue_size': 0}, {'max_age': 0.0},
    {'streams': ('a', 'a')}, {'streams': ('a',)}, {'streams': ('a', 'b', 'a')}, {'jump_back': 0.0},
    {'jump_back': float('nan')}])
def test_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        StampSynchronizer(**kwargs)


def test_rejects_unknown_stream():
    with pytest.raises(ValueError, match='unknown stream'):
        StampSynchronizer().add('lidar', 0, None)


def test_concurrent_producers_pair_everything():
    sync = StampSynchronizer(queue_size=10_000)
    pairs = []
    stamps = range(2000)

    def produce(stream):
        for stamp in stamps:
            pair = sync.add(stream, stamp, stamp)
            if pair is not None:
                pairs.append(pair)  # list.append is atomic

    threads = [threading.Thread(target=produce, args=(s,)) for s in ('depth', 'color')]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(pairs) == [(s, s) for s in stamps]
    assert sync.pending() == {'depth': 0, 'color': 0}


def pair_stream(sync, stamps_ns):
    """Offer depth then colour at each stamp; the pairs returned."""
    pairs = []
    for stamp in stamps_ns:
        sync.add('depth', stamp, ('d', stamp))
        pair = sync.add('color', stamp, ('c', stamp))
        if pair is not None:
            pairs.append(pair)
    return pairs


def test_pairing_resumes_after_the_stamps_jump_back():
    # A looping bag: 100 s .. 100.3 s, then again from 10 s (restamp off, or a simulator reset).
    sync = StampSynchronizer(max_age=0.5)
    first = pair_stream(sync, [100 * NS_PER_SECOND + i * 33 * MS for i in range(10)])
    assert len(first) == 10 and sync.resets == 0
    second = pair_stream(sync, [10 * NS_PER_SECOND + i * 33 * MS for i in range(10)])
    assert [(d[1], c[1]) for d, c in second] == [
        (10 * NS_PER_SECOND + i * 33 * MS,) * 2 for i in range(10)]
    assert sync.resets == 1
    assert sync.unmatched == {'depth': 0, 'color': 0}


def test_one_bogus_future_stamp_does_not_stop_pairing():
    sync = StampSynchronizer(max_age=0.5)
    assert len(pair_stream(sync, [0, 33 * MS])) == 2
    assert sync.add('color', 10_000 * NS_PER_SECOND, 'bogus') is None
    later = pair_stream(sync, [66 * MS + i * 33 * MS for i in range(5)])
    assert len(later) == 5
    assert sync.resets == 1
    assert sync.unmatched == {'depth': 0, 'color': 1}  # the bogus frame, dropped at the reset
    assert sync.pending() == {'depth': 0, 'color': 0}


def test_queued_messages_are_counted_when_the_stamps_jump_back():
    sync = StampSynchronizer(max_age=0.5)
    sync.add('depth', 100 * NS_PER_SECOND, 'waiting')
    sync.add('color', 100 * NS_PER_SECOND + 10 * MS, 'also waiting')
    assert sync.add('depth', 5 * NS_PER_SECOND, 'd') is None  # jump back: reset, then queued
    assert sync.resets == 1 and sync.unmatched == {'depth': 1, 'color': 1}
    assert sync.pending() == {'depth': 1, 'color': 0}
    assert sync.add('color', 5 * NS_PER_SECOND, 'c') == ('d', 'c')


def test_a_little_late_is_dropped_and_far_back_resets():
    sync = StampSynchronizer(max_age=0.5)
    assert sync.jump_back == max(JUMP_BACK_SECONDS, 1.0)
    sync.add('depth', 10 * NS_PER_SECOND, 'newest')
    late = 10 * NS_PER_SECOND - 700 * MS  # beyond max_age, within jump_back: too late
    assert sync.add('color', late, 'late') is None
    assert sync.resets == 0 and sync.unmatched == {'depth': 0, 'color': 1}
    assert sync.pending() == {'depth': 1, 'color': 0}
    far = 10 * NS_PER_SECOND - 1001 * MS  # beyond jump_back: a new timeline
    assert sync.add('color', far, 'far') is None
    assert sync.resets == 1 and sync.pending() == {'depth': 0, 'color': 1}


def test_jump_back_threshold_follows_max_age_unless_given():
    sync = StampSynchronizer(max_age=5.0)
    assert sync.jump_back == 10.0
    sync.max_age = 0.1
    assert sync.jump_back == JUMP_BACK_SECONDS
    assert StampSynchronizer().jump_back == JUMP_BACK_SECONDS
    explicit = StampSynchronizer(max_age=5.0, jump_back=0.2)
    explicit.add('depth', NS_PER_SECOND, 'a')
    explicit.add('depth', NS_PER_SECOND - 300 * MS, 'b')
    assert explicit.jump_back == 0.2 and explicit.resets == 1


def test_reset_on_demand_drops_the_queues():
    sync = StampSynchronizer(max_age=0.5)
    sync.add('depth', 100 * NS_PER_SECOND, 'd')
    sync.reset()
    assert sync.resets == 1 and sync.pending() == {'depth': 0, 'color': 0}
    assert sync.unmatched == {'depth': 1, 'color': 0}
    # the newest stamp is forgotten: an older one is not "too late" any more
    sync.add('depth', 99 * NS_PER_SECOND + 600 * MS, 'd2')
    assert sync.add('color', 99 * NS_PER_SECOND + 600 * MS, 'c2') == ('d2', 'c2')
    assert sync.resets == 1


THREE = ('depth', 'color', 'intensity')


def test_three_streams_match_only_when_every_stream_has_the_stamp():
    sync = StampSynchronizer(THREE)
    assert sync.add('intensity', 100, 'i100') is None
    assert sync.add('depth', 100, 'd100') is None  # colour still missing: depth waits
    assert sync.pending() == {'depth': 1, 'color': 0, 'intensity': 1}
    assert sync.add('color', 100, 'c100') == ('d100', 'c100', 'i100')
    assert sync.pending() == {'depth': 0, 'color': 0, 'intensity': 0}
    assert sync.matched == 1


@pytest.mark.parametrize('order', [THREE, THREE[::-1], ('color', 'depth', 'intensity')])
def test_three_streams_match_in_any_arrival_order(order):
    sync = StampSynchronizer(THREE)
    results = [sync.add(stream, stamp * MS, f'{stream[0]}{stamp}')
               for stamp in (1, 2) for stream in order]
    assert [r for r in results if r] == [('d1', 'c1', 'i1'), ('d2', 'c2', 'i2')]


def test_three_streams_approximate_picks_the_closest_of_each():
    sync = StampSynchronizer(THREE, slop=0.010)
    sync.add('color', 95 * MS, 'c95')
    sync.add('color', 101 * MS, 'c101')
    sync.add('intensity', 120 * MS, 'i120')  # beyond the slop of depth 100
    sync.add('intensity', 98 * MS, 'i98')
    assert sync.add('depth', 100 * MS, 'd100') == ('d100', 'c101', 'i98')
    assert sync.pending() == {'depth': 0, 'color': 1, 'intensity': 1}


def test_three_streams_count_the_unmatched_per_stream():
    sync = StampSynchronizer(THREE, queue_size=1)
    sync.add('depth', 1, 'd1')
    sync.add('color', 1, 'c1')
    sync.add('depth', 2, 'd2')  # d1 never got its intensity: dropped by the queue bound
    assert sync.unmatched == {'depth': 1, 'color': 0, 'intensity': 0}
    assert sync.add('intensity', 2, 'i2') is None  # c1 is not within the slop of 2
    assert sync.add('color', 2, 'c2') == ('d2', 'c2', 'i2')
    assert sync.pending() == {'depth': 0, 'color': 1, 'intensity': 0}  # c1 still waits
    assert sync.unmatched == {'depth': 1, 'color': 0, 'intensity': 0}
