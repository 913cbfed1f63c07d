"""GeoTIFF rasters -> GeoTIFF rasters, window by window: hillshade, slope or no-data fill.

Usage: ``python -m pointcloud_pipeline raster-map {hillshade,slope,fill} INPUT... -o OUTDIR``.
INPUT: .tif/.tiff files, directories (their *.tif, *.tiff) or glob patterns. ``-o FILE.tif``
with one input file names the output instead of a directory; else each output is
``OUTDIR/<the input's name>`` (an output that would replace its input is refused).

Operations, on band ``--band`` (default 1) of a surface model (heights, the input's no-data
value = no data), with gdaldem's semantics (:mod:`pointcloud_pipeline.terrain`):
    hillshade  shaded relief, light from ``--azimuth`` (default 315, clockwise from north) at
               ``--altitude`` (default 45) degrees, heights times ``--z-factor``: Byte 1..255,
               0 = no data (``gdaldem hillshade``).
    slope      ``--units degrees`` (default) or ``percent``, heights times ``--z-factor``:
               Float32, -9999 = no data (``gdaldem slope``).
    Both use Horn's 3 x 3 method: the raster's border cells and the cells next to no data
    are no data (gdaldem without -compute_edges). They need a north-up geotransform (the
    cell size in the CRS's units; heights in the same units, else ``--z-factor``).
    fill       PDAL's window fill of the no-data cells (``--window-size N``, required): the
               inverse-distance mean of the data cells of the (2N+1) x (2N+1) window, distance
               ``max(|dr|, |dc|)`` cells (:func:`pointcloud_pipeline.raster.fill_nodata`);
               cells with no data cell in reach stay no data. Same type and no-data value as
               the input (integers rounded to nearest).

Output: the input's grid, CRS and geotransform; a tiled GeoTIFF (``--block-size``, default the
input's square tiles or 256; ``--compress``, default deflate with a predictor), or a Cloud
Optimized GeoTIFF with overviews (``--cog``). The windows (one per output tile) are computed
on ``--workers`` threads with a halo (1 cell, or N for fill) and written in a fixed order: the
pixels do not depend on ``--block-size`` and the bytes not on ``--workers``. Memory: a few
windows per worker, whatever the raster's size.

Bad inputs (not a raster, no such band, no geotransform for hillshade/slope) are reported by
name, no output is left, the other inputs go on, the exit code is 1. Ctrl-C or SIGTERM stops at
the next window (exit 130) leaving no partial output. The summary line ends with windows,
cells, seconds and Mcells/s.
"""
import argparse
from dataclasses import dataclass
import math
import os
from pathlib import Path
import sys
from typing import ClassVar

import numpy as np

from pointcloud_pipeline.batch import las_files, runner
from pointcloud_pipeline.batch.cli import run_command

OPERATIONS = ('hillshade', 'slope', 'fill')
RASTER_SUFFIXES = ('.tif', '.tiff')
SLOPE_DTYPE, HILLSHADE_DTYPE = 'float32', 'uint8'


class RasterMapError(runner.InputError):
    """An input that cannot be turned into an output (the message says why)."""


