"""Object-level regions in the spirit of PADing (He et al., "Primitive Generation and
Semantic-related Alignment for Universal Zero-shot Segmentation", CVPR 2023, arXiv 2306.11087):
class-agnostic masks first, then one classification per mask.

- `split_instances`: a label map -> instance masks. "Stuff" labels (floor, sky) give one region
  each; "thing" labels are split into objects by a distance-transform watershed, so two touching
  chairs become two regions, and fragments smaller than `min_area` are merged into the
  neighbouring instance of the same label (or dropped when isolated);
  `split_instances_with_stats` also gives each instance's box, area and centroid.
- `classify_by_mask_pooling`: each mask's pixel embeddings are averaged, re-normalised and
  correlated with the label embeddings, so a region's label and score come from the whole
  object instead of pixel votes.

Both work in a few whole-frame passes instead of one pass per label or per instance (on one
core, a 480x640 CamVid frame splits in about 5-13 ms and pools 512-d features in about 15 ms; see
bench/bench_objects.py): components of every label come from one labelling per label box, the
watershed seeds of all thing components from a handful of level-set labellings of the frame, and
the pooling from one matrix product per band of feature cells.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Collection, NamedTuple

import cv2
import numpy as np
from scipy import ndimage
from skimage.segmentation import watershed

from .regions import binary_components, compact_labels, label_masks, mask_centroid


_KERNEL = np.ones((3, 3), np.uint8)
# Distances are cv2 chamfer distances (DIST_L2, 5x5 mask): float32 sums of 1, 1.4 and 2.1969, so
# two distances closer than _TOL are the same distance; _EPS covers float rounding of thresholds.
_TOL = 1e-3
_EPS = 1e-4
# At most this many level sets per thing component decide its seeds (more only for close calls).
_LADDER_STEPS = 8


class _Components(NamedTuple):
    """Connected components of a label map: `ids` (H, W) int32, 0 = no label, 1..n; per component
    (index 0 unused) its label, area in pixels, bounding box and whether it is a stuff label."""

    ids: np.ndarray
    labels: np.ndarray
    areas: np.ndarray
    boxes: list
    is_stuff: np.ndarray
    label_boxes: list  # per label index its bounding box (a pair of slices), None where absent
    centroids: np.ndarray  # (n + 1, 2) float64 (x, y) in the frame's pixels


def _components(compact: np.ndarray, counts: np.ndarray, stuff: set[int]) -> _Components:
    """Components of `compact` with its `counts` (`regions.compact_labels`): a stuff label is one
    component (all its pixels), a thing label one per 8-connected piece.

    Each label is found and bounded by `regions.label_masks` and labelled inside its box with
    OpenCV's statistics: areas and boxes come with the labelling, not from `np.bincount` /
    `find_objects` passes over an int32 frame.
    """
    ids = np.zeros(compact.shape, np.int32)
    labels, is_stuff, areas, boxes = [-1], [False], [int(compact.size - counts.sum())], []
    centroids = [np.zeros((1, 2))]
    label_boxes: list = [None] * len(counts)
    for label, (x, y, w, h), mask in label_masks(compact, np.flatnonzero(counts).tolist()):
        box = (slice(y, y + h), slice(x, x + w))
        label_boxes[label] = box
        if label in stuff:
            np.copyto(ids[box], len(labels), where=mask.view(bool))
            _, cx, cy = mask_centroid(mask)
            labels.append(label)
            is_stuff.append(True)
            areas.append(int(counts[label]))
            boxes.append(box)
            centroids.append([[x + cx, y + cy]])
            continue
        count, pieces, stats, piece_centroids = binary_components(mask)
        np.add(pieces, len(labels) - 1, out=ids[box], where=mask.view(bool), dtype=np.int32)
        for px, py, pw, ph, area in stats[1:].tolist():
            boxes.append((slice(y + py, y + py + ph), slice(x + px, x + px + pw)))
            areas.append(area)
        centroids.append(piece_centroids[1:] + (x, y))
        labels.extend([label] * (count - 1))
        is_stuff.extend([False] * (count - 1))
    return _Components(ids, np.asarray(labels, np.int64), np.asarray(areas, np.int64), boxes,
                       np.asarray(is_stuff, bool), label_boxes, np.concatenate(centroids))


def _distances(compact: np.ndarray, label_boxes: list, thing_labels: list[int]) -> np.ndarray:
    """(H, W) float32: each thing pixel's chamfer distance to the nearest pixel of another label
    (image borders are not edges), 0 elsewhere.

    Within a label this is the distance to the nearest pixel outside the pixel's own component:
    components of one label never touch, so any pixel just outside a component has another label.
    One transform per label box (plus a one-pixel margin) serves all components of that label.
    """
    height, width = compact.shape
    dist = np.zeros(compact.shape, np.float32)
    for label in thing_labels:
        rows, cols = label_boxes[label]
        box = (slice(max(0, rows.start - 1), min(height, rows.stop + 1)),
               slice(max(0, cols.start - 1), min(width, cols.stop + 1)))
        mask = compact[box] == label
        np.copyto(dist[box], cv2.distanceTransform(mask.view(np.uint8), cv2.DIST_L2, 5), where=mask)
    return dist


class _Peaks(NamedTuple):
    """Candidate seeds: plateaus of local maxima of the distance map. Per candidate pixel its
    (y, x) and plateau index; per plateau its component, distance value and one pixel."""

    ys: np.ndarray
    xs: np.ndarray
    plateau_of_pixel: np.ndarray
    component: np.ndarray
    value: np.ndarray
    rep_y: np.ndarray
    rep_x: np.ndarray


def _peaks(dist: np.ndarray, comps: _Components, analysed: np.ndarray,
           split_depth: float) -> tuple[_Peaks, np.ndarray, np.ndarray]:
    """Local-maximum plateaus that may seed a watershed, the largest distance per component and h.

    A plateau of value p can only be a seed if it stays apart from higher ground down to p - h;
    every pixel of a component is at distance >= 1, so that needs p >= 1 + h (h >= 1, hence p >= 2,
    where a pixel's 3x3 neighbourhood is inside its own component and one whole-frame dilation
    finds the same local maxima as a per-component one). The largest distance of a component is
    at one of its local maxima, so it comes from the same pixels.
    """
    ids = comps.ids
    local_max = (cv2.dilate(dist, _KERNEL) == dist) & (dist >= 2.0 - _TOL)
    ys, xs = np.nonzero(local_max)
    owner = ids[ys, xs]
    values = dist[ys, xs]
    keep = analysed[owner]
    ys, xs, owner, values = ys[keep], xs[keep], owner[keep], values[keep]
    gmax = np.zeros(len(comps.labels), np.float64)
    np.maximum.at(gmax, owner, values)
    h = np.maximum(1.0, split_depth * gmax)
    keep = values >= 1.0 + h[owner] - _TOL
    ys, xs, owner, values = ys[keep], xs[keep], owner[keep], values[keep]
    # Adjacent local maxima have equal values, so 8-connected candidate pixels form plateaus.
    image = np.zeros(ids.shape, np.uint8)
    image[ys, xs] = 1
    count, plateaus = cv2.connectedComponents(image, connectivity=8, ltype=cv2.CV_32S)
    plateau_of_pixel = plateaus[ys, xs] - 1
    component = np.zeros(count - 1, np.int64)
    value = np.zeros(count - 1, np.float64)
    rep_y = np.zeros(count - 1, np.intp)
    rep_x = np.zeros(count - 1, np.intp)
    component[plateau_of_pixel] = owner
    value[plateau_of_pixel] = values
    rep_y[plateau_of_pixel] = ys
    rep_x[plateau_of_pixel] = xs
    return _Peaks(ys, xs, plateau_of_pixel, component, value, rep_y, rep_x), gmax, h


def _labels_at(mask: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """The 8-connected component of `mask` (bool, (H, W)) at each (y, x); 0 outside the mask."""
    _, labelled = cv2.connectedComponents(mask.view(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    return labelled[ys, xs]


def _verdicts(region: np.ndarray, quantised: np.ndarray, among: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each peak (region = its level-set component, quantised = its value): is a higher peak in
    the same region, and is it the only peak of its value there. `among` marks the peaks that count.
    """
    inside = among & (region > 0)
    highest = np.full(int(region.max(initial=0)) + 1, -1, np.int64)
    np.maximum.at(highest, region[inside], quantised[inside])
    higher = highest[region] > quantised
    key = region.astype(np.int64) * (int(quantised.max(initial=0)) + 1) + quantised
    _, inverse, counts = np.unique(np.where(inside, key, -1 - np.arange(len(key))),
                                   return_inverse=True, return_counts=True)
    return higher, counts[inverse] == 1


