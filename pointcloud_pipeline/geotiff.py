"""GeoTIFF writing: creation profiles, a window writer shared by threads, COG copies and
windowed raster -> raster processing (:func:`map_windows`). ROS-free; uses rasterio (GDAL).

Grid conventions: rows are top-down (row 0 is the northern edge), a window is
``(col_off, row_off, width, height)`` in cells, arrays are ``(bands, rows, columns)``. The
geotransform is GDAL's ``(x_left, x_res, 0, y_top, 0, -y_res)`` (or an ``affine.Affine``) in
the CRS's units.

Files are tiled GeoTIFFs (square blocks of :data:`DEFAULT_BLOCK_SIZE` cells), compressed with
a predictor (3 floating point, 2 horizontal differencing for integers), BigTIFF when GDAL
thinks the file might pass 4 GB, compressed by GDAL on all cores. A Cloud Optimized GeoTIFF
is a copy of such a file (:func:`copy_to_cog`): GDAL's COG driver cannot be written window by
window.
"""
import contextlib
import errno
import math
from numbers import Integral, Real
import os
import threading

import numpy as np

from pointcloud_pipeline.files import PARTIAL_SUFFIX

COMPRESSIONS = ('deflate', 'zstd', 'lzw', 'none')
DEFAULT_BLOCK_SIZE = 256
FAST_LEVELS = {'deflate': ('ZLEVEL', 1), 'zstd': ('ZSTD_LEVEL', 1)}  # creation_profile
BLOCK_MULTIPLE = 16  # TIFF tiles: width and height multiples of 16
RESAMPLINGS = ('nearest', 'bilinear', 'cubic', 'cubicspline', 'lanczos', 'average', 'rms',
               'mode')  # GDAL's overview resampling methods (COG driver OVERVIEW_RESAMPLING)
DEFAULT_CACHE_MB = 64


def _rasterio():
    import rasterio  # imported on use: the ROS nodes import this package without rasterio
    return rasterio


def _affine(transform):
    from affine import Affine
    if isinstance(transform, Affine):
        return transform
    try:
        if isinstance(transform, (str, bytes)):
            raise TypeError
        values = tuple(float(value) for value in transform)
    except (TypeError, ValueError):
        raise ValueError(f'transform must be a GDAL geotransform 6-tuple or an affine.Affine, '
                         f'got {transform!r}') from None
    if len(values) != 6:
        raise ValueError(f'transform must be a GDAL geotransform 6-tuple, got {len(values)} '
                         f'values')
    if not all(np.isfinite(values)):
        raise ValueError(f'transform must be finite, got {values}')
    return Affine.from_gdal(*values)


def _check_block_size(block_size, name='block_size'):
    if (isinstance(block_size, bool) or not isinstance(block_size, Integral)
            or block_size < BLOCK_MULTIPLE or block_size % BLOCK_MULTIPLE):
        raise ValueError(f'{name} must be a positive multiple of {BLOCK_MULTIPLE}, '
                         f'got {block_size!r}')
    return int(block_size)


def _check_compress(compress):
    if compress not in COMPRESSIONS:
        raise ValueError(f'compress must be one of {", ".join(COMPRESSIONS)}, got {compress!r}')
    return compress


def _check_num_threads(num_threads):
    if num_threads == 'ALL_CPUS':
        return num_threads
    if isinstance(num_threads, bool) or not isinstance(num_threads, Integral) or num_threads < 1:
        raise ValueError(f"num_threads must be 'ALL_CPUS' or an integer >= 1, "
                         f'got {num_threads!r}')
    return str(int(num_threads))


def _check_dtype(dtype):
    from rasterio.dtypes import check_dtype
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise ValueError(f'dtype must be a numpy dtype, got {dtype!r}') from None
    if dtype.kind not in 'uif' or not check_dtype(dtype.name):
        raise ValueError(f'dtype must be an integer or floating-point type GeoTIFF can hold, '
                         f'got {dtype}')
    return dtype


