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
"""
from __future__ import annotations

import math
import os
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
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import String

from lang_seg_ros.msg import LabelSet, ReferringRegion, Segmentation
from lang_seg_ros.srv import SetLabels

from ..regions import Region, extract_regions
from . import messages
from .image_conversion import (ImageConversionError, compressed_to_numpy, image_to_numpy, to_model_input,
                               to_rgb8, numpy_to_image)

RCLError = _rclpy_impl.RCLError

__all__ = ["PARAMETERS", "SegmentationNode", "main", "match_label", "validate_labels"]

NODE_NAME = "lang_seg"


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
    _Param("diagnostics_period", 1.0, "Seconds between /diagnostics messages.", read_only=True,
           float_range=(0.05, 60.0)),
    _Param("log_throttle_period", 5.0, "Seconds between repeated warnings of one kind.",
           float_range=(0.0, 3600.0)),
)
_PARAMS_BY_NAME = {p.name: p for p in PARAMETERS}


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


_ARTICLES = {"the", "a", "an", "this", "that"}


def match_label(expression: str, labels: Sequence[str]) -> int | None:
    """Stand-in referring parser until the referring module exists: the label the expression names.

    Exact match (case-insensitive, articles dropped) first, else the longest label occurring in
    the expression as whole words; None when no label matches.
    """
    words = [w for w in expression.lower().replace(",", " ").split()]
    core = " ".join(w for w in words if w not in _ARTICLES)
    lowered = [label.lower() for label in labels]
    if core in lowered:
        return lowered.index(core)
    padded = f" {' '.join(words)} "
    best = None
    for i, label in enumerate(lowered):
        if f" {label} " in padded and (best is None or len(label) > len(lowered[best])):
            best = i
    return best


def _best_region(regions: Sequence[Region], label_index: int) -> Region | None:
    candidates = [r for r in regions if r.label_index == label_index]
    return max(candidates, key=lambda r: (r.score, r.area)) if candidates else None


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
        self._pending: tuple[Any, bool, float] | None = None  # (msg, compressed, receive time)
        self._settings: dict[str, Any] = {}
        self._labels: tuple[str, ...] = ()
        self._label_set_id = 0
        self._expression = ""
        self._camera_info: CameraInfo | None = None
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
        self._labels = validate_labels(values["labels"].split(","), values["max_labels"], values["max_label_chars"])
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
        self._interfaces = [
            sub,
            self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, info_qos),
            self.create_subscription(String, "labels", self._on_labels_topic, cmd_qos),
            self.create_subscription(String, "referring_expression", self._on_expression, cmd_qos),
            self.create_service(SetLabels, "set_labels", self._on_set_labels),
            self._pub_segmentation, self._pub_label_mask, self._pub_overlay, self._pub_camera_info,
            self._pub_ref_region, self._pub_ref_mask, self._pub_labels, self._pub_diagnostics,
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
        self._pub_labels = None

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
            self._wake.notify_all()
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout)
        self._worker = None

    def _worker_loop(self, load_model: bool) -> None:
        if load_model:
            self._load_model()
        while not self._stop.is_set():
            with self._wake:
                while self._pending is None and not self._reload_requested and not self._stop.is_set():
                    self._wake.wait(0.5)
                item, self._pending = self._pending, None
                reload = self._reload_requested
            if self._stop.is_set():
                break
            if reload:
                self._load_model()
            if item is None:
                continue
            try:
                self._process(*item)
            except Exception as exc:  # noqa: BLE001 - the worker must survive anything
                if self._stop.is_set() or not rclpy.ok(context=self.context):
                    break
                self._throttle("error", "internal", f"frame skipped: {type(exc).__name__}: {exc}")

    def _process(self, msg: Any, compressed: bool, t_received: float) -> None:
        stamp = msg.header.stamp
        frame = f"frame {stamp.sec}.{stamp.nanosec:09d} ({msg.header.frame_id or 'no frame_id'})"
        with self._lock:
            s = dict(self._settings)
            labels, label_set_id, expression = self._labels, self._label_set_id, self._expression
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
        segmenter.working_size = int(s["working_size"])
        segmenter.scales = _scales(s["scales"])
        segmenter.flip = bool(s["flip"])
        segmenter.threshold = float(s["threshold"])
        try:
            result = segmenter.segment(model_input, color_order=color_order, labels=labels)
        except Exception as exc:  # noqa: BLE001 - e.g. CUDA out of memory: skip the frame
            with self._lock:
                self._stats.model_errors += 1
            _free_accelerator_memory()
            self._throttle("error", "model_error", f"{frame} skipped, the model failed: {type(exc).__name__}: {exc}")
            return
        t2 = time.perf_counter()
        if tuple(result.labels) != labels:  # the core cleaned them differently: trust its list
            labels = tuple(result.labels)
        regions = extract_regions(result.label_map, result.confidence, labels, s["min_region_area"],
                                  max_regions=s["max_regions"])
        t3 = time.perf_counter()
        if self._stop.is_set() or not self._active:
            return
        header = msg.header
        mask, no_label = messages.class_id_image(result.label_map, len(labels), header)
        timings = {"decode": (t1 - t0) * 1e3, **result.timings_ms, "regions": (t3 - t2) * 1e3}
        with self._lock:
            self._sequence += 1
            sequence, dropped = self._sequence, self._stats.dropped
            camera_info = self._camera_info
        latency_ms = self._latency_ms(stamp)
        out = messages.segmentation_msg(header, labels, label_set_id, mask, no_label, regions, timings, latency_ms,
                                        sequence, dropped, region_masks=s["region_masks"])
        self._pub_segmentation.publish(out)
        if s["publish_label_mask"]:
            self._pub_label_mask.publish(mask)
        if camera_info is not None:
            self._pub_camera_info.publish(messages.scale_camera_info(camera_info, mask.width, mask.height, header))
        if expression:
            index = match_label(expression, labels)
            region = _best_region(regions, index) if index is not None else None
            self._pub_ref_region.publish(messages.referring_msg(header, expression, region))
            full = region.full_mask(result.label_map.shape) if region is not None else np.zeros(
                result.label_map.shape, bool)
            self._pub_ref_mask.publish(messages.region_mask_image(full, header))
        if s["publish_overlay"]:
            overlay = self._overlay(to_rgb8(image, encoding), result.label_map, labels, s["overlay_alpha"])
            self._pub_overlay.publish(numpy_to_image(overlay, "rgb8", header))
        t4 = time.perf_counter()
        with self._lock:
            self._stats.processed += 1
            self._stats.window.append((time.monotonic(), latency_ms, (t4 - t0) * 1e3))

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
            self._pending = (msg, compressed, time.monotonic())
            self._wake.notify()

    def _on_image(self, msg: Image) -> None:
        self._offer_frame(msg, False)

    def _on_compressed(self, msg: CompressedImage) -> None:
        self._offer_frame(msg, True)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        with self._lock:
            self._camera_info = msg

    def _apply_labels(self, entries: Sequence[str], source: str) -> tuple[bool, str]:
        with self._lock:
            limits = self._settings["max_labels"], self._settings["max_label_chars"]
        try:
            labels = validate_labels(entries, *limits)
        except ValueError as exc:
            self._throttle("warning", "bad_labels", f"label set from {source} refused: {exc}")
            return False, str(exc)
        with self._lock:
            changed = labels != self._labels
            if changed:
                self._labels = labels
                self._label_set_id += 1
        if changed:
            self._publish_label_set()
            self.get_logger().info(f"labels ({source}): {', '.join(labels)}")
        return True, "ok" if changed else "unchanged"

    def _publish_label_set(self) -> None:
        if self._pub_labels is None:  # lifecycle node before configure / after cleanup
            return
        with self._lock:
            labels, label_set_id = self._labels, self._label_set_id
        self._pub_labels.publish(messages.label_set_msg(labels, label_set_id, self.get_clock().now().to_msg()))

    def _on_labels_topic(self, msg: String) -> None:
        self._apply_labels(msg.data.split(","), "the 'labels' topic")

    def _on_set_labels(self, request: SetLabels.Request, response: SetLabels.Response) -> SetLabels.Response:
        entries = list(request.labels) if len(request.labels) else request.labels_csv.split(",")
        response.success, response.message = self._apply_labels(entries, "the 'set_labels' service")
        with self._lock:
            response.labels = list(self._labels)
            response.label_set_id = self._label_set_id
        return response

    def _on_expression(self, msg: String) -> None:
        text = " ".join(msg.data.split())
        with self._lock:
            limit = self._settings["max_expression_chars"]
        if len(text) > limit:
            self._throttle("warning", "bad_expression",
                           f"referring expression of {len(text)} characters refused (max_expression_chars={limit})")
            return
        if any(unicodedata.category(ch)[0] == "C" for ch in text):
            self._throttle("warning", "bad_expression", "referring expression with control characters refused")
            return
        with self._lock:
            self._expression = text
        self.get_logger().info(f"referring expression: {text!r}" if text else "referring expression cleared")

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
                validate_labels(str(values["labels"]).split(","), merged["max_labels"], merged["max_label_chars"])
            except ValueError as exc:
                return f"labels: {exc}"
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
                if p.name == "log_throttle_period":
                    self._throttle.period = value
            if reload:
                self._reload_requested = True
                self._wake.notify()
        if labels is not None:
            self._apply_labels(str(labels).split(","), "the 'labels' parameter")

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
        executor = SingleThreadedExecutor()
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
