"""numpy camera images -> normalised tensors the network expects."""
from __future__ import annotations

import math

import numpy as np
import torch


def to_rgb(image: np.ndarray, color_order: str = "rgb") -> np.ndarray:
    """uint8 (H, W), (H, W, 1), (H, W, 3) RGB/BGR or (H, W, 4) RGBA/BGRA -> (H, W, 3) RGB uint8."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got dtype {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    elif image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"expected an (H, W), (H, W, 3) or (H, W, 4) image, got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"empty image of shape {image.shape}")
    order = color_order.lower()
    if order not in ("rgb", "bgr", "rgba", "bgra"):
        raise ValueError(f"color_order must be 'rgb' or 'bgr', got {color_order!r}")
    image = image[:, :, :3]
    return np.ascontiguousarray(image[:, :, ::-1] if order.startswith("bgr") else image)


def normalize(rgb: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...], device: torch.device,
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (1, 3, H, W) tensor: scaled to [0, 1], then (x - mean) / std."""
    x = torch.from_numpy(rgb).to(device).permute(2, 0, 1)[None].float().div_(255.0)
    mean_t = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, 3, 1, 1)
    return ((x - mean_t) / std_t).to(dtype)


def working_shape(height: int, width: int, long_side: int) -> tuple[int, int]:
    """(h, w) with the long side at `long_side` and the aspect ratio kept (before padding)."""
    scale = long_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def black_level(mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[float, ...]:
    """Per-channel value of a black pixel after normalisation: the published pad value."""
    return tuple(-m / s for m, s in zip(mean, std))


def pad_bottom_right(x: torch.Tensor, height: int, width: int, fill: tuple[float, ...]) -> torch.Tensor:
    """(B, C, h, w) -> (B, C, max(h, height), max(w, width)), new pixels set per channel to `fill`."""
    b, c, h, w = x.shape
    if h >= height and w >= width:
        return x
    out = torch.tensor(fill, dtype=x.dtype, device=x.device).view(1, c, 1, 1).repeat(b, 1, max(h, height), max(w, width))
    out[:, :, :h, :w] = x
    return out


def round_up(value: int, multiple: int = 32) -> int:
    return math.ceil(value / multiple) * multiple
