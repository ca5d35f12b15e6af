"""The training curve (`curve.png`): drawn from `log.jsonl`, a resumed run's repeated
iterations counted once, validation lines for every wording set."""

import json

import pytest

cv2 = pytest.importorskip("cv2")

from lang_seg_ros.train.curves import plot_training_curve, read_log  # noqa: E402


def _write_log(path):
    recs = [{"iteration": i, "loss": 2.0 / i, "loss_smooth": 2.0 / i} for i in range(1, 11)]
    recs.insert(5, {"iteration": 4, "loss": 9.0, "loss_smooth": 9.0})  # a resumed run repeats iteration 4
    recs += [{"iteration": 5, "val_miou": 0.5, "val_wording_miou": {"heldout": 0.3}},
             {"iteration": 10, "val_miou": 0.6, "val_wording_miou": {"heldout": 0.4}}]
    path.write_text("\n".join(json.dumps(r) for r in recs) + "\n")


def test_read_log_keeps_the_latest_record_per_iteration(tmp_path):
    _write_log(tmp_path / "log.jsonl")
    train, val = read_log(tmp_path / "log.jsonl")
    assert [r["iteration"] for r in train] == list(range(1, 11)) and train[3]["loss"] == 9.0
    assert [r["val_miou"] for r in val] == [0.5, 0.6]


def test_curve_png_shows_loss_and_every_validation_line(tmp_path):
    _write_log(tmp_path / "log.jsonl")
    out = plot_training_curve(tmp_path / "log.jsonl", tmp_path / "curve.png")
    img = cv2.imread(str(out))  # BGR
    assert img.shape == (480, 900, 3)
    b, g, r = (img[..., k].astype(int) for k in range(3))
    assert ((b > 150) & (r < 80)).sum() > 100  # the smoothed loss (blue)
    assert ((r > 150) & (b < 80) & (g < 80)).sum() > 50  # val mIoU, training names (red)
    assert ((g > 120) & (r < 80) & (b < 80)).sum() > 50  # val mIoU, heldout (green)
