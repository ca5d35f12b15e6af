"""The lang_seg_ros node: camera images in, class-id masks and per-object regions out.

    ros2 run lang_seg_ros lang_seg_ros --ros-args -r image:=/camera/image_raw \
        -p labels:="floor, wall, person, other"
    python -m lang_seg_ros.ros.node --ros-args --params-file config/segment.yaml

Topics, parameters and QoS are documented in docs/ros.md and config/segment.yaml.

The node is wiring: the frame pipeline (`lang_seg_ros.pipeline.FramePipeline`) does the work,
`parameters.py` declares and validates the parameters, `worker.py` owns the thread that runs
the model, `depth.py` matches depth to colour frames, `diagnostics.py` counts and reports, and
`messages.py` builds messages. A camera frame goes: callback -> worker slot -> `_process`
(decode, `pipeline.infer`: the model) -> finisher thread -> `_finish` (`pipeline.finish`: objects,
referring, overlay) -> `_publish`, so one frame's post-processing overlaps the next one's model. Label sets and expressions are checked by the core's one policy
in the callback (so a refusal is answered at once) and encoded by the worker before the next
frame, so each frame sees one label set and every output names it.
"""
from __future__ import annotations

import struct
import sys
import threading
import time
from dataclasses import replace
from typing import Any, Sequence

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.serialization import deserialize_message
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header, String
from visualization_msgs.msg import MarkerArray

from lang_seg_ros.msg import LabelSet, ReferringRegion, Segmentation
from lang_seg_ros.srv import Refer, SetLabels

from ..inference.labels import LabelSpec
from . import messages
from .commands import Commands
from .depth import DEPTH_BUFFER, DepthFrame, DepthSync, stamp_ns
from .diagnostics import Stats, Throttle, diagnostic_array
from .image_conversion import ImageConversionError, compressed_to_numpy, image_to_numpy, to_model_input
from .parameters import (PARAMETERS, PARAMS_BY_NAME, Param, build_pipeline, descriptor, list_overrides, normalise,
                         pipeline_settings, validate)
from .runner import NODE_NAME, free_accelerator_memory, run
from .worker import FrameWorker, Handoff, Job

__all__ = ["PARAMETERS", "SegmentationNode", "main"]

#: Seconds a `refer` request waits for the worker before it fails.
REFER_TIMEOUT = 60.0


def serialized_stamp_ns(data: bytes) -> int:
    """header.stamp (ns) of a serialised message whose first field is a std_msgs/Header, read from
    the CDR bytes without deserialising (0 when too short): the stamp follows the 4-byte
    encapsulation header, as int32 seconds and uint32 nanoseconds in its byte order."""
    if len(data) < 12:
        return 0
    sec, nanosec = struct.unpack("<iI" if data[1] & 1 else ">iI", data[4:12])
    return sec * 1_000_000_000 + nanosec


