"""numpy camera images -> normalised tensors the network expects."""
from __future__ import annotations

import math
import warnings

import cv2
import numpy as np
import torch


def check_image(image: np.ndarray, color_order: str = "rgb") -> None:
    """Raise for anything but a uint8 (H, W), (H, W, 1), (H, W, 3) RGB/BGR or (H, W, 4) RGBA/BGRA image."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got dtype {image.dtype}")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3, 4))):
        raise ValueError(f"expected an (H, W), (H, W, 3) or (H, W, 4) image, got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"empty image of shape {image.shape}")
    if color_order.lower() not in ("rgb", "bgr", "rgba", "bgra"):
        raise ValueError(f"color_order must be 'rgb' or 'bgr', got {color_order!r}")


def to_rgb(image: np.ndarray, color_order: str = "rgb") -> np.ndarray:
    """uint8 (H, W), (H, W, 1), (H, W, 3) RGB/BGR or (H, W, 4) RGBA/BGRA -> (H, W, 3) RGB uint8."""
    check_image(image, color_order)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_GRAY2RGB)
    bgr = color_order.lower().startswith("bgr")
    if image.shape[2] == 3 and not bgr:
        return np.ascontiguousarray(image)
    # OpenCV's conversions: several times faster than a reversed numpy view copied (a per-frame step)
    code = (cv2.COLOR_BGR2RGB if bgr else None) if image.shape[2] == 3 else \
        (cv2.COLOR_BGRA2RGB if bgr else cv2.COLOR_RGBA2RGB)
    return cv2.cvtColor(np.ascontiguousarray(image), code)


def normalize(image: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...], device: torch.device,
              color_order: str = "rgb", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 image (as `to_rgb` takes) -> (1, 3, H, W) tensor, (x / 255 - mean) / std, RGB.

    The one copy from the caller's buffer (e.g. a ROS message's data) to the model input: channel
    order, grey expansion and normalisation are applied while writing the output, per channel.
    """
    check_image(image, color_order)
    pixels = image if image.ndim == 3 else image[:, :, None]
    with warnings.catch_warnings():  # a read-only buffer (a ROS message's) is fine: it is only read
        warnings.filterwarnings("ignore", "The given NumPy array is not writable")
        source = torch.from_numpy(pixels).to(device)  # a view of the caller's buffer on the CPU
    channels = (2, 1, 0) if color_order.lower().startswith("bgr") else (0, 1, 2)
    if pixels.shape[2] == 1:
        channels = (0, 0, 0)
    out = torch.empty((1, 3, *pixels.shape[:2]), dtype=dtype, device=device)
    for c, (src, m, s) in enumerate(zip(channels, mean, std)):
        torch.mul(source[:, :, src], 1.0 / (255.0 * s), out=out[0, c]).sub_(m / s)
    return out


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


def square_input(image: np.ndarray, size: int, mean, std) -> tuple[torch.Tensor, tuple[int, int]]:
    """The Locate-then-Segment input, shared by its trainer and its referrer: uint8 RGB (H, W, 3)
    -> normalised (3, S, S) float tensor, S = `size` rounded up to a multiple of 32, the image
    resized to long side `size` at the top left (zeros elsewhere); and its (h, w) there."""
    h, w = image.shape[:2]
    nh, nw = working_shape(h, w, size)
    resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR) if (nh, nw) != (h, w) else image
    x = (resized.astype(np.float32) / 255.0 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    side = round_up(size)
    out = np.zeros((side, side, 3), np.float32)
    out[:nh, :nw] = x
    return torch.from_numpy(out.transpose(2, 0, 1).copy()), (nh, nw)
