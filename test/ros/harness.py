"""Helpers for the ROS tests: the real node in its own process, talked to over DDS.

No mock of rclpy anywhere: the node runs as `python -m lang_seg_ros.ros.node` (a separate
process, its own session so signals reach only it), this process is a second ROS participant.
Isolation: a random ROS_DOMAIN_ID per test session, discovery limited to this host.
"""
from __future__ import annotations

import contextlib

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

import lang_seg_ros.ros  # noqa: F401,E402 - puts the generated messages on the package path

try:
    import lang_seg_ros.msg  # noqa: F401
except ImportError as exc:  # rclpy present but the messages not built: that is a set-up error, not a skip
    raise RuntimeError(f"lang_seg_ros.msg does not import ({exc}): run scripts/setup_ros.sh") from exc

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from lang_seg_ros.ros.image_conversion import image_to_numpy, numpy_to_image  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
#: Services whose request can be sent twice with the effect of once (`Client.call` repeats them
#: when an answer is lost): a parameter set applied again succeeds and changes nothing, a label set
#: again is "unchanged", a query or a `refer` is answered again (a `refer` costs one more model
#: pass). Lifecycle transitions are not: a second "activate" fails.
REPEATABLE = frozenset({"SetParameters", "SetLabels", "Refer", "GetState", "GetParameters", "ListParameters"})
FASTDDS_PROFILE = ROOT / "config" / "fastdds_shm.xml"

# Before any participant exists: this session's own DDS domain, on this host only.
os.environ["ROS_DOMAIN_ID"] = str(random.SystemRandom().randint(1, 100))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["FASTRTPS_DEFAULT_PROFILES_FILE"] = str(FASTDDS_PROFILE)
os.environ["RCUTILS_LOGGING_BUFFERED_STREAM"] = "0"
os.environ["RCUTILS_COLORIZED_OUTPUT"] = "0"
os.environ["PYTHONUNBUFFERED"] = "1"

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
START_TIMEOUT = 60.0  # s: importing torch and loading the tiny model on 2 busy cores


def spin_until(executor, predicate: Callable[[], Any], timeout: float = 10.0, step: float = 0.02) -> Any:
    """Spin `executor` until `predicate()` is truthy (returned) or `timeout` s pass (returns the last value)."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=step)
        value = predicate()
    return value


def spin_for(executor, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.02)


def pattern_image(height: int = 120, width: int = 160) -> np.ndarray:
    """(H, W, 3) uint8 RGB: colour stripes and a white box, so a random model gives some structure."""
    image = np.zeros((height, width, 3), np.uint8)
    quarter = width // 4
    image[:, :quarter] = (255, 0, 0)
    image[:, quarter:2 * quarter] = (0, 255, 0)
    image[:, 2 * quarter:3 * quarter] = (0, 0, 255)
    image[height // 4:3 * height // 4, 3 * quarter:] = (255, 255, 255)
    return image


_STAMP_LOCK = threading.Lock()
_LAST_STAMP = [0]


def unique_stamp(node):
    """Now on the node's clock, strictly increasing across calls (outputs are matched by stamp)."""
    with _STAMP_LOCK:
        ns = max(node.get_clock().now().nanoseconds, _LAST_STAMP[0] + 1000)
        _LAST_STAMP[0] = ns
    from builtin_interfaces.msg import Time
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def make_image(node, array: np.ndarray | None = None, encoding: str = "rgb8", frame_id: str = "camera_optical",
               height: int = 120, width: int = 160) -> Image:
    """A synthetic sensor_msgs/Image with a fresh unique stamp."""
    if array is None:
        array = pattern_image(height, width)
    msg = numpy_to_image(array, encoding)
    msg.header.stamp = unique_stamp(node)
    msg.header.frame_id = frame_id
    return msg


def stamp_key(header) -> tuple[int, int]:
    return (header.stamp.sec, header.stamp.nanosec)


