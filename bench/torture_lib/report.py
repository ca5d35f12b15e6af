"""What a torture run reports: `NodeReport` per node and `Report` (the summary printed, the JSON
written with --json; its verdicts come from `invariants.verdicts`), the percentiles, and the soak's
record: OUT/soak.csv, the RSS slope and OUT/soak.png.
"""
from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from torture_lib.invariants import verdicts

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
    nonfinite_outputs: list[str] = field(default_factory=list)  # NaN / inf, or an is_dense that lies
    storm: dict[str, Any] = field(default_factory=dict)  # the service storm: calls, answers, refusals, gaps
    long_text_ms: list[float] = field(default_factory=list)  # next frame answered after a long-whitespace label
    normal_text_ms: list[float] = field(default_factory=list)  # ... after a normal label set


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

    def checks(self) -> dict[str, tuple[bool, str]]:
        """name -> (passed, detail): the invariants (`invariants.verdicts`)."""
        return verdicts(self)

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
            if r.storm:
                st = r.storm
                lines.append(f"    storm: {st['calls']} calls ({st['kinds']}) at once: {st['answered']} answered in "
                             f"{st['seconds']:.1f} s, {st['refused']} refused ({st['reasons']}), {st['unanswered']} "
                             f"unanswered, {st['silent']} without a reason; frames {st['frames_answered']}/"
                             f"{st['frames_sent']} answered, longest answer gap {st['longest_gap_s']:.2f} s")
            if r.long_text_ms:
                lines.append(f"    next frame after a label of 10^4-10^5 spaces: max {max(r.long_text_ms):.0f} ms "
                             f"(after a normal label set: max {max(r.normal_text_ms):.0f} ms)")
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
        data = asdict(self)
        data["checks"] = {k: {"passed": ok, "detail": d} for k, (ok, d) in self.checks().items()}
        data["options"] = {k: str(v) if isinstance(v, Path) else v for k, v in self.options.items()}
        return data


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]



class SoakLog:
    """--soak's record: OUT/soak.csv, one row per node every 10 s (`COLUMNS`), written as it goes; at
    the end (`finish`) the RSS slope and OUT/soak.png (with matplotlib) in the report."""

    COLUMNS = ["t_s", "node", "vmrss_mib", "vmhwm_mib", "fps", "latency_p50_ms", "latency_p95_ms", "messages_sent"]

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.csv, self.png = folder / "soak.csv", folder / "soak.png"
        self.rows: list[list] = []
        self._file = open(self.csv, "w", newline="")
        self._writer = csv.writer(self._file)
        self._writer.writerow(self.COLUMNS)

    def __enter__(self) -> SoakLog:
        return self

    def __exit__(self, *exc) -> None:
        self._file.close()

    def add(self, row: list) -> None:
        self._writer.writerow(row)
        self.rows.append(row)

    def flush(self) -> None:
        self._file.flush()

    def finish(self, report: Report) -> None:
        report.soak_csv = str(self.csv)
        report.soak_rss_slope_mib_per_10min = rss_slope(self.rows)
        report.soak_png = plot(self.rows, self.png)


def rss_slope(rows: list[list]) -> float:
    """RSS slope (MiB per 10 min) after the first 20 % of the samples, the largest over the nodes."""
    slopes = []
    for name in {r[1] for r in rows}:
        points = [(r[0], r[2]) for r in rows if r[1] == name]
        points = points[len(points) // 5:]
        if len(points) >= 3:
            ts, rss = np.array(points, dtype=float).T
            slopes.append(float(np.polyfit(ts, rss, 1)[0]) * 600)
    return max(slopes, default=math.nan, key=abs)


def plot(rows: list[list], path: Path) -> str:
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

