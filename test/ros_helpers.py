"""Helpers for tests that run real rclpy nodes over DDS (on loopback, see conftest.py)."""
import contextlib
import threading
import time

from rclpy.executors import MultiThreadedExecutor


@contextlib.contextmanager
def spinning(context, *nodes):
    """Spin ``nodes`` in a background MultiThreadedExecutor for the duration of the block;
    the nodes are destroyed afterwards."""
    executor = MultiThreadedExecutor(context=context)
    for node in nodes:
        executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        yield executor
    finally:
        executor.shutdown()
        thread.join(timeout=5)
        for node in nodes:
            node.destroy_node()


def wait_until(predicate, timeout=10.0, interval=0.01):
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


class Collector:
    """Subscription callback that keeps every received message; thread-safe."""

    def __init__(self):
        self.messages = []
        self._lock = threading.Lock()

    def __call__(self, msg):
        with self._lock:
            self.messages.append(msg)

    def __len__(self):
        with self._lock:
            return len(self.messages)

    def wait_for(self, count=1, timeout=10.0):
        """Wait until ``count`` messages arrived; returns the messages received so far."""
        wait_until(lambda: len(self) >= count, timeout)
        with self._lock:
            return list(self.messages)


def wait_for_subscribers(publisher, count=1, timeout=10.0):
    """Wait until ``publisher`` has matched ``count`` subscriptions (DDS discovery)."""
    return wait_until(lambda: publisher.get_subscription_count() >= count, timeout)
