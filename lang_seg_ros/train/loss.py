"""LSeg's training objective (Li et al., ICLR 2022, arXiv 2201.03546, Sec. 3, Eq. 2).

Per pixel, the logits are the dot products of the L2-normalised pixel embedding with the
N frozen, L2-normalised label embeddings, scaled by the fixed temperature 1/0.07; the loss
is the pixel-wise softmax cross-entropy against the ground-truth label index at full input
resolution, unlabelled pixels excluded (ignore index).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["lseg_loss", "lseg_loss_terms", "lovasz_sum", "class_weights_from_counts", "ohem_keep_mask"]


def lseg_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int = 255,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean pixel-wise cross-entropy over temperature-scaled logits.

    Args:
        logits: (B, N, H, W) temperature-scaled logits at full input resolution (the
            model's ``forward`` output: ``LOGIT_SCALE * <pixel, label>``).
        target: (B, H, W) int64 label indices in [0, N) or ``ignore_index``.
        ignore_index: label value excluded from the loss.
        weight: optional (N,) per-label weights (class balancing; 1 everywhere = the paper).
    Returns:
        scalar: sum over valid pixels of w[y] * -log softmax(logits)[y], divided by the sum of
        w[y] (the plain mean when ``weight`` is None). 0 (with grad) when no pixel is valid.
    """
    if logits.shape[0] != target.shape[0] or logits.shape[2:] != target.shape[1:]:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} do not match")
    if not (target != ignore_index).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), target, weight=weight, ignore_index=ignore_index)


def ohem_keep_mask(logits: torch.Tensor, target: torch.Tensor, ignore_index: int, thresh: float,
                   min_kept: int) -> torch.Tensor:
    """Online hard example mining, per image (Shrivastava et al., CVPR 2016; the segmentation form
    of Wu et al. 2016 / mmsegmentation's ``OHEMPixelSampler``): keep the valid pixels whose
    softmax probability of the true label is below ``thresh``, and at least the ``min_kept``
    hardest valid pixels of each image. Thin classes (poles, signs) stay mostly hard and keep
    their gradient while the easy road and sky pixels drop out.

    Selection is per image, never across the batch, so a batch split over processes (DDP)
    selects exactly the same pixels as one process. Returns a bool mask (B, H, W)."""
    with torch.no_grad():
        valid = target != ignore_index
        prob = torch.softmax(logits.float(), 1).gather(1, target.clamp(0, logits.shape[1] - 1).unsqueeze(1))[:, 0]
        prob = torch.where(valid, prob, torch.full_like(prob, 2.0))  # ignored pixels are never "hard"
        keep = valid & (prob < thresh)
        if min_kept > 0:
            flat = prob.flatten(1)
            k = min(min_kept, flat.shape[1])
            kth = flat.kthvalue(k, dim=1).values.view(-1, 1, 1)  # per-image k-th smallest probability
            keep |= valid & (prob <= kth)
    return keep


def lseg_loss_terms(
    logits: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int = 255,
    weight: torch.Tensor | None = None,
    ohem_thresh: float = 0.0,
    ohem_min_kept: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss as ``(sum of w[y] * CE over selected pixels, sum of w[y])``: the mean is their
    ratio. Split so that data-parallel training can add both over processes before dividing
    (the same loss as one process with the whole batch). ``ohem_thresh > 0`` selects pixels
    with :func:`ohem_keep_mask`; 0 keeps every valid pixel (the paper)."""
    if logits.shape[0] != target.shape[0] or logits.shape[2:] != target.shape[1:]:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} do not match")
    if ohem_thresh > 0:
        keep = ohem_keep_mask(logits, target, ignore_index, ohem_thresh, ohem_min_kept)
        target = torch.where(keep, target, torch.full_like(target, ignore_index))
    per_pixel = F.cross_entropy(logits.float(), target, ignore_index=ignore_index, reduction="none")
    valid = target != ignore_index
    w = valid.float() if weight is None else torch.where(valid, weight.float()[target.clamp(0, len(weight) - 1)], 0.0)
    return (per_pixel * w).sum(), w.sum()


def lovasz_sum(logits: torch.Tensor, target: torch.Tensor, ignore_index: int, stride: int = 1,
               offset: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """The Lovasz-softmax loss (Berman et al., CVPR 2018) summed over the batch's images: data-
    parallel training divides by the global batch, as :func:`lseg_loss_terms` splits its mean.
    Per image, the mean over the classes present in its valid pixels of a convex surrogate of
    1 - IoU (segmentation_models_pytorch's ``LovaszLoss``): a pole's IoU weighs as much as the road's.

    ``stride`` > 1 reads the pixels ``offset + stride * (i, j)`` of the full-resolution
    (B, N, H, W) logits and of ``target`` (B, H, W) only: the per-class sort is the cost, and a
    grid of exact labels estimates each IoU without resampling thin classes away."""
    from segmentation_models_pytorch.losses import LovaszLoss  # a training extra, imported when used

    if logits.shape[0] != target.shape[0] or logits.shape[2:] != target.shape[1:]:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} do not match")
    oy, ox = offset
    logits = logits[:, :, oy::stride, ox::stride].float()
    target = target[:, oy::stride, ox::stride]
    lovasz = LovaszLoss("multiclass", ignore_index=ignore_index)
    total = logits.sum() * 0.0  # an image with no valid pixel on the grid (all ignored) adds 0
    for b in range(logits.shape[0]):
        if (target[b] != ignore_index).any():
            total = total + lovasz(logits[b:b + 1], target[b:b + 1])
    return total


def class_weights_from_counts(counts: np.ndarray, mode: str = "none", max_weight: float = 10.0) -> np.ndarray:
    """Per-label loss weights from pixel counts.

    mode: ``"none"`` (all 1, the paper), ``"median_frequency"`` (Eigen & Fergus 2015:
    median(freq) / freq, as used for CamVid by SegNet), ``"sqrt_median_frequency"`` (its
    square root: a milder boost of rare labels). Labels with no pixels get weight 1;
    weights are clipped to ``max_weight``.
    """
    counts = np.asarray(counts, np.float64)
    if mode == "none":
        return np.ones_like(counts, np.float32)
    if mode not in ("median_frequency", "sqrt_median_frequency"):
        raise ValueError(f"class_weighting must be none, median_frequency or sqrt_median_frequency, got {mode!r}")
    present = counts > 0
    freq = np.where(present, counts / max(counts.sum(), 1.0), 1.0)
    weights = np.where(present, np.median(freq[present]) / freq, 1.0)
    if mode == "sqrt_median_frequency":
        weights = np.sqrt(weights)
    return np.minimum(weights, max_weight).astype(np.float32)
