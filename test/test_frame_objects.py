"""Per-frame objects (lang_seg_ros/objects/frame.py): pure numpy, no rclpy needed.

Constructed label maps, embeddings and depth; the DDS tests in test/ros/test_objects.py check the
same outputs end to end.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from lang_seg_ros.objects.geometry import scale_intrinsics
from lang_seg_ros.objects.panoptic import decode_panoptic
from lang_seg_ros.objects.regions import extract_regions
from lang_seg_ros.objects.frame import (add_geometry, aligned_depth, best_overlap, frame_objects,
                                      labelled_points)

LABELS = ["floor", "chair", "mug", "table"]


def blocky(seed: int, shape=(80, 100), cells=(8, 10), labels: int = 4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(-1, labels, cells).astype(np.float32)
    return cv2.resize(small, shape[::-1], interpolation=cv2.INTER_NEAREST).astype(np.int32)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_without_splitting_stuff_or_pooling_the_regions_are_the_connected_components(seed):
    label_map = blocky(seed)
    confidence = np.random.default_rng(seed).random(label_map.shape).astype(np.float32)
    want = extract_regions(label_map, confidence, LABELS, min_area=30, max_regions=7)
    got = frame_objects(label_map, confidence, LABELS, min_area=30, max_regions=7)
    assert [r.region.id for r in got.regions] == [r.id for r in want] == list(range(1, len(want) + 1))
    for g, w in zip(got.regions, want):
        g = g.region
        assert (g.label, g.label_index, g.bbox, g.area) == (w.label, w.label_index, w.bbox, w.area)
        assert g.score == pytest.approx(w.score, abs=1e-6) and g.centroid == pytest.approx(w.centroid, abs=1e-9)
        np.testing.assert_array_equal(g.mask, w.mask)
    np.testing.assert_array_equal(got.label_map, label_map)


def test_touching_things_are_split_into_regions():
    label_map = blocky(0, cells=(4, 5))
    cv2.circle(label_map, (30, 40), 18, 1, -1)
    cv2.circle(label_map, (62, 40), 18, 1, -1)  # two touching discs of one label
    objects = frame_objects(label_map, np.ones(label_map.shape), LABELS, stuff={0}, min_area=40, split=True)
    assert sum(r.region.label_index == 1 for r in objects.regions) >= 2


def test_stuff_is_one_region_and_panoptic_ids_decode_back_to_the_regions():
    label_map = np.full((40, 60), 1, np.int32)  # chairs
    label_map[:, 20:30] = 0  # a floor band ...
    label_map[:, 50:] = 0  # ... and a second, disconnected floor piece
    label_map[5:10, 5:10] = -1
    objects = frame_objects(label_map, np.ones(label_map.shape), LABELS, stuff={0}, min_area=10)
    floor = [r for r in objects.regions if r.region.label_index == 0]
    assert len(floor) == 1 and floor[0].is_stuff and floor[0].instance == 0 and floor[0].panoptic_id == 1000
    assert floor[0].region.area == int((label_map == 0).sum())
    chairs = [r for r in objects.regions if r.region.label_index == 1]
    assert [r.instance for r in chairs] == [1, 2] and [r.panoptic_id for r in chairs] == [2001, 2002]
    assert chairs[0].region.area >= chairs[1].region.area
    panoptic = objects.panoptic()
    segments = {s.id: s for s in decode_panoptic(panoptic)}
    assert set(segments) == {r.panoptic_id for r in objects.regions}
    for r in objects.regions:
        np.testing.assert_array_equal(segments[r.panoptic_id].mask, r.region.full_mask(label_map.shape))
        np.testing.assert_array_equal(objects.region_map == r.region.id, r.region.full_mask(label_map.shape))
    assert (panoptic[5:10, 5:10] == 0).all()


def test_mask_pooling_relabels_regions_repaints_the_map_and_merges_stuff():
    rng = np.random.default_rng(0)
    text = rng.normal(size=(4, 16)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    label_map = np.zeros((40, 40), np.int32)  # floor (stuff) ...
    label_map[5:15, 5:15] = 1  # ... a "chair" whose embeddings say "mug"
    label_map[25:35, 25:35] = 3  # a "table" whose embeddings say "floor": joins the floor region
    features = np.repeat(text[0][:, None, None], 400, axis=1).reshape(16, 20, 20)  # at half resolution
    features[:, 2:8, 2:8] = text[2][:, None, None]
    features[:, 12:18, 12:18] = text[0][:, None, None]
    objects = frame_objects(label_map, np.full(label_map.shape, 0.5), LABELS, stuff={0}, min_area=5,
                            pixel_features=features, text_features=text)
    assert objects.pooled
    assert [(r.region.label, r.is_stuff) for r in objects.regions] == [("floor", True), ("mug", False)]
    floor, mug = (r.region for r in objects.regions)
    assert floor.area == 1600 - 100 and mug.area == 100 and mug.bbox == (5, 5, 15, 15)
    assert mug.score > 0.9 and 0.0 < floor.score <= 1.0
    assert (objects.label_map[5:15, 5:15] == 2).all() and (objects.label_map[25:35, 25:35] == 0).all()


def test_depth_is_resized_nearest_with_intrinsics_scaled_and_3d_matches_hand_computed_values():
    k = [50.0, 0.0, 39.5, 0.0, 55.0, 29.5, 0.0, 0.0, 1.0]
    depth_mm = np.full((60, 80), 2000, np.uint16)
    depth_mm[:, 40:] = 4000
    depth_mm[0:6, 0:8] = 0  # invalid
    metres, k_full = aligned_depth(depth_mm, "16UC1", k, (60, 80), (120, 160))
    assert metres.shape == (120, 160) and np.isnan(metres[0:12, 0:16]).all() and not np.isnan(metres[12:, :]).any()
    assert (metres[:, :80][~np.isnan(metres[:, :80])] == 2.0).all() and (metres[:, 80:] == 4.0).all()
    np.testing.assert_allclose(k_full, scale_intrinsics(np.reshape(k, (3, 3)), (60, 80), (120, 160)))
    assert k_full[0, 0] == 100.0 and k_full[0, 2] == 79.5

    label_map = np.zeros((120, 160), np.int32)
    label_map[0:50, 0:100] = 1
    objects = frame_objects(label_map, np.ones(label_map.shape), LABELS, min_area=10)
    add_geometry(objects, metres, k_full)
    chair = next(r for r in objects.regions if r.region.label_index == 1)
    rows, cols = np.nonzero((label_map == 1) & np.isfinite(metres))
    z = metres[rows, cols].astype(np.float64)
    points = np.stack([(cols - 79.5) * z / 100.0, (rows - 59.5) * z / 110.0, z], axis=1)
    g = chair.geometry
    assert g.centroid == pytest.approx(tuple(points.mean(axis=0)), abs=1e-9)
    assert g.extent_min == pytest.approx(tuple(points.min(axis=0)))
    assert g.extent_max == pytest.approx(tuple(points.max(axis=0)))
    assert g.valid_fraction == pytest.approx(len(rows) / 5000) and g.median_depth == 2.0

    xyz, labels, instances = labelled_points(objects, metres, k_full, stride=2)
    valid = np.isfinite(metres[::2, ::2])
    assert len(xyz) == int(valid.sum()) and xyz.dtype == np.float32
    np.testing.assert_array_equal(labels, label_map[::2, ::2][valid])
    np.testing.assert_array_equal(instances, objects.region_map[::2, ::2][valid])

    with pytest.raises(ValueError, match="aspect ratio"):
        aligned_depth(depth_mm, "16UC1", k, (60, 80), (120, 120))
    with pytest.raises(ValueError, match="encoding"):
        aligned_depth(depth_mm, "rgb8", k, (60, 80), (120, 160))
    with pytest.raises(ValueError, match="focal"):
        aligned_depth(depth_mm, "16UC1", [0.0] * 9, (60, 80), (120, 160))


def test_best_overlap_links_a_region_to_the_frame_region_it_overlaps_most():
    label_map = np.zeros((20, 40), np.int32)
    label_map[:, 20:] = 1
    objects = frame_objects(label_map, np.ones(label_map.shape), LABELS, min_area=1)
    probe = extract_regions(np.where(np.arange(40)[None, :] >= 18, 2, -1).repeat(20, 0), None, LABELS)[0]
    assert best_overlap(probe, objects.regions).region.label_index == 1  # IoU 400 / 440, another label
    assert best_overlap(probe, objects.regions, min_iou=0.95) is None
