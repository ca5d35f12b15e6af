"""The invariants: what every output of the node is checked against while a torture run goes
(`OutputChecker`: the stamp and frame_id of a valid input, each at most once; a segmentation
consistent with a label set this process sent, one label set per `label_set_id`, stamps and
`sequence` that only increase; 3D only from valid depth frames), and the verdicts reported at the
end (`verdicts`: name -> (passed, detail)).
"""
from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import numpy as np
from harness import stamp_key

from lang_seg_ros.inference.labels import parse_label_spec
from lang_seg_ros.ros.image_conversion import ImageConversionError, image_to_numpy
from torture_lib.messages import DEPTH_FRAME

#: Outputs in the depth camera's optical frame (with the colour image's stamp).
DEPTH_FRAME_TOPICS = ("cloud", "obstacles", "regions/markers", "aligned_points", "detections_3d", "referring/points",
                      "referring/pose")

#: Checked for NaN / inf in every float they carry (clouds: x, y, z; `aligned_points` may hold NaN,
#: all three at once, where depth is invalid) and for an `is_dense` that tells the truth.
FINITE_TOPICS = ("segmentation", "segmentation/camera_info", *DEPTH_FRAME_TOPICS, "referring/region")

if TYPE_CHECKING:
    from torture_lib.nodes import Target
    from torture_lib.report import Report


def cloud_xyz(cloud) -> np.ndarray:
    """(N, 3) float32 x, y, z of a PointCloud2 whose first fields are x, y, z float32 at 0, 4, 8."""
    names = [(f.name, f.offset, f.datatype) for f in cloud.fields][:3]
    if names != [("x", 0, 7), ("y", 4, 7), ("z", 8, 7)] or cloud.point_step < 12:
        raise ValueError(f"fields {names}")
    dtype = np.dtype({"names": ["x", "y", "z"], "formats": ["<f4"] * 3, "offsets": [0, 4, 8],
                      "itemsize": cloud.point_step})
    points = np.frombuffer(bytes(cloud.data), dtype, count=cloud.width * cloud.height)
    return np.stack([points["x"], points["y"], points["z"]], axis=-1)


def non_finite(msg, topic: str = "", path: str = "") -> list[str]:
    """What in a message is NaN / inf, or an `is_dense` that lies: every float field, float array
    and nested message; a PointCloud2's points (`aligned_points`: NaN allowed, all three at once)."""
    if type(msg).__name__ == "PointCloud2":
        try:
            xyz = cloud_xyz(msg)
        except ValueError as exc:
            return [f"{path} cloud {exc}"]
        finite = np.isfinite(xyz)
        bad = []
        if topic == "aligned_points":
            invalid = np.isnan(xyz).all(axis=1)
            if not (finite.all(axis=1) | invalid).all():
                bad.append(f"{path}.points: inf or partly NaN")
        elif not finite.all():
            bad.append(f"{path}.points: {int((~finite.all(axis=1)).sum())} of {len(xyz)} not finite")
        if bool(msg.is_dense) != bool(finite.all()):
            bad.append(f"{path}.is_dense {msg.is_dense} for {'all' if finite.all() else 'not all'} points finite")
        return bad
    bad = []
    for name, kind in msg.get_fields_and_field_types().items():
        value, where = getattr(msg, name), f"{path}.{name}"
        if "float" in kind or "double" in kind:
            if not np.isfinite(np.asarray(value, np.float64)).all():
                bad.append(where)
        elif "/" in kind:  # a message, or a sequence or array of them
            items = value if kind.startswith("sequence") or kind.endswith("]") else [value]
            for i, item in enumerate(items):
                bad += non_finite(item, topic, f"{where}[{i}]")
    return bad


