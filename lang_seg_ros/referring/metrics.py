"""Referring-segmentation metrics, as the RefCOCO literature reports them (e.g. LTS, arXiv
2103.16284, Sec. 4.1): overall IoU, mean IoU and precision at IoU thresholds 0.5..0.9.

Per sample (one image-expression pair): I = |pred AND gt|, U = |pred OR gt|, IoU = I / U, and
IoU = 0 when U = 0 (the convention of the public evaluation code, where ground truth is never
empty). Overall IoU = sum(I) / sum(U) over the set (large objects weigh more); mean IoU is the
mean of the per-sample IoUs; precision@t is the fraction of samples with IoU >= t.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

__all__ = ["PRECISION_THRESHOLDS", "ReferringMetrics", "intersection_union", "referring_metrics"]

PRECISION_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


def intersection_union(pred: np.ndarray, gt: np.ndarray) -> tuple[int, int]:
    """Pixel counts |pred AND gt| and |pred OR gt| of two same-shaped boolean masks."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction and ground truth shapes differ: {pred.shape} vs {gt.shape}")
    return int(np.count_nonzero(pred & gt)), int(np.count_nonzero(pred | gt))


class ReferringMetrics:
    """Accumulates per-sample intersections and unions: `update(pred, gt)` per sample, then `compute()`."""

    def __init__(self, thresholds: Iterable[float] = PRECISION_THRESHOLDS) -> None:
        self.thresholds = tuple(float(t) for t in thresholds)
        self.intersections: list[int] = []
        self.unions: list[int] = []

    def update(self, pred: np.ndarray, gt: np.ndarray) -> float:
        """Adds one sample's boolean masks (H, W); returns its IoU."""
        i, u = intersection_union(pred, gt)
        self.intersections.append(i)
        self.unions.append(u)
        return i / u if u else 0.0

    def compute(self) -> dict[str, float | int]:
        """{"overall_iou", "mean_iou", "precision@0.5", ..., "count"}; fractions in [0, 1], NaN when empty."""
        inter = np.asarray(self.intersections, np.float64)
        union = np.asarray(self.unions, np.float64)
        ious = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        nan = float("nan")
        out: dict[str, float | int] = {
            "overall_iou": float(inter.sum() / union.sum()) if union.sum() > 0 else nan,
            "mean_iou": float(ious.mean()) if ious.size else nan,
        }
        for t in self.thresholds:
            out[f"precision@{t:g}"] = float((ious >= t).mean()) if ious.size else nan
        out["count"] = int(ious.size)
        return out


def referring_metrics(preds: Iterable[np.ndarray], gts: Iterable[np.ndarray]) -> dict[str, float | int]:
    """`ReferringMetrics` over paired sequences of boolean masks."""
    metrics = ReferringMetrics()
    for pred, gt in zip(preds, gts, strict=True):
        metrics.update(pred, gt)
    return metrics.compute()
