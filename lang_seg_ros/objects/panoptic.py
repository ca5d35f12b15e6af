"""Panoptic id images: label and instance in one integer per pixel.

Encoding (Cityscapes-style, shifted so that 0 means "void"):
    id = (label_index + 1) * PANOPTIC_DIVISOR + instance
with instance = 0 for a "stuff" region and 1, 2, ... for the "thing" instances of that label.
So 0 is no label, 1000 is stuff of label 0, 3002 is the second instance of label 2. Stored as
32-bit signed ints (ROS encoding "32SC1"); up to 2,147,482 labels and 999 instances per label.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PANOPTIC_DIVISOR = 1000


@dataclass(frozen=True)
class PanopticSegment:
    id: int
    label_index: int
    instance: int  # 0 for stuff
    mask: np.ndarray  # (H, W) bool


def encode_panoptic(instance_map: np.ndarray, instance_labels: np.ndarray, stuff: set[int] | frozenset[int]) -> np.ndarray:
    """(H, W) instance map (0 = none, 1..K) + label of each instance -> (H, W) int32 panoptic ids."""
    ids = np.zeros(len(instance_labels), np.int64)
    counters: dict[int, int] = {}
    for index in range(1, len(instance_labels)):
        label = int(instance_labels[index])
        if label < 0:
            continue
        if label in stuff:
            instance = 0
        else:
            instance = counters[label] = counters.get(label, 0) + 1
            if instance >= PANOPTIC_DIVISOR:
                raise ValueError(f"more than {PANOPTIC_DIVISOR - 1} instances of label {label}")
        ids[index] = (label + 1) * PANOPTIC_DIVISOR + instance
    return ids[instance_map].astype(np.int32)


def panoptic_ids_of(instance_labels: np.ndarray, stuff: set[int] | frozenset[int]) -> np.ndarray:
    """The panoptic id `encode_panoptic` gives each instance index (0 for index 0)."""
    return encode_panoptic(np.arange(len(instance_labels))[None], instance_labels, stuff)[0]


def decode_panoptic(panoptic: np.ndarray) -> list[PanopticSegment]:
    """(H, W) panoptic ids -> one segment per id present (void excluded), in increasing id."""
    segments = []
    for pid in np.unique(panoptic).tolist():
        if pid <= 0:
            continue
        segments.append(PanopticSegment(pid, pid // PANOPTIC_DIVISOR - 1, pid % PANOPTIC_DIVISOR, panoptic == pid))
    return segments