class NodeProcess:
    """The node in its own process and session; output (stdout + stderr) goes to a log file."""

    def __init__(self, module: str, log_path: Path, namespace: str, params: dict[str, Any],
                 name: str = "lang_seg", extra_args: Sequence[str] = ()) -> None:
        self.namespace = namespace
        self.name = name
        self.log_path = log_path
        args = [sys.executable, "-m", module, "--ros-args", "-r", f"__ns:={namespace}", "-r", f"__node:={name}",
                "--params-file", str(ROOT / "config" / "segment.yaml")]
        for key, value in params.items():
            args += ["-p", f"{key}:={_param_text(value)}"]
        args += list(extra_args)  # ROS arguments as a user types them, after the parameters
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=str(ROOT), env=dict(os.environ), start_new_session=True)

    @property
    def fqn(self) -> str:
        return f"{self.namespace.rstrip('/')}/{self.name}"

    def topic(self, name: str) -> str:
        return f"{self.namespace.rstrip('/')}/{name}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, pattern: str, timeout: float = 10.0, start: int = 0) -> re.Match | None:
        """Wait until `pattern` (regex) appears in the log after character `start`."""
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.log()[start:])
            if match or time.monotonic() > deadline or self.proc.poll() is not None:
                return match
            time.sleep(0.05)

    def signal(self, sig: int = signal.SIGINT) -> None:
        os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 20.0, repeat_after: float | None = None) -> int:
        """SIGINT, wait; SIGKILL if it hangs (then the test that cares fails on the code).
        repeat_after: send a second SIGINT this many seconds after the first, as a terminal
        Ctrl-C under `ros2 launch` does (the terminal's, then the one launch forwards)."""
        if self.proc.poll() is None:
            self.signal(signal.SIGINT)
            if repeat_after is not None:
                time.sleep(repeat_after)
                if self.proc.poll() is None:
                    self.signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


def _param_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_param_text(v) for v in value) + "]"
    if isinstance(value, str):  # a YAML single-quoted scalar: commas, colons etc. stay text
        return "'" + value.replace("'", "''") + "'"
    return str(value)


class Collector:
    """Subscriptions to a node's outputs; messages kept by topic (and by input stamp)."""

    def __init__(self, test_node, node_proc: NodeProcess) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseStamped
        from sensor_msgs.msg import CameraInfo, PointCloud2
        from vision_msgs.msg import Detection2DArray, Detection3DArray, LabelInfo
        from visualization_msgs.msg import MarkerArray

        from lang_seg_ros.msg import LabelSet, ReferringRegion, Segmentation

        self.node = test_node
        self.proc = node_proc
        self.messages: dict[str, list] = {}
        self.arrivals: list[tuple[str, Any]] = []
        self._subs = []
        topics = {
            "segmentation": Segmentation, "label_mask": Image, "overlay": Image,
            "segmentation/camera_info": CameraInfo, "referring/region": ReferringRegion,
            "referring/mask": Image, "panoptic": Image, "cloud": PointCloud2, "traversable_mask": Image,
            "obstacles": PointCloud2, "regions/markers": MarkerArray, "confidence": Image,
            "aligned_points": PointCloud2, "detections": Detection2DArray, "detections_3d": Detection3DArray,
            "referring/points": PointCloud2, "referring/pose": PoseStamped,
        }
        for name, msg_type in topics.items():
            self._subs.append(test_node.create_subscription(msg_type, node_proc.topic(name), self._cb(name), RELIABLE))
        for name, msg_type in (("current_labels", LabelSet), ("label_info", LabelInfo)):
            self._subs.append(test_node.create_subscription(msg_type, node_proc.topic(name), self._cb(name), LATCHED))
        self._subs.append(test_node.create_subscription(DiagnosticArray, "/diagnostics", self._diag_cb, RELIABLE))

    def _cb(self, name: str):
        def store(msg):
            self.messages.setdefault(name, []).append(msg)
            self.arrivals.append((name, msg))  # every topic in the order it arrived here
        return store

    def _diag_cb(self, msg) -> None:
        for status in msg.status:
            if status.name.startswith(self.proc.fqn + ":"):
                self.messages.setdefault("diagnostics", []).append(status)

    def get(self, name: str) -> list:
        return self.messages.setdefault(name, [])

    def by_stamp(self, name: str, header) -> list:
        """Messages of topic `name` for the input stamped like `header` (a MarkerArray: its first marker's)."""
        key = stamp_key(header)
        return [m for m in self.get(name)
                if stamp_key(m.header if hasattr(m, "header") else m.markers[0].header) == key]

    def close(self) -> None:
        for sub in self._subs:
            self.node.destroy_subscription(sub)


