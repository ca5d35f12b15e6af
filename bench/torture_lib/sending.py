"""Sending to the nodes: every publish and service call of a torture run with the bookkeeping the
invariants need (`Sender`): each frame's stamp remembered as valid (with its size) or malformed,
each label set sent allowed in the checker, each malformed image first refused here by the node's
own conversion (timed), service futures kept until answered; and the parameter values tried.
"""
from __future__ import annotations

import math
import random
import threading
import time
from typing import Any, Callable

from harness import stamp_key
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import String

from lang_seg_ros.ros.image_conversion import ImageConversionError, compressed_to_numpy, image_to_numpy
from lang_seg_ros.srv import Refer, SetLabels
from torture_lib.invariants import OutputChecker
from torture_lib.messages import DEPTH_FRAME, VALID_FRAME, Messages
from torture_lib.nodes import Target
from torture_lib.report import Report

DOS_SCALES = [1.0] * 10_000


class Sender:
    """Sends as one run: `messages` and `rng` make the inputs, `report` counts them, `checker`
    learns the label sets; `pending` holds the service calls (kind, future, t_called), `refusals`
    the milliseconds the conversion took to refuse each malformed kind."""

    def __init__(self, messages: Messages, rng: random.Random, size: tuple[int, int], report: Report,
                 checker: OutputChecker, lock: threading.Lock, checkpoints: dict[str, str],
                 log: Callable[[str], None]) -> None:
        self.messages, self.rng, self.size, self.report = messages, rng, size, report
        self.checker, self.lock, self.checkpoints, self._log = checker, lock, checkpoints, log
        self.pending: list[tuple[str, Any, float]] = []  # (service kind, future, t_called)
        self.refusals: dict[str, list[float]] = {}
        self._odd_refused: set[str] = set()

    def count(self, t: Target, kind: str) -> None:
        t.report.sent[kind] = t.report.sent.get(kind, 0) + 1
        self.report.messages_sent += 1

    def valid(self, t: Target, wait: float = 0.0, labels: bool = False) -> float | None:
        """Publish one valid frame (after a new label set when `labels`); with `wait`, the seconds
        until its segmentation arrived (None: not within `wait`)."""
        if labels:
            self.labels(t, topic=True)
        msg = self.messages.valid_compressed() if t.compressed else self.messages.valid_image()
        key, t_sent = stamp_key(msg.header), time.monotonic()
        with self.lock:
            t.valid[key] = (VALID_FRAME, self.size[0], self.size[1], t_sent)
        if t.depth and self.rng.random() < 0.7:
            depth = self.messages.valid_depth(msg.header.stamp)
            with self.lock:
                t.valid_depth.add(stamp_key(depth.header))
            t.pubs["depth"].publish(depth)
        t.pubs["image"].publish(msg)
        self.count(t, "valid")
        if not wait:
            return None
        deadline = t_sent + wait
        while time.monotonic() < deadline:
            if key in t.answers:
                return t.answers[key] - t_sent
            time.sleep(0.005)
        return None

    def _timed_refusal(self, kind: str, convert: Callable[[], Any]) -> bool:
        """Run the node's conversion on a message meant to be malformed here; True if refused. The
        time kept is the least of three tries: the cost of the refusal, not a preemption by another
        process on a shared CPU."""
        best = math.inf
        for _ in range(3):
            t0 = time.perf_counter()
            try:
                convert()
            except ImageConversionError:
                best = min(best, time.perf_counter() - t0)
            else:
                return False
        self.refusals.setdefault(kind, []).append(best * 1e3)
        return True

    def image_fuzz(self, t: Target) -> None:
        if t.compressed:
            kind, msg, malformed = self.messages.compressed()
            convert = lambda: compressed_to_numpy(msg)  # noqa: E731
        else:
            kind, msg, malformed = self.messages.raw_image()
            convert = lambda: image_to_numpy(msg)  # noqa: E731
        key = stamp_key(msg.header)
        if malformed:
            if not self._timed_refusal(kind, convert):
                self.report.not_refused_locally.append(kind)
            with self.lock:
                t.bad[key] = kind
        else:
            try:
                image = convert()
                image = image[0] if isinstance(image, tuple) else image
                size = (image.shape[1], image.shape[0])
            except ImageConversionError as exc:  # an odd frame the conversion refuses: it must not be answered
                if kind not in self._odd_refused:
                    self._log(f"odd {kind} refused: {exc}")
                self._odd_refused.add(kind)
                with self.lock:
                    t.bad[key] = kind
                size = None
            if size is not None:
                with self.lock:
                    t.valid[key] = (msg.header.frame_id, size[0], size[1], time.monotonic())
        t.pubs["image"].publish(msg)
        self.count(t, kind)

    def depth_fuzz(self, t: Target) -> None:
        near = self.messages.stamp()
        kind, msg, malformed = self.messages.depth(near)
        with self.lock:
            (t.bad_depth if malformed else t.valid_depth).add(stamp_key(msg.header))
        t.pubs["depth"].publish(msg)
        self.count(t, kind)

    def camera_info(self, t: Target) -> None:
        kind, msg = self.messages.camera_info()
        topic = "depth/camera_info" if t.depth and self.rng.random() < 0.5 else "camera_info"
        t.pubs[topic].publish(msg)
        self.count(t, kind)

    def valid_infos(self, t: Target) -> None:
        """Valid CameraInfos for the frames' size, so that 3D is computed again after the fuzz."""
        w, h = self.size
        k = [100.0, 0.0, w / 2, 0.0, 100.0, h / 2, 0.0, 0.0, 1.0]
        for topic in ("camera_info", "depth/camera_info") if t.depth else ("camera_info",):
            msg = CameraInfo(width=w, height=h, k=k, p=[*k[:3], 0.0, *k[3:6], 0.0, *k[6:], 0.0])
            msg.header.stamp, msg.header.frame_id = self.messages.stamp(), DEPTH_FRAME
            t.pubs[topic].publish(msg)
            self.count(t, "camera_info_valid")

    # -- round two (issue 22) ---------------------------------------------------------------------
    def extreme_geometry(self, t: Target) -> None:
        """Finite but unusable geometry: an extreme CameraInfo (3D off until the next valid one), or
        (on a node with depth) usable intrinsics and a depth frame of 3e38 m / 1e30 m values
        beside ordinary ones, with a valid frame stamped like it."""
        if not t.depth or self.rng.random() < 0.5:
            kind, msg = self.messages.extreme_camera_info()
            topic = "depth/camera_info" if t.depth and self.rng.random() < 0.5 else "camera_info"
            t.pubs[topic].publish(msg)
            self.count(t, kind)
            return
        self.valid_infos(t)
        frame = self.messages.valid_image()
        kind, depth = self.messages.extreme_depth(frame.header.stamp)
        with self.lock:
            t.valid[stamp_key(frame.header)] = (VALID_FRAME, self.size[0], self.size[1], time.monotonic())
            t.valid_depth.add(stamp_key(depth.header))
        t.pubs["depth"].publish(depth)
        t.pubs["image"].publish(frame)
        self.count(t, kind)

    def long_text(self, t: Target) -> None:
        """A label set (topic or service) or an expression with tens of thousands of spaces."""
        if self.rng.random() < 0.25:
            t.pubs["referring_expression"].publish(String(data=self.messages.long_whitespace_expression()))
            self.count(t, "referring_long_whitespace")
            return
        labels = self.messages.long_whitespace_labels()
        self.checker.allow(labels)
        if self.rng.random() < 0.5:
            t.pubs["labels"].publish(String(data=labels if isinstance(labels, str) else ", ".join(labels)))
            self.count(t, "labels_long_whitespace")
        else:
            request = SetLabels.Request()
            if isinstance(labels, str):
                request.labels_csv = labels
            else:
                request.labels = labels
            self._call(t, "set_labels", request)

    def set_labels_now(self, t: Target, labels: list[str] | str, timeout: float = 30.0) -> Any:
        """Call set_labels and wait for the response (None: none within `timeout` s)."""
        self.checker.allow(labels)
        request = SetLabels.Request()
        if isinstance(labels, str):
            request.labels_csv = labels
        else:
            request.labels = labels
        future = t.clients["storm_set_labels"].call_async(request)
        future.add_done_callback(lambda f, t=t: self.checker.on_set_labels(t, f))
        self.count(t, "set_labels")
        deadline = time.monotonic() + timeout
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.002)
        return future.result() if future.done() else None

    def storm(self, t: Target, set_labels: int, refers: int) -> list[tuple[str, Any, float]]:
        """`set_labels` and `refers` calls at once (deep-queue clients: see `nodes.wire`):
        [(kind, future, t_called)]."""
        calls = []
        for i in range(set_labels):
            labels = [f"storm {i}", self.rng.choice(["road", "white box", "sky"])]
            self.checker.allow(labels)
            future = t.clients["storm_set_labels"].call_async(SetLabels.Request(labels=labels))
            future.add_done_callback(lambda f, t=t: self.checker.on_set_labels(t, f))
            calls.append(("set_labels", future, time.monotonic()))
            self.count(t, "storm_set_labels")
        for _ in range(refers):
            request = Refer.Request(expression=self.rng.choice(["the white box", "the red thing on the left", ""]))
            calls.append(("refer", t.clients["storm_refer"].call_async(request), time.monotonic()))
            self.count(t, "storm_refer")
        return calls

    def labels(self, t: Target, topic: bool | None = None) -> None:
        text = self.messages.label_text()
        if topic is None:
            topic = self.rng.random() < 0.75
        if topic:
            self.checker.allow(text)
            t.pubs["labels"].publish(String(data=text))
            self.count(t, "labels_topic")
            return
        as_list = self.rng.random() < 0.5
        request = SetLabels.Request()
        if as_list:
            request.labels = [part for part in text.split(",")] if text else []
            self.checker.allow(list(request.labels))
        else:
            request.labels_csv = text
            self.checker.allow(text)
        if self.rng.random() < 0.05:  # both fields: refused
            request.labels, request.labels_csv = ["a"], "b"
        self._call(t, "set_labels", request)

    def _call(self, t: Target, kind: str, request) -> None:
        client = t.clients["parameters" if kind.startswith("param") else kind]
        future = client.call_async(request)
        if kind == "set_labels":
            future.add_done_callback(lambda f, t=t: self.checker.on_set_labels(t, f))
        with self.lock:
            self.pending.append((kind, future, time.monotonic()))
        self.report.service_calls[kind] = self.report.service_calls.get(kind, 0) + 1
        self.count(t, kind)

    def expression(self, t: Target) -> None:
        text = self.messages.expression()
        if self.rng.random() < 0.85:
            t.pubs["referring_expression"].publish(String(data=text))
            self.count(t, "referring_topic")
        else:
            self._call(t, "refer", Refer.Request(expression=text))

    # -- parameters ------------------------------------------------------------------------------
    def parameter_cases(self) -> list[tuple[str, Any, bool, Any]]:
        """(name, value, valid, value to restore afterwards or None)."""
        rng = self.rng
        return [
            ("threshold", "abc", False, None), ("threshold", float("nan"), False, None),
            ("threshold", 2.0, False, None),
            ("working_size", -1, False, None), ("working_size", 10**9, False, None),
            ("max_regions", -5, False, None), ("min_region_area", 0, False, None),
            ("scales", [], False, None), ("scales", [float("nan")], False, None), ("scales", [0.0], False, None),
            ("scales", [1.0] * rng.randint(9, 40), False, [1.0]), ("scales", ["a"], False, None),
            ("device", "cuda:²", False, "cpu"), ("device", "gpu", False, "cpu"), ("device", "cuda:-1", False, "cpu"),
            ("device", "cpu ", False, "cpu"), ("precision", "fp8", False, None), ("labels", "", False, None),
            ("labels", "a, a", False, None), ("log_throttle_period", -1.0, False, None),
            ("cloud_stride", 0, False, None), ("depth_slop", -1.0, False, None), ("max_image_pixels", 0, False, None),
            ("max_labels", 5000, False, None), ("diagnostics_period", 2.0, False, None),
            ("use_compressed", True, False, None), ("no_such_parameter", 1, False, None),
            ("overlay_alpha", "0.5", False, None), ("checkpoint", self.checkpoints["missing"], False, None),
            ("checkpoint", self.checkpoints["directory"], False, None),
            ("threshold", 0.2, True, 0.0), ("min_region_area", 5, True, 20), ("max_regions", 3, True, 256),
            ("overlay_alpha", 0.9, True, 0.5), ("labels", "cat, dog, red thing", True, None),
            ("scales", [0.75, 1.0], True, [1.0]),
        ]

    def parameter(self, t: Target, case: tuple[str, Any, bool, Any]) -> None:
        """Set one of `parameter_cases` (answered later: the outcome lands in the report)."""
        name, value, valid, restore = case
        if name == "labels" and valid:
            self.checker.allow(value)
        future = t.clients["parameters"].call_async(_set_parameter(name, value))

        def done(f, name=name, value=value, valid=valid, restore=restore, t=t) -> None:
            result = f.result()
            if result is None:
                return
            ok = bool(result.results[0].successful)
            text = f"{name}={_short(value)} on {t.name}"
            self.report.parameter_outcomes[f"{name}={_short(value)}"] = (
                "accepted" if ok else f"refused: {result.results[0].reason[:100]}")
            if ok and not valid:
                self.report.bad_params_accepted.append(text)
            elif valid and not ok:
                self.report.good_params_refused.append(f"{text}: {result.results[0].reason}")
            if ok and restore is not None:  # undo at once: a DoS value must not stay
                t.clients["parameters"].call_async(_set_parameter(name, restore))
        future.add_done_callback(done)
        with self.lock:
            self.pending.append(("parameters", future, time.monotonic()))
        self.report.service_calls["parameters"] = self.report.service_calls.get("parameters", 0) + 1
        self.count(t, "parameters")

    def swap_checkpoint(self, t: Target, which: str) -> None:
        accepted = which in ("main", "alt", "broken", "truncated")  # files: they load (or fail) later
        self.parameter(t, ("checkpoint", self.checkpoints[which], accepted, None))

    def dos_scales(self, t: Target) -> bool:
        """Set scales = [1.0] * 10,000 (waiting 10 s at most for the answer), then send a valid frame:
        whether it was accepted (a bad parameter accepted, then)."""
        future = t.clients["parameters"].call_async(_set_parameter("scales", DOS_SCALES))
        deadline = time.monotonic() + 10
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.01)
        result = future.result() if future.done() else None
        accepted = bool(result and result.results[0].successful)
        if accepted:
            self.report.bad_params_accepted.append(f"scales=[1.0]*10000 on {t.name}")
        self.valid(t)
        return accepted



def _set_parameter(name: str, value: Any):
    from rcl_interfaces.msg import Parameter as ParameterMsg
    from rcl_interfaces.srv import SetParameters
    return SetParameters.Request(parameters=[ParameterMsg(name=name, value=_parameter_value(value))])


def _parameter_value(value: Any):
    from rcl_interfaces.msg import ParameterType, ParameterValue
    if isinstance(value, bool):
        return ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value)
    if isinstance(value, int):
        return ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=max(-2**63, min(2**63 - 1, value)))
    if isinstance(value, float):
        return ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
    if isinstance(value, str):
        return ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
    if isinstance(value, list) and all(isinstance(v, float) for v in value):
        return ParameterValue(type=ParameterType.PARAMETER_DOUBLE_ARRAY, double_array_value=value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ParameterValue(type=ParameterType.PARAMETER_STRING_ARRAY, string_array_value=value)
    return ParameterValue(type=ParameterType.PARAMETER_NOT_SET)


def _short(value: Any) -> str:
    if isinstance(value, list) and len(value) > 4:
        return f"[{value[0]!r}]*{len(value)}"
    return repr(value)[:60]