def _check_nodata(nodata, dtype):
    if nodata is None:
        return None
    if isinstance(nodata, bool) or not isinstance(nodata, Real):
        raise ValueError(f'nodata must be a number or None, got {nodata!r}')
    nodata = float(nodata)
    if dtype.kind == 'f':
        if math.isfinite(nodata) and abs(nodata) > float(np.finfo(dtype).max):
            raise ValueError(f'nodata {nodata} does not fit {dtype}')
        return nodata
    info = np.iinfo(dtype)
    if not (np.isfinite(nodata) and nodata == int(nodata) and info.min <= nodata <= info.max):
        raise ValueError(f'nodata {nodata} is not a value of {dtype} '
                         f'({info.min}..{info.max})')
    return int(nodata)


def creation_profile(*, width, height, count, dtype, nodata, transform, crs=None,
                     block_size=DEFAULT_BLOCK_SIZE, compress='deflate', num_threads='ALL_CPUS'):
    """Keyword arguments of ``rasterio.open(path, 'w', **profile)`` for a tiled GeoTIFF.

    width, height: cells; count: bands; dtype: numpy integer or float type; nodata: the
    no-data value (None: none; a float type may use NaN); transform: GDAL geotransform
    6-tuple ``(x_left, res, 0, y_top, 0, -res)`` or an ``affine.Affine``; crs: None or what
    ``rasterio.crs.CRS`` accepts (WKT, ``'EPSG:26917'``, a CRS). block_size: side of the
    square tiles in cells (a multiple of 16; may exceed the raster); compress: one of
    :data:`COMPRESSIONS` (``'none'``: uncompressed, no predictor); num_threads: GDAL's
    compression threads (``'ALL_CPUS'`` or a count). Predictor 3 for floats, 2 for integers;
    ``BIGTIFF=IF_SAFER``; band interleaving. ValueError names a bad argument.

    Deflate and zstd at level 1 (GDAL's defaults are 6 and 9): on a float32 DSM of 7 M cells
    with predictor 3 (bench/bench_raster.py's), level 1 wrote files as small as the default
    levels (12.8 MB vs 12.9 MB deflate) in half the time (0.12 s vs 0.22 s), so the default
    levels only cost time here.
    """
    for name, value in (('width', width), ('height', height), ('count', count)):
        if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
            raise ValueError(f'{name} must be an integer >= 1, got {value!r}')
    dtype = _check_dtype(dtype)
    profile = {
        'driver': 'GTiff',
        'width': int(width),
        'height': int(height),
        'count': int(count),
        'dtype': dtype.name,
        'nodata': _check_nodata(nodata, dtype),
        'transform': _affine(transform),
        'crs': _crs(crs),
        'tiled': True,
        'blockxsize': _check_block_size(block_size),
        'blockysize': int(block_size),
        'compress': _check_compress(compress),
        'interleave': 'band',
        'BIGTIFF': 'IF_SAFER',
        'NUM_THREADS': _check_num_threads(num_threads),
    }
    if compress != 'none':
        profile['predictor'] = 3 if dtype.kind == 'f' else 2
    if compress in FAST_LEVELS:
        profile[FAST_LEVELS[compress][0]] = FAST_LEVELS[compress][1]
    return profile


def _crs(crs):
    if crs is None:
        return None
    from rasterio.crs import CRS
    from rasterio.errors import CRSError
    if isinstance(crs, CRS):
        return crs
    try:
        return CRS.from_user_input(crs)
    except (CRSError, TypeError, ValueError) as error:
        raise ValueError(f'crs is not a CRS rasterio understands ({crs!r}): {error}') from None


class _CacheLimit:
    """GDAL's block cache (global to the process) held at most at the smallest limit asked for
    by the open writers; the previous size comes back when the last one closes."""

    def __init__(self):
        self.lock = threading.Lock()
        self.holders = []
        self.saved = None

    def acquire(self, limit_bytes):
        from rasterio.env import get_gdal_config, set_gdal_config
        with self.lock:
            if not self.holders:
                self.saved = get_gdal_config('GDAL_CACHEMAX')
            self.holders.append(limit_bytes)
            set_gdal_config('GDAL_CACHEMAX', min(min(self.holders), self.saved))

    def release(self, limit_bytes):
        from rasterio.env import set_gdal_config
        with self.lock:
            self.holders.remove(limit_bytes)
            set_gdal_config('GDAL_CACHEMAX',
                            min(self.holders + [self.saved]) if self.holders else self.saved)


_cache_limit = _CacheLimit()


