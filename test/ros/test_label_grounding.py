"""A label the model never trained on, sent to the real node: the node reads it through the trained
wording WordNet puts it under and says so in its log (docs/ros.md, "labels encoded")."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed: run scripts/setup_ros.sh (ROS 2 Jazzy wheels)")

from harness import serving  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from wordnet_db import write_wordnet  # noqa: E402


@pytest.fixture
def street_checkpoint(tmp_path) -> Path:
    """The tiny random model with a trained vocabulary, as the trainer writes it."""
    torch = pytest.importorskip("torch")
    from lang_seg_ros.model import build_model, save_checkpoint

    torch.manual_seed(0)
    model = build_model("lseg_tiny").eval()
    model.config.text_encoder.vocabulary = (("road", "roadway"), ("pedestrian", "person"))
    return save_checkpoint(model, tmp_path / "street.safetensors")


def test_the_node_logs_how_it_reads_a_label_it_never_trained_on(ros, tmp_path_factory, tmp_path,
                                                                 street_checkpoint, monkeypatch):
    synsets = {"entity": (["entity"], [], 0), "road": (["road"], ["entity"], 0),
               "roadway": (["roadway"], ["road"], 0), "carriageway": (["carriageway"], ["roadway"], 0)}
    index = {lemma: ([name], 1) for name, (lemmas, _, _) in synsets.items() for lemma in lemmas}
    monkeypatch.setenv("WNSEARCHDIR", str(write_wordnet(tmp_path / "wn", synsets, index)))  # the node's WordNet
    with serving(ros, tmp_path_factory, street_checkpoint, "/grounding", labels="carriageway, pedestrian") as node:
        assert node.send(node.make_image()) is not None  # the worker encodes the set before this frame
        line = node.proc.wait_log(r"labels encoded \(set \d+\): carriageway, pedestrian; read through WordNet: "
                                  r"'carriageway' as 'roadway' \(WordNet: hypernym\)", timeout=5.0)
        assert line is not None, node.proc.log()[-2000:]
