"""The lang_seg_ros node: camera images in, class-id masks and per-object regions out.

    ros2 run lang_seg_ros lang_seg_ros --ros-args -r image:=/camera/image_raw \
        -p labels:="floor, wall, person, other"
    python -m lang_seg_ros.ros.node --ros-args --params-file config/segment.yaml

Topics, parameters and QoS are documented in docs/ros.md and config/segment.yaml.

Design: callbacks only validate and hand over; one worker thread owns the model. An incoming
frame replaces the one waiting (never a queue; replaced frames are counted as dropped), so
the node always segments the newest frame. Labels, the referring expression and run-time
parameters are read once per frame, under the same lock the callbacks write them with, so a
frame sees either the old or the new set, never a mix, and every output names its labels.
The `refer` service hands its request to the same worker and waits in its own callback group
(the executor is multi-threaded), so the model is only ever used by the worker and the other
callbacks keep running meanwhile. Depth images are kept in a short buffer and matched to a
colour frame by nearest stamp within `depth_slop`.
"""
from __future__ import annotations

import math
import os
import re
import sys
import threading
import time
import unicodedata
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import ParameterException
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy_impl
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header, String

from lang_seg_ros.msg import LabelSet, ReferringRegion, Segmentation
from lang_seg_ros.srv import Refer, SetLabels

from . import messages
from .image_conversion import (ImageConversionError, compressed_to_numpy, image_to_numpy, to_model_input,
                               to_rgb8, numpy_to_image)
from .objects import (FrameObjects, FrameRegion, add_geometry, aligned_depth, best_overlap, frame_objects,
                      labelled_points)

RCLError = _rclpy_impl.RCLError

__all__ = ["PARAMETERS", "SegmentationNode", "main", "parse_label_set", "validate_labels"]

NODE_NAME = "lang_seg"
#: Depth frames kept for matching to colour frames by stamp.
DEPTH_BUFFER = 10
#: Seconds a `refer` request waits for the worker before it fails.
REFER_TIMEOUT = 60.0
#: Depth encodings read on the `depth` topic.
DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")


# ---------------------------------------------------------------------------------------------
# Parameters: declared in one place; config/segment.yaml mirrors this table (a test checks it).
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Param:
    name: str
    default: Any
    description: str
    read_only: bool = False
    reload: bool = False  # changing it rebuilds the Segmenter (in the worker, between frames)
    int_range: tuple[int, int] | None = None
    float_range: tuple[float, float] | None = None
    choices: tuple[str, ...] | None = None


PARAMETERS: tuple[_Param, ...] = (
    _Param("checkpoint", "", "Model checkpoint: a .ckpt (official LSeg) or .safetensors path; empty = the "
           "embedded default model.", reload=True),
    _Param("device", "auto", "'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N'.", reload=True),
    _Param("cpu_threads", 0, "Threads torch may use on the CPU; 0 = torch's default (one per core).",
           reload=True, int_range=(0, 1024)),
    _Param("precision", "fp32", "Image-branch precision: fp32, fp16 (GPU) or bf16.", reload=True,
           choices=("fp32", "fp16", "bf16")),
    _Param("labels", "floor, wall, ceiling, person, chair, table, other",
           "Initial label set, comma-separated. Changeable at run time (also via the 'labels' topic and "
           "the 'set_labels' service)."),
    _Param("working_size", 480, "Long side in pixels the image is resized to for the model (single scale).",
           int_range=(32, 4096)),
    _Param("scales", [1.0], "[1.0] = single scale at working_size; several values (e.g. [0.75, 1.0, 1.25]) "
           "= multi-scale inference at those scales (slow)."),
    _Param("flip", False, "Add horizontally flipped passes (multi-scale only)."),
    _Param("threshold", 0.0, "Pixels whose best label has a lower probability get no label (mask value "
           "255 / 65535).", float_range=(0.0, 1.0)),
    _Param("min_region_area", 50, "Connected components smaller than this (pixels) are not reported as "
           "regions.", int_range=(1, 1 << 30)),
    _Param("max_regions", 256, "At most this many regions per frame (largest first).", int_range=(0, 65535)),
    _Param("region_masks", True, "Include each region's cropped mask in 'segmentation'."),
    _Param("publish_label_mask", True, "Publish the class-id image on 'label_mask'."),
    _Param("publish_overlay", True, "Publish an rgb8 colour overlay with a legend on 'overlay'."),
    _Param("overlay_alpha", 0.5, "Opacity of the label colours in the overlay.", float_range=(0.0, 1.0)),
    _Param("use_compressed", False, "Subscribe sensor_msgs/CompressedImage on 'image/compressed' instead of "
           "'image'.", read_only=True),
    _Param("reliability", "best_effort", "QoS reliability of the image subscription: best_effort (like "
           "camera drivers) or reliable.", read_only=True, choices=("best_effort", "reliable")),
    _Param("max_image_pixels", 1 << 24, "Larger input images are refused (pixels).", int_range=(1, 1 << 30)),
    _Param("max_labels", 512, "Larger label sets are refused.", int_range=(1, 65535)),
    _Param("max_label_chars", 100, "Longer labels are refused (characters).", int_range=(1, 10000)),
    _Param("max_expression_chars", 256, "Longer referring expressions are refused (characters).",
           int_range=(1, 100000)),
    _Param("referring_min_score", 0.5, "A referred object's mean probability of the category must reach this, "
           "else the answer is 'not found'.", float_range=(0.0, 1.0)),
    _Param("stuff_labels", "", "Comma-separated labels that are 'stuff' (one region per label, e.g. 'floor, "
           "wall, sky'), besides those marked 'label:stuff' in the label set."),
    _Param("instances", False, "Split touching objects of one thing label into instances (distance-transform "
           "watershed) instead of connected components."),
    _Param("split_depth", 0.3, "Watershed seed depth as a fraction of the object's largest inner distance; "
           "lower splits more eagerly.", float_range=(0.01, 1.0)),
    _Param("mask_pooling", False, "Classify each region by pooling its pixel embeddings (single scale only); "
           "its label and score then come from the whole object."),
    _Param("publish_panoptic", False, "Publish the panoptic id image (32SC1) on 'panoptic' and in "
           "Segmentation.panoptic."),
    _Param("tracking", False, "Give regions track ids that stay the same across frames (mask IoU matching)."),
    _Param("tracking_iou", 0.3, "Minimum mask IoU between a region and a track of the same label to continue it.",
           float_range=(0.01, 1.0)),
    _Param("tracking_max_missed", 5, "A track unseen for more frames than this ends.", int_range=(0, 100000)),
    _Param("use_depth", False, "Subscribe 'depth' (16UC1 mm or 32FC1 m, registered to the colour image) and "
           "'depth/camera_info' and give regions 3D values.", read_only=True),
    _Param("depth_slop", 0.05, "Largest stamp difference (s) between a colour frame and the depth frame "
           "matched to it.", float_range=(0.0, 10.0)),
    _Param("publish_cloud", False, "Publish the labelled point cloud (x, y, z, label, instance) on 'cloud' "
           "(needs depth)."),
    _Param("cloud_stride", 1, "Cloud: every n-th pixel in x and y.", int_range=(1, 64)),
    _Param("diagnostics_period", 1.0, "Seconds between /diagnostics messages.", read_only=True,
           float_range=(0.05, 60.0)),
    _Param("log_throttle_period", 5.0, "Seconds between repeated warnings of one kind.",
           float_range=(0.0, 3600.0)),
)
_PARAMS_BY_NAME = {p.name: p for p in PARAMETERS}


