"""Which instance an expression means (lang_seg_ros/referring/select.py), on hand-made regions whose
boxes, centroids, areas and depths are chosen so that each rule, boundary and reason is pinned."""
from __future__ import annotations

import math

import numpy as np
import pytest

from lang_seg_ros.objects.regions import Region
from lang_seg_ros.referring import parse_expression, select_instance
from lang_seg_ros.referring.parse import ReferringQuery
from lang_seg_ros.referring.select import _gap, _qualifier_key, _relation_distance, median_depth

SHAPE = (100, 200)


def region(bbox, centroid=None, area=None, score=0.9, label="car", rid=1) -> Region:
    x0, y0, x1, y1 = bbox
    mask = np.ones((y1 - y0, x1 - x0), bool)
    centroid = centroid if centroid is not None else ((x0 + x1 - 1) / 2, (y0 + y1 - 1) / 2)
    return Region(rid, label, 1, score, bbox, centroid, area if area is not None else int(mask.sum()), mask)


def query(category="car", qualifiers=(), ordinal=None, relation=None) -> ReferringQuery:
    return ReferringQuery(expression="test", category=category, qualifiers=tuple(qualifiers), ordinal=ordinal,
                          relation=relation)


# ---- geometry helpers ----------------------------------------------------------------------------
@pytest.mark.parametrize("a, b, gap", [
    ((0, 0, 10, 10), (15, 0, 20, 10), 5.0),     # b right of a
    ((15, 0, 20, 10), (0, 0, 10, 10), 5.0),     # b left of a
    ((0, 0, 10, 10), (0, 17, 10, 20), 7.0),     # b below a
    ((0, 17, 10, 20), (0, 0, 10, 10), 7.0),     # b above a
    ((0, 0, 10, 10), (13, 14, 20, 20), 5.0),    # diagonal: 3 and 4 apart
    ((13, 14, 20, 20), (0, 0, 10, 10), 5.0),
    ((0, 0, 10, 10), (10, 0, 20, 10), 0.0),     # touching (half-open boxes)
    ((0, 0, 10, 10), (0, 10, 10, 20), 0.0),
    ((0, 0, 10, 10), (2, 3, 8, 7), 0.0),        # inside
    ((5, 5, 30, 40), (0, 0, 10, 10), 0.0),      # overlapping
    ((40, 5, 50, 8), (0, 0, 10, 10), 30.0),     # far right, rows overlapping
    ((3, 50, 6, 60), (0, 0, 10, 10), 40.0),     # far below, columns overlapping
])
def test_gap_is_the_distance_between_boxes(a, b, gap):
    assert _gap(region(a), region(b)) == gap


@pytest.mark.parametrize("kind, candidate, other, ok", [
    ("left_of", (10, 50), (20, 50), True), ("left_of", (20, 50), (20, 50), False), ("left_of", (30, 50), (20, 50), False),
    ("right_of", (30, 50), (20, 50), True), ("right_of", (20, 50), (20, 50), False), ("right_of", (10, 50), (20, 50), False),
    ("above", (50, 10), (50, 20), True), ("above", (50, 20), (50, 20), False), ("above", (50, 30), (50, 20), False),
    ("below", (50, 30), (50, 20), True), ("below", (50, 20), (50, 20), False), ("below", (50, 10), (50, 20), False),
    ("next_to", (50, 20), (50, 20), True), ("next_to", (0, 0), (99, 99), True),
])
def test_relations_are_strict_about_direction(kind, candidate, other, ok):
    a = region((0, 0, 4, 4), centroid=candidate)
    b = region((10, 0, 14, 4), centroid=other)
    assert _relation_distance(kind, a, b) == (6.0 if ok else math.inf)  # the boxes are 6 px apart


def test_median_depth_uses_valid_values_under_the_mask_only():
    mask = np.array([[True, True, False], [True, True, True]])
    r = Region(1, "car", 1, 1.0, (1, 1, 4, 3), (2.0, 1.5), int(mask.sum()), mask)
    depth = np.full((5, 6), 9.0, np.float32)
    depth[1:3, 1:4] = [[0.5, 0.25, 7.0], [np.nan, 0.0, 0.75]]  # 7.0 is outside the mask
    assert median_depth(r, depth) == 0.5  # of 0.25, 0.5, 0.75: NaN and 0 are no depth
    depth[1:3, 1:4] = [[-1.0, np.inf, 7.0], [np.nan, 0.0, -np.inf]]
    assert median_depth(r, depth) == math.inf


@pytest.mark.parametrize("centroid", [(0.0, 0.0), (99.5, 49.5), (150.0, 10.0), (20.0, 90.0), (199.0, 99.0)])
def test_middle_is_the_distance_to_the_image_centre(centroid):
    key = _qualifier_key("middle", SHAPE, None)
    assert key(region((0, 0, 1, 1), centroid=centroid)) == pytest.approx(
        math.hypot(centroid[0] - 99.5, centroid[1] - 49.5), abs=1e-12)


def test_size_and_depth_keys():
    small, big = region((0, 0, 2, 2)), region((10, 10, 20, 20))
    assert _qualifier_key("smallest", SHAPE, None)(small) == 4 and _qualifier_key("largest", SHAPE, None)(big) == -100
    low, high = region((0, 80, 5, 90)), region((0, 10, 5, 20))
    assert _qualifier_key("nearest", SHAPE, None)(low) < _qualifier_key("nearest", SHAPE, None)(high)
    assert _qualifier_key("farthest", SHAPE, None)(high) < _qualifier_key("farthest", SHAPE, None)(low)
    with pytest.raises(ValueError, match="^unknown qualifier 'tallest'$"):
        _qualifier_key("tallest", SHAPE, None)


