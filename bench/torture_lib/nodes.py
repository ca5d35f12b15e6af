"""The node processes a torture run talks to: each started as a user does (`harness.NodeProcess`:
`python -m lang_seg_ros.ros.node`, its own process and session), one per input kind (raw `image`
with depth and the cloud; `image/compressed` with the finisher thread), with this process's
publishers, service clients and output subscriptions for it (`Target`), its RSS and its SIGINT.
"""
from __future__ import annotations

import importlib
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import harness  # first: sets this run's own ROS_DOMAIN_ID, localhost discovery, the Fast DDS profile
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import String

from lang_seg_ros.srv import Refer, SetLabels
from torture_lib.report import NodeReport

if TYPE_CHECKING:
    from torture_lib.invariants import OutputChecker
    from torture_lib.runner import Options

OUT_QOS = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
SEND_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
STORM_QOS = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
#: Topics the node publishes that are not per-frame outputs.
NOT_FRAME_OUTPUTS = ("current_labels", "label_info", "/diagnostics", "/rosout", "/parameter_events")  # latched or not per frame
#: Counted in the node's log after SIGINT.
LOG_NEEDLES = ("RuntimeWarning", "Traceback", "terminate called", "bad_image", "bad_depth", "bad_labels",
               "bad_expression", "model_error", "internal", "keeping the previous model")