_STUFF_SUFFIX = re.compile(r"\s*:\s*stuff\s*$", re.IGNORECASE)


def parse_label_set(entries: Sequence[str], max_labels: int, max_label_chars: int) -> tuple[tuple[str, ...],
                                                                                             frozenset[str]]:
    """A label set as typed, with "label:stuff" marks -> (clean labels, the labels marked stuff).

    "floor:stuff, chair, mug" -> (("floor", "chair", "mug"), {"floor"}): the suffix is not part of
    the label the model reads. Raises ValueError as `validate_labels` does.
    """
    marked = set()
    texts = []
    for entry in entries:
        text = " ".join(str(entry).split())
        stripped = _STUFF_SUFFIX.sub("", text)
        if stripped != text:
            text = " ".join(stripped.split())
            marked.add(text)
        texts.append(text)
    labels = validate_labels(texts, max_labels, max_label_chars)
    return labels, frozenset(marked & set(labels))


def stuff_flags(labels: Sequence[str], marked: frozenset[str], stuff_labels: str) -> tuple[bool, ...]:
    """Per label: marked "label:stuff", or named (case-insensitively) in the `stuff_labels` parameter."""
    named = {" ".join(s.split()).lower() for s in stuff_labels.split(",")} - {""}
    return tuple(label in marked or label.lower() in named for label in labels)


def validate_labels(entries: Sequence[str], max_labels: int, max_label_chars: int) -> tuple[str, ...]:
    """A label set as typed (entries may be blank: "a, b," is fine) -> clean tuple.

    Raises ValueError (saying why) for: no label left, more than `max_labels`, a label longer
    than `max_label_chars`, control characters, or a duplicate. Non-ASCII text is accepted
    (CLIP's tokenizer reads UTF-8).
    """
    labels = [" ".join(str(e).split()) for e in entries]
    labels = [label for label in labels if label]
    if not labels:
        raise ValueError("the label set is empty (give e.g. 'floor, wall, person, other')")
    if len(labels) > max_labels:
        raise ValueError(f"{len(labels)} labels given, at most max_labels={max_labels} are allowed")
    seen: set[str] = set()
    for label in labels:
        if len(label) > max_label_chars:
            raise ValueError(f"a label of {len(label)} characters exceeds max_label_chars={max_label_chars}")
        if any(unicodedata.category(ch)[0] == "C" for ch in label):
            raise ValueError(f"label {label[:40]!r} contains control characters")
        if label in seen:
            raise ValueError(f"duplicate label {label[:40]!r}")
        seen.add(label)
    return tuple(labels)


def _parse_query(text: str):
    """The parsed referring expression (imports the referring module, and with it torch)."""
    from ..referring import parse_expression
    return parse_expression(text)


class _Throttle:
    """At most one log line per kind and period; counts what it held back."""

    def __init__(self, logger, period: float) -> None:
        self._logger = logger
        self.period = period
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, level: str, kind: str, text: str) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self.period:
                self._held[kind] = self._held.get(kind, 0) + 1
                return
            held = self._held.pop(kind, 0)
            self._last[kind] = now
        if held:
            text += f" ({held} more of this kind since the last message)"
        getattr(self._logger, level)(f"[{kind}] {text}")


@dataclass
class _Depth:
    """The depth matched to one frame, at the label map's size."""

    metres: np.ndarray  # (H, W) float32, NaN = invalid
    k: np.ndarray  # (3, 3) intrinsics at (H, W)
    header: Any  # the depth image's std_msgs/Header (frame_id = the frame of the 3D values)


@dataclass
class _LastFrame:
    """What the `refer` service answers on: the latest processed frame."""

    header: Any
    image: np.ndarray  # model input (uint8)
    color_order: str
    labels: tuple[str, ...]
    regions: list  # FrameRegion of its Segmentation
    depth: _Depth | None


@dataclass
class _ReferRequest:
    expression: str
    query: Any
    done: threading.Event = field(default_factory=threading.Event)
    result: tuple[bool, str, Any] | None = None  # (success, message, ReferringRegion)


@dataclass
class _Stats:
    received: int = 0
    dropped: int = 0  # replaced by a newer frame before processing
    rejected: int = 0  # malformed input
    model_errors: int = 0
    processed: int = 0
    window: deque = field(default_factory=lambda: deque(maxlen=200))  # (t_done, latency_ms, model_ms)


