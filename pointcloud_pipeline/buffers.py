"""Caller-provided output buffers (``out=``) of the kernels: one check, one set of messages."""
import numpy as np


def writable_bytes(out, nbytes, *, exact=False, what='output'):
    """The first ``nbytes`` of ``out`` as a 1-D uint8 numpy view (no copy).

    out: a writable, contiguous buffer-protocol object (numpy array, bytearray, array('B'),
        memoryview); any element type.
    exact: require exactly ``nbytes`` (else at least ``nbytes``).
    what: the output's name in the messages ('cloud', 'image').
    Raises ValueError saying what is wrong (not a buffer, read-only, not contiguous, size).
    """
    try:
        view = memoryview(out)
    except TypeError:
        raise ValueError(f'out must be a writable buffer (numpy array, bytearray, '
                         f"array('B')), got {type(out).__name__}") from None
    if view.readonly:
        raise ValueError(f'out buffer ({type(out).__name__}) is read-only')
    if not view.c_contiguous:
        raise ValueError('out buffer must be contiguous')
    if exact and view.nbytes != nbytes:
        raise ValueError(f'out buffer has {view.nbytes} bytes, the {what} needs exactly {nbytes}')
    if view.nbytes < nbytes:
        raise ValueError(f'out buffer too small: {view.nbytes} bytes, the {what} needs {nbytes}')
    return np.frombuffer(view.cast('B') if view.format != 'B' or view.ndim != 1 else view,
                         dtype=np.uint8, count=nbytes)
