"""Frame counters, `/diagnostics` status and throttled logging for the node (no model code)."""
from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

__all__ = ["Stats", "Throttle", "diagnostic_array"]


class Throttle:
    """At most one log line per distinct message and period; counts what it held back. Thread-safe.

    Repeats of the same message are throttled, not messages of the same kind: a message not
    logged within the last `period` seconds is always logged. The throttle key is (kind, `key`),
    `key` defaulting to the text; give the text without what changes on every repeat (a frame's
    stamp) as `key`. The table is bounded: at `max_keys` keys it forgets the oldest ones whose
    period is over, and when all are within their period, further new messages of a kind share
    one key (a flood of distinct messages then logs at most one more line per kind and period)."""

    def __init__(self, logger, period: float, max_keys: int = 256) -> None:
        self._logger = logger
        self.period = period
        self.max_keys = max_keys
        # (kind, key) -> [time logged, repeats held back since]; ordered by time logged
        self._table: OrderedDict[tuple[str, str | None], list] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, level: str, kind: str, text: str, key: str | None = None) -> int | None:
        """Log `[kind] text` unless the same message was logged within the period. Returns the
        number of repeats held back before this line (0 or more) when logged, None when held back."""
        now = time.monotonic()
        with self._lock:
            slot = self._slot(kind, text if key is None else key, now)
            entry = self._table.get(slot)
            if entry is not None and now - entry[0] < self.period:
                entry[1] += 1
                return None
            held = entry[1] if entry is not None else 0
            self._table[slot] = [now, 0]
            self._table.move_to_end(slot)
        if held:
            text += f" ({held} more of this kind since the last message)"
        text = f"[{kind}] {text}"
        # One call site per severity: rclpy refuses a second severity from the same line.
        if level == "error":
            self._logger.error(text)
        elif level == "warning":
            self._logger.warning(text)
        else:
            self._logger.info(text)
        return held

    def _slot(self, kind: str, key: str, now: float) -> tuple[str, str | None]:
        """The table key of a message (under the lock). A full table forgets its oldest keys whose
        period is over; full of keys still within their period, new messages share their kind's key."""
        slot = (kind, key)
        if slot in self._table:
            return slot
        while len(self._table) >= self.max_keys:
            oldest = next(iter(self._table.values()))  # ordered by time logged
            if now - oldest[0] < self.period:
                return kind, None
            self._table.popitem(last=False)
        return slot

    def __len__(self) -> int:
        return len(self._table)


@dataclass
class Stats:
    """Frame counters (written under the node's lock)."""

    received: int = 0
    dropped: int = 0  # replaced by a newer frame before processing
    rejected: int = 0  # malformed input
    model_errors: int = 0
    processed: int = 0
    window: deque = field(default_factory=lambda: deque(maxlen=200))  # (t_done, latency_ms, processing_ms)

    def counts(self) -> dict[str, int]:
        return dict(received=self.received, dropped=self.dropped, rejected=self.rejected,
                    model_errors=self.model_errors, processed=self.processed)


def diagnostic_array(name: str, stamp: Any, window: list[tuple[float, float, float]], counts: dict[str, int],
                     labels: int, hardware_id: str, loaded: bool, model_error: str | None, active: bool,
                     period: float) -> DiagnosticArray:
    """One DiagnosticStatus: level and message from the model state, FPS and latency over the last
    few seconds of `window` (t_done s monotonic, latency ms, processing ms), the frame counters."""
    now = time.monotonic()
    recent = [w for w in window if now - w[0] <= max(5.0, 5 * period)]
    fps = 0.0
    if len(recent) >= 2 and recent[-1][0] > recent[0][0]:
        fps = (len(recent) - 1) / (recent[-1][0] - recent[0][0])
    latencies = [w[1] for w in recent if not math.isnan(w[1])]
    processing = [w[2] for w in recent]
    status = DiagnosticStatus(name=name, hardware_id=hardware_id)
    if model_error and not loaded:
        status.level, status.message = DiagnosticStatus.ERROR, model_error[:200]
    elif model_error:
        status.level = DiagnosticStatus.WARN
        status.message = f"model reload failed, serving the previous model: {model_error}"[:200]
    elif not loaded:
        status.level, status.message = DiagnosticStatus.WARN, "model not loaded"
    elif not active:
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
        **{f"frames_{k}": str(v) for k, v in counts.items() if k != "model_errors"},
        "model_errors": str(counts["model_errors"]),
        "labels": str(labels),
        "active": str(active).lower(),
    }
    status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
    array = DiagnosticArray()
    array.header.stamp = stamp
    array.status = [status]
    return array
