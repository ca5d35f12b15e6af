"""Zero-shot referring segmentation on any LSeg model: no referring-expression weights needed.

The expression is parsed into a category phrase and qualifiers; the phrase joins a context of
real labels (the caller's label set, else the model's vocabulary: `vocabulary.model_vocabulary`)
as one more label, so the model decides per pixel whether it wins against labels it knows
(the phrase is located "against the current label set"). Against "other" alone anything wins
("a giraffe" covered whole street frames): the context is never that thin unless asked for.
For a closed-set model the words people use are read as its labels ("the hatchback" -> car,
`aliases.PhraseReader`).

The candidate instances are the pixels where the phrase wins with probability >=
`pixel_threshold` (people: `upright_pixel_threshold`), split by the watershed of
`objects.instances` (two cyclists side by side are two objects; people squeezed in height first,
so two people shoulder to shoulder are two); they must be real objects, not stray pixels: at
least `min_area_fraction` of the image, at least `relative_area` of the largest candidate (a
30-pixel blob on the far left is not "the car on the left") and a mean probability of
`min_score`. The qualifiers pick one; when none qualifies the answer is an explicit "not found",
never an arbitrary object. The thresholds are chosen on CamVid TRAIN frames for each model and
reported on val (docs/referring.md): a model carries its own (`LSegConfig.referring`, written
into its checkpoint, as `default-large` does), the others get `DEFAULT_THRESHOLDS`, chosen for
the embedded default model (`lang-seg eval-refer --choose-thresholds` on all 367 train frames).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import cv2
import numpy as np

from ..inference import SegmentationResult, Segmenter, clean_labels
from ..objects.frame import frame_objects
from ..objects.regions import Region, extract_regions
from .aliases import DEFAULT_ALIAS_SIMILARITY, PhraseReader, camvid_reader, resolve_aliases
from .parse import ReferringQuery, parse_expression
from .select import select_instance
from .vocabulary import is_training_vocabulary, load_vocabulary, model_vocabulary

#: Labels that compete with the phrase when the caller asks for no context at all (`labels=()`).
DEFAULT_BACKGROUND = ("other",)
#: The thresholds of a model whose config carries none (`LSegConfig.referring`): chosen on CamVid
#: train for the embedded default model (v3); official checkpoints and models trained here get them.
DEFAULT_THRESHOLDS: dict[str, float] = {
    "min_score": 0.6, "min_area_fraction": 0.001, "relative_area": 0.05, "split_depth": 0.6,
    "pixel_threshold": 0.4, "upright_aspect": 3.0, "upright_pixel_threshold": 0.8,
}


def model_thresholds(segmenter: Segmenter | None) -> dict[str, float]:
    """The referrer's thresholds for the segmenter's model (a `Segmenter`, an `LSeg` or None):
    `DEFAULT_THRESHOLDS` with those chosen for its weights (`LSegConfig.referring`) in their place."""
    model = getattr(segmenter, "model", segmenter)
    chosen = getattr(getattr(model, "config", None), "referring", None) or {}
    return {**DEFAULT_THRESHOLDS, **chosen}


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
        min_score, min_area_fraction, relative_area, split_depth, pixel_threshold, upright_aspect,
            upright_pixel_threshold: None (default) takes the model's (`model_thresholds`: those
            chosen for its weights, else `DEFAULT_THRESHOLDS`); a value overrides it.
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
        upright_labels, upright_aspect, upright_pixel_threshold: candidates of these labels (people)
            are split as upright objects (`_split_upright`: the mask squeezed `upright_aspect`
            times in height before the watershed, so two people shoulder to shoulder are two) and
            their pixels need `upright_pixel_threshold` (a person's mask bloats at the frame's
            scale; equal to `pixel_threshold`: none of their own). Only with `split` / a
            `pixel_threshold` above 0.
        alias_similarity: None (default): phrases are read as the vocabulary's labels by
            `aliases.PhraseReader` (trained wordings, WordNet, embeddings: "the hatchback" -> car)
            when the vocabulary is CamVid's, by the near-synonym rule (cosine >= 0.6) for another
            training vocabulary, not at all for the broad ADE20K fallback; a number: the
            near-synonym rule with that threshold; 0 = off.
    """

    def __init__(self, segmenter: Segmenter, min_score: float | None = None, min_area_fraction: float | None = None,
                 relative_area: float | None = None, vocabulary: Sequence[str] | None = None, split: bool = True,
                 split_depth: float | None = None, pixel_threshold: float | None = None,
                 alias_similarity: float | None = None, upright_labels: Sequence[str] = ("pedestrian",),
                 upright_aspect: float | None = None, upright_pixel_threshold: float | None = None) -> None:
        given = {"min_score": min_score, "min_area_fraction": min_area_fraction, "relative_area": relative_area,
                 "split_depth": split_depth, "pixel_threshold": pixel_threshold, "upright_aspect": upright_aspect,
                 "upright_pixel_threshold": upright_pixel_threshold}
        t = {**model_thresholds(segmenter), **{k: v for k, v in given.items() if v is not None}}
        for name in ("min_score", "relative_area"):
            if not 0.0 <= t[name] <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {t[name]}")
        self.segmenter = segmenter
        self.min_score = t["min_score"]
        self.min_area_fraction = t["min_area_fraction"]
        self.relative_area = t["relative_area"]
        self._vocabulary = tuple(vocabulary) if vocabulary is not None else None
        self.split = split
        self.split_depth = t["split_depth"]
        self.pixel_threshold = t["pixel_threshold"]
        self._alias_similarity = alias_similarity
        self.upright_labels = frozenset(label.lower() for label in upright_labels)
        self.upright_aspect = float(t["upright_aspect"])
        self.upright_pixel_threshold = t["upright_pixel_threshold"]

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

    @property
    def phrase_reader(self) -> PhraseReader | None:
        """The reader of the words people use (`aliases.PhraseReader`) when the vocabulary is the
        CamVid names the model was trained with (the embedded default model); else None."""
        if self._alias_similarity is not None or not is_training_vocabulary(self.segmenter):
            return None
        if {v.lower() for v in self.vocabulary} != {v.lower() for v in load_vocabulary("camvid")}:
            return None
        return camvid_reader(self.segmenter.text_cache)

    def resolve(self, query: ReferringQuery, context: Sequence[str]) -> tuple[ReferringQuery, str]:
        """`query` with the words people use read as context labels ("the hatchback" -> car, "the
        person" -> pedestrian), and a note saying so."""
        if not context:
            return query, ""
        reader = self.phrase_reader
        if reader is not None:
            return reader.resolve(query, list(context))
        if not self.alias_similarity:
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
        regions = self.regions(query, result.label_map, result.confidence, labels)
        return self.answer_regions(query, regions, labels, result.label_map.shape, depth)

    def regions(self, query: ReferringQuery, label_map: np.ndarray, confidence: np.ndarray,
                labels: Sequence[str], offset: tuple[int, int] = (0, 0), min_area: int | None = None) -> list[Region]:
        """The candidate regions of the query's labels in a segmentation: pixels at or above
        `pixel_threshold`, split into instances (`split`); `offset` (x, y) shifts them (a crop)."""
        wanted = [_index_of(labels, p) for p in [query.category] + ([query.relation[1]] if query.relation else [])]
        wanted = [i for i in wanted if i is not None]
        # Only the query's labels become regions: the rest of the frame costs nothing.
        keep = np.isin(label_map, wanted)
        upright = [i for i, label in enumerate(labels) if label.lower() in self.upright_labels and i in wanted]
        if upright and self.pixel_threshold > 0 and self.upright_pixel_threshold != self.pixel_threshold:
            threshold = np.where(np.isin(label_map, upright), np.float32(self.upright_pixel_threshold),
                                 np.float32(self.pixel_threshold))
            keep &= confidence >= threshold
        elif self.pixel_threshold > 0:  # unsure pixels: blob edges and the necks between objects
            keep &= confidence >= self.pixel_threshold
        label_map = np.where(keep, label_map, -1)
        min_area = self._min_area(label_map.shape) if min_area is None else min_area
        if self.split:  # touching objects (two cyclists side by side) become two candidates
            objects = frame_objects(label_map, confidence, labels, min_area=min_area, split=True,
                                    split_depth=self.split_depth)
            regions = [r.region for r in objects.regions]
        else:
            regions = extract_regions(label_map, confidence, labels, min_area=min_area)
        if self.split and self.upright_aspect > 1 and self.upright_labels:
            upright = {i for i, label in enumerate(labels) if label.lower() in self.upright_labels}
            regions = [piece for r in regions
                       for piece in (_split_upright(r, confidence, self.upright_aspect, self.split_depth, min_area)
                                     if r.label_index in upright else [r])]
        if offset != (0, 0):
            dx, dy = offset
            regions = [replace(r, bbox=(r.bbox[0] + dx, r.bbox[1] + dy, r.bbox[2] + dx, r.bbox[3] + dy),
                               centroid=(r.centroid[0] + dx, r.centroid[1] + dy)) for r in regions]
        return regions

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


