"""Torture the node as a robot's network might: malformed and odd messages of every kind, a
flood of valid frames, a label change every frame, checkpoint swaps, bad parameters, SIGINT.

    python bench/torture.py                                   # 5,000 messages, seed 0
    python bench/torture.py --messages 10000 --seed 3 --duration 120 --json out/torture.json
    python bench/torture.py --soak 3600 --out out/soak        # 1-hour soak: CSV + PNG every 10 s

The node runs as a user starts it (`python -m lang_seg_ros.ros.node --ros-args --params-file
config/segment.yaml ...`, its own process and session, a random ROS_DOMAIN_ID, discovery on
this host: `test/ros/harness.py`'s `NodeProcess`), twice by default: one on raw `image` (with
`use_depth` and `publish_cloud`, so `depth` and both CameraInfo topics are fuzzed too) and one
on `image/compressed` (with `overlap_postprocessing: on`, the finisher thread a GPU gets).
This process is an ordinary DDS participant that publishes and calls services; a second
thread spins its executor.

Phases (per run): start-up; baseline (frames one at a time: the unloaded FPS and latency);
fuzz (`--messages` messages from `random.Random(--seed)`, within `--duration` s: malformed and
odd Images, CompressedImages (bombs, garbage, other formats), depth Images, CameraInfos,
label sets on the topic and the service, referring expressions on the topic and the `refer`
service, parameter sets with bad values, valid frames each after a new label set, checkpoint
swaps (another valid one, a broken file, a truncated file, a directory, a missing path) at
fixed points); flood (valid frames at `--flood` x the baseline FPS, a new label set before
each, malformed ones between); liveness (one more valid frame must be answered); end (a
`scales` list of 10,000 values set on the raw node, a frame in flight, then SIGINT to every
node: exit code and time).

How malformed input is told apart: every message gets a unique stamp; valid and "odd but valid"
frames carry frame_id `cam` / `odd_<kind>` and are remembered with their size, malformed ones
`bad_<kind>`, depth frames `depth_cam` / `bad_depth_<kind>`. Every output of the node (all the
topics it publishes, discovered from the graph, but `current_labels` and `/diagnostics`) must
carry the stamp and frame_id of a valid input (the cloud: the frame_id of a valid depth
frame), each at most once; `segmentation` must name a label set this process sent (parsed by
the core's own policy, `lang_seg_ros.inference.labels`), with one label set per
`label_set_id`, a mask of the input's size whose values index those labels, regions whose
label is `labels[label_index]`, and stamps and `sequence` that only increase (nothing stale
re-published); its `depth_header` must be a valid depth frame's.

Invariants reported: alive (the process never exited, and answers a frame at the end), no
output for malformed input, outputs consistent with their label set, bad parameters refused,
peak RSS (VmHWM, reset by /proc/PID/clear_refs when the fuzz starts, and VmRSS sampled every
0.25 s) within start RSS + `--rss-budget` MiB, SIGINT exit code 0. Also: the time this process
takes to refuse each malformed image in `lang_seg_ros.ros.image_conversion` (the node's own
code, the same call), numpy warnings and tracebacks in the node's log, FPS and latency under
the flood relative to the baseline.

`--soak S`: after the fuzz, S seconds of valid frames at the baseline rate with one malformed
message in ten and a label change every 10 s; every 10 s the node's VmRSS / VmHWM, the FPS and
latency p50 / p95 are appended to OUT/soak.csv, and OUT/soak.png is drawn (matplotlib, if
installed). The RSS slope after the first 20 % is reported in MiB per 10 minutes.
"""
from __future__ import annotations

import argparse
import array
import importlib
import json
import math
import os
import random
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "test" / "ros"))  # the ROS tests' harness: how a node process is started

import harness  # noqa: E402 - sets this run's own ROS_DOMAIN_ID, localhost discovery, the Fast DDS profile
import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from lang_seg_ros.inference.labels import parse_label_spec  # noqa: E402
from lang_seg_ros.ros.image_conversion import (ImageConversionError, compressed_to_numpy, image_to_numpy,  # noqa: E402
                                               numpy_to_compressed, numpy_to_image)
from lang_seg_ros.srv import Refer, SetLabels  # noqa: E402

__all__ = ["Options", "Report", "Torture", "main", "make_checkpoints"]

MIB = 1 << 20
VALID_FRAME, DEPTH_FRAME = "cam", "depth_cam"
OUT_QOS = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
SEND_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
#: Topics the node publishes that are not per-frame outputs.
NOT_FRAME_OUTPUTS = ("current_labels", "/diagnostics", "/rosout", "/parameter_events")
VOCABULARY = ["floor", "wall", "person", "chair", "mug", "red thing", "green thing", "blue thing", "white box",
              "sky", "road", "car", "tree", "Stuhl", "椅子", "café table", "door", "laptop", "bottle", "cat"]
DOS_SCALES = [1.0] * 10_000


@dataclass
class Options:
    messages: int = 5000
    seed: int = 0
    duration: float = 90.0  # s: the fuzz phase ends after this many seconds even if messages remain
    flood: float = 10.0  # x the baseline FPS
    flood_seconds: float = 10.0
    size: tuple[int, int] = (160, 120)  # valid frames, width x height
    inputs: tuple[str, ...] = ("raw", "compressed")
    checkpoint: str | None = None  # a .safetensors the node loads; None: a tiny random one is made
    alt_checkpoint: str | None = None  # a second valid one for the swaps
    swaps: bool = True
    dos: bool = True  # end with scales = [1.0] * 10000 and a frame in flight before SIGINT
    rss_budget_mib: float = 300.0
    soak: float = 0.0
    out: Path = field(default_factory=lambda: Path("out/torture"))
    workdir: Path | None = None
    node_params: dict[str, Any] = field(default_factory=dict)
    start_timeout: float = 120.0
    verbose: bool = False


@dataclass
class NodeReport:
    name: str
    pid: int = 0
    log: str = ""
    sent: dict[str, int] = field(default_factory=dict)  # per message kind
    outputs: dict[str, int] = field(default_factory=dict)  # per topic
    malformed_outputs: list[str] = field(default_factory=list)
    unknown_outputs: list[str] = field(default_factory=list)
    repeated_outputs: list[str] = field(default_factory=list)
    label_violations: list[str] = field(default_factory=list)
    order_violations: list[str] = field(default_factory=list)
    depth_violations: list[str] = field(default_factory=list)
    died: str = ""
    answered_at_end: bool = False
    start_rss_mib: float = 0.0
    peak_rss_mib: float = 0.0  # max(VmHWM since the fuzz started, sampled VmRSS)
    hwm_reset: bool = False
    exit_code: int | None = None
    exit_seconds: float = 0.0
    dos_accepted: bool | None = None
    baseline_fps: float = 0.0
    baseline_latency_ms: tuple[float, float] = (math.nan, math.nan)  # p50, p95
    flood_fps: float = 0.0
    flood_rate_hz: float = 0.0
    flood_latency_ms: tuple[float, float] = (math.nan, math.nan)
    flood_labels_fps: float = 0.0  # the flood with a new label set before every frame
    flood_labels_latency_ms: tuple[float, float] = (math.nan, math.nan)
    malformed_sent: int = 0
    log_warnings: dict[str, int] = field(default_factory=dict)


