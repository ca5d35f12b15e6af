"""Zero-shot referring segmentation on any LSeg model: no referring-expression weights needed.

The expression is parsed into a category phrase and qualifiers; the phrase joins the current
label set as one more label, so the model decides per pixel whether it wins against the labels
already in use (the phrase is located "against the current label set"); its connected regions
are the candidate instances, and the qualifiers pick one. When no candidate's mean probability
reaches `min_score`, the answer is an explicit "not found", never an arbitrary object.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..inference import SegmentationResult, Segmenter, clean_labels
from ..objects.regions import Region, extract_regions
from .parse import ReferringQuery, parse_expression
from .select import select_instance

#: Labels that compete with the phrase when no label set is active.
DEFAULT_BACKGROUND = ("other",)


@dataclass(frozen=True)
class ReferringResult:
    """The answer for one expression, at the image's resolution.

    Attributes:
        found: whether an object was selected; when False, `mask` is all False and `bbox` None.
        score: mean probability of the category over the selected object (0 when not found).
        mask: (H, W) bool.
        bbox: (x0, y0, x1, y1) pixels, half-open (x1 = x0 + width), or None.
        reason: how the object was chosen, or why none was.
    """

    expression: str
    query: ReferringQuery | None
    found: bool
    score: float
    mask: np.ndarray
    bbox: tuple[int, int, int, int] | None
    region: Region | None
    labels: tuple[str, ...]
    reason: str

    def to_json(self) -> dict:
        return {"expression": self.expression, "found": self.found, "score": self.score,
                "bbox": list(self.bbox) if self.bbox else None,
                "category": self.query.category if self.query else None,
                "area": int(self.mask.sum()), "labels": list(self.labels), "reason": self.reason}


def _index_of(labels: Sequence[str], phrase: str) -> int | None:
    lowered = [label.lower() for label in labels]
    return lowered.index(phrase.lower()) if phrase.lower() in lowered else None


class ZeroShotReferrer:
    """Answers referring expressions with a `Segmenter`.

    Args:
        segmenter: any LSeg model behind the numpy facade; its active label set (if any) is the
            context the phrase competes against, and is never changed by `refer`.
        min_score: minimum mean probability of the category over an instance for it to count.
        min_area_fraction: instances smaller than this fraction of the image are ignored.
    """

    def __init__(self, segmenter: Segmenter, min_score: float = 0.5, min_area_fraction: float = 0.0005) -> None:
        if not 0.0 <= min_score <= 1.0:
            raise ValueError(f"min_score must be in [0, 1], got {min_score}")
        self.segmenter = segmenter
        self.min_score = min_score
        self.min_area_fraction = min_area_fraction

    def refer(self, image: np.ndarray, expression: str, color_order: str = "rgb", depth: np.ndarray | None = None,
              labels: Sequence[str] | None = None) -> ReferringResult:
        """Find the object `expression` refers to in `image` (uint8, as `Segmenter.segment` takes).

        depth: optional (H, W) metres aligned with the image, for "nearest"/"farthest".
        labels: the context label set; default: the segmenter's active set, else "other".
        Raises ValueError for an expression with no category in it.
        """
        query = parse_expression(expression)
        label_set = query_labels(query, labels if labels is not None else self.segmenter.labels)
        result = self.segmenter.segment(image, color_order=color_order, labels=label_set)
        return self.answer(query, result, depth)

    def answer(self, query: ReferringQuery, result: SegmentationResult, depth: np.ndarray | None = None) -> ReferringResult:
        """Select the referred instance from a segmentation made with `query_labels(query, ...)`.

        Lets a caller that segments anyway (the ROS node) answer from the same image encoding.
        """
        min_area = max(1, int(self.min_area_fraction * result.label_map.size))
        regions = extract_regions(result.label_map, result.confidence, result.labels, min_area=min_area)
        return self.answer_regions(query, regions, result.labels, result.label_map.shape, depth)

    def answer_regions(self, query: ReferringQuery, regions: Sequence[Region], labels: Sequence[str],
                       shape: tuple[int, int], depth: np.ndarray | None = None) -> ReferringResult:
        """Select the referred instance among regions already extracted from a segmentation with
        `labels` (e.g. a frame's regions, when the labels already hold the query's phrases).

        shape: (H, W) of that segmentation; regions under `min_area_fraction` of it are ignored.
        """
        label_set = tuple(labels)
        if depth is not None and depth.shape[:2] != tuple(shape):
            raise ValueError(f"depth shape {depth.shape[:2]} differs from the image's {tuple(shape)}")
        min_area = max(1, int(self.min_area_fraction * shape[0] * shape[1]))

        def instances(phrase: str) -> list[Region]:
            index = _index_of(label_set, phrase)
            return [r for r in regions if r.label_index == index and r.score >= self.min_score and r.area >= min_area]

        others = instances(query.relation[1]) if query.relation else []
        chosen, reason = select_instance(instances(query.category), query, shape, depth, others)
        if chosen is None:
            return ReferringResult(query.expression, query, False, 0.0, np.zeros(shape, bool), None, None,
                                   label_set, reason)
        return ReferringResult(query.expression, query, True, chosen.score, chosen.full_mask(shape), chosen.bbox,
                               chosen, label_set, reason)


def query_labels(query: ReferringQuery, context: Sequence[str] = ()) -> tuple[str, ...]:
    """The label set that locates `query`: the context set (default "other") plus the category
    phrase and the related category, unless the context already holds them."""
    labels = list(context) or list(DEFAULT_BACKGROUND)
    for phrase in [query.category] + ([query.relation[1]] if query.relation else []):
        if _index_of(labels, phrase) is None:  # "the mug next to the mug": one label
            labels.append(phrase)
    return clean_labels(labels)