class Client:
    """The test's side of one node process: an image publisher, output collector and helpers."""

    def __init__(self, ros, node_proc: NodeProcess, compressed: bool = False) -> None:
        from sensor_msgs.msg import CompressedImage

        self.ros = ros
        self.node = ros.node
        self.executor = ros.executor
        self.proc = node_proc
        self.out = Collector(self.node, node_proc)
        self.image_pub = self.node.create_publisher(Image, node_proc.topic("image"), RELIABLE)
        self.compressed_pub = self.node.create_publisher(CompressedImage, node_proc.topic("image/compressed"),
                                                         RELIABLE)
        self.compressed = compressed
        self._extra_pubs: list = []

    def spin_until(self, predicate, timeout: float = 10.0):
        return spin_until(self.executor, predicate, timeout)

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Until the node serves a frame (model loaded, all connections matched)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.proc.poll() is not None:
                raise RuntimeError(f"node exited with {self.proc.proc.returncode}:\n{self.proc.log()[-4000:]}")
            msg = self.make_image()
            if self.send(msg, timeout=1.0, retries=1) is not None:
                return
        raise TimeoutError(f"node did not answer within {timeout} s:\n{self.proc.log()[-4000:]}")

    def make_image(self, array: np.ndarray | None = None, encoding: str = "rgb8", **kwargs) -> Image:
        return make_image(self.node, array, encoding, **kwargs)

    def publish(self, msg) -> None:
        (self.compressed_pub if type(msg).__name__ == "CompressedImage" else self.image_pub).publish(msg)

    def send(self, msg, timeout: float = 10.0, retries: int = 3, topic: str = "segmentation"):
        """Publish `msg` (re-publishing if DDS lost it) until the output with its stamp arrives."""
        for _ in range(retries):
            self.publish(msg)
            found = self.spin_until(lambda: self.out.by_stamp(topic, msg.header), timeout / retries)
            if found:
                return found[0]
        return None

    def wait_all(self, header, topics: list[str], timeout: float = 5.0) -> dict:
        self.spin_until(lambda: all(self.out.by_stamp(t, header) for t in topics), timeout)
        return {t: (self.out.by_stamp(t, header) or [None])[0] for t in topics}

    def call(self, srv_type, name: str, request, timeout: float = 10.0, attempts: int | None = None):
        """Call a service and wait for its answer. `attempts` > 1 asks again when no answer comes
        within timeout / attempts, and takes whichever answer comes first: Fast DDS may drop a
        response sent before the server matched the asking client (the node then logs "failed to
        send response (timeout)"; seen in loaded full runs and once in CI). By default requests
        that are safe to repeat (`REPEATABLE`) are asked up to twice, others once."""
        if attempts is None:
            attempts = 2 if srv_type.__name__ in REPEATABLE else 1
        client = self.node.create_client(srv_type, name)
        try:
            assert client.wait_for_service(timeout_sec=timeout), f"service {name} not available"
            futures = []
            for _ in range(attempts):  # a late answer to an earlier ask counts too
                futures.append(client.call_async(request))
                if self.spin_until(lambda: any(f.done() for f in futures), timeout / attempts):
                    return next(f for f in futures if f.done()).result()
            raise AssertionError(f"service {name} did not answer")
        finally:
            self.node.destroy_client(client)

    def set_parameters(self, **values):
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        request = SetParameters.Request(
            parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()])
        return self.call(SetParameters, f"{self.proc.fqn}/set_parameters", request, timeout=20.0).results

    def publisher(self, msg_type, name: str):
        """A reliable publisher on the node's topic `name`, destroyed with the client."""
        pub = self.node.create_publisher(msg_type, self.proc.topic(name), RELIABLE)
        self._extra_pubs.append(pub)
        return pub

    def close(self) -> None:
        self.out.close()
        for pub in (self.image_pub, self.compressed_pub, *self._extra_pubs):
            self.node.destroy_publisher(pub)