@dataclass(frozen=True)
class RasterMapTool:
    """The runner's tool: one GeoTIFF -> its hillshade, slope or filled copy (module
    docstring)."""

    operation: str
    azimuth: float = 315.0
    altitude: float = 45.0
    z_factor: float = 1.0
    units: str = 'degrees'
    window_size: int | None = None  # fill: N
    band: int = 1
    compress: str = 'deflate'
    block_size: int | None = None  # None: the input's square tiles, else 256
    cog: bool = False
    output_file: str | None = None  # -o FILE.tif: the output's name
    name: ClassVar[str] = 'raster-map'
    input_suffixes: ClassVar[tuple[str, ...]] = RASTER_SUFFIXES
    format_version: ClassVar[int] = 1
    parallel_inside: ClassVar[bool] = True
    requires: ClassVar[dict] = {'rasterio': 'pip install rasterio==1.4.4'}

    def output_name(self, input_path):
        return self.output_file or Path(input_path).name

    def settings(self):
        """What changes the output bytes (--workers does not)."""
        operation = {'hillshade': {'azimuth': self.azimuth, 'altitude': self.altitude,
                                   'z_factor': self.z_factor},
                     'slope': {'units': self.units, 'z_factor': self.z_factor},
                     'fill': {'window_size': self.window_size}}[self.operation]
        return {'operation': self.operation, **operation, 'band': self.band,
                'compress': self.compress, 'block_size': self.block_size, 'cog': self.cog,
                'output_file': self.output_file}

    @property
    def halo(self):
        return self.window_size if self.operation == 'fill' else 1

    def process(self, input_path, output_path, parallelism):
        """Write the result of ``input_path`` to ``output_path`` (the runner's temporary path);
        returns the counters of the summary line."""
        from pointcloud_pipeline import geotiff
        final = os.path.join(os.path.dirname(os.path.abspath(output_path)),
                             self.output_name(input_path))
        if os.path.exists(final) and os.path.samefile(final, input_path):
            raise RasterMapError(f'the output {final} would replace the input')
        func, dtype, nodata, description, window_count = self._plan(input_path)
        with las_files.PhaseProgress(self.name, window_count, parallelism.show_progress,
                                     self.operation, unit='window') as progress:
            try:
                counters = geotiff.map_windows(
                    input_path, output_path, func, halo=self.halo,
                    workers=parallelism.workers, block_size=self.block_size, dtype=dtype,
                    nodata=nodata, bands=[self.band], compress=self.compress,
                    descriptions=[description], cog=self.cog,
                    should_stop=parallelism.should_stop, progress=progress.update)
            except _rasterio_errors() as error:
                raise RasterMapError(f'cannot read or write the raster '
                                     f'({runner.failure_reason(error)})') from None
        return counters

    def _plan(self, input_path):
        """(func, output dtype, nodata, band description, windows) for the input; a
        RasterMapError for an input this operation cannot take."""
        from pointcloud_pipeline import geotiff
        rasterio = _rasterio()
        try:
            with geotiff._not_georeferenced_is_fine(), rasterio.open(input_path) as source:
                if not 1 <= self.band <= source.count:
                    raise RasterMapError(f'has no band {self.band} (it has {source.count})')
                transform = source.transform
                georeferenced = not (transform.is_identity and source.crs is None)
                side = geotiff.window_size(source, self.block_size)
                windows = math.ceil(source.width / side) * math.ceil(source.height / side)
                dtype = source.dtypes[self.band - 1]
                nodata = source.nodatavals[self.band - 1]
                description = source.descriptions[self.band - 1] or ''
        except RasterMapError:
            raise
        except _rasterio_errors() as error:
            raise RasterMapError(f'not a readable raster ({runner.failure_reason(error)})') \
                from None
        if self.operation == 'fill':
            return self._fill(), dtype, nodata, description or 'filled', windows
        if not georeferenced:
            raise RasterMapError(f'has no geotransform: {self.operation} needs the cell size')
        if transform.b != 0 or transform.d != 0 or transform.a <= 0 or transform.e >= 0:
            raise RasterMapError(f'its geotransform is not north-up ({tuple(transform)[:6]}): '
                                 f'{self.operation} needs rows from north to south')
        resolution = (transform.a, -transform.e)
        if self.operation == 'slope':
            return (self._slope(resolution), SLOPE_DTYPE, _terrain().SLOPE_NODATA,
                    f'slope ({self.units})', windows)
        return (self._hillshade(resolution), HILLSHADE_DTYPE, _terrain().HILLSHADE_NODATA_BYTE,
                'hillshade', windows)

    # Window functions: one kernel thread each, the windows are computed in parallel.
    def _slope(self, resolution):
        terrain = _terrain()
        units, z_factor = self.units, self.z_factor

        def slope_of_window(array, window):
            return terrain.slope(array[0], resolution, units=units, z_factor=z_factor,
                                 threads=1)[1:-1, 1:-1]
        return slope_of_window

    def _hillshade(self, resolution):
        terrain = _terrain()
        azimuth, altitude, z_factor = self.azimuth, self.altitude, self.z_factor

        def hillshade_of_window(array, window):
            shade = terrain.hillshade(array[0], resolution, azimuth=azimuth, altitude=altitude,
                                      z_factor=z_factor, threads=1)[1:-1, 1:-1]
            return terrain.hillshade_byte(shade)  # gdaldem's rounding, 0 = no data
        return hillshade_of_window

    def _fill(self):
        from pointcloud_pipeline.raster import fill_nodata
        size = self.window_size

        def fill_of_window(array, window):
            values = array[0]
            filled = fill_nodata(values, np.isnan(values), size, threads=1)
            return filled[size:-size, size:-size]
        return fill_of_window

    @staticmethod
    def summary_details(counters, seconds):
        """windows, cells, seconds of computing, Mcells/s."""
        windows = sum(c['windows'] for c in counters)
        cells = sum(c['cells'] for c in counters)
        compute_s = sum(c['seconds'] for c in counters)
        rate = cells / compute_s / 1e6 if compute_s else 0.0
        return f'{windows} windows, {cells} cells, {compute_s:.2f} s, {rate:.2f} Mcells/s'


def _rasterio():
    import rasterio  # on use: the command's help needs no GDAL
    return rasterio


def _rasterio_errors():
    from rasterio.errors import RasterioError
    return RasterioError


def _terrain():
    from pointcloud_pipeline import terrain
    return terrain


# --- command line -----------------------------------------------------------------------------





def block_size(text):
    value = runner.positive_int(text)
    if value % 16:
        raise argparse.ArgumentTypeError(f'must be a multiple of 16, got {value}')
    return value


