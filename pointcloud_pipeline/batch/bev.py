"""KITTI velodyne scans (.bin) -> bird's-eye-view images (PNG, npy or npz), in parallel.

Usage: ``python -m pointcloud_pipeline bev INPUT... -o OUTDIR [--format png|npy|npz]`` (or
``bev_batch``, also as ``ros2 run pointcloud_pipeline bev_batch``). INPUT: .bin files,
directories (their *.bin) or glob patterns. Each scan becomes OUTDIR/<stem>.<format>: an 8-bit
PNG (default), or the float32 image as npy or compressed npz (pointcloud_pipeline.bev_files
says what each holds; pointcloud_pipeline.bev the channels).

- A scan that is empty, whose size is not a multiple of 16 bytes (float32 x, y, z,
  reflectance) or that holds non-finite values is reported by name and skipped; the others are
  processed; the exit code is 1 when any input failed, 130 when interrupted, else 0.
- Each output is written to a temporary file in OUTDIR, flushed to disk and renamed over the
  final name, so an interrupted run never leaves a partial file. A rerun resumes: it skips the
  outputs made from the same scan (path, size, mtime) with the same grid, format and PNG encoder
  and left unchanged since (recorded in OUTDIR/.bev.manifest.json), and redoes the others;
  ``--overwrite`` redoes all.
- PNGs are encoded with fpng where it is installed (3x faster than libpng, files about twice as
  large), else with OpenCV; ``--png-encoder`` chooses. A process that encodes with fpng keeps
  freed buffers mapped (memory.keep_large_buffers: it keeps its peak memory).
- Work is handed out in batches of files to ``--workers`` threads (default; the kernel, file
  I/O and OpenCV release the GIL, fpng holds it while it encodes) or processes, or to a Dask
  cluster (``--dask-scheduler``). The kernel runs single-threaded inside each worker.

The runner (inputs, executors, resume, summary, exit codes) is pointcloud_pipeline.batch.runner.
"""
import dataclasses
from dataclasses import dataclass
import functools
import os
from pathlib import Path
import sys
import threading
from typing import ClassVar

import numpy as np

from pointcloud_pipeline import bev_files
from pointcloud_pipeline.memory import keep_large_buffers
from pointcloud_pipeline.batch import runner
from pointcloud_pipeline.batch.cli import run_command
from pointcloud_pipeline.bev import DEFAULT_GRID, BevGrid, bev_image

KITTI_POINT_BYTES = 16  # float32 little-endian x, y, z, reflectance

_buffers = threading.local()


class ScanError(runner.InputError):
    """A scan file that cannot be turned into an image (the message says why)."""


