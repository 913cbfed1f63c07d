"""Message fuzzing over real DDS at size (``make fuzz``): >= N malformed messages per node.

Usage: python bench/fuzz.py [--malformed 10000] [--nodes pipeline bev estimator] [--seed 0]

Generates hypothesis cases (test/fuzz_messages.py) until each node got at least ``--malformed``
malformed messages, interleaved with good frames, sends them over loopback DDS to the node
running as a subprocess, and prints per node: messages sent per kind, drops counted per reason
on /diagnostics against those expected, good frames and wrong ones, tracebacks, the exit code.
Exits 1 when any node crashed, miscounted, converted a good frame wrongly or logged a traceback.
"""
import argparse
from pathlib import Path
import shutil
import sys
import tempfile
import time

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent))
sys.path.insert(1, str(BENCH_DIR.parent / 'test'))

from pointcloud_pipeline.ros.dds_environment import apply_loopback_ros_env  # noqa: E402

CHUNK = 500  # cases generated and sent at a time


def run_node(name, runner, strategy, malformed, random_seed):
    """Send chunks of generated cases until ``malformed`` bad messages went out; True if all
    checks hold."""
    import fuzz_messages as fuzz
    start = time.monotonic()
    result = runner.result
    while result.malformed < malformed:
        result = runner.run(fuzz.generate(strategy, CHUNK, random_seed))
        random_seed += 1
        print(f'  {name}: {result.malformed} malformed, {result.good} good '
              f'({time.monotonic() - start:.0f} s)', flush=True)
        if not runner.process.alive():
            break
    alive = runner.process.alive()
    tracebacks = runner.process.tracebacks()
    code = runner.process.stop()
    expected = dict(sorted(result.expected_drops.items()))
    counted = dict(sorted(result.counted_drops.items()))
    print(f'{name}: {result.malformed} malformed messages, {result.good} good frames in '
          f'{time.monotonic() - start:.0f} s; alive at the end: {alive}, exit code {code}')
    print('  sent by kind: ' + ', '.join(f'{kind} {count}'
                                         for kind, count in sorted(result.sent.items())))
    print(f'  {"reason":<24}{"expected":>10}{"counted":>10}')
    for reason in sorted(set(expected) | set(counted)):
        print(f'  {reason:<24}{expected.get(reason, 0):>10}{counted.get(reason, 0):>10}')
    if result.rejected_infos_expected:
        print(f'  {"camera_info_rejected":<24}{result.rejected_infos_expected:>10}'
              f'{result.rejected_infos_counted:>10}  (event; includes the barrier infos)')
    if result.unexamined:
        print(f'  ({result.unexamined} bad images were replaced by a newer one before the '
              f'estimator checked them: counted busy, the node\'s rule)')
    print(f'  published {result.published} of {result.good} good, skipped {result.skipped}, '
          f'wrong good frames {len(result.wrong_frames)}, tracebacks {len(tracebacks)}')
    for line in result.wrong_frames[:10] + tracebacks[:10]:
        print(f'    {line}')
    ok = (alive and code == 0 and not tracebacks and not result.wrong_frames and
          expected == counted and result.published == result.good and not result.skipped and
          result.rejected_infos_counted == result.rejected_infos_expected)
    if ok:
        runner.process.remove()
    else:
        print(f'  node output and ROS logs kept in {runner.process.folder}')
    return ok


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--malformed', type=int, default=10_000,
                        help='malformed messages per node (default 10000)')
    parser.add_argument('--nodes', nargs='*', default=['pipeline', 'bev', 'estimator'],
                        choices=['pipeline', 'bev', 'estimator'])
    parser.add_argument('--seed', type=int, default=0, help='first hypothesis seed')
    args = parser.parse_args()
    apply_loopback_ros_env()
    import rclpy
    from rclpy.node import Node

    import fuzz_messages as fuzz
    from ros_helpers import spinning
    context = rclpy.Context()
    rclpy.init(context=context)
    client = Node('fuzz_bench_client', context=context)
    results = {}
    with spinning(context, client):
        if 'pipeline' in args.nodes:
            results['pipeline_node'] = run_node(
                'pipeline_node', fuzz.PipelineRunner(client).start(), fuzz.pipeline_cases(),
                args.malformed, args.seed)
        if 'bev' in args.nodes:
            results['bev_node'] = run_node('bev_node', fuzz.BevRunner(client).start(),
                                           fuzz.bev_cases(), args.malformed, args.seed)
        if 'estimator' in args.nodes:
            from reference_monodepth import tinygrad_unavailable_reason
            reason = tinygrad_unavailable_reason()
            if reason:
                print(f'depth_estimator_node: skipped ({reason})')
            else:
                folder = Path(tempfile.mkdtemp(prefix='fuzz_model_'))
                model, profile = fuzz.estimator_model(folder)
                try:
                    results['depth_estimator_node'] = run_node(
                        'depth_estimator_node',
                        fuzz.EstimatorRunner(client, model, profile).start(),
                        fuzz.estimator_cases(), args.malformed, args.seed)
                finally:
                    shutil.rmtree(folder, ignore_errors=True)
    context.try_shutdown()
    print('fuzz: ' + ', '.join(f'{name} {"ok" if ok else "FAILED"}'
                               for name, ok in results.items()))
    return 0 if all(results.values()) else 1


if __name__ == '__main__':
    sys.exit(main())
