"""Zero-shot referring segmentation on any LSeg model: no referring-expression weights needed.

The expression is parsed into a category phrase and qualifiers; the phrase joins a context of
real labels (the caller's label set, else the model's vocabulary: `vocabulary.model_vocabulary`)
as one more label, so the model decides per pixel whether it wins against labels it knows
(the phrase is located "against the current label set"). Against "other" alone anything wins
("a giraffe" covered whole street frames): the context is never that thin unless asked for.
For a closed-set model a near-synonym of one of its labels is read as that label (`aliases`).

The candidate instances are the pixels where the phrase wins with probability >=
`pixel_threshold`, split by the watershed of `objects.instances` (two cyclists side by side
are two objects); they must be real objects, not stray pixels: at least `min_area_fraction` of
the image, at least `relative_area` of the largest candidate (a 30-pixel blob on the far left
is not "the car on the left") and a mean probability of `min_score`. The qualifiers pick one;
when none qualifies the answer is an explicit "not found", never an arbitrary object. The
defaults were measured on CamVid val with the embedded default model (`lang-seg eval-refer`,
docs/referring.md).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from ..inference import SegmentationResult, Segmenter, clean_labels
from ..objects.frame import frame_objects
from ..objects.regions import Region, extract_regions
from .aliases import DEFAULT_ALIAS_SIMILARITY, resolve_aliases
from .parse import ReferringQuery, parse_expression
from .select import select_instance
from .vocabulary import is_training_vocabulary, model_vocabulary

#: Labels that compete with the phrase when the caller asks for no context at all (`labels=()`).
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
            default context, and is never changed by `refer`.
        min_score: minimum mean probability of the category over an instance for it to count.
        min_area_fraction: instances smaller than this fraction of the image are ignored.
        relative_area: instances smaller than this fraction of the largest one are ignored (stray
            blobs never become "the leftmost"); 0 keeps them all.
        vocabulary: the context when neither `labels` nor an active set is given; default the
            model's (`model_vocabulary(segmenter)`: its stored names, CamVid for the default model,
            else ADE20K's 150 classes).
        split, split_depth: watershed-split touching candidates (`objects.instances.split_instances`;
            lower depth splits more eagerly); False keeps connected components.
        pixel_threshold: a candidate's pixels are those where the phrase wins with at least this
            probability (0: wherever it wins).
        alias_similarity: near-synonym threshold (cosine of text embeddings, `aliases`); 0 = off;
            None: 0.6 when the vocabulary is the model's training names, else off.
    """

    def __init__(self, segmenter: Segmenter, min_score: float = 0.5, min_area_fraction: float = 0.001,
                 relative_area: float = 0.1, vocabulary: Sequence[str] | None = None, split: bool = True,
                 split_depth: float = 0.2, pixel_threshold: float = 0.6, alias_similarity: float | None = None) -> None:
        if not 0.0 <= min_score <= 1.0:
            raise ValueError(f"min_score must be in [0, 1], got {min_score}")
        if not 0.0 <= relative_area <= 1.0:
            raise ValueError(f"relative_area must be in [0, 1], got {relative_area}")
        self.segmenter = segmenter
        self.min_score = min_score
        self.min_area_fraction = min_area_fraction
        self.relative_area = relative_area
        self._vocabulary = tuple(vocabulary) if vocabulary is not None else None
        self.split = split
        self.split_depth = split_depth
        self.pixel_threshold = pixel_threshold
        self._alias_similarity = alias_similarity

    @property
    def vocabulary(self) -> tuple[str, ...]:
        """The model's context vocabulary (looked up once)."""
        if self._vocabulary is None:
            self._vocabulary = model_vocabulary(self.segmenter)
        return self._vocabulary

    @property
    def alias_similarity(self) -> float:
        """Near-synonym threshold (`aliases`); 0 = off. Default: on (0.6) for a model whose
        vocabulary is its training names (a closed set: "person" must mean "pedestrian"), off for
        open-vocabulary models (CLIP text embeddings of unrelated words are close to each other)."""
        if self._alias_similarity is None:
            self._alias_similarity = DEFAULT_ALIAS_SIMILARITY if is_training_vocabulary(self.segmenter) else 0.0
        return self._alias_similarity

    def resolve(self, query: ReferringQuery, context: Sequence[str]) -> tuple[ReferringQuery, str]:
        """`query` with near-synonyms of context labels read as those labels, and a note saying so."""
        if not self.alias_similarity or not context:
            return query, ""
        return resolve_aliases(query, list(context), self.segmenter.text_cache, self.alias_similarity)

    def context(self, labels: Sequence[str] | None = None) -> tuple[str, ...]:
        """The labels a phrase competes with: `labels` when given, else the segmenter's active
        set, else the vocabulary."""
        if labels is not None:
            return tuple(labels)
        return tuple(self.segmenter.labels) or self.vocabulary

    def refer(self, image: np.ndarray, expression: str, color_order: str = "rgb", depth: np.ndarray | None = None,
              labels: Sequence[str] | None = None) -> ReferringResult:
        """Find the object `expression` refers to in `image` (uint8, as `Segmenter.segment` takes).

        depth: optional (H, W) metres aligned with the image, for "nearest"/"farthest".
        labels: the context label set; default: the segmenter's active set, else the vocabulary;
            `()` for the bare "other" background.
        Raises ValueError for an expression with no category in it.
        """
        context = self.context(labels)
        query, note = self.resolve(parse_expression(expression), context)
        result = self.segmenter.segment(image, color_order=color_order, labels=query_labels(query, context))
        return _noted(self.answer(query, result, depth), note)

    def refer_many(self, image: np.ndarray, expressions: Sequence[str], color_order: str = "rgb",
                   depth: np.ndarray | None = None, labels: Sequence[str] | None = None) -> list[ReferringResult]:
        """`refer` for several expressions on one image, with one image encoding for all."""
        context = self.context(labels)
        resolved = [self.resolve(parse_expression(e), context) for e in expressions]
        sets = [query_labels(q, context) for q, _ in resolved]
        unique = list(dict.fromkeys(sets))
        results = dict(zip(unique, self.segmenter.segment_sets(image, unique, color_order)))
        return [_noted(self.answer(q, results[s], depth), note) for (q, note), s in zip(resolved, sets)]

    def answer(self, query: ReferringQuery, result: SegmentationResult,
               depth: np.ndarray | None = None) -> ReferringResult:
        """Select the referred instance from a segmentation made with `query_labels(query, ...)`.

        Lets a caller that segments anyway (the ROS node) answer from the same image encoding.
        """
        labels = tuple(result.labels)
        wanted = [_index_of(labels, p) for p in [query.category] + ([query.relation[1]] if query.relation else [])]
        wanted = [i for i in wanted if i is not None]
        # Only the query's labels become regions: the rest of the frame costs nothing.
        keep = np.isin(result.label_map, wanted)
        if self.pixel_threshold > 0:  # unsure pixels: blob edges and the necks between objects
            keep &= result.confidence >= self.pixel_threshold
        label_map = np.where(keep, result.label_map, -1)
        min_area = self._min_area(label_map.shape)
        if self.split:  # touching objects (two cyclists side by side) become two candidates
            objects = frame_objects(label_map, result.confidence, labels, min_area=min_area, split=True,
                                    split_depth=self.split_depth)
            regions = [r.region for r in objects.regions]
        else:
            regions = extract_regions(label_map, result.confidence, labels, min_area=min_area)
        return self.answer_regions(query, regions, labels, label_map.shape, depth)

    def _min_area(self, shape: tuple[int, int]) -> int:
        return max(1, int(self.min_area_fraction * shape[0] * shape[1]))

    def candidates(self, regions: Sequence[Region], labels: Sequence[str], phrase: str,
                   shape: tuple[int, int]) -> list[Region]:
        """The instances of `phrase` among `regions`: area and score floors, then the floor
        relative to the largest of them."""
        index = _index_of(labels, phrase)
        min_area = self._min_area(shape)
        pool = [r for r in regions if r.label_index == index and r.score >= self.min_score and r.area >= min_area]
        if pool and self.relative_area > 0:
            floor = self.relative_area * max(r.area for r in pool)
            pool = [r for r in pool if r.area >= floor]
        return pool

    def answer_regions(self, query: ReferringQuery, regions: Sequence[Region], labels: Sequence[str],
                       shape: tuple[int, int], depth: np.ndarray | None = None) -> ReferringResult:
        """Select the referred instance among regions already extracted from a segmentation with
        `labels` (e.g. a frame's regions, when the labels already hold the query's phrases).

        shape: (H, W) of that segmentation; regions under the area floors are ignored.
        """
        label_set = tuple(labels)
        if depth is not None and depth.shape[:2] != tuple(shape):
            raise ValueError(f"depth shape {depth.shape[:2]} differs from the image's {tuple(shape)}")
        others = self.candidates(regions, label_set, query.relation[1], shape) if query.relation else []
        chosen, reason = select_instance(self.candidates(regions, label_set, query.category, shape), query, shape,
                                         depth, others)
        if chosen is None:
            return ReferringResult(query.expression, query, False, 0.0, np.zeros(shape, bool), None, None,
                                   label_set, reason)
        return ReferringResult(query.expression, query, True, chosen.score, chosen.full_mask(shape), chosen.bbox,
                               chosen, label_set, reason)


def _noted(result: ReferringResult, note: str) -> ReferringResult:
    return replace(result, reason=f"{note}; {result.reason}") if note else result


def query_labels(query: ReferringQuery, context: Sequence[str] = (), vocabulary: Sequence[str] = ()) -> tuple[str, ...]:
    """The label set that locates `query`: the context set, then the vocabulary's labels it lacks
    (default, with neither: "other"), then the category phrase and the related category, unless
    already there (case-insensitive)."""
    labels = list(context)
    for label in vocabulary:
        if _index_of(labels, label) is None:
            labels.append(label)
    labels = labels or list(DEFAULT_BACKGROUND)
    for phrase in [query.category] + ([query.relation[1]] if query.relation else []):
        if _index_of(labels, phrase) is None:  # "the mug next to the mug": one label
            labels.append(phrase)
    return clean_labels(labels)
