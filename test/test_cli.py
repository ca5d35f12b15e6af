"""`lang-seg` from a shell, as users run it."""
from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest

from lang_seg_ros.cli import main


@pytest.fixture(scope="module")
def image_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "street.png"
    rgb = (np.random.default_rng(0).random((90, 120, 3)) * 255).astype(np.uint8)
    cv2.imwrite(str(path), rgb)
    return path


def test_segment_writes_overlay_and_class_id_png_and_prints_shares(image_path, tiny_checkpoint, tmp_path, capsys):
    overlay, mask = tmp_path / "overlay.png", tmp_path / "mask.png"
    code = main(["segment", str(image_path), "--labels", "dog, grass, other", "--checkpoint", str(tiny_checkpoint),
                 "--out", str(overlay), "--mask", str(mask), "--device", "cpu", "--working-size", "96"])
    assert code == 0
    ids = cv2.imread(str(mask), cv2.IMREAD_UNCHANGED)
    assert ids.shape == (90, 120) and ids.dtype == np.uint8 and ids.max() <= 2
    picture = cv2.imread(str(overlay))
    assert picture.shape[0] == 90 and picture.shape[1] > 120  # legend panel on the right
    lines = capsys.readouterr().out.strip().splitlines()
    shares = {line.rsplit(None, 1)[0].strip(): float(line.rsplit(None, 1)[1].rstrip("%")) for line in lines}
    assert set(shares) == {"dog", "grass", "other"}
    assert sum(shares.values()) == pytest.approx(100, abs=0.05)
    for index, label in enumerate(["dog", "grass", "other"]):
        assert shares[label] == pytest.approx(100 * (ids == index).mean(), abs=0.01)


def test_segment_with_published_scales(image_path, tiny_checkpoint, tmp_path):
    code = main(["segment", str(image_path), "--labels", "a, b", "--checkpoint", str(tiny_checkpoint),
                 "--out", str(tmp_path / "o.png"), "--scales", "0.5", "--flip", "--device", "cpu"])
    assert code == 0


def test_errors_are_one_line_messages(image_path, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "lang_seg_ros.cli", "segment", str(image_path), "--labels", "a",
         "--checkpoint", str(tmp_path / "missing.ckpt"), "--out", str(tmp_path / "o.png")],
        capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert "checkpoint not found" in result.stderr and "Traceback" not in result.stderr
    with pytest.raises(SystemExit, match="empty"):
        main(["segment", str(image_path), "--labels", " , ", "--out", str(tmp_path / "o.png"),
              "--checkpoint", str(tmp_path / "missing.ckpt")] + [])


def test_convert_and_info(tiny_model, tmp_path, capsys):
    import torch

    ckpt = tmp_path / "official.ckpt"
    torch.save({"state_dict": {"net." + k: v for k, v in tiny_model.state_dict().items()}}, ckpt)
    assert main(["convert", str(ckpt), str(tmp_path / "own.safetensors"), "--dtype", "fp16"]) == 0
    assert main(["info", str(tmp_path / "own.safetensors")]) == 0
    assert '"embed_dim": 32' in capsys.readouterr().out


def test_the_core_never_imports_rclpy():
    code = ("import sys, lang_seg_ros.model, lang_seg_ros.inference, lang_seg_ros.cli, lang_seg_ros.visualize; "
            "assert 'rclpy' not in sys.modules, 'core imported rclpy'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_refer_writes_a_binary_mask_and_json(image_path, tiny_checkpoint, tmp_path):
    import json

    mask_path, json_path = tmp_path / "mask.png", tmp_path / "out.json"
    code = main(["refer", str(image_path), "the car on the left", "--out", str(mask_path), "--json", str(json_path),
                 "--checkpoint", str(tiny_checkpoint), "--device", "cpu", "--min-score", "0", "--working-size", "96"])
    assert code == 0
    mask = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (90, 120) and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
    answer = json.loads(json_path.read_text())
    assert {"found", "score", "bbox"} <= set(answer)
    if answer["found"]:
        x0, y0, x1, y1 = answer["bbox"]
        assert (mask[y0:y1, x0:x1] == 255).sum() == (mask == 255).sum() > 0
    else:
        assert answer["bbox"] is None and not mask.any()
    # An impossible score threshold: explicitly not found, an all-zero mask.
    main(["refer", str(image_path), "the car", "--out", str(mask_path), "--json", str(json_path),
          "--checkpoint", str(tiny_checkpoint), "--device", "cpu", "--min-score", "1.0"])
    assert json.loads(json_path.read_text())["found"] is False
    assert not cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED).any()


def test_refer_with_a_trained_lts_checkpoint(image_path, tiny_model, tiny_checkpoint, tmp_path):
    import json

    from lang_seg_ros.referring import LocateThenSegment, save_lts
    from lang_seg_ros.model.lts import lts_config

    lts_path = save_lts(LocateThenSegment(lts_config("lts_tiny"), tiny_model), tmp_path / "lts.safetensors")
    mask_path, json_path = tmp_path / "mask.png", tmp_path / "out.json"
    code = main(["refer", str(image_path), "the car on the left", "--out", str(mask_path), "--json", str(json_path),
                 "--checkpoint", str(tiny_checkpoint), "--lts", str(lts_path), "--device", "cpu", "--min-score", "0"])
    assert code == 0
    mask = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
    answer = json.loads(json_path.read_text())
    assert mask.shape == (90, 120)
    assert answer["found"] == bool(mask.any())
