"""Whole-image LSeg prediction for evaluation: padding to multiples of 32, optional
multi-scale and flip, logits back at the input size (torch + numpy).

Published evaluation (LSeg paper Sec. 4 / the official test script) sums the logits of the
scales and adds the flipped pass; the same is done here, without sliding windows (the
image is run whole at each scale).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data.transforms import normalize_image

__all__ = ["predict_logits", "predict_labels", "pad_to_multiple"]


def pad_to_multiple(image: np.ndarray, multiple: int = 32) -> np.ndarray:
    """Pad a uint8 (H, W, 3) image with black at the bottom and right to multiples of
    ``multiple`` (as the inference facade does, and the published evaluation)."""
    h, w = image.shape[:2]
    ph, pw = (-h) % multiple, (-w) % multiple
    return np.pad(image, ((0, ph), (0, pw), (0, 0))) if ph or pw else image


@torch.inference_mode()
def predict_logits(
    model: torch.nn.Module,
    image: np.ndarray,
    text_features: torch.Tensor,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    channels_last: bool = False,
) -> torch.Tensor:
    """Summed logits (N, H, W) float32 on the model's device for one uint8 RGB image (H, W, 3).

    Each scale resizes the image by the factor (bilinear), pads it with black to multiples of 32, runs
    ``model(images, text_features)``, crops the padding and resizes the logits back to
    (H, W) (bilinear); with ``flip`` the mirrored image's logits are added too.
    """
    import cv2

    device = next(p for p in model.parameters()).device
    mean, std = model.config.mean, model.config.std
    h0, w0 = image.shape[:2]
    total = None
    for scale in scales:
        img = image
        if scale != 1.0:
            size = (max(32, int(round(w0 * scale))), max(32, int(round(h0 * scale))))
            img = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        h, w = img.shape[:2]
        views = [img, img[:, ::-1]] if flip else [img]
        for k, view in enumerate(views):
            xb = torch.from_numpy(normalize_image(pad_to_multiple(view), mean, std))[None].to(device)
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            logits = model(xb, text_features)[..., :h, :w].float()
            if k == 1:
                logits = logits.flip(-1)
            if (h, w) != (h0, w0):
                logits = F.interpolate(logits, size=(h0, w0), mode="bilinear", align_corners=False)
            total = logits[0] if total is None else total + logits[0]
    return total


def predict_labels(model, image, text_features, scales=(1.0,), flip=False, channels_last=False) -> np.ndarray:
    """(H, W) int64 argmax label indices."""
    logits = predict_logits(model, image, text_features, scales, flip, channels_last)
    return logits.argmax(0).cpu().numpy()
