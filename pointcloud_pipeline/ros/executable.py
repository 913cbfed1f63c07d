"""What every node executable does around its node: malloc tuning, then the ROS 2 main() idiom.

:func:`run_node` is the ``main()`` of each node (ros2/demos style): tune malloc, ``rclpy.init``,
create the node, spin until Ctrl-C or an external shutdown, then destroy the node and
``rclpy.try_shutdown()``. A node that cannot start raises :class:`NodeStartupError` after
logging why; ``run_node`` then returns exit code 1 without a traceback.

:func:`pointcloud_pipeline.memory.keep_large_buffers` (glibc malloc tuning: freed
multi-megabyte message buffers stay mapped instead of page-faulting in every frame) is called by
:func:`run_node`, never at import.
"""
import signal
import threading

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

from ..memory import keep_large_buffers


class NodeStartupError(RuntimeError):
    """The node cannot start (parameters, model, device); the node has logged why."""


def spin_until_shutdown(node, executor):
    """The default ``spin`` of :func:`run_node`: serve callbacks until Ctrl-C or shutdown."""
    executor.spin()


def run_node(node_class, args=None, spin=spin_until_shutdown):
    """Run ``node_class()`` in this process until Ctrl-C or shutdown; returns the exit code:
    what ``spin(node, executor)`` returns when that is an int (a node that ends by itself),
    else 0; 1 when the node raised :class:`NodeStartupError`.

    The executor exists before the node, so a SIGINT/SIGTERM at any moment (rclpy's handler then
    shuts the context down, e.g. ``ros2 launch`` stopping a node that is still starting) ends
    the run cleanly instead of failing to create it on a context already shut down.
    """
    keep_large_buffers()
    rclpy.init(args=args)
    node = None
    code = 0
    try:
        executor = SingleThreadedExecutor()
        node = node_class()
        executor.add_node(node)
        result = spin(node, executor)
        if isinstance(result, int):
            code = result
    except NodeStartupError:
        code = 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():
            raise
        # the context was shut down by a signal while the node was being created: a stop
    finally:
        if threading.current_thread() is threading.main_thread():
            # Ctrl-C in a terminal signals every process of the group and ros2 launch forwards
            # it once more: a second SIGINT must not abort the cleanup with a traceback. The
            # process is ending (launch escalates to SIGTERM if it does not).
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return code
