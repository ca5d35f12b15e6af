"""One frame's object-level regions for the node: instances, stuff, panoptic ids, 3D, cloud points.

Pure numpy (no rclpy): it composes the core modules and leaves message building to
`messages.py`.

- `frame_objects` turns a label map into regions: connected components per label
  (`regions.extract_regions`, the per-frame fast path), or watershed-split instances
  (`instances.split_instances_with_stats`); a "stuff" label gives one region (all its pixels); optionally
  each region is re-classified by mask pooling of the pixel embeddings
  (`classify_by_mask_pooling`, after PADing, arXiv 2306.11087), in which case the label map is
  repainted with the region labels. Regions are sorted and numbered as `extract_regions`
  numbers them (label, then decreasing area); the region map is built only when asked for.
- panoptic ids follow `lang_seg_ros.panoptic` (id = (label + 1) * 1000 + instance).
- `aligned_depth` brings a registered depth image and its intrinsics to the label map's size;
  `add_geometry` gives each region its `Region3D` (`lang_seg_ros.geometry.region_3d`);
  `labelled_points` gives the labelled point cloud.

Coordinates: pixels of the label map (x right, y down); 3D in the depth camera's optical frame,
metres (x right, y down, z forward).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Collection, Sequence

import cv2
import numpy as np
from scipy import ndimage

from .geometry import Region3D, back_project, depth_to_metres, intrinsics_problem, region_3d, scale_intrinsics
from .instances import split_instances_with_stats
from .panoptic import encode_panoptic, panoptic_ids_of
from .regions import Region, extract_regions, mask_centroid
from .tracking import mask_iou

__all__ = ["FrameObjects", "FrameRegion", "add_geometry", "aligned_depth", "best_overlap", "frame_objects",
           "labelled_points"]


@dataclass(eq=False)
class FrameRegion:
    """A region of one frame with what the node adds to the core `Region`.

    region: the pixels, label, score, box, centroid (its `id` is 1-based in the frame's list).
    is_stuff: the label is a stuff label (one region per label).
    instance: 0 for stuff, k for the k-th region of a thing label in the list.
    panoptic_id: (label_index + 1) * 1000 + instance.
    track_id: stable id across frames (0 = not tracked).
    geometry: 3D summary in the depth camera's optical frame, or None.
    embedding: (C,) float32 L2-normalised mean pixel embedding of the region, or None (see
        `frame_objects(embeddings=True)`): comparable with label embeddings by a dot product.
    """

    region: Region
    is_stuff: bool = False
    instance: int = 0
    panoptic_id: int = 0
    track_id: int = 0
    geometry: Region3D | None = None
    embedding: np.ndarray | None = None


@dataclass
class FrameObjects:
    """label_map: (H, W) int32 label indices (-1 none), repainted with the region labels after
    mask pooling; regions: numbered 1.. in list order; stuff: the stuff label indices of this
    frame; `region_map`: (H, W) int32, 0 = no region, i = `regions[i - 1]` (built on first use:
    most frames never need it)."""

    label_map: np.ndarray
    regions: list[FrameRegion]
    stuff: frozenset[int] = field(default_factory=frozenset)
    pooled: bool = False  # labels and scores come from mask pooling
    _region_map: np.ndarray | None = field(default=None, repr=False)

    @property
    def region_map(self) -> np.ndarray:
        if self._region_map is None:
            region_map = np.zeros(self.label_map.shape, np.int32)
            for i, r in enumerate(self.regions, start=1):
                x0, y0, x1, y1 = r.region.bbox
                np.copyto(region_map[y0:y1, x0:x1], np.int32(i), where=r.region.mask)
            self._region_map = region_map
        return self._region_map

    def panoptic(self) -> np.ndarray:
        """(H, W) int32 panoptic ids (0 = void), exactly the regions' `panoptic_id`s on their pixels."""
        labels = np.asarray([-1] + [r.region.label_index for r in self.regions], np.int32)
        return encode_panoptic(self.region_map, labels, self.stuff)


def _merge_stuff(instance_map: np.ndarray, instance_labels: np.ndarray, stuff: Collection[int]) -> np.ndarray:
    """In place: all instances of one stuff label become its first instance; returns the map
    old instance index -> new one."""
    first: dict[int, int] = {}
    lut = np.arange(len(instance_labels), dtype=np.int32)
    for index in range(1, len(instance_labels)):
        label = int(instance_labels[index])
        if label in stuff:
            lut[index] = first.setdefault(label, index)
    if (lut != np.arange(len(lut))).any():
        instance_map[...] = lut[instance_map]
    return lut


def frame_objects(
    label_map: np.ndarray,
    confidence: np.ndarray,
    labels: Sequence[str],
    stuff: Collection[int] = (),
    min_area: int = 1,
    max_regions: int | None = None,
    split: bool = False,
    split_depth: float = 0.3,
    pixel_features: np.ndarray | None = None,
    text_features: np.ndarray | None = None,
    embeddings: bool = False,
) -> FrameObjects:
    """The regions of one frame.

    Args:
        label_map: (H, W) int label indices into `labels`, negative = no label.
        confidence: (H, W) float probability of each pixel's label (the score without pooling).
        stuff: label indices that are stuff (one region per label, never split).
        min_area: smaller regions are dropped (with `split`: merged into a touching instance of
            the same label first).
        max_regions: keep the largest this many (None: all).
        split: watershed-split touching things (else connected components).
        pixel_features, text_features: (C, h, w) and (N, C) embeddings of this frame (from
            `Segmenter.segment(..., return_features=True)`): when both are given, every region
            is classified by mask pooling and its label and score are the pooled ones.
        embeddings: with `pixel_features`, give every region its pooled pixel embedding (over the
            region's final pixels, after pooling relabelled and merged them).
    """
    label_map = np.asarray(label_map)
    pooling = pixel_features is not None and text_features is not None
    if pooling or label_map.dtype != np.int32 or (label_map.size and int(label_map.max()) >= len(labels)):
        label_map = label_map.astype(np.int32, copy=True)  # pooling repaints it
        label_map[label_map >= len(labels)] = -1
    stuff = frozenset(int(s) for s in stuff)
    min_area = max(1, int(min_area))
    if max_regions is not None and max_regions <= 0:  # regions off: nothing to extract
        return FrameObjects(label_map, [], stuff)  # its region map (zeros) only if asked for
    if not split and not pooling:  # plain connected components (stuff: one region per label)
        regions = [FrameRegion(r, is_stuff=r.label_index in stuff)
                   for r in extract_regions(label_map, confidence, labels, min_area, max_regions=max_regions,
                                            stuff=stuff)]
        objects = FrameObjects(label_map, regions, stuff)
        _number_panoptic(objects.regions, stuff)
        if embeddings and pixel_features is not None and regions:
            _add_embeddings(objects, pixel_features)
        return objects
    instances = split_instances_with_stats(label_map, stuff, min_area, split_depth, split=split)
    instance_map, instance_labels = instances.instance_map, instances.labels
    count = len(instance_labels) - 1
    pooled = pixel_features is not None and text_features is not None and count > 0
    if pooled:
        from .instances import classify_by_mask_pooling

        new_labels, pooled_scores = classify_by_mask_pooling(instance_map, pixel_features, text_features)
        valid = new_labels[1:] >= 0
        instance_labels[1:][valid] = new_labels[1:][valid]
        inside = instance_map > 0
        label_map[inside] = instance_labels[instance_map[inside]]
        part_scores = pooled_scores * np.bincount(instance_map.ravel(), minlength=count + 1)
        # regions relabelled to a stuff label join it; the score is the area-weighted mean of the parts'
        merged = _merge_stuff(instance_map, instance_labels, stuff)
        score_sums = np.bincount(merged, weights=part_scores, minlength=count + 1)

    # Per instance inside its box (vectorised OpenCV passes over the box, none over the frame):
    # its mask and, without pooling, the mean confidence; box, area and centroid come with the
    # split, or after pooling (which merges instances) from the mask.
    slices = ndimage.find_objects(instance_map, max_label=count) if pooled else instances.boxes[1:]
    confidence = None if pooled else np.asarray(confidence, np.float32)
    found = []
    for index in range(1, count + 1):
        if slices[index - 1] is None:
            continue
        rows, cols = slices[index - 1]
        mask = instance_map[rows, cols] == index
        x0, y0, x1, y1 = cols.start, rows.start, cols.stop, rows.stop
        if pooled:
            area, cx, cy = mask_centroid(mask)
            centroid = (x0 + cx, y0 + cy)
        else:
            area, centroid = int(instances.areas[index]), instances.centroids[index]
        if area < min_area:
            continue
        score = (score_sums[index] / area if pooled
                 else cv2.mean(confidence[rows, cols], mask.view(np.uint8))[0])
        found.append((int(instance_labels[index]), -area, y0, x0, x1, y1, index, score, centroid, mask))
    if max_regions is not None and len(found) > max_regions:
        found = sorted(found, key=lambda f: (f[1], f[0], f[2], f[3]))[:max(0, int(max_regions))]
    found.sort(key=lambda f: (f[0], f[1], f[2], f[3]))

    regions = []
    for new_id, (label, neg_area, y0, x0, x1, y1, _, score, centroid, mask) in enumerate(found, start=1):
        region = Region(id=new_id, label=labels[label], label_index=label, score=float(min(1.0, max(0.0, score))),
                        bbox=(x0, y0, x1, y1), centroid=(float(centroid[0]), float(centroid[1])), area=-neg_area,
                        mask=mask)
        regions.append(FrameRegion(region, is_stuff=label in stuff))
    _number_panoptic(regions, stuff)
    objects = FrameObjects(label_map, regions, stuff, pooled)
    if embeddings and pixel_features is not None and regions:
        _add_embeddings(objects, pixel_features)
    return objects


def _number_panoptic(regions: list[FrameRegion], stuff: frozenset[int]) -> None:
    """In place: each region's panoptic id and instance number (`panoptic.panoptic_ids_of`)."""
    region_labels = np.asarray([-1] + [r.region.label_index for r in regions], np.int32)
    panoptic_ids = panoptic_ids_of(region_labels, stuff)
    for i, r in enumerate(regions, start=1):
        r.panoptic_id = int(panoptic_ids[i])
        r.instance = int(panoptic_ids[i]) % 1000


def _add_embeddings(objects: FrameObjects, pixel_features: np.ndarray) -> None:
    """In place: each region's pooled pixel embedding (over its final pixels)."""
    from .instances import pool_embeddings

    index, vectors = pool_embeddings(objects.region_map, pixel_features)
    for i, vector in zip(index, vectors):
        objects.regions[i - 1].embedding = vector


def aligned_depth(depth: np.ndarray, encoding: str, k: Sequence[float], k_shape: tuple[int, int],
                  shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A depth image registered to the colour image -> (metres at `shape`, K at `shape`).

    depth: (h, w) 16UC1/mono16 millimetres or 32FC1 metres; k: its 3x3 intrinsics (row-major 9
    values) for an image of `k_shape` (H, W); shape: the label map's (H, W). The depth is resized
    with nearest-neighbour sampling (pixel centres to pixel centres, as `scale_intrinsics`).
    Raises ValueError for an unknown encoding, a different aspect ratio (not registered to the
    colour image) or unusable intrinsics (`geometry.intrinsics_problem`: checked for `k_shape`,
    then once more as scaled to `shape`, the intrinsics the 3D values are computed with).
    Depth beyond `geometry.MAX_DEPTH_M` is invalid (NaN), as 0 and inf are.
    """
    k = np.asarray(k, np.float64).ravel()
    problem = intrinsics_problem(k, k_shape)
    if problem is None:  # the scaled K is finite: cx, cy, fx, fy are bounded by the size it is for
        k = scale_intrinsics(k.reshape(3, 3), k_shape, shape)
        problem = intrinsics_problem(k, shape)
        if problem is not None:
            problem += f" (scaled from the {k_shape[1]}x{k_shape[0]} image it is for)"
    if problem is not None:
        raise ValueError(problem)
    metres = depth_to_metres(depth, encoding)
    h, w = metres.shape[:2]
    if abs(w * shape[0] - h * shape[1]) > 0.01 * h * shape[1]:
        raise ValueError(f"depth image {w}x{h} and colour image {shape[1]}x{shape[0]} differ in aspect ratio: "
                         "the depth must be registered to the colour image")
    if (h, w) != tuple(shape):
        metres = cv2.resize(metres, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST_EXACT)
    return metres, k


def add_geometry(objects: FrameObjects, depth_m: np.ndarray, k: np.ndarray) -> None:
    """In place: each region's 3D summary from `depth_m` (metres, the label map's size) and K."""
    for r in objects.regions:
        r.geometry = region_3d(r.region.bbox, r.region.mask, depth_m, k)


def labelled_points(objects: FrameObjects, depth_m: np.ndarray, k: np.ndarray,
                    stride: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every `stride`-th pixel (in x and y) with a label and a valid depth, as 3D points.

    Returns points (N, 3) float32 metres (optical frame), labels (N,) uint32 (label index) and
    instances (N,) uint32 (the id of the region holding the pixel, 0 = none), in row-major order.
    """
    sub = (slice(None, None, stride), slice(None, None, stride))
    labels = objects.label_map[sub]
    depth = depth_m[sub]
    valid = (labels >= 0) & np.isfinite(depth)
    rows, cols = np.nonzero(valid)
    points = back_project(cols * stride, rows * stride, depth[rows, cols].astype(np.float64), k)
    return (points.astype(np.float32), labels[rows, cols].astype(np.uint32),
            objects.region_map[sub][rows, cols].astype(np.uint32))


def best_overlap(region: Region, candidates: Sequence[FrameRegion], min_iou: float = 0.5) -> FrameRegion | None:
    """The candidate whose mask overlaps `region` most (IoU >= min_iou, any label), or None."""
    best, best_iou = None, min_iou
    for candidate in candidates:
        iou = mask_iou(region, candidate.region)
        if iou >= best_iou:
            best, best_iou = candidate, iou
    return best
