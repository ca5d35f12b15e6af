"""The torture run's driver: `Options` (what a run does) and `Torture`, its phases in order:
start-up (checkpoints, this process's ROS participant and spinning thread, the node processes),
baseline, fuzz, flood, soak (with --soak), end (liveness, the scales DoS, SIGINT). `run()`
returns the `Report`.
"""
from __future__ import annotations

import math
import os
import random
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import harness  # first: sets this run's own ROS_DOMAIN_ID, localhost discovery, the Fast DDS profile
import rclpy
from rclpy.executors import SingleThreadedExecutor

from torture_lib.invariants import OutputChecker
from torture_lib.messages import Messages, make_checkpoints
from torture_lib.nodes import Target, start_targets, subscribe_outputs, wire
from torture_lib.report import Report, SoakLog, percentile
from torture_lib.sending import Sender


@dataclass
class Options:
    """What a run does (`bench/torture.py`'s flags)."""

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
    big: tuple[int, int] | None = None  # big valid frames among the odd ones, width x height (None: none)
    model: str = "tiny"  # "tiny": random tiny models (fast); "default": the embedded default model at its working_size
    storm: tuple[int, int] = (300, 100)  # set_labels and refer calls fired at once per node; (0, 0): no storm
    storm_timeout: float = 120.0  # s: every call must be answered within this