def _seed_groups(dist: np.ndarray, comps: _Components, peaks: _Peaks, gmax: np.ndarray,
                 h: np.ndarray) -> np.ndarray:
    """Seed group of every plateau: > 0 for seeds (plateaus of one component with the same id seed
    one region), 0 for the rest.

    A plateau of value p is a seed when no higher pixel of its component can be reached without
    going down to p - h or lower (its dynamic is at least h, as in an h-maxima transform); seeds of
    equal value that meet above p - h are one group. Instead of a morphological reconstruction,
    this is read off level sets {dist > t}: if at some t >= p - h the plateau's piece holds a higher
    peak, it is not a seed; if at some t <= p - h its piece holds no higher peak and no equal one,
    it is a seed of its own. A ladder of a few levels per component (all components in one frame
    labelling per level: level sets above distance 1 never join two components) decides nearly
    every plateau; the rest are settled on their component's box at their exact level.
    """
    n_plateaus = len(peaks.value)
    groups = np.zeros(n_plateaus, np.int64)
    per_component = np.bincount(peaks.component, minlength=len(comps.labels))
    # A single candidate plateau is the component's only seed: nothing to split.
    todo = per_component[peaks.component] >= 2
    if not todo.any():
        return groups
    c = peaks.component
    quantised = np.round(peaks.value / _TOL).astype(np.int64)
    level = np.maximum(quantised * _TOL - h[c] + _TOL, 1.0 + _TOL)  # each plateau's deciding level
    todo_components = np.unique(c[todo])
    step = np.maximum(h / 2, (gmax - h - 1.0) / _LADDER_STEPS)
    rounds = int(np.ceil(np.max((gmax[todo_components] - h[todo_components] - 1.0) / step[todo_components]))) + 1

    # z < r  <=>  dist > gmax - h - r * step, for the components in question only, above distance 1.
    rows = [comps.boxes[k - 1][0] for k in todo_components]
    cols = [comps.boxes[k - 1][1] for k in todo_components]
    area = (slice(min(r.start for r in rows), max(r.stop for r in rows)),
            slice(min(s.start for s in cols), max(s.stop for s in cols)))
    offset = np.full(len(comps.labels), np.inf, np.float32)
    scale = np.zeros(len(comps.labels), np.float32)
    offset[todo_components] = (gmax[todo_components] - h[todo_components]) / step[todo_components]
    scale[todo_components] = 1.0 / step[todo_components]
    ids, sub_dist = comps.ids[area], dist[area]
    z = offset[ids] - sub_dist * scale[ids]
    z[sub_dist <= 1.0 + _TOL] = np.inf
    rep_y, rep_x = peaks.rep_y[todo] - area[0].start, peaks.rep_x[todo] - area[1].start
    region = np.zeros(n_plateaus, np.int32)

    undecided = todo.copy()
    next_group = 1
    for r in range(rounds):
        threshold = np.maximum(gmax[c] - h[c] - r * step[c], 1.0 + _TOL)
        region[todo] = _labels_at(z < r, rep_y, rep_x)
        higher, alone = _verdicts(region, quantised, todo)
        rejected = undecided & (threshold >= level + _EPS) & higher
        accepted = undecided & (threshold + _EPS <= level) & ~higher & alone & (region > 0)
        groups[accepted] = np.arange(next_group, next_group + int(accepted.sum()))
        next_group += int(accepted.sum())
        undecided &= ~(rejected | accepted)
        if not undecided.any():
            break

    # Close calls: the exact level set, on the component's own box.
    for k in np.unique(c[undecided]).tolist():
        box = comps.boxes[k - 1]
        mine = c == k
        inside = comps.ids[box] == k
        for t in np.unique(level[undecided & mine]).tolist():
            region = np.zeros(n_plateaus, np.int32)
            region[mine] = _labels_at(inside & (dist[box] > t), peaks.rep_y[mine] - box[0].start,
                                      peaks.rep_x[mine] - box[1].start)
            higher, _ = _verdicts(region, quantised, mine)
            here = undecided & mine & (level == t)
            seeds = here & ~higher
            # Equal-valued seeds meeting in one piece form one group.
            _, first = np.unique(region[seeds] * (int(quantised.max()) + 1) + quantised[seeds], return_inverse=True)
            groups[seeds] = next_group + first
            next_group += int(first.max(initial=-1)) + 1
            undecided &= ~here
    return groups