# ---- selection -----------------------------------------------------------------------------------
def test_the_smallest_and_largest_are_chosen_wherever_they_are_in_the_list():
    cars = [region((0, 0, 10, 10), rid=1), region((50, 0, 52, 2), rid=2), region((80, 0, 85, 5), rid=3)]
    chosen, reason = select_instance(cars, query(qualifiers=("smallest",)), SHAPE)
    assert chosen is cars[1] and reason == "smallest"
    chosen, reason = select_instance(cars[::-1], query(qualifiers=("largest",)), SHAPE)
    assert chosen is cars[0] and reason == "largest"


def test_several_qualifiers_apply_in_reading_order_and_are_all_named():
    big_left, big_right, small_right = region((0, 0, 10, 10)), region((150, 0, 160, 10)), region((190, 0, 192, 2))
    chosen, reason = select_instance([big_left, big_right, small_right], query(qualifiers=("largest", "right")), SHAPE)
    assert chosen is big_right and reason == "largest; right"


def test_without_a_qualifier_the_largest_match_is_chosen_then_the_surest():
    a, b, c = region((0, 0, 4, 4), score=0.9), region((10, 0, 15, 5), score=0.5), region((30, 0, 35, 5), score=0.8)
    chosen, reason = select_instance([a, b, c], query(), SHAPE)
    assert chosen is c and reason == "largest match"


def test_ordinals_count_from_their_side_up_to_the_last_candidate():
    cars = [region((x, 0, x + 5, 5), rid=i) for i, x in enumerate((60, 0, 120))]
    chosen, reason = select_instance(cars, query(ordinal=(3, "left")), SHAPE)
    assert chosen is cars[2] and reason == "3 from the left"
    chosen, _ = select_instance(cars, query(ordinal=(1, "right")), SHAPE)
    assert chosen is cars[2]
    chosen, reason = select_instance(cars, query(ordinal=(4, "left")), SHAPE)
    assert chosen is None and reason == "only 3 'car' in view, not 4"


def test_relations_choose_the_nearest_candidate_in_the_right_direction_and_say_so():
    bus = region((100, 40, 120, 60), label="bus")
    near_left, far_left, right = region((80, 45, 90, 55)), region((10, 45, 20, 55)), region((125, 45, 130, 55))
    chosen, reason = select_instance([far_left, right, near_left], query(relation=("left_of", "bus")), SHAPE,
                                     others=[bus])
    assert chosen is near_left and reason == "left of bus"
    chosen, reason = select_instance([far_left, near_left], query(relation=("right_of", "bus")), SHAPE, others=[bus])
    assert chosen is None and reason == "no 'car' is right of a 'bus'"
    chosen, reason = select_instance([far_left, near_left], query(relation=("next_to", "truck")), SHAPE, others=[])
    assert chosen is None and reason == "no 'truck' in view to relate to"
    below = region((100, 80, 120, 90))
    chosen, reason = select_instance([near_left, below], query(relation=("below", "bus")), SHAPE, others=[bus])
    assert chosen is below and reason == "below bus"


def test_relation_then_ordinal_or_qualifier_are_both_in_the_reason():
    bus = region((100, 40, 120, 60), label="bus")
    cars = [region((10, 45, 20, 55)), region((60, 45, 70, 55)), region((130, 45, 140, 55))]
    chosen, reason = select_instance(cars, query(relation=("left_of", "bus"), ordinal=(2, "left")), SHAPE, others=[bus])
    assert chosen is cars[1] and reason == "left of bus; 2 from the left"
    chosen, reason = select_instance(cars, query(relation=("left_of", "bus"), qualifiers=("left",)), SHAPE,
                                     others=[bus])
    assert chosen is cars[0] and reason == "left of bus; left"


def test_equally_near_candidates_keep_their_order():
    bus = region((100, 40, 120, 60), label="bus")
    a, b = region((80, 45, 90, 55), rid=1), region((130, 45, 140, 55), rid=2)  # both 10 px from the bus
    assert select_instance([a, b], query(relation=("next_to", "bus")), SHAPE, others=[bus])[0] is a
    assert select_instance([b, a], query(relation=("next_to", "bus")), SHAPE, others=[bus])[0] is b


def test_depth_decides_nearest_and_farthest_and_invalid_depth_comes_last():
    a, b, c = region((0, 0, 10, 10)), region((20, 0, 30, 10)), region((40, 0, 50, 10))
    depth = np.zeros((20, 60), np.float32)
    depth[0:10, 0:10], depth[0:10, 20:30] = 0.5, 0.75  # c has no valid depth
    chosen, _ = select_instance([c, b, a], query(qualifiers=("nearest",)), (20, 60), depth=depth)
    assert chosen is a
    chosen, _ = select_instance([c, a, b], query(qualifiers=("farthest",)), (20, 60), depth=depth)
    assert chosen is b


def test_parsed_expressions_reach_the_same_rules():
    cars = [region((0, 0, 10, 10)), region((50, 0, 52, 2))]
    assert select_instance(cars, parse_expression("the smallest car"), SHAPE)[0] is cars[1]
    assert select_instance([], parse_expression("the dog"), SHAPE) == (None, "no 'dog' in view")
