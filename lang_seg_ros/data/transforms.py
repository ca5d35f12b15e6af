"""Training augmentation and evaluation preprocessing (numpy + OpenCV).

LSeg's published recipe (paper Sec. 4; ``docs/training.md``): horizontal flip, random
rescale, pad, random crop. Colour jitter is added here (brightness, contrast, saturation,
hue). Images are uint8 RGB (H, W, 3); masks int64 (H, W) with an ignore index.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["AugmentConfig", "augment", "color_jitter", "normalize_image"]


@dataclass
class AugmentConfig:
    """Training augmentation settings.

    crop_size: (height, width) of the training crops, pixels.
    scale_range: random rescale factor range applied to the whole image before cropping.
    flip: probability of a horizontal flip.
    brightness, contrast, saturation: jitter amplitudes (factor drawn from [1-a, 1+a]).
    hue: hue shift amplitude in degrees (OpenCV hue units are 2 degrees).
    jitter_prob: probability of applying colour jitter at all.
    """

    crop_size: tuple[int, int] = (256, 352)
    scale_range: tuple[float, float] = (0.75, 1.5)
    flip: float = 0.5
    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.25
    hue: float = 8.0
    jitter_prob: float = 0.8

    def __post_init__(self) -> None:
        self.crop_size = tuple(int(v) for v in self.crop_size)
        self.scale_range = tuple(float(v) for v in self.scale_range)
        if len(self.crop_size) != 2 or min(self.crop_size) < 32:
            raise ValueError(f"augment.crop_size must be (height, width) >= 32, got {self.crop_size}")
        if len(self.scale_range) != 2 or not 0 < self.scale_range[0] <= self.scale_range[1]:
            raise ValueError(f"augment.scale_range must be (low, high) with 0 < low <= high, got {self.scale_range}")


def color_jitter(image: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Random brightness, contrast, saturation and hue, in random order; uint8 in and out."""
    import cv2

    img = image.astype(np.float32)
    ops = rng.permutation(4)
    for op in ops:
        if op == 0 and cfg.brightness > 0:
            img = img * rng.uniform(1 - cfg.brightness, 1 + cfg.brightness)
        elif op == 1 and cfg.contrast > 0:
            mean = img.mean()
            img = (img - mean) * rng.uniform(1 - cfg.contrast, 1 + cfg.contrast) + mean
        elif op == 2 and cfg.saturation > 0:
            gray = img @ np.array([0.299, 0.587, 0.114], np.float32)
            img = (img - gray[..., None]) * rng.uniform(1 - cfg.saturation, 1 + cfg.saturation) + gray[..., None]
        elif op == 3 and cfg.hue > 0:
            hsv = cv2.cvtColor(np.clip(img, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV)
            shift = int(round(rng.uniform(-cfg.hue, cfg.hue) / 2.0))
            hsv[..., 0] = ((hsv[..., 0].astype(np.int16) + shift) % 180).astype(np.uint8)
            img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def augment(
    image: np.ndarray, mask: np.ndarray, cfg: AugmentConfig, ignore_index: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Random scale -> pad -> random crop -> flip -> colour jitter.
    Returns a crop of exactly ``cfg.crop_size``.

    Padding uses the image's mean colour, so it normalises to about zero, and the padded mask
    is ``ignore_index`` (no loss there).
    """
    import cv2

    scale = rng.uniform(*cfg.scale_range)
    h, w = mask.shape
    nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    if (nh, nw) != (h, w):
        image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
        mask = cv2.resize(mask.astype(np.int32), (nw, nh), interpolation=cv2.INTER_NEAREST).astype(np.int64)
    ch, cw = cfg.crop_size
    ph, pw = max(ch - nh, 0), max(cw - nw, 0)
    if ph or pw:
        fill = image.reshape(-1, 3).mean(0)
        padded = np.empty((nh + ph, nw + pw, 3), np.uint8)
        padded[:] = fill.astype(np.uint8)
        padded[:nh, :nw] = image
        image = padded
        mask = np.pad(mask, ((0, ph), (0, pw)), constant_values=ignore_index)
    top = int(rng.integers(0, image.shape[0] - ch + 1))
    left = int(rng.integers(0, image.shape[1] - cw + 1))
    image = image[top : top + ch, left : left + cw]
    mask = mask[top : top + ch, left : left + cw]
    if rng.random() < cfg.flip:
        image, mask = image[:, ::-1], mask[:, ::-1]
    if cfg.jitter_prob > 0 and rng.random() < cfg.jitter_prob:
        image = color_jitter(image, cfg, rng)
    return np.ascontiguousarray(image), np.ascontiguousarray(mask)


def normalize_image(image: np.ndarray, mean, std) -> np.ndarray:
    """uint8 RGB (H, W, 3) -> float32 (3, H, W), ``(x/255 - mean) / std`` per channel."""
    x = image.astype(np.float32) / 255.0
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))
