"""The lang_seg_ros node: camera images in, class-id masks and per-object regions out.

    ros2 run lang_seg_ros lang_seg_ros --ros-args -r image:=/camera/image_raw \
        -p labels:="road, pavement, car, pedestrian, sky"
    python -m lang_seg_ros.ros.node --ros-args --params-file config/segment.yaml

Topics, parameters and QoS are documented in docs/ros.md and config/segment.yaml; `client.py`
(`lang-seg-ros`) talks to a running node without the `ros2` CLI.

The node is wiring: the frame pipeline (`lang_seg_ros.pipeline.FramePipeline`) does the work,
`parameters.py` declares and validates the parameters, `worker.py` owns the threads,
`frame_path.py` is what they do with a frame, `depth.py` matches depth to colour frames,
`diagnostics.py` counts and reports, `outputs.py` publishes (messages built by `messages.py` and
`vision_messages.py`), `services.py` keeps service storms (queue depth, the bounded `refer` queue
the coroutine `_on_refer` awaits), `cameras.py` holds each camera's state (one camera on today's
topics, or the `cameras` parameter's, each under its name). A camera frame goes: callback -> the
camera's worker slot -> `_process_round` (decode every camera's newest frame, `pipeline.infer_batch`:
one model pass per frame size) -> finisher thread -> `_finish` (`pipeline.finish`: objects,
referring) -> `_publish` on that camera's topics, the overlay last, so one frame's
post-processing overlaps the next one's model.
Label sets and expressions are checked by the core's one policy in the callback (so a refusal is
answered at once) and encoded by the worker before the next frame, so each frame sees one label
set and every output names it.
"""
from __future__ import annotations

import functools
import sys
import threading
import time
from typing import Any, Sequence

from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import String

from lang_seg_ros.srv import Refer, SetLabels

from ..inference.labels import LabelSpec
from .cameras import Camera
from .commands import Commands
from .depth import DEPTH_BUFFER
from .diagnostics import Stats, Throttle, diagnostic_array
from .frame_path import FramePath
from .image_conversion import serialized_stamp_ns
from .outputs import FrameOutputs, Outputs
from .parameters import (PARAMETERS, PARAMS_BY_NAME, Param, cameras_of, descriptor, list_overrides, normalise,
                         validate)
from .runner import NODE_NAME, run
from .services import SERVICE_QOS, PendingRefers
from .worker import FrameWorker, Handoff

__all__ = ["PARAMETERS", "SegmentationNode", "main"]


