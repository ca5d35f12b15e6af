"""The managed (lifecycle) node over DDS: transitions, compressed input, its declared parameters."""
from __future__ import annotations

import array
import os
import random

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed: run scripts/setup_ros.sh (ROS 2 Jazzy wheels)")

import yaml  # noqa: E402
from lifecycle_msgs.msg import State, Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from sensor_msgs.msg import CompressedImage  # noqa: E402

from harness import ROOT, Client, pattern_image, spin_for, start_node  # noqa: E402
from lang_seg_ros.ros.image_conversion import numpy_to_compressed  # noqa: E402


@pytest.fixture(scope="module")
def managed(ros, node_checkpoint, tmp_path_factory):
    """The lifecycle node, not autostarted, reading CompressedImage."""
    proc = start_node(tmp_path_factory, node_checkpoint, f"/m{os.getpid()}_{random.randint(0, 99999)}",
                      module="lang_seg_ros.ros.lifecycle_node", autostart=False, use_compressed=True)
    client = Client(ros, proc)
    try:
        yield client
    finally:
        client.close()
        proc.stop()


def state(client) -> int:
    """The node's lifecycle state (a query: asked again if DDS loses the answer, `Client.call`)."""
    return client.call(GetState, f"{client.proc.fqn}/get_state", GetState.Request(), timeout=60.0,
                       attempts=3).current_state.id


def transition(client, transition_id: int) -> bool:
    request = ChangeState.Request(transition=Transition(id=transition_id))
    return client.call(ChangeState, f"{client.proc.fqn}/change_state", request, timeout=60.0).success


def compressed(client, fmt: str = "jpeg") -> CompressedImage:
    msg = numpy_to_compressed(pattern_image(60, 80), fmt, color_order="rgb")
    msg.header.stamp = client.make_image().header.stamp
    msg.header.frame_id = "cam"
    return msg


def assert_no_output(client, msg, seconds: float = 1.0) -> None:
    client.publish(msg)
    spin_for(client.executor, seconds)
    assert not client.out.by_stamp("segmentation", msg.header)


def test_transitions_gate_the_outputs_and_compressed_images_are_read(managed):
    assert state(managed) == State.PRIMARY_STATE_UNCONFIGURED
    assert_no_output(managed, compressed(managed))

    assert transition(managed, Transition.TRANSITION_CONFIGURE)
    assert state(managed) == State.PRIMARY_STATE_INACTIVE
    assert managed.proc.wait_log("model loaded", timeout=1.0)
    assert_no_output(managed, compressed(managed))

    assert transition(managed, Transition.TRANSITION_ACTIVATE)
    for fmt in ("jpeg", "png"):
        msg = compressed(managed, fmt)
        out = managed.send(msg)
        assert out is not None, f"no output for a {fmt} frame"
        assert out.header.frame_id == "cam" and (out.mask.width, out.mask.height) == (80, 60)

    # a CompressedImage that is not an image: a log line, no output, the next frame answered
    start = len(managed.proc.log())
    bad = compressed(managed)
    bad.data = array.array("B", b"\xff\xd8\xff\xe0 definitely not a jpeg")
    for _ in range(3):
        managed.publish(bad)
        if managed.proc.wait_log(r"(is not an image OpenCV can decode|CompressedImage .* refused)", timeout=3.0,
                                 start=start):
            break
    else:
        pytest.fail(managed.proc.log()[start:])
    assert managed.send(compressed(managed)) is not None
    assert not managed.out.by_stamp("segmentation", bad.header)

    assert transition(managed, Transition.TRANSITION_DEACTIVATE)
    assert state(managed) == State.PRIMARY_STATE_INACTIVE
    assert_no_output(managed, compressed(managed))

    assert transition(managed, Transition.TRANSITION_CLEANUP)
    assert state(managed) == State.PRIMARY_STATE_UNCONFIGURED
    assert transition(managed, Transition.TRANSITION_CONFIGURE)
    assert transition(managed, Transition.TRANSITION_ACTIVATE)
    assert managed.send(compressed(managed)) is not None


def test_declared_parameters_match_the_yaml(managed):
    """Every parameter the running node declares is in config/segment.yaml and vice versa."""
    from rcl_interfaces.srv import ListParameters

    response = managed.call(ListParameters, f"{managed.proc.fqn}/list_parameters", ListParameters.Request(),
                            timeout=30.0, attempts=3)
    builtin = {"use_sim_time", "start_type_description_service"}  # rclpy's own
    declared = set(response.result.names) - builtin
    config = yaml.safe_load((ROOT / "config" / "segment.yaml").read_text())["/**"]["ros__parameters"]
    assert declared == set(config)


def test_two_sigints_as_ros2_launch_sends_them_exit_cleanly(ros, node_checkpoint, tmp_path_factory):
    """A terminal Ctrl-C under ros2 launch: the terminal's SIGINT, then launch's 100 ms later. On a
    node of its own, once it answers: the module's `managed` node must outlive every test, whatever
    order they run in (pytest-randomly shuffles them)."""
    proc = start_node(tmp_path_factory, node_checkpoint, f"/s{os.getpid()}_{random.randint(0, 99999)}",
                      module="lang_seg_ros.ros.lifecycle_node", autostart=False, use_compressed=True)
    client = Client(ros, proc)
    try:
        assert state(client) == State.PRIMARY_STATE_UNCONFIGURED  # up and serving
        assert proc.stop(repeat_after=0.1) == 0, proc.log()[-3000:]
        assert "Traceback" not in proc.log()
    finally:
        client.close()
        if proc.proc.poll() is None:
            proc.stop()


def test_autostart_with_an_unloadable_checkpoint_reports_it_and_recovers(ros, node_checkpoint, tmp_path_factory,
                                                                         tmp_path):
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x00" * 64)
    proc = start_node(tmp_path_factory, broken, f"/a{os.getpid()}_{random.randint(0, 99999)}",
                      module="lang_seg_ros.ros.lifecycle_node")  # autostart: true from the YAML
    client = Client(ros, proc)
    try:
        assert proc.wait_log(r"could not load checkpoint .*broken.safetensors", timeout=60.0), proc.log()
        assert state(client) == State.PRIMARY_STATE_UNCONFIGURED  # configure failed, the node lives on
        assert all(r.successful for r in client.set_parameters(checkpoint=str(node_checkpoint)))
        assert transition(client, Transition.TRANSITION_CONFIGURE)
        assert transition(client, Transition.TRANSITION_ACTIVATE)
        assert client.send(client.make_image()) is not None
    finally:
        client.close()
        assert proc.stop() == 0, proc.log()[-3000:]
