"""Command line of pointcloud_pipeline: ``python -m pointcloud_pipeline COMMAND ...``.

Each command lives in its own module, a tool on the shared runner (:mod:`.runner`), which
provides ``add_arguments(parser)`` (the runner's options, ``runner.add_runner_arguments``, and
its own) and ``checked_run(parser, args) -> exit code`` (``runner.checked_run`` with the
module's tool); add it to ``COMMANDS`` to make it a subcommand.
"""
import argparse
import importlib
import sys

from pointcloud_pipeline import __version__

PROG = 'pointcloud_pipeline'
# command name -> (module, one-line help)
COMMANDS = {
    'bev': ('pointcloud_pipeline.batch.bev',
            "KITTI .bin scans -> bird's-eye-view images (PNG, npy, npz)"),
    'normals': ('pointcloud_pipeline.batch.normals',
                'LAS/LAZ/COPC files -> the same with normals'),
    'raster': ('pointcloud_pipeline.batch.raster',
               'LAS/LAZ/COPC files -> GeoTIFF rasters (DSM, DTM, ...)'),
    'raster-map': ('pointcloud_pipeline.batch.raster_map',
                   'GeoTIFF -> GeoTIFF: hillshade, slope, fill'),
    'view': ('pointcloud_pipeline.view.command',
             'live 3D view of a running pipeline in the browser (viser)'),
}


def build_parser():
    """The top-level parser: lists the commands (help, --version, unknown commands)."""
    parser = argparse.ArgumentParser(
        prog=PROG, description='Fast point-cloud tools: batch conversions of data at rest, '
                               'and a live view of a running pipeline in the browser.')
    parser.add_argument('--version', action='version', version=f'%(prog)s {__version__}')
    commands = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')
    for name, (_, summary) in COMMANDS.items():
        commands.add_parser(name, help=summary, add_help=False)
    return parser


def command_parser(module, prog):
    """The parser of the command ``module`` (its docstring as the description), named ``prog``."""
    parser = argparse.ArgumentParser(prog=prog, description=module.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    module.add_arguments(parser)
    return parser


def run_command(module, prog, argv=None):
    """Parse ``argv`` with the options of the command ``module`` under the name ``prog``, then
    run it; returns the exit code (the subcommands and the ``bev_batch``, ``normals``, ``raster``
    and ``raster_map`` scripts)."""
    parser = command_parser(module, prog)
    # intermixed: positional inputs may come before and after options such as -o
    args = parser.parse_intermixed_args(argv)
    return module.checked_run(parser, args)


def main(argv=None):
    """Console script ``pointcloud_pipeline``; returns the command's exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in COMMANDS:
        build_parser().parse_args(argv)  # prints help/version or the usage error and exits
        return 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return run_command(module, f'{PROG} {argv[0]}', argv[1:])


if __name__ == '__main__':
    sys.exit(main())
