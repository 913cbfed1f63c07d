"""make demo: a depth camera -> the pipeline node -> recorded outputs, in one command.

    python -m pointcloud_pipeline.demo [--source synthetic | rgbd-dir:PATH | bag:PATH]
                                       [--seconds 10] [--rate HZ] [--out out] [--unregistered]
                                       [--view [--view-port 8080]]

Starts three ROS 2 processes (DDS kept on this machine by
:func:`pointcloud_pipeline.ros.dds_environment.loopback_ros_env`, with the shared-memory
large-data profile):
1. the source: ``synthetic_camera_node`` (a rendered room, 640x480 at 30 Hz, depth + colour), or
   ``replay_node`` for a dataset folder or a rosbag2;
2. ``pipeline_node``: depth (+ colour) -> ``points`` (PointCloud2) and ``bev/image``; with
   ``--unregistered`` (synthetic source) the camera's colour comes from a second camera and
   ``register_node`` first reprojects depth into it (a fourth process);
3. ``recorder_node``: after ``--seconds`` writes ``bev.png``, ``cloud.ply`` and ``stats.json``
   into ``--out`` (each process's output in ``--out``/logs; rcl's own log files go to a
   temporary ROS_LOG_DIR that is removed when the demo exits);
4. with ``--view``, the browser view (``python -m pointcloud_pipeline view``, on 127.0.0.1):
   its URL is printed (``view: http://127.0.0.1:8080``) and it serves for ``--seconds``.
Then stops everything and prints a summary. Exit status 0 on success; 1 with the reason when a
process failed or an output is missing; 2 for bad arguments; 130 on Ctrl-C.
"""
import argparse
import importlib.util
import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import time

from ..files import config_file
from ..ros.dds_environment import loopback_ros_env

OUTPUTS = ('bev.png', 'cloud.ply', 'stats.json')
PACKAGE_PARENT = Path(__file__).resolve().parents[2]  # what the node processes import from
VIEW_URL_PREFIX = 'view: http'  # the line the view prints with its URL


def ros_value(value):
    """A parameter value as ``--ros-args -p name:=value`` text (parsed as YAML by rcl)."""
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, str):
        return json.dumps(value)  # quoted: stays a string whatever it looks like
    return repr(value)


def node_command(module, parameters=None, params_files=(), remappings=()):
    """``python -m pointcloud_pipeline.nodes.<module> --ros-args ...``; ``remappings``:
    (topic, new topic) pairs."""
    command = [sys.executable, '-m', f'pointcloud_pipeline.nodes.{module}', '--ros-args']
    for path in params_files:
        command += ['--params-file', str(path)]
    for name, value in (parameters or {}).items():
        command += ['-p', f'{name}:={ros_value(value)}']
    for topic, new_topic in remappings:
        command += ['-r', f'{topic}:={new_topic}']
    return command


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m pointcloud_pipeline.demo',
        description='Depth camera -> pointcloud_pipeline -> out/bev.png, cloud.ply, stats.json')
    parser.add_argument('--source', default='synthetic',
                        help='synthetic (default), rgbd-dir:PATH (7-Scenes / TUM / Redwood '
                             'folder of depth PNGs + intrinsics) or bag:PATH (rosbag2 .mcap/'
                             '.db3 or bag directory)')
    parser.add_argument('--seconds', type=float, default=10.0,
                        help='recording time in seconds (default 10)')
    parser.add_argument('--rate', type=float, default=None,
                        help='frames per second of the synthetic camera (default 30) or of a '
                             'folder (default 10); bags play at their recorded rate')
    parser.add_argument('--out', type=Path, default=Path('out'),
                        help='output directory (default out/)')
    parser.add_argument('--width', type=int, default=640, help='synthetic image width')
    parser.add_argument('--height', type=int, default=480, help='synthetic image height')
    parser.add_argument('--no-rgb', action='store_true', help='depth only (XYZ cloud)')
    parser.add_argument('--unregistered', action='store_true',
                        help='synthetic: an unregistered RGB-D camera (colour from a second '
                             'camera) with register_node reprojecting depth into it')
    parser.add_argument('--depth-scale', type=float, default=None,
                        help='metres per depth unit of a folder or bag (default 0.001, mm; '
                             'TUM: 0.0002)')
    parser.add_argument('--depth-topic', default='', help='bag: depth Image topic')
    parser.add_argument('--info-topic', default='', help='bag: CameraInfo topic')
    parser.add_argument('--rgb-topic', default='', help='bag: colour Image topic')
    parser.add_argument('--view', action='store_true',
                        help='also serve the live cloud and BEV in the browser (prints the URL)')
    parser.add_argument('--view-port', type=int, default=8080,
                        help='port of --view (default 8080; the next free one when taken; 0: '
                             'any)')
    args = parser.parse_args(argv)
    if not args.seconds > 0:
        parser.error('--seconds must be > 0')
    if args.rate is not None and not 0 < args.rate <= 240:
        parser.error('--rate must be in (0, 240]')
    if args.unregistered and (args.no_rgb or args.source != 'synthetic'):
        parser.error('--unregistered needs the synthetic source with colour')
    if args.view and not 0 <= args.view_port <= 65535:
        parser.error(f'--view-port must be in 0..65535, got {args.view_port}')
    if args.view and importlib.util.find_spec('viser') is None:
        parser.error('--view needs the Python package viser: pip install viser==1.1.1')
    return args