# ---------------------------------------------------------------------------------------------
class _SegmentationMixin:
    """Everything the plain and the lifecycle node share; used with rclpy Node/LifecycleNode."""

    # -- set-up ----------------------------------------------------------------------------
    def _init_state(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        # (msg, compressed, receive time, nearest depth frame then or None)
        self._pending: tuple[Any, bool, float, Any] | None = None
        self._settings: dict[str, Any] = {}
        self._labels: tuple[str, ...] = ()
        self._marked_stuff: frozenset[str] = frozenset()  # labels given as "label:stuff"
        self._label_is_stuff: tuple[bool, ...] = ()
        self._label_set_id = 0
        self._expression = ""
        self._query = None  # the parsed expression (lang_seg_ros.referring.ReferringQuery)
        self._camera_info: CameraInfo | None = None
        self._depth_frames: deque = deque(maxlen=DEPTH_BUFFER)  # sensor_msgs/Image, arrival order
        self._depth_info: CameraInfo | None = None
        self._requests: deque[_ReferRequest] = deque()
        self._last_frame: _LastFrame | None = None
        self._tracker = None  # lang_seg_ros.tracking.IoUTracker, worker thread only
        self._tracked_label_set: int | None = None  # label_set_id the live tracks belong to
        self._pub_panoptic = self._pub_cloud = None
        self._segmenter = None
        self._reload_requested = False
        self._model_error: str | None = None
        self._stats = _Stats()
        self._sequence = 0
        self._active = False
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._interfaces: list = []
        self._timers: list = []
        self._render_overlay = None
        self._pub_labels = None

    def _declare_parameters(self, extra: Sequence[_Param] = ()) -> None:
        for p in (*PARAMETERS, *extra):
            descriptor = ParameterDescriptor(description=p.description, read_only=p.read_only)
            if p.choices:
                descriptor.additional_constraints = "one of: " + ", ".join(p.choices)
            if p.int_range:
                descriptor.integer_range = [IntegerRange(from_value=p.int_range[0], to_value=p.int_range[1], step=0)]
            if p.float_range:
                descriptor.floating_point_range = [FloatingPointRange(
                    from_value=p.float_range[0], to_value=p.float_range[1], step=0.0)]
            self.declare_parameter(p.name, p.default, descriptor)
        values = {p.name: self.get_parameter(p.name).value for p in (*PARAMETERS, *extra)}
        error = self._validate(values, values)
        if error:
            raise ValueError(f"invalid parameter: {error}")
        self._settings = values
        self._labels, self._marked_stuff = parse_label_set(values["labels"].split(","), values["max_labels"],
                                                           values["max_label_chars"])
        self._label_is_stuff = stuff_flags(self._labels, self._marked_stuff, values["stuff_labels"])
        self._label_set_id = 1
        self._throttle = _Throttle(self.get_logger(), values["log_throttle_period"])
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.add_post_set_parameters_callback(self._after_set_parameters)

    def _create_interfaces(self) -> None:
        s = self._settings
        reliability = (ReliabilityPolicy.RELIABLE if s["reliability"] == "reliable"
                       else ReliabilityPolicy.BEST_EFFORT)
        sensor_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=reliability,
                                durability=DurabilityPolicy.VOLATILE)
        info_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
        out_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        cmd_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
        if s["use_compressed"]:
            sub = self.create_subscription(CompressedImage, "image/compressed", self._on_compressed, sensor_qos)
        else:
            sub = self.create_subscription(Image, "image", self._on_image, sensor_qos)
        self._pub_segmentation = self.create_publisher(Segmentation, "segmentation", out_qos)
        self._pub_label_mask = self.create_publisher(Image, "label_mask", out_qos)
        self._pub_overlay = self.create_publisher(Image, "overlay", out_qos)
        self._pub_camera_info = self.create_publisher(CameraInfo, "segmentation/camera_info", out_qos)
        self._pub_ref_region = self.create_publisher(ReferringRegion, "referring/region", out_qos)
        self._pub_ref_mask = self.create_publisher(Image, "referring/mask", out_qos)
        self._pub_labels = self.create_publisher(LabelSet, "current_labels", latched)
        self._pub_diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._pub_panoptic = self.create_publisher(Image, "panoptic", out_qos)
        self._pub_cloud = self.create_publisher(PointCloud2, "cloud", out_qos)
        # The service waits for the worker: its own group lets the other callbacks run meanwhile.
        self._refer_group = MutuallyExclusiveCallbackGroup()
        self._interfaces = [
            sub,
            self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, info_qos),
            self.create_subscription(String, "labels", self._on_labels_topic, cmd_qos),
            self.create_subscription(String, "referring_expression", self._on_expression, cmd_qos),
            self.create_service(SetLabels, "set_labels", self._on_set_labels),
            self.create_service(Refer, "refer", self._on_refer, callback_group=self._refer_group),
            self._pub_segmentation, self._pub_label_mask, self._pub_overlay, self._pub_camera_info,
            self._pub_ref_region, self._pub_ref_mask, self._pub_labels, self._pub_diagnostics,
            self._pub_panoptic, self._pub_cloud,
        ]
        if s["use_depth"]:
            depth_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=DEPTH_BUFFER, reliability=reliability,
                                   durability=DurabilityPolicy.VOLATILE)
            self._interfaces += [
                self.create_subscription(Image, "depth", self._on_depth, depth_qos),
                self.create_subscription(CameraInfo, "depth/camera_info", self._on_depth_info, info_qos),
            ]
        self._timers = [self.create_timer(s["diagnostics_period"], self._publish_diagnostics)]
        self._publish_label_set()

    def _destroy_interfaces(self) -> None:
        for timer in self._timers:
            self.destroy_timer(timer)
        for entity in self._interfaces:
            kind = type(entity).__name__
            destroy = {"Subscription": self.destroy_subscription, "Publisher": self.destroy_publisher,
                       "Service": self.destroy_service}.get(kind)
            if destroy is not None:
                destroy(entity)
        self._timers, self._interfaces = [], []
        self._pub_labels = self._pub_panoptic = self._pub_cloud = None
        with self._lock:
            self._depth_frames.clear()
            self._last_frame = None

    # -- model --------------------------------------------------------------------------------
    def _load_model(self) -> bool:
        """Build the Segmenter from the current parameters; on failure keep the previous one."""
        with self._lock:
            s = dict(self._settings)
            self._reload_requested = False
        try:
            from ..inference import Segmenter  # torch is imported here, not at node import
        except Exception as exc:  # noqa: BLE001 - any import failure is reported the same way
            self._model_error = f"the inference core does not import: {type(exc).__name__}: {exc}"
            self.get_logger().error(self._model_error)
            return False
        if s["cpu_threads"] > 0:
            import torch
            torch.set_num_threads(int(s["cpu_threads"]))
        checkpoint = s["checkpoint"] or None
        t0 = time.perf_counter()
        try:
            segmenter = Segmenter(checkpoint, device=s["device"], precision=s["precision"],
                                  working_size=s["working_size"], scales=_scales(s["scales"]), flip=s["flip"],
                                  threshold=s["threshold"])
        except Exception as exc:  # noqa: BLE001 - a bad checkpoint must not kill the node
            what = f"checkpoint {checkpoint!r}" if checkpoint else "the embedded default model (checkpoint '')"
            self._model_error = f"could not load {what}: {type(exc).__name__}: {exc}"
            if not checkpoint:
                self._model_error += " -- set the 'checkpoint' parameter to a .ckpt or .safetensors file"
            keep = " (keeping the previous model)" if self._segmenter is not None else ""
            self.get_logger().error(self._model_error + keep)
            return False
        old, self._segmenter, self._model_error = self._segmenter, segmenter, None
        del old
        _free_accelerator_memory()
        self.get_logger().info(
            f"model loaded from {checkpoint or 'the embedded default'} on {segmenter.device} "
            f"({s['precision']}) in {time.perf_counter() - t0:.1f} s; labels: {', '.join(self._labels)}")
        return True

    def _unload_model(self) -> None:
        self._segmenter = None
        _free_accelerator_memory()

    # -- worker -------------------------------------------------------------------------------
    def _start_worker(self, load_model: bool) -> None:
        self._stop.clear()
        self._worker = threading.Thread(target=self._worker_loop, args=(load_model,), name="lang_seg_worker",
                                        daemon=True)
        self._worker.start()

    def _stop_worker(self, timeout: float = 10.0) -> None:
        self._stop.set()
        with self._wake:
            self._pending = None
            requests, self._requests = list(self._requests), deque()
            self._wake.notify_all()
        for request in requests:
            request.result = (False, "the node stopped before answering", None)
            request.done.set()
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout)
        self._worker = None

    def _worker_loop(self, load_model: bool) -> None:
        if load_model:
            self._load_model()
        while not self._stop.is_set():
            with self._wake:
                while (self._pending is None and not self._requests and not self._reload_requested
                       and not self._stop.is_set()):
                    self._wake.wait(0.5)
                request = self._requests.popleft() if self._requests else None
                item = None
                if request is None:
                    item, self._pending = self._pending, None
                reload = self._reload_requested
            if self._stop.is_set():
                if request is not None:
                    request.result = (False, "the node stopped before answering", None)
                    request.done.set()
                break
            if reload:
                self._load_model()
            try:
                if request is not None:
                    self._answer_request(request)
                elif item is not None:
                    self._process(*item)
            except Exception as exc:  # noqa: BLE001 - the worker must survive anything
                if request is not None and not request.done.is_set():
                    request.result = (False, f"internal error: {type(exc).__name__}: {exc}", None)
                    request.done.set()
                if self._stop.is_set() or not rclpy.ok(context=self.context):
                    break
                self._throttle("error", "internal", f"frame skipped: {type(exc).__name__}: {exc}")

    def _process(self, msg: Any, compressed: bool, t_received: float, depth_hint: Any = None) -> None:
        stamp = msg.header.stamp
        frame = f"frame {stamp.sec}.{stamp.nanosec:09d} ({msg.header.frame_id or 'no frame_id'})"
        with self._lock:
            s = dict(self._settings)
            labels, label_set_id, is_stuff = self._labels, self._label_set_id, self._label_is_stuff
            expression, query = self._expression, self._query
            segmenter = self._segmenter
        t0 = time.perf_counter()
        try:
            if compressed:
                image, encoding = compressed_to_numpy(msg, s["max_image_pixels"])
            else:
                image, encoding = image_to_numpy(msg, s["max_image_pixels"]), msg.encoding
            model_input, color_order = to_model_input(image, encoding)
        except ImageConversionError as exc:
            with self._lock:
                self._stats.rejected += 1
            self._throttle("warning", "bad_image", f"{frame} ignored: {exc}")
            return
        if segmenter is None:
            self._throttle("warning", "no_model", f"{frame} ignored: no model loaded"
                           + (f" ({self._model_error})" if self._model_error else " yet"))
            return
        t1 = time.perf_counter()
        self._configure(segmenter, s)
        ref_labels = None
        if query is not None:
            from ..referring import query_labels
            ref_labels = query_labels(query, labels)
        features = bool(s["mask_pooling"]) and segmenter.scales is None
        try:
            if ref_labels is None or tuple(ref_labels) == labels:
                result = segmenter.segment(model_input, color_order=color_order, labels=labels,
                                           return_features=features)
                ref_result = result
            else:  # the frame's labels and the query's from one image encoding
                result, ref_result = segmenter.segment_sets(model_input, [labels, ref_labels], color_order,
                                                            return_features=features)
        except Exception as exc:  # noqa: BLE001 - e.g. CUDA out of memory: skip the frame
            with self._lock:
                self._stats.model_errors += 1
            _free_accelerator_memory()
            self._throttle("error", "model_error", f"{frame} skipped, the model failed: {type(exc).__name__}: {exc}")
            return
        t2 = time.perf_counter()
        if tuple(result.labels) != labels:  # the core cleaned them differently: trust its list
            labels = tuple(result.labels)
            is_stuff = is_stuff if len(is_stuff) == len(labels) else (False,) * len(labels)
        if s["mask_pooling"] and result.pixel_features is None:
            self._throttle("info", "mask_pooling", "mask_pooling needs single-scale inference (scales: [1.0]); "
                           "regions are classified by pixel votes")
        pooling = s["mask_pooling"] and result.pixel_features is not None
        objects = frame_objects(result.label_map, result.confidence, labels,
                                stuff={i for i, flag in enumerate(is_stuff) if flag},
                                min_area=s["min_region_area"], max_regions=s["max_regions"], split=s["instances"],
                                split_depth=s["split_depth"],
                                pixel_features=result.pixel_features if pooling else None,
                                text_features=result.text_features if pooling else None)
        self._track(objects, s, label_set_id)
        t3 = time.perf_counter()
        depth = self._depth_for(msg.header, depth_hint, objects.label_map.shape, frame, s) if s["use_depth"] else None
        if depth is not None:
            add_geometry(objects, depth.metres, depth.k)
        t4 = time.perf_counter()
        if self._stop.is_set() or not self._active:
            return
        header = msg.header
        mask, no_label = messages.class_id_image(objects.label_map, len(labels), header)
        timings = {"decode": (t1 - t0) * 1e3, **result.timings_ms, "regions": (t3 - t2) * 1e3}
        if s["use_depth"]:
            timings["depth"] = (t4 - t3) * 1e3
        with self._lock:
            self._sequence += 1
            sequence, dropped = self._sequence, self._stats.dropped
            camera_info = self._camera_info
        panoptic = messages.panoptic_image(objects.panoptic(), header) if s["publish_panoptic"] else None
        latency_ms = self._latency_ms(stamp)
        out = messages.segmentation_msg(header, labels, label_set_id, mask, no_label, objects.regions, timings,
                                        latency_ms, sequence, dropped, region_masks=s["region_masks"],
                                        label_is_stuff=is_stuff, panoptic=panoptic,
                                        depth_header=depth.header if depth is not None else None)
        self._pub_segmentation.publish(out)
        if s["publish_label_mask"]:
            self._pub_label_mask.publish(mask)
        if camera_info is not None:
            self._pub_camera_info.publish(messages.scale_camera_info(camera_info, mask.width, mask.height, header))
        if panoptic is not None:
            self._pub_panoptic.publish(panoptic)
        if s["publish_cloud"] and depth is not None:
            cloud_header = Header(stamp=header.stamp, frame_id=depth.header.frame_id)
            points, point_labels, instances = labelled_points(objects, depth.metres, depth.k, s["cloud_stride"])
            self._pub_cloud.publish(messages.labelled_cloud_msg(points, point_labels, instances, cloud_header))
        if query is not None:
            answer, chosen = self._refer(segmenter, query, ref_result, objects.regions, depth, s)
            self._pub_ref_region.publish(messages.referring_msg(
                header, expression, query, answer, chosen, depth.header.frame_id if depth is not None else ""))
            self._pub_ref_mask.publish(messages.region_mask_image(answer.mask, header))
        if s["publish_overlay"]:
            overlay = self._overlay(to_rgb8(image, encoding), objects.label_map, labels, s["overlay_alpha"])
            self._pub_overlay.publish(numpy_to_image(overlay, "rgb8", header))
        t5 = time.perf_counter()
        with self._lock:
            self._last_frame = _LastFrame(header, model_input, color_order, labels, objects.regions, depth)
            self._stats.processed += 1
            self._stats.window.append((time.monotonic(), latency_ms, (t5 - t0) * 1e3))

    @staticmethod
    def _configure(segmenter, s: dict[str, Any]) -> None:
        segmenter.working_size = int(s["working_size"])
        segmenter.scales = _scales(s["scales"])
        segmenter.flip = bool(s["flip"])
        segmenter.threshold = float(s["threshold"])

    def _track(self, objects: FrameObjects, s: dict[str, Any], label_set_id: int) -> None:
        """Track ids (worker thread only). The tracker lives as long as the node, so ids are never
        reused; it forgets its tracks when tracking was off, and when the label set changed."""
        if not s["tracking"]:
            self._tracked_label_set = None
            return
        if self._tracker is None:
            from ..tracking import IoUTracker
            self._tracker = IoUTracker(s["tracking_iou"], s["tracking_max_missed"])
        self._tracker.iou_threshold = float(s["tracking_iou"])
        self._tracker.max_missed = int(s["tracking_max_missed"])
        if self._tracked_label_set != label_set_id:
            self._tracker.reset()
            self._tracked_label_set = label_set_id
        for region, track_id in zip(objects.regions, self._tracker.update([r.region for r in objects.regions])):
            region.track_id = int(track_id)

    def _refer(self, segmenter, query, ref_result, frame_regions: Sequence[FrameRegion], depth: _Depth | None,
               s: dict[str, Any]):
        """The referrer's answer on a segmentation made with `query_labels(query, ...)`, and the chosen
        object as a FrameRegion: ids linked to the frame region it overlaps most, 3D when depth is known."""
        from dataclasses import replace

        from ..geometry import region_3d
        from ..referring import ZeroShotReferrer

        answer = ZeroShotReferrer(segmenter, s["referring_min_score"]).answer(
            query, ref_result, depth.metres if depth is not None else None)
        if not answer.found or answer.region is None:
            return answer, None
        linked = best_overlap(answer.region, frame_regions)
        chosen = FrameRegion(replace(answer.region, id=linked.region.id if linked else 0))
        if linked is not None:
            chosen.is_stuff, chosen.instance = linked.is_stuff, linked.instance
            chosen.panoptic_id, chosen.track_id = linked.panoptic_id, linked.track_id
        if depth is not None:
            chosen.geometry = region_3d(answer.region.bbox, answer.region.mask, depth.metres, depth.k)
        return answer, chosen

    def _answer_request(self, request: _ReferRequest) -> None:
        """Worker thread: one `refer` request on the latest processed frame."""
        def finish(success: bool, message: str, result: Any = None) -> None:
            request.result = (success, message, result)
            request.done.set()

        with self._lock:
            s = dict(self._settings)
            last, segmenter = self._last_frame, self._segmenter
        if segmenter is None:
            return finish(False, "no model loaded" + (f" ({self._model_error})" if self._model_error else " yet"))
        if last is None:
            return finish(False, "no frame has been processed yet")
        from ..referring import query_labels

        self._configure(segmenter, s)
        try:
            ref_result = segmenter.segment(last.image, color_order=last.color_order,
                                           labels=query_labels(request.query, last.labels))
        except Exception as exc:  # noqa: BLE001 - e.g. CUDA out of memory
            with self._lock:
                self._stats.model_errors += 1
            _free_accelerator_memory()
            return finish(False, f"the model failed: {type(exc).__name__}: {exc}")
        answer, chosen = self._refer(segmenter, request.query, ref_result, last.regions, last.depth, s)
        frame_id_3d = last.depth.header.frame_id if last.depth is not None else ""
        finish(True, answer.reason, messages.referring_msg(last.header, request.expression, request.query, answer,
                                                            chosen, frame_id_3d))

    # -- depth ----------------------------------------------------------------------------------
    def _nearest_depth(self, stamp_ns: int, extra: Any = None) -> tuple[Any, int] | None:
        """(depth message, |stamp difference| ns) nearest to `stamp_ns` among the buffer and
        `extra`; call with the lock held."""
        best = None
        for candidate in (*self._depth_frames, *([extra] if extra is not None else [])):
            dt = abs(_stamp_ns(candidate.header.stamp) - stamp_ns)
            if best is None or dt < best[1]:
                best = (candidate, dt)
        return best

    def _depth_for(self, header, hint: Any, shape: tuple[int, int], frame: str, s: dict[str, Any]) -> _Depth | None:
        """The depth frame nearest in stamp to the colour frame (within `depth_slop`), at the label
        map's size, with its intrinsics scaled to it; None (logged) when there is none."""
        stamp_ns, slop_ns = _stamp_ns(header.stamp), int(s["depth_slop"] * 1e9)
        with self._wake:
            best = self._nearest_depth(stamp_ns, hint)
            if (best is None or best[1] > slop_ns) and self._depth_frames:
                # The depth driver may lag the colour one: wait a little for a frame near this stamp.
                deadline = time.monotonic() + min(s["depth_slop"], 0.5)
                while (best is None or best[1] > slop_ns) and not self._stop.is_set():
                    newest = max((_stamp_ns(d.header.stamp) for d in self._depth_frames), default=None)
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or (newest is not None and newest > stamp_ns + slop_ns):
                        break
                    self._wake.wait(remaining)
                    best = self._nearest_depth(stamp_ns, hint)
            info = self._depth_info if self._depth_info is not None else self._camera_info
        if best is None or best[1] > slop_ns:
            nearest = f"nearest {best[1] / 1e9:.3f} s away" if best is not None else "none received"
            self._throttle("warning", "no_depth", f"{frame}: no depth image within depth_slop={s['depth_slop']} s "
                           f"({nearest}): no 3D for it")
            return None
        if info is None:
            self._throttle("warning", "no_depth", f"{frame}: no camera info on 'depth/camera_info' or "
                           "'camera_info' yet: no 3D for it")
            return None
        msg = best[0]
        try:
            if msg.encoding not in DEPTH_ENCODINGS:
                raise ImageConversionError(f"depth encoding must be one of {', '.join(DEPTH_ENCODINGS)}, "
                                           f"got {msg.encoding!r}")
            depth = image_to_numpy(msg, s["max_image_pixels"])
            k_shape = (int(info.height), int(info.width)) if info.height and info.width else depth.shape[:2]
            metres, k = aligned_depth(depth, msg.encoding, info.k, k_shape, shape)
        except ValueError as exc:  # ImageConversionError too
            self._throttle("warning", "bad_depth", f"depth image for {frame} ignored: {exc}")
            return None
        return _Depth(metres, k, msg.header)

    def _on_depth(self, msg: Image) -> None:
        with self._wake:
            self._depth_frames.append(msg)
            self._wake.notify_all()

    def _on_depth_info(self, msg: CameraInfo) -> None:
        with self._lock:
            self._depth_info = msg

    def _latency_ms(self, stamp) -> float:
        now = self.get_clock().now().nanoseconds
        stamp_ns = stamp.sec * 1_000_000_000 + stamp.nanosec
        return (now - stamp_ns) / 1e6 if stamp_ns > 0 else float("nan")

    def _overlay(self, image_rgb: np.ndarray, label_map: np.ndarray, labels: Sequence[str], alpha: float) -> np.ndarray:
        if self._render_overlay is None:
            from ..visualize import render_overlay
            self._render_overlay = render_overlay
        return self._render_overlay(image_rgb, label_map, labels, alpha=alpha)

    # -- callbacks (executor thread): validate, hand over, return --------------------------------
    def _offer_frame(self, msg: Any, compressed: bool) -> None:
        with self._wake:
            self._stats.received += 1
            if not self._active:
                return
            if self._pending is not None:
                self._stats.dropped += 1
            # The best depth frame now: by the time the worker gets to this frame, it may have
            # left the buffer (the worker looks again and keeps the nearer of the two).
            hint = self._nearest_depth(_stamp_ns(msg.header.stamp)) if self._depth_frames else None
            self._pending = (msg, compressed, time.monotonic(), hint[0] if hint is not None else None)
            self._wake.notify()

    def _on_image(self, msg: Image) -> None:
        self._offer_frame(msg, False)

    def _on_compressed(self, msg: CompressedImage) -> None:
        self._offer_frame(msg, True)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        with self._lock:
            self._camera_info = msg

    def _apply_labels(self, entries: Sequence[str] | None, source: str) -> tuple[bool, str]:
        """A new label set (entries as typed, ":stuff" marks allowed), or None to re-derive the stuff
        flags of the current one (the `stuff_labels` parameter changed). Changing the labels or
        their stuff flags increments label_set_id."""
        with self._lock:
            limits = self._settings["max_labels"], self._settings["max_label_chars"]
        try:
            parsed = parse_label_set(entries, *limits) if entries is not None else None
        except ValueError as exc:
            self._throttle("warning", "bad_labels", f"label set from {source} refused: {exc}")
            return False, str(exc)
        with self._lock:
            labels, marked = parsed if parsed is not None else (self._labels, self._marked_stuff)
            flags = stuff_flags(labels, marked, self._settings["stuff_labels"])
            changed = (labels, flags) != (self._labels, self._label_is_stuff)
            self._marked_stuff = marked
            if changed:
                self._labels, self._label_is_stuff = labels, flags
                self._label_set_id += 1
        if changed:
            self._publish_label_set()
            stuff = [label for label, flag in zip(labels, flags) if flag]
            self.get_logger().info(f"labels ({source}): {', '.join(labels)}"
                                   + (f"; stuff: {', '.join(stuff)}" if stuff else ""))
        return True, "ok" if changed else "unchanged"

    def _publish_label_set(self) -> None:
        if self._pub_labels is None:  # lifecycle node before configure / after cleanup
            return
        with self._lock:
            labels, label_set_id, flags = self._labels, self._label_set_id, self._label_is_stuff
        self._pub_labels.publish(messages.label_set_msg(labels, label_set_id, self.get_clock().now().to_msg(), flags))

    def _on_labels_topic(self, msg: String) -> None:
        self._apply_labels(msg.data.split(","), "the 'labels' topic")

    def _on_set_labels(self, request: SetLabels.Request, response: SetLabels.Response) -> SetLabels.Response:
        entries = list(request.labels) if len(request.labels) else request.labels_csv.split(",")
        response.success, response.message = self._apply_labels(entries, "the 'set_labels' service")
        with self._lock:
            response.labels = list(self._labels)
            response.label_is_stuff = list(self._label_is_stuff)
            response.label_set_id = self._label_set_id
        return response

    def _check_expression(self, text: str) -> tuple[Any, str | None]:
        """(parsed query or None for "", None) or (None, why it is refused)."""
        with self._lock:
            limit = self._settings["max_expression_chars"]
        if len(text) > limit:
            return None, f"referring expression of {len(text)} characters refused (max_expression_chars={limit})"
        if any(unicodedata.category(ch)[0] == "C" for ch in text):
            return None, "referring expression with control characters refused"
        if not text:
            return None, None
        try:
            return _parse_query(text), None
        except ValueError as exc:
            return None, f"referring expression {text[:80]!r} refused: {exc}"

    def _on_expression(self, msg: String) -> None:
        text = " ".join(msg.data.split())
        query, error = self._check_expression(text)
        if error:  # the previous expression stays
            self._throttle("warning", "bad_expression", error)
            return
        with self._lock:
            self._expression, self._query = text, query
        self.get_logger().info(f"referring expression: {text!r} (category {query.category!r})" if text
                               else "referring expression cleared")

    def _on_refer(self, request: Refer.Request, response: Refer.Response) -> Refer.Response:
        """Runs in its own callback group: waits for the worker while the executor keeps spinning."""
        text = " ".join(request.expression.split())
        response.result.expression = text
        query, error = self._check_expression(text)
        if error is None and query is None:
            error = "empty referring expression"
        if error is None:
            job = _ReferRequest(text, query)
            with self._wake:
                if not self._active or self._worker is None or self._stop.is_set():
                    error = "the node is not active"
                else:
                    self._requests.append(job)
                    self._wake.notify()
        if error is not None:
            response.success, response.message = False, error
            return response
        if not job.done.wait(REFER_TIMEOUT):
            with self._lock:
                if job in self._requests:
                    self._requests.remove(job)
            response.success, response.message = False, f"no answer within {REFER_TIMEOUT:.0f} s"
            return response
        response.success, response.message, result = job.result
        if result is not None:
            response.result = result
        return response

    # -- parameters ---------------------------------------------------------------------------
    def _validate(self, values: dict[str, Any], current: dict[str, Any]) -> str | None:
        merged = {**current, **values}
        for name, value in values.items():
            p = _PARAMS_BY_NAME.get(name)
            if p is None:
                continue
            if p.choices and value not in p.choices:
                return f"{name} must be one of {', '.join(p.choices)}, got {value!r}"
            if p.int_range and not p.int_range[0] <= value <= p.int_range[1]:
                return f"{name} must be in [{p.int_range[0]}, {p.int_range[1]}], got {value}"
            if p.float_range and not p.float_range[0] <= value <= p.float_range[1]:
                return f"{name} must be in [{p.float_range[0]}, {p.float_range[1]}], got {value}"
        device = merged.get("device", "auto")
        if not (device in ("auto", "cpu", "cuda", "mps") or (device.startswith("cuda:") and device[5:].isdigit())):
            return f"device must be auto, cpu, cuda or cuda:N, got {device!r}"
        scales = list(merged.get("scales", [1.0]))
        if not scales or any(not (0.1 <= float(v) <= 4.0) or math.isnan(float(v)) for v in scales):
            return f"scales must be a non-empty list of values in [0.1, 4], got {scales}"
        if "labels" in values:
            try:
                parse_label_set(str(values["labels"]).split(","), merged["max_labels"], merged["max_label_chars"])
            except ValueError as exc:
                return f"labels: {exc}"
        if "stuff_labels" in values:
            for entry in str(values["stuff_labels"]).split(","):
                if len(entry.strip()) > merged["max_label_chars"]:
                    return f"stuff_labels: a label of {len(entry.strip())} characters exceeds max_label_chars"
                if any(unicodedata.category(ch)[0] == "C" for ch in entry):
                    return "stuff_labels: control characters"
        if merged.get("publish_cloud") and not merged.get("use_depth"):
            return "publish_cloud needs depth: set use_depth (a start-up parameter) to true"
        checkpoint = merged.get("checkpoint", "")
        if "checkpoint" in values and checkpoint and not _is_file(checkpoint):
            return f"checkpoint {checkpoint!r} is not a file"
        return None

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        values = {p.name: p.value for p in params}
        for p in params:
            spec = _PARAMS_BY_NAME.get(p.name)
            if spec is not None and p.type_ == Parameter.Type.DOUBLE_ARRAY and spec.name == "scales":
                values[p.name] = list(p.value)
        with self._lock:
            current = dict(self._settings)
        error = self._validate(values, current)
        return SetParametersResult(successful=error is None, reason=error or "")

    def _after_set_parameters(self, params: list[Parameter]) -> None:
        reload = False
        labels = None
        stuff_changed = False
        with self._wake:
            for p in params:
                if p.name not in self._settings:
                    continue
                value = list(p.value) if p.name == "scales" else p.value
                if self._settings[p.name] == value:
                    continue
                self._settings[p.name] = value
                spec = _PARAMS_BY_NAME.get(p.name)
                reload |= bool(spec and spec.reload)
                if p.name == "labels":
                    labels = value
                stuff_changed |= p.name == "stuff_labels"
                if p.name == "log_throttle_period":
                    self._throttle.period = value
            if reload:
                self._reload_requested = True
                self._wake.notify()
        if labels is not None:
            self._apply_labels(str(labels).split(","), "the 'labels' parameter")
        elif stuff_changed:
            self._apply_labels(None, "the 'stuff_labels' parameter")

    # -- diagnostics ----------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        period = self._settings["diagnostics_period"]
        with self._lock:
            st = self._stats
            recent = [w for w in st.window if now - w[0] <= max(5.0, 5 * period)]
            counts = dict(received=st.received, dropped=st.dropped, rejected=st.rejected,
                          model_errors=st.model_errors, processed=st.processed)
            labels = len(self._labels)
            segmenter, model_error = self._segmenter, self._model_error
        fps = 0.0
        if len(recent) >= 2:
            span = recent[-1][0] - recent[0][0]
            fps = (len(recent) - 1) / span if span > 0 else 0.0
        latencies = [w[1] for w in recent if not math.isnan(w[1])]
        processing = [w[2] for w in recent]
        status = DiagnosticStatus()
        status.name = f"{self.get_fully_qualified_name()}: segmentation"
        status.hardware_id = str(segmenter.device) if segmenter is not None else "none"
        if model_error and segmenter is None:
            status.level, status.message = DiagnosticStatus.ERROR, model_error[:200]
        elif model_error:
            status.level, status.message = DiagnosticStatus.WARN, ("model reload failed, serving the previous "
                                                                   f"model: {model_error}")[:200]
        elif segmenter is None:
            status.level, status.message = DiagnosticStatus.WARN, "model not loaded"
        elif not self._active:
            status.level, status.message = DiagnosticStatus.OK, "inactive"
        elif not recent:
            status.level, status.message = DiagnosticStatus.OK, "waiting for images"
        else:
            status.level, status.message = DiagnosticStatus.OK, f"{fps:.1f} FPS"
        values = {
            "model_fps": f"{fps:.2f}",
            "latency_ms_mean": f"{np.mean(latencies):.1f}" if latencies else "nan",
            "latency_ms_max": f"{np.max(latencies):.1f}" if latencies else "nan",
            "processing_ms_mean": f"{np.mean(processing):.1f}" if processing else "nan",
            "frames_received": str(counts["received"]),
            "frames_processed": str(counts["processed"]),
            "frames_dropped": str(counts["dropped"]),
            "frames_rejected": str(counts["rejected"]),
            "model_errors": str(counts["model_errors"]),
            "labels": str(labels),
            "active": str(self._active).lower(),
        }
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        array.status = [status]
        self._pub_diagnostics.publish(array)


