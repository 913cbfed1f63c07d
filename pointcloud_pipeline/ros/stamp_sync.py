"""Match messages of two or more streams (e.g. depth, colour and intensity images) by their
header stamps.

A small, bounded replacement for ``message_filters`` (not installable from PyPI), without any
executor dependency: call :meth:`StampSynchronizer.add` from subscription callbacks; a matched
set (one message per stream) is returned.

Matching: an arriving message is matched with, in every other stream, the queued message whose
stamp is closest to its own, if each of those differences is at most ``slop`` seconds
(``slop=0``: exact stamps only; with more than two streams two partners may thus differ by up
to ``2 * slop``). All of them are then removed. Messages wait in bounded per-stream queues: when
a queue is full its oldest-stamped message is dropped and counted as unmatched; with ``max_age``
a message is also dropped once the newest stamp seen on any stream is more than ``max_age``
seconds newer (its partner is presumed lost). Arrival order does not matter within those bounds.

Stamps that jump back (``ros2 bag play --loop``, a simulator reset, a replay that loops without
restamping, or after one message with a bogus future stamp): a message whose stamp is more than
``jump_back`` seconds older than the newest stamp seen (default :data:`JUMP_BACK_SECONDS` or
``2 * max_age``, whichever is larger) starts a new timeline: the synchroniser resets (queued
messages are dropped and counted as unmatched, the newest stamp forgotten), counts it in
``resets`` and then handles that message normally. Without this, every later message would be
dropped as too old for good. :meth:`reset` does the same on demand (e.g. when ROS time jumps
back). A message only a little late (older than ``newest - max_age`` but within ``jump_back``)
is still dropped as unmatched.

Matching is greedy (the best partners already queued, no waiting for possibly closer ones),
which gives the lowest latency; with a ``slop`` below half the frame period it is also optimal.
"""
import threading
from typing import Any, NamedTuple

NS_PER_SECOND = 1_000_000_000
JUMP_BACK_SECONDS = 1.0  # smallest stamp jump back, seconds, that resets the synchroniser


def stamp_to_ns(stamp):
    """Nanoseconds of a ``builtin_interfaces/Time``-like object (``sec``, ``nanosec``)."""
    return int(stamp.sec) * NS_PER_SECOND + int(stamp.nanosec)


class _Pending(NamedTuple):
    stamp_ns: int
    message: Any