class _SegmentationMixin:
    """Everything the plain and the lifecycle node share; used with rclpy Node/LifecycleNode."""

    # -- set-up -------------------------------------------------------------------------------
    def _init_state(self) -> None:
        self._lock = threading.Lock()
        self._settings: dict[str, Any] = {}
        self._commands: Commands | None = None  # the label set and expression as accepted
        self._camera_info: CameraInfo | None = None
        self._depth = DepthSync()
        self._pipeline = None  # lang_seg_ros.pipeline.FramePipeline: frames on the worker (and finisher)
        self._overlap = False  # finish frames on the finisher thread (`overlap_postprocessing`)
        self._applied: tuple[Any, dict, tuple[bool, bool]] | None = None  # what the pipeline was last configured with
        self._model_error: str | None = None
        self._stats = Stats()
        self._sequence = 0
        self._active = False
        self._interfaces: list = []
        self._timers: list = []
        self._pub_labels = None
        self._worker = FrameWorker(lambda item: self._process(*item), self._answer_refer, self._load_model, self._on_worker_error,
                                   cancel_result=(False, "the node stopped before answering", None),
                                   logger=self.get_logger())
        # Objects, overlay and publishing of frame k overlap the model pass of frame k + 1.
        self._finisher = Handoff(self._finish, lambda exc: self._on_worker_error(exc, None))

    def _start_threads(self, load_model: bool = False) -> None:
        self._finisher.start()  # idle unless frames are handed over (`_overlap`)
        self._worker.start(reload_first=load_model)

    def _stop_threads(self) -> None:
        self._worker.stop()
        self._finisher.stop()

    def _declare_parameters(self, extra: Sequence[Param] = ()) -> None:
        for p in (*PARAMETERS, *extra):
            self.declare_parameter(p.name, p.default, descriptor(p))
        # A list given after a string (-p labels:="[a, b]" after the params file's string) must win.
        lists = list_overrides(sys.argv, self.get_fully_qualified_name(), [p.name for p in PARAMETERS if p.kind])
        self.set_parameters([Parameter(name, Parameter.Type.STRING_ARRAY, value) for name, value in lists.items()
                             if isinstance(self.get_parameter(name).value, str)])
        values = {p.name: normalise(p.name, self.get_parameter(p.name).value) for p in (*PARAMETERS, *extra)}
        error = validate(values, values)
        if error:
            raise ValueError(f"invalid parameter: {error}")
        self._settings = values
        self._commands = Commands(values["labels"], values)
        self._throttle = Throttle(self.get_logger(), values["log_throttle_period"])
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.add_post_set_parameters_callback(self._after_set_parameters)

    def _create_interfaces(self) -> None:
        s = self._settings
        reliability = ReliabilityPolicy.RELIABLE if s["reliability"] == "reliable" else ReliabilityPolicy.BEST_EFFORT
        sensor_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=reliability,
                                durability=DurabilityPolicy.VOLATILE)
        info_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
        out_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        cmd_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
        pub = self.create_publisher
        self._pubs = {name: pub(kind, name, out_qos) for name, kind in (
            ("segmentation", Segmentation), ("label_mask", Image), ("overlay", Image),
            ("segmentation/camera_info", CameraInfo), ("referring/region", ReferringRegion),
            ("referring/mask", Image), ("panoptic", Image), ("cloud", PointCloud2), ("traversable_mask", Image),
            ("obstacles", PointCloud2), ("regions/markers", MarkerArray))}
        self._pub_labels = pub(LabelSet, "current_labels", latched)
        self._pub_diagnostics = pub(DiagnosticArray, "/diagnostics", 10)
        # Raw (serialised) frames: a frame that a newer one replaces before the worker takes it is
        # never converted into Python, so a flood costs the callback one copy and a few checks.
        image_sub = self.create_subscription(
            CompressedImage if s["use_compressed"] else Image, "image/compressed" if s["use_compressed"] else "image",
            self._on_frame, sensor_qos, raw=True)
        self._interfaces = [
            image_sub, *self._pubs.values(), self._pub_labels, self._pub_diagnostics,
            self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, info_qos),
            self.create_subscription(String, "labels", self._on_labels_topic, cmd_qos),
            self.create_subscription(String, "referring_expression", self._on_expression, cmd_qos),
            self.create_service(SetLabels, "set_labels", self._on_set_labels),
            self.create_service(Refer, "refer", self._on_refer),
        ]
        if s["use_depth"]:
            depth_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=DEPTH_BUFFER, reliability=reliability,
                                   durability=DurabilityPolicy.VOLATILE)
            self._interfaces += [self.create_subscription(Image, "depth", self._on_depth, depth_qos),
                                 self.create_subscription(CameraInfo, "depth/camera_info", self._depth.set_info,
                                                          info_qos)]
        self._timers = [self.create_timer(s["diagnostics_period"], self._publish_diagnostics)]
        self._publish_label_set()

    def _destroy_interfaces(self) -> None:
        for timer in self._timers:
            self.destroy_timer(timer)
        destroy = {"Subscription": self.destroy_subscription, "Publisher": self.destroy_publisher,
                   "Service": self.destroy_service}
        for entity in self._interfaces:
            destroy[type(entity).__name__](entity)
        self._timers, self._interfaces, self._pub_labels = [], [], None
        self._depth.clear()

    # -- model (worker thread) ------------------------------------------------------------------
    def _load_model(self) -> bool:
        """Build the model and pipeline from the current parameters; on failure keep the old ones."""
        s, t0 = self._settings, time.perf_counter()
        on_worker = self._worker.on_thread
        if on_worker:  # frames of the old model still being finished go out first, in order
            self._finisher.drain()
        try:
            pipeline = build_pipeline(s)
        except Exception as exc:  # noqa: BLE001 - a bad checkpoint must not kill the node
            keep = " (keeping the previous model)" if self._pipeline is not None else ""
            self._model_error = str(exc)
            self.get_logger().error(self._model_error + keep)
            return False
        if on_worker and self._worker.stopping:  # stopped (e.g. cleaned up) while loading: not wanted
            return False
        pipeline.adopt(self._pipeline)  # track ids and the frame `refer` answers on carry over
        self._pipeline, self._model_error = pipeline, None
        overlap = s["overlap_postprocessing"]
        self._overlap = overlap == "on" or (overlap == "auto" and pipeline.segmenter.device.type != "cpu")
        free_accelerator_memory()
        self.get_logger().info(f"model loaded from {s['checkpoint'] or 'the embedded default'} on "
                               f"{pipeline.segmenter.device} ({s['precision']}, backend {s['backend']}) in "
                               f"{time.perf_counter() - t0:.1f} s" + (f", warmed up for {s['warmup_sizes']}"
                                                                     if s["warmup_sizes"].strip() else ""))
        return True

    def _unload_model(self) -> None:
        self._pipeline = None
        free_accelerator_memory()

    def _sync_pipeline(self) -> Any:
        """The pipeline with the current settings, label set and expression (worker thread)."""
        pipeline = self._pipeline
        s = self._settings
        spec, label_set_id, expression = self._commands.snapshot()
        # The overlay is rendered only while someone subscribes to it (as image_transport's lazy
        # publishers do): it is the dearest output after the model and often unwatched.
        # So are the obstacle points.
        lazy = (s["publish_overlay"] and self._pubs["overlay"].get_subscription_count() > 0,
                s["use_depth"] and self._pubs["obstacles"].get_subscription_count() > 0)
        applied = self._applied  # (pipeline, settings dict, lazy outputs): a new dict on every change
        if applied is None or applied[0] is not pipeline or applied[1] is not s or applied[2] != lazy:
            pipeline.configure(replace(pipeline_settings(s), overlay=lazy[0], obstacles=lazy[1]))
            self._applied = (pipeline, s, lazy)
            for name, what in (("mask_pooling", "regions are classified by pixel votes"),
                               ("region_embeddings", "regions carry no embeddings")):
                if s[name] and (pipeline.settings.scales is not None or not pipeline.segmenter.supports_features):
                    self._throttle("info", name, f"{name} needs single-scale inference (scales: [1.0]) on the torch "
                                   f"backend; {what}")
        if pipeline.labels is None or pipeline.labels.id != label_set_id:
            pipeline.set_labels(spec, label_set_id=label_set_id)
            self.get_logger().info(f"labels encoded (set {label_set_id}): {', '.join(spec.labels)}")
        if pipeline.expression != expression:
            pipeline.set_expression(expression)
        return pipeline

    # -- per frame (worker thread) --------------------------------------------------------------
    def _process(self, data: bytes, compressed: bool, depth_hint: Any = None, t_offered: float | None = None) -> None:
        try:
            msg = deserialize_message(data, CompressedImage if compressed else Image)
        except Exception as exc:  # noqa: BLE001 - what the middleware hands over is not ours to trust
            with self._lock:
                self._stats.rejected += 1
            return self._throttle("warning", "bad_image", f"frame ignored: not a valid serialised image: {exc}")
        header = msg.header
        frame = f"frame {header.stamp.sec}.{header.stamp.nanosec:09d} ({header.frame_id or 'no frame_id'})"
        s = self._settings
        t0 = time.perf_counter()
        waited = {"wait": (t0 - t_offered) * 1e3} if t_offered is not None else {}  # in the slot, for the model
        try:
            if compressed:
                image, encoding = compressed_to_numpy(msg, s["max_image_pixels"])
            else:
                image, encoding = image_to_numpy(msg, s["max_image_pixels"]), msg.encoding
            image, color_order = to_model_input(image, encoding)
        except ImageConversionError as exc:
            with self._lock:
                self._stats.rejected += 1
            return self._throttle("warning", "bad_image", f"{frame} ignored: {exc}")
        if self._pipeline is None:
            return self._throttle("warning", "no_model", f"{frame} ignored: no model loaded"
                                  + (f" ({self._model_error})" if self._model_error else " yet"))
        depth = self._depth_for(header, depth_hint, frame) if s["use_depth"] else None
        t1 = time.perf_counter()
        from ..pipeline import DepthError  # loaded with the model (torch), never at node import
        try:
            pipeline = self._sync_pipeline()
            try:
                inference = pipeline.infer(image, color_order, *((depth.values, depth.k, depth.k_shape) if depth else ()),
                                           tag=(header, depth.header.frame_id if depth is not None else ""))
            except DepthError as exc:  # raised before the model runs: the frame without 3D
                self._throttle("warning", "bad_depth", f"{frame}: {exc}: no 3D for it")
                depth = None
                inference = pipeline.infer(image, color_order, tag=(header, ""))
        except Exception as exc:  # noqa: BLE001 - e.g. CUDA out of memory: skip the frame
            with self._lock:
                self._stats.model_errors += 1
            free_accelerator_memory()
            return self._throttle("error", "model_error", f"{frame} skipped, the model failed: {type(exc).__name__}: "
                                  f"{exc}")
        if self._worker.stopping or not self._active:
            return
        item = (pipeline, header, inference, depth, {**waited, "decode": (t1 - t0) * 1e3}, time.perf_counter())
        if self._overlap:
            self._finisher.put(item)
        else:
            self._finish(item)

    def _finish(self, item: tuple[Any, Header, Any, DepthFrame | None, dict[str, float], float]) -> None:
        """The rest of the frame after the model, then its messages (on the finisher thread with
        `overlap_postprocessing`, else right after the model on the worker)."""
        pipeline, header, inference, depth, timings, t_handed = item
        timings["handoff"] = (time.perf_counter() - t_handed) * 1e3  # waited for the previous frame's publishing
        result = pipeline.finish(inference)
        if result.referring_error:
            self._throttle("warning", "bad_expression", result.referring_error)
        if self._active:
            self._publish(header, result, depth, timings)

    def _publish(self, header: Header, result: Any, depth: DepthFrame | None, timings: dict[str, float]) -> None:
        t0 = time.perf_counter()
        s = self._settings
        with self._lock:
            self._sequence += 1
            sequence, dropped, camera_info = self._sequence, self._stats.dropped, self._camera_info
        depth_header = depth.header if depth is not None and result.has_depth else None
        latency_ms = self._latency_ms(header.stamp)
        markers = s["marker_lifetime"] if self._pubs["regions/markers"].get_subscription_count() > 0 else None
        outputs = messages.frame_messages(header, result, {**timings, **result.timings_ms}, latency_ms, sequence,
                                          dropped, s["region_masks"], depth_header, camera_info, markers)
        outputs["segmentation"].timings.append(messages.stage_timing("publish", (time.perf_counter() - t0) * 1e3))
        if not s["publish_label_mask"]:
            del outputs["label_mask"]
        for topic, msg in outputs.items():
            self._pubs[topic].publish(msg)
        with self._lock:
            self._stats.processed += 1
            processing_ms = sum(t.duration_ms for t in outputs["segmentation"].timings
                                if t.stage not in ("wait", "handoff"))
            self._stats.window.append((time.monotonic(), latency_ms, processing_ms))

    def _answer_refer(self, job: Job) -> None:
        """Worker thread: one `refer` request on the latest processed frame."""
        expression = job.payload
        if self._pipeline is None:
            return job.finish((False, "no model loaded" + (f" ({self._model_error})" if self._model_error else " yet"),
                               None))
        try:
            answer = self._sync_pipeline().refer(expression)
        except (RuntimeError, ValueError) as exc:  # no frame yet / refused expression
            return job.finish((False, str(exc), None))
        header, frame_id_3d = answer.tag
        job.finish((True, answer.result.reason, messages.referring_msg(
            header, answer.expression, answer.query, answer.result, answer.region, frame_id_3d)))

    def _on_worker_error(self, exc: BaseException, job: Job | None) -> None:
        if job is not None:
            with self._lock:
                self._stats.model_errors += 1
            free_accelerator_memory()
            job.finish((False, f"the model failed: {type(exc).__name__}: {exc}", None))
        elif rclpy.ok(context=self.context):
            self._throttle("error", "internal", f"frame skipped: {type(exc).__name__}: {exc}")

    def _depth_for(self, header: Header, hint: Any, frame: str) -> DepthFrame | None:
        s = self._settings
        with self._lock:
            fallback = self._camera_info
        depth, kind, why = self._depth.match(header, hint, s["depth_slop"], s["max_image_pixels"], fallback,
                                             self._worker.wait, lambda: self._worker.stopping)
        if depth is None:
            self._throttle("warning", kind, f"{frame}: {why}: no 3D for it")
        return depth

    def _latency_ms(self, stamp) -> float:
        stamp = stamp_ns(stamp)
        return (self.get_clock().now().nanoseconds - stamp) / 1e6 if stamp > 0 else float("nan")

    # -- callbacks (executor thread): check, hand over, return ----------------------------------
    def _on_frame(self, data: bytes) -> None:
        """A serialised Image / CompressedImage: counted, handed to the worker's one-frame slot."""
        with self._lock:
            self._stats.received += 1
            if not self._active:
                return
        # The best depth frame now: by the time the worker gets to this frame, it may have left
        # the buffer (the worker looks again and keeps the nearer of the two).
        compressed = self._settings["use_compressed"]
        hint = self._depth.nearest(serialized_stamp_ns(data)) if self._settings["use_depth"] else None
        if self._worker.offer((data, compressed, hint[0] if hint is not None else None, time.perf_counter())):
            with self._lock:
                self._stats.dropped += 1

    def _on_camera_info(self, msg: CameraInfo) -> None:
        with self._lock:
            self._camera_info = msg

    def _on_depth(self, msg: Image) -> None:
        self._depth.add(msg)
        self._worker.notify()

    def _apply_labels(self, entries: str | list[str] | None, source: str) -> tuple[bool, str]:
        """A new label set as typed, or None to re-read the current one (`stuff_labels` changed)."""
        try:
            changed = self._commands.set_labels(entries, self._settings)
        except ValueError as exc:
            self._throttle("warning", "bad_labels", f"label set from {source} refused: {exc}")
            return False, str(exc)
        if changed:
            spec = self._publish_label_set()
            stuff = [label for label, flag in zip(spec.labels, spec.is_stuff) if flag]
            self.get_logger().info(f"labels ({source}): {', '.join(spec.labels)}"
                                   + (f"; stuff: {', '.join(stuff)}" if stuff else ""))
        return True, "ok" if changed else "unchanged"

    def _publish_label_set(self) -> LabelSpec:
        spec, label_set_id, _ = self._commands.snapshot()
        if self._pub_labels is not None:  # None: lifecycle node before configure / after cleanup
            self._pub_labels.publish(messages.label_set_msg(spec.labels, label_set_id,
                                                            self.get_clock().now().to_msg(), spec.is_stuff))
        return spec

    def _on_labels_topic(self, msg: String) -> None:
        self._apply_labels(msg.data, "the 'labels' topic")

    def _on_set_labels(self, request: SetLabels.Request, response: SetLabels.Response) -> SetLabels.Response:
        if len(request.labels) and request.labels_csv.strip():
            response.success = False
            response.message = "give the labels either as 'labels' or as 'labels_csv', not both"
        else:
            entries = list(request.labels) if len(request.labels) else request.labels_csv
            response.success, response.message = self._apply_labels(entries, "the 'set_labels' service")
        spec, response.label_set_id, _ = self._commands.snapshot()
        response.labels, response.label_is_stuff = list(spec.labels), list(spec.is_stuff)
        return response

    def _check_expression(self, text: str) -> tuple[str, str | None]:
        """(clean expression, None) or (text, why it is refused)."""
        try:
            return Commands.check_expression(text, self._settings["max_expression_chars"]), None
        except ValueError as exc:
            return text, f"referring expression {' '.join(text.split())[:80]!r} refused: {exc}"

    def _on_expression(self, msg: String) -> None:
        text, error = self._check_expression(msg.data)
        if error:  # the previous expression stays
            return self._throttle("warning", "bad_expression", error)
        self._commands.expression = text  # one assignment: the worker reads the old or the new one
        self.get_logger().info(f"referring expression: {text!r}" if text else "referring expression cleared")

    def _on_refer(self, request: Refer.Request, response: Refer.Response) -> Refer.Response:
        """Waits for the worker (between two frames: at most one model pass on the latest frame)."""
        text, error = self._check_expression(request.expression)
        response.result.expression = text
        job = Job(text)
        if error is None and not text:
            error = "empty referring expression"
        if error is None and not (self._active and self._worker.submit(job)):
            error = "the node is not active"
        if error is not None:
            response.success, response.message = False, error
            return response
        if not job.done.wait(REFER_TIMEOUT):
            self._worker.withdraw(job)
            response.success, response.message = False, f"no answer within {REFER_TIMEOUT:.0f} s"
            return response
        response.success, response.message, result = job.result
        if result is not None:
            response.result = result
        return response

    # -- parameters -----------------------------------------------------------------------------
    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        try:
            values = {p.name: normalise(p.name, p.value) for p in params}
        except ValueError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        with self._lock:
            current = dict(self._settings)
        error = validate(values, current)
        return SetParametersResult(successful=error is None, reason=error or "")

    def _after_set_parameters(self, params: list[Parameter]) -> None:
        changed = {}
        with self._lock:
            for p in params:
                value = normalise(p.name, p.value)
                if p.name in self._settings and self._settings[p.name] != value:
                    changed[p.name] = value
            self._settings = {**self._settings, **changed}  # one assignment: the worker reads either
        if "log_throttle_period" in changed:
            self._throttle.period = changed["log_throttle_period"]
        if any(PARAMS_BY_NAME[name].reload for name in changed):
            self._worker.request_reload()
        if "labels" in changed:
            self._apply_labels(changed["labels"], "the 'labels' parameter")
        elif "stuff_labels" in changed:
            self._apply_labels(None, "the 'stuff_labels' parameter")

    # -- diagnostics ----------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        with self._lock:
            window, counts = list(self._stats.window), self._stats.counts()
        labels = len(self._commands.spec.labels)
        pipeline = self._pipeline
        self._pub_diagnostics.publish(diagnostic_array(
            f"{self.get_fully_qualified_name()}: segmentation", self.get_clock().now().to_msg(), window, counts, labels,
            str(pipeline.segmenter.device) if pipeline is not None else "none", pipeline is not None,
            self._model_error, self._active, self._settings["diagnostics_period"]))


class SegmentationNode(_SegmentationMixin, Node):
    """The plain node: interfaces up at once; the model loads in the worker thread."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        Node.__init__(self, node_name, **kwargs)
        self._init_state()
        self._declare_parameters()
        self._create_interfaces()
        self._active = True
        self._start_threads(load_model=True)

    def destroy_node(self) -> None:
        self._active = False
        self._stop_threads()
        super().destroy_node()


def main(args: Sequence[str] | None = None) -> int:
    return run(SegmentationNode, args)


if __name__ == "__main__":
    sys.exit(main())
