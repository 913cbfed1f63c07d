"""Assigning ``uint8[]`` message fields (``msg.data``) without rclpy's slow paths.

rclpy copies a numpy array or a memoryview assigned to a ``uint8[]`` field element by element
(~300 ms for a VGA cloud); ``bytes`` and ``array('B')`` are copied with memcpy (< 1 ms). Every
message this package publishes goes through :func:`set_data` or :class:`MessageBuffer`.
Receiving is zero-copy: ``np.frombuffer(msg.data, ...)``.
"""
from array import array

import numpy as np


def set_data(msg, buffer):
    """Assign a bytes-like ``buffer`` to ``msg.data`` through the fast path.

    ``bytes`` and ``array('B')`` are assigned as they are; anything else exporting the buffer
    protocol (numpy array, memoryview, bytearray) is first copied into an ``array('B')``.
    """
    if isinstance(buffer, (bytes, array)):
        msg.data = buffer
        return
    fast = array('B')
    fast.frombytes(memoryview(buffer).cast('B'))
    msg.data = fast


class MessageBuffer:
    """A byte buffer reused across frames for one output topic.

    A kernel writes into :meth:`view`; :meth:`assign` then stores the bytes in ``msg.data``.
    rclpy's ``data`` setter always copies (``array('B', value)``): from this buffer's own
    ``array('B')`` that is one memcpy, from any other buffer :func:`set_data` needs two. So when
    the output fills the whole view (organized clouds, images) a frame costs one copy.
    """

    def __init__(self):
        self._array = array('B')
        self._view = np.frombuffer(self._array, dtype=np.uint8)

    def view(self, nbytes):
        """A writable 1-D uint8 view of ``nbytes`` bytes (reallocated only when the size
        changes; the contents are undefined)."""
        nbytes = int(nbytes)
        if nbytes != len(self._array):
            self._view = None  # release the export before replacing the array
            self._array = array('B', bytes(nbytes))
            self._view = np.frombuffer(self._array, dtype=np.uint8)
        return self._view

    def assign(self, msg, data):
        """``msg.data = data`` through the cheapest path: one copy when ``data`` is exactly the
        current view, :func:`set_data` otherwise."""
        view = self._view
        if (isinstance(data, np.ndarray) and data.size == view.size and data.size and
                data.__array_interface__['data'][0] == view.__array_interface__['data'][0]):
            msg.data = self._array
        else:
            set_data(msg, data)
