"""The frame pipeline: one camera frame in, everything the node publishes out, no ROS.

    pipeline = FramePipeline(Segmenter(), PipelineSettings(overlay=True))
    pipeline.set_labels("road, car:stuff, person")       # encoded here, once per label set
    pipeline.set_expression("the car on the left")        # parsed and encoded here too
    result = pipeline.process(bgr_image, color_order="bgr", depth=depth_mm, intrinsics=k)
    result.label_map, result.objects.regions, result.referring, result.overlay

Everything that depends only on the label set (cleaned labels, stuff flags, label embeddings,
the folded head, the overlay palette, the referring query's labels) lives in an immutable
`ActiveLabels` / `ActiveQuery` built when the set changes; `process` only does per-frame work:
one image encoding for the frame's labels and the query's, the label decision on the device,
one pass of object extraction, tracking, 3D, referring (reusing the frame's regions when the
query adds no label) and the overlay.

Threading: one thread runs the model (`infer`, or `process`, and `refer`); `finish` may run on a
second thread, in frame order, so that one frame's objects and overlay overlap the next frame's
model pass (the node does this). `set_labels`, `set_expression` and `configure` (called by one
thread at a time, e.g. between frames) swap immutable objects in one assignment: a frame sees
either the old or the new state, never a mix.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np

from .inference import Segmenter
from .inference.labels import LabelSpec, parse_label_spec
from .inference.preprocess import to_rgb
from .inference.segmenter import PreparedLabels
from .objects import FrameObjects, FrameRegion, add_geometry, aligned_depth, best_overlap, frame_objects, labelled_points
from .objects.geometry import organised_points, region_3d
from .objects.navigation import obstacle_points, traversable_indices, traversable_mask
from .objects.tracking import IoUTracker
from .referring import ReferringQuery, ReferringResult, ZeroShotReferrer, query_labels, read_expression
from .referring.vocabulary import model_vocabulary
from .visualize import palette, render_overlay

__all__ = ["ActiveLabels", "ActiveQuery", "DepthError", "FrameInference", "FramePipeline", "FrameResult", "PipelineSettings",
           "ReferringAnswer", "Tracks"]


class DepthError(ValueError):
    """The depth given with a frame cannot be used (the frame itself can, without 3D)."""


@dataclass(frozen=True)
class PipelineSettings:
    """Per-frame settings (the node's run-time parameters map onto these one to one)."""

    working_size: int = 480  # long side (pixels) the image is resized to, single scale
    scales: tuple[float, ...] | None = None  # None: single scale; else multi-scale evaluation
    flip: bool = False  # add mirrored passes (multi-scale only)
    threshold: float = 0.0  # pixels whose best label's probability is lower get no label
    min_region_area: int = 50  # pixels
    max_regions: int = 256
    instances: bool = False  # watershed-split touching things instead of connected components
    split_depth: float = 0.3
    mask_pooling: bool = False  # classify each region by pooled embeddings (single scale only)
    panoptic: bool = False
    tracking: bool = False
    tracking_iou: float = 0.3
    tracking_max_missed: int = 5
    referring_min_score: float = 0.5
    # The phrase also competes with the model's vocabulary (its training names, else ADE20K's 150
    # classes), not only the active labels: "not found" holds when the active set is small; and
    # for a closed-set model near-synonyms read as its labels ("person" -> "pedestrian").
    referring_vocabulary: bool = False
    referring_min_area_fraction: float = 0.0005  # candidates smaller than this share of the image are ignored
    referring_relative_area: float = 0.0  # ... and those under this fraction of the largest candidate
    referring_pixel_threshold: float = 0.0  # a candidate's pixels: the phrase's probability at least this
    overlay: bool = False
    overlay_alpha: float = 0.5
    cloud: bool = False  # labelled 3D points (needs depth)
    cloud_stride: int = 1
    traversable: tuple[str, ...] = ()  # labels the robot may drive on (case-insensitive): traversable mask
    obstacles: bool = False  # 3D points of every other label (needs depth and `traversable`)
    obstacle_stride: int = 2
    obstacle_range: tuple[float, float] = (0.0, math.inf)  # metres from the camera
    region_embeddings: bool = False  # pooled pixel embedding per region (single scale only)
    aligned_points: bool = False  # every pixel's 3D point in image layout (needs depth): `FrameResult.aligned_points`


@dataclass(frozen=True, eq=False)
class ActiveLabels:
    """A label set ready for frames: id (increases with every change), labels and stuff flags,
    their embeddings and folded head (`prepared`), the overlay palette (N, 3) uint8 RGB."""

    id: int
    spec: LabelSpec
    prepared: PreparedLabels
    palette: np.ndarray

    @property
    def labels(self) -> tuple[str, ...]:
        return self.spec.labels


@dataclass(frozen=True, eq=False)
class ActiveQuery:
    """A referring expression ready for frames, for one label set (`label_set_id`).

    prepared: the labels that locate it (`query_labels`: the set, the vocabulary when
    `vocabulary`, plus its category phrase), or None when the set already holds them all (the
    frame's own segmentation answers it).
    """

    expression: str
    query: ReferringQuery
    label_set_id: int
    prepared: PreparedLabels | None
    vocabulary: bool = False


@dataclass(frozen=True)
class ReferringAnswer:
    """The answer to the active expression on one frame: the referrer's result and the chosen
    object as a frame region (ids linked to the frame's region it overlaps most; 3D with depth)."""

    expression: str
    query: ReferringQuery
    result: ReferringResult
    region: FrameRegion | None
    tag: Any = None  # `refer`: the tag the frame it answered on was processed with

    @property
    def found(self) -> bool:
        return self.result.found and self.region is not None


@dataclass
class FrameResult:
    """Everything one frame gives, at the input image's resolution (pixels: x right, y down).

    label_map: (H, W) int32 indices into `labels.labels` (-1: no label); confidence: (H, W) float32;
    objects: regions (repainted label map and region map too); panoptic: (H, W) int32 or None;
    referring: the active expression's answer or None; cloud: (points (N, 3) float32 metres in
    the depth camera's optical frame, labels (N,) uint32, instances (N,) uint32) or None;
    overlay: (H, W + legend, 3) uint8 RGB or None; timings_ms: per stage; has_depth: depth was
    given and usable (the regions carry 3D values); traversable: (H, W) uint8, 255 on traversable
    labels, or None (no `traversable` labels set); obstacles: (N, 3) float32 metres, optical frame,
    points of non-traversable labels, or None (no depth, or off); label_embeddings: (N, C) float32
    L2-normalised embeddings of the labels, with `region_embeddings` (else None); aligned_points:
    (H, W, 3) float32 metres in the depth camera's optical frame, NaN where depth is invalid, one
    point per label-map pixel, with `aligned_points` and depth (else None).
    """

    labels: ActiveLabels
    label_map: np.ndarray
    confidence: np.ndarray
    objects: FrameObjects
    timings_ms: dict[str, float]
    panoptic: np.ndarray | None = None
    referring: ReferringAnswer | None = None
    cloud: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    overlay: np.ndarray | None = None
    has_depth: bool = False
    referring_error: str | None = None  # the active expression could not be answered (the frame is fine)
    traversable: np.ndarray | None = None
    obstacles: np.ndarray | None = None
    label_embeddings: np.ndarray | None = None
    aligned_points: np.ndarray | None = None
    regions_skipped: bool = False  # `finish(regions=False)`: no regions, tracks, panoptic ids, cloud or answer


@dataclass(frozen=True)
class FrameInference:
    """The model's part of one frame (`FramePipeline.infer`), what `finish` needs for the rest:
    the image and its colour order, the label set, settings and query it was run with, the
    segmentations (the frame's labels, then the query's when it added labels), the depth in
    metres and K at the image's size, and the stage timings so far (ms)."""

    image: np.ndarray
    color_order: str
    labels: ActiveLabels
    settings: PipelineSettings
    query: ActiveQuery | None
    results: list[Any]
    depth_m: tuple[np.ndarray, np.ndarray] | None
    timings: dict[str, float]
    tag: Any = None
    query_error: str | None = None  # why the active expression could not be answered on this frame


@dataclass
class _LastFrame:
    """What `refer` answers on: the latest processed frame."""

    image: np.ndarray
    color_order: str
    labels: ActiveLabels
    regions: list[FrameRegion] | None  # None: the frame was finished without them (`finish(regions=False)`)
    depth: tuple[np.ndarray, np.ndarray] | None  # (metres at the label map's size, K there)
    tag: Any = None
    label_map: np.ndarray | None = None
    confidence: np.ndarray | None = None


@dataclass
class _State:
    labels: ActiveLabels | None = None
    expression: str = ""
    query: ReferringQuery | None = None
    settings: PipelineSettings = field(default_factory=PipelineSettings)


class FramePipeline:
    """Segmenter + label set + objects + referring for a stream of frames (see the module doc).

    segmenter: the model behind its numpy facade (`Segmenter`); its own label set is not used,
    and its working size, scales, flip and threshold are set from the settings (`configure`).
    """

    def __init__(self, segmenter: Segmenter, settings: PipelineSettings | None = None,
                 vocabulary: Sequence[str] | None = None) -> None:
        self.segmenter = segmenter
        self._vocabulary = tuple(vocabulary) if vocabulary is not None else None
        self._state = _State()
        self.configure(settings or PipelineSettings())
        self._active_query: ActiveQuery | None = None
        self._tracks = Tracks()
        self._last: _LastFrame | None = None
        self._next_id = 0
        self._traversable: tuple[tuple[int, tuple[str, ...]], np.ndarray] | None = None

    def adopt(self, previous: "FramePipeline | None") -> None:
        """Continue from the pipeline this one replaces (a model reload): its tracks (so track ids
        are never reused), label-set ids and the frame `refer` answers on carry over."""
        if previous is None:
            return
        self._tracks = previous._tracks
        self._last, self._next_id = previous._last, previous._next_id

    # -- state: changed by one thread at a time, read by the frame threads ----------------------
    @property
    def settings(self) -> PipelineSettings:
        return self._state.settings

    @property
    def labels(self) -> ActiveLabels | None:
        return self._state.labels

    @property
    def expression(self) -> str:
        return self._state.expression

    def configure(self, settings: PipelineSettings) -> None:
        """New per-frame settings, from the next frame on (the model's inference settings are
        applied here, once, not per frame)."""
        self.segmenter.working_size = int(settings.working_size)
        self.segmenter.scales = tuple(settings.scales) if settings.scales else None
        self.segmenter.flip = bool(settings.flip)
        self.segmenter.threshold = float(settings.threshold)
        self._state = replace(self._state, settings=settings)

    def set_labels(self, labels: LabelSpec | str | list[str], stuff_labels: str | list[str] = "",
                   label_set_id: int | None = None) -> ActiveLabels:
        """Make a label set active: parsed by the one label policy (ValueError saying why, the
        active set unchanged), encoded once. `label_set_id` defaults to the previous id + 1."""
        spec = labels if isinstance(labels, LabelSpec) else parse_label_spec(labels, stuff_labels)
        prepared = self.segmenter.prepare(spec.labels)
        if label_set_id is None:
            label_set_id = self._next_id + 1
        self._next_id = max(self._next_id, label_set_id)
        active = ActiveLabels(label_set_id, spec, prepared, palette(len(spec.labels)))
        self._state = replace(self._state, labels=active)
        return active

    def set_expression(self, text: str) -> ReferringQuery | None:
        """The referring expression answered on every frame ("" clears it); ValueError for one the
        policy refuses or with no category in it (the previous expression stays)."""
        text, query = read_expression(text)
        self._state = replace(self._state, expression=text, query=query)
        return query

    # -- per frame -------------------------------------------------------------------------------
    def process(self, image: np.ndarray, color_order: str = "rgb", depth: np.ndarray | None = None,
                intrinsics: np.ndarray | None = None, intrinsics_size: tuple[int, int] | None = None) -> FrameResult:
        """Segment one frame and derive everything from it: `finish(infer(...))`.

        image: uint8 (H, W), (H, W, 3) or (H, W, 4) in `color_order`; it is read, never copied
        except into the model input (and into the overlay when that is on).
        depth: registered to the image (same aspect ratio, any size), uint16 millimetres or float
        metres (0 / NaN = invalid); intrinsics: its 3x3 K; intrinsics_size: (H, W) of the image K
        was calibrated for (a CameraInfo's height and width), default the depth image's size.
        Raises ValueError for a bad image and `DepthError` (a ValueError, raised before the model
        runs) for bad depth: another aspect ratio, unusable K.
        """
        return self.finish(self.infer(image, color_order, depth, intrinsics, intrinsics_size))

    def infer(self, image: np.ndarray, color_order: str = "rgb", depth: np.ndarray | None = None,
              intrinsics: np.ndarray | None = None, intrinsics_size: tuple[int, int] | None = None,
              tag: Any = None) -> FrameInference:
        """The model's part of `process` (arguments as there): one image encoding for the frame's
        labels and the referring query's, label maps decided on the device. One thread at a time
        (the one that owns the model); `finish` may run on another, overlapping the next frame.
        tag: anything identifying the frame (the node: its header), returned by `refer`."""
        t0 = time.perf_counter()
        depth_m = self.align_depth(image.shape[:2], depth, intrinsics, intrinsics_size)
        t1 = time.perf_counter()
        inference = self.infer_batch([image], [color_order], [depth_m], [tag])[0]
        if depth_m is not None:
            inference.timings["depth"] = (t1 - t0) * 1e3
        return inference

    def align_depth(self, shape: tuple[int, int], depth: np.ndarray | None, intrinsics: np.ndarray | None,
                    intrinsics_size: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """Depth registered to an image of `shape` (H, W) -> (metres at `shape`, K there), None
        without depth; `DepthError` for depth that cannot be used (arguments as `process`)."""
        if depth is None:
            return None
        if intrinsics is None:
            raise DepthError("depth needs the depth camera's intrinsics (3x3 K)")
        encoding = "16UC1" if depth.dtype == np.uint16 else "32FC1"
        try:
            return aligned_depth(depth, encoding, np.asarray(intrinsics).ravel(), intrinsics_size or depth.shape[:2],
                                 shape)
        except ValueError as exc:
            raise DepthError(f"depth image unusable: {exc}") from exc

    def infer_batch(self, images: Sequence[np.ndarray], color_orders: Sequence[str],
                    depths_m: Sequence[tuple[np.ndarray, np.ndarray] | None], tags: Sequence[Any]
                    ) -> list[FrameInference]:
        """`infer` for frames of one size (several cameras' newest frames) in one batched model
        pass, with the same label set, settings and referring query; depth already aligned
        (`align_depth`). One `FrameInference` per frame, each `finish`ed on its own."""
        state = self._state
        if state.labels is None:
            raise RuntimeError("no label set: call set_labels(...) first")
        active, s = state.labels, state.settings
        try:
            query, query_error = self._query_for(state), None
        except ValueError as exc:  # e.g. a full label set leaves no room for the query's phrase
            query, query_error = None, f"referring expression {state.expression!r} not answered: {exc}"
        pooling = ((s.mask_pooling or s.region_embeddings) and self.segmenter.scales is None
                   and self.segmenter.supports_features)
        sets = [active.prepared] + ([query.prepared] if query is not None and query.prepared is not None else [])
        batch = self.segmenter.segment_sets_batch(images, sets, color_orders, return_features=pooling)
        return [FrameInference(image, order, active, s, query, results, depth_m, dict(results[0].timings_ms), tag,
                               query_error)
                for image, order, depth_m, tag, results in zip(images, color_orders, depths_m, tags, batch)]

    def finish(self, frame: FrameInference, tracks: "Tracks | None" = None, overlay: bool = True,
               regions: bool = True) -> FrameResult:
        """Everything after the model (`process` does both): regions, instances, tracking, 3D,
        panoptic ids, the cloud, the referring answer and the overlay. One thread at a time, in
        frame order (tracking). tracks: the camera's own track state when one pipeline serves
        several cameras (default: the pipeline's). overlay: False leaves the overlay (with the
        settings' `overlay`) to `add_overlay`, so that a caller can send what robots read first.
        regions: False when nothing will read them (the node: no subscriber of an output that
        carries them): the frame then has no regions, track ids, panoptic ids, cloud or referring
        answer (`FrameResult.regions_skipped`); its label map, confidence, traversable mask,
        obstacles and aligned points are the same. Ignored with mask pooling (it repaints the label
        map); `refer` still answers on such a frame (its regions are computed then)."""
        active, s, depth_m, result = frame.labels, frame.settings, frame.depth_m, frame.results[0]
        pooling = result.pixel_features is not None and s.mask_pooling
        embeddings = result.pixel_features is not None and s.region_embeddings
        skip = not regions and not pooling
        t1 = time.perf_counter()
        if skip:  # the label map only (one max pass over it): what the masks and 3D outputs read
            objects = frame_objects(result.label_map, result.confidence, active.labels, active.spec.stuff,
                                    max_regions=0)
        else:
            objects = self._objects(result.label_map, result.confidence, active, s, depth_m,
                                    pixel_features=result.pixel_features if pooling or embeddings else None,
                                    text_features=result.text_features if pooling else None, embeddings=embeddings)
            self._track(objects, s, active.id, tracks or self._tracks)
        t2 = time.perf_counter()
        out = FrameResult(active, result.label_map, result.confidence, objects, frame.timings,
                          has_depth=depth_m is not None, referring_error=frame.query_error, regions_skipped=skip)
        if s.panoptic and not skip:
            out.panoptic = objects.panoptic()
        if embeddings:
            out.label_embeddings = np.asarray(result.text_features, np.float32)
        if s.cloud and depth_m is not None and not skip:
            out.cloud = labelled_points(objects, depth_m[0], depth_m[1], s.cloud_stride)
        if s.aligned_points and depth_m is not None:
            out.aligned_points = organised_points(*depth_m)
        if s.traversable:
            ids, count = self._traversable_ids(active, s.traversable), len(active.labels)
            out.traversable = traversable_mask(objects.label_map, ids, count)
            if s.obstacles and depth_m is not None:
                out.obstacles = obstacle_points(objects.label_map, ids, count, depth_m[0], depth_m[1],
                                                s.obstacle_stride, *s.obstacle_range)
        t3 = time.perf_counter()
        if frame.query is not None and not skip:
            ref_result = frame.results[1] if len(frame.results) > 1 else None
            out.referring = self._answer(frame.query, ref_result, objects.regions, depth_m, s, active.labels,
                                         result.label_map.shape)
        t4 = time.perf_counter()
        out.timings_ms["regions"] = (t2 - t1) * 1e3
        if depth_m is not None:  # aligning the depth image, the cloud
            out.timings_ms["depth"] = out.timings_ms.get("depth", 0.0) + (t3 - t2) * 1e3
        if frame.query is not None and not skip:
            out.timings_ms["referring"] = (t4 - t3) * 1e3
        self._last = _LastFrame(frame.image, frame.color_order, active, None if skip else objects.regions, depth_m,
                                frame.tag, result.label_map, result.confidence)
        if overlay:
            self.add_overlay(frame, out)
        return out

    def add_overlay(self, frame: FrameInference, result: FrameResult) -> None:
        """The frame's overlay (label colours over the image, a legend) into `result.overlay`, and
        its time into `result.timings_ms["overlay"]`, when the frame's settings ask for one:
        `finish` does it unless told not to (the node draws it after the frame's other messages)."""
        s = frame.settings
        if not s.overlay:
            return
        t0 = time.perf_counter()
        result.overlay = render_overlay(to_rgb(frame.image, frame.color_order), result.objects.label_map,
                                        result.labels.labels, alpha=s.overlay_alpha, colors=result.labels.palette)
        result.timings_ms["overlay"] = (time.perf_counter() - t0) * 1e3

    def _traversable_ids(self, active: ActiveLabels, traversable: tuple[str, ...]) -> np.ndarray:
        """The traversable label indices of `active`, computed once per label set and list."""
        key = (active.id, traversable)
        cached = self._traversable
        if cached is None or cached[0] != key:
            cached = self._traversable = (key, traversable_indices(active.labels, traversable))
        return cached[1]

    def refer(self, expression: str) -> ReferringAnswer:
        """Answer one expression on the latest processed frame (the active expression unchanged).

        Raises ValueError for an expression the policy refuses, RuntimeError before any frame."""
        last = self._last
        if last is None:
            raise RuntimeError("no frame has been processed yet")
        text, query = read_expression(expression)
        if query is None:
            raise ValueError("empty referring expression")
        query = self._resolved(query, self.settings, last.labels.labels)
        labels = query_labels(query, last.labels.labels, self._query_vocabulary(self.settings))
        result = None
        if labels != last.labels.labels:
            result = self.segmenter.segment(last.image, last.color_order, labels)
        active = ActiveQuery(text, query, last.labels.id, None, self.settings.referring_vocabulary)
        regions = last.regions
        if regions is None:  # finished without regions: computed now, as `finish` would have
            regions = last.regions = self._objects(last.label_map, last.confidence, last.labels, self.settings,
                                                   last.depth).regions
        answer = self._answer(active, result, regions, last.depth, self.settings, last.labels.labels,
                              last.image.shape[:2])
        return replace(answer, tag=last.tag)

    # -- internals ---------------------------------------------------------------------------------
    def _objects(self, label_map: np.ndarray, confidence: np.ndarray, active: ActiveLabels, s: PipelineSettings,
                 depth_m: tuple[np.ndarray, np.ndarray] | None, **pooling: Any) -> FrameObjects:
        """A frame's regions with the settings' rules (`frame_objects`), with 3D values when
        `depth_m` is given; `pooling`: frame_objects' pixel_features / text_features / embeddings."""
        objects = frame_objects(label_map, confidence, active.labels, active.spec.stuff, min_area=s.min_region_area,
                                max_regions=s.max_regions, split=s.instances, split_depth=s.split_depth, **pooling)
        if depth_m is not None:
            add_geometry(objects, *depth_m)
        return objects

    def _query_for(self, state: _State) -> ActiveQuery | None:
        """The active expression prepared for the active label set (re-prepared when either changed)."""
        if state.query is None or state.labels is None:
            return None
        cached, vocabulary = self._active_query, state.settings.referring_vocabulary
        if (cached is not None and cached.expression == state.expression and cached.label_set_id == state.labels.id
                and cached.vocabulary == vocabulary):
            return cached
        query = self._resolved(state.query, state.settings, state.labels.labels)
        labels = query_labels(query, state.labels.labels, self._query_vocabulary(state.settings))
        prepared = None if labels == state.labels.labels else self.segmenter.prepare(labels)
        self._active_query = ActiveQuery(state.expression, query, state.labels.id, prepared, vocabulary)
        return self._active_query

    def _resolved(self, query: ReferringQuery, s: PipelineSettings, labels: tuple[str, ...]) -> ReferringQuery:
        """With `referring_vocabulary`, near-synonyms of the labels and the vocabulary read as those
        labels ("the person" -> "pedestrian") when the model's vocabulary is its training names."""
        if not s.referring_vocabulary:
            return query
        known = {label.lower() for label in labels}
        context = list(labels) + [v for v in self._query_vocabulary(s) if v.lower() not in known]
        return ZeroShotReferrer(self.segmenter).resolve(query, context)[0]

    def _query_vocabulary(self, s: PipelineSettings) -> tuple[str, ...]:
        """The model's context vocabulary when `referring_vocabulary` is on (looked up once), else ()."""
        if not s.referring_vocabulary:
            return ()
        if self._vocabulary is None:
            self._vocabulary = model_vocabulary(self.segmenter)
        return self._vocabulary

    def _answer(self, query: ActiveQuery, ref_result: Any, regions: list[FrameRegion],
                depth_m: tuple[np.ndarray, np.ndarray] | None, s: PipelineSettings, labels: tuple[str, ...],
                shape: tuple[int, int]) -> ReferringAnswer:
        """The referrer's answer, on its own segmentation when the query added labels, else on the
        frame's regions (`labels` of `shape`); the chosen object linked to the frame region it
        overlaps most, with 3D values when depth is known."""
        # Candidates are split like the frame's regions (`instances`, `split_depth`).
        referrer = ZeroShotReferrer(self.segmenter, s.referring_min_score, s.referring_min_area_fraction,
                                    s.referring_relative_area, split=s.instances, split_depth=s.split_depth,
                                    pixel_threshold=s.referring_pixel_threshold)
        depth = depth_m[0] if depth_m is not None else None
        if ref_result is not None:
            answer = referrer.answer(query.query, ref_result, depth)
        else:
            answer = referrer.answer_regions(query.query, [r.region for r in regions], labels, shape, depth)
        if not answer.found or answer.region is None:
            return ReferringAnswer(query.expression, query.query, answer, None)
        linked = best_overlap(answer.region, regions)
        chosen = FrameRegion(replace(answer.region, id=linked.region.id if linked else 0))
        if linked is not None:
            chosen.is_stuff, chosen.instance = linked.is_stuff, linked.instance
            chosen.panoptic_id, chosen.track_id = linked.panoptic_id, linked.track_id
        if depth_m is not None:  # with its points: a grasp planner takes the object's cloud
            chosen.geometry = region_3d(answer.region.bbox, answer.region.mask, *depth_m, keep_points=True)
        return ReferringAnswer(query.expression, query.query, answer, chosen)

    def _track(self, objects: FrameObjects, s: PipelineSettings, label_set_id: int, tracks: "Tracks") -> None:
        """Track ids. The tracker lives as long as its `Tracks`, so ids are never reused; it forgets
        its tracks when tracking was off and when the label set changed."""
        if not s.tracking:
            tracks.label_set = None
            return
        if tracks.tracker is None:
            tracks.tracker = IoUTracker(s.tracking_iou, s.tracking_max_missed)
        tracker = tracks.tracker
        tracker.iou_threshold, tracker.max_missed = float(s.tracking_iou), int(s.tracking_max_missed)
        if tracks.label_set != label_set_id:
            tracker.reset()
            tracks.label_set = label_set_id
        for region, track_id in zip(objects.regions, tracker.update([r.region for r in objects.regions])):
            region.track_id = int(track_id)


@dataclass
class Tracks:
    """One camera's track state: its IoU tracker and the label set it tracks (`FramePipeline.finish`)."""

    tracker: IoUTracker | None = None
    label_set: int | None = None