def view_command(port):
    """The browser view's command on 127.0.0.1:``port`` (``python -m pointcloud_pipeline
    view``)."""
    return [sys.executable, '-m', 'pointcloud_pipeline', 'view', '--host', '127.0.0.1',
            '--port', str(int(port))]


def plan(args):
    """The node commands for ``args``: [(name, command), ...] in start order (three, one more
    with each of ``--unregistered`` and ``--view``). ValueError for a source that cannot be
    used."""
    from .replay import BagFrames, RgbdFolder, parse_source
    kind, path = parse_source(args.source)
    pipeline_files = [config_file('pipeline.yaml')]
    pipeline = {}
    pipeline_remappings = register = ()
    if kind == 'synthetic':
        pipeline_files.append(config_file('demo.yaml'))
        pipeline['use_rgb'] = not args.no_rgb
        source = node_command('synthetic_camera_node', {
            'width': args.width, 'height': args.height, 'rate': float(args.rate or 30.0),
            'publish_rgb': not args.no_rgb, 'registered': not args.unregistered},
            [config_file('demo.yaml')])
        if args.unregistered:
            register = (('register_node', node_command(
                'register_node', params_files=[config_file('register.yaml'),
                                               config_file('demo.yaml')])),)
            pipeline_remappings = (('depth/image_rect', 'depth_registered/image_rect'),
                                   ('depth/camera_info', 'depth_registered/camera_info'))
    elif kind == 'rgbd-dir':
        folder = RgbdFolder(path)
        pipeline['use_rgb'] = not args.no_rgb and all(c is not None for _, c in folder.frames)
        source = node_command('replay_node', {
            'source': f'rgbd-dir:{path.resolve()}', 'rate': float(args.rate or 10.0),
            'publish_rgb': pipeline['use_rgb']})
    else:
        bag = BagFrames(path, args.depth_topic or None, args.info_topic or None,
                        args.rgb_topic or None)
        pipeline['use_rgb'] = not args.no_rgb and bag.rgb_topic is not None
        source = node_command('replay_node', {
            'source': f'bag:{path.resolve()}', 'publish_rgb': pipeline['use_rgb'],
            'bag.depth_topic': bag.depth_topic, 'bag.info_topic': bag.info_topic,
            'bag.rgb_topic': bag.rgb_topic or ''})
    if args.depth_scale is not None:
        pipeline['depth_scale'] = args.depth_scale
    view = (('view', view_command(args.view_port)),) if args.view else ()
    return [
        *register,
        *view,
        ('pipeline_node', node_command('pipeline_node', pipeline, pipeline_files,
                                       pipeline_remappings)),
        ('recorder_node', node_command('recorder_node', {
            'duration': float(args.seconds), 'output_dir': str(args.out.resolve())})),
        ('source', source),
    ]


