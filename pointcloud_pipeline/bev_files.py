"""BEV images as files: PNG (fpng when installed, else OpenCV's libpng), npy and npz.

Formats (:data:`FORMATS`; :data:`FORMAT_DTYPES`: the dtype of the image each one stores)
    png: the uint8 image of :func:`pointcloud_pipeline.bev.bev_image` (rows x cols x 3, bgr8)
        as an 8-bit RGB PNG, lossless: red = density, green = height, blue = intensity, the
        picture ``cv2.imwrite`` writes for that array. ``cv2.imread`` gives the bgr8 array back;
        Pillow and other readers give RGB, i.e. (density, height, intensity).
    npy: the float32 image (``bev_image(..., dtype=np.float32)``) in NumPy's .npy format:
        rows x cols x 3 (H x W x C, C-order), channels in ``bev.CHANNELS`` order (intensity,
        height, density), each the channel value in [0, 1] itself (a PNG stores
        ``floor(255 * value + 0.5)``). ``np.load(path)`` (``mmap_mode='r'`` works); C x H x W:
        ``.transpose(2, 0, 1)``. 30.7 MB for 1600 x 1600 cells, 4.4 MB for Complex-YOLO's grid.
    npz: a compressed .npz (``np.load(path)[name]``) of :data:`NPZ_ARRAYS`: ``bev``, the same
        float32 array as npy; ``channels``, the channel names; the grid it was rendered on,
        float64: ``x_range``, ``y_range``, ``z_range`` and ``intensity_range`` (min, max) and
        ``resolution`` (metres; :func:`read_npz` rebuilds the BevGrid). Compressed, measured
        here on the 1600 x 1600 BEVs of two KITTI scans: 0.23 and 0.37 MB, written in 93-101 ms
        (uncompressed: 30.7 MB in 35 ms; npy: 25 ms).

PNG encoders (:data:`PNG_ENCODERS`; ``encoder=None``: :func:`default_png_encoder`)
    'fpng': the ``fpng`` package (pip install fpng==0.1.0), a standard PNG (deflate, one IDAT
        stream) that every reader opens. On the 1600 x 1600 BEVs of two KITTI scans, measured
        here: 3.5-4 ms against 12-13 ms for 'cv2', files 2.1-2.2x as large (200 and 319 kB
        against 91 and 151 kB). It allocates and zero-fills image-sized buffers on every call,
        which glibc returns to the system on free: call
        :func:`pointcloud_pipeline.memory.keep_large_buffers` once per process, or each call
        page-faults them in again (11 ms). It holds the GIL while it
        encodes: threads do not encode in parallel, processes do.
    'cv2': OpenCV's libpng with no row filter and run-length zlib (:data:`CV2_PNG_PARAMS`, the
        fastest and smallest libpng setting for sparse BEVs); the fallback where fpng is not
        installed (on a ROS install: fpng has no rosdep key). Releases the GIL.

The writers write the ``path`` they are given as it is: no suffix appended, no temporary file,
no fsync. The batch tool gives them a temporary path and renames it (pointcloud_pipeline.files).
"""
import threading

import cv2
import numpy as np

from .bev import CHANNELS, BevGrid

try:
    import fpng
except ImportError:  # optional: the cv2 encoder is the fallback
    fpng = None

FORMATS = ('png', 'npy', 'npz')
FORMAT_DTYPES = {'png': np.dtype(np.uint8), 'npy': np.dtype(np.float32),
                 'npz': np.dtype(np.float32)}
PNG_ENCODERS = ('fpng', 'cv2')
FPNG_INSTALL = 'pip install fpng==0.1.0'
CV2_PNG_PARAMS = (cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE,
                  cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE)
GRID_ARRAYS = ('x_range', 'y_range', 'z_range', 'resolution', 'intensity_range')
NPZ_ARRAYS = ('bev', 'channels') + GRID_ARRAYS

_scratch = threading.local()


def fpng_installed():
    """Whether the fpng package can be imported here."""
    return fpng is not None


def default_png_encoder():
    """'fpng' where it is installed, else 'cv2'."""
    return 'fpng' if fpng_installed() else 'cv2'


def check_png_encoder(encoder=None):
    """The encoder name to use: ``encoder``, or the default for None; ValueError for an unknown
    name or for 'fpng' where it is not installed (saying how to install it)."""
    if encoder is None:
        return default_png_encoder()
    if encoder not in PNG_ENCODERS:
        raise ValueError(f'PNG encoder must be one of {", ".join(PNG_ENCODERS)}, '
                         f'got {encoder!r}')
    if encoder == 'fpng' and not fpng_installed():
        raise ValueError(f'the fpng PNG encoder is not installed: {FPNG_INSTALL} '
                         '(or use the cv2 encoder)')
    return encoder


