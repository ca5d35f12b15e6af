"""The training curve of a run: loss and validation mIoU against iterations, from ``log.jsonl``.

The trainer redraws ``<out_dir>/curve.png`` after every validation and at the end, so a run
in the background can be watched (and a cut-short run still documents itself). For an older
run: ``python -m lang_seg_ros.train.curves OUT_DIR``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

__all__ = ["plot_training_curve", "read_log"]


def read_log(path: str | Path) -> tuple[list[dict], list[dict]]:
    """(training records, validation records) of a ``log.jsonl``; a resumed run may repeat
    iterations, the later record wins."""
    train: dict[int, dict] = {}
    val: dict[int, dict] = {}
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        (val if "val_miou" in rec else train)[int(rec["iteration"])] = rec
    return [train[k] for k in sorted(train)], [val[k] for k in sorted(val)]


def plot_training_curve(log_path: str | Path, png_path: str | Path, size: tuple[int, int] = (900, 480)) -> Path:
    """Draw loss (raw in grey, smoothed in blue; left axis) and val mIoU in % (red, and one
    colour per extra wording set; right axis) to ``png_path`` with OpenCV (the project
    does not depend on matplotlib). Returns the path."""
    import cv2
    import numpy as np

    train, val = read_log(log_path)
    w, h = size
    left, right, top, bottom = 70, 70, 40, 50
    img = np.full((h, w, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    last = max([r["iteration"] for r in train + val] or [1])
    pw, ph = w - left - right, h - top - bottom

    def xs(its):
        return [left + int(round(pw * i / last)) for i in its]

    def polyline(its, values, lo, hi, color, thick=1, dots=False):
        pts = [(x, top + int(round(ph * (1 - (v - lo) / max(hi - lo, 1e-9)))))
               for x, v in zip(xs(its), values) if v == v]  # skip NaN
        for a, b in zip(pts, pts[1:]):
            cv2.line(img, a, b, color, thick, cv2.LINE_AA)
        if dots:
            for p in pts:
                cv2.circle(img, p, 3, color, -1, cv2.LINE_AA)

    cv2.rectangle(img, (left, top), (left + pw, top + ph), (0, 0, 0), 1)
    for k in range(5):  # x ticks
        it = int(round(last * k / 4))
        x = xs([it])[0]
        cv2.putText(img, str(it), (x - 12, top + ph + 18), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "iteration", (left + pw // 2 - 30, h - 10), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    legend = []
    if train:
        its = [r["iteration"] for r in train]
        loss = [r["loss"] for r in train]
        hi = float(np.nanmax(loss)) * 1.05 if loss else 1.0
        polyline(its, loss, 0.0, hi, (190, 190, 190))
        polyline(its, [r.get("loss_smooth", r["loss"]) for r in train], 0.0, hi, (200, 110, 30), 2)
        for k in range(5):
            y = top + int(round(ph * (1 - k / 4)))
            cv2.putText(img, f"{hi * k / 4:.2f}", (8, y + 4), font, 0.4, (200, 110, 30), 1, cv2.LINE_AA)
        legend += [("loss", (190, 190, 190)), ("loss (smoothed)", (200, 110, 30))]
    if val:
        its = [r["iteration"] for r in val]
        series = [("val mIoU, training names", [100 * (r["val_miou"] or 0) for r in val], (40, 40, 210))]
        colors = [(40, 150, 40), (160, 60, 160), (0, 140, 200), (120, 120, 0)]
        sets = sorted({k for r in val for k in (r.get("val_wording_miou") or {})})
        for i, name in enumerate(sets):
            ys = [100 * ((r.get("val_wording_miou") or {}).get(name) or float("nan")) for r in val]
            series.append((f"val mIoU, {name}", ys, colors[i % len(colors)]))
        values = [v for _, ys, _ in series for v in ys if v == v]
        lo = max(0.0, 10 * np.floor(min(values) / 10) - 10)
        hi = min(100.0, 10 * np.ceil(max(values) / 10))
        for label, ys, color in series:
            polyline(its, ys, lo, hi, color, 2, dots=True)
            legend.append((label, color))
        for k in range(5):
            y = top + int(round(ph * (1 - k / 4)))
            cv2.putText(img, f"{lo + (hi - lo) * k / 4:.0f}%", (left + pw + 8, y + 4), font, 0.4, (40, 40, 210), 1,
                        cv2.LINE_AA)
    for i, (label, color) in enumerate(legend):  # bottom right: losses and mIoUs rarely get there
        y = top + ph - 10 - 16 * (len(legend) - 1 - i)
        cv2.line(img, (left + pw - 230, y - 4), (left + pw - 205, y - 4), color, 2)
        cv2.putText(img, label, (left + pw - 200, y), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, Path(log_path).parent.name, (left, top - 12), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    png_path = Path(png_path)
    cv2.imwrite(str(png_path), img)  # colours above are BGR
    return png_path


if __name__ == "__main__":
    out = Path(sys.argv[1])
    print(plot_training_curve(out / "log.jsonl", out / "curve.png"))