def _as_disk_full(error, path, needed_bytes):
    """OSError(ENOSPC) naming ``path`` when the file system of ``path`` has less than
    ``needed_bytes`` free after GDAL failed to write (GDAL reports a full disk only as a
    "Write failed" RasterioIOError, the reason goes to stderr); else ``error`` itself."""
    try:
        status = os.statvfs(os.path.dirname(os.path.abspath(path)))
    except OSError:
        return error
    if status.f_bavail * status.f_frsize >= needed_bytes:
        return error
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    full.filename = path
    return full


class WindowWriter:
    """A GeoTIFF open for writing, shared by threads: every write holds one lock (rasterio 1.4
    datasets are not thread-safe); GDAL's block cache is bounded (``cache_mb``, process-wide,
    while the writer is open) so memory does not grow with the raster.

    path: the file to create (replaced); profile: :func:`creation_profile`'s dict (or any
    rasterio write profile); descriptions: None or one string per band. Use as a context
    manager: leaving it closes the dataset (flushing the blocks), also on an error.
    """

    def __init__(self, path, profile, descriptions=None, cache_mb=DEFAULT_CACHE_MB):
        if isinstance(cache_mb, bool) or not isinstance(cache_mb, Real) or not cache_mb > 0:
            raise ValueError(f'cache_mb must be a number > 0, got {cache_mb!r}')
        self.path = os.fspath(path)
        self.profile = dict(profile)
        self.count = int(self.profile['count'])
        self.dtype = np.dtype(self.profile['dtype'])
        self.height, self.width = int(self.profile['height']), int(self.profile['width'])
        if descriptions is not None:
            descriptions = tuple(descriptions)
            if len(descriptions) != self.count or not all(
                    isinstance(text, str) for text in descriptions):
                raise ValueError(f'descriptions must be {self.count} strings (one per band), '
                                 f'got {descriptions!r}')
        self.descriptions = descriptions
        self.cache_bytes = int(cache_mb * (1 << 20))
        self.lock = threading.Lock()
        self.dataset = None
        self.holds_cache_limit = False
        self.windows_written = 0
        # a block of every band: less free space than this after a failed write is a full disk
        self._block_bytes = 2 * self.count * self.dtype.itemsize * int(
            self.profile.get('blockxsize', 256)) * int(self.profile.get('blockysize', 256))

    def __enter__(self):
        rasterio = _rasterio()
        _cache_limit.acquire(self.cache_bytes)
        self.holds_cache_limit = True
        try:
            self.dataset = rasterio.open(self.path, 'w', **self.profile)
            if self.descriptions is not None:
                for band, text in enumerate(self.descriptions, start=1):
                    self.dataset.set_band_description(band, text)
        except BaseException:
            self._close()
            raise
        return self

    def __exit__(self, *exc_info):
        self._close()
        return False

    def _close(self):
        try:
            if self.dataset is not None:
                with self.lock:
                    dataset, self.dataset = self.dataset, None
                    try:
                        dataset.close()  # flushes GDAL's cached blocks
                    except _rasterio().errors.RasterioError as error:
                        raise _as_disk_full(error, self.path, self._block_bytes) from error
        finally:
            if self.holds_cache_limit:
                self.holds_cache_limit = False
                _cache_limit.release(self.cache_bytes)

    def write(self, window, array):
        """Write ``array`` (count, height, width) of the profile's dtype (or one that casts to
        it safely within its kind) at ``window`` = (col_off, row_off, width, height) cells,
        top-down rows; the window must lie inside the raster."""
        col_off, row_off, width, height = (int(value) for value in window)
        if (width < 1 or height < 1 or col_off < 0 or row_off < 0
                or col_off + width > self.width or row_off + height > self.height):
            raise ValueError(f'window {tuple(window)} is not inside the raster '
                             f'({self.width} x {self.height} cells)')
        array = np.asarray(array)
        if array.shape != (self.count, height, width):
            raise ValueError(f'array must have shape {(self.count, height, width)} for window '
                             f'{tuple(window)}, got {array.shape}')
        if array.dtype != self.dtype:
            if not np.can_cast(array.dtype, self.dtype, 'same_kind'):
                raise ValueError(f'array must be of {self.dtype}, got {array.dtype}')
            array = array.astype(self.dtype)
        from rasterio.windows import Window
        with self.lock:
            if self.dataset is None:
                raise ValueError(f'{self.path} is not open for writing')
            try:
                self.dataset.write(array, window=Window(col_off, row_off, width, height))
            except _rasterio().errors.RasterioError as error:
                raise _as_disk_full(error, self.path, self._block_bytes) from error
            self.windows_written += 1


