"""Fixtures of the ROS tests (helpers in harness.py). Without rclpy every module here skips."""
from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import pytest

# `from harness import ...` in the test modules, whatever pytest's import mode
sys.path.insert(0, str(Path(__file__).resolve().parent))

try:
    import rclpy
except ImportError:  # the test modules skip themselves with the reason (pytest.importorskip)
    rclpy = None

if rclpy is not None:
    from rclpy.executors import SingleThreadedExecutor

    from harness import serving


class _Ros:
    def __init__(self) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context, signal_handler_options=rclpy.signals.SignalHandlerOptions.NO)
        self.node = rclpy.create_node("lang_seg_test", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


@pytest.fixture(scope="session")
def ros():
    """This process's ROS participant: a context, a node and an executor, for the session."""
    r = _Ros()
    yield r
    r.close()


@pytest.fixture(scope="session")
def node_checkpoint(tmp_path_factory) -> Path:
    """A tiny random LSeg checkpoint (the lead's `lseg_tiny`) for the node to load."""
    torch = pytest.importorskip("torch")
    from lang_seg_ros.model import build_model, save_checkpoint

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("node_ckpt") / "tiny.safetensors"
    save_checkpoint(build_model("lseg_tiny").eval(), path)
    return path


@pytest.fixture(scope="module")
def seg(ros, node_checkpoint, tmp_path_factory):
    """The plain node, started once per test module, with a ready client; stopped (SIGINT) after.

    Frames are finished on the finisher thread (`overlap_postprocessing: on`, what a GPU gets by
    default); the lifecycle, start-up and replay tests finish them on the worker (off)."""
    with serving(ros, tmp_path_factory, node_checkpoint, f"/t{os.getpid()}_{random.randint(0, 99999)}",
                 overlap_postprocessing="on") as client:
        yield client
