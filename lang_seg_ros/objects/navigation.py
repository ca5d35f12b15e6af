"""What a navigation stack needs from a label map: where the robot may drive, and where not.

Labels are split into traversable ones ("floor, road, sidewalk", named by the user) and all
others. The traversable mask marks the first; the obstacle points are the 3D points of pixels
that carry any other label (pixels without a label are neither: the model did not say). Points
are in the depth camera's optical frame (x right, y down, z forward, metres), which Nav2's
obstacle and voxel layers take as they are through TF.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .geometry import back_project

__all__ = ["obstacle_points", "traversable_indices", "traversable_mask"]


def traversable_indices(labels: Sequence[str], traversable: Sequence[str]) -> np.ndarray:
    """Indices into `labels` of the traversable ones, matched case-insensitively. Once per label set."""
    wanted = {t.casefold() for t in traversable}
    return np.asarray([i for i, label in enumerate(labels) if label.casefold() in wanted], np.int64)


def _lookup(indices: np.ndarray, count: int) -> np.ndarray:
    """(count + 1,) bool: entry label + 1 is True for a traversable label; entry 0 (no label) False."""
    table = np.zeros(count + 1, bool)
    table[np.asarray(indices, np.int64) + 1] = True
    return table


def traversable_mask(label_map: np.ndarray, indices: np.ndarray, count: int) -> np.ndarray:
    """(H, W) uint8: 255 where the pixel's label is traversable, 0 elsewhere (other labels, none).

    label_map: (H, W) int label indices in [-1, count); indices: `traversable_indices`."""
    lut = np.where(_lookup(indices, count), np.uint8(255), np.uint8(0))
    return lut[np.asarray(label_map) + 1]


def obstacle_points(label_map: np.ndarray, indices: np.ndarray, count: int, depth_m: np.ndarray, k: np.ndarray,
                    stride: int = 1, min_range: float = 0.0, max_range: float = np.inf) -> np.ndarray:
    """(N, 3) float32 points (metres, optical frame) of every `stride`-th pixel (in x and y) that
    carries a non-traversable label and a valid depth (finite, > 0), whose distance from the
    camera is in [min_range, max_range]; row-major order.

    depth_m: (H, W) metres registered to `label_map`; k: its 3x3 intrinsics."""
    sub = (slice(None, None, stride), slice(None, None, stride))
    labels = np.asarray(label_map)[sub]
    depth = depth_m[sub]
    blocked = ~_lookup(indices, count)
    blocked[0] = False  # no label: not an obstacle
    with np.errstate(invalid="ignore"):
        keep = blocked[labels + 1] & np.isfinite(depth) & (depth > 0)
    rows, cols = np.nonzero(keep)
    points = back_project(cols * stride, rows * stride, depth[rows, cols].astype(np.float64), k)
    if min_range > 0 or np.isfinite(max_range):
        distance = np.linalg.norm(points, axis=1)
        points = points[(distance >= min_range) & (distance <= max_range)]
    return points.astype(np.float32)
