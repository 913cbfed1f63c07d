"""``sensor_msgs/CompressedImage`` -> numpy for the nodes: image_transport's topic names and the
decoders of :mod:`..compressed_images`, with their errors as :class:`.message_checks.FrameError`
drop reasons.

image_transport names a transport's topic ``<base topic>/<transport>`` after resolving the base
topic (namespace and remapping applied to the base topic: ``image_transport/src/subscriber.cpp``
resolves it, ``simple_subscriber_plugin.hpp`` appends ``/`` + the transport name), e.g.
``/camera/depth/image_rect_raw/compressedDepth`` for the base ``depth/image_rect`` remapped
to ``/camera/depth/image_rect_raw``.
"""
from ..compressed_images import CompressedImageError
from .message_checks import FrameError

DEPTH_TRANSPORTS = ('raw', 'compressedDepth')
COLOR_TRANSPORTS = ('raw', 'compressed')


def transport_topic(node, base_topic, transport):
    """The topic a ``transport`` subscriber of ``base_topic`` uses (``raw``: the base topic),
    fully qualified, as image_transport builds it."""
    if transport == 'raw':
        return base_topic
    return f'{node.resolve_topic_name(base_topic)}/{transport}'


def compressed_depth_pixels(msg, decoder, max_bytes):
    """Depth of a compressedDepth ``msg`` (2-D uint16 units or float32 metres; a buffer of
    ``decoder``, a :class:`..compressed_images.CompressedDepthDecoder`, valid until its next
    call). Reasons: bad_compressed_depth (format string, ConfigHeader, PNG/RVL payload),
    bad_encoding, too_large."""
    try:
        depth, _ = decoder.decode(msg.data, msg.format, max_bytes)
    except CompressedImageError as error:
        reason = error.reason if error.reason in ('bad_encoding', 'too_large') else \
            'bad_compressed_depth'
        raise FrameError(reason, f'compressedDepth: {error}') from None
    return depth


def compressed_color_pixels(msg, decoder, max_bytes, prefix='rgb_'):
    """(pixels, encoding) of a ``compressed`` colour ``msg`` through ``decoder`` (a
    :class:`..compressed_images.CompressedImageDecoder`). Reasons, after ``prefix``:
    bad_compressed (format, payload), bad_encoding, too_large."""
    try:
        return decoder.decode(msg.data, msg.format, max_bytes)
    except CompressedImageError as error:
        reason = error.reason if error.reason in ('bad_encoding', 'too_large') else \
            'bad_compressed'
        raise FrameError(prefix + reason, f'{prefix}compressed: {error}') from None