def read_kitti_scan(path, allocate=bytearray):
    """N x 4 float32 points of a KITTI velodyne .bin file; ScanError when it is not one.

    allocate(size) returns a writable buffer of at least ``size`` bytes to read into; the points
    are a view of it. A worker passes one that reuses its buffer (``reused_scan_buffer``) instead
    of mapping fresh pages for every scan.
    """
    with open(path, 'rb') as file:
        size = os.fstat(file.fileno()).st_size
        if size == 0:
            raise ScanError('empty file')
        if size % KITTI_POINT_BYTES:
            raise ScanError(f'size {size} bytes is not a multiple of {KITTI_POINT_BYTES} '
                            '(float32 x, y, z, reflectance per point)')
        buffer = allocate(size)
        if file.readinto(memoryview(buffer).cast('B')[:size]) != size:
            raise ScanError('file shrank while being read')
    points = np.frombuffer(buffer, dtype='<f4', count=size // 4).reshape(-1, 4)
    if not np.isfinite(points).all():
        bad = np.flatnonzero(~np.isfinite(points).all(axis=1))
        raise ScanError(f'{bad.size} of {len(points)} points have non-finite values '
                        f'(first at point {bad[0]})')
    return points


def reused_scan_buffer(size):
    """This thread's read buffer, at least ``size`` bytes. A larger scan gets a new buffer rather
    than growing the old one in place: a view of the previous scan may still be alive (a Dask
    worker's profiler samples thread frames, and a kept frame keeps its locals), and a bytearray
    with live views cannot be resized."""
    buffer = getattr(_buffers, 'scan', None)
    if buffer is None or len(buffer) < size:
        buffer = _buffers.scan = bytearray(size)
    return buffer


@dataclass(frozen=True)
class BevTool:
    """The runner's tool: one KITTI scan -> one BEV file on ``grid`` in ``file_format``
    (bev_files.FORMATS), PNGs encoded by ``png_encoder`` (bev_files.PNG_ENCODERS; None: the
    default here for png, none for npy and npz). Picklable for processes and Dask. ValueError
    for an unknown format or encoder, an fpng that is not installed, an encoder for npy/npz."""

    grid: BevGrid = DEFAULT_GRID
    file_format: str = 'png'
    png_encoder: str | None = None
    name: ClassVar[str] = 'bev'
    input_suffixes: ClassVar[tuple[str, ...]] = ('.bin',)
    format_version: ClassVar[int] = 2  # 2: settings() names the format and the PNG encoder

    def __post_init__(self):
        bev_files.check_format(self.file_format)
        if self.file_format == 'png':
            object.__setattr__(self, 'png_encoder', bev_files.check_png_encoder(self.png_encoder))
        elif self.png_encoder is not None:
            raise ValueError(f'a PNG encoder applies to the png format, not {self.file_format}')

    def output_name(self, input_path):
        return f'{Path(input_path).stem}.{self.file_format}'

    def settings(self):
        settings = {'grid': dataclasses.asdict(self.grid), 'format': self.file_format}
        if self.file_format == 'png':
            settings['png_encoder'] = self.png_encoder
            if self.png_encoder == 'cv2':
                settings['png_params'] = list(bev_files.CV2_PNG_PARAMS)
        return settings

    def process(self, input_path, output_path):
        """Render the scan at ``input_path`` and write it to ``output_path``. Reuses this
        thread's read and image buffers; the kernel runs on one thread (one per worker)."""
        points = read_kitti_scan(input_path, reused_scan_buffer)
        dtype = bev_files.FORMAT_DTYPES[self.file_format]
        image = reused_image(self.grid.shape, dtype)
        bev_image(points, self.grid, out=image, dtype=dtype, threads=1)
        if self.png_encoder == 'fpng':
            _keep_large_buffers_once()
        bev_files.write_bev(output_path, image, self.file_format, grid=self.grid,
                            encoder=self.png_encoder)


def reused_image(shape, dtype):
    """This thread's image of ``dtype`` (one per dtype), made anew when ``shape`` changes."""
    images = getattr(_buffers, 'images', None)
    if images is None:
        images = _buffers.images = {}
    image = images.get(dtype)
    if image is None or image.shape != shape:
        image = images[dtype] = np.empty(shape, dtype)
    return image


@functools.cache
def _keep_large_buffers_once():
    """memory.keep_large_buffers in this process (fpng's speed), once."""
    return keep_large_buffers()


def grid_from_args(args):
    """BevGrid from --preset and the explicit range options (which override the preset)."""
    base = BevGrid.complex_yolo() if args.preset == 'complex-yolo' else BevGrid()
    new_area = args.x_range or args.y_range
    if args.preset == 'complex-yolo' and args.resolution is None and new_area:
        raise ValueError('with --preset complex-yolo and a new --x-range/--y-range, '
                         'give --resolution too')
    return BevGrid(
        x_range=tuple(args.x_range) if args.x_range else base.x_range,
        y_range=tuple(args.y_range) if args.y_range else base.y_range,
        z_range=tuple(args.z_range) if args.z_range else base.z_range,
        resolution=args.resolution if args.resolution is not None else base.resolution,
        intensity_range=(tuple(args.intensity_range) if args.intensity_range
                         else base.intensity_range))


def tool_from_args(args):
    """The BevTool of the parsed options; ValueError for a grid that cannot be, an fpng that
    is not installed, or --png-encoder with another format."""
    if args.format != 'png' and args.png_encoder is not None:
        raise ValueError(f'--png-encoder applies to --format png, not {args.format}')
    return BevTool(grid_from_args(args), args.format, args.png_encoder)


def add_grid_arguments(parser):
    """The bev tool's own options: the grid."""
    grid = parser.add_argument_group('grid (metres, velodyne frame: x forward, y left, z up)')
    grid.add_argument('--preset', choices=('default', 'complex-yolo'), default='default',
                      help='default: 1600 x 1600 cells of 0.1 m, x and y in [-80, 80]; '
                           'complex-yolo: 608 x 608, x [0, 50], y [-25, 25]')
    grid.add_argument('--x-range', nargs=2, type=float, metavar=('MIN', 'MAX'))
    grid.add_argument('--y-range', nargs=2, type=float, metavar=('MIN', 'MAX'))
    grid.add_argument('--z-range', nargs=2, type=float, metavar=('MIN', 'MAX'),
                      help='points outside are dropped; the height channel spans it '
                           '(default -2.73 1.27)')
    grid.add_argument('--resolution', type=float, help='metres per cell (default 0.1)')
    grid.add_argument('--intensity-range', nargs=2, type=float, metavar=('MIN', 'MAX'),
                      help='reflectance mapped to 0..255 (default 0 1)')


def add_output_arguments(parser):
    """The bev tool's output options: --format and --png-encoder."""
    output = parser.add_argument_group('output files')
    output.add_argument(
        '--format', choices=bev_files.FORMATS, default='png',
        help='png (default): 8-bit RGB PNG, red = density, green = height, blue = intensity '
             '(cv2.imread gives the bgr8 array); npy: float32 rows x cols x 3 (H x W x C), '
             'channels intensity, height, density, each the value in [0, 1] (not rounded to '
             '1/255); npz: that array as "bev" in a compressed .npz with "channels" and the '
             'grid (x_range, y_range, z_range, resolution, intensity_range)')
    output.add_argument(
        '--png-encoder', choices=bev_files.PNG_ENCODERS, default=None,
        help=f'fpng: 3x faster, files about twice as large ({bev_files.FPNG_INSTALL}); cv2: '
             f'OpenCV\'s libpng (default: {bev_files.default_png_encoder()} here)')


def add_arguments(parser):
    """All options of the ``bev`` command (the CLI subcommand and ``bev_batch``): the runner's,
    the output's and the grid's."""
    runner.add_runner_arguments(
        parser, inputs_help='KITTI .bin scans: files, directories or glob patterns',
        output_help='directory for the images (created if missing)')
    add_output_arguments(parser)
    add_grid_arguments(parser)


def checked_run(parser, args):
    """Run the ``bev`` command (usage errors exit 2); returns the exit code."""
    return runner.checked_run(parser, args, tool_from_args)


def main(argv=None):
    """Console script ``bev_batch``: the ``bev`` command on its own."""
    return run_command(sys.modules[__name__], 'bev_batch', argv)


if __name__ == '__main__':
    sys.exit(main())
