"""Per-object regions from a label map: connected components per label (numpy + OpenCV, no ROS).

A `Region` is one connected group of pixels carrying the same label, with its box, centroid,
area, cropped mask and a score: the mean over its pixels of the model's probability of that
label. Planners use them as objects (grasping) or as "stuff" areas (navigation).

Coordinates are pixels of the label map: x to the right, y down, (0, 0) the top-left pixel;
boxes are half-open, `x0 <= x < x1`, `y0 <= y < y1`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

__all__ = ["Region", "extract_regions"]


@dataclass(frozen=True, eq=False)
class Region:
    """One connected region of one label.

    Attributes:
        id: 1-based, unique within one `extract_regions` result (0 can mean "no region").
        label: the label text; `label_index` its index in the label set used.
        score: mean probability of `label` over the region's pixels, in [0, 1].
        bbox: (x0, y0, x1, y1) in pixels, half-open: width = x1 - x0, height = y1 - y0.
        centroid: (x, y) mean pixel position in pixels (pixel centres at integer values).
        area: number of pixels.
        mask: (y1 - y0, x1 - x0) bool, True on the region's pixels, cropped to `bbox`.
    """

    id: int
    label: str
    label_index: int
    score: float
    bbox: tuple[int, int, int, int]
    centroid: tuple[float, float]
    area: int
    mask: np.ndarray

    @property
    def width(self) -> int:
        return self.bbox[2] - self.bbox[0]

    @property
    def height(self) -> int:
        return self.bbox[3] - self.bbox[1]

    def full_mask(self, shape: tuple[int, int]) -> np.ndarray:
        """The region's mask pasted into an all-False (H, W) bool image of `shape`."""
        out = np.zeros(shape, dtype=bool)
        x0, y0, x1, y1 = self.bbox
        out[y0:y1, x0:x1] = self.mask
        return out


def extract_regions(
    label_map: np.ndarray,
    confidence: np.ndarray | None,
    labels: Sequence[str],
    min_area: int = 1,
    connectivity: int = 8,
    max_regions: int | None = None,
) -> list[Region]:
    """Connected components of each label of `label_map`.

    Args:
        label_map: (H, W) integer label indices into `labels`; values outside
            [0, len(labels)) (e.g. NO_LABEL = -1) belong to no region.
        confidence: (H, W) float probability of the chosen label, or None (scores are then 1).
        labels: the label set `label_map` indexes into.
        min_area: components with fewer pixels are dropped.
        connectivity: 8 (diagonal neighbours connect) or 4.
        max_regions: keep at most this many, the largest first (None: all).

    Returns:
        Regions sorted by label index, then by decreasing area (ties: top-left first), with ids
        1, 2, ... in that order.
    """
    label_map = np.asarray(label_map)
    if label_map.ndim != 2:
        raise ValueError(f"label_map must be (H, W), got shape {label_map.shape}")
    if confidence is not None:
        confidence = np.asarray(confidence, dtype=np.float32)
        if confidence.shape != label_map.shape:
            raise ValueError(f"confidence shape {confidence.shape} differs from label_map shape {label_map.shape}")
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    min_area = max(1, int(min_area))

    found: list[tuple[int, int, int, int, int, int, int, float, float, float, np.ndarray]] = []
    present = np.unique(label_map)
    present = present[(present >= 0) & (present < len(labels))]
    for label_index in present.tolist():
        binary = (label_map == label_index).astype(np.uint8)
        count, components, stats, centroids = cv2.connectedComponentsWithStats(
            binary, connectivity=connectivity, ltype=cv2.CV_32S)
        areas = stats[:, cv2.CC_STAT_AREA]
        keep = [c for c in range(1, count) if areas[c] >= min_area]
        if not keep:
            continue
        if confidence is not None:
            sums = np.bincount(components.ravel(), weights=confidence.ravel(), minlength=count)
        for c in keep:
            x0, y0 = int(stats[c, cv2.CC_STAT_LEFT]), int(stats[c, cv2.CC_STAT_TOP])
            x1, y1 = x0 + int(stats[c, cv2.CC_STAT_WIDTH]), y0 + int(stats[c, cv2.CC_STAT_HEIGHT])
            area = int(areas[c])
            score = float(sums[c] / area) if confidence is not None else 1.0
            mask = components[y0:y1, x0:x1] == c
            found.append((label_index, -area, y0, x0, x1, y1, area, score,
                          float(centroids[c, 0]), float(centroids[c, 1]), mask))

    if max_regions is not None and len(found) > max_regions:
        found = sorted(found, key=lambda f: (f[1], f[0], f[2], f[3]))[:max(0, int(max_regions))]
    found.sort(key=lambda f: (f[0], f[1], f[2], f[3]))
    return [
        Region(id=i, label=labels[f[0]], label_index=f[0], score=min(1.0, max(0.0, f[7])),
               bbox=(f[3], f[2], f[4], f[5]), centroid=(f[8], f[9]), area=f[6], mask=f[10])
        for i, f in enumerate(found, start=1)
    ]