def _merge_fragments(parts: np.ndarray, min_area: int) -> None:
    """In place, on the parts of one connected component: each part under `min_area` joins the
    part it shares the longest border with (most of its ring pixels), smallest first.

    Each fragment is handled on its own bounding box (plus one pixel), not the component's."""
    areas = np.bincount(parts.ravel())
    if areas[1:][areas[1:] > 0].min(initial=min_area) >= min_area:
        return
    boxes = ndimage.find_objects(parts)
    height, width = parts.shape
    for index in np.argsort(areas, kind="stable").tolist():
        if index == 0 or areas[index] == 0 or areas[index] >= min_area:
            continue
        rows, cols = boxes[index - 1]
        box = (slice(max(0, rows.start - 1), min(height, rows.stop + 1)),
               slice(max(0, cols.start - 1), min(width, cols.stop + 1)))
        local = parts[box]
        mask = local == index
        ring = cv2.dilate(mask.view(np.uint8), _KERNEL).view(bool) & ~mask
        neighbours = local[ring]
        neighbours = neighbours[neighbours > 0]
        if neighbours.size == 0:
            continue
        target = int(np.bincount(neighbours).argmax())
        local[mask] = target
        areas[target] += areas[index]
        areas[index] = 0
        t_rows, t_cols = boxes[target - 1]
        boxes[target - 1] = (slice(min(rows.start, t_rows.start), max(rows.stop, t_rows.stop)),
                             slice(min(cols.start, t_cols.start), max(cols.stop, t_cols.stop)))