class Processes:
    """Child processes with their logs; stopped together (SIGINT, then SIGTERM, then SIGKILL)."""

    def __init__(self, env, log_dir):
        self.env = env
        self.log_dir = log_dir
        self.children = {}

    def start(self, name, command):
        """Start ``command`` as child ``name``, output to ``<log_dir>/<name>.log``. OSError when
        it cannot be started (the log file is closed again)."""
        log = open(self.log_dir / f'{name}.log', 'w')
        try:
            process = subprocess.Popen(command, env=self.env, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        except BaseException:
            log.close()
            raise
        self.children[name] = (process, log)

    def exited(self):
        """{name: return code} of children that have exited."""
        return {name: process.poll() for name, (process, _) in self.children.items()
                if process.poll() is not None}

    def stop(self):
        alive = [process for process, _ in self.children.values() if process.poll() is None]
        for sig, grace in ((signal.SIGINT, 5.0), (signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
            for process in alive:
                if process.poll() is None:
                    process.send_signal(sig)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and any(p.poll() is None for p in alive):
                time.sleep(0.05)
            alive = [p for p in alive if p.poll() is None]
            if not alive:
                break
        for _, log in self.children.values():
            log.close()

    def log_tail(self, name, lines=15):
        path = self.log_dir / f'{name}.log'
        text = path.read_text(errors='replace').splitlines() if path.is_file() else []
        return '\n'.join('    ' + line for line in text[-lines:])


class ViewAnnouncer:
    """Prints the view's URL once its process has written it to its log (called while the
    demo waits)."""

    def __init__(self, log_path):
        self.log_path = Path(log_path)
        self.url = None

    def __call__(self):
        if self.url is not None or not self.log_path.is_file():
            return
        for line in self.log_path.read_text(errors='replace').splitlines():
            if line.startswith(VIEW_URL_PREFIX):
                self.url = line.split(' ', 1)[1].strip()
                print(f'view: {self.url}', flush=True)
                return


def run_until_recorded(processes, commands, seconds, while_waiting=None):
    """Start ``commands`` ([(name, command), ...]) in order and wait until ``recorder_node``
    exits (or any process exits, or ``seconds`` + 60 s pass), calling ``while_waiting()``
    (when given) every 0.2 s. Returns None on success, else the reason; the caller stops the
    processes either way."""
    for name, command in commands:
        try:
            processes.start(name, command)
        except OSError as error:
            return f'cannot start {name}: {error}'
    deadline = time.monotonic() + seconds + 60.0
    while True:
        exited = processes.exited()
        if 'recorder_node' in exited:
            failure = None
            if exited['recorder_node'] != 0:
                failure = f'recorder_node failed (exit {exited["recorder_node"]})'
            early = {n: c for n, c in exited.items() if n != 'recorder_node'}
            if early and failure is None:
                failure = f'{", ".join(early)} exited before the end ({early})'
            return failure
        if exited:
            name, code = next(iter(exited.items()))
            return f'{name} exited early with code {code}'
        if time.monotonic() > deadline:
            return 'timed out waiting for recorder_node'
        if while_waiting is not None:
            while_waiting()
        time.sleep(0.2)


def summary(stats, out):
    """Human-readable lines of stats.json."""
    points, bev = stats.get('points', {}), stats.get('bev', {})
    pipeline = stats.get('pipeline', {})

    def ms(value):
        return 'n/a' if value is None else f'{value:.2f} ms'
    lines = [
        f"points : {points.get('received', 0)} clouds at {points.get('rate_hz', 0):.1f} Hz, "
        f"last {points.get('width', '?')}x{points.get('height', '?')} with "
        f"{points.get('finite_points', 0)} finite points"
        f"{' (XYZRGB)' if points.get('colored') else ' (XYZ)'}",
        f"bev    : {bev.get('received', 0)} images at {bev.get('rate_hz', 0):.1f} Hz, "
        f"{bev.get('width', '?')}x{bev.get('height', '?')} cells, "
        f"{bev.get('occupied_cells', 0)} occupied",
        f"pipeline node: {pipeline.get('received', 'n/a')} frames in, "
        f"{pipeline.get('published', 'n/a')} out, {pipeline.get('dropped', 'n/a')} dropped; "
        f"receive->cloud published p50 {ms(pipeline.get('latency_ms.p50'))}, "
        f"p99 {ms(pipeline.get('latency_ms.p99'))}; ->BEV published p50 "
        f"{ms(pipeline.get('bev_latency_ms.p50'))}",
        f"end to end (camera stamp -> recorder): p50 "
        f"{ms(points.get('latency_ms', {}).get('p50'))}, "
        f"p99 {ms(points.get('latency_ms', {}).get('p99'))}",
        'outputs: ' + ', '.join(str(out / name) for name in OUTPUTS),
    ]
    return lines


def main(argv=None):
    args = parse_arguments(argv)
    try:
        commands = plan(args)
    except (ValueError, OSError) as error:
        print(f'demo: {error}', file=sys.stderr)
        return 2
    out = args.out
    log_dir = out / 'logs'
    log_dir.mkdir(parents=True, exist_ok=True)
    for name in OUTPUTS:  # never show a previous run's results as this run's
        (out / name).unlink(missing_ok=True)
    env = loopback_ros_env(large_data_profile=True)
    env['PYTHONUNBUFFERED'] = '1'
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(PACKAGE_PARENT),
                                                      env.get('PYTHONPATH')]))
    processes = Processes(env, log_dir)
    chain = ' -> register_node' * args.unregistered
    print(f'demo: {args.source}{chain} -> pipeline_node -> {out}/ for {args.seconds:g} s '
          f'(ROS_DOMAIN_ID={env["ROS_DOMAIN_ID"]}, DDS on loopback, logs in {log_dir}/)',
          flush=True)
    announcer = ViewAnnouncer(log_dir / 'view.log') if args.view else None
    try:
        failure = run_until_recorded(processes, commands, args.seconds, announcer)
    except KeyboardInterrupt:
        print('demo: interrupted, stopping the nodes', file=sys.stderr)
        processes.stop()
        return 130
    processes.stop()
    stats_path = out / 'stats.json'
    if stats_path.is_file():
        stats = json.loads(stats_path.read_text())
        for line in summary(stats, out):
            print(line)
        for problem in stats.get('problems', []):
            print(f'problem: {problem}')
    if failure is None:
        missing = [name for name in OUTPUTS if not (out / name).is_file()]
        if missing:
            failure = f'missing outputs: {", ".join(missing)}'
    if failure:
        print(f'demo FAILED: {failure}', file=sys.stderr)
        for name in processes.children:
            print(f'--- last lines of {log_dir / (name + ".log")}:\n{processes.log_tail(name)}',
                  file=sys.stderr)
        return 1
    print('demo: ok')
    return 0


if __name__ == '__main__':
    sys.exit(main())
