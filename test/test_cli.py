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


def _loaded_after(code: str) -> set[str]:
    """The modules loaded by `code` in a fresh interpreter."""
    script = f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    return set(out.strip().splitlines()[-1].split())


def test_building_the_parser_loads_neither_torch_nor_the_trainer():
    """`lang-seg --help` took 9 s when the parser imported the training package (and torch)."""
    loaded = _loaded_after("from lang_seg_ros.cli import build_parser; build_parser()")
    assert "torch" not in loaded and not any(m.startswith("lang_seg_ros.train.") and m != "lang_seg_ros.train.commands"
                                             for m in loaded)


def test_segment_never_imports_training(image_path, tiny_checkpoint, tmp_path):
    loaded = _loaded_after(
        "from lang_seg_ros.cli import main; "
        f"main(['segment', {str(image_path)!r}, '--labels', 'a, b', '--checkpoint', {str(tiny_checkpoint)!r}, "
        f"'--out', {str(tmp_path / 'o.png')!r}, '--device', 'cpu', '--working-size', '64'])")
    assert "torch" in loaded and "lang_seg_ros.inference.segmenter" in loaded  # it did run the model
    assert not any(m.startswith(("lang_seg_ros.train.", "lang_seg_ros.data")) and m != "lang_seg_ros.train.commands"
                   for m in loaded)


def test_info_shows_the_fields_the_architecture_uses_and_reads_onnx(tiny_model, tiny_checkpoint, tmp_path, capsys):
    import copy
    import json

    from lang_seg_ros.inference.backends.onnx_export import export_onnx
    from lang_seg_ros.model.checkpoint import default_checkpoint_path

    assert main(["info", str(default_checkpoint_path())]) == 0  # EfficientNet + MiniLM: no ViT fields
    cnn = json.loads(capsys.readouterr().out)["config"]
    assert cnn["image_encoder"]["type"] == "timm_cnn" and "patch_size" not in cnn["image_encoder"]
    assert "num_heads" not in cnn["image_encoder"] and "block_depth" not in cnn
    assert main(["info", str(tiny_checkpoint)]) == 0
    vit = json.loads(capsys.readouterr().out)["config"]
    assert vit["image_encoder"]["patch_size"] == tiny_model.config.image_encoder.patch_size
    onnx_path = tmp_path / "tiny.onnx"
    export_onnx(copy.deepcopy(tiny_model), onnx_path, 64, 64)  # the session fixture stays untouched
    assert main(["info", str(onnx_path)]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert exported["format"] == "onnx" and exported["input_size"] == [64, 64] and exported["config"] == vit


def test_refer_overlay_is_the_image_with_the_object_and_a_caption(tmp_path):
    """No legend panel for one object (it was mostly blank): the frame, the object tinted and boxed."""
    from lang_seg_ros.visualize import REFERRED_COLOR, render_referring

    image = np.full((60, 80, 3), 128, np.uint8)
    mask = np.zeros((60, 80), bool)
    mask[30:50, 10:30] = True
    out = render_referring(image, mask, (10, 30, 30, 50), "the car on the left: 0.83")
    assert out.shape == image.shape
    inside = out[35:45, 15:25].reshape(-1, 3).astype(int)
    assert (np.abs(inside - (np.array(REFERRED_COLOR) + 128) // 2) <= 1).all()  # tinted
    assert (out[55:, 50:] == 128).all()  # the rest of the frame untouched
    assert out[:5].mean() < 128 and (out[:14] == 255).any()  # the caption bar: dark, with white text


def test_segment_runs_its_one_image_eager_without_building_a_graph(image_path, tiny_checkpoint, tmp_path,
                                                                    monkeypatch):
    """A traced graph (~0.6 s to build for the default model) would be used for one image only:
    `lang-seg segment` skips it (forward 770 -> 116 ms for the README's example)."""
    from lang_seg_ros.inference.backends.graphs import TracedImageBranch

    built = []
    build = TracedImageBranch._build
    monkeypatch.setattr(TracedImageBranch, "_build", lambda self, images: built.append(images.shape) or build(self, images))
    code = main(["segment", str(image_path), "--labels", "dog, grass", "--checkpoint", str(tiny_checkpoint),
                 "--out", str(tmp_path / "o.png"), "--device", "cpu", "--working-size", "96"])
    assert code == 0 and built == []
