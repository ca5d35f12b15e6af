"""Zero-shot referring: parsing, and each qualifier picking the right instance in constructed scenes."""
from __future__ import annotations

import numpy as np
import pytest

from lang_seg_ros.inference import Segmenter
from lang_seg_ros.referring import ZeroShotReferrer, parse_expression, select_instance
from lang_seg_ros.referring.vocabulary import load_vocabulary
from lang_seg_ros.objects.regions import extract_regions


@pytest.mark.parametrize("expression, category, qualifiers, ordinal, relation", [
    ("the car on the left", "car", ("left",), None, None),
    ("The person on the right of the picture.", "person", ("right",), None, None),
    ("the second car from the left", "car", (), (2, "left"), None),
    ("the third person from the right", "person", (), (3, "right"), None),
    ("the last car from the left", "car", (), (1, "right"), None),
    ("the red mug next to the laptop", "red mug", (), None, ("next_to", "laptop")),
    ("the car to the left of the bus", "car", (), None, ("left_of", "bus")),
    ("the cup on the table", "cup", (), None, ("above", "table")),
    ("the nearest chair", "chair", ("nearest",), None, None),
    ("the biggest tree on the right", "tree", ("largest", "right"), None, None),
    ("the person in the white shirt", "person in the white shirt", (), None, None),
])
def test_parse_expression(expression, category, qualifiers, ordinal, relation):
    query = parse_expression(expression)
    assert (query.category, query.qualifiers, query.ordinal, query.relation) == (category, qualifiers, ordinal, relation)


def test_expressions_without_a_category_or_too_long_are_rejected():
    with pytest.raises(ValueError, match="empty"):
        parse_expression("   ")
    with pytest.raises(ValueError, match="no object category"):
        parse_expression("the one on the left")
    with pytest.raises(ValueError, match="exceeds max_expression_chars=256"):  # refused, never cut
        parse_expression("mug " * 5000)
    assert parse_expression("mug " * 60).category.startswith("mug mug")


def scene():
    """A 100x200 label map: label 1 = car (three cars), label 2 = bus, 0 = road."""
    label_map = np.zeros((100, 200), np.int32)
    label_map[60:80, 10:30] = 1     # small car, left, low (near)
    label_map[20:50, 80:120] = 1    # big car, middle, high (far)
    label_map[55:75, 160:190] = 1   # car on the right
    label_map[40:70, 135:155] = 2   # bus, just left of the right car
    confidence = np.full(label_map.shape, 0.9, np.float32)
    regions = extract_regions(label_map, confidence, ["road", "car", "bus"])
    cars = sorted([r for r in regions if r.label == "car"], key=lambda r: r.centroid[0])
    bus = [r for r in regions if r.label == "bus"]
    return cars, bus


@pytest.mark.parametrize("expression, expected", [
    ("the car on the left", 0), ("the car on the right", 2), ("the car in the middle", 1),
    ("the car at the top", 1), ("the car at the bottom", 0), ("the largest car", 1), ("the smallest car", 0),
    ("the second car from the left", 1), ("the first car from the right", 2), ("the last car from the left", 2),
    ("the nearest car", 0), ("the farthest car", 1),
    ("the car next to the bus", 2), ("the car to the left of the bus", 1), ("the car right of the bus", 2),
    ("the car above the bus", 1), ("the car", 1),
])
def test_each_qualifier_picks_its_instance(expression, expected):
    cars, bus = scene()
    query = parse_expression(expression)
    chosen, reason = select_instance(cars, query, (100, 200), others=bus)
    assert chosen is cars[expected], reason


def test_nearest_uses_depth_when_given():
    cars, _ = scene()
    depth = np.full((100, 200), 20.0, np.float32)
    depth[20:50, 80:120] = 3.0  # the high car is the nearest after all
    depth[60:80, 10:30] = 0.0   # no valid depth on the left car: never chosen as nearest
    chosen, _ = select_instance(cars, parse_expression("the nearest car"), (100, 200), depth=depth)
    assert chosen is cars[1]
    chosen, _ = select_instance(cars, parse_expression("the farthest car"), (100, 200), depth=depth)
    assert chosen is cars[2]


def test_not_found_cases_say_why():
    cars, bus = scene()
    assert select_instance([], parse_expression("the dog"), (100, 200)) == (None, "no 'dog' in view")
    chosen, reason = select_instance(cars, parse_expression("the fifth car from the left"), (100, 200))
    assert chosen is None and "only 3" in reason
    chosen, reason = select_instance(cars, parse_expression("the car next to the truck"), (100, 200), others=[])
    assert chosen is None and "truck" in reason


class PaintedSegmenter(Segmenter):
    """A real Segmenter whose network is replaced by a painter: 'car' wins where the image is red.

    Lets the whole zero-shot path (label set, regions, scores, selection) run on a known scene.
    """

    def __init__(self, tiny_model):
        super().__init__(tiny_model, device="cpu", working_size=64)

    def segment(self, image, color_order="rgb", labels=None):
        from lang_seg_ros.inference.segmenter import SegmentationResult

        labels = tuple(labels)
        red = (image[:, :, 0] > 200) & (image[:, :, 1] < 50)
        label_map = np.zeros(image.shape[:2], np.int32)
        if "car" in labels:
            label_map[red] = labels.index("car")
        return SegmentationResult(labels, label_map, np.full(image.shape[:2], 0.8, np.float32), {})


def test_zero_shot_referrer_end_to_end(tiny_model):
    image = np.zeros((60, 120, 3), np.uint8)
    image[20:40, 5:25] = (255, 0, 0)
    image[20:40, 80:110] = (255, 0, 0)
    referrer = ZeroShotReferrer(PaintedSegmenter(tiny_model), min_score=0.5)
    left = referrer.refer(image, "the car on the left")
    assert left.found and left.bbox == (5, 20, 25, 40) and left.mask.sum() == 400
    # No label set given: the phrase competes with the model's vocabulary (ADE20K's 150 classes for
    # this model, "car" among them), never with "other" alone.
    assert left.labels == load_vocabulary("ade20k")
    right = referrer.refer(image, "the car on the right", labels=["road", "car"])
    assert right.found and right.bbox == (80, 20, 110, 40) and right.labels == ("road", "car")
    missing = referrer.refer(image, "the bicycle")
    assert not missing.found and missing.bbox is None and not missing.mask.any()
    strict = ZeroShotReferrer(referrer.segmenter, min_score=0.9).refer(image, "the car")
    assert not strict.found  # a weak match is "not found", never an arbitrary object


def test_zero_shot_referrer_runs_on_a_real_model(tiny_model):
    image = (np.random.default_rng(1).random((48, 64, 3)) * 255).astype(np.uint8)
    segmenter = Segmenter(tiny_model, device="cpu", working_size=64)
    segmenter.set_labels(["road", "sky"])
    result = ZeroShotReferrer(segmenter, min_score=0.0).refer(image, "the car on the left")
    assert result.labels == ("road", "sky", "car")
    assert segmenter.labels == ("road", "sky")  # the active set is left alone
    assert result.mask.shape == (48, 64)
    assert result.found == bool(result.mask.any())
    if result.found:
        x0, y0, x1, y1 = result.bbox
        assert result.mask[y0:y1, x0:x1].sum() == result.mask.sum()