def _raster_order(parts: np.ndarray) -> tuple[np.ndarray, list]:
    """The part ids > 0 of `parts` ordered by their first pixel, top to bottom then left to right,
    and each part's bounding box (`ndimage.find_objects`, index id - 1)."""
    boxes = ndimage.find_objects(parts)
    present = [(index, box) for index, box in enumerate(boxes, start=1) if box is not None]
    keys = [(box[0].start, box[1].start + int(np.argmax(parts[box[0].start, box[1]] == index)))
            for index, box in present]
    return np.asarray([present[i][0] for i in sorted(range(len(present)), key=keys.__getitem__)], np.int64), boxes


class Instances(NamedTuple):
    """`split_instances_with_stats`' answer. Per instance (index 0 unused): label, bounding box
    (a pair of slices, frame pixels), area (pixels) and centroid ((x, y), frame pixels)."""

    instance_map: np.ndarray  # (H, W) int32, 0 = no instance
    labels: np.ndarray  # (K + 1,) int32
    boxes: list  # K + 1 entries, the first None
    areas: np.ndarray  # (K + 1,) int64
    centroids: np.ndarray  # (K + 1, 2) float64


def split_instances(
    label_map: np.ndarray,
    stuff: Collection[int] = (),
    min_area: int = 1,
    split_depth: float = 0.3,
    split: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Class-agnostic instance masks from a label map: (instance_map, instance_labels) of
    `split_instances_with_stats` (which see)."""
    instances = split_instances_with_stats(label_map, stuff, min_area, split_depth, split)
    return instances.instance_map, instances.labels


def split_instances_with_stats(
    label_map: np.ndarray,
    stuff: Collection[int] = (),
    min_area: int = 1,
    split_depth: float = 0.3,
    split: bool = True,
) -> Instances:
    """Class-agnostic instance masks from a label map, with each instance's box, area and
    centroid (from the labelling's statistics where an instance is a whole component: no pass
    over the frame to find them again).

    Args:
        label_map: (H, W) ints; negative values (no label) belong to no instance.
        stuff: label indices that are "stuff": one region per label, never split.
        min_area: a connected component (or a stuff label) smaller than this is dropped;
            smaller parts of a split component join the neighbouring part.
        split_depth: in (0, 1]; lower splits touching objects more eagerly. A component is split
            at necks: its watershed seeds are the peaks of its distance transform that stand at
            least h = max(1, split_depth * largest distance) pixels above the pass to any higher
            peak (equal peaks meeting above that pass count as one).
        split: False keeps each connected component whole (plain connected components).

    Returns:
        `Instances`: instance_map (H, W) int32, 0 = no instance, 1..K the instances, numbered by
        label, then top to bottom; labels (K + 1,) int32, the label of each instance (index 0
        unused, -1); boxes, areas and centroids per instance.
    """
    label_map = np.asarray(label_map)
    if label_map.dtype.kind not in "iu":
        label_map = label_map.astype(np.int32)
    count = int(label_map.max()) + 1 if label_map.size else 0
    if count <= 0:
        return Instances(np.zeros(label_map.shape, np.int32), np.asarray([-1], np.int32), [None],
                         np.zeros(1, np.int64), np.zeros((1, 2)))
    compact, counts = compact_labels(label_map, count)
    stuff = set(int(s) for s in stuff)
    min_area = max(1, int(min_area))
    comps = _components(compact, counts, stuff)
    n = len(comps.labels) - 1
    kept = np.flatnonzero(comps.areas[1:] >= min_area) + 1
    # Numbering: by label; the components of a thing label by the top, then the left edge of their
    # box (a stuff label has one component).
    tops = np.asarray([-1 if comps.is_stuff[k] else comps.boxes[k - 1][0].start for k in kept], np.int64)
    lefts = np.asarray([-1 if comps.is_stuff[k] else comps.boxes[k - 1][1].start for k in kept], np.int64)
    kept = kept[np.lexsort((lefts, tops, comps.labels[kept]))]

    parts_of: dict[int, tuple[np.ndarray, np.ndarray, list]] = {}  # split component -> (part ids in order, parts, boxes)
    things = kept[~comps.is_stuff[kept]]
    if split and things.size:
        analysed = np.zeros(n + 1, bool)
        analysed[things] = True
        dist = _distances(compact, comps.label_boxes, sorted(set(comps.labels[things].tolist())))
        peaks, gmax, h = _peaks(dist, comps, analysed, split_depth)
        groups = _seed_groups(dist, comps, peaks, gmax, h)
        seeded = np.flatnonzero(groups > 0)
        _, first_plateau = np.unique(groups[seeded], return_index=True)
        per_component = np.bincount(peaks.component[seeded[first_plateau]], minlength=n + 1)
        pixel_group = groups[peaks.plateau_of_pixel]
        for k in np.flatnonzero(per_component >= 2).tolist():
            box = comps.boxes[k - 1]
            inside = comps.ids[box] == k
            markers = np.zeros(inside.shape, np.int32)
            mine = (peaks.component[peaks.plateau_of_pixel] == k) & (pixel_group > 0)
            # Seeds numbered in raster order of their first pixel (as labelling them would), so
            # ties in the fragment merging below do not depend on how the seeds were found.
            ys, xs = peaks.ys[mine] - box[0].start, peaks.xs[mine] - box[1].start
            raster = np.argsort(ys * inside.shape[1] + xs, kind="stable")
            ys, xs, group = ys[raster], xs[raster], pixel_group[mine][raster]
            _, first, inverse = np.unique(group, return_index=True, return_inverse=True)
            rank = np.empty(len(first), np.int32)
            rank[np.argsort(first)] = np.arange(1, len(first) + 1, dtype=np.int32)
            markers[ys, xs] = rank[inverse]
            # 8-connected flooding, so no pixel of the (8-connected) component is left unreached.
            parts = watershed(-dist[box], markers, mask=inside, connectivity=2).astype(np.int32)
            _merge_fragments(parts, min_area)
            order, part_boxes = _raster_order(parts)
            if len(order) > 1:
                parts_of[k] = (order, parts, part_boxes)

    counts = np.ones(len(kept), np.int64)
    for i, k in enumerate(kept.tolist()):
        if k in parts_of:
            counts[i] = len(parts_of[k][0])
    first = np.concatenate([[1], 1 + np.cumsum(counts)[:-1]]).astype(np.int32)
    lut = np.zeros(n + 1, np.int32)
    lut[kept] = first
    instance_map = lut[comps.ids]
    boxes: list = [None]
    areas, centroids = [np.zeros(1, np.int64)], [np.zeros((1, 2))]
    for i, k in enumerate(kept.tolist()):
        if k not in parts_of:  # a whole component: its labelling's statistics
            boxes.append(comps.boxes[k - 1])
            areas.append(comps.areas[k:k + 1])
            centroids.append(comps.centroids[k:k + 1])
            continue
        order, parts, part_boxes = parts_of[k]
        part_lut = np.zeros(int(parts.max()) + 1, np.int32)
        part_lut[order] = first[i] + np.arange(len(order), dtype=np.int32)
        box = comps.boxes[k - 1]
        inside = comps.ids[box] == k
        instance_map[box][inside] = part_lut[parts[inside]]
        top, left = box[0].start, box[1].start
        for part in order.tolist():
            rows, cols = part_boxes[part - 1]
            area, cx, cy = mask_centroid(parts[rows, cols] == part)
            boxes.append((slice(top + rows.start, top + rows.stop), slice(left + cols.start, left + cols.stop)))
            areas.append(np.asarray([area], np.int64))
            centroids.append([[left + cols.start + cx, top + rows.start + cy]])
    instance_labels = np.concatenate([[-1], np.repeat(comps.labels[kept], counts)]).astype(np.int32)
    return Instances(instance_map, instance_labels, boxes, np.concatenate(areas), np.concatenate(centroids))


@lru_cache(maxsize=16)
def _resize_weights(source: int, target: int, other_upscaled: bool) -> np.ndarray:
    """(target, source) float32: the 1-D weights cv2.resize(INTER_AREA) gives each source line.

    Read off cv2 itself by resizing an identity, so the weights match it exactly in both of its
    modes: true area averaging when neither axis grows, a linear variant when either axis grows.
    The probe's other axis is kept (scale 1) or doubled (pure repetition) to select the same mode.
    """
    eye = np.eye(source, dtype=np.float32)
    repeat = 2 if other_upscaled else 1
    probe = cv2.resize(eye, (source * repeat, target), interpolation=cv2.INTER_AREA)
    weights = np.ascontiguousarray(probe[:, ::repeat])
    weights.flags.writeable = False  # cached: shared by every call
    return weights


def _taps(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sparse rows of a (target, source) weight matrix: (target, T) source indices and weights,
    padded with the row's first index and weight 0."""
    nonzero = weights != 0
    width = int(nonzero.sum(axis=1).max(initial=1))
    order = np.argsort(~nonzero, axis=1, kind="stable")[:, :width]
    values = np.take_along_axis(weights, order, axis=1)
    order = np.where(values != 0, order, order[:, :1])
    return order, values


def _cell_weights(instance_map: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Area weights of every instance on the (h, w) feature grid, as cv2.resize(INTER_AREA) of
    each instance's mask would give them, without one resize per instance.

    Returns code (h * w,) int32: the instance filling the cell (0 none), -1 where several share
    it; and for the shared cells (ascending), entries cell (E,), instance (E,), weight (E,) float32:
    the fraction of the cell's (resampling) weight each instance holds.
    """
    height, width = instance_map.shape
    wy = _resize_weights(height, h, w > width)
    wx = _resize_weights(width, w, h > height)
    ty, vy = _taps(wy)  # (h, Ty): source rows of each cell row
    tx, vx = _taps(wx)  # (w, Tx): source columns of each cell column
    ids = np.where(instance_map > 0, instance_map, 0).astype(np.int32)
    # Smallest and largest instance under each cell's taps, one axis at a time: (H, w), then
    # (h, w). Zero-weight (padding) taps repeat the first tap, so they never make a cell shared.
    along_x = ids[:, tx]  # (H, w, Tx)
    low = along_x.min(axis=2)[ty].min(axis=1)  # (h, w)
    high = along_x.max(axis=2)[ty].max(axis=1)
    code = np.where(low == high, low, -1).reshape(-1)
    shared = np.flatnonzero(code < 0)
    rows, cols = np.divmod(shared, w)
    under = ids[ty[rows][:, :, None], tx[cols][:, None, :]].reshape(len(shared), ty.shape[1] * tx.shape[1])
    weight = (vy[rows][:, :, None] * vx[cols][:, None, :]).reshape(len(shared), under.shape[1])
    cell = np.repeat(shared, under.shape[1])
    instance, value = under.reshape(-1), weight.reshape(-1)
    useful = (instance > 0) & (value != 0)
    return code, cell[useful], instance[useful], value[useful]


# Cells per band in classify_by_mask_pooling: small enough that few instances meet in a band,
# large enough that each band's product is an efficient matrix product.
_BAND_CELLS = 4096


def pool_embeddings(instance_map: np.ndarray, pixel_features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The L2-normalised mean pixel embedding of every instance, all in one pass.

    Each instance's embedding is the mean of the feature cells weighted by the fraction of each
    cell the mask covers (area resampling of the mask to the features' grid, as cv2 INTER_AREA).
    The cells, in raster order, are cut into bands, and each band's features are multiplied
    once by that band's (cells, instances present) weight matrix, so the work follows the
    instances each band holds, not all K.

    Args:
        instance_map: (H, W) ints, 0 = none, 1..K instances (any resolution).
        pixel_features: (C, h, w) L2-normalised pixel embeddings covering the same image.

    Returns:
        index (K',) int64: the instances that cover any cell, ascending; pooled (K', C) float32.
    """
    instance_map = np.asarray(instance_map)
    count = int(instance_map.max()) if instance_map.size else 0
    channels, h, w = pixel_features.shape
    if count <= 0:
        return np.zeros(0, np.int64), np.zeros((0, channels), np.float32)
    # (cells, C): free for features laid out channels-last, as the model returns them
    cells = np.moveaxis(np.asarray(pixel_features, np.float32), 0, -1).reshape(h * w, channels)
    code, cell, instance, value = _cell_weights(instance_map, h, w)
    sums = np.zeros((channels, count + 1), np.float32)  # column k: instance k's weighted sum
    totals = np.zeros(count + 1, np.float64)  # instance k's total weight, in cells
    for start in range(0, h * w, _BAND_CELLS):
        stop = min(start + _BAND_CELLS, h * w)
        band = code[start:stop]
        first, last = np.searchsorted(cell, [start, stop])
        present = np.unique(np.concatenate([band[band > 0], instance[first:last]]))
        if present.size == 0:
            continue
        weights = np.zeros((stop - start, len(present)), np.float32)
        filled = np.flatnonzero(band > 0)
        weights[filled, np.searchsorted(present, band[filled])] = 1.0
        np.add.at(weights.reshape(-1), (cell[first:last] - start) * len(present)
                  + np.searchsorted(present, instance[first:last]), value[first:last])
        sums[:, present] += cells[start:stop].T @ weights  # (C, cells) @ (cells, k): BLAS, no copy
        totals[present] += weights.sum(axis=0, dtype=np.float64)

    index = np.flatnonzero(totals[1:] > 0) + 1
    pooled = (sums[:, index] / totals[index].astype(np.float32)).T  # (K', C)
    pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
    return index, pooled


def classify_by_mask_pooling(
    instance_map: np.ndarray,
    pixel_features: np.ndarray,
    text_features: np.ndarray,
    logit_scale: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Label and probability of every instance from its pooled pixel embedding (`pool_embeddings`).

    Args:
        instance_map: (H, W) ints, 0 = none, 1..K instances (any resolution).
        pixel_features: (C, h, w) L2-normalised pixel embeddings covering the same image.
        text_features: (N, C) L2-normalised label embeddings.
        logit_scale: the model's temperature; None = LSeg's (`lang_seg_ros.model.LOGIT_SCALE`).

    Returns:
        labels (K + 1,) int32 and scores (K + 1,) float32 (softmax probability of that label
        for the pooled embedding); entry 0 is unused (-1, 0).
    """
    instance_map = np.asarray(instance_map)
    count = int(instance_map.max()) if instance_map.size else 0
    labels = np.full(count + 1, -1, np.int32)
    scores = np.zeros(count + 1, np.float32)
    if count <= 0:
        return labels, scores
    index, pooled = pool_embeddings(instance_map, pixel_features)
    if logit_scale is None:
        from ..model.config import LOGIT_SCALE  # the model package loads torch: not at import
        logit_scale = LOGIT_SCALE
    logits = logit_scale * (pooled @ np.asarray(text_features, np.float32).T)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    labels[index] = probs.argmax(axis=1)
    scores[index] = probs.max(axis=1)
    return labels, scores
