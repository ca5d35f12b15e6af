"""Replay images to the node and record what it publishes: a folder, a video or a rosbag.

    python -m lang_seg_ros.ros.replay images/ --rate 10 --topic /lang_seg/image \
        --record out_bag --record-topics /lang_seg/segmentation /lang_seg/overlay
    python -m lang_seg_ros.ros.replay drive.mp4 --rate 30 --stats
    python -m lang_seg_ros.ros.replay recorded_bag/ --bag-topic /camera/image_raw --topic /lang_seg/image

Sources: a directory of images (png, jpg, bmp, tif, webp; sorted by name), a video file
(whatever OpenCV's FFmpeg reads), or a bag (rosbag2 sqlite3/mcap directory or file, ROS 1 .bag)
read with the pure-Python `rosbags` package (rosbag2 itself has no wheel). Frames are
published as sensor_msgs/Image (bgr8 as read, or --encoding rgb8) or CompressedImage
(--compressed jpeg|png) at --rate Hz, stamped with the current time (--stamp original keeps a
bag's stamps). --record writes the given output topics to a rosbag2 bag (--storage sqlite3 or
mcap) through rosbags, with our message definitions registered, so `ros2 bag` and rosbags
read it back. --stats prints the node's end-to-end latency and output rate as it received them.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import threading
import time
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CompressedImage, Image

from .image_conversion import numpy_to_compressed, numpy_to_image
from .runner import close

__all__ = ["frames_from", "main", "register_package_types"]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
BAG_SUFFIXES = {".mcap", ".db3", ".bag"}


# ---- sources -----------------------------------------------------------------------------------
def _is_bag(path: Path) -> bool:
    return (path.is_dir() and (path / "metadata.yaml").is_file()) or path.suffix in BAG_SUFFIXES


def frames_from(source: Path, bag_topic: str | None = None) -> Iterator[tuple[np.ndarray | Image | CompressedImage, int]]:
    """Yield (frame, original stamp in ns) from a folder, a video or a bag.

    Folder and video frames are BGR uint8 arrays (stamp 0); bag frames are the rclpy messages.
    """
    if _is_bag(source):
        yield from _bag_frames(source, bag_topic)
    elif source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {source}")
        for path in files:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                print(f"replay: skipping {path.name}: not readable as an image", file=sys.stderr)
                continue
            yield image, 0
    elif source.is_file():
        capture = cv2.VideoCapture(str(source))
        if not capture.isOpened():
            raise ValueError(f"{source} is neither a bag nor a video OpenCV can open")
        try:
            while True:
                ok, image = capture.read()
                if not ok:
                    break
                yield image, 0
        finally:
            capture.release()
    else:
        raise ValueError(f"{source} does not exist")


def _bag_frames(path: Path, bag_topic: str | None) -> Iterator[tuple[Image | CompressedImage, int]]:
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    types = {"sensor_msgs/msg/Image": Image, "sensor_msgs/msg/CompressedImage": CompressedImage}
    with AnyReader([path], default_typestore=get_typestore(Stores.ROS2_JAZZY)) as reader:
        connections = [c for c in reader.connections if c.msgtype in types and (bag_topic in (None, c.topic))]
        if not connections:
            found = sorted({f"{c.topic} ({c.msgtype})" for c in reader.connections})
            raise ValueError(f"no image topic{' ' + bag_topic if bag_topic else ''} in {path}; it has: {found}")
        if bag_topic is None:
            connections = [c for c in connections if c.topic == connections[0].topic]
            print(f"replay: reading {connections[0].topic} from {path}", file=sys.stderr)
        for connection, timestamp, raw in reader.messages(connections=connections):
            if not reader.is2:  # ROS 1 bag: convert the serialization
                raw = reader.typestore.ros1_to_cdr(raw, connection.msgtype)
            msg = deserialize_message(bytes(raw), types[connection.msgtype])
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            yield msg, stamp or timestamp


# ---- recording ----------------------------------------------------------------------------------
def _package_msg_dirs() -> list[Path]:
    here = Path(__file__).resolve()
    candidates = [here.parents[2] / "msg", Path(sys.prefix) / "share" / "lang_seg_ros" / "msg"]
    try:
        from ament_index_python.packages import get_package_share_directory
        candidates.append(Path(get_package_share_directory("lang_seg_ros")) / "msg")
    except Exception:  # noqa: BLE001 - not in an ament environment
        pass
    return [c for c in candidates if c.is_dir()]


def register_package_types(typestore) -> None:
    """Register lang_seg_ros/msg/* with a rosbags typestore (definitions from msg/*.msg)."""
    from rosbags.typesys import get_types_from_msg

    dirs = _package_msg_dirs()
    if not dirs:
        raise RuntimeError("lang_seg_ros/msg/*.msg not found (neither in the source tree nor installed)")
    types = {}
    for path in sorted(dirs[0].glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"lang_seg_ros/msg/{path.stem}"))
    typestore.register(types)


class _Recorder:
    """Subscribes to output topics (types found on the graph) and writes them to a rosbag2 bag."""

    def __init__(self, node: Node, path: Path, topics: Sequence[str], storage: str, stats: bool) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer
        from rosbags.typesys import Stores, get_typestore

        self.node = node
        self.typestore = get_typestore(Stores.ROS2_JAZZY)
        register_package_types(self.typestore)
        self.writer = None
        if path is not None:
            plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
            self.writer = Writer(path, version=9, storage_plugin=plugin)
            self.writer.open()
        self.pending = list(topics)
        self.connections = {}
        self.subscriptions = []
        self.counts: dict[str, int] = {}
        self.latencies: list[float] = []
        self.output_times: list[float] = []
        self.stats = stats
        self.lock = threading.Lock()

    def try_subscribe(self) -> None:
        """Subscribe to the topics whose type is now known from the graph."""
        if not self.pending:
            return
        known = dict(self.node.get_topic_names_and_types())
        for topic in list(self.pending):
            full = self.node.resolve_topic_name(topic)
            if full not in known:
                continue
            msgtype = known[full][0]
            package, _, name = msgtype.split("/")
            msg_class = getattr(importlib.import_module(f"{package}.msg"), name)
            if self.writer is not None:
                self.connections[full] = self.writer.add_connection(full, msgtype, typestore=self.typestore)
            qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
            self.subscriptions.append(self.node.create_subscription(
                msg_class, full, lambda msg, t=full: self._write(t, msg), qos))
            self.pending.remove(topic)

    def _write(self, topic: str, msg) -> None:
        now = self.node.get_clock().now().nanoseconds
        with self.lock:
            self.counts[topic] = self.counts.get(topic, 0) + 1
            if self.writer is not None:
                self.writer.write(self.connections[topic], now, serialize_message(msg))
            if type(msg).__name__ == "Segmentation":
                self.output_times.append(time.monotonic())
                stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
                if stamp:
                    self.latencies.append((now - stamp) / 1e6)

    def close(self) -> None:
        for sub in self.subscriptions:
            self.node.destroy_subscription(sub)
        if self.writer is not None:
            self.writer.close()


# ---- main ---------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lang_seg_ros_replay", description=__doc__.split("\n\n")[0])
    p.add_argument("source", type=Path, help="folder of images, video file, or bag")
    p.add_argument("--topic", default="image", help="topic to publish on (default: image)")
    p.add_argument("--rate", type=float, default=10.0, help="frames per second (default 10)")
    p.add_argument("--loop", type=int, default=1, help="play the source this many times (default 1)")
    p.add_argument("--max-frames", type=int, default=0, help="stop after this many frames (0: all)")
    p.add_argument("--frame-id", default="camera", help="header.frame_id of folder/video frames")
    p.add_argument("--encoding", choices=("bgr8", "rgb8"), default="bgr8", help="of folder/video frames")
    p.add_argument("--compressed", choices=("jpeg", "png"), help="publish CompressedImage instead")
    p.add_argument("--bag-topic", help="image topic to read from a bag (default: the first image topic)")
    p.add_argument("--stamp", choices=("now", "original"), default="now", help="stamp of bag frames")
    p.add_argument("--reliable", action="store_true", help="publish with reliable QoS (default best effort)")
    p.add_argument("--wait-subscribers", type=float, default=10.0,
                   help="seconds to wait for a subscriber before publishing (default 10)")
    p.add_argument("--record", type=Path, help="write the --record-topics to this rosbag2 bag (a new folder)")
    p.add_argument("--record-topics", nargs="+", default=["segmentation", "label_mask", "overlay"],
                   help="topics to record (default: segmentation label_mask overlay)")
    p.add_argument("--storage", choices=("sqlite3", "mcap"), default="sqlite3")
    p.add_argument("--linger", type=float, default=2.0, help="seconds to keep recording after the last frame")
    p.add_argument("--stats", action="store_true", help="print latency and output rate of 'segmentation'")
    return p


def _to_message(frame, args, node: Node):
    if isinstance(frame, (Image, CompressedImage)):
        return frame
    if args.compressed:
        return numpy_to_compressed(frame, args.compressed)
    if args.encoding == "rgb8":
        return numpy_to_image(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), "rgb8")
    return numpy_to_image(frame, "bgr8")


def replay(args: argparse.Namespace, node: Node, executor) -> int:
    msg_type = CompressedImage if args.compressed else Image
    topic = args.topic
    if _is_bag(args.source):
        first = next(frames_from(args.source, args.bag_topic), None)
        if first is None:
            print("replay: the bag holds no image", file=sys.stderr)
            return 1
        msg_type = type(first[0])
    if msg_type is CompressedImage and not topic.endswith("compressed"):
        topic = topic.rstrip("/") + "/compressed"
    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE if args.reliable else ReliabilityPolicy.BEST_EFFORT)
    publisher = node.create_publisher(msg_type, topic, qos)
    recorder = None
    if args.record is not None or args.stats:
        record_topics = list(args.record_topics)
        if args.stats and not any(t.rstrip("/").endswith("segmentation") for t in record_topics):
            record_topics.append("segmentation")
        recorder = _Recorder(node, args.record, record_topics, args.storage, args.stats)

    deadline = time.monotonic() + args.wait_subscribers
    while time.monotonic() < deadline and (publisher.get_subscription_count() == 0
                                           or (recorder is not None and recorder.pending)):
        executor.spin_once(timeout_sec=0.05)
        if recorder is not None:
            recorder.try_subscribe()
    if publisher.get_subscription_count() == 0:
        print(f"replay: nobody subscribes to {node.resolve_topic_name(topic)}; publishing anyway", file=sys.stderr)
    if recorder is not None and recorder.pending:
        print(f"replay: not (yet) on the graph: {', '.join(recorder.pending)}", file=sys.stderr)

    sent = 0
    try:
        period = 1.0 / args.rate if args.rate > 0 else 0.0
        next_time = time.monotonic()
        try:
            for _ in range(max(1, args.loop)):
                for frame, original_stamp in frames_from(args.source, args.bag_topic):
                    msg = _to_message(frame, args, node)
                    if not isinstance(frame, (Image, CompressedImage)) or not msg.header.frame_id:
                        msg.header.frame_id = args.frame_id
                    while True:  # keep the executor (recorder) running until the frame is due
                        wait = next_time - time.monotonic()
                        if wait <= 0:
                            break
                        executor.spin_once(timeout_sec=min(wait, 0.01))
                    if args.stamp == "original" and original_stamp:
                        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(original_stamp, 1_000_000_000)
                    else:
                        msg.header.stamp = node.get_clock().now().to_msg()
                    publisher.publish(msg)
                    sent += 1
                    next_time = max(next_time + period, time.monotonic() - period)
                    if recorder is not None:
                        recorder.try_subscribe()
                    if args.max_frames and sent >= args.max_frames:
                        raise StopIteration
        except StopIteration:
            pass
        end = time.monotonic() + (args.linger if recorder is not None else 0.2)
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
    finally:
        if recorder is not None:
            recorder.close()
    print(f"replay: published {sent} frames on {node.resolve_topic_name(topic)}", file=sys.stderr)
    if recorder is not None:
        for name, count in sorted(recorder.counts.items()):
            print(f"replay: received {count} on {name}", file=sys.stderr)
        if args.record is not None:
            print(f"replay: recorded to {args.record}", file=sys.stderr)
        if args.stats:
            _print_stats(sent, recorder, args.rate)
    return 0


def _print_stats(sent: int, recorder: _Recorder, rate: float) -> None:
    lat = np.asarray(recorder.latencies)
    times = recorder.output_times
    fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) >= 2 and times[-1] > times[0] else 0.0
    print(f"stats: input {sent} frames at {rate:g} Hz; outputs {len(times)} ({sent - len(times)} not answered); "
          f"output rate {fps:.1f} FPS", file=sys.stderr)
    if lat.size:
        print(f"stats: end-to-end latency ms: mean {lat.mean():.1f}, median {np.median(lat):.1f}, "
              f"p95 {np.percentile(lat, 95):.1f}, max {lat.max():.1f}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ros_args = []
    if "--ros-args" in argv:
        i = argv.index("--ros-args")
        argv, ros_args = argv[:i], argv[i:]
    args = _parser().parse_args(argv)
    rclpy.init(args=["replay", *ros_args])
    node = None
    code = 0
    try:
        node = Node("lang_seg_replay")
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        code = replay(args, node, executor)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except ValueError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        code = 2
    finally:
        close(node)
    return code


if __name__ == "__main__":
    sys.exit(main())