def check_format(file_format):
    """``file_format`` if it is one of :data:`FORMATS`, else ValueError."""
    if file_format not in FORMATS:
        raise ValueError(f'format must be one of {", ".join(FORMATS)}, got {file_format!r}')
    return file_format


def _check_image(image, dtype):
    if not isinstance(image, np.ndarray):
        raise ValueError(f'image must be a numpy array, got {type(image).__name__}')
    if image.dtype != dtype:
        raise ValueError(f'image must be {dtype}, got {image.dtype}')
    if image.ndim != 3 or image.shape[2] != len(CHANNELS) or not image.size:
        raise ValueError(f'image must be rows x cols x {len(CHANNELS)} and not empty, got '
                         f'shape {image.shape}')
    return image


def _rgb_copy(image):
    """The bgr8 ``image`` as RGB, in this thread's reused scratch array."""
    rgb = getattr(_scratch, 'rgb', None)
    if rgb is None or rgb.shape != image.shape:
        rgb = _scratch.rgb = np.empty(image.shape, np.uint8)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB, dst=rgb)


def encode_png(image, encoder=None):
    """PNG bytes of a rows x cols x 3 uint8 bgr8 image (see the module docstring); a bytes
    object (fpng) or a uint8 numpy array (cv2), either one a buffer to write. ValueError for
    another image or encoder, RuntimeError when the encoder fails."""
    _check_image(image, FORMAT_DTYPES['png'])
    encoder = check_png_encoder(encoder)
    if encoder == 'fpng':
        png = fpng.from_ndarray(_rgb_copy(image))
        if not png:  # fpng 0.1.0 returns no bytes instead of raising
            raise RuntimeError(f'fpng could not encode an image of shape {image.shape}')
        return png
    encoded, png = cv2.imencode('.png', np.ascontiguousarray(image), CV2_PNG_PARAMS)
    if not encoded:
        raise RuntimeError(f'OpenCV could not encode an image of shape {image.shape} as PNG')
    return png


def write_png(path, image, encoder=None):
    """Write a rows x cols x 3 uint8 bgr8 image to ``path`` as PNG (:func:`encode_png`)."""
    png = encode_png(image, encoder)
    with open(path, 'wb') as file:
        file.write(png)


def write_npy(path, image):
    """Write a rows x cols x 3 float32 BEV image to ``path`` in .npy format (exactly that
    name: ``np.save`` given a name appends .npy)."""
    _check_image(image, FORMAT_DTYPES['npy'])
    with open(path, 'wb') as file:
        np.save(file, image, allow_pickle=False)


def _check_grid(grid, image):
    if not isinstance(grid, BevGrid):
        raise ValueError(f'grid must be a BevGrid, got {type(grid).__name__}')
    if image.shape != grid.shape:
        raise ValueError(f'image has shape {image.shape}, but the grid makes {grid.shape}')
    return grid


def write_npz(path, image, grid):
    """Write a rows x cols x 3 float32 BEV image rendered on ``grid`` (a BevGrid) to ``path``
    as a compressed .npz of :data:`NPZ_ARRAYS` (exactly that name)."""
    _check_image(image, FORMAT_DTYPES['npz'])
    _check_grid(grid, image)
    arrays = {name: np.array(getattr(grid, name), np.float64) for name in GRID_ARRAYS}
    with open(path, 'wb') as file:
        np.savez_compressed(file, bev=image, channels=np.array(CHANNELS), **arrays)


def read_npz(path):
    """(float32 image, BevGrid) of a file that :func:`write_npz` wrote."""
    with np.load(path, allow_pickle=False) as arrays:
        grid = BevGrid(**{name: (float(arrays[name]) if name == 'resolution'
                                 else tuple(arrays[name].tolist()))
                          for name in GRID_ARRAYS})
        return arrays['bev'], grid


def write_bev(path, image, file_format='png', *, grid=None, encoder=None):
    """Write a BEV image to ``path`` in ``file_format`` (:data:`FORMATS`): png takes the uint8
    image, npy and npz the float32 one (:data:`FORMAT_DTYPES`); npz also its ``grid``;
    ``encoder``: the PNG encoder (png only). ValueError for a wrong image, format or grid."""
    check_format(file_format)
    if file_format == 'png':
        write_png(path, image, encoder)
    elif file_format == 'npy':
        write_npy(path, image)
    else:
        if grid is None:
            raise ValueError('the npz format needs the grid of the image (grid=)')
        write_npz(path, image, grid)
