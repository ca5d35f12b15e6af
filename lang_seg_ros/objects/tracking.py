"""Stable region ids across frames: regions of the same label matched by mask IoU.

Each frame's regions are matched to the live tracks with the Hungarian algorithm on mask IoU
(only pairs of the same label and IoU >= threshold count); a matched region keeps its track's
id, an unmatched one starts a new id, and a track unseen for `max_missed` frames ends. Ids are
never reused.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from .regions import Region


def mask_iou(a: Region, b: Region) -> float:
    """IoU of two regions' masks (cropped to their boxes, in the same image)."""
    x0, y0 = max(a.bbox[0], b.bbox[0]), max(a.bbox[1], b.bbox[1])
    x1, y1 = min(a.bbox[2], b.bbox[2]), min(a.bbox[3], b.bbox[3])
    if x0 >= x1 or y0 >= y1:
        return 0.0
    crop_a = a.mask[y0 - a.bbox[1]:y1 - a.bbox[1], x0 - a.bbox[0]:x1 - a.bbox[0]]
    crop_b = b.mask[y0 - b.bbox[1]:y1 - b.bbox[1], x0 - b.bbox[0]:x1 - b.bbox[0]]
    inter = int((crop_a & crop_b).sum())
    return inter / float(a.area + b.area - inter) if inter else 0.0


@dataclass
class _Track:
    id: int
    region: Region
    missed: int = 0


class IoUTracker:
    """Assigns persistent ids to the regions of successive frames. Not thread-safe: one caller."""

    def __init__(self, iou_threshold: float = 0.3, max_missed: int = 5) -> None:
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
        self.iou_threshold = iou_threshold
        self.max_missed = max_missed
        self._tracks: list[_Track] = []
        self._next_id = 1

    def reset(self) -> None:
        """Forget all tracks (e.g. after a label-set change: label indices mean new things)."""
        self._tracks = []

    def update(self, regions: Sequence[Region]) -> list[int]:
        """Track ids for `regions`, in their order."""
        ids = [0] * len(regions)
        matched_tracks: set[int] = set()
        if self._tracks and regions:
            iou = np.zeros((len(self._tracks), len(regions)))
            for t, track in enumerate(self._tracks):
                for r, region in enumerate(regions):
                    if track.region.label_index == region.label_index:
                        iou[t, r] = mask_iou(track.region, region)
            rows, cols = linear_sum_assignment(-iou)
            for t, r in zip(rows, cols):
                if iou[t, r] >= self.iou_threshold:
                    ids[r] = self._tracks[t].id
                    self._tracks[t].region, self._tracks[t].missed = regions[r], 0
                    matched_tracks.add(t)
        for t, track in enumerate(self._tracks):
            if t not in matched_tracks:
                track.missed += 1
        self._tracks = [track for track in self._tracks if track.missed <= self.max_missed]
        for r, region in enumerate(regions):
            if ids[r] == 0:
                ids[r] = self._next_id
                self._tracks.append(_Track(self._next_id, region))
                self._next_id += 1
        return ids
