"""Frame counters and latency percentiles for nodes, and their ``/diagnostics`` publication.

:class:`FrameStatistics` is pure Python (thread-safe, no ROS): frames received, published,
skipped (no subscriber) and dropped per reason, input/output rates, and the receive -> publish
latency percentiles over a window of recent frames. :class:`DiagnosticsReporter` is the thin ROS
part: it publishes a ``diagnostic_msgs/DiagnosticArray`` on ``/diagnostics`` periodically and
logs a summary line.
"""
import collections
import threading
import time

import numpy as np

OK, WARN, ERROR, STALE = 'OK', 'WARN', 'ERROR', 'STALE'


class FrameStatistics:
    """Counters and latency statistics of one node's frames.

    latency_window: number of most recent latencies the percentiles are computed over.
    rate_window: seconds over which the input and output rates are averaged.
    clock: monotonic time source in seconds (injectable for tests).
    """

    def __init__(self, latency_window=300, rate_window=5.0, clock=time.monotonic):
        if int(latency_window) < 1:
            raise ValueError(f'latency_window must be >= 1, got {latency_window!r}')
        if not rate_window > 0:
            raise ValueError(f'rate_window must be > 0 seconds, got {rate_window!r}')
        self.rate_window = float(rate_window)
        self._clock = clock
        self._lock = threading.Lock()
        self._latencies = collections.deque(maxlen=int(latency_window))
        self._stage_latencies = collections.defaultdict(
            lambda: collections.deque(maxlen=int(latency_window)))
        self._received_times = collections.deque(maxlen=100_000)
        self._published_times = collections.deque(maxlen=100_000)
        self._start = clock()
        self.received = 0
        self.published = 0
        self.skipped = 0
        self.dropped = collections.Counter()
        self.events = collections.Counter()

    def count_received(self):
        """One input frame arrived."""
        now = self._clock()
        with self._lock:
            self.received += 1
            self._received_times.append(now)

    def count_published(self, latency_seconds):
        """One output frame was published ``latency_seconds`` after its input arrived."""
        now = self._clock()
        with self._lock:
            self.published += 1
            self._published_times.append(now)
            self._latencies.append(float(latency_seconds))

    def record_latency(self, stage, latency_seconds):
        """Latency of one further output of a frame (e.g. ``'bev'`` after the cloud), reported
        as ``<stage>_latency_ms`` beside the main ``latency_ms``."""
        with self._lock:
            self._stage_latencies[stage].append(float(latency_seconds))

    def count_skipped(self):
        """One input frame was not converted because no one subscribes to the outputs."""
        with self._lock:
            self.skipped += 1

    def count_dropped(self, reason, count=1):
        """``count`` input frames were dropped because of ``reason`` (a short identifier)."""
        with self._lock:
            self.dropped[reason] += count

    def count_event(self, name, count=1):
        """Count something that is not a frame drop (e.g. a rejected camera_info, a colour
        image without a depth partner)."""
        with self._lock:
            self.events[name] += count

    def _rate(self, times, now):
        while times and times[0] < now - self.rate_window:
            times.popleft()
        elapsed = min(self.rate_window, now - self._start)
        return len(times) / elapsed if elapsed > 0 else 0.0

    def snapshot(self):
        """A plain dict of every statistic (JSON-serialisable); latencies in milliseconds,
        None until the first frame is published."""
        now = self._clock()
        with self._lock:
            series = {'latency_ms': list(self._latencies)}
            series.update((f'{stage}_latency_ms', list(values))
                          for stage, values in sorted(self._stage_latencies.items()))
            snapshot = {
                'received': self.received,
                'published': self.published,
                'skipped': self.skipped,
                'dropped': sum(self.dropped.values()),
                'dropped_by_reason': dict(sorted(self.dropped.items())),
                'events': dict(sorted(self.events.items())),
                'input_rate_hz': self._rate(self._received_times, now),
                'output_rate_hz': self._rate(self._published_times, now),
            }
        for name, values in series.items():
            snapshot[name] = _percentiles_ms(values)
        return snapshot


def _percentiles_ms(latencies_seconds):
    """p50, p99, max (milliseconds) and sample count; None values when there are none."""
    if not latencies_seconds:
        return {'p50': None, 'p99': None, 'max': None, 'samples': 0}
    latencies = np.array(latencies_seconds, dtype=np.float64) * 1e3
    p50, p99 = np.percentile(latencies, [50, 99])
    return {'p50': float(p50), 'p99': float(p99), 'max': float(latencies.max()),
            'samples': int(latencies.size)}