TEST_LABELS = "red thing, green thing, blue thing, white box"
# fp32: the same outputs on every CPU (auto would pick bf16 where it is native). Frames finished
# on the worker (overlap off; auto would turn it on where cpu_threads 1 is below the cores): the
# tests that want the finisher thread ask for it.
FAST_PARAMS = {"device": "cpu", "precision": "fp32", "cpu_threads": 1, "working_size": 128, "log_throttle_period": 0.0, "labels": TEST_LABELS,
               "min_region_area": 20, "reliability": "best_effort", "overlap_postprocessing": "off"}


@contextlib.contextmanager
def serving(ros, tmp_path_factory, checkpoint, namespace: str, **params):
    """A node in its own process with a ready client (model loaded, connections matched); closed
    and stopped with SIGINT after (its log's tail printed when it exits non-zero)."""
    proc = start_node(tmp_path_factory, checkpoint, namespace, **params)
    client = Client(ros, proc)
    try:
        client.wait_ready()
        yield client
    finally:
        client.close()
        if proc.stop() != 0:
            print(proc.log()[-4000:])


def start_node(tmp_path_factory, checkpoint, namespace: str, module: str = "lang_seg_ros.ros.node",
               extra_args: Sequence[str] = (), **params) -> NodeProcess:
    log = tmp_path_factory.mktemp("node_logs") / f"{namespace.strip('/').replace('/', '_')}.log"
    merged = {**FAST_PARAMS, "checkpoint": str(checkpoint) if checkpoint is not None else "", **params}
    return NodeProcess(module, log, namespace, merged, extra_args=extra_args)


# ---- depth frames with known intrinsics (3D outputs) ----------------------------------------------
def mask_of(msg: Image) -> np.ndarray:
    return image_to_numpy(msg)


def full_mask(region, shape) -> np.ndarray:
    out = np.zeros(shape, bool)
    b = region.bbox
    out[b.y_offset:b.y_offset + b.height, b.x_offset:b.x_offset + b.width] = mask_of(region.mask) == 255
    return out


def camera_info(width: int, height: int, fx: float, fy: float, cx: float, cy: float):
    from sensor_msgs.msg import CameraInfo

    return CameraInfo(width=width, height=height, distortion_model="plumb_bob", d=[0.0] * 5,
                      k=[fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0])


def shifted(stamp, seconds: float):
    from builtin_interfaces.msg import Time

    ns = stamp.sec * 1_000_000_000 + stamp.nanosec + int(seconds * 1e9)
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def add_depth_publishers(client: "Client") -> None:
    """`client.depth_pub` / `client.depth_info_pub` on the node's `depth` topics, matched (the node
    runs with `use_depth`); destroyed with the client."""
    from sensor_msgs.msg import CameraInfo

    client.depth_pub = client.publisher(Image, "depth")
    client.depth_info_pub = client.publisher(CameraInfo, "depth/camera_info")
    client.spin_until(lambda: client.depth_pub.get_subscription_count() > 0
                      and client.depth_info_pub.get_subscription_count() > 0, 10.0)


def send_with_depth(obj, depths, info, **image_kwargs):
    """Publish depth frames [(array, encoding, stamp offset s)] and the info, then an image; retried
    with fresh stamps when a best-effort depth frame was lost. Returns (image, Segmentation)."""
    for _ in range(3):
        msg = obj.make_image(**image_kwargs)
        sent = []
        for array, encoding, offset in depths:
            depth = numpy_to_image(array, encoding)
            depth.header.stamp = shifted(msg.header.stamp, offset)
            depth.header.frame_id = "depth_optical"
            sent.append(depth)
        obj.depth_info_pub.publish(info)
        for depth in sent:
            obj.depth_pub.publish(depth)
        spin_for(obj.executor, 0.1)
        out = obj.send(msg, timeout=5.0, retries=1)
        if out is not None and out.depth_header.frame_id:
            return msg, out
    raise AssertionError(f"no frame with depth:\n{obj.proc.log()[-3000:]}")


def expected_3d(mask: np.ndarray, depth_m: np.ndarray, fx, fy, cx, cy):
    rows, cols = np.nonzero(mask & np.isfinite(depth_m))
    z = depth_m[rows, cols].astype(np.float64)
    points = np.stack([(cols - cx) * z / fx, (rows - cy) * z / fy, z], axis=1)
    return points, len(rows) / mask.sum()