@dataclass
class Report:
    options: dict[str, Any]
    nodes: list[NodeReport]
    messages_sent: int = 0  # everything published or called
    fuzz_messages: int = 0  # in the fuzz phase
    fuzz_seconds: float = 0.0
    refusal_ms: dict[str, float] = field(default_factory=dict)  # per kind: the slowest refusal
    refusal_ms_max: float = 0.0
    refusal_ms_p99: float = 0.0
    not_refused_locally: list[str] = field(default_factory=list)  # meant to be malformed, converted anyway
    bad_params_accepted: list[str] = field(default_factory=list)
    parameter_outcomes: dict[str, str] = field(default_factory=dict)  # "name=value" -> accepted / refused: why
    good_params_refused: list[str] = field(default_factory=list)
    service_calls: dict[str, int] = field(default_factory=dict)
    service_unanswered: dict[str, int] = field(default_factory=dict)
    soak_csv: str = ""
    soak_png: str = ""
    soak_rss_slope_mib_per_10min: float = math.nan

    # -- the invariants -------------------------------------------------------------------------
    def checks(self) -> dict[str, tuple[bool, str]]:
        """name -> (passed, detail)."""
        n = self.nodes
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
            "bad parameters refused": (not self.bad_params_accepted, ", ".join(self.bad_params_accepted)),
            "RSS bounded": (all(r.peak_rss_mib <= r.start_rss_mib + self.options["rss_budget_mib"] for r in n),
                            "; ".join(f"{r.name}: peak {r.peak_rss_mib:.0f} MiB vs start {r.start_rss_mib:.0f} MiB "
                                      f"(+{r.peak_rss_mib - r.start_rss_mib:.0f})" for r in n)),
            "SIGINT exit 0": (all(r.exit_code == 0 for r in n),
                              "; ".join(f"{r.name}: exit {r.exit_code} after {r.exit_seconds:.1f} s"
                                        + (" (scales x10000 accepted)" if r.dos_accepted else "") for r in n)),
        }
        if self.not_refused_locally:
            out["every malformed image refused by the conversion"] = (False, ", ".join(self.not_refused_locally[:5]))
        return out

    def summary(self) -> str:
        lines = [f"torture: {self.fuzz_messages} fuzzed messages in {self.fuzz_seconds:.1f} s ({self.messages_sent} "
                 f"messages in all, flood and checks included), seed "
                 f"{self.options['seed']}, inputs {', '.join(r.name for r in self.nodes)}"]
        for r in self.nodes:
            lines.append(f"  {r.name} (pid {r.pid}): sent {sum(r.sent.values())}, outputs {sum(r.outputs.values())} "
                         f"({', '.join(f'{k} {v}' for k, v in sorted(r.outputs.items()))})")
            lines.append(f"    RSS start {r.start_rss_mib:.0f} MiB, peak {r.peak_rss_mib:.0f} MiB (+"
                         f"{r.peak_rss_mib - r.start_rss_mib:.0f}; VmHWM reset: {r.hwm_reset}); exit "
                         f"{r.exit_code} after SIGINT in {r.exit_seconds:.1f} s")
            lines.append(f"    malformed sent {r.malformed_sent}; baseline (one frame at a time) {r.baseline_fps:.1f} "
                         f"FPS, latency p50/p95 {r.baseline_latency_ms[0]:.0f}/{r.baseline_latency_ms[1]:.0f} ms")
            if r.flood_rate_hz:
                lines.append(f"    flood at {r.flood_rate_hz:.0f} Hz: {r.flood_fps:.1f} FPS ("
                             f"{100 * r.flood_fps / r.baseline_fps if r.baseline_fps else 0:.0f} % of the baseline), "
                             f"latency p50/p95 {r.flood_latency_ms[0]:.0f}/{r.flood_latency_ms[1]:.0f} ms; with a new "
                             f"label set every frame: {r.flood_labels_fps:.1f} FPS, latency p50/p95 "
                             f"{r.flood_labels_latency_ms[0]:.0f}/{r.flood_labels_latency_ms[1]:.0f} ms")
            if r.log_warnings:
                lines.append(f"    log: {', '.join(f'{k} {v}' for k, v in sorted(r.log_warnings.items()))}")
        lines.append(f"  refusal in the conversion: max {self.refusal_ms_max:.2f} ms, p99 {self.refusal_ms_p99:.2f} ms;"
                     f" slowest kinds: " + ", ".join(f"{k} {v:.2f}" for k, v in
                                                     sorted(self.refusal_ms.items(), key=lambda kv: -kv[1])[:4]))
        lines.append(f"  services: {self.service_calls}, unanswered {self.service_unanswered}")
        refused = sum(v.startswith("refused") for v in self.parameter_outcomes.values())
        lines.append(f"  parameter values tried: {len(self.parameter_outcomes)}, refused {refused} (--json lists them)")
        if self.good_params_refused:
            lines.append(f"  valid parameter values refused: {', '.join(self.good_params_refused)}")
        if self.soak_csv:
            lines.append(f"  soak: {self.soak_csv}, {self.soak_png or 'no plot (matplotlib is not installed)'}; RSS "
                         f"slope {self.soak_rss_slope_mib_per_10min:+.2f} MiB / 10 min after the first 20 %")
        for name, (ok, detail) in self.checks().items():
            lines.append(f"  [{'PASS' if ok else 'FAIL'}] {name}: {detail}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        from dataclasses import asdict
        data = asdict(self)
        data["checks"] = {k: {"passed": ok, "detail": d} for k, (ok, d) in self.checks().items()}
        data["options"] = {k: str(v) if isinstance(v, Path) else v for k, v in self.options.items()}
        return data


# -- checkpoints ------------------------------------------------------------------------------------
def make_checkpoints(folder: Path, main: str | None = None, alt: str | None = None) -> dict[str, str]:
    """Paths for the swaps: main and alt (valid; tiny random models unless given), broken (random
    bytes), truncated (alt cut in half), directory, missing."""
    folder.mkdir(parents=True, exist_ok=True)
    if main is None or alt is None:
        import torch

        from lang_seg_ros.model import build_model, save_checkpoint
        for seed, name in ((0, "main"), (1, "alt")):
            if (main if name == "main" else alt) is None:
                torch.manual_seed(seed)
                path = save_checkpoint(build_model("lseg_tiny").eval(), folder / f"{name}.safetensors")
                main, alt = (str(path), alt) if name == "main" else (main, str(path))
    broken = folder / "broken.safetensors"
    broken.write_bytes(random.Random(7).randbytes(4096))
    truncated = folder / "truncated.safetensors"
    data = Path(alt).read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    directory = folder / "a_directory.safetensors"
    directory.mkdir(exist_ok=True)
    return {"main": str(main), "alt": str(alt), "broken": str(broken), "truncated": str(truncated),
            "directory": str(directory), "missing": str(folder / "missing.safetensors")}


# -- message makers -------------------------------------------------------------------------------
def _bytes(data: bytes) -> array.array:
    return array.array("B", data)


def _jpeg_bomb(rng: random.Random, base: bytes) -> tuple[str, bytes]:
    """A small JPEG whose frame header says it is huge, hidden in one of the ways the old scan missed."""
    i = min(j for j in (base.find(bytes([0xFF, m])) for m in (0xC0, 0xC1, 0xC2)) if j >= 0)
    side = rng.choice([20000, 30000, 65000])
    data = base[:i + 5] + side.to_bytes(2, "big") + side.to_bytes(2, "big") + base[i + 9:]
    how = rng.choice(["plain", "fill", "fills", "exif", "app_segments"])
    if how == "fill":
        data = data[:i] + b"\xff" + data[i:]
    elif how == "fills":
        data = data[:i] + b"\xff" * rng.randint(2, 5000) + data[i:]
    elif how == "exif":
        data = data[:2] + b"\xff\xe1\xff\xffExif\x00\x00" + bytes(65535 - 8) + data[2:]
    elif how == "app_segments":
        seg = b"".join(bytes([0xFF, 0xE0 + rng.randint(2, 15)]) + (300).to_bytes(2, "big") + bytes(298)
                       for _ in range(rng.randint(1, 50)))
        data = data[:2] + seg + data[2:]
    return f"jpeg_bomb_{how}", data


class Messages:
    """Every message this run sends, made from one seeded RNG, with unique stamps."""

    def __init__(self, rng: random.Random, size: tuple[int, int], clock: Callable[[], int]) -> None:
        import cv2

        self.rng = rng
        self.width, self.height = size
        self._clock = clock
        self._last = 0
        self.pattern = harness.pattern_image(self.height, self.width)
        self._jpeg = numpy_to_compressed(self.pattern, "jpeg", color_order="rgb").data.tobytes()
        self._progressive = cv2.imencode(".jpg", self.pattern, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
        self._png = numpy_to_compressed(self.pattern, "png", color_order="rgb").data.tobytes()
        self._others = {ext: cv2.imencode(ext, self.pattern)[1].tobytes() for ext in (".tiff", ".gif", ".webp", ".bmp")}

    def stamp(self):
        from builtin_interfaces.msg import Time
        ns = max(self._clock(), self._last + 1000)
        self._last = ns
        return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)

    def _header(self, msg, frame_id: str):
        msg.header.stamp = self.stamp()
        msg.header.frame_id = frame_id
        return msg

    # valid frames
    def valid_image(self) -> Image:
        return self._header(numpy_to_image(self.pattern, "rgb8"), VALID_FRAME)

    def valid_compressed(self) -> CompressedImage:
        return self._header(CompressedImage(format="jpeg", data=_bytes(self._jpeg)), VALID_FRAME)

    def valid_depth(self, stamp) -> Image:
        depth = np.full((self.height, self.width), 1500, np.uint16)
        depth[:, : self.width // 4] = 0  # invalid pixels
        msg = numpy_to_image(depth, "16UC1")
        msg.header.stamp, msg.header.frame_id = stamp, DEPTH_FRAME
        return msg

    # raw images: (kind, message, malformed)
    def raw_image(self) -> tuple[str, Image, bool]:
        rng, w, h = self.rng, self.width, self.height
        kind = rng.choice(["step_small", "short_data", "one_byte_short", "absurd_step", "huge_dims", "zero_size",
                           "bad_encoding", "wrong_data_for_encoding", "uint32_height", "empty_data", "padding_missing",
                           "odd_padded", "odd_big_endian", "odd_float_extremes", "odd_mono", "odd_bgra", "odd_tiny",
                           "odd_longer_data", "odd_8UC3"])
        msg = numpy_to_image(self.pattern, "rgb8")
        malformed = not kind.startswith("odd_")
        if kind == "step_small":
            msg.step = rng.randint(0, w * 3 - 1)
        elif kind == "short_data":
            msg.data = msg.data[: rng.randint(0, len(msg.data) - 1)]
        elif kind == "one_byte_short":  # the case: 3x2 mono8, step 4, 7 bytes
            msg = Image(height=2, width=3, encoding="mono8", step=4, data=_bytes(bytes(7)))
        elif kind == "absurd_step":
            msg = Image(height=rng.choice([1, 2]), width=2, encoding="rgb8", step=4294967295, data=_bytes(bytes(6)))
        elif kind == "huge_dims":
            msg = Image(height=100000, width=100000, encoding="rgb8", step=300000, data=_bytes(bytes(64)))
        elif kind == "zero_size":
            msg.width, msg.height = rng.choice([(0, h), (w, 0), (0, 0)])
        elif kind == "bad_encoding":
            msg.encoding = rng.choice(["yuv422", "", "RGB8", "rgb8 ", "16FC1", "bayer_rggb8", "\x00", "é" * 300,
                                       "x" * 10000])
        elif kind == "wrong_data_for_encoding":
            msg.encoding, msg.step = "32FC1", w * 4
            msg.data = msg.data[: w * h]  # rgb8 bytes are 3/4 of a 32FC1 image
            msg.data = msg.data[: w * h * 4 - 1] if len(msg.data) >= w * h * 4 else msg.data
        elif kind == "uint32_height":
            msg.height = 4294967295
        elif kind == "empty_data":
            msg.data = _bytes(b"")
        elif kind == "padding_missing":
            pad = rng.randint(1, 64)
            rows = np.frombuffer(msg.data, np.uint8).reshape(h, w * 3)
            padded = np.concatenate([rows, np.zeros((h, pad), np.uint8)], axis=1).tobytes()
            msg.step, msg.data = w * 3 + pad, _bytes(padded[:-pad])
        elif kind == "odd_padded":
            pad = rng.randint(1, 4096)
            rows = np.frombuffer(msg.data, np.uint8).reshape(h, w * 3)
            msg.step = w * 3 + pad
            msg.data = _bytes(np.concatenate([rows, np.full((h, pad), 0xAB, np.uint8)], axis=1).tobytes())
        elif kind == "odd_big_endian":
            gray = self.pattern.mean(axis=2).astype(np.uint16) * 257
            msg = Image(height=h, width=w, encoding=rng.choice(["mono16", "16UC1"]), is_bigendian=1, step=w * 2,
                        data=_bytes(gray.astype(">u2").tobytes()))
        elif kind == "odd_float_extremes":
            values = np.array([np.inf, -np.inf, np.nan, 1e38, -1e38, 3.4e38, 0.0, 1.0], np.float32)
            msg = numpy_to_image(np.resize(values, (h, w)).astype(np.float32), "32FC1")
        elif kind == "odd_mono":
            msg = numpy_to_image(self.pattern[:, :, 0].copy(), rng.choice(["mono8", "8UC1"]))
        elif kind == "odd_bgra":
            msg = numpy_to_image(np.dstack([self.pattern, np.full((h, w), 255, np.uint8)]), "bgra8")
        elif kind == "odd_tiny":
            side = rng.randint(1, 3)
            msg = numpy_to_image(self.pattern[:side, :side].copy(), "rgb8")
        elif kind == "odd_longer_data":
            msg.data = _bytes(msg.data.tobytes() + bytes(rng.randint(1, 1000)))
        elif kind == "odd_8UC3":
            msg = numpy_to_image(self.pattern[:, :, ::-1].copy(), "8UC3")
        return kind, self._header(msg, f"bad_{kind}" if malformed else kind), malformed

    def compressed(self) -> tuple[str, CompressedImage, bool]:
        rng = self.rng
        kind = rng.choice(["jpeg_bomb", "jpeg_bomb", "progressive_bomb", "png_bomb", "webp_bomb", "bmp_bomb",
                           "pnm_bomb", "garbage", "jpeg_garbage", "empty", "compressed_depth", "tiff", "gif",
                           "sos_before_sof", "png_ihdr_not_first", "odd_png", "odd_webp", "odd_bmp", "odd_gray_png",
                           "odd_fill_bytes", "odd_truncated"])
        malformed = not kind.startswith("odd_")
        fmt = rng.choice(["jpeg", "png", "", "rgb8; jpeg compressed bgr8", "x" * 300])
        if kind == "jpeg_bomb":
            kind, data = _jpeg_bomb(rng, self._jpeg)
        elif kind == "progressive_bomb":
            kind, data = _jpeg_bomb(rng, self._progressive)
            kind = "progressive_" + kind
        elif kind == "png_bomb":
            side = rng.choice([20000, 100000, 2**31 - 1]).to_bytes(4, "big")
            data = self._png[:16] + side + side + self._png[24:]
        elif kind == "webp_bomb":
            data = (b"RIFF" + (22).to_bytes(4, "little") + b"WEBPVP8X" + (10).to_bytes(4, "little") + bytes(4)
                    + (29999).to_bytes(3, "little") + (29999).to_bytes(3, "little"))
        elif kind == "bmp_bomb":
            bmp = self._others[".bmp"]
            data = bmp[:18] + (30000).to_bytes(4, "little") + (-30000).to_bytes(4, "little", signed=True) + bmp[26:]
        elif kind == "pnm_bomb":
            data = b"P6\n# fuzz\n30000 30000\n255\n" + rng.randbytes(256)
        elif kind == "garbage":
            data = rng.randbytes(rng.randint(1, 5000))
        elif kind == "jpeg_garbage":
            data = b"\xff\xd8\xff" + rng.randbytes(rng.randint(1, 5000))
        elif kind == "empty":
            data = b""
        elif kind == "compressed_depth":
            fmt, data = "16UC1; compressedDepth png", self._png
        elif kind in ("tiff", "gif"):
            data = self._others["." + kind]
        elif kind == "sos_before_sof":
            data = b"\xff\xd8\xff\xda\x00\x08" + rng.randbytes(100)
        elif kind == "png_ihdr_not_first":
            data = self._png[:12] + b"tEXt" + self._png[16:]
        elif kind == "odd_png":
            data = self._png
        elif kind == "odd_webp":
            data = self._others[".webp"]
        elif kind == "odd_bmp":
            data = self._others[".bmp"]
        elif kind == "odd_gray_png":
            import cv2
            data = cv2.imencode(".png", self.pattern[:, :, 1])[1].tobytes()
        elif kind == "odd_fill_bytes":
            i = self._jpeg.find(b"\xff\xc0")
            data = self._jpeg[:i] + b"\xff" * rng.randint(1, 100) + self._jpeg[i:]
        else:  # odd_truncated: the header is whole, the scan data cut (libjpeg decodes it, grey-filled)
            data = self._jpeg[: len(self._jpeg) * 2 // 3]
        msg = CompressedImage(format=fmt, data=_bytes(data))
        return kind, self._header(msg, f"bad_{kind}" if malformed else kind), malformed

    def depth(self, near_stamp) -> tuple[str, Image, bool]:
        rng, w, h = self.rng, self.width, self.height
        kind = rng.choice(["short", "step_small", "absurd_step", "rgb_encoding", "zero", "other_aspect", "huge",
                           "odd_float_extremes", "odd_half_size", "odd_all_invalid"])
        malformed = not kind.startswith("odd_")
        msg = numpy_to_image(np.full((h, w), 1200, np.uint16), "16UC1")
        if kind == "short":
            msg.data = msg.data[:-1]
        elif kind == "step_small":
            msg.step = w
        elif kind == "absurd_step":
            msg = Image(height=1, width=2, encoding="16UC1", step=4294967295, data=_bytes(bytes(4)))
        elif kind == "rgb_encoding":
            msg = numpy_to_image(self.pattern, "rgb8")
        elif kind == "zero":
            msg.width = 0
        elif kind == "other_aspect":
            msg = numpy_to_image(np.full((h, h), 1200, np.uint16), "16UC1")
        elif kind == "huge":
            msg = Image(height=50000, width=50000, encoding="16UC1", step=100000, data=_bytes(bytes(16)))
        elif kind == "odd_float_extremes":
            values = np.array([np.inf, -np.inf, np.nan, 1e38, -1e38, 0.0, 1.5, 3.4e38], np.float32)
            msg = numpy_to_image(np.resize(values, (h, w)).astype(np.float32), "32FC1")
        elif kind == "odd_half_size":
            msg = numpy_to_image(np.full((h // 2, w // 2), 800, np.uint16), "16UC1")
        elif kind == "odd_all_invalid":
            msg = numpy_to_image(np.zeros((h, w), np.uint16), "16UC1")
        ns = near_stamp.sec * 1_000_000_000 + near_stamp.nanosec + rng.randint(-2_000_000, 2_000_000)
        from builtin_interfaces.msg import Time
        msg.header.stamp = Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)
        msg.header.frame_id = DEPTH_FRAME if not malformed else f"bad_depth_{kind}"
        return "depth_" + kind, msg, malformed

    def camera_info(self) -> tuple[str, CameraInfo]:
        rng = self.rng
        kind = rng.choice(["valid", "zero_size", "huge", "nan_k", "inf_k", "zero_k", "negative_k", "long_d",
                           "other_size"])
        w, h = self.width, self.height
        k = [100.0, 0.0, w / 2, 0.0, 100.0, h / 2, 0.0, 0.0, 1.0]
        msg = CameraInfo(width=w, height=h, k=k, p=[*k[:3], 0.0, *k[3:6], 0.0, *k[6:], 0.0])
        if kind == "zero_size":
            msg.width = msg.height = 0
        elif kind == "huge":
            msg.width = msg.height = 4294967295
        elif kind == "nan_k":
            msg.k = [math.nan] * 9
        elif kind == "inf_k":
            msg.k = [math.inf, 0.0, 1.0, 0.0, -math.inf, 1.0, 0.0, 0.0, 1.0]
        elif kind == "zero_k":
            msg.k = [0.0] * 9
        elif kind == "negative_k":
            msg.k = [-100.0, 0.0, -5.0, 0.0, -100.0, -5.0, 0.0, 0.0, -1.0]
        elif kind == "long_d":
            msg.d = [rng.uniform(-1e30, 1e30) for _ in range(10000)]
        elif kind == "other_size":
            msg.width, msg.height = w * 3, h * 7
        return "camera_info_" + kind, self._header(msg, DEPTH_FRAME)

    def label_text(self) -> str:
        """A label set as typed: valid most of the time, else one of the refusals of the policy."""
        rng = self.rng
        kind = rng.random()
        if kind < 0.7:
            labels = rng.sample(VOCABULARY, rng.randint(1, 6))
            labels = [f"{label}{rng.choice(['', '', ':stuff', ' : STUFF'])}" for label in labels]
            return rng.choice([", ", ",", " ,  "]).join(labels)
        return rng.choice(["", ",,, ,", ", ".join(f"l{i}" for i in range(rng.choice([600, 1025, 5000]))),
                           "x" * rng.choice([101, 257, 100_000]), "cat, dog, cat", "car, CAR, Car",
                           "floor:stuff, floor", "cat, d\x07og", "a\u200bb, c", "\ud7ff, \x00",
                           "person:stuff:stuff, ok"])

    def expression(self) -> str:
        rng = self.rng
        return rng.choice(["the red thing on the left", "the largest blue thing", "the white box",
                           "the second green thing from the left", "the mug next to the laptop", "",
                           "the one on the left", "x" * rng.choice([257, 10_000]), "the cat\x07",
                           "левая кружка",
                           "the " + " ".join(rng.sample(VOCABULARY, 3)), "\u202e the box"])


# -- the run --------------------------------------------------------------------------------------
class _Target:
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

    def status(self) -> tuple[float, float] | None:
        try:
            text = Path(f"/proc/{self.proc.proc.pid}/status").read_text()
        except OSError:
            return None
        values = {}
        for line in text.splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                values[line[:5]] = int(line.split()[1]) / 1024
        return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


def _key(header) -> tuple[int, int]:
    return (header.stamp.sec, header.stamp.nanosec)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


class Torture:
    """One run; `run()` returns a `Report`. Uses its own rclpy context, node and spinning thread."""

    def __init__(self, options: Options) -> None:
        self.o = options
        self.rng = random.Random(options.seed)
        self.report = Report(options={k: getattr(options, k) for k in options.__dataclass_fields__}, nodes=[])
        self.targets: list[_Target] = []
        self.allowed_labels: set[tuple[str, ...]] = set()
        self.refusals: dict[str, list[float]] = {}
        self._odd_refused: set[str] = set()
        self.pending: list[tuple[str, Any, float]] = []  # (service kind, future, t_called)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.context = self.node = self.executor = None
        self.workdir = Path(options.workdir or tempfile.mkdtemp(prefix="torture_"))

    # -- set-up ---------------------------------------------------------------------------------
    def _log(self, text: str) -> None:
        if self.o.verbose:
            print(f"[torture {time.strftime('%H:%M:%S')}] {text}", flush=True)

    def _start_ros(self) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context, signal_handler_options=rclpy.signals.SignalHandlerOptions.NO)
        self.node = rclpy.create_node(f"torture_{os.getpid()}", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._spinner = threading.Thread(target=self._spin, name="torture-spin", daemon=True)
        self._spinner.start()
        self._sampler = threading.Thread(target=self._sample_rss, name="torture-rss", daemon=True)
        self._sampler.start()

    def _spin(self) -> None:
        while not self._stop.is_set() and self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: BLE001 - shutting down
                if self._stop.is_set():
                    return
                raise

    def _sample_rss(self) -> None:
        while not self._stop.is_set():
            for t in list(self.targets):
                if t.proc.proc.poll() is None:
                    status = t.status()
                    if status:
                        t.rss.append((time.monotonic(), *status))
            time.sleep(0.25)

    def _start_nodes(self, checkpoints: dict[str, str]) -> None:
        base = {**harness.FAST_PARAMS, "checkpoint": checkpoints["main"], "overlap_postprocessing": "off",
                "max_image_pixels": 1 << 24, **self.o.node_params}
        logs = self.o.out / "node_logs"
        logs.mkdir(parents=True, exist_ok=True)
        for name in self.o.inputs:
            params = dict(base)
            if name == "raw":
                params.update(use_depth=True, publish_cloud=True, cloud_stride=4, depth_slop=0.02)
            else:  # and frames finished on the second thread, as on a GPU
                params.update(use_compressed=True, overlap_postprocessing="on")
            namespace = f"/torture_{os.getpid()}_{name}"
            proc = harness.NodeProcess("lang_seg_ros.ros.node", logs / f"{name}.log", namespace, params)
            target = _Target(name, proc, compressed=name != "raw", depth=name == "raw")
            target.report.pid, target.report.log = proc.proc.pid, str(proc.log_path)
            self.targets.append(target)
        self.allowed_labels.add(tuple(parse_label_spec(harness.TEST_LABELS).labels))
        for t in self.targets:
            self._wire(t)

    def _wire(self, t: _Target) -> None:
        n, topic = self.node, t.proc.topic
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
                     "parameters": n.create_client(SetParameters, f"{t.proc.fqn}/set_parameters")}

    def _subscribe_outputs(self, t: _Target) -> None:
        """Every topic the node publishes (from the graph), but the label set and diagnostics."""
        ns, name = t.proc.namespace, t.proc.name
        topics: dict = {}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # until discovery has settled: the same list twice, 1 s apart
            try:
                now = dict(self.node.get_publisher_names_and_types_by_node(name, ns))
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
            t.subs.append(self.node.create_subscription(msg_type, topic_name, self._on_output(t, short), OUT_QOS))
        from lang_seg_ros.msg import LabelSet
        t.subs.append(self.node.create_subscription(LabelSet, t.proc.topic("current_labels"), self._on_label_set(t),
                                                    harness.LATCHED))

    def _on_label_set(self, t: _Target):
        def callback(msg) -> None:
            with self._lock:
                known = t.label_ids.setdefault(int(msg.label_set_id), tuple(msg.labels))
                if known != tuple(msg.labels):
                    t.report.label_violations.append(f"label_set_id {msg.label_set_id} names {known} and "
                                                     f"{tuple(msg.labels)}")
        return callback

    def _on_output(self, t: _Target, topic: str):
        def callback(msg) -> None:
            received = time.monotonic()
            if hasattr(msg, "header"):
                headers = [msg.header]
            else:  # a MarkerArray: its markers' headers (a DELETEALL marker may carry none)
                headers = [m.header for m in getattr(msg, "markers", []) if _key(m.header) != (0, 0)]
            with self._lock:
                r = t.report
                r.outputs[topic] = r.outputs.get(topic, 0) + 1
                for header in headers:
                    self._check_header(t, topic, header)
                if topic == "segmentation":
                    t.answers.setdefault(_key(msg.header), received)
                    self._check_segmentation(t, msg)
        return callback

    def _check_header(self, t: _Target, topic: str, header) -> None:
        r, key = t.report, _key(header)
        what = f"{topic} {key[0]}.{key[1]:09d} {header.frame_id[:40]!r}"
        if key in t.bad or header.frame_id.startswith("bad_"):
            r.malformed_outputs.append(f"{what} for {t.bad.get(key, header.frame_id)}")
            return
        if key not in t.valid:
            r.unknown_outputs.append(what)
            return
        frame_id = t.valid[key][0]
        if topic in ("cloud", "obstacles", "regions/markers"):  # in the depth frame (markers: or the camera's)
            if header.frame_id not in (DEPTH_FRAME, frame_id if topic == "regions/markers" else DEPTH_FRAME):
                r.depth_violations.append(f"{what}: not the valid depth frame_id")
        elif header.frame_id != frame_id:
            r.unknown_outputs.append(f"{what}: frame_id is not the input's {frame_id!r}")
        seen = t.seen.setdefault(topic, set())
        if topic != "regions/markers" and key in seen:
            r.repeated_outputs.append(what)
        seen.add(key)

    def _check_segmentation(self, t: _Target, msg) -> None:
        r, key = t.report, _key(msg.header)
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
        depth_key = _key(msg.depth_header)
        if depth_key != (0, 0) and (depth_key in t.bad_depth or msg.depth_header.frame_id != DEPTH_FRAME):
            r.depth_violations.append(f"{key}: depth_header {depth_key} {msg.depth_header.frame_id!r}")

    def _wait_ready(self, t: _Target, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if t.proc.proc.poll() is not None:
                raise RuntimeError(f"{t.name} node exited with {t.proc.proc.returncode}:\n{t.proc.log()[-3000:]}")
            if self._send_valid(t, wait=2.0) is not None:
                return
        raise TimeoutError(f"{t.name} node did not answer within {timeout:.0f} s:\n{t.proc.log()[-3000:]}")

    # -- sending ---------------------------------------------------------------------------------
    def _count(self, t: _Target, kind: str) -> None:
        t.report.sent[kind] = t.report.sent.get(kind, 0) + 1
        self.report.messages_sent += 1

    def _send_valid(self, t: _Target, wait: float = 0.0, labels: bool = False) -> float | None:
        """Publish one valid frame (after a new label set when `labels`); with `wait`, the seconds
        until its segmentation arrived (None: not within `wait`)."""
        if labels:
            self._send_labels(t, topic=True)
        msg = self.messages.valid_compressed() if t.compressed else self.messages.valid_image()
        key, t_sent = _key(msg.header), time.monotonic()
        with self._lock:
            t.valid[key] = (VALID_FRAME, self.o.size[0], self.o.size[1], t_sent)
        if t.depth and self.rng.random() < 0.7:
            depth = self.messages.valid_depth(msg.header.stamp)
            with self._lock:
                t.valid_depth.add(_key(depth.header))
            t.pubs["depth"].publish(depth)
        t.pubs["image"].publish(msg)
        self._count(t, "valid")
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

    def _send_image_fuzz(self, t: _Target) -> None:
        if t.compressed:
            kind, msg, malformed = self.messages.compressed()
            convert = lambda: compressed_to_numpy(msg)  # noqa: E731
        else:
            kind, msg, malformed = self.messages.raw_image()
            convert = lambda: image_to_numpy(msg)  # noqa: E731
        key = _key(msg.header)
        if malformed:
            if not self._timed_refusal(kind, convert):
                self.report.not_refused_locally.append(kind)
            with self._lock:
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
                with self._lock:
                    t.bad[key] = kind
                size = None
            if size is not None:
                with self._lock:
                    t.valid[key] = (msg.header.frame_id, size[0], size[1], time.monotonic())
        t.pubs["image"].publish(msg)
        self._count(t, kind)

    def _send_depth_fuzz(self, t: _Target) -> None:
        near = self.messages.stamp()
        kind, msg, malformed = self.messages.depth(near)
        with self._lock:
            (t.bad_depth if malformed else t.valid_depth).add(_key(msg.header))
        t.pubs["depth"].publish(msg)
        self._count(t, kind)

    def _send_camera_info(self, t: _Target) -> None:
        kind, msg = self.messages.camera_info()
        topic = "depth/camera_info" if t.depth and self.rng.random() < 0.5 else "camera_info"
        t.pubs[topic].publish(msg)
        self._count(t, kind)

    def _send_valid_infos(self, t: _Target) -> None:
        """Valid CameraInfos for the frames' size, so that 3D is computed again after the fuzz."""
        w, h = self.o.size
        k = [100.0, 0.0, w / 2, 0.0, 100.0, h / 2, 0.0, 0.0, 1.0]
        for topic in ("camera_info", "depth/camera_info") if t.depth else ("camera_info",):
            msg = CameraInfo(width=w, height=h, k=k, p=[*k[:3], 0.0, *k[3:6], 0.0, *k[6:], 0.0])
            msg.header.stamp, msg.header.frame_id = self.messages.stamp(), DEPTH_FRAME
            t.pubs[topic].publish(msg)
            self._count(t, "camera_info_valid")

    def _note_labels(self, entries) -> None:
        try:
            spec = parse_label_spec(entries)
        except ValueError:
            return
        with self._lock:
            self.allowed_labels.add(tuple(spec.labels))

    def _send_labels(self, t: _Target, topic: bool | None = None) -> None:
        text = self.messages.label_text()
        if topic is None:
            topic = self.rng.random() < 0.75
        if topic:
            self._note_labels(text)
            t.pubs["labels"].publish(String(data=text))
            self._count(t, "labels_topic")
            return
        as_list = self.rng.random() < 0.5
        request = SetLabels.Request()
        if as_list:
            request.labels = [part for part in text.split(",")] if text else []
            self._note_labels(list(request.labels))
        else:
            request.labels_csv = text
            self._note_labels(text)
        if self.rng.random() < 0.05:  # both fields: refused
            request.labels, request.labels_csv = ["a"], "b"
        self._call(t, "set_labels", request)

    def _call(self, t: _Target, kind: str, request) -> None:
        client = t.clients["parameters" if kind.startswith("param") else kind]
        future = client.call_async(request)
        if kind == "set_labels":
            future.add_done_callback(lambda f, t=t: self._on_set_labels(t, f))
        with self._lock:
            self.pending.append((kind, future, time.monotonic()))
        self.report.service_calls[kind] = self.report.service_calls.get(kind, 0) + 1
        self._count(t, kind)

    def _on_set_labels(self, t: _Target, future) -> None:
        response = future.result()
        if response is None:
            return
        with self._lock:
            known = t.label_ids.setdefault(int(response.label_set_id), tuple(response.labels))
            if known != tuple(response.labels):
                t.report.label_violations.append(f"set_labels: label_set_id {response.label_set_id} names {known} "
                                                 f"and {tuple(response.labels)}")

    def _send_expression(self, t: _Target) -> None:
        text = self.messages.expression()
        if self.rng.random() < 0.85:
            t.pubs["referring_expression"].publish(String(data=text))
            self._count(t, "referring_topic")
        else:
            self._call(t, "refer", Refer.Request(expression=text))

    # -- parameters ------------------------------------------------------------------------------
    def _parameter_cases(self) -> list[tuple[str, Any, bool, Any]]:
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

    def _send_parameter(self, t: _Target, case: tuple[str, Any, bool, Any]) -> None:
        from rcl_interfaces.msg import Parameter as ParameterMsg
        from rcl_interfaces.srv import SetParameters

        name, value, valid, restore = case
        if name == "labels" and valid:
            self._note_labels(value)
        request = SetParameters.Request(parameters=[ParameterMsg(name=name, value=_parameter_value(value))])
        future = t.clients["parameters"].call_async(request)

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
                undo = SetParameters.Request(parameters=[ParameterMsg(name=name, value=_parameter_value(restore))])
                t.clients["parameters"].call_async(undo)
        future.add_done_callback(done)
        with self._lock:
            self.pending.append(("parameters", future, time.monotonic()))
        self.report.service_calls["parameters"] = self.report.service_calls.get("parameters", 0) + 1
        self._count(t, "parameters")

    def _swap_checkpoint(self, t: _Target, which: str) -> None:
        self._send_parameter(t, ("checkpoint", self.checkpoints[which], which in ("main", "alt", "broken", "truncated"),
                                 None))

    # -- phases ----------------------------------------------------------------------------------
    def _baseline(self, t: _Target, seconds: float = 3.0, frames: int = 20) -> None:
        """Frames one at a time (the next when the previous is answered) for `seconds` and at least
        `frames` frames: the unloaded FPS (a lower bound: the round trip adds) and latency."""
        latencies = []
        t0 = time.monotonic()
        for i in range(100_000):
            if i >= frames and time.monotonic() - t0 >= seconds:
                break
            latency = self._send_valid(t, wait=10.0)
            if latency is not None:
                latencies.append(latency * 1e3)
        elapsed = time.monotonic() - t0
        t.report.baseline_fps = len(latencies) / elapsed if elapsed > 0 else 0.0
        t.report.baseline_latency_ms = (_percentile(latencies, 50), _percentile(latencies, 95))

    def _fuzz(self) -> None:
        o, rng = self.o, self.rng
        kinds = [("image", 40), ("depth", 8), ("camera_info", 7), ("labels", 8), ("expression", 7), ("param", 3),
                 ("valid", 12)]
        names, weights = zip(*kinds)
        params = self._parameter_cases()
        swap_at = {int(o.messages * f): which for f, which in
                   ((0.15, "alt"), (0.3, "broken"), (0.45, "truncated"), (0.6, "missing"), (0.75, "main"))} \
            if o.swaps else {}
        t0 = time.monotonic()
        sent_before = self.report.messages_sent
        deadline = t0 + o.duration
        interval = max(0.0, (o.duration * 0.8) / max(1, o.messages))
        for i in range(o.messages):
            if time.monotonic() > deadline:
                break
            t = rng.choice(self.targets)
            if i in swap_at:
                for target in self.targets:
                    self._swap_checkpoint(target, swap_at[i])
            kind = rng.choices(names, weights)[0]
            if kind == "image":
                self._send_image_fuzz(t)
            elif kind == "depth":
                t = next((x for x in self.targets if x.depth), t)
                self._send_depth_fuzz(t) if t.depth else self._send_camera_info(t)
            elif kind == "camera_info":
                self._send_camera_info(t)
            elif kind == "labels":
                self._send_labels(t)
            elif kind == "expression":
                self._send_expression(t)
            elif kind == "param":
                self._send_parameter(t, rng.choice(params))
            else:
                self._send_valid(t, labels=True)
            if interval:
                time.sleep(interval * rng.uniform(0.2, 1.8))
            if i % 200 == 0:
                self._check_alive()
            if i % 100 == 50:  # fuzzed CameraInfos turn 3D off ([bad_depth]); valid ones turn it on again
                for target in self.targets:
                    self._send_valid_infos(target)
        self.report.fuzz_seconds = time.monotonic() - t0
        self.report.fuzz_messages = self.report.messages_sent - sent_before
        if o.swaps:  # whatever the swaps left, end on the main checkpoint
            for t in self.targets:
                self._swap_checkpoint(t, "main")

    def _flood(self, t: _Target) -> None:
        """Valid frames at `flood` x the baseline FPS for `flood_seconds`: the first half with the label
        set unchanged (FPS and latency against the baseline), the second with a new label set before
        every frame; one malformed frame in five between them."""
        rate = max(1.0, min(400.0, self.o.flood * max(t.report.baseline_fps, 1.0)))
        t.report.flood_rate_hz = rate
        self._send_valid_infos(t)
        for half, labels in ((0, False), (1, True)):
            seconds = self.o.flood_seconds / 2
            start = next_at = time.monotonic()
            while time.monotonic() - start < seconds:
                self._send_valid(t, labels=labels)
                if self.rng.random() < 0.2:
                    self._send_image_fuzz(t)
                next_at += 1.0 / rate
                time.sleep(max(0.0, next_at - time.monotonic()))
            end = time.monotonic()
            time.sleep(0.5)  # the last answers
            with self._lock:
                window = [(key, tr) for key, tr in t.answers.items() if start <= tr <= end + 0.5]
                latencies = [(tr - t.valid[key][3]) * 1e3 for key, tr in window if key in t.valid]
            fps, latency = len(window) / (end + 0.5 - start), (_percentile(latencies, 50), _percentile(latencies, 95))
            if labels:
                t.report.flood_labels_fps, t.report.flood_labels_latency_ms = fps, latency
            else:
                t.report.flood_fps, t.report.flood_latency_ms = fps, latency

    def _check_alive(self) -> None:
        for t in self.targets:
            if t.proc.proc.poll() is not None and not t.report.died:
                t.report.died = f"exited with {t.proc.proc.returncode} during the run"

    def _reset_hwm(self, t: _Target) -> None:
        status = t.status()
        t.report.start_rss_mib = status[0] if status else 0.0
        try:
            Path(f"/proc/{t.proc.proc.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
            t.report.hwm_reset = True
        except OSError:
            t.report.hwm_reset = False
        t.rss_from = time.monotonic()

    def _peak(self, t: _Target) -> float:
        status = t.status()
        samples = [rss for (when, rss, _) in t.rss if when >= getattr(t, "rss_from", 0.0)]
        peak = max(samples, default=0.0)
        if status and t.report.hwm_reset:
            peak = max(peak, status[1])
        return peak

    def _end(self) -> None:
        for t in self.targets:  # liveness: one more frame must be answered
            t.report.answered_at_end = any(self._send_valid(t, wait=15.0) is not None for _ in range(3))
            t.report.peak_rss_mib = self._peak(t)
        self._check_alive()
        self._drain_services(10.0)
        dos_target = next((t for t in self.targets if not t.compressed), None) if self.o.dos else None
        if dos_target is not None and dos_target.proc.proc.poll() is None:
            from rcl_interfaces.msg import Parameter as ParameterMsg
            from rcl_interfaces.srv import SetParameters
            request = SetParameters.Request(parameters=[ParameterMsg(name="scales",
                                                                     value=_parameter_value(DOS_SCALES))])
            future = dos_target.clients["parameters"].call_async(request)
            deadline = time.monotonic() + 10
            while not future.done() and time.monotonic() < deadline:
                time.sleep(0.01)
            result = future.result() if future.done() else None
            dos_target.report.dos_accepted = bool(result and result.results[0].successful)
            if dos_target.report.dos_accepted:
                self.report.bad_params_accepted.append(f"scales=[1.0]*10000 on {dos_target.name}")
            self._send_valid(dos_target)
            time.sleep(1.5)  # the frame is in flight
        for t in self.targets:
            if t.proc.proc.poll() is not None:
                t.report.exit_code = t.proc.proc.returncode
                continue
            t0 = time.monotonic()
            t.report.exit_code = t.proc.stop(timeout=30.0)
            t.report.exit_seconds = time.monotonic() - t0
            log = t.proc.log()
            for needle in ("RuntimeWarning", "Traceback", "terminate called", "bad_image", "bad_depth", "bad_labels",
                           "bad_expression", "model_error", "internal", "keeping the previous model"):
                count = log.count(needle)
                if count:
                    t.report.log_warnings[needle] = count

    def _drain_services(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if all(f.done() for _, f, _ in self.pending):
                    break
            time.sleep(0.05)
        with self._lock:
            for kind, future, _ in self.pending:
                if not future.done():
                    self.report.service_unanswered[kind] = self.report.service_unanswered.get(kind, 0) + 1

    def _soak(self) -> None:
        """--soak: valid frames at the baseline rate, one malformed in ten, a label set every 10 s."""
        import csv
        o = self.o
        o.out.mkdir(parents=True, exist_ok=True)
        path = o.out / "soak.csv"
        rows = []
        start = time.monotonic()
        next_sample, next_labels = start + 10, start
        answered_before = {t.name: len(t.answers) for t in self.targets}
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["t_s", "node", "vmrss_mib", "vmhwm_mib", "fps", "latency_p50_ms", "latency_p95_ms",
                             "messages_sent"])
            while time.monotonic() - start < o.soak:
                for t in self.targets:
                    if time.monotonic() >= next_labels:
                        self._send_labels(t, topic=True)
                        self._send_valid_infos(t)
                    self._send_valid(t)
                    if self.rng.random() < 0.1:
                        self._send_image_fuzz(t)
                if time.monotonic() >= next_labels:
                    next_labels += 10
                time.sleep(1.0 / max(1.0, min(t.report.baseline_fps for t in self.targets)))
                if time.monotonic() >= next_sample:
                    for t in self.targets:
                        with self._lock:
                            window = [(k, tr) for k, tr in t.answers.items() if tr >= next_sample - 10]
                            lat = [(tr - t.valid[k][3]) * 1e3 for k, tr in window if k in t.valid]
                        status = t.status() or (math.nan, math.nan)
                        row = [round(time.monotonic() - start, 1), t.name, round(status[0], 1), round(status[1], 1),
                               round(len(window) / 10, 2), round(_percentile(lat, 50), 1),
                               round(_percentile(lat, 95), 1), self.report.messages_sent]
                        writer.writerow(row)
                        rows.append(row)
                    f.flush()
                    next_sample += 10
                    self._check_alive()
        del answered_before
        self.report.soak_csv = str(path)
        self.report.soak_rss_slope_mib_per_10min = _slope(rows)
        self.report.soak_png = _plot(rows, o.out / "soak.png")

    # -- the whole run ---------------------------------------------------------------------------
    def run(self) -> Report:
        o = self.o
        self.checkpoints = make_checkpoints(self.workdir / "checkpoints", o.checkpoint, o.alt_checkpoint)
        self._start_ros()
        self.messages = Messages(self.rng, o.size, lambda: self.node.get_clock().now().nanoseconds)
        try:
            self._start_nodes(self.checkpoints)
            for t in self.targets:
                self._subscribe_outputs(t)
            for t in self.targets:
                self._log(f"waiting for the {t.name} node")
                self._wait_ready(t, o.start_timeout)
            for t in self.targets:
                self._baseline(t)
                self._log(f"{t.name}: baseline {t.report.baseline_fps:.1f} FPS")
            for t in self.targets:
                self._reset_hwm(t)
            self._log("fuzz")
            self._fuzz()
            self._drain_services(5.0)
            for t in self.targets:
                self._log(f"flood {t.name}")
                self._flood(t)
            if o.soak:
                self._log(f"soak {o.soak:.0f} s")
                for t in self.targets:
                    self._send_valid_infos(t)
                self._soak()
            self._end()
        finally:
            for t in self.targets:
                if t.proc.proc.poll() is None:
                    t.proc.stop(timeout=30.0)
            self._shutdown_ros()
        for t in self.targets:
            t.report.malformed_sent = len(t.bad) + len(t.bad_depth)
            self.report.nodes.append(t.report)
        times = [ms for values in self.refusals.values() for ms in values]
        self.report.refusal_ms = {k: max(v) for k, v in self.refusals.items()}
        self.report.refusal_ms_max = max(times, default=0.0)
        self.report.refusal_ms_p99 = _percentile(times, 99) if times else 0.0
        self.report.not_refused_locally = sorted(set(self.report.not_refused_locally))
        return self.report

    def _shutdown_ros(self) -> None:
        self._stop.set()
        if self.executor is not None:
            self._spinner.join(5)
            self._sampler.join(5)
            self.executor.shutdown()
            self.node.destroy_node()
            rclpy.try_shutdown(context=self.context)


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


def _slope(rows: list[list]) -> float:
    """RSS slope (MiB per 10 min) after the first 20 % of the samples, the largest over the nodes."""
    slopes = []
    for name in {r[1] for r in rows}:
        points = [(r[0], r[2]) for r in rows if r[1] == name]
        points = points[len(points) // 5:]
        if len(points) >= 3:
            ts, rss = np.array(points, dtype=float).T
            slopes.append(float(np.polyfit(ts, rss, 1)[0]) * 600)
    return max(slopes, default=math.nan, key=abs)


def _plot(rows: list[list], path: Path) -> str:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ""
    fig, (a, b) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for name in sorted({r[1] for r in rows}):
        points = [r for r in rows if r[1] == name]
        t = [r[0] / 60 for r in points]
        a.plot(t, [r[2] for r in points], label=f"{name} VmRSS")
        a.plot(t, [r[3] for r in points], "--", label=f"{name} VmHWM")
        b.plot(t, [r[5] for r in points], label=f"{name} p50")
        b.plot(t, [r[6] for r in points], "--", label=f"{name} p95")
    a.set_ylabel("MiB")
    b.set_ylabel("latency (ms)")
    b.set_xlabel("minutes")
    a.legend()
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--messages", type=int, default=5000, help="fuzzed messages (default 5000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--duration", type=float, default=90.0, help="s: the fuzz phase ends after this (default 90)")
    p.add_argument("--flood", type=float, default=10.0, help="flood rate as a multiple of the baseline FPS")
    p.add_argument("--flood-seconds", type=float, default=10.0)
    p.add_argument("--soak", type=float, default=0.0, metavar="SECONDS", help="soak after the fuzz (CSV + PNG)")
    p.add_argument("--inputs", default="raw,compressed", help="raw, compressed or both")
    p.add_argument("--checkpoint", help="a .safetensors the node loads (default: a tiny random model)")
    p.add_argument("--alt-checkpoint", help="a second valid checkpoint for the swaps")
    p.add_argument("--size", default="160x120", help="valid frames, WxH")
    p.add_argument("--no-swaps", action="store_true")
    p.add_argument("--no-dos", action="store_true", help="skip scales=[1.0]*10000 before SIGINT")
    p.add_argument("--rss-budget", type=float, default=300.0, help="MiB above the start RSS (default 300)")
    p.add_argument("--out", type=Path, default=Path("out/torture"), help="node logs, soak CSV/PNG")
    p.add_argument("--json", type=Path, help="write the report as JSON")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME:=VALUE",
                   help="extra node parameter (YAML value), e.g. -p working_size:=256")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    import yaml
    width, height = (int(v) for v in args.size.lower().split("x"))
    options = Options(messages=args.messages, seed=args.seed, duration=args.duration, flood=args.flood,
                      flood_seconds=args.flood_seconds, size=(width, height),
                      inputs=tuple(x.strip() for x in args.inputs.split(",") if x.strip()),
                      checkpoint=args.checkpoint, alt_checkpoint=args.alt_checkpoint, swaps=not args.no_swaps,
                      dos=not args.no_dos, rss_budget_mib=args.rss_budget, soak=args.soak, out=args.out,
                      node_params={k: yaml.safe_load(v) for k, v in (x.split(":=", 1) for x in args.param)},
                      verbose=args.verbose)
    from _machine import cpu_name  # bench/_machine.py
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores; ROS_DOMAIN_ID {os.environ.get('ROS_DOMAIN_ID')}")
    report = Torture(options).run()
    print(report.summary())
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.to_json(), indent=1, default=str))
    return 0 if all(ok for ok, _ in report.checks().values()) else 1


if __name__ == "__main__":
    sys.exit(main())