class _SegmentationMixin(FramePath):
    """Everything the plain and the lifecycle node share; used with rclpy Node/LifecycleNode.
    This half is wiring: set-up and the executor thread's callbacks (check, hand over, return);
    `FramePath` is what the worker and finisher threads do."""

    # -- set-up -------------------------------------------------------------------------------
    def _init_state(self) -> None:
        self._lock = threading.Lock()
        self._settings: dict[str, Any] = {}
        self._commands: Commands | None = None  # the label set and expression as accepted
        self._pipeline = None  # lang_seg_ros.pipeline.FramePipeline: frames on the worker (and finisher)
        self._overlap = False  # finish frames on the finisher thread (`overlap_postprocessing`)
        self._torch_threads: int | None = None  # torch's own CPU thread count, restored for cpu_threads 0
        self._applied: tuple[Any, dict, tuple[bool, ...]] | None = None  # what the pipeline was last configured with
        self._model_error: str | None = None
        self._stats = Stats()  # the node's counters, all cameras together
        self._cameras: list[Camera] = [Camera(stats=self._stats)]  # set from `cameras` with the parameters
        self._refers = PendingRefers()  # `refer` requests the worker has not answered yet
        self._refer_service = None
        self._active = False
        self._interfaces: list = []
        self._timers: list = []
        self._outputs: Outputs | None = None  # None: lifecycle node before configure / after cleanup
        self._worker = FrameWorker(self._process_round, self._answer_refer, self._load_model, self._on_worker_error,
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
        # A list given after a string (-p labels:="[a, b]" after the params file's string) must win;
        # a read-only one (cameras) cannot be set after it is declared, so it is declared with it.
        # So must a YAML boolean given before a string (overlap_postprocessing: off, then :=auto).
        lists = list_overrides(sys.argv, self.get_fully_qualified_name(), [p.name for p in PARAMETERS if p.kind],
                               any_type=[p.name for p in PARAMETERS if p.kind == "switch"])
        for p in (*PARAMETERS, *extra):
            if p.read_only and p.name in lists:
                self.declare_parameter(p.name, lists[p.name], descriptor(p), ignore_override=True)
            else:
                self.declare_parameter(p.name, p.default, descriptor(p))
        self.set_parameters([Parameter(name, Parameter.Type.STRING_ARRAY, value) for name, value in lists.items()
                             if not PARAMS_BY_NAME[name].read_only and isinstance(value, list)
                             and isinstance(self.get_parameter(name).value, str)])
        values = {p.name: normalise(p.name, self.get_parameter(p.name).value) for p in (*PARAMETERS, *extra)}
        error = validate(values, values)
        if error:
            raise ValueError(f"invalid parameter: {error}")
        self._settings = values
        names = cameras_of(values["cameras"])
        self._cameras = [Camera(name) for name in names] if names else [Camera(stats=self._stats)]
        if names:
            self.get_logger().info(f"cameras: {', '.join(names)} (one model, topics under each name)")
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
        cmd_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self._outputs = Outputs(self)
        self._interfaces = [*self._outputs.publishers]
        for camera in self._cameras:
            camera.outputs = FrameOutputs(self, camera.name)
            # Raw (serialised) frames: a frame that a newer one replaces before the worker takes it
            # is never converted into Python, so a flood costs the callback one copy and a few checks.
            self._interfaces += [
                self.create_subscription(CompressedImage if s["use_compressed"] else Image,
                                         camera.topic("image/compressed" if s["use_compressed"] else "image"),
                                         functools.partial(self._on_frame, camera), sensor_qos, raw=True),
                *camera.outputs.publishers,
                self.create_subscription(CameraInfo, camera.topic("camera_info"),
                                         functools.partial(self._on_camera_info, camera), info_qos)]
            if s["use_depth"]:
                depth_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=DEPTH_BUFFER, reliability=reliability,
                                       durability=DurabilityPolicy.VOLATILE)
                self._interfaces += [
                    self.create_subscription(Image, camera.topic("depth"), functools.partial(self._on_depth, camera),
                                             depth_qos),
                    self.create_subscription(CameraInfo, camera.topic("depth/camera_info"), camera.depth.set_info,
                                             info_qos)]
        self._interfaces += [
            self.create_subscription(String, "labels", self._on_labels_topic, cmd_qos),
            self.create_subscription(String, "referring_expression", self._on_expression, cmd_qos),
            self.create_service(SetLabels, "set_labels", self._on_set_labels, qos_profile=SERVICE_QOS),
            self._refer_service or self._create_refer_service(),
        ]
        self._timers = [self.create_timer(s["diagnostics_period"], self._publish_diagnostics),
                        self.create_timer(1.0, lambda: self._refers.expire(self._worker.withdraw))]
        self._publish_label_set()

    def _create_refer_service(self) -> Any:
        # Its own reentrant group: an awaiting `refer` must not hold the node's default
        # (mutually exclusive) group, which every other callback needs.
        self._refer_service = self.create_service(Refer, "refer", self._on_refer, qos_profile=SERVICE_QOS,
                                                  callback_group=ReentrantCallbackGroup())
        return self._refer_service

    def _destroy_interfaces(self) -> None:
        for timer in self._timers:
            self.destroy_timer(timer)
        destroy = {"Subscription": self.destroy_subscription, "Publisher": self.destroy_publisher,
                   "Service": self.destroy_service}
        for entity in self._interfaces:
            if entity is self._refer_service:
                if len(self._refers):  # awaiting requests answer through it (rclpy fails on a destroyed one)
                    continue  # kept, and used again by the next `_create_interfaces`
                self._refer_service = None
            destroy[type(entity).__name__](entity)
        self._timers, self._interfaces, self._outputs = [], [], None
        for camera in self._cameras:
            camera.outputs = None
            camera.depth.clear()

    # -- callbacks (executor thread): check, hand over, return ----------------------------------
    def _on_frame(self, camera: Camera, data: bytes) -> None:
        """A serialised Image / CompressedImage: counted, handed to the camera's one-frame slot."""
        self._count(camera, "received")
        if not self._active:
            return
        # The best depth frame now: by the time the worker gets to this frame, it may have left
        # the buffer (the worker looks again and keeps the nearer of the two).
        compressed = self._settings["use_compressed"]
        hint = camera.depth.nearest(serialized_stamp_ns(data)) if self._settings["use_depth"] else None
        if self._worker.offer((camera, data, compressed, hint[0] if hint is not None else None, time.perf_counter()),
                              slot=camera.name):
            self._count(camera, "dropped")

    def _count(self, camera: Camera, counter: str) -> None:
        """One more of `counter` for the camera and the node (the same counters for a single camera)."""
        with self._lock:
            for stats in {id(camera.stats): camera.stats, id(self._stats): self._stats}.values():
                setattr(stats, counter, getattr(stats, counter) + 1)

    def _on_camera_info(self, camera: Camera, msg: CameraInfo) -> None:
        with self._lock:
            camera.camera_info = msg

    def _on_depth(self, camera: Camera, msg: Image) -> None:
        camera.depth.add(msg)
        self._worker.notify()

    def _apply_labels(self, entries: str | list[str] | None, source: str, topic: str | None = None) -> tuple[bool, str]:
        """A new label set as typed, or None to re-read the current one (`stuff_labels` changed);
        `topic`: it came from that topic (a refusal goes on `status` too)."""
        try:
            changed = self._commands.set_labels(entries, self._settings)
        except ValueError as exc:
            self._refuse("bad_labels", f"label set from {source} refused: {exc}", topic, entries)
            return False, str(exc)
        if changed:
            spec = self._publish_label_set()
            stuff = [label for label, flag in zip(spec.labels, spec.is_stuff) if flag]
            self.get_logger().info(f"labels ({source}): {', '.join(spec.labels)}"
                                   + (f"; stuff: {', '.join(stuff)}" if stuff else ""))
        return True, "ok" if changed else "unchanged"

    def _publish_label_set(self) -> LabelSpec:
        spec, label_set_id, _ = self._commands.snapshot()
        if self._outputs is not None:
            self._outputs.publish_labels(spec, label_set_id, self.get_clock().now().to_msg(),
                                         self._settings["threshold"])
        return spec

    def _on_labels_topic(self, msg: String) -> None:
        self._apply_labels(msg.data, "the 'labels' topic", topic="labels")

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
            return self._refuse("bad_expression", error, "referring_expression", msg.data)
        self._commands.expression = text  # one assignment: the worker reads the old or the new one
        self.get_logger().info(f"referring expression: {text!r}" if text else "referring expression cleared")

    async def _on_refer(self, request: Refer.Request, response: Refer.Response) -> Refer.Response:
        """A coroutine: awaits the worker's answer (at most one model pass on the latest frame)
        while the executor goes on; refused at once when `MAX_PENDING_REFER` wait (services.py)."""
        text, error = self._check_expression(request.expression)
        response.result.expression = text
        job, answer = self._refers.job(text, self.executor)
        if error is None and not text:
            error = "empty referring expression"
        error = error or self._refers.busy()
        if error is None and not (self._active and self._worker.submit(job)):
            error = "the node is not active"
        if error is not None:
            response.success, response.message = False, error
            return response
        response.success, response.message, result = await self._refers.answer(job, answer)
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
        elif "threshold" in changed:  # label_info carries it
            self._publish_label_set()

    # -- diagnostics ----------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        """One status for the node (all cameras) and, with several cameras, one per camera."""
        with self._lock:
            windows = [(f"{self.get_fully_qualified_name()}: segmentation", list(self._stats.window),
                        self._stats.counts())]
            windows += [(f"{self.get_fully_qualified_name()}: camera {c.name}", list(c.stats.window), c.stats.counts())
                        for c in self._cameras if c.name]
        labels = len(self._commands.spec.labels)
        pipeline = self._pipeline
        stamp = self.get_clock().now().to_msg()
        arrays = [diagnostic_array(name, stamp, window, counts, labels,
                                   str(pipeline.segmenter.device) if pipeline is not None else "none",
                                   pipeline is not None, self._model_error, self._active,
                                   self._settings["diagnostics_period"]) for name, window, counts in windows]
        arrays[0].status = [status for array in arrays for status in array.status]
        self._outputs.publish_diagnostics(arrays[0])


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