def copy_to_cog(src_path, dst_path, *, compress='deflate', block_size=512, resampling='average',
                num_threads='ALL_CPUS'):
    """Copy the GeoTIFF ``src_path`` to a Cloud Optimized GeoTIFF ``dst_path`` (GDAL's COG
    driver: tiles of ``block_size``, overviews down to one tile made with ``resampling``, the
    ghost header GDAL's COG validator checks), keeping nodata, band descriptions and the CRS.
    The COG driver only copies: write a tiled GeoTIFF first (e.g. with :class:`WindowWriter`).
    ``dst_path`` is replaced; fsync is the caller's business."""
    _check_compress(compress)
    _check_block_size(block_size)
    if resampling not in RESAMPLINGS:
        raise ValueError(f'resampling must be one of {", ".join(RESAMPLINGS)}, '
                         f'got {resampling!r}')
    options = {'COMPRESS': compress.upper(), 'BLOCKSIZE': str(block_size),
               'OVERVIEW_RESAMPLING': resampling.upper(), 'OVERVIEWS': 'AUTO',
               'BIGTIFF': 'IF_SAFER', 'NUM_THREADS': _check_num_threads(num_threads)}
    if compress != 'none':
        options['PREDICTOR'] = 'YES'  # the driver picks 2 or 3 from the data type
    rasterio = _rasterio()
    from rasterio.shutil import copy as copy_dataset
    with rasterio.open(src_path) as source:
        copy_dataset(source, os.fspath(dst_path), driver='COG', **options)


# --- windowed raster -> raster processing ----------------------------------------------------

POLL_S = 0.05  # how often the main loop looks at should_stop while windows are computed
WINDOWS_AHEAD_PER_WORKER = 2  # windows in flight or waiting for their turn, per worker


def grid_windows(width, height, block_width, block_height):
    """The ``(col_off, row_off, width, height)`` windows of a raster cut into blocks, in row
    order (the last row and column of windows are clipped to the raster)."""
    return [(col, row, min(block_width, width - col), min(block_height, height - row))
            for row in range(0, height, block_height) for col in range(0, width, block_width)]


def window_size(dataset, block_size=None):
    """Side of the square windows :func:`map_windows` cuts the open rasterio ``dataset`` into:
    ``block_size`` when given, else the dataset's blocks when they are square tiles of a
    multiple of 16 cells, else :data:`DEFAULT_BLOCK_SIZE`."""
    if block_size is not None:
        return _check_block_size(block_size)
    block_height, block_width = dataset.block_shapes[0]
    tiled = (dataset.profile.get('tiled') and block_width == block_height
             and block_width % BLOCK_MULTIPLE == 0)
    return block_width if tiled else DEFAULT_BLOCK_SIZE


def read_window(dataset, window, halo, bands, lock=None):
    """``bands`` (1-based) of ``window`` = (col_off, row_off, width, height) with ``halo`` cells
    around it: a float64 array (len(bands), height + 2 halo, width + 2 halo), NaN outside the
    raster and at the band's no-data value. ``lock``: held while reading (a rasterio dataset
    is not thread-safe)."""
    from rasterio.windows import Window
    col_off, row_off, width, height = window
    left, top = col_off - halo, row_off - halo
    right, bottom = col_off + width + halo, row_off + height + halo
    in_left, in_top = max(left, 0), max(top, 0)
    in_right, in_bottom = min(right, dataset.width), min(bottom, dataset.height)
    out = np.full((len(bands), bottom - top, right - left), np.nan)
    if in_right <= in_left or in_bottom <= in_top:
        return out
    with lock if lock is not None else contextlib.nullcontext():
        values = dataset.read(list(bands), window=Window(in_left, in_top, in_right - in_left,
                                                         in_bottom - in_top))
    inside = out[:, in_top - top:in_bottom - top, in_left - left:in_right - left]
    inside[...] = values
    for index, band in enumerate(bands):
        nodata = dataset.nodatavals[band - 1]
        if nodata is not None and not np.isnan(nodata):
            inside[index][values[index] == np.array(nodata).astype(values.dtype)] = np.nan
    return out


