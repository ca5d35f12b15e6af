"""Panoptic ids, 3D from depth and stable ids, on constructed data with hand-computed answers."""
from __future__ import annotations

import numpy as np
import pytest

from lang_seg_ros.objects.geometry import depth_to_metres, region_3d, scale_intrinsics
from lang_seg_ros.objects.panoptic import decode_panoptic, encode_panoptic
from lang_seg_ros.objects.regions import extract_regions
from lang_seg_ros.objects.tracking import IoUTracker


def test_panoptic_ids_decode_back_to_the_regions():
    instance_map = np.array([[1, 1, 2, 2], [3, 3, 0, 4]], np.int32)
    instance_labels = np.array([-1, 0, 2, 2, 2], np.int32)  # instance 1 is stuff (label 0)
    ids = encode_panoptic(instance_map, instance_labels, stuff={0})
    assert ids.dtype == np.int32
    assert ids.tolist() == [[1000, 1000, 3001, 3001], [3002, 3002, 0, 3003]]
    segments = decode_panoptic(ids)
    assert [(s.label_index, s.instance) for s in segments] == [(0, 0), (2, 1), (2, 2), (2, 3)]
    for segment in segments:
        assert np.array_equal(segment.mask, ids == segment.id)


K = np.array([[500.0, 0, 320.0], [0, 500.0, 240.0], [0, 0, 1]])


def test_3d_centroid_and_extent_match_a_hand_computation():
    depth_mm = np.zeros((480, 640), np.uint16)
    depth_mm[230:250, 330:350] = 2000  # a 20x20 pixel patch at 2 m
    depth_mm[230:232, 330:350] = 0     # two rows without depth
    depth = depth_to_metres(depth_mm, "16UC1")
    mask = np.ones((20, 20), bool)
    info = region_3d((330, 230, 350, 250), mask, depth, K)
    # valid pixels: u in 330..349, v in 232..249 -> mean u 339.5, mean v 240.5
    assert info.centroid == pytest.approx(((339.5 - 320) * 2 / 500, (240.5 - 240) * 2 / 500, 2.0))
    assert info.extent_min == pytest.approx(((330 - 320) * 2 / 500, (232 - 240) * 2 / 500, 2.0))
    assert info.extent_max == pytest.approx(((349 - 320) * 2 / 500, (249 - 240) * 2 / 500, 2.0))
    assert info.median_depth == 2.0 and info.valid_fraction == pytest.approx(18 / 20)


def test_no_valid_depth_gives_none_and_32fc1_is_metres():
    depth = depth_to_metres(np.array([[np.nan, 0.0], [np.inf, -1.0]], np.float32), "32FC1")
    assert np.isnan(depth).all()
    assert region_3d((0, 0, 2, 2), np.ones((2, 2), bool), depth, K) is None
    with pytest.raises(ValueError, match="encoding"):
        depth_to_metres(np.zeros((2, 2)), "rgb8")


def test_intrinsics_follow_a_resize():
    half = scale_intrinsics(K, (480, 640), (240, 320))
    assert half[0, 0] == 250 and half[1, 1] == 250
    assert half[0, 2] == pytest.approx((320 + 0.5) / 2 - 0.5)


def test_ids_stay_the_same_while_objects_stay_in_view():
    tracker = IoUTracker(iou_threshold=0.3, max_missed=1)

    def frame(shift, with_second=True):
        label_map = np.zeros((60, 120), np.int32)
        label_map[10:30, 10 + shift:30 + shift] = 1
        if with_second:
            label_map[35:55, 70 - shift:90 - shift] = 1
        return extract_regions(label_map, None, ["floor", "box"])

    first = tracker.update([r for r in frame(0) if r.label == "box"])
    moved = frame(3)
    ids = tracker.update([r for r in moved if r.label == "box"])
    by_x = lambda regions, ids: [i for _, i in sorted(zip([r.centroid[0] for r in regions], ids))]
    assert sorted(ids) == sorted(first)
    boxes = [r for r in moved if r.label == "box"]
    assert by_x(boxes, ids) == by_x([r for r in frame(0) if r.label == "box"], first)
    # The second box leaves for two frames: its id ends and is never given to a new object.
    tracker.update([r for r in frame(6, with_second=False) if r.label == "box"])
    tracker.update([r for r in frame(9, with_second=False) if r.label == "box"])
    back = tracker.update([r for r in frame(9) if r.label == "box"])
    assert len(set(back) & set(first)) == 1 and max(back) > max(first)
