"""Object-level regions in the spirit of PADing (He et al., "Primitive Generation and
Semantic-related Alignment for Universal Zero-shot Segmentation", CVPR 2023, arXiv 2306.11087):
class-agnostic masks first, then one classification per mask.

- `split_instances`: a label map -> instance masks. "Stuff" labels (floor, sky) give one region
  each; "thing" labels are split into objects by a distance-transform watershed, so two touching
  chairs become two regions, and fragments smaller than `min_area` are merged into the
  neighbouring instance of the same label (or dropped when isolated).
- `classify_by_mask_pooling`: each mask's pixel embeddings are averaged, re-normalised and
  correlated with the label embeddings, so a region's label and score come from the whole
  object instead of pixel votes.
"""
from __future__ import annotations

from typing import Collection

import cv2
import numpy as np
from scipy import ndimage
from skimage.morphology import h_maxima
from skimage.segmentation import watershed

from .model.config import LOGIT_SCALE


def _split_component(component: np.ndarray, split_depth: float) -> np.ndarray:
    """Watershed of one connected mask on its distance transform; (H, W) int32 markers 1..k.

    Seeds are the regional maxima of the distance transform whose height over the saddle to
    their neighbours is at least `split_depth` times the largest distance: a narrow neck between
    two blobs splits them, a long plateau (one elongated object) does not.
    """
    dist = cv2.distanceTransform(component.astype(np.uint8), cv2.DIST_L2, 5)
    h = max(1.0, split_depth * float(dist.max()))
    seeds, count = ndimage.label(h_maxima(dist, h) & component)
    if count <= 1:
        return component.astype(np.int32)
    return watershed(-dist, seeds, mask=component).astype(np.int32)


def _merge_fragments(instances: np.ndarray, labels: list[int], min_area: int) -> None:
    """In place: instances under `min_area` join the same-label neighbour they touch most, else vanish."""
    areas = np.bincount(instances.ravel(), minlength=len(labels))
    kernel = np.ones((3, 3), np.uint8)
    for index in np.argsort(areas):
        if index == 0 or areas[index] == 0 or areas[index] >= min_area:
            continue
        mask = instances == index
        ring = cv2.dilate(mask.astype(np.uint8), kernel).astype(bool) & ~mask
        neighbours = instances[ring]
        neighbours = neighbours[(neighbours > 0) & (np.asarray(labels)[neighbours] == labels[index])]
        target = int(np.bincount(neighbours).argmax()) if neighbours.size else 0
        instances[mask] = target
        areas[target] += areas[index] if target else 0
        areas[index] = 0


def split_instances(
    label_map: np.ndarray,
    stuff: Collection[int] = (),
    min_area: int = 1,
    split_depth: float = 0.3,
) -> tuple[np.ndarray, np.ndarray]:
    """Class-agnostic instance masks from a label map.

    Args:
        label_map: (H, W) ints; negative values (no label) belong to no instance.
        stuff: label indices that are "stuff": one region per label, never split.
        min_area: smaller instances are merged into a touching instance of the same label or
            dropped.
        split_depth: in (0, 1]; lower splits touching objects more eagerly.

    Returns:
        instance_map: (H, W) int32, 0 = no instance, 1..K the instances, numbered in order of
            label, then top-to-bottom, left-to-right of their first pixel.
        instance_labels: (K + 1,) int32, the label of each instance (index 0 unused, -1).
    """
    label_map = np.asarray(label_map)
    raw = np.zeros(label_map.shape, np.int32)
    raw_labels = [-1]
    stuff = set(int(s) for s in stuff)
    for label in np.unique(label_map[label_map >= 0]).tolist():
        mask = label_map == label
        if label in stuff:
            raw[mask] = len(raw_labels)
            raw_labels.append(label)
            continue
        count, components = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
        for c in range(1, count):
            component = components == c
            parts = _split_component(component, split_depth)
            for part in range(1, int(parts.max()) + 1):
                raw[parts == part] = len(raw_labels)
                raw_labels.append(label)
    _merge_fragments(raw, raw_labels, max(1, int(min_area)))
    # Renumber 1..K in a stable order: label, then first pixel in raster order.
    present = np.unique(raw[raw > 0])
    firsts = {int(i): int(np.flatnonzero(raw.ravel() == i)[0]) for i in present}
    order = sorted(present.tolist(), key=lambda i: (raw_labels[i], firsts[i]))
    lut = np.zeros(len(raw_labels), np.int32)
    lut[order] = np.arange(1, len(order) + 1)
    instance_labels = np.asarray([-1] + [raw_labels[i] for i in order], np.int32)
    return lut[raw], instance_labels


def classify_by_mask_pooling(
    instance_map: np.ndarray,
    pixel_features: np.ndarray,
    text_features: np.ndarray,
    logit_scale: float = LOGIT_SCALE,
) -> tuple[np.ndarray, np.ndarray]:
    """Label and probability of every instance from its pooled pixel embedding.

    Args:
        instance_map: (H, W) ints, 0 = none, 1..K instances (any resolution).
        pixel_features: (C, h, w) L2-normalised pixel embeddings covering the same image.
        text_features: (N, C) L2-normalised label embeddings.

    Returns:
        labels (K + 1,) int32 and scores (K + 1,) float32 (softmax probability of that label
        for the pooled embedding); entry 0 is unused (-1, 0).
    """
    count = int(instance_map.max()) if instance_map.size else 0
    labels = np.full(count + 1, -1, np.int32)
    scores = np.zeros(count + 1, np.float32)
    if count == 0:
        return labels, scores
    channels, h, w = pixel_features.shape
    flat = pixel_features.reshape(channels, h * w)
    for index in range(1, count + 1):
        # Area resampling gives each low-resolution cell the fraction of it the mask covers.
        weights = cv2.resize((instance_map == index).astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
        total = float(weights.sum())
        if total <= 0:
            continue
        pooled = flat @ weights.reshape(-1) / total
        pooled /= max(np.linalg.norm(pooled), 1e-12)
        logits = logit_scale * (text_features @ pooled)
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        labels[index] = int(probs.argmax())
        scores[index] = float(probs.max())
    return labels, scores