def _stamp_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def _scales(values: Sequence[float]) -> tuple[float, ...] | None:
    values = tuple(float(v) for v in values)
    return None if values == (1.0,) else values


def _is_file(path: str) -> bool:
    return os.path.isfile(os.path.expanduser(path))


def _free_accelerator_memory() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------
class SegmentationNode(_SegmentationMixin, Node):
    """The plain node: interfaces up at once; the model loads in the worker thread."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        Node.__init__(self, node_name, **kwargs)
        self._init_state()
        self._declare_parameters()
        self._create_interfaces()
        self._active = True
        self._start_worker(load_model=True)

    def destroy_node(self) -> None:
        self._active = False
        self._stop_worker()
        super().destroy_node()


def run(node_factory, args: Sequence[str] | None = None) -> int:
    """Init rclpy, spin the node until SIGINT/SIGTERM, shut down cleanly; exit code 0 then."""
    # OpenMP threads that spin while waiting (libgomp's default) slow torch down many-fold when
    # the CPU is shared with other busy processes, as on a robot; must be set before torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        rclpy.init(args=args)
    except RCLError as exc:  # e.g. a -p value that is not valid YAML
        print(f"{NODE_NAME}: invalid command line: {exc}", file=sys.stderr)
        return 2
    node = None
    code = 0
    try:
        node = node_factory()
        # Two threads: the `refer` service (own callback group) waits for the worker while the
        # other callbacks, all in the node's default mutually exclusive group, keep running.
        executor = MultiThreadedExecutor(num_threads=2)
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ValueError, ParameterException) as exc:  # invalid parameters at start-up
        print(f"{NODE_NAME}: {type(exc).__name__}: {exc}", file=sys.stderr)
        code = 2
    finally:
        try:
            if node is not None:
                node.destroy_node()
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        finally:
            rclpy.try_shutdown()
    return code


def main(args: Sequence[str] | None = None) -> int:
    return run(SegmentationNode, args)


if __name__ == "__main__":
    sys.exit(main())
