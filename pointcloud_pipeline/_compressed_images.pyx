# cython: language_level=3
"""Hot loop of pointcloud_pipeline.compressed_images: the RVL depth decoder, GIL released.

RVL (Andrew D. Wilson, "Fast Lossless Depth Image Compression", SIGCHI'17), as
compressed_depth_image_transport's ``rvl_codec.cpp`` writes it: 32-bit little-endian words
holding 4-bit nibbles from the most significant one down; a nibble is 3 value bits (least
significant group first) and a continuation bit (0x8). The stream alternates (count of zero
pixels, count of non-zero pixels, then each non-zero pixel as the zigzag-coded difference to
the previous non-zero pixel). The loop is the plugin's ``DecompressRVL`` / ``DecodeVLE``, with
the bounds checks the plugin leaves out: a read past the payload, a run longer than the
pixels left, or a value of more than 10 nibbles (the plugin's shift would be undefined) stop
with an error code instead of reading or writing out of bounds. Sequential by nature (every
value's position depends on the ones before it): one thread, the same bytes on any machine.
"""
from libc.stdint cimport int32_t, uint8_t, uint16_t, uint32_t

# status codes (the public module turns them into messages)
cdef enum:
    OK = 0
    OVERRUN = 1         # the stream ends before every pixel is decoded
    RUN_TOO_LONG = 2    # a run of zeros or non-zeros longer than the pixels left
    VALUE_TOO_LONG = 3  # a variable-length value of more than 10 nibbles

cdef struct Reader:
    const uint8_t* data
    Py_ssize_t words   # whole 32-bit words in the payload
    Py_ssize_t next    # index of the next word to load
    uint32_t word      # the current word, shifted so its next nibble is on top
    int nibbles        # nibbles left in the current word
    int status


cdef inline uint32_t load_word(const uint8_t* p) noexcept nogil:
    """A little-endian uint32 (the plugin stores native int words; ROS platforms are
    little-endian)."""
    return (<uint32_t>p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) |
            (<uint32_t>p[3] << 24))


cdef inline int32_t decode_vle(Reader* r) noexcept nogil:
    """The plugin's DecodeVLE: value |= (nibble << 1) >> bits, bits = 29, 26, ..., -1."""
    cdef uint32_t nibble
    cdef int32_t value = 0
    cdef int bits = 29
    while True:
        if r.nibbles == 0:
            if r.next >= r.words:
                r.status = OVERRUN
                return 0
            r.word = load_word(r.data + 4 * r.next)
            r.next += 1
            r.nibbles = 8
        nibble = r.word & 0xf0000000u
        value |= <int32_t>((nibble << 1) >> bits)
        r.word <<= 4
        r.nibbles -= 1
        bits -= 3
        if not (nibble & 0x80000000u):
            return value
        if bits < 0:  # a continuation after the 10th nibble: the plugin's shift is undefined
            r.status = VALUE_TOO_LONG
            return 0


def decode_rvl(const uint8_t[::1] payload, uint16_t[::1] out):
    """Decode the RVL words in ``payload`` (after the 8-byte size) into ``out`` (one uint16 per
    pixel). Returns a status code: 0 ok, 1 overrun, 2 run too long, 3 value too long."""
    cdef Reader r
    r.data = &payload[0] if payload.shape[0] else NULL
    r.words = payload.shape[0] // 4
    r.next = 0
    r.word = 0
    r.nibbles = 0
    r.status = OK
    cdef Py_ssize_t remaining = out.shape[0], position = 0
    cdef int32_t zeros, nonzeros, positive, delta
    cdef uint16_t current, previous = 0
    with nogil:
        while remaining:
            zeros = decode_vle(&r)  # number of zeros
            if r.status:
                break
            if zeros > remaining:
                r.status = RUN_TOO_LONG
                break
            remaining -= zeros
            while zeros:
                out[position] = 0
                position += 1
                zeros -= 1
            nonzeros = decode_vle(&r)  # number of non-zeros
            if r.status:
                break
            if nonzeros > remaining:
                r.status = RUN_TOO_LONG
                break
            remaining -= nonzeros
            while nonzeros:
                positive = decode_vle(&r)  # zigzag-coded difference to the previous value
                if r.status:
                    break
                delta = (positive >> 1) ^ -(positive & 1)
                current = <uint16_t>(previous + delta)
                out[position] = current
                position += 1
                previous = current
                nonzeros -= 1
            if r.status:
                break
    return r.status
