"""Synthetic referring scenes: a learnable stand-in for RefCOCO in tests and smoke training.

Each image holds 2-3 shapes (square, circle, triangle) in red, green or blue, no two with the
same colour and shape, each in its own vertical band so "left" and "right" are unambiguous.
The expression names one of them by colour and shape ("the red square") or, with
`positional`, by position ("the shape on the left", "the shape on the right"). Sample `i` of a
split depends only on (seed, split, i).
"""
from __future__ import annotations

import zlib

import cv2
import numpy as np

from .refcoco import RefSample

__all__ = ["COLOURS", "SHAPES", "SyntheticReferring"]

COLOURS = {"red": (215, 45, 40), "green": (45, 175, 60), "blue": (45, 80, 220)}
SHAPES = ("square", "circle", "triangle")


def _draw(canvas: np.ndarray, shape: str, cx: float, cy: float, r: float, value) -> None:
    if shape == "square":
        h = r * 0.85
        cv2.rectangle(canvas, (round(cx - h), round(cy - h)), (round(cx + h), round(cy + h)), value, -1)
    elif shape == "circle":
        cv2.circle(canvas, (round(cx), round(cy)), round(r), value, -1)
    else:
        pts = np.array([[cx, cy - r], [cx - r, cy + 0.8 * r], [cx + r, cy + 0.8 * r]]).round().astype(np.int32)
        cv2.fillPoly(canvas, [pts], value)


class SyntheticReferring:
    """`length` (image, sentence, mask) samples of `size` x `size` scenes; see the module doc."""

    def __init__(self, split: str = "train", length: int = 256, size: int = 64, seed: int = 0,
                 max_objects: int = 3, positional: bool = True) -> None:
        if not 2 <= max_objects <= 3:
            raise ValueError(f"max_objects must be 2 or 3, got {max_objects}")
        self.split, self.length, self.size, self.seed = split, int(length), int(size), int(seed)
        self.max_objects, self.positional = max_objects, positional

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> RefSample:
        if not 0 <= index < self.length:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, zlib.crc32(self.split.encode()), index])
        s = self.size
        n = int(rng.integers(2, self.max_objects + 1))
        kinds = [(c, sh) for c in COLOURS for sh in SHAPES]
        chosen = [kinds[k] for k in rng.choice(len(kinds), n, replace=False)]
        image = np.clip(rng.normal(90, 12, (s, s, 3)), 0, 255).astype(np.uint8)
        band = s / n
        masks = []
        for slot, (colour, shape) in enumerate(chosen):  # slot = band index, left to right
            r = rng.uniform(0.28, 0.42) * band
            cx = (slot + 0.5) * band + rng.uniform(-0.5, 0.5) * (band / 2 - r)
            cy = rng.uniform(r + 2, s - r - 2)
            mask = np.zeros((s, s), np.uint8)
            _draw(mask, shape, cx, cy, r, 1)
            _draw(image, shape, cx, cy, r, COLOURS[colour])
            masks.append(mask)
        target = int(rng.integers(n))
        colour, shape = chosen[target]
        sentence = f"the {colour} {shape}"
        if self.positional and target in (0, n - 1) and rng.random() < 0.3:
            sentence = "the shape on the left" if target == 0 else "the shape on the right"
        return RefSample(image, sentence, masks[target])
