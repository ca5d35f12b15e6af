"""The fast `split_instances` / `classify_by_mask_pooling` against plain, slow references.

The references follow the documented rules one component (or one instance) at a time, with no
shortcuts: seeds by testing every local-maximum plateau of a component's distance transform at its
exact level, fragments merged with whole-box dilations, and pooling with one cv2 area resize and one
matrix-vector product per instance (the previous implementation).
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy import ndimage
from skimage.segmentation import watershed

from lang_seg_ros.objects.instances import classify_by_mask_pooling, split_instances

TOL = 1e-3
KERNEL = np.ones((3, 3), np.uint8)


def reference_seeds(component: np.ndarray, dist: np.ndarray, split_depth: float) -> np.ndarray:
    """(H, W) int32 seed groups of one component (0 = no seed): a local-maximum plateau of value p
    is a seed if its piece of {dist > p - h} (up to TOL) holds nothing higher, i.e. anything higher
    is only reached by going down to p - h; equal seeds in one piece are one group."""
    h = max(1.0, split_depth * float(dist.max()))
    local_max = (cv2.dilate(dist, KERNEL) == dist) & component
    count, plateaus = cv2.connectedComponents(local_max.astype(np.uint8), connectivity=8)
    seeds = np.zeros(dist.shape, np.int32)
    groups: dict[tuple, int] = {}
    for plateau in range(1, count):
        pixels = plateaus == plateau
        p = float(dist[pixels][0])
        _, pieces = cv2.connectedComponents(((dist > p - h + TOL) & component).astype(np.uint8), connectivity=8)
        piece = pieces == pieces[pixels][0]
        if dist[piece].max() > p + TOL:
            continue
        key = (int(pieces[pixels][0]), round(p / TOL))
        seeds[pixels] = groups.setdefault(key, len(groups) + 1)
    # Numbered in raster order of each group's first pixel.
    ids, firsts = np.unique(seeds.ravel(), return_index=True)
    rank = np.zeros(len(groups) + 1, np.int32)
    rank[ids[ids > 0][np.argsort(firsts[ids > 0])]] = np.arange(1, len(groups) + 1)
    return rank[seeds]


def reference_merge(parts: np.ndarray, min_area: int) -> None:
    """In place: each part under `min_area` joins the part with most pixels on its ring, smallest
    first (one whole-box dilation per fragment)."""
    areas = np.bincount(parts.ravel())
    for index in np.argsort(areas, kind="stable"):
        if index == 0 or areas[index] == 0 or areas[index] >= min_area:
            continue
        mask = parts == index
        ring = cv2.dilate(mask.astype(np.uint8), KERNEL).astype(bool) & ~mask
        neighbours = parts[ring]
        neighbours = neighbours[neighbours > 0]
        if neighbours.size == 0:
            continue
        target = int(np.bincount(neighbours).argmax())
        parts[mask] = target
        areas[target] += areas[index]
        areas[index] = 0


def reference_split(label_map: np.ndarray, stuff: set[int], min_area: int, split_depth: float,
                    split: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """`split_instances` one label and one component at a time."""
    height, width = label_map.shape
    instance_map = np.zeros(label_map.shape, np.int32)
    instance_labels = [-1]
    for label in np.unique(label_map[label_map >= 0]).tolist():
        mask = label_map == label
        if label in stuff:
            if mask.sum() >= min_area:
                instance_labels.append(label)
                instance_map[mask] = len(instance_labels) - 1
            continue
        count, components, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
        order = sorted(range(1, count), key=lambda c: (stats[c, cv2.CC_STAT_TOP], stats[c, cv2.CC_STAT_LEFT]))
        for c in order:
            if stats[c, cv2.CC_STAT_AREA] < min_area:
                continue
            x0, y0 = max(0, stats[c, 0] - 1), max(0, stats[c, 1] - 1)
            x1, y1 = min(width, stats[c, 0] + stats[c, 2] + 1), min(height, stats[c, 1] + stats[c, 3] + 1)
            component = components[y0:y1, x0:x1] == c
            parts = component.astype(np.int32)
            if split:
                dist = cv2.distanceTransform(component.astype(np.uint8), cv2.DIST_L2, 5)
                seeds = reference_seeds(component, dist, split_depth)
                if seeds.max() > 1:
                    parts = watershed(-dist, seeds, mask=component, connectivity=2).astype(np.int32)
                    reference_merge(parts, min_area)
            ids, firsts = np.unique(parts.ravel(), return_index=True)
            box = instance_map[y0:y1, x0:x1]
            for part in ids[ids > 0][np.argsort(firsts[ids > 0])].tolist():
                instance_labels.append(label)
                box[parts == part] = len(instance_labels) - 1
    return instance_map, np.asarray(instance_labels, np.int32)


def discs(centres_radii: list[tuple[int, int, int]], shape=(120, 200), label: int = 1) -> np.ndarray:
    label_map = np.zeros(shape, np.int32)
    for x, y, r in centres_radii:
        cv2.circle(label_map, (x, y), r, label, -1)
    return label_map


def street_like(seed: int) -> np.ndarray:
    """A random scene: a stuff background, overlapping blobs of three thing labels (touching pairs,
    necks, specks), bars at several angles and a few unlabelled holes."""
    rng = np.random.default_rng(seed)
    label_map = np.zeros((150, 220), np.int32)
    label_map[100:] = 4
    for _ in range(14):
        label = int(rng.integers(1, 4))
        x, y = int(rng.integers(0, 220)), int(rng.integers(0, 150))
        if rng.random() < 0.5:
            cv2.circle(label_map, (x, y), int(rng.integers(2, 22)), label, -1)
        else:
            angle = rng.uniform(0, np.pi)
            length = rng.uniform(10, 80)
            end = (int(x + length * np.cos(angle)), int(y + length * np.sin(angle)))
            cv2.line(label_map, (x, y), end, label, int(rng.integers(1, 12)))
    for _ in range(4):
        x, y = int(rng.integers(0, 220)), int(rng.integers(0, 150))
        cv2.circle(label_map, (x, y), int(rng.integers(1, 6)), -1, -1)
    return label_map


def same_result(fast: tuple[np.ndarray, np.ndarray], slow: tuple[np.ndarray, np.ndarray]) -> None:
    np.testing.assert_array_equal(fast[1], slow[1])
    np.testing.assert_array_equal(fast[0], slow[0])


def test_two_touching_discs_give_two_instances_like_the_reference():
    label_map = discs([(60, 60, 30), (115, 60, 30)])
    fast = split_instances(label_map, stuff={0}, min_area=50)
    same_result(fast, reference_split(label_map, {0}, 50, 0.3))
    assert fast[1].tolist() == [-1, 0, 1, 1]


def test_unequal_touching_discs_are_split_and_a_shallow_neck_is_not():
    deep = discs([(60, 60, 35), (120, 60, 22)])  # a narrow neck between a big and a small disc
    fast = split_instances(deep, stuff={0}, min_area=50)
    same_result(fast, reference_split(deep, {0}, 50, 0.3))
    assert fast[1].tolist() == [-1, 0, 1, 1]
    shallow = discs([(60, 60, 35), (85, 60, 30)])  # mostly overlapping: one object
    fast = split_instances(shallow, stuff={0}, min_area=50)
    same_result(fast, reference_split(shallow, {0}, 50, 0.3))
    assert fast[1].tolist() == [-1, 0, 1]


@pytest.mark.parametrize("angle", [0, 30, 45, 90, 135])
def test_an_elongated_bar_at_any_angle_is_one_instance(angle):
    label_map = np.zeros((240, 240), np.int32)
    c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    cv2.line(label_map, (int(120 - 100 * c), int(120 - 100 * s)), (int(120 + 100 * c), int(120 + 100 * s)), 2, 15)
    fast = split_instances(label_map, stuff={0}, min_area=20)
    same_result(fast, reference_split(label_map, {0}, 20, 0.3))
    assert fast[1].tolist() == [-1, 0, 2]


def test_fragments_merge_into_the_part_with_the_longest_border():
    # Three discs in a row, the small middle one overlapping the right one more: with a low
    # split_depth it seeds a part of its own, which under min_area joins the right part.
    label_map = discs([(40, 60, 28), (77, 60, 8), (110, 60, 26)])
    fast = split_instances(label_map, stuff={0}, min_area=1, split_depth=0.1)
    same_result(fast, reference_split(label_map, {0}, 1, 0.1))
    assert len(fast[1]) - 1 == 4 and len({fast[0][60, 40], fast[0][60, 77], fast[0][60, 110]}) == 3
    fast = split_instances(label_map, stuff={0}, min_area=400, split_depth=0.1)
    same_result(fast, reference_split(label_map, {0}, 400, 0.1))
    assert len(fast[1]) - 1 == 3 and fast[0][60, 77] == fast[0][60, 110] != fast[0][60, 40]
    # A small bump on one disc: its own part without min_area, merged into the disc with it.
    bump = discs([(50, 60, 28), (84, 60, 7)])
    assert len(split_instances(bump, {0}, 1, 0.1)[1]) - 1 == 3
    fast = split_instances(bump, {0}, 150, 0.1)
    same_result(fast, reference_split(bump, {0}, 150, 0.1))
    assert fast[1].tolist() == [-1, 0, 1]


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("min_area,split_depth", [(1, 0.3), (40, 0.3), (40, 0.1), (200, 0.5)])
def test_random_scenes_match_the_reference(seed, min_area, split_depth):
    label_map = street_like(seed)
    for split in (True, False):
        same_result(split_instances(label_map, {4}, min_area, split_depth, split=split),
                    reference_split(label_map, {4}, min_area, split_depth, split=split))


def test_no_split_is_plain_connected_components_per_label():
    label_map = street_like(3)
    instances, labels = split_instances(label_map, stuff=(), min_area=1, split=False)
    for label in np.unique(label_map[label_map >= 0]):
        count, _ = cv2.connectedComponents((label_map == label).astype(np.uint8), connectivity=8)
        assert (labels == label).sum() == count - 1
    assert np.array_equal(instances > 0, label_map >= 0)


def test_edge_cases():
    empty = np.full((10, 12), -1, np.int32)
    instances, labels = split_instances(empty)
    assert instances.shape == (10, 12) and not instances.any() and labels.tolist() == [-1]
    full = np.full((30, 40), 3, np.uint8)  # one thing covering the frame: no edge anywhere
    instances, labels = split_instances(full, min_area=5)
    assert labels.tolist() == [-1, 3] and (instances == 1).all()


def reference_pooling(instance_map, features, text, logit_scale=100.0):
    """One area resize and one matrix-vector product per instance."""
    count = int(instance_map.max())
    labels, scores = np.full(count + 1, -1, np.int32), np.zeros(count + 1, np.float32)
    channels, h, w = features.shape
    flat = features.reshape(channels, h * w)
    for index in range(1, count + 1):
        weights = cv2.resize((instance_map == index).astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
        total = float(weights.sum())
        if total <= 0:
            continue
        pooled = flat @ weights.reshape(-1) / total
        pooled /= max(np.linalg.norm(pooled), 1e-12)
        logits = logit_scale * (text @ pooled)
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        labels[index], scores[index] = int(probs.argmax()), float(probs.max())
    return labels, scores


@pytest.mark.parametrize("shape,grid", [((150, 220), (75, 110)), ((150, 220), (56, 83)), ((150, 220), (150, 220)),
                                        ((150, 220), (40, 300)), ((150, 220), (200, 300)), ((61, 97), (20, 33))])
def test_mask_pooling_matches_per_instance_resizing(shape, grid):
    rng = np.random.default_rng(sum(shape) + sum(grid))
    label_map = cv2.resize(street_like(7), shape[::-1], interpolation=cv2.INTER_NEAREST)
    instance_map, _ = split_instances(label_map, stuff={4}, min_area=1)
    instance_map[instance_map == 3] = 0  # an id with no pixels: label -1, score 0
    channels = 24
    features = rng.normal(size=(channels, *grid)).astype(np.float32)
    features /= np.linalg.norm(features, axis=0, keepdims=True)
    text = rng.normal(size=(7, channels)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    # A low logit scale keeps the probabilities away from 0 and 1, so they show pooling errors.
    labels, scores = classify_by_mask_pooling(instance_map, features, text, logit_scale=5.0)
    expected_labels, expected_scores = reference_pooling(instance_map, features, text, logit_scale=5.0)
    np.testing.assert_array_equal(labels, expected_labels)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-4, atol=1e-6)
    assert labels[3] == -1 and scores[3] == 0


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("min_area,split_depth", [(1, 0.1), (40, 0.3)])
def test_the_statistics_that_come_with_the_split_are_those_of_the_instance_map(seed, min_area, split_depth):
    """Boxes, areas and centroids from the labelling (whole components), the stuff label's sums and
    the split parts equal what find_objects, a pixel count and the mean position say of the map."""
    from lang_seg_ros.objects.instances import split_instances_with_stats

    label_map = street_like(seed)
    for split in (True, False):
        found = split_instances_with_stats(label_map, {4}, min_area, split_depth, split=split)
        np.testing.assert_array_equal(found.instance_map, split_instances(label_map, {4}, min_area, split_depth, split)[0])
        count = len(found.labels) - 1
        assert len(found.boxes) == count + 1 and found.areas.shape == (count + 1,) and found.centroids.shape == (count + 1, 2)
        for index, box in enumerate(ndimage.find_objects(found.instance_map, max_label=count), start=1):
            ys, xs = np.nonzero(found.instance_map == index)
            assert found.boxes[index] == box
            assert found.areas[index] == len(ys)
            np.testing.assert_allclose(found.centroids[index], (xs.mean(), ys.mean()), rtol=0, atol=1e-9)


def test_a_map_without_labels_has_no_instances_and_empty_statistics():
    from lang_seg_ros.objects.instances import split_instances_with_stats

    found = split_instances_with_stats(np.full((6, 9), -1, np.int32))
    assert not found.instance_map.any() and found.labels.tolist() == [-1] and found.boxes == [None]
    assert found.areas.shape == (1,) and found.centroids.shape == (1, 2)
