"""Published multi-scale + flip evaluation of LSeg (the official `LSeg_MultiEvalModule`).

Per scale s: the long side becomes ceil(base_size * s) (bilinear, align_corners=True). An image
whose long side is at most `crop_size` is padded to crop_size x crop_size and run once; larger
ones are covered by crop_size windows at stride 2/3 * crop_size, padded crops, overlaps
averaged. Flipped logits are ADDED to the unflipped ones; every scale's logits are resized back
to the input size and SUMMED. For a 4:3 frame this is 36 forward passes.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from .preprocess import pad_bottom_right

PUBLISHED_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
BASE_SIZE = 520
CROP_SIZE = 480

Forward = Callable[[torch.Tensor], torch.Tensor]  # (1, 3, H, W) -> (1, N, H, W) logits


def _resize(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    return F.interpolate(x, (height, width), mode="bilinear", align_corners=True)


def _with_flip(forward: Forward, image: torch.Tensor, flip: bool) -> torch.Tensor:
    logits = forward(image)
    if flip:
        logits = logits + forward(image.flip(-1)).flip(-1)
    return logits


def sliding_window_logits(forward: Forward, image: torch.Tensor, fill: tuple[float, ...], flip: bool,
                          crop_size: int = CROP_SIZE) -> torch.Tensor:
    """Logits of one scaled image (1, 3, h, w) -> (1, N, h, w), by one padded pass or windows."""
    _, _, height, width = image.shape
    if max(height, width) <= crop_size:
        padded = pad_bottom_right(image, crop_size, crop_size, fill)
        return _with_flip(forward, padded, flip)[:, :, :height, :width]
    padded = pad_bottom_right(image, crop_size, crop_size, fill)
    _, _, ph, pw = padded.shape
    stride = int(crop_size * 2.0 / 3.0)
    rows = math.ceil((ph - crop_size) / stride) + 1
    cols = math.ceil((pw - crop_size) / stride) + 1
    total = count = None
    for r in range(rows):
        for c in range(cols):
            h0, w0 = r * stride, c * stride
            h1, w1 = min(h0 + crop_size, ph), min(w0 + crop_size, pw)
            crop = pad_bottom_right(padded[:, :, h0:h1, w0:w1], crop_size, crop_size, fill)
            logits = _with_flip(forward, crop, flip)[:, :, : h1 - h0, : w1 - w0]
            if total is None:
                total = logits.new_zeros(1, logits.shape[1], ph, pw)
                count = logits.new_zeros(1, 1, ph, pw)
            total[:, :, h0:h1, w0:w1] += logits
            count[:, :, h0:h1, w0:w1] += 1
    return (total / count)[:, :, :height, :width]


def multiscale_logits(forward: Forward, image: torch.Tensor, fill: tuple[float, ...],
                      scales: Sequence[float] = PUBLISHED_SCALES, flip: bool = True,
                      base_size: int = BASE_SIZE, crop_size: int = CROP_SIZE) -> torch.Tensor:
    """Summed logits (1, N, H, W) of a normalised image (1, 3, H, W) over `scales` (and flips)."""
    _, _, height, width = image.shape
    scores = None
    for scale in scales:
        long_side = int(math.ceil(base_size * scale))
        if height > width:
            h, w = long_side, int(1.0 * width * long_side / height + 0.5)
        else:
            h, w = int(1.0 * height * long_side / width + 0.5), long_side
        logits = sliding_window_logits(forward, _resize(image, h, w), fill, flip, crop_size)
        logits = _resize(logits, height, width)
        scores = logits if scores is None else scores + logits
    return scores


def count_forward_passes(height: int, width: int, scales: Sequence[float] = PUBLISHED_SCALES, flip: bool = True,
                         base_size: int = BASE_SIZE, crop_size: int = CROP_SIZE) -> int:
    """How many network passes `multiscale_logits` makes for an image of this size."""
    calls = 0

    def forward(x: torch.Tensor) -> torch.Tensor:
        nonlocal calls
        calls += 1
        return x[:, :1]

    multiscale_logits(forward, torch.zeros(1, 3, height, width), (0.0, 0.0, 0.0), scales, flip, base_size, crop_size)
    return calls