def assess(previous, current, expected_drops=()):
    """(level, message) for the period between two snapshots.

    STALE when no frame arrived in the period, WARN when frames were dropped in it (the reasons
    named), OK otherwise. expected_drops: reasons that are normal operation (e.g. a rate limit)
    and do not make the period WARN.
    """
    received = current['received'] - (previous['received'] if previous else 0)
    if received == 0:
        return STALE, 'no input frames'
    before = previous['dropped_by_reason'] if previous else {}
    new_drops = {reason: count - before.get(reason, 0)
                 for reason, count in current['dropped_by_reason'].items()
                 if count > before.get(reason, 0) and reason not in expected_drops}
    if new_drops:
        reasons = ', '.join(f'{reason}: {count}' for reason, count in new_drops.items())
        return WARN, f'{sum(new_drops.values())} of {received} frames dropped ({reasons})'
    return OK, summary(current)


def summary(snapshot):
    """One line: rates, latency percentiles and counts."""
    latency = snapshot['latency_ms']
    latency_text = ('no output yet' if latency['p50'] is None else
                    f"latency p50 {latency['p50']:.2f} ms p99 {latency['p99']:.2f} ms")
    return (f"in {snapshot['input_rate_hz']:.1f} Hz, out {snapshot['output_rate_hz']:.1f} Hz, "
            f"{latency_text}; received {snapshot['received']}, published "
            f"{snapshot['published']}, skipped {snapshot['skipped']}, "
            f"dropped {snapshot['dropped']}")


def flatten(snapshot, prefix=''):
    """``{'a': {'b': 1}}`` -> ``{'a.b': 1}`` (for key/value diagnostics)."""
    flat = {}
    for key, value in snapshot.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f'{prefix}{key}.'))
        else:
            flat[f'{prefix}{key}'] = value
    return flat


def diagnostic_status(name, hardware_id, level, message, snapshot):
    """A ``diagnostic_msgs/DiagnosticStatus`` holding every statistic as a key/value."""
    from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
    status = DiagnosticStatus()
    status.level = {OK: DiagnosticStatus.OK, WARN: DiagnosticStatus.WARN,
                    ERROR: DiagnosticStatus.ERROR, STALE: DiagnosticStatus.STALE}[level]
    status.name = name
    status.hardware_id = hardware_id
    status.message = message
    status.values = [KeyValue(key=key, value=_text(value))
                     for key, value in flatten(snapshot).items()]
    return status


def _text(value):
    if isinstance(value, float):
        return f'{value:.3f}'
    return '' if value is None else str(value)


class ReasonWarnings:
    """Warnings throttled separately per reason, so a flood of one kind of bad message does not
    hide another: one child logger per reason (rclpy throttles per logger and call site).

    logger: the node's logger; period: seconds between repeated warnings of one reason.
    """

    def __init__(self, logger, period):
        self._logger = logger
        self._children = {}
        self.period = period

    @property
    def period(self):
        return self._period

    @period.setter
    def period(self, seconds):
        self._period = float(seconds)
        self._children.clear()  # fresh throttle state for the new period

    def warn(self, reason, message):
        """Log ``message`` unless a warning of ``reason`` was logged less than ``period`` ago."""
        logger = self._children.get(reason)
        if logger is None:
            logger = self._children[reason] = self._logger.get_child(reason)
        logger.warning(message, throttle_duration_sec=self._period)


class DiagnosticsReporter:
    """Publish a node's :class:`FrameStatistics` on ``/diagnostics`` every ``period`` seconds
    and log the summary every ``log_period`` seconds (0 disables logging).

    name: the status name (diagnostic_updater style: ``'<node name>: <task>'``).
    hardware_id: e.g. the camera frame id.
    expected_drops: drop reasons that do not raise the level to WARN (see :func:`assess`).
    """

    TOPIC = '/diagnostics'

    def __init__(self, node, statistics, name=None, hardware_id='', period=1.0, log_period=10.0,
                 expected_drops=()):
        from diagnostic_msgs.msg import DiagnosticArray
        if not period > 0:
            raise ValueError(f'diagnostics period must be > 0 seconds, got {period!r}')
        self._node = node
        self.statistics = statistics
        self.name = name or f'{node.get_name()}: frames'
        self.hardware_id = hardware_id
        self.log_period = float(log_period)
        self.expected_drops = tuple(expected_drops)
        self._message_type = DiagnosticArray
        self._publisher = node.create_publisher(DiagnosticArray, self.TOPIC, 10)
        self._previous = None
        self._last_log = time.monotonic()
        self._timer = node.create_timer(float(period), self.publish)

    def publish(self):
        """Publish the current statistics now (also called by the timer)."""
        snapshot = self.statistics.snapshot()
        level, message = assess(self._previous, snapshot, self.expected_drops)
        self._previous = snapshot
        array = self._message_type()
        array.header.stamp = self._node.get_clock().now().to_msg()
        array.status = [diagnostic_status(self.name, self.hardware_id, level, message, snapshot)]
        self._publisher.publish(array)
        now = time.monotonic()
        if self.log_period > 0 and now - self._last_log >= self.log_period:
            self._last_log = now
            self._node.get_logger().info(summary(snapshot))
        return snapshot

    def destroy(self):
        self._node.destroy_timer(self._timer)
        self._node.destroy_publisher(self._publisher)
