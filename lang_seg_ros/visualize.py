"""Colour overlays with a legend, for people looking at label maps (CLI output, ROS `overlay`)."""
from __future__ import annotations

import colorsys
from typing import Sequence

import cv2
import numpy as np

from .objects.regions import label_bytes, label_pixel_counts

NO_LABEL_COLOR = (0, 0, 0)


def palette(count: int) -> np.ndarray:
    """(count, 3) uint8 RGB colours, well separated and the same for a label index every time."""
    colors = []
    for i in range(count):
        hue = (i * 0.618033988749895) % 1.0  # golden-ratio steps spread consecutive labels apart
        value = 0.95 if i % 2 == 0 else 0.75
        colors.append([round(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.8, value)])
    return np.asarray(colors, dtype=np.uint8).reshape(count, 3)


def colorize(label_map: np.ndarray, count: int, colors: np.ndarray | None = None) -> np.ndarray:
    """(H, W) label indices in [-1, count) (-1 = no label) -> (H, W, 3) uint8 RGB.

    colors: `palette(count)` computed beforehand (once per label set, not per frame), or None."""
    colors = palette(count) if colors is None else np.asarray(colors, np.uint8)
    label_map = np.asarray(label_map)
    index = label_bytes(label_map, count)
    if index is not None:
        # One byte per pixel (-1 wraps to 255) through OpenCV's table lookup: 5x faster than indexing;
        # values in [count, 255) get the no-label colour too (as they would by indexing: no label)
        table = np.zeros((256, 1, 3), np.uint8)
        table[:, 0] = NO_LABEL_COLOR
        table[:count, 0] = colors
        return cv2.LUT(cv2.merge([index, index, index]), table)
    lut = np.concatenate([colors, np.asarray([NO_LABEL_COLOR], dtype=np.uint8)])
    return lut[label_map]  # index -1 is the last row: the no-label colour


def _ascii(text: str) -> str:
    return text.encode("ascii", "replace").decode("ascii")  # OpenCV's Hershey fonts are ASCII only


def render_overlay(image_rgb: np.ndarray, label_map: np.ndarray, labels: Sequence[str], alpha: float = 0.5,
                   legend: bool = True, colors: np.ndarray | None = None) -> np.ndarray:
    """Blend label colours over the image and add a legend panel (labels present, with pixel share).

    image_rgb: (H, W, 3) uint8 RGB; label_map: (H, W) ints indexing `labels`. Returns RGB uint8,
    wider than the input by the legend panel when `legend` is set. colors: the label set's
    `palette`, when the caller keeps it.
    """
    lut = palette(len(labels)) if colors is None else colors
    blended = cv2.addWeighted(image_rgb, 1.0 - alpha, colorize(label_map, len(labels), lut), alpha, 0.0)
    if not legend:
        return blended
    shares = label_shares(label_map, len(labels))
    present = [i for i in np.argsort(-shares) if shares[i] > 0]
    height = blended.shape[0]
    row = max(14, min(24, height // max(1, len(present) + 1)))
    scale = row / 30.0
    width = 40 + max([cv2.getTextSize(_ascii(f"{labels[i]} 100.0%"), cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0]
                      for i in present] + [60])
    panel = np.full((height, width, 3), 255, dtype=np.uint8)
    for r, i in enumerate(present[: height // row]):
        y = r * row + 2
        cv2.rectangle(panel, (4, y), (4 + row - 4, y + row - 4), tuple(int(c) for c in lut[i]), -1)
        cv2.putText(panel, _ascii(f"{labels[i]} {100 * shares[i]:.1f}%"), (row + 6, y + row - 7),
                    cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([blended, panel], axis=1)


def label_shares(label_map: np.ndarray, count: int) -> np.ndarray:
    """Fraction of all pixels given to each label index (pixels with no label count in the total)."""
    return label_pixel_counts(label_map, count) / max(1, np.asarray(label_map).size)


#: Highlight colour of a referred object (RGB).
REFERRED_COLOR = (255, 64, 0)


def render_referring(image_rgb: np.ndarray, mask: np.ndarray, bbox: tuple[int, int, int, int] | None,
                     caption: str, alpha: float = 0.5) -> np.ndarray:
    """One referred object over the image, for a person: its pixels tinted, its box drawn and a
    caption bar on top (the expression, and the score or why nothing was found). Same size as
    the image: one object needs no legend panel. image_rgb: (H, W, 3) uint8; mask: (H, W) bool;
    bbox: (x0, y0, x1, y1) pixels, half-open, or None."""
    out = image_rgb.copy()
    if mask.any():
        tint = np.asarray(REFERRED_COLOR, np.float32)
        out[mask] = (out[mask].astype(np.float32) * (1.0 - alpha) + tint * alpha).astype(np.uint8)
    if bbox is not None:
        x0, y0, x1, y1 = bbox
        cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), REFERRED_COLOR, max(1, round(min(out.shape[:2]) / 240)))
    height, width = out.shape[:2]
    bar = max(14, min(28, height // 12))
    scale = bar / 32.0
    text = _ascii(caption)
    while len(text) > 4 and cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] > width - 8:
        text = text[:-4] + "..."  # keep the caption inside the image
    out[:bar] = (out[:bar].astype(np.float32) * 0.35).astype(np.uint8)  # darkened so white text reads on any image
    cv2.putText(out, text, (4, bar - bar // 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out
