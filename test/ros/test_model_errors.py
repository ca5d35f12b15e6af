"""A model that fails on a frame (e.g. CUDA out of memory) is skipped with a log line; log throttling.

The node runs in this process here (real rclpy) so that its model can be swapped for one that
fails on demand; everything else about the node is tested from another process over DDS.
"""
from __future__ import annotations

import os
import random
import time

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed: run scripts/setup_ros.sh (ROS 2 Jazzy wheels)")

from rclpy.parameter import Parameter  # noqa: E402
from rclpy.serialization import serialize_message  # noqa: E402

from harness import make_image  # noqa: E402


class _FailingSegmenter:
    """Stands in for the model only: the forward pass raises what a GPU out of memory raises."""

    device = "cuda:0"
    working_size, scales, flip, threshold = 480, None, False, 0.0

    def segment_sets_batch(self, *args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_a_failing_frame_is_skipped_with_a_log_line_and_the_next_one_served(ros, node_checkpoint, capfd):
    from lang_seg_ros.ros.node import SegmentationNode

    overrides = [Parameter("checkpoint", value=str(node_checkpoint)), Parameter("device", value="cpu"),
                 Parameter("cpu_threads", value=1), Parameter("log_throttle_period", value=0.0),
                 Parameter("publish_overlay", value=False)]
    node = SegmentationNode("lang_seg", namespace=f"/inproc{os.getpid()}_{random.randint(0, 99999)}",
                            context=ros.context, parameter_overrides=overrides)
    try:
        deadline = time.monotonic() + 60
        while node._pipeline is None and time.monotonic() < deadline:
            time.sleep(0.05)
        pipeline = node._pipeline
        assert pipeline is not None, "the model did not load"
        camera = node._cameras[0]  # the single camera of a node without `cameras`

        def process_one() -> None:  # one round of the worker with this camera's frame
            node._process_round([(camera, serialize_message(make_image(node)), False)])

        process_one()
        assert node._finisher.drain()
        assert camera.sequence == 1 and node._stats.processed == 1

        model, pipeline.segmenter = pipeline.segmenter, _FailingSegmenter()
        process_one()
        assert node._finisher.drain()
        assert node._stats.model_errors == 1 and camera.sequence == 1
        assert "[model_error]" in capfd.readouterr().err

        pipeline.segmenter = model
        process_one()
        assert node._finisher.drain()
        assert camera.sequence == 2 and node._stats.processed == 2
    finally:
        node.destroy_node()


def test_warnings_are_throttled_per_kind():
    from lang_seg_ros.ros.diagnostics import Throttle as _Throttle

    lines = []

    class Log:
        def warning(self, text):
            lines.append(text)

    throttle = _Throttle(Log(), period=0.2)
    for _ in range(5):
        throttle("warning", "bad_image", "frame ignored")
    throttle("warning", "bad_labels", "labels refused")
    assert lines == ["[bad_image] frame ignored", "[bad_labels] labels refused"]
    time.sleep(0.25)
    throttle("warning", "bad_image", "frame ignored")
    assert lines[-1] == "[bad_image] frame ignored (4 more of this kind since the last message)"