class Torture:
    """One run; `run()` returns a `Report`. Uses its own rclpy context, node and spinning thread."""

    def __init__(self, options: Options) -> None:
        self.o = options
        self.rng = random.Random(options.seed)
        self.report = Report(options={k: getattr(options, k) for k in options.__dataclass_fields__}, nodes=[])
        self.targets: list[Target] = []
        self._lock = threading.Lock()
        self.checker = OutputChecker(self._lock)
        self._stop = threading.Event()
        self.context = self.node = self.executor = self.send = None
        self.workdir = Path(options.workdir or tempfile.mkdtemp(prefix="torture_"))

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

    def _wait_ready(self, t: Target, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if t.proc.proc.poll() is not None:
                raise RuntimeError(f"{t.name} node exited with {t.proc.proc.returncode}:\n{t.proc.log()[-3000:]}")
            if self.send.valid(t, wait=2.0) is not None:
                return
        raise TimeoutError(f"{t.name} node did not answer within {timeout:.0f} s:\n{t.proc.log()[-3000:]}")

    def _baseline(self, t: Target, seconds: float = 3.0, frames: int = 20) -> None:
        """Frames one at a time (the next when the previous is answered) for `seconds` and at least
        `frames` frames: the unloaded FPS (a lower bound: the round trip adds) and latency."""
        latencies = []
        t0 = time.monotonic()
        for i in range(100_000):
            if i >= frames and time.monotonic() - t0 >= seconds:
                break
            latency = self.send.valid(t, wait=10.0)
            if latency is not None:
                latencies.append(latency * 1e3)
        elapsed = time.monotonic() - t0
        t.report.baseline_fps = len(latencies) / elapsed if elapsed > 0 else 0.0
        t.report.baseline_latency_ms = (percentile(latencies, 50), percentile(latencies, 95))

    def _fuzz(self) -> None:
        o, rng = self.o, self.rng
        kinds = [("image", 40), ("depth", 8), ("camera_info", 7), ("labels", 8), ("expression", 7), ("param", 3),
                 ("valid", 12), ("geometry", 5), ("long_text", 2)]
        names, weights = zip(*kinds)
        params = self.send.parameter_cases()
        swap_at: dict[int, str] = {}
        for f, which in ((0.15, "alt"), (0.3, "broken"), (0.45, "truncated"), (0.6, "missing"), (0.7, "misnamed"),
                         (0.75, "main")) if o.swaps else ():
            swap_at[max(int(o.messages * f), max(swap_at, default=-1) + 1)] = which  # distinct, also for few messages
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
                    self.send.swap_checkpoint(target, swap_at[i])
            kind = rng.choices(names, weights)[0]
            if kind == "image":
                self.send.image_fuzz(t)
            elif kind == "depth":
                t = next((x for x in self.targets if x.depth), t)
                self.send.depth_fuzz(t) if t.depth else self.send.camera_info(t)
            elif kind == "camera_info":
                self.send.camera_info(t)
            elif kind == "labels":
                self.send.labels(t)
            elif kind == "expression":
                self.send.expression(t)
            elif kind == "param":
                self.send.parameter(t, rng.choice(params))
            elif kind == "geometry":
                self.send.extreme_geometry(t)
            elif kind == "long_text":
                self.send.long_text(t)
            else:
                self.send.valid(t, labels=True)
            if interval:
                time.sleep(interval * rng.uniform(0.2, 1.8))
            if i % 200 == 0:
                self._check_alive()
            if i % 100 == 50:  # fuzzed CameraInfos turn 3D off ([bad_depth]); valid ones turn it on again
                for target in self.targets:
                    self.send.valid_infos(target)
        self.report.fuzz_seconds = time.monotonic() - t0
        self.report.fuzz_messages = self.report.messages_sent - sent_before
        if o.swaps:  # whatever the swaps left, end on the main checkpoint
            for t in self.targets:
                self.send.swap_checkpoint(t, "main")

    def _flood(self, t: Target) -> None:
        """Valid frames at `flood` x the baseline FPS for `flood_seconds`: the first half with the label
        set unchanged (FPS and latency against the baseline), the second with a new label set before
        every frame; one malformed frame in five between them."""
        rate = max(1.0, min(400.0, self.o.flood * max(t.report.baseline_fps, 1.0)))
        t.report.flood_rate_hz = rate
        self.send.valid_infos(t)
        for half, labels in ((0, False), (1, True)):
            seconds = self.o.flood_seconds / 2
            start = next_at = time.monotonic()
            while time.monotonic() - start < seconds:
                self.send.valid(t, labels=labels)
                if self.rng.random() < 0.2:
                    self.send.image_fuzz(t)
                next_at += 1.0 / rate
                time.sleep(max(0.0, next_at - time.monotonic()))
            end = time.monotonic()
            time.sleep(0.5)  # the last answers
            with self._lock:
                window = [(key, tr) for key, tr in t.answers.items() if start <= tr <= end + 0.5]
                latencies = [(tr - t.valid[key][3]) * 1e3 for key, tr in window if key in t.valid]
            fps, latency = len(window) / (end + 0.5 - start), (percentile(latencies, 50), percentile(latencies, 95))
            if labels:
                t.report.flood_labels_fps, t.report.flood_labels_latency_ms = fps, latency
            else:
                t.report.flood_fps, t.report.flood_latency_ms = fps, latency

    def _text_probe(self, t: Target, rounds: int = 3) -> None:
        """The next frame after a label set, waited for: `rounds` normal sets, then `rounds` with a
        label of 10^4-10^5 spaces (accepted: it collapses to "x y"). Parsing it once took seconds
        while the node's executor, and so the frame, waited."""
        self.send.valid(t, wait=60.0)  # the fuzz's last checkpoint swap done: not counted
        for i in range(2 * rounds):
            labels = [f"probe {i}", "road"] if i < rounds else self.send.messages.long_whitespace_labels()
            t0 = time.monotonic()
            response = self.send.set_labels_now(t, labels)
            latency = self.send.valid(t, wait=30.0)
            if response is not None and latency is not None:
                (t.report.normal_text_ms if i < rounds else t.report.long_text_ms).append(
                    (time.monotonic() - t0) * 1e3)

    def _storm(self, t: Target) -> None:
        """`storm` set_labels and refer calls at once, valid frames at 5 Hz meanwhile: every call
        must be answered (a success or a refusal with its reason) within `storm_timeout` s; the
        longest gap between two frames answered, from the storm's start until its last answer."""
        self.send.valid_infos(t)
        n_labels, n_refers = self.o.storm
        t0 = time.monotonic()
        calls = self.send.storm(t, n_labels, n_refers)
        frames, next_frame = [], t0
        end = None
        while time.monotonic() - t0 < self.o.storm_timeout:
            if end is None and all(f.done() for _, f, _ in calls):
                end = time.monotonic()
            if end is not None and time.monotonic() > end + 1.0 and len(frames) >= 5:
                break
            if time.monotonic() >= next_frame:
                frames.append(time.monotonic())
                self.send.valid(t)
                next_frame += 0.2
            time.sleep(0.01)
        end = end or time.monotonic()
        time.sleep(0.5)
        with self._lock:
            answered_at = sorted(tr for key, tr in t.answers.items() if t0 <= tr <= end + 1.0)
        points = [t0, *answered_at, end]
        results = [(kind, f.result()) for kind, f, _ in calls if f.done()]
        refused = [r.message for _, r in results if not r.success]
        reasons: dict[str, int] = {}
        for message in refused:
            reasons[message.split(":")[0][:40] or "(none)"] = reasons.get(message.split(":")[0][:40] or "(none)", 0) + 1
        t.report.storm = {
            "calls": len(calls), "kinds": {"set_labels": n_labels, "refer": n_refers}, "answered": len(results),
            "unanswered": len(calls) - len(results), "refused": len(refused), "reasons": reasons,
            "silent": sum(not m.strip() for m in refused), "seconds": end - t0,
            "frames_sent": len(frames), "frames_answered": len(answered_at),
            "longest_gap_s": max(b - a for a, b in zip(points, points[1:])),
        }
        self.send.labels(t, topic=True)  # an ordinary label set again

    def _check_alive(self) -> None:
        for t in self.targets:
            if t.proc.proc.poll() is not None and not t.report.died:
                t.report.died = f"exited with {t.proc.proc.returncode} during the run"

    def _end(self) -> None:
        for t in self.targets:  # liveness: one more frame must be answered
            t.report.answered_at_end = any(self.send.valid(t, wait=15.0) is not None for _ in range(3))
            t.report.peak_rss_mib = t.peak_rss()
        self._check_alive()
        self._drain_services(10.0)
        dos_target = next((t for t in self.targets if not t.compressed), None) if self.o.dos else None
        if dos_target is not None and dos_target.proc.proc.poll() is None:
            dos_target.report.dos_accepted = self.send.dos_scales(dos_target)
            time.sleep(1.5)  # the frame is in flight
        for t in self.targets:
            t.stop()

    def _drain_services(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if all(f.done() for _, f, _ in self.send.pending):
                    break
            time.sleep(0.05)
        with self._lock:
            for kind, future, _ in self.send.pending:
                if not future.done():
                    self.report.service_unanswered[kind] = self.report.service_unanswered.get(kind, 0) + 1

    def _soak(self) -> None:
        """--soak: valid frames at the baseline rate, one malformed in ten, a label set every 10 s;
        every 10 s a row per node in OUT/soak.csv (`report.SoakLog`)."""
        o = self.o
        start = time.monotonic()
        next_sample, next_labels = start + 10, start
        with SoakLog(o.out) as log:
            while time.monotonic() - start < o.soak:
                for t in self.targets:
                    if time.monotonic() >= next_labels:
                        self.send.labels(t, topic=True)
                        self.send.valid_infos(t)
                    self.send.valid(t)
                    if self.rng.random() < 0.1:
                        self.send.image_fuzz(t)
                if time.monotonic() >= next_labels:
                    next_labels += 10
                time.sleep(1.0 / max(1.0, min(t.report.baseline_fps for t in self.targets)))
                if time.monotonic() >= next_sample:
                    for t in self.targets:
                        with self._lock:
                            window = [(k, tr) for k, tr in t.answers.items() if tr >= next_sample - 10]
                            lat = [(tr - t.valid[k][3]) * 1e3 for k, tr in window if k in t.valid]
                        status = t.status() or (math.nan, math.nan)
                        log.add([round(time.monotonic() - start, 1), t.name, round(status[0], 1), round(status[1], 1),
                                 round(len(window) / 10, 2), round(percentile(lat, 50), 1),
                                 round(percentile(lat, 95), 1), self.report.messages_sent])
                    log.flush()
                    next_sample += 10
                    self._check_alive()
        log.finish(self.report)

    def run(self) -> Report:
        o = self.o
        main, alt = o.checkpoint, o.alt_checkpoint
        if o.model == "default":  # the embedded default; the swaps reload the same file
            from lang_seg_ros.model.checkpoint import default_checkpoint_path
            main = main or str(default_checkpoint_path())
            alt = alt or main
        checkpoints = make_checkpoints(self.workdir / "checkpoints", main, alt)
        self._start_ros()
        messages = Messages(self.rng, o.size, lambda: self.node.get_clock().now().nanoseconds, o.big)
        self.send = Sender(messages, self.rng, o.size, self.report, self.checker, self._lock, checkpoints, self._log)
        try:
            for t in start_targets(o, checkpoints["main"]):  # each as it starts: `finally` stops it
                self.targets.append(t)
            self.checker.allow(harness.TEST_LABELS)
            for t in self.targets:
                wire(self.node, t)
            for t in self.targets:
                subscribe_outputs(self.node, t, self.checker)
            for t in self.targets:
                self._log(f"waiting for the {t.name} node")
                self._wait_ready(t, o.start_timeout)
            for t in self.targets:
                self._baseline(t)
                self._log(f"{t.name}: baseline {t.report.baseline_fps:.1f} FPS")
            for t in self.targets:
                t.reset_hwm()
            self._log("fuzz")
            self._fuzz()
            self._drain_services(5.0)
            for t in self.targets:
                self._log(f"text probe {t.name}")
                self._text_probe(t)
                if any(self.o.storm):
                    self._log(f"storm {t.name}")
                    self._storm(t)
            for t in self.targets:
                self._log(f"flood {t.name}")
                self._flood(t)
            if o.soak:
                self._log(f"soak {o.soak:.0f} s")
                for t in self.targets:
                    self.send.valid_infos(t)
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
        times = [ms for values in self.send.refusals.values() for ms in values]
        self.report.refusal_ms = {k: max(v) for k, v in self.send.refusals.items()}
        self.report.refusal_ms_max = max(times, default=0.0)
        self.report.refusal_ms_p99 = percentile(times, 99) if times else 0.0
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
