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


def _merge_fragments(parts: np.ndarray, min_area: int) -> None:
    """In place, on the parts of one connected component: each part under `min_area` joins the
    part it shares the longest border with, smallest first."""
    areas = np.bincount(parts.ravel())
    kernel = np.ones((3, 3), np.uint8)
    for index in np.argsort(areas):
        if index == 0 or areas[index] == 0 or areas[index] >= min_area:
            continue
        mask = parts == index
        ring = cv2.dilate(mask.astype(np.uint8), kernel).astype(bool) & ~mask
        neighbours = parts[ring]
        neighbours = neighbours[neighbours > 0]
        if neighbours.size == 0:
            continue
        target = int(np.bincount(neighbours).argmax())
        parts[mask] = target
        areas[target] += areas[index]
        areas[index] = 0


def split_instances(
    label_map: np.ndarray,
    stuff: Collection[int] = (),
    min_area: int = 1,
    split_depth: float = 0.3,
    split: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Class-agnostic instance masks from a label map.

    Args:
        label_map: (H, W) ints; negative values (no label) belong to no instance.
        stuff: label indices that are "stuff": one region per label, never split.
        min_area: a connected component (or a stuff label) smaller than this is dropped;
            smaller parts of a split component join the neighbouring part.
        split_depth: in (0, 1]; lower splits touching objects more eagerly.
        split: False keeps each connected component whole (plain connected components).

    Returns:
        instance_map: (H, W) int32, 0 = no instance, 1..K the instances, numbered by label, then
            top to bottom.
        instance_labels: (K + 1,) int32, the label of each instance (index 0 unused, -1).
    """
    label_map = np.asarray(label_map)
    height, width = label_map.shape
    instance_map = np.zeros(label_map.shape, np.int32)
    instance_labels = [-1]
    stuff = set(int(s) for s in stuff)
    min_area = max(1, int(min_area))
    for label in np.unique(label_map[label_map >= 0]).tolist():
        mask = label_map == label
        if label in stuff:
            if int(mask.sum()) >= min_area:
                instance_labels.append(label)
                instance_map[mask] = len(instance_labels) - 1
            continue
        count, components, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
        # Components of one label never touch, so each is split and cleaned on its own box
        # (plus a one-pixel margin for the distance transform): cost follows object size.
        order = sorted(range(1, count), key=lambda c: (stats[c, cv2.CC_STAT_TOP], stats[c, cv2.CC_STAT_LEFT]))
        for c in order:
            if stats[c, cv2.CC_STAT_AREA] < min_area:
                continue
            x0, y0 = max(0, stats[c, cv2.CC_STAT_LEFT] - 1), max(0, stats[c, cv2.CC_STAT_TOP] - 1)
            x1 = min(width, stats[c, cv2.CC_STAT_LEFT] + stats[c, cv2.CC_STAT_WIDTH] + 1)
            y1 = min(height, stats[c, cv2.CC_STAT_TOP] + stats[c, cv2.CC_STAT_HEIGHT] + 1)
            component = components[y0:y1, x0:x1] == c
            if not split:
                instance_labels.append(label)
                instance_map[y0:y1, x0:x1][component] = len(instance_labels) - 1
                continue
            parts = _split_component(component, split_depth)
            _merge_fragments(parts, min_area)
            ids, firsts = np.unique(parts.ravel(), return_index=True)
            box = instance_map[y0:y1, x0:x1]
            for part in ids[ids > 0][np.argsort(firsts[ids > 0])].tolist():
                instance_labels.append(label)
                box[parts == part] = len(instance_labels) - 1
    return instance_map, np.asarray(instance_labels, np.int32)


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
