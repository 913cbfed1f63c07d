"""Helpers for tests that run real rclpy nodes over DDS (on loopback, see conftest.py)."""
import contextlib
import threading
import time

from rclpy.executors import SingleThreadedExecutor


@contextlib.contextmanager
def spinning(context, *nodes):
    """Spin each of ``nodes`` in a background thread of its own for the duration of the block,
    as if each ran in its own process (``rclpy.spin(node)``); the nodes are destroyed afterwards.
    """
    stop = threading.Event()
    executors = [SingleThreadedExecutor(context=context) for _ in nodes]

    def spin(executor):
        while not stop.is_set() and context.ok():
            executor.spin_once(timeout_sec=0.05)

    # Our own loop rather than executor.spin(): Executor.shutdown() destroys the executor's guard
    # condition without waiting for callbacks under way in another thread (rclpy 9.1.2), which
    # then raise InvalidHandle there. A SingleThreadedExecutor runs callbacks inside spin_once(),
    # so once the threads are joined nothing is in flight and shutdown is safe.
    threads = []
    for node, executor in zip(nodes, executors):
        executor.add_node(node)
        threads.append(threading.Thread(target=spin, args=(executor,), daemon=True,
                                        name=f'spin {node.get_name()}'))
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        for executor in executors:
            executor.shutdown()
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