class StampSynchronizer:
    """Bounded synchroniser of two or more streams by stamp, exact (``slop=0``) or approximate.

    streams: names of the streams (at least two, distinct), e.g. ``('depth', 'color')``;
        matched sets are returned in this order.
    slop: largest stamp difference of a pair, seconds (>= 0).
    queue_size: messages kept per stream while waiting for a partner (>= 1).
    max_age: seconds; drop a waiting message once a stamp this much newer has been seen on
        either stream (None: only the queue bound drops).
    jump_back: seconds; a stamp this much older than the newest seen resets the synchroniser
        (None: ``max(JUMP_BACK_SECONDS, 2 * max_age)``, following ``max_age`` changes).
    Thread-safe. ``matched``, ``unmatched`` (per stream) and ``resets`` count what happened.
    """

    def __init__(self, streams=('depth', 'color'), slop=0.0, queue_size=10, max_age=None,
                 jump_back=None):
        streams = tuple(streams)
        if len(streams) < 2 or len(set(streams)) != len(streams):
            raise ValueError(f'streams must be two or more distinct names, got {streams!r}')
        if not slop >= 0.0:  # also rejects NaN
            raise ValueError(f'slop must be >= 0 seconds, got {slop!r}')
        if int(queue_size) < 1:
            raise ValueError(f'queue_size must be >= 1, got {queue_size!r}')
        if max_age is not None and not max_age > 0.0:
            raise ValueError(f'max_age must be > 0 seconds or None, got {max_age!r}')
        if jump_back is not None and not jump_back > 0.0:
            raise ValueError(f'jump_back must be > 0 seconds or None, got {jump_back!r}')
        self.streams = streams
        self.queue_size = int(queue_size)
        self._slop_ns = round(slop * NS_PER_SECOND)
        self._max_age_ns = None if max_age is None else round(max_age * NS_PER_SECOND)
        self._jump_back_ns = None if jump_back is None else round(jump_back * NS_PER_SECOND)
        self._queues = {name: [] for name in streams}
        self._newest_ns = None
        self._lock = threading.Lock()
        self.matched = 0
        self.unmatched = {name: 0 for name in streams}
        self.resets = 0

    @property
    def slop(self):
        """Largest stamp difference of a pair, seconds."""
        return self._slop_ns / NS_PER_SECOND

    @slop.setter
    def slop(self, seconds):
        if not seconds >= 0.0:
            raise ValueError(f'slop must be >= 0 seconds, got {seconds!r}')
        with self._lock:
            self._slop_ns = round(seconds * NS_PER_SECOND)

    @property
    def max_age(self):
        """Seconds after which a waiting message is dropped (None: only the queue bound)."""
        return None if self._max_age_ns is None else self._max_age_ns / NS_PER_SECOND

    @max_age.setter
    def max_age(self, seconds):
        if seconds is not None and not seconds > 0.0:
            raise ValueError(f'max_age must be > 0 seconds or None, got {seconds!r}')
        with self._lock:
            self._max_age_ns = None if seconds is None else round(seconds * NS_PER_SECOND)

    @property
    def jump_back(self):
        """Seconds a stamp may lie behind the newest before the synchroniser resets."""
        return self._reset_threshold_ns() / NS_PER_SECOND

    def _reset_threshold_ns(self):
        if self._jump_back_ns is not None:
            return self._jump_back_ns
        threshold = round(JUMP_BACK_SECONDS * NS_PER_SECOND)
        return threshold if self._max_age_ns is None else max(threshold, 2 * self._max_age_ns)

    def reset(self):
        """Start a new timeline: drop the queued messages (counted as unmatched) and forget the
        newest stamp; counted in ``resets``."""
        with self._lock:
            self._reset()

    def _reset(self):
        for name, queue in self._queues.items():
            self.unmatched[name] += len(queue)
            queue.clear()
        self._newest_ns = None
        self.resets += 1

    def add(self, stream, stamp, message):
        """Offer ``message`` of ``stream`` with ``stamp`` (a ``Time`` message or int nanoseconds).

        Returns the matched set, one message per stream in :attr:`streams` order (a pair for two
        streams), or None when the message now waits for its partners (or was dropped as too
        old). A stamp more than :attr:`jump_back` seconds behind the newest first resets the
        synchroniser.
        """
        if stream not in self._queues:
            raise ValueError(f'unknown stream {stream!r} (expected one of {self.streams})')
        stamp_ns = stamp if isinstance(stamp, int) else stamp_to_ns(stamp)
        with self._lock:
            if (self._newest_ns is not None and
                    stamp_ns < self._newest_ns - self._reset_threshold_ns()):
                self._reset()  # the stamps jumped back: a new timeline starts here
            if self._newest_ns is None or stamp_ns > self._newest_ns:
                self._newest_ns = stamp_ns
            self._expire()
            if self._max_age_ns is not None and stamp_ns < self._newest_ns - self._max_age_ns:
                self.unmatched[stream] += 1  # too late: every possible partner has expired
                return None
            partners = {}
            for other in self.streams:
                if other != stream:
                    index = self._closest(self._queues[other], stamp_ns)
                    if index is None:
                        break
                    partners[other] = index
            else:
                matched = tuple(message if name == stream else
                                self._queues[name].pop(partners[name]).message
                                for name in self.streams)
                self.matched += 1
                return matched
            queue = self._queues[stream]
            queue.append(_Pending(stamp_ns, message))
            if len(queue) > self.queue_size:
                oldest = min(range(len(queue)), key=lambda i: queue[i].stamp_ns)
                del queue[oldest]
                self.unmatched[stream] += 1
            return None

    def _closest(self, queue, stamp_ns):
        """Index of the queued message closest to ``stamp_ns`` within the slop, or None."""
        best = None
        for index, pending in enumerate(queue):
            gap = abs(pending.stamp_ns - stamp_ns)
            if gap <= self._slop_ns and (best is None or gap < best[0]):
                best = (gap, index)
        return None if best is None else best[1]

    def _expire(self):
        if self._max_age_ns is None:
            return
        limit = self._newest_ns - self._max_age_ns
        for name, queue in self._queues.items():
            kept = [pending for pending in queue if pending.stamp_ns >= limit]
            self.unmatched[name] += len(queue) - len(kept)
            queue[:] = kept

    def pending(self):
        """Number of messages waiting for a partner, per stream."""
        with self._lock:
            return {name: len(queue) for name, queue in self._queues.items()}
