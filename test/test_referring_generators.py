"""The second expression generator ("pieces": every visible piece counts), worded expressions, the
report's per-class / worded tables and the threshold sweep, on constructed label maps."""
from __future__ import annotations

import zlib

import numpy as np

from lang_seg_ros.data.referring_camvid import (RefExpression, frame_expressions, generate, piece_expressions,
                                                word_expressions)
from lang_seg_ros.referring.benchmark import choose_thresholds, evaluate_referring, report_tables
from lang_seg_ros.referring.wordings import CAMVID_WORDED, CAMVID_WORDED_ABSENT
from lang_seg_ros.referring.zero_shot import ReferringResult

CAR, PEDESTRIAN, ROAD = 8, 9, 3


def street() -> np.ndarray:
    """120x200: two cars (900 and 2500 px) and, far left, a 20 px piece of a third; two
    pedestrians of 400 and 200 px."""
    label_map = np.full((120, 200), ROAD, np.uint8)
    label_map[60:90, 40:70] = CAR       # 900 px
    label_map[50:100, 120:170] = CAR    # 2500 px, the largest, on the right
    label_map[100:104, 2:7] = CAR       # 20 px: a car cut off by the frame edge, the leftmost piece
    label_map[50:90, 90:100] = PEDESTRIAN  # 400 px
    label_map[60:80, 180:190] = PEDESTRIAN  # 200 px, the rightmost piece
    return label_map


def by_text(examples) -> dict:
    return {e.expression: e for e in examples}


def test_pieces_count_every_visible_piece():
    label_map = street()
    got = by_text(piece_expressions(label_map, "f", min_area=400, absent=0))
    # the leftmost car piece is 20 px: "the car on the left" is no fair question, left out
    assert "the car on the left" not in got
    right = got["the car on the right"].target
    assert right[75, 150] and right.sum() == 2500
    assert got["the largest car"].target.sum() == 2500
    # the rightmost pedestrian piece is 200 px (< min_area): "on the right" left out; the largest is
    # only 2x the runner-up piece's area -> kept (area_ratio 1.5)
    assert "the pedestrian on the right" not in got
    assert got["the largest pedestrian"].target.sum() == 400
    assert got["the pedestrian on the left"].target.sum() == 400
    assert all(e.generator == "pieces" for e in got.values())
    # the named generator ignores pieces under min_area / 16 (25 px): for it the 900 px car is left
    named = by_text(frame_expressions(label_map, "f", min_area=400))
    assert "the car on the left" in named and named["the car on the left"].target.sum() == 900


def test_pieces_absent_categories_on_every_third_frame():
    frames = [f"frame{i}" for i in range(30)]
    with_absent = [f for f in frames if any(not e.positive for e in piece_expressions(street(), f))]
    assert with_absent == [f for f in frames if zlib.crc32(f"0|{f}".encode()) % 3 == 0]
    absent = [e for f in with_absent for e in piece_expressions(street(), f) if not e.positive]
    assert all(e.target is None for e in absent) and len(absent) == 2 * len(with_absent)
    assert {e.template for e in absent} <= {"absent_far", "absent_worded"}
    assert all(e.worded == (e.category in CAMVID_WORDED_ABSENT) for e in absent)


def test_worded_expressions_replace_the_class_name_with_held_out_wordings():
    label_map = street()
    plain = frame_expressions(label_map, "f", min_area=400)
    worded = frame_expressions(label_map, "f", min_area=400, worded=1.0)
    assert [e.target is None for e in plain] == [e.target is None for e in worded]
    for before, after in zip(plain, worded):
        if before.positive and before.template != "only_synonym":
            assert after.worded and after.expression != before.expression
            word = next(w for w in CAMVID_WORDED[before.category] if w in after.expression)
            assert after.expression == before.expression.replace(before.category, word, 1)
        else:
            assert after == before
    # a quarter, deterministically
    many = [RefExpression(f"f{i}", "the car on the left", "left", "car", np.ones((2, 2), bool)) for i in range(400)]
    first, second = word_expressions(many, 0.25, seed=1), word_expressions(many, 0.25, seed=1)
    share = np.mean([e.worded for e in first])
    assert 0.2 < share < 0.3 and [e.expression for e in first] == [e.expression for e in second]
    assert {e.generator for e in generate(label_map, "f", ("named", "pieces"))} == {"named", "pieces"}


def answer(mask: np.ndarray | None) -> ReferringResult:
    found = mask is not None and bool(mask.any())
    empty = np.zeros((120, 200), bool)
    return ReferringResult("", None, found, 0.9 if found else 0.0, mask if found else empty, None, None, (), "")


def test_report_tables_split_classes_templates_and_wordings():
    label_map = street()
    examples = generate(label_map, "frame0", ("named", "pieces"), min_area=400, worded=0.5)
    truth = {e.expression: e.target for e in examples}

    def oracle_but_worded_wrong(image, texts):  # every worded expression answered "not found"
        worded = {e.expression for e in examples if e.worded}
        return [answer(None if t in worded else truth[t]) for t in texts]

    report = evaluate_referring(oracle_but_worded_wrong, [(None, examples)])
    pieces = report["generators"]["pieces"]
    assert set(report["generators"]) == {"named", "pieces"}
    assert pieces["wordings"]["named"].get("precision_at_0_5", 1.0) == 1.0
    if "worded" in pieces["wordings"] and "positives" in pieces["wordings"]["worded"]:
        assert pieces["wordings"]["worded"]["precision_at_0_5"] == 0.0
    assert "car/largest" in pieces["class_templates"] and "car/named" in pieces["class_wordings"] or \
        "car/worded" in pieces["class_wordings"]
    text = report_tables(report)
    assert "### generator: named" in text and "### generator: pieces" in text and "| car |" in text


class Sweepable:
    """A stand-in referrer for the sweep: candidates are the ground-truth components, and each
    threshold setting is visible in the answer (min_score above 0.5 loses every object)."""

    def __init__(self, label_map):
        self.label_map = label_map
        self.min_score, self.pixel_threshold, self.split_depth, self.min_area_fraction = 0.5, 0.6, 0.2, 0.001
        self.relative_area = 0.1
        self.segmenter = self

    def context(self, labels=None):
        return ("road", "car", "pedestrian")

    def resolve(self, query, context):
        return query, ""

    def segment_sets(self, image, sets, color_order):
        return [type("R", (), {"label_map": self.label_map, "confidence": None, "labels": s})() for s in sets]

    def regions(self, query, label_map, confidence, labels):
        return [query.category]

    def answer_regions(self, query, regions, labels, shape):
        examples = {e.expression: e for e in frame_expressions(self.label_map, "f", min_area=400)}
        target = examples.get(query.expression)
        mask = target.target if target is not None and self.min_score <= 0.5 else None
        return answer(mask)


def test_choose_thresholds_ranks_settings_by_per_class_accuracy():
    label_map = street()
    examples = frame_expressions(label_map, "f", min_area=400, absent_far=1, absent_street=0)
    grid = {"min_score": (0.4, 0.6), "relative_area": (0.0,)}
    choice = choose_thresholds(Sweepable(label_map), [(None, examples)], grid=grid)
    assert choice["chosen"] == {"min_score": 0.4, "relative_area": 0.0}
    best, worst = choice["ranked"]
    assert best["score"] == 1.0 and worst["score"] == 0.0 and best["absent"] == worst["absent"] == 1.0