def _to_output(result, window, dtype, nodata, count):
    """func's result as the (count, height, width) array of ``dtype`` to write: NaN -> nodata,
    integers rounded to nearest and clipped to the type's range."""
    _, _, width, height = window
    result = np.asarray(result)
    if result.ndim == 2:
        result = result[np.newaxis]
    if result.ndim != 3 or result.shape[1:] != (height, width) or (
            count is not None and result.shape[0] != count):
        bands = count if count is not None else 'bands'
        raise ValueError(f'func returned shape {result.shape} for window {window}, expected '
                         f'({bands}, {height}, {width})')
    if result.dtype.kind not in 'biuf':
        raise ValueError(f'func returned {result.dtype} values for window {window}')
    if dtype.kind == 'f':
        out = result.astype(dtype)
        if nodata is not None and not np.isnan(nodata):
            out[np.isnan(result)] = nodata
        return out
    values = result.astype(np.float64)
    missing = np.isnan(values)
    if missing.any() and nodata is None:
        raise ValueError(f'func returned NaN (no data) in window {window}, but the {dtype} '
                         f'output has no nodata value')
    info = np.iinfo(dtype)
    out = np.clip(np.rint(np.where(missing, 0, values)), info.min, info.max).astype(dtype)
    if nodata is not None:
        out[missing] = nodata
    return out


