"""Referring on real frames, scored against expressions generated from ground truth.

`evaluate_referring` runs a referrer over (frame, expressions) pairs (e.g. from
`lang_seg_ros.data.referring_camvid`) and reports, overall and per template and category:

- positives (a target exists): found rate, precision at IoU >= 0.5 (a "not found" counts as
  IoU 0), mean IoU;
- absent categories (the right answer is "not found"): not-found accuracy.
"""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np

from ..data.referring_camvid import RefExpression
from .zero_shot import ReferringResult

__all__ = ["BenchmarkTally", "evaluate_referring", "mask_iou"]

#: refer(image BGR uint8, expressions) -> one result per expression, in order.
ReferMany = Callable[[np.ndarray, Sequence[str]], Sequence[ReferringResult]]


def mask_iou(pred: np.ndarray, target: np.ndarray) -> float:
    """|pred AND target| / |pred OR target| of two (H, W) bool masks (0 when both are empty)."""
    union = np.logical_or(pred, target).sum()
    return float(np.logical_and(pred, target).sum() / union) if union else 0.0


@dataclass
class BenchmarkTally:
    """Counts for one group of expressions."""

    positives: int = 0
    found: int = 0
    hits: int = 0  # IoU >= 0.5
    iou_sum: float = 0.0
    absent: int = 0
    not_found: int = 0

    def add(self, example: RefExpression, result: ReferringResult) -> float | None:
        if example.target is None:
            self.absent += 1
            self.not_found += int(not result.found)
            return None
        iou = mask_iou(result.mask, example.target) if result.found else 0.0
        self.positives += 1
        self.found += int(result.found)
        self.hits += int(iou >= 0.5)
        self.iou_sum += iou
        return iou

    def summary(self) -> dict:
        out: dict = {}
        if self.positives:
            out.update(positives=self.positives, found_rate=self.found / self.positives,
                       precision_at_0_5=self.hits / self.positives, mean_iou=self.iou_sum / self.positives)
        if self.absent:
            out.update(absent=self.absent, not_found_accuracy=self.not_found / self.absent)
        return out


@dataclass
class _Report:
    overall: BenchmarkTally = field(default_factory=BenchmarkTally)
    templates: dict[str, BenchmarkTally] = field(default_factory=lambda: defaultdict(BenchmarkTally))
    categories: dict[str, BenchmarkTally] = field(default_factory=lambda: defaultdict(BenchmarkTally))
    cases: list[dict] = field(default_factory=list)


def evaluate_referring(refer_many: ReferMany, frames: Iterable[tuple[np.ndarray, Sequence[RefExpression]]],
                       keep_cases: bool = True) -> dict:
    """Score `refer_many` on frames: each (BGR uint8 image, its expressions).

    Returns {"overall": ..., "templates": {name: ...}, "categories": {name: ...}, "frames",
    "seconds", and with keep_cases "cases": one dict per expression (frame, expression,
    template, found, score, iou)}; every group as `BenchmarkTally.summary`.
    """
    report, frames_seen, start = _Report(), 0, time.perf_counter()
    for image, examples in frames:
        frames_seen += 1
        if not examples:
            continue
        results = refer_many(image, [e.expression for e in examples])
        for example, result in zip(examples, results):
            iou = report.overall.add(example, result)
            report.templates[example.template].add(example, result)
            if example.positive:
                report.categories[example.category].add(example, result)
            if keep_cases:
                report.cases.append({"frame": example.frame, "expression": example.expression,
                                     "template": example.template, "found": bool(result.found),
                                     "score": round(float(result.score), 4),
                                     "iou": None if iou is None else round(iou, 4), "reason": result.reason})
    out = {"frames": frames_seen, "seconds": round(time.perf_counter() - start, 1),
           "overall": report.overall.summary(),
           "templates": {k: v.summary() for k, v in sorted(report.templates.items())},
           "categories": {k: v.summary() for k, v in sorted(report.categories.items())}}
    if keep_cases:
        out["cases"] = report.cases
    return out
