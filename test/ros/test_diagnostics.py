"""Frame statistics (pure) and their publication on /diagnostics (real DDS)."""
import json

import numpy as np
import pytest

from pointcloud_pipeline.ros.diagnostics import (DiagnosticsReporter, FrameStatistics, OK, STALE,
                                                 WARN, assess, diagnostic_status, flatten, summary)


class FakeClock:
    """Deterministic monotonic clock for the statistics (seconds)."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_counts_and_latency_percentiles():
    clock = FakeClock()
    stats = FrameStatistics(latency_window=1000, clock=clock)
    latencies = np.linspace(0.001, 0.100, 100)  # 1..100 ms
    for latency in latencies:
        stats.count_received()
        stats.count_published(latency)
    stats.count_received()
    stats.count_dropped('bad_encoding')
    stats.count_received()
    stats.count_dropped('bad_encoding')
    stats.count_received()
    stats.count_dropped('size_mismatch')
    stats.count_skipped()
    stats.count_event('camera_info_rejected')
    snap = stats.snapshot()
    assert snap['events'] == {'camera_info_rejected': 1}
    assert snap['received'] == 103
    assert snap['published'] == 100
    assert snap['skipped'] == 1
    assert snap['dropped'] == 3
    assert snap['dropped_by_reason'] == {'bad_encoding': 2, 'size_mismatch': 1}
    expected = np.percentile(latencies * 1e3, [50, 99])
    assert snap['latency_ms']['p50'] == pytest.approx(expected[0])
    assert snap['latency_ms']['p99'] == pytest.approx(expected[1])
    assert snap['latency_ms']['max'] == pytest.approx(100.0)
    assert snap['latency_ms']['samples'] == 100
    json.dumps(snap)  # stats.json and KeyValues need plain types


def test_latency_window_keeps_only_recent_frames():
    stats = FrameStatistics(latency_window=10, clock=FakeClock())
    for _ in range(50):
        stats.count_published(1.0)
    for _ in range(10):
        stats.count_published(0.002)
    snap = stats.snapshot()
    assert snap['latency_ms']['samples'] == 10
    assert snap['latency_ms']['p99'] == pytest.approx(2.0)


def test_no_latency_before_the_first_output():
    snap = FrameStatistics().snapshot()
    assert snap['latency_ms'] == {'p50': None, 'p99': None, 'max': None, 'samples': 0}
    assert 'no output yet' in summary(snap)


def test_rates_over_the_window():
    clock = FakeClock()
    stats = FrameStatistics(rate_window=2.0, clock=clock)
    for _ in range(60):  # 30 Hz for 2 s
        clock.now += 1 / 30
        stats.count_received()
        if stats.received % 2:
            stats.count_published(0.001)
    snap = stats.snapshot()
    assert snap['input_rate_hz'] == pytest.approx(30, rel=0.05)
    assert snap['output_rate_hz'] == pytest.approx(15, rel=0.05)
    clock.now += 10  # input stopped
    assert stats.snapshot()['input_rate_hz'] == 0.0


def test_assess_levels():
    clock = FakeClock()
    stats = FrameStatistics(clock=clock)
    first = stats.snapshot()
    assert assess(None, first)[0] == STALE
    stats.count_received()
    stats.count_published(0.001)
    second = stats.snapshot()
    assert assess(first, second)[0] == OK
    stats.count_received()
    stats.count_dropped('bad_step')
    third = stats.snapshot()
    level, message = assess(second, third)
    assert level == WARN and 'bad_step: 1' in message and '1 of 1' in message
    stats.count_received()
    stats.count_published(0.001)
    assert assess(third, stats.snapshot())[0] == OK  # old drops do not keep it in WARN
    assert assess(stats.snapshot(), stats.snapshot())[0] == STALE


def test_expected_drops_do_not_warn_but_others_still_do():
    stats = FrameStatistics(clock=FakeClock())
    before = stats.snapshot()
    for _ in range(3):
        stats.count_received()
        stats.count_dropped('busy')
    rate_limited = stats.snapshot()
    assert assess(before, rate_limited, expected_drops=('busy',))[0] == OK
    assert assess(before, rate_limited)[0] == WARN
    stats.count_received()
    stats.count_dropped('bad_frame')
    level, message = assess(rate_limited, stats.snapshot(), expected_drops=('busy',))
    assert level == WARN and 'bad_frame: 1' in message and 'busy' not in message


def test_flatten_and_status_message():
    from diagnostic_msgs.msg import DiagnosticStatus
    stats = FrameStatistics()
    stats.count_received()
    stats.count_published(0.0015)
    stats.count_dropped('x')
    snap = stats.snapshot()
    flat = flatten(snap)
    assert flat['latency_ms.p50'] == pytest.approx(1.5)
    assert flat['dropped_by_reason.x'] == 1
    status = diagnostic_status('pipeline: frames', 'camera', WARN, 'msg', snap)
    assert status.level == DiagnosticStatus.WARN
    values = {kv.key: kv.value for kv in status.values}
    assert values['latency_ms.p50'] == '1.500'
    assert values['received'] == '1'


@pytest.mark.ros
def test_reporter_publishes_on_diagnostics(rclpy_context):
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from rclpy.node import Node

    from ros_helpers import Collector, spinning, wait_until

    node = Node('diagnostics_source', context=rclpy_context)
    listener = Node('diagnostics_listener', context=rclpy_context)
    received = Collector()
    listener.create_subscription(DiagnosticArray, '/diagnostics', received, 10)
    stats = FrameStatistics()
    for _ in range(5):
        stats.count_received()
        stats.count_published(0.002)
    reporter = DiagnosticsReporter(node, stats, hardware_id='cam', period=0.1)
    with spinning(rclpy_context, node, listener):
        assert wait_until(lambda: len(received) >= 2, timeout=20)
    first = received.messages[0].status[0]
    assert first.name == 'diagnostics_source: frames'
    assert first.hardware_id == 'cam'
    assert first.level == DiagnosticStatus.OK
    values = {kv.key: kv.value for kv in first.values}
    assert values['published'] == '5'
    assert float(values['latency_ms.p50']) == pytest.approx(2.0)
    assert received.messages[-1].status[0].level == DiagnosticStatus.STALE  # no new input
    assert reporter.name.endswith(': frames')


def test_stage_latencies_are_reported_beside_the_main_latency():
    stats = FrameStatistics()
    stats.count_published(0.002)
    stats.record_latency('bev', 0.005)
    stats.record_latency('bev', 0.007)
    snap = stats.snapshot()
    assert snap['latency_ms']['samples'] == 1
    assert snap['bev_latency_ms']['samples'] == 2
    assert snap['bev_latency_ms']['p50'] == pytest.approx(6.0)
    assert flatten(snap)['bev_latency_ms.max'] == pytest.approx(7.0)
