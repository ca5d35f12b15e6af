"""Referring-segmentation metrics against values worked out by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from lang_seg_ros.referring.metrics import ReferringMetrics, intersection_union, referring_metrics


def box(y0: int, y1: int, x0: int, x1: int, shape=(4, 4)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[y0:y1, x0:x1] = True
    return mask


def test_three_samples_by_hand():
    gt = box(0, 2, 0, 2)  # 4 pixels
    preds = [
        box(0, 2, 0, 3),  # I = 4, U = 6, IoU = 2/3
        box(0, 2, 0, 2),  # I = 4, U = 4, IoU = 1
        box(2, 4, 2, 4),  # I = 0, U = 8, IoU = 0
    ]
    m = referring_metrics(preds, [gt] * 3)
    assert m["overall_iou"] == pytest.approx(8 / 18)  # sum I / sum U
    assert m["mean_iou"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert m["precision@0.5"] == pytest.approx(2 / 3)
    assert m["precision@0.6"] == pytest.approx(2 / 3)
    assert m["precision@0.7"] == pytest.approx(1 / 3)
    assert m["precision@0.8"] == pytest.approx(1 / 3)
    assert m["precision@0.9"] == pytest.approx(1 / 3)
    assert m["count"] == 3


def test_overall_iou_weighs_large_objects_more_than_mean_iou():
    big_gt, big_pred = box(0, 10, 0, 10, (10, 10)), box(0, 10, 0, 9, (10, 10))  # IoU 0.9, U = 100
    small_gt, small_pred = box(0, 1, 0, 2, (10, 10)), box(0, 1, 0, 1, (10, 10))  # IoU 0.5, U = 2
    m = referring_metrics([big_pred, small_pred], [big_gt, small_gt])
    assert m["overall_iou"] == pytest.approx(91 / 102)
    assert m["mean_iou"] == pytest.approx(0.7)


def test_precision_counts_an_iou_equal_to_the_threshold():
    metrics = ReferringMetrics()
    assert metrics.update(box(0, 1, 0, 2), box(0, 1, 0, 1)) == pytest.approx(0.5)
    assert metrics.compute()["precision@0.5"] == 1.0


def test_empty_prediction_and_ground_truth_score_zero():
    assert intersection_union(np.zeros((3, 3)), np.zeros((3, 3))) == (0, 0)
    m = referring_metrics([np.zeros((3, 3), bool)], [np.zeros((3, 3), bool)])
    assert m["mean_iou"] == 0.0
    assert math.isnan(m["overall_iou"])


def test_no_samples_gives_nan_and_shape_mismatch_raises():
    m = ReferringMetrics().compute()
    assert m["count"] == 0 and math.isnan(m["mean_iou"]) and math.isnan(m["precision@0.5"])
    with pytest.raises(ValueError, match="shapes differ"):
        intersection_union(np.zeros((2, 2)), np.zeros((2, 3)))