def map_windows(src, dst, func, *, halo=0, workers=0, block_size=None, dtype=None, nodata=None,
                bands=None, compress='deflate', descriptions=None, cog=False, should_stop=None,
                progress=None):
    """Compute the raster ``dst`` window by window from the raster ``src`` (paths).

    rasterio's concurrent-processing pattern: the windows of ``src`` (its blocks when it is
    tiled with square blocks of a multiple of 16 and ``block_size`` is None, else
    ``block_size`` x ``block_size`` cells, :data:`DEFAULT_BLOCK_SIZE` by default) are computed
    by a ThreadPoolExecutor of ``workers`` threads (0 = all cores). Each window is read with
    ``halo`` cells around it under a read lock: float64, NaN outside the raster and at the
    no-data value, bands ``bands`` (1-based; default all). ``func(array (bands, h + 2 halo,
    w + 2 halo), window)`` -> (out_bands, h, w) (or (h, w): one band) runs with no lock held
    (it should release the GIL, and use one thread when ``workers`` > 1); window =
    (col_off, row_off, w, h). Its result is written to ``dst`` (same grid, CRS and
    geotransform as ``src``; ``dtype`` defaults to the first read band's, and so does
    ``nodata`` when ``dtype`` is not given) by a :class:`WindowWriter`: NaN -> ``nodata``, to
    an integer dtype rounded to nearest and clipped to its range. Tiles of the window size,
    compressed with ``compress``; band ``descriptions``; ``cog``: a Cloud Optimized GeoTIFF
    with tiles of the window size (written tiled to a hidden temporary beside ``dst``, then
    :func:`copy_to_cog`).

    Windows are written in row order whatever order they finish in (a reorder buffer of at
    most 2 windows per worker, which is also all the memory used: a few windows per worker,
    never the whole raster), so the file's bytes do not depend on ``workers``; the pixels do
    not depend on the window size either when ``func`` only looks ``halo`` cells around.
    ``should_stop()``: checked between windows, raises InterruptedError when true;
    ``progress(1)``: called per written window. On any error ``dst`` (and the temporary) is
    removed. Returns {'windows', 'cells', 'seconds'}.
    """
    import time
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
    rasterio = _rasterio()
    start = time.perf_counter()
    if isinstance(halo, bool) or not isinstance(halo, Integral) or halo < 0:
        raise ValueError(f'halo must be an integer >= 0, got {halo!r}')
    if isinstance(workers, bool) or not isinstance(workers, Integral) or workers < 0:
        raise ValueError(f'workers must be an integer >= 0 (0 = all cores), got {workers!r}')
    workers = int(workers) or os.cpu_count() or 1
    if block_size is not None:
        _check_block_size(block_size)
    _check_compress(compress)
    dst = os.fspath(dst)
    should_stop = should_stop or (lambda: False)

    with _not_georeferenced_is_fine(), rasterio.open(src) as source:
        if bands is None:
            bands = list(range(1, source.count + 1))
        bands = [int(band) for band in bands]
        if not bands or any(not 1 <= band <= source.count for band in bands):
            raise ValueError(f'bands must be 1-based band numbers of {src} '
                             f'(1..{source.count}), got {bands}')
        block_size = window_size(source, block_size)
        out_dtype = _check_dtype(dtype if dtype is not None else source.dtypes[bands[0] - 1])
        if nodata is None and dtype is None:
            nodata = source.nodatavals[bands[0] - 1]
        out_nodata = _check_nodata(nodata, out_dtype)
        windows = grid_windows(source.width, source.height, block_size, block_size)
        grid = {'width': source.width, 'height': source.height, 'transform': source.transform,
                'crs': source.crs}
        read_lock = threading.Lock()

        def compute(window):
            if should_stop():
                raise InterruptedError('stopped')
            array = read_window(source, window, halo, bands, read_lock)
            return func(array, window)

        written_path = _hidden_temporary(dst) if cog else dst
        writer = None
        executor = ThreadPoolExecutor(workers, thread_name_prefix='map_windows')
        try:
            ahead = WINDOWS_AHEAD_PER_WORKER * workers
            next_submit = next_write = 0
            in_flight, finished = {}, {}
            while next_write < len(windows):
                if should_stop():
                    raise InterruptedError(f'{dst}: stopped after {next_write} of '
                                           f'{len(windows)} windows')
                while next_submit < len(windows) and next_submit < next_write + ahead:
                    in_flight[executor.submit(compute, windows[next_submit])] = next_submit
                    next_submit += 1
                done, _ = wait(in_flight, timeout=POLL_S, return_when=FIRST_COMPLETED)
                for future in done:
                    finished[in_flight.pop(future)] = future.result()
                while next_write in finished:
                    window = windows[next_write]
                    result = _to_output(finished.pop(next_write), window, out_dtype,
                                        out_nodata, writer.count if writer else None)
                    if writer is None:
                        profile = creation_profile(
                            count=result.shape[0], dtype=out_dtype, nodata=out_nodata,
                            block_size=block_size, compress=compress, **grid)
                        writer = WindowWriter(written_path, profile, descriptions)
                        with _not_georeferenced_is_fine():
                            writer.__enter__()
                    writer.write(window, result)
                    next_write += 1
                    if progress is not None:
                        progress(1)
            executor.shutdown(wait=True)
            writer.__exit__(None, None, None)
            if cog:
                copy_to_cog(written_path, dst, compress=compress, block_size=block_size)
        except BaseException:
            executor.shutdown(wait=True, cancel_futures=True)
            if writer is not None:
                writer.__exit__(None, None, None)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(dst)
            raise
        finally:
            if cog:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(written_path)
    return {'windows': len(windows), 'cells': grid['width'] * grid['height'],
            'seconds': time.perf_counter() - start}


@contextlib.contextmanager
def _not_georeferenced_is_fine():
    """Without rasterio's NotGeoreferencedWarning: a raster without a geotransform gives an
    output without one (the same grid)."""
    import warnings
    from rasterio.errors import NotGeoreferencedWarning
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', NotGeoreferencedWarning)
        yield


def _hidden_temporary(path):
    """A new hidden file ``.NAME.XXXXXXXX.tiled.partial`` beside ``path`` (created empty, so that
    no one else takes it); for a hidden ``path`` (the runner's ``.NAME.XXXXXXXX.partial``)
    ``NAME.XXXXXXXX.partial.YYYYYYYY.tiled.partial``: the runner's clean-up pattern of NAME's
    temporaries (``.NAME.*.partial``) matches both."""
    import tempfile
    directory, name = os.path.split(os.path.abspath(path))
    prefix = f'{name}.' if name.startswith('.') else f'.{name}.'
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=prefix,
                                         suffix=f'.tiled{PARTIAL_SUFFIX}')
    os.close(handle)
    return temporary