def _split_upright(region: Region, confidence: np.ndarray, aspect: float, split_depth: float,
                   min_area: int) -> list[Region]:
    """An upright object's region (people) split like round ones: the mask squeezed `aspect` times
    in height, so that one standing person is about as tall as wide, split by the watershed of
    `objects.instances` (two people shoulder to shoulder have two peaks there, one neck), the
    pieces stretched back. One piece (or none of `min_area` pixels): the region as it was."""
    from scipy import ndimage

    from ..objects.instances import split_instances

    height, width = region.mask.shape
    short = max(1, int(round(height / aspect)))
    if short < 3 or region.area < 2 * min_area:
        return [region]
    squeezed = cv2.resize(region.mask.astype(np.uint8), (width, short), interpolation=cv2.INTER_AREA)
    instances, _ = split_instances(np.where(squeezed > 0, 0, -1), (), max(1, int(min_area / aspect)), split_depth)
    if instances.max() <= 1:
        return [region]
    stretched = cv2.resize(instances.astype(np.float32), (width, height), interpolation=cv2.INTER_NEAREST)
    stretched = stretched.astype(np.int32)
    missing = region.mask & (stretched == 0)
    if missing.any():  # rounding: give each unassigned pixel its nearest piece
        nearest = ndimage.distance_transform_edt(stretched == 0, return_distances=False, return_indices=True)
        stretched[missing] = stretched[nearest[0][missing], nearest[1][missing]]
    stretched[~region.mask] = 0
    x0, y0 = region.bbox[:2]
    pieces = []
    for k in range(1, int(stretched.max()) + 1):
        mask = stretched == k
        area = int(mask.sum())
        if area < min_area:
            continue
        ys, xs = np.nonzero(mask)
        bx0, by0, bx1, by1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
        score = float(confidence[y0 + by0:y0 + by1, x0 + bx0:x0 + bx1][mask[by0:by1, bx0:bx1]].mean())
        pieces.append(replace(region, score=score, bbox=(x0 + bx0, y0 + by0, x0 + bx1, y0 + by1),
                              centroid=(x0 + float(xs.mean()), y0 + float(ys.mean())), area=area,
                              mask=mask[by0:by1, bx0:bx1]))
    return pieces if len(pieces) > 1 else [region]


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
