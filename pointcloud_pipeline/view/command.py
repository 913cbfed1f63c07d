"""Live 3D view of a running pipeline in the browser.

    python -m pointcloud_pipeline view [--points-topic points] [--bev-topic bev/image]
        [--host 127.0.0.1] [--port 8080] [--max-points 200000] [--color rgb|height]

Subscribes to a PointCloud2 topic (float32 x, y, z; optional packed rgb) and a BEV image topic
and serves a page (viser) with the latest cloud in 3D and the BEV image in the side panel;
prints its URL (`view: http://127.0.0.1:8080`; the next free port when that one is taken).
Serves on loopback unless --host says otherwise (then with a warning: the page has no
authentication). A process of its own that subscribes only while a browser is connected, with
best-effort, depth-1 subscriptions (it skips clouds it cannot draw in time), at a lower CPU
priority (--nice): the view does not hold the pipeline back (a browser on the same small machine
may: its software WebGL takes CPU). Uses the ROS environment it is given
(ROS_DOMAIN_ID, discovery range). Stops on Ctrl-C. Needs the Python package viser.
"""
import functools
import importlib.util
import os
import sys

from .display import COLOR_MODES, UP_AXES, host_warning

VISER_INSTALL = 'pip install viser==1.1.1'


def add_arguments(parser):
    """The command's options on ``parser`` (an argparse.ArgumentParser)."""
    parser.add_argument('--points-topic', default='points',
                        help='PointCloud2 topic (default points)')
    parser.add_argument('--bev-topic', default='bev/image',
                        help="BEV Image topic (default bev/image; '' for none)")
    parser.add_argument('--host', default='127.0.0.1',
                        help='address to serve on (default 127.0.0.1, this machine only)')
    parser.add_argument('--port', type=int, default=8080,
                        help='port (default 8080; the next free one when taken; 0: any)')
    parser.add_argument('--max-points', type=int, default=200_000,
                        help='most points drawn per cloud, evenly spaced (default 200000)')
    parser.add_argument('--color', choices=COLOR_MODES, default='rgb',
                        help="rgb (the cloud's colour; height when it has none) or height")
    parser.add_argument('--up', choices=tuple(UP_AXES), default='-y',
                        help="the cloud frame's up axis (default -y: a camera optical frame, "
                             "as pipeline_node publishes; +z for a LiDAR or body frame)")
    parser.add_argument('--height-range', type=float, nargs=2, metavar=('LOW', 'HIGH'),
                        help='metres along --up mapped to blue .. red (default: per cloud)')
    parser.add_argument('--point-size', type=float, default=0.02,
                        help='point size in metres (default 0.02)')
    parser.add_argument('--max-rate', type=float, default=10.0,
                        help='clouds drawn per second at most (default 10; 0: every one)')
    parser.add_argument('--nice', type=int, default=10,
                        help='lower the view process\'s CPU priority by this much (default 10, '
                             'so the pipeline wins a busy CPU; 0 keeps it)')


def settings_from_arguments(parser, args):
    """:class:`~.view_node.ViewSettings` of ``args``; ``parser.error`` (exit 2) for bad ones."""
    from .view_node import ViewSettings
    if not 0 <= args.port <= 65535:
        parser.error(f'--port must be in 0..65535, got {args.port}')
    if args.max_points < 1:
        parser.error(f'--max-points must be >= 1, got {args.max_points}')
    if not args.max_rate >= 0:
        parser.error(f'--max-rate must be >= 0, got {args.max_rate}')
    if not args.point_size > 0:
        parser.error(f'--point-size must be > 0 metres, got {args.point_size}')
    if args.height_range is not None and not args.height_range[0] < args.height_range[1]:
        parser.error(f'--height-range needs LOW < HIGH, got {args.height_range}')
    if not 0 <= args.nice <= 19:
        parser.error(f'--nice must be in 0..19, got {args.nice}')
    if not args.points_topic:
        parser.error('--points-topic must not be empty')
    return ViewSettings(points_topic=args.points_topic, bev_topic=args.bev_topic,
                        max_points=args.max_points, color=args.color, up=args.up,
                        height_range=None if args.height_range is None
                        else tuple(args.height_range), max_rate=args.max_rate)


def checked_run(parser, args):
    """Serve the view until Ctrl-C; returns the exit code (2 for bad arguments or no viser)."""
    settings = settings_from_arguments(parser, args)
    if importlib.util.find_spec('viser') is None:
        parser.error(f'view needs the Python package viser: {VISER_INSTALL}')
    from ..ros.executable import run_node
    from .server import CloudViewer
    from .view_node import ViewNode
    if args.nice:
        os.nice(args.nice)  # this process and the server's threads
    viewer = CloudViewer(args.host, args.port, point_size=args.point_size, up=args.up)
    try:
        warning = host_warning(args.host, viewer.port)
        if warning:
            print(f'view: warning: {warning}', file=sys.stderr, flush=True)
        print(f'view: {viewer.url}', flush=True)
        return run_node(functools.partial(ViewNode, viewer, settings))
    finally:
        viewer.stop()


def main(argv=None):
    """``python -m pointcloud_pipeline.view.command``: the same as the ``view`` command."""
    import argparse
    parser = argparse.ArgumentParser(prog='pointcloud_pipeline view', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return checked_run(parser, parser.parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