def verdicts(report: Report) -> dict[str, tuple[bool, str]]:
    """name -> (passed, detail)."""
    n = report.nodes
    out = {
        "alive": (all(not r.died and r.answered_at_end for r in n),
                  "; ".join(f"{r.name}: {r.died or ('answered' if r.answered_at_end else 'no answer at the end')}"
                            for r in n)),
        "no output for malformed input": (not any(r.malformed_outputs or r.unknown_outputs for r in n),
                                          "; ".join(f"{r.name}: {len(r.malformed_outputs)} for malformed "
                                                    f"{r.malformed_outputs[:3]}, {len(r.unknown_outputs)} for "
                                                    f"unknown inputs {r.unknown_outputs[:3]}" for r in n)),
        "outputs consistent with their label set": (
            not any(r.label_violations for r in n),
            "; ".join(f"{r.name}: {len(r.label_violations)} {r.label_violations[:3]}" for r in n)),
        "no stale or repeated output": (
            not any(r.order_violations or r.repeated_outputs for r in n),
            "; ".join(f"{r.name}: {len(r.order_violations)} out of order {r.order_violations[:2]}, "
                      f"{len(r.repeated_outputs)} repeated {r.repeated_outputs[:2]}" for r in n)),
        "3D only from valid depth frames": (not any(r.depth_violations for r in n),
                                            "; ".join(f"{r.name}: {r.depth_violations[:3]}" for r in n)),
        "no NaN / inf in outputs": (not any(r.nonfinite_outputs for r in n),
                                    "; ".join(f"{r.name}: {len(r.nonfinite_outputs)} {r.nonfinite_outputs[:3]}"
                                              for r in n)),
        "bad parameters refused": (not report.bad_params_accepted, ", ".join(report.bad_params_accepted)),
        "RSS bounded": (all(r.peak_rss_mib <= r.start_rss_mib + report.options["rss_budget_mib"] for r in n),
                        "; ".join(f"{r.name}: peak {r.peak_rss_mib:.0f} MiB vs start {r.start_rss_mib:.0f} MiB "
                                  f"(+{r.peak_rss_mib - r.start_rss_mib:.0f})" for r in n)),
        "SIGINT exit 0": (all(r.exit_code == 0 for r in n),
                          "; ".join(f"{r.name}: exit {r.exit_code} after {r.exit_seconds:.1f} s"
                                    + (" (scales x10000 accepted)" if r.dos_accepted else "") for r in n)),
    }
    storms = [r for r in n if r.storm]
    if storms:
        out["service storms answered"] = (
            all(r.storm["unanswered"] == 0 and r.storm["silent"] == 0 and r.storm["frames_answered"] > 0
                for r in storms),
            "; ".join(f"{r.name}: {r.storm['answered']}/{r.storm['calls']} answered in {r.storm['seconds']:.1f} s "
                      f"({r.storm['refused']} refused: {r.storm['reasons']}), {r.storm['silent']} without a reason, "
                      f"frames {r.storm['frames_answered']}/{r.storm['frames_sent']} answered, longest gap "
                      f"{r.storm['longest_gap_s']:.2f} s" for r in storms))
    texts = [r for r in n if r.long_text_ms]
    if texts:
        out["long text answered like a normal label set"] = (
            all(max(r.long_text_ms) < 3 * max(r.normal_text_ms) + 500 for r in texts),
            "; ".join(f"{r.name}: next frame after a label of 10^4-10^5 spaces in max {max(r.long_text_ms):.0f} ms, "
                      f"after a normal one max {max(r.normal_text_ms):.0f} ms" for r in texts))
    if report.not_refused_locally:
        out["every malformed image refused by the conversion"] = (False, ", ".join(report.not_refused_locally[:5]))
    return out


