"""Assigning ``uint8[]`` message fields (``msg.data``) without rclpy's slow paths.

rclpy copies a numpy array or a memoryview assigned to a ``uint8[]`` field element by element
(~300 ms for a VGA cloud); ``bytes`` and ``array('B')`` are copied with memcpy (< 1 ms). Every
message this package publishes goes through :func:`set_data` or :class:`MessageBuffer`.
Receiving is zero-copy: ``np.frombuffer(msg.data, ...)``.

With ``ROS_PYTHON_CHECK_FIELDS=1`` (read when a message module is imported; or a message built
with ``check_fields=True``) the setter behaves differently: it stores an ``array('B')`` itself,
without a copy, checks ``bytes`` element by element (~270 ms per VGA cloud) and rejects numpy
arrays. Both functions here give the message an ``array('B')`` of its own in either mode, at
the cost of one memcpy.
"""
from array import array

import numpy as np


def _checks_fields(msg):
    """True when ``msg`` was built with rclpy's field checks (ROS_PYTHON_CHECK_FIELDS=1)."""
    return bool(getattr(msg, '_check_fields', False))


def _store(msg, fast, owned):
    """``msg.data = fast`` (an ``array('B')``) so that ``msg.data`` is never ``fast`` unless
    ``owned`` (a fresh copy made for this message)."""
    msg.data = fast
    if not owned and msg.data is fast:  # stored, not copied (check_fields mode)
        msg.data = array('B', fast)  # memcpy


def set_data(msg, buffer):
    """Assign a copy of the bytes-like ``buffer`` to ``msg.data`` through the fast path.

    ``bytes`` and ``array('B')`` are handed to the setter (which copies them with memcpy; with
    field checks on, ``bytes`` become an ``array('B')`` first and an ``array('B')`` is copied
    here); anything else exporting the buffer protocol (numpy array, memoryview, bytearray, an
    array of another type code) is first copied into an ``array('B')``.
    """
    if isinstance(buffer, array) and buffer.typecode == 'B':
        _store(msg, buffer, owned=False)
        return
    if isinstance(buffer, bytes) and not _checks_fields(msg):
        msg.data = buffer
        return
    fast = array('B')
    fast.frombytes(memoryview(buffer).cast('B'))
    _store(msg, fast, owned=True)


class MessageBuffer:
    """A byte buffer reused across frames for one output topic.

    A kernel writes into :meth:`view`; :meth:`assign` then stores the bytes in ``msg.data``.
    rclpy's ``data`` setter copies an ``array('B')`` with one memcpy (and stores it without a
    copy when field checks are on: :meth:`assign` then copies it itself), from any other
    buffer :func:`set_data` needs two. So when the output fills the whole view (organized
    clouds, images) a frame costs one copy, and the message never shares this buffer.
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
        current view, :func:`set_data` otherwise. ``msg.data`` never aliases this buffer."""
        view = self._view
        if (isinstance(data, np.ndarray) and data.size == view.size and data.size and
                data.__array_interface__['data'][0] == view.__array_interface__['data'][0]):
            _store(msg, self._array, owned=False)
        else:
            set_data(msg, data)
