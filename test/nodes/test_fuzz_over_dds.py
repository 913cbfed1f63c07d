"""Fuzzing over real DDS (loopback): hypothesis-generated malformed Image, CameraInfo and
PointCloud2 messages interleaved with good frames, sent to pipeline_node, bev_node and
depth_estimator_node running as subprocesses (ROS_LOG_DIR in a temporary directory, output
captured). Each run asserts that the node is alive at the end, that every good frame gave the
reference's cloud / image / depth, that every bad message was counted under its reason on
/diagnostics (exact totals), and that the node logged no traceback.

Small here (part of ``make test``); ``make fuzz`` (bench/fuzz.py) sends >= 10,000 malformed
messages per node. What is left out and why: test/fuzz_messages.py.
"""
import pytest

from optional import require

require('hypothesis')

from hypothesis import HealthCheck, Phase, given, settings, strategies as st  # noqa: E402
import rclpy  # noqa: E402
from rclpy.node import Node  # noqa: E402

import fuzz_messages as fuzz  # noqa: E402
from reference_monodepth import tinygrad_unavailable_reason  # noqa: E402
from ros_helpers import spinning  # noqa: E402

pytestmark = pytest.mark.ros

EXAMPLES = 3  # hypothesis examples per node, each a list of messages
FUZZ_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                         phases=[Phase.generate], derandomize=True,
                         suppress_health_check=list(HealthCheck))


@pytest.fixture(scope='module')
def client():
    """A client node of its own rclpy context, spinning in the background."""
    context = rclpy.Context()
    rclpy.init(context=context)
    node = Node('fuzz_client', context=context)
    try:
        with spinning(context, node):
            yield node
    finally:
        context.try_shutdown()


def check_run(runner, result):
    """The node is alive, counted every bad message under its reason (exact totals), converted
    every good frame to the reference's output, and logged no traceback."""
    process = runner.process
    assert process.alive(), process.output()[-4000:]
    assert result.wrong_frames == []
    assert result.counted_drops == dict(result.expected_drops)
    assert result.published == result.good and result.skipped == 0
    assert result.rejected_infos_counted == result.rejected_infos_expected
    assert process.tracebacks() == []


def run_examples(runner, strategy, size):
    @FUZZ_SETTINGS
    @given(st.lists(strategy, min_size=size, max_size=size))
    def send(cases):
        result = runner.run(cases)
        check_run(runner, result)

    try:
        send()  # then the node must stop cleanly on SIGINT (exit code 0)
        result = runner.result
        assert result.malformed >= EXAMPLES * size // 3 and result.good > 0
    finally:
        code = runner.process.stop()
        output = runner.process.output()
        runner.process.remove()
    assert code == 0, output[-4000:]


def test_pipeline_node_survives_and_counts_fuzzed_depth_colour_and_camera_info(client):
    runner = fuzz.PipelineRunner(client).start()
    run_examples(runner, fuzz.pipeline_cases(), 60)


def test_bev_node_survives_and_counts_fuzzed_clouds(client):
    runner = fuzz.BevRunner(client).start()
    run_examples(runner, fuzz.bev_cases(), 60)


@pytest.mark.skipif(bool(tinygrad_unavailable_reason()),
                    reason=tinygrad_unavailable_reason() or '')
def test_depth_estimator_survives_and_counts_fuzzed_images(client, tmp_path):
    require('onnx')
    require('onnxruntime')
    model, profile = fuzz.estimator_model(tmp_path)
    runner = fuzz.EstimatorRunner(client, model, profile).start()
    run_examples(runner, fuzz.estimator_cases(), 30)
    # the frame-checking path ran (not every bad image was replaced before being checked)
    assert runner.result.counted_drops.get('bad_frame', 0) > 0