OPERATION_OPTIONS = {  # option -> the operations it applies to
    'azimuth': ('hillshade',), 'altitude': ('hillshade',), 'z_factor': ('hillshade', 'slope'),
    'units': ('slope',), 'window_size': ('fill',)}


def tool_from_args(args):
    """The RasterMapTool of the parsed options (and -o FILE: args.output_dir becomes its
    directory); ValueError for options that cannot be."""
    if args.executor != 'threads' or args.dask_scheduler:
        raise ValueError('raster-map computes the windows of a file on threads: '
                         '--executor processes and --dask-scheduler are not supported')
    for option, operations in OPERATION_OPTIONS.items():
        if getattr(args, option) is not None and args.operation not in operations:
            raise ValueError(f'--{option.replace("_", "-")} is an option of '
                             f'{" and ".join(operations)}, not of {args.operation}')
    if args.operation == 'fill' and args.window_size is None:
        raise ValueError('fill needs --window-size N (cells, >= 1)')
    if args.window_size is not None:
        from pointcloud_pipeline.raster import MAX_WINDOW_SIZE
        if args.window_size > MAX_WINDOW_SIZE:
            raise ValueError(f'--window-size must be at most {MAX_WINDOW_SIZE}, '
                             f'got {args.window_size}')
    if args.altitude is not None and not 0 <= args.altitude <= 90:
        raise ValueError(f'--altitude must be from 0 to 90 degrees, got {args.altitude}')
    output_file = None
    if args.output_dir.suffix.lower() in RASTER_SUFFIXES and not args.output_dir.is_dir():
        if len(args.inputs) != 1 or not os.path.isfile(args.inputs[0]):
            raise ValueError('-o FILE.tif needs exactly one input file '
                             '(give a directory for several)')
        output_file = args.output_dir.name
        args.output_dir = args.output_dir.parent
    defaults = RasterMapTool('slope')
    return RasterMapTool(
        operation=args.operation,
        azimuth=defaults.azimuth if args.azimuth is None else args.azimuth,
        altitude=defaults.altitude if args.altitude is None else args.altitude,
        z_factor=defaults.z_factor if args.z_factor is None else args.z_factor,
        units=args.units or defaults.units, window_size=args.window_size, band=args.band,
        compress=args.compress, block_size=args.block_size, cog=args.cog,
        output_file=output_file)


def add_raster_map_arguments(parser):
    """The tool's own options."""
    from pointcloud_pipeline.geotiff import COMPRESSIONS
    terrain = parser.add_argument_group('hillshade and slope (gdaldem, Horn)')
    terrain.add_argument('--azimuth', type=runner.finite_float, default=None, metavar='DEG',
                         help='hillshade: direction of the light, clockwise from north '
                              '(default 315)')
    terrain.add_argument('--altitude', type=runner.finite_float, default=None, metavar='DEG',
                         help='hillshade: height of the light above the horizon, 0..90 '
                              '(default 45)')
    terrain.add_argument('--z-factor', type=runner.positive_float, default=None, metavar='Z',
                         help='hillshade, slope: heights times Z (vertical units to the CRS\'s '
                              'horizontal units; default 1)')
    terrain.add_argument('--units', choices=('degrees', 'percent'), default=None,
                         help='slope: degrees (default) or percent')
    fill = parser.add_argument_group('fill (PDAL window fill)')
    fill.add_argument('--window-size', type=runner.positive_int, default=None, metavar='N',
                      help='fill: donors within N cells (a (2N+1) x (2N+1) window); required')
    output = parser.add_argument_group('input and output')
    output.add_argument('--band', type=runner.positive_int, default=1,
                        help='input band (default %(default)s)')
    output.add_argument('--compress', choices=COMPRESSIONS, default='deflate',
                        help='output compression (default %(default)s)')
    output.add_argument('--block-size', type=block_size, default=None, metavar='CELLS',
                        help='side of the output tiles and of the windows computed, a multiple '
                             'of 16 (default: the input\'s square tiles, else 256)')
    output.add_argument('--cog', action='store_true',
                        help='write a Cloud Optimized GeoTIFF (with overviews)')


def add_arguments(parser):
    """All options of the ``raster-map`` command: the operation, the runner's and the tool's."""
    parser.add_argument('operation', choices=OPERATIONS, help='what to compute')
    runner.add_runner_arguments(
        parser, inputs_help='GeoTIFF files (.tif, .tiff), directories or glob patterns',
        output_help='directory for the outputs (created if missing), or FILE.tif for one input '
                    'file')
    add_raster_map_arguments(parser)


def checked_run(parser, args):
    """Run the ``raster-map`` command (usage errors exit 2); returns the exit code."""
    return runner.checked_run(parser, args, tool_from_args)


def main(argv=None):
    """Console script ``raster_map``: the ``raster-map`` command on its own."""
    return run_command(sys.modules[__name__], 'raster_map', argv)


if __name__ == '__main__':
    sys.exit(main())