class Target:
    """One node process and what this process knows about its inputs and outputs."""

    def __init__(self, name: str, proc: harness.NodeProcess, compressed: bool, depth: bool) -> None:
        self.name, self.proc, self.compressed, self.depth = name, proc, compressed, depth
        self.report = NodeReport(name=name)
        self.valid: dict[tuple[int, int], tuple[str, int, int, float]] = {}  # stamp -> frame_id, w, h, t_sent
        self.bad: dict[tuple[int, int], str] = {}
        self.valid_depth: set[tuple[int, int]] = set()
        self.bad_depth: set[tuple[int, int]] = set()
        self.seen: dict[str, set] = {}
        self.answers: dict[tuple[int, int], float] = {}  # segmentation stamp -> receive time (monotonic)
        self.last_stamp = (0, 0)
        self.last_sequence = 0
        self.label_ids: dict[int, tuple[str, ...]] = {}
        self.pubs: dict[str, Any] = {}
        self.clients: dict[str, Any] = {}
        self.subs: list = []
        self.rss: list[tuple[float, float, float]] = []  # (t, VmRSS MiB, VmHWM MiB)
        self.rss_from = 0.0  # monotonic: the samples the peak counts (set by `reset_hwm`)

    def status(self) -> tuple[float, float] | None:
        """(VmRSS, VmHWM) in MiB; None when the process is gone."""
        try:
            text = Path(f"/proc/{self.proc.proc.pid}/status").read_text()
        except OSError:
            return None
        values = {}
        for line in text.splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                values[line[:5]] = int(line.split()[1]) / 1024
        return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)

    def reset_hwm(self) -> None:
        """The start RSS; VmHWM := VmRSS where /proc/PID/clear_refs allows it; samples count from now."""
        status = self.status()
        self.report.start_rss_mib = status[0] if status else 0.0
        try:
            Path(f"/proc/{self.proc.proc.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
            self.report.hwm_reset = True
        except OSError:
            self.report.hwm_reset = False
        self.rss_from = time.monotonic()

    def peak_rss(self) -> float:
        """max(VmHWM since `reset_hwm` where it was reset, VmRSS sampled since), MiB."""
        status = self.status()
        samples = [rss for (when, rss, _) in self.rss if when >= self.rss_from]
        peak = max(samples, default=0.0)
        if status and self.report.hwm_reset:
            peak = max(peak, status[1])
        return peak

    def stop(self) -> None:
        """SIGINT (SIGKILL after 30 s): the exit code, the seconds it took, the warnings in its log."""
        r = self.report
        if self.proc.proc.poll() is not None:
            r.exit_code = self.proc.proc.returncode
            return
        t0 = time.monotonic()
        r.exit_code = self.proc.stop(timeout=30.0)
        r.exit_seconds = time.monotonic() - t0
        log = self.proc.log()
        for needle in LOG_NEEDLES:
            count = log.count(needle)
            if count:
                r.log_warnings[needle] = count


def start_targets(options: Options, checkpoint: str) -> Iterator[Target]:
    """One node process per `options.inputs` ("raw": depth and every 3D output too; "compressed": frames
    finished on the second thread, as on a GPU), loading `checkpoint`; logs in OUT/node_logs. Each
    is yielded as soon as its process runs, so that the caller can stop it if a later one fails."""
    fast = {k: v for k, v in harness.FAST_PARAMS.items() if options.model != "default" or k != "working_size"}
    base = {**fast, "checkpoint": checkpoint, "overlap_postprocessing": "off",  # default model: config's working_size
            "max_image_pixels": 1 << 24, **options.node_params}
    logs = options.out / "node_logs"
    logs.mkdir(parents=True, exist_ok=True)
    for name in options.inputs:
        params = dict(base)
        if name == "raw":
            params.update(use_depth=True, publish_cloud=True, cloud_stride=4, depth_slop=0.02,
                          publish_aligned_points=True, traversable_labels=["floor", "road"])  # every 3D output
        else:  # and frames finished on the second thread, as on a GPU
            params.update(use_compressed=True, overlap_postprocessing="on")
        namespace = f"/torture_{os.getpid()}_{name}"
        proc = harness.NodeProcess("lang_seg_ros.ros.node", logs / f"{name}.log", namespace, params)
        target = Target(name, proc, compressed=name != "raw", depth=name == "raw")
        target.report.pid, target.report.log = proc.proc.pid, str(proc.log_path)
        yield target


def wire(node, t: Target) -> None:
    """`t`'s publishers (image or image/compressed, camera_info, labels, referring_expression; depth
    and depth/camera_info) and service clients (set_labels, refer, set_parameters) on `node`."""
    n, topic = node, t.proc.topic
    t.pubs = {
        "image": n.create_publisher(CompressedImage if t.compressed else Image,
                                    topic("image/compressed" if t.compressed else "image"), SEND_QOS),
        "camera_info": n.create_publisher(CameraInfo, topic("camera_info"), SEND_QOS),
        "labels": n.create_publisher(String, topic("labels"), SEND_QOS),
        "referring_expression": n.create_publisher(String, topic("referring_expression"), SEND_QOS),
    }
    if t.depth:
        t.pubs["depth"] = n.create_publisher(Image, topic("depth"), SEND_QOS)
        t.pubs["depth/camera_info"] = n.create_publisher(CameraInfo, topic("depth/camera_info"), SEND_QOS)
    from rcl_interfaces.srv import SetParameters
    t.clients = {"set_labels": n.create_client(SetLabels, topic("set_labels")),
                 "refer": n.create_client(Refer, topic("refer")),
                 "parameters": n.create_client(SetParameters, f"{t.proc.fqn}/set_parameters"),
                 # Storms: this side's response queue must hold them too (rclpy's default, 10,
                 # overwrites answers the caller has not taken yet: lost here, not in the node).
                 "storm_set_labels": n.create_client(SetLabels, topic("set_labels"), qos_profile=STORM_QOS),
                 "storm_refer": n.create_client(Refer, topic("refer"), qos_profile=STORM_QOS)}


def subscribe_outputs(node, t: Target, checker: OutputChecker) -> None:
    """Every topic the node publishes (from the graph), but the label set and diagnostics, to
    `checker.on_output`; `current_labels` to `checker.on_label_set`."""
    ns, name = t.proc.namespace, t.proc.name
    topics: dict = {}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # until discovery has settled: the same list twice, 1 s apart
        try:
            now = dict(node.get_publisher_names_and_types_by_node(name, ns))
        except Exception:  # noqa: BLE001 - the node is not in the graph yet
            now = {}
        if now == topics and any(k.endswith("/segmentation") for k in now):
            break
        topics = now
        time.sleep(1.0)
    for topic_name, types in topics.items():
        if topic_name in NOT_FRAME_OUTPUTS or topic_name.endswith(tuple("/" + x for x in NOT_FRAME_OUTPUTS)):
            continue
        pkg, _, type_name = types[0].split("/")
        msg_type = getattr(importlib.import_module(f"{pkg}.msg"), type_name)
        short = topic_name[len(ns.rstrip("/")) + 1:] if topic_name.startswith(ns) else topic_name
        t.subs.append(node.create_subscription(msg_type, topic_name, checker.on_output(t, short), OUT_QOS))
    from lang_seg_ros.msg import LabelSet
    t.subs.append(node.create_subscription(LabelSet, t.proc.topic("current_labels"), checker.on_label_set(t),
                                            harness.LATCHED))
