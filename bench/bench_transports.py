"""Decoding image_transport's compressed messages at VGA: compressedDepth (16UC1 / 32FC1, PNG /
RVL) and compressed colour (JPEG), through the public decoders the pipeline node uses
(``compressed_images.CompressedDepthDecoder`` / ``CompressedImageDecoder``, buffers reused),
against the memcpy floor of the decoded bytes and a plain OpenCV / numpy reference where one
exists: ``cv2.imdecode`` alone (PNG, JPEG: the decode the plugins do), plus the 32FC1
reconstruction written the plain numpy way (new arrays, ``np.where``). RVL has no numpy or
OpenCV counterpart (a sequential bit stream).

Frames: the real 7-Scenes frame-000000 (depth mm and its colour image), encoded here as the
plugins publish them with their default parameters (the test's independent encoder: PNG
level 3, 32FC1 quantised with depth_max 10 m and depth_quantization 100; JPEG quality 95).
"""
import os
from pathlib import Path

import cv2
import numpy as np

from pointcloud_pipeline.compressed_images import (CompressedDepthDecoder,
                                                   CompressedImageDecoder, parse_config_header)
from timing import median_seconds, memcpy_floor_seconds, ms, print_table


def real_frames():
    """7-Scenes frame-000000 (uint16 mm, BGR colour; 640 x 480) or None without the data."""
    configured = os.environ.get('POINTCLOUD_PIPELINE_DATA')
    repo = Path(__file__).resolve().parents[1]
    data = Path(configured) if configured else repo.parent / 'shared' / 'data'
    folder = data / 'rgbd' / '7scenes_tsdf_fusion'
    if not (folder / 'frame-000000.depth.png').is_file():
        return None
    return (cv2.imread(str(folder / 'frame-000000.depth.png'), cv2.IMREAD_UNCHANGED),
            cv2.imread(str(folder / 'frame-000000.color.jpg'), cv2.IMREAD_COLOR))


def numpy_reconstruction(data):
    """32FC1 from a PNG compressedDepth message, the plain way: imdecode, then numpy."""
    header, payload = parse_config_header(data)
    values = cv2.imdecode(payload, cv2.IMREAD_UNCHANGED)
    with np.errstate(divide='ignore'):
        metres = np.float32(header.depth_quant_a) / (values.astype(np.float32) -
                                                     np.float32(header.depth_quant_b))
    return np.where(values == 0, np.float32(np.nan), metres)


def main(quick=False):
    from test_compressed_images import compressed_depth  # the test's independent encoder
    frames = real_frames()
    if frames is None:
        print('\n## compressed transports: skipped (no 7-Scenes frame in ../shared/data)')
        return
    depth_mm, color_bgr = frames
    depth_metres = depth_mm.astype(np.float32) * np.float32(0.001)
    depth_metres[depth_mm == 0] = np.nan
    repeat = 7 if quick else 41
    depth_decoder, color_decoder = CompressedDepthDecoder(), CompressedImageDecoder()
    rows = []
    for label, depth, codec in (('16UC1 png', depth_mm, 'png'),
                                ('32FC1 png', depth_metres, 'png'),
                                ('16UC1 rvl', depth_mm, 'rvl'),
                                ('32FC1 rvl', depth_metres, 'rvl')):
        data, format = compressed_depth(depth, codec)
        decoded_bytes = depth.nbytes
        decode = median_seconds(lambda: depth_decoder.decode(data, format), repeat=repeat)
        reference, reference_name = None, '-'
        if codec == 'png':
            payload = np.frombuffer(data, np.uint8)[12:]
            if depth.dtype == np.uint16:
                reference_name = 'cv2.imdecode'
                reference = median_seconds(
                    lambda: cv2.imdecode(payload, cv2.IMREAD_UNCHANGED), repeat=repeat)
            else:
                reference_name = 'imdecode + numpy'
                reference = median_seconds(lambda: numpy_reconstruction(data), repeat=repeat)
        floor = memcpy_floor_seconds(decoded_bytes, repeat=repeat)
        rows.append([label, f'{len(data) / 1024:.0f}', ms(decode), reference_name,
                     ms(reference) if reference else '-', ms(floor), f'{decode / floor:.1f}',
                     f'{reference / decode:.2f}' if reference else '-'])
    ok, encoded = cv2.imencode('.jpg', color_bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    data = encoded.tobytes()
    payload = np.frombuffer(data, np.uint8)
    reference = median_seconds(lambda: cv2.imdecode(payload, cv2.IMREAD_UNCHANGED),
                               repeat=repeat)
    floor = memcpy_floor_seconds(color_bgr.nbytes, repeat=repeat)
    for format in ('bgr8; jpeg compressed bgr8', 'rgb8; jpeg compressed bgr8'):
        decode = median_seconds(lambda: color_decoder.decode(data, format), repeat=repeat)
        rows.append([f'JPEG -> {format[:4]}', f'{len(data) / 1024:.0f}', ms(decode),
                     'cv2.imdecode', ms(reference), ms(floor), f'{decode / floor:.1f}',
                     f'{reference / decode:.2f}'])
    print_table(f'compressed transports, decode of one 640x480 message (7-Scenes); ms = median '
                f'of {repeat}; memcpy = copying the decoded bytes',
                ['message', 'kB', 'decode', 'reference', 'ref_ms', 'memcpy', 'decode/memcpy',
                 'ref/decode'], rows)

