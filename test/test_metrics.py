"""Metrics against hand-made confusion matrices."""

import json

import numpy as np
import pytest

from lang_seg_ros.train.metrics import (
    ConfusionMatrix,
    confusion_matrix,
    fb_iou,
    mean_iou,
    per_class_iou,
    pixel_accuracy,
    plot_confusion_matrix,
    summarize,
)


def test_confusion_matrix_counts_and_ignore():
    target = np.array([[0, 0, 1], [1, 2, 255]])
    pred = np.array([[0, 1, 1], [1, 0, 2]])
    conf = confusion_matrix(pred, target, 3, ignore_index=255)
    expected = np.array([[1, 1, 0], [0, 2, 0], [1, 0, 0]])
    np.testing.assert_array_equal(conf, expected)


def test_out_of_range_target_skipped_and_bad_pred_rejected():
    conf = confusion_matrix(np.array([0, 1]), np.array([0, 7]), 2, ignore_index=255)
    np.testing.assert_array_equal(conf, [[1, 0], [0, 0]])
    with pytest.raises(ValueError):
        confusion_matrix(np.array([-1]), np.array([0]), 2)


def test_iou_accuracy_by_hand():
    # rows = ground truth, columns = prediction
    conf = np.array([[50, 10, 0], [5, 30, 5], [0, 0, 0]])
    # IoU0 = 50 / (60 + 55 - 50) = 50/65; IoU1 = 30 / (40 + 40 - 30) = 30/50;
    # label 2: gt 0, predicted 5 -> IoU 0 (union 5)
    iou = per_class_iou(conf)
    np.testing.assert_allclose(iou, [50 / 65, 30 / 50, 0.0])
    assert mean_iou(conf) == pytest.approx((50 / 65 + 0.6 + 0.0) / 3)
    assert pixel_accuracy(conf) == pytest.approx(80 / 100)


def test_absent_label_left_out_of_mean():
    conf = np.array([[4, 0, 0], [0, 2, 0], [0, 0, 0]])
    iou = per_class_iou(conf)
    assert np.isnan(iou[2])
    assert mean_iou(conf) == pytest.approx(1.0)


def test_fb_iou_by_hand():
    conf = np.array([[50, 10, 0], [5, 30, 5], [0, 2, 8]])
    # background 0 vs the rest: [[50, 10], [5, 45]] -> IoU_bg = 50/65, IoU_fg = 45/60
    assert fb_iou(conf, 0) == pytest.approx((50 / 65 + 45 / 60) / 2)
    # background = labels {0, 1}: [[95, 5], [2, 8]] -> 95/102, 8/15
    assert fb_iou(conf, [0, 1]) == pytest.approx((95 / 102 + 8 / 15) / 2)


def test_accumulator_and_summary_json(tmp_path):
    acc = ConfusionMatrix(["a", "b"], ignore_index=9)
    acc.update(np.array([0, 0, 1]), np.array([0, 1, 1]))
    acc.update(np.array([1, 0]), np.array([1, 9]))
    np.testing.assert_array_equal(acc.conf, [[1, 0], [1, 2]])
    s = acc.summary()
    json.dumps(s)  # JSON-ready
    assert s["miou"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert s["per_class_iou"] == {"a": pytest.approx(0.5), "b": pytest.approx(2 / 3)}
    assert s["pixel_accuracy"] == pytest.approx(3 / 4)
    assert s["mean_accuracy"] == pytest.approx((1 + 2 / 3) / 2)
    none = summarize(np.array([[3, 0], [0, 0]]), ["a", "b"])
    assert none["per_class_iou"]["b"] is None


def test_plot_writes_png(tmp_path):
    cv2 = pytest.importorskip("cv2")
    path = tmp_path / "conf.png"
    img = plot_confusion_matrix(np.array([[5, 1], [2, 8]]), ["road", "sign symbol"], str(path))
    assert img.ndim == 3 and img.dtype == np.uint8
    assert cv2.imread(str(path)) is not None