class OutputChecker:
    """Checks each output of the nodes as it arrives (in the spinning thread, under `lock`) and
    records what breaks an invariant in the target's `NodeReport`. `allowed_labels`: the label
    sets this process sent (parsed by the core's own policy)."""

    def __init__(self, lock: threading.Lock) -> None:
        self.lock = lock
        self.allowed_labels: set[tuple[str, ...]] = set()

    def allow(self, entries) -> None:
        """A label set sent (text or a list); one the policy refuses adds nothing."""
        try:
            spec = parse_label_spec(entries)
        except ValueError:
            return
        with self.lock:
            self.allowed_labels.add(tuple(spec.labels))

    def _note_label_set(self, t: Target, label_set_id: int, labels: tuple[str, ...], source: str = "") -> None:
        known = t.label_ids.setdefault(int(label_set_id), labels)
        if known != labels:
            t.report.label_violations.append(f"{source}label_set_id {label_set_id} names {known} and {labels}")

    def on_label_set(self, t: Target):
        def callback(msg) -> None:
            with self.lock:
                self._note_label_set(t, msg.label_set_id, tuple(msg.labels))
        return callback

    def on_set_labels(self, t: Target, future) -> None:
        response = future.result()
        if response is None:
            return
        with self.lock:
            self._note_label_set(t, response.label_set_id, tuple(response.labels), "set_labels: ")

    def on_output(self, t: Target, topic: str):
        def callback(msg) -> None:
            received = time.monotonic()
            if hasattr(msg, "header"):
                headers = [msg.header]
            else:  # a MarkerArray: its markers' headers (a DELETEALL marker may carry none)
                headers = [m.header for m in getattr(msg, "markers", []) if stamp_key(m.header) != (0, 0)]
            with self.lock:
                r = t.report
                r.outputs[topic] = r.outputs.get(topic, 0) + 1
                if topic in FINITE_TOPICS:
                    bad = non_finite(msg, topic)
                    if bad:
                        key = stamp_key(headers[0]) if headers else (0, 0)
                        r.nonfinite_outputs.append(f"{topic} {key[0]}.{key[1]:09d}: {', '.join(bad[:4])}")
                for header in headers:
                    self.check_header(t, topic, header)
                if topic == "segmentation":
                    t.answers.setdefault(stamp_key(msg.header), received)
                    self.check_segmentation(t, msg)
        return callback

    def check_header(self, t: Target, topic: str, header) -> None:
        r, key = t.report, stamp_key(header)
        what = f"{topic} {key[0]}.{key[1]:09d} {header.frame_id[:40]!r}"
        if key in t.bad or header.frame_id.startswith("bad_"):
            r.malformed_outputs.append(f"{what} for {t.bad.get(key, header.frame_id)}")
            return
        if key not in t.valid:
            r.unknown_outputs.append(what)
            return
        frame_id = t.valid[key][0]
        if topic in DEPTH_FRAME_TOPICS:  # in the depth frame (markers: or the camera's)
            if header.frame_id not in (DEPTH_FRAME, frame_id if topic == "regions/markers" else DEPTH_FRAME):
                r.depth_violations.append(f"{what}: not the valid depth frame_id")
        elif header.frame_id != frame_id:
            r.unknown_outputs.append(f"{what}: frame_id is not the input's {frame_id!r}")
        seen = t.seen.setdefault(topic, set())
        if topic != "regions/markers" and key in seen:
            r.repeated_outputs.append(what)
        seen.add(key)

    def check_segmentation(self, t: Target, msg) -> None:
        r, key = t.report, stamp_key(msg.header)
        labels = tuple(msg.labels)
        problems = []
        if len(msg.label_is_stuff) != len(labels):
            problems.append(f"{len(labels)} labels, {len(msg.label_is_stuff)} stuff flags")
        if labels not in self.allowed_labels:
            problems.append(f"labels {labels[:6]} were never sent")
        known = t.label_ids.setdefault(int(msg.label_set_id), labels)
        if known != labels:
            problems.append(f"label_set_id {msg.label_set_id} named {known[:6]} before, now {labels[:6]}")
        if key in t.valid:
            _, width, height, _ = t.valid[key]
            if (msg.mask.width, msg.mask.height) != (width, height):
                problems.append(f"mask {msg.mask.width}x{msg.mask.height} for a {width}x{height} input")
        expected_encoding = "mono8" if len(labels) <= 255 else "mono16"
        if msg.mask.encoding != expected_encoding:
            problems.append(f"mask {msg.mask.encoding} for {len(labels)} labels")
        else:
            try:
                mask = image_to_numpy(msg.mask)
                bad = (mask >= len(labels)) & (mask != msg.no_label)
                if bad.any():
                    problems.append(f"mask values {sorted(set(mask[bad].tolist()))[:5]} outside {len(labels)} labels")
            except ImageConversionError as exc:
                problems.append(f"mask does not convert: {exc}")
        for region in msg.regions:
            if not 0 <= region.label_index < len(labels) or region.label != labels[region.label_index]:
                problems.append(f"region {region.id} label {region.label!r} index {region.label_index}")
                break
            if getattr(region, "frame_id_3d", "").startswith("bad_"):
                r.depth_violations.append(f"region 3D in {region.frame_id_3d}")
        if problems:
            r.label_violations.append(f"{key}: " + "; ".join(problems))
        if key <= t.last_stamp:
            r.order_violations.append(f"stamp {key} after {t.last_stamp}")
        if msg.sequence <= t.last_sequence:
            r.order_violations.append(f"sequence {msg.sequence} after {t.last_sequence}")
        t.last_stamp, t.last_sequence = max(key, t.last_stamp), max(int(msg.sequence), t.last_sequence)
        depth_key = stamp_key(msg.depth_header)
        if depth_key != (0, 0) and (depth_key in t.bad_depth or msg.depth_header.frame_id != DEPTH_FRAME):
            r.depth_violations.append(f"{key}: depth_header {depth_key} {msg.depth_header.frame_id!r}")

