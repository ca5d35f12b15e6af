"""Segmentation metrics from a confusion matrix (numpy; the plot uses OpenCV).

Conventions: ``conf[i, j]`` counts pixels whose ground truth is label ``i`` and prediction
label ``j``; ignored pixels are never counted. IoU_c = TP / (TP + FP + FN); mIoU is the
mean over labels whose union is non-empty (labels absent from both ground truth and
prediction are left out, reported as NaN / null per class). Pixel accuracy = trace / total.
FB-IoU (the few-shot segmentation literature's foreground-background IoU, e.g. LSeg Sec. 5)
is the mean of the background IoU and the IoU of the union of all other labels.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = [
    "ConfusionMatrix",
    "confusion_matrix",
    "fb_iou",
    "mean_iou",
    "per_class_iou",
    "pixel_accuracy",
    "plot_confusion_matrix",
    "swallowed",
    "summarize",
]


def confusion_matrix(pred: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """(num_classes, num_classes) int64 counts, rows ground truth, columns prediction.

    Pixels whose target is ``ignore_index`` or outside [0, num_classes) are skipped.
    Predictions must lie in [0, num_classes) (``ValueError`` otherwise: map "no label"
    outputs to a label first).
    """
    pred = np.asarray(pred).ravel().astype(np.int64)
    target = np.asarray(target).ravel().astype(np.int64)
    if pred.shape != target.shape:
        raise ValueError(f"pred and target sizes differ: {pred.size} vs {target.size}")
    valid = (target != ignore_index) & (target >= 0) & (target < num_classes)
    pred, target = pred[valid], target[valid]
    if pred.size and (pred.min() < 0 or pred.max() >= num_classes):
        raise ValueError(f"predictions must be label indices in [0, {num_classes}), got {pred.min()}..{pred.max()}")
    counts = np.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def per_class_iou(conf: np.ndarray) -> np.ndarray:
    """(N,) float64 IoU per label; NaN where the label is in neither ground truth nor prediction."""
    conf = np.asarray(conf, np.float64)
    tp = np.diag(conf)
    union = conf.sum(1) + conf.sum(0) - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)


def mean_iou(conf: np.ndarray) -> float:
    """Mean IoU over labels present in ground truth or prediction (NaN if none)."""
    iou = per_class_iou(conf)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


def pixel_accuracy(conf: np.ndarray) -> float:
    """Correct pixels / labelled pixels."""
    total = np.asarray(conf).sum()
    return float(np.trace(np.asarray(conf)) / total) if total else float("nan")


def fb_iou(conf: np.ndarray, background: int | Sequence[int] = 0) -> float:
    """Foreground-background IoU: mean of the IoU of the background label(s) and of the union of
    all other labels, after merging the confusion matrix into 2x2."""
    conf = np.asarray(conf, np.int64)
    n = conf.shape[0]
    bg = np.zeros(n, bool)
    bg[np.atleast_1d(np.asarray(background, np.int64))] = True
    merged = np.array(
        [[conf[np.ix_(bg, bg)].sum(), conf[np.ix_(bg, ~bg)].sum()],
         [conf[np.ix_(~bg, bg)].sum(), conf[np.ix_(~bg, ~bg)].sum()]]
    )
    return mean_iou(merged)


class ConfusionMatrix:
    """Accumulates a confusion matrix over images: ``update(pred, target)``, then ``summary()``."""

    def __init__(self, names: Sequence[str], ignore_index: int = 255) -> None:
        self.names = list(names)
        self.ignore_index = ignore_index
        self.conf = np.zeros((len(self.names), len(self.names)), np.int64)

    def update(self, pred: np.ndarray, target: np.ndarray) -> None:
        self.conf += confusion_matrix(pred, target, len(self.names), self.ignore_index)

    def summary(self, background: int | Sequence[int] | None = None) -> dict:
        return summarize(self.conf, self.names, background)


def summarize(conf: np.ndarray, names: Sequence[str], background: int | Sequence[int] | None = None) -> dict:
    """JSON-ready metrics: ``miou``, ``per_class_iou`` (name -> IoU or None), ``pixel_accuracy``,
    ``mean_accuracy``, ``fb_iou`` (background = ``background``, default label 0),
    ``confusion_matrix`` (list of rows) and ``names``. Fractions in [0, 1]."""
    iou = per_class_iou(conf)
    gt = np.asarray(conf).sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        acc = np.where(gt > 0, np.diag(np.asarray(conf)) / np.where(gt > 0, gt, 1), np.nan)

    def _num(v: float):
        return None if not np.isfinite(v) else float(v)

    return {
        "miou": _num(mean_iou(conf)),
        "per_class_iou": {n: _num(v) for n, v in zip(names, iou)},
        "pixel_accuracy": _num(pixel_accuracy(conf)),
        "mean_accuracy": _num(float(np.nanmean(acc)) if np.isfinite(acc).any() else float("nan")),
        "fb_iou": _num(fb_iou(conf, 0 if background is None else background)),
        "names": list(names),
        "confusion_matrix": np.asarray(conf).tolist(),
        "pixels": int(gt.sum()),
    }


def swallowed(conf: np.ndarray, names: Sequence[str], min_share: float = 0.15) -> list[dict]:
    """Which label took a class's pixels: every (class, label) pair where the label won at least
    `min_share` of the class's ground-truth pixels, largest share first, as {"class": names[i],
    "as": names[j], "share": fraction}. The failure a user cannot see in a mean: a wording that
    swallows a neighbouring class ("footpath" taking the road) leaves a plausible-looking map.
    conf: rows ground truth, columns prediction."""
    conf = np.asarray(conf, np.float64)
    rows = conf.sum(1)
    out = []
    for i, j in zip(*np.nonzero(conf >= min_share * np.maximum(rows, 1)[:, None])):
        if i != j and rows[i] > 0:
            out.append({"class": names[i], "as": names[j], "share": float(conf[i, j] / rows[i])})
    return sorted(out, key=lambda e: -e["share"])


def plot_confusion_matrix(conf: np.ndarray, names: Sequence[str], path: str | None = None, cell: int = 44) -> np.ndarray:
    """Row-normalised confusion matrix as an RGB uint8 image (rows: ground truth, columns:
    prediction, cell text: percent of the row); written to ``path`` (PNG) when given."""
    import cv2

    conf = np.asarray(conf, np.float64)
    n = len(names)
    rows = conf.sum(1, keepdims=True)
    norm = np.divide(conf, rows, out=np.zeros_like(conf), where=rows > 0)
    label_w = 10 + 8 * max(len(str(s)) for s in names)
    top = label_w
    img = np.full((top + n * cell + 10, label_w + n * cell + 10, 3), 255, np.uint8)
    heat = cv2.applyColorMap((norm * 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS)[..., ::-1]
    font = cv2.FONT_HERSHEY_SIMPLEX
    for i in range(n):
        for j in range(n):
            y0, x0 = top + i * cell, label_w + j * cell
            img[y0 : y0 + cell, x0 : x0 + cell] = heat[i, j]
            txt = f"{100 * norm[i, j]:.0f}"
            color = (0, 0, 0) if norm[i, j] > 0.6 else (255, 255, 255)
            cv2.putText(img, txt, (x0 + 6, y0 + cell // 2 + 5), font, 0.4, color, 1, cv2.LINE_AA)
        cv2.putText(img, str(names[i]), (4, top + i * cell + cell // 2 + 4), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    # Column names, written vertically: draw on a rotated canvas.
    header = np.full((label_w + n * cell + 10, top, 3), 255, np.uint8)  # (W, H) before rotation
    for j in range(n):
        y = label_w + j * cell + cell // 2 + 4
        cv2.putText(header, str(names[j]), (4, y), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    img[:top] = np.rot90(header)[: top, : img.shape[1]][::1]
    cv2.putText(img, "gt \\ pred", (4, top - 6), font, 0.4, (80, 80, 80), 1, cv2.LINE_AA)
    if path is not None:
        cv2.imwrite(str(path), img[..., ::-1])
    return img
