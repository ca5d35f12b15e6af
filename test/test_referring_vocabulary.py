"""The context vocabulary: which labels a referring phrase competes with when the caller gives none,
and "not found" on a real street frame with the shipped model."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

from lang_seg_ros.cli import main
from lang_seg_ros.data import CAMVID_NAMES
from lang_seg_ros.inference import Segmenter
from lang_seg_ros.referring import ZeroShotReferrer, parse_expression, query_labels
from lang_seg_ros.referring.vocabulary import VOCABULARY_KEY, load_vocabulary, model_vocabulary

VAL = Path("/work/shared/datasets/camvid/val")
FRAME = "0016E5_07959"  # cyclists, a parked car on the right, a pedestrian on the pavement
needs_camvid = pytest.mark.skipif(not (VAL / f"{FRAME}.png").is_file(), reason="CamVid val not available")


def test_shipped_vocabularies():
    assert load_vocabulary("camvid") == tuple(CAMVID_NAMES[:11])
    ade = load_vocabulary("ade20k")
    assert len(ade) == 150 and ade[:3] == ("wall", "building", "sky") and "car" in ade and "giraffe" not in ade
    with pytest.raises(ValueError, match="unknown vocabulary 'coco'"):
        load_vocabulary("coco")


def test_each_model_brings_its_vocabulary(tiny_model, tiny_checkpoint, tmp_path):
    # The embedded default model: the 11 CamVid names it was trained with.
    assert model_vocabulary(Segmenter(device="cpu")) == tuple(CAMVID_NAMES[:11])
    # A model with no stored names and other encoders (as official checkpoints): ADE20K's 150.
    assert model_vocabulary(tiny_model) == load_vocabulary("ade20k")
    assert model_vocabulary(tiny_model, tiny_checkpoint) == load_vocabulary("ade20k")
    # A checkpoint that stores its names: those.
    with safe_open(str(tiny_checkpoint), framework="np") as f:
        tensors, meta = {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())
    named = tmp_path / "named.safetensors"
    save_file(tensors, str(named), metadata={**meta, VOCABULARY_KEY: json.dumps(["floor", "mug", "table"])})
    assert model_vocabulary(tiny_model, named) == ("floor", "mug", "table")
    # what save_checkpoint(labels=) writes (the trainer: its training names) is what is read
    from lang_seg_ros.model import save_checkpoint
    from lang_seg_ros.model.checkpoint import LABELS_KEY

    assert LABELS_KEY == VOCABULARY_KEY
    saved = save_checkpoint(tiny_model, tmp_path / "saved.safetensors", labels=["sky", "mug"])
    assert model_vocabulary(tiny_model, saved) == ("sky", "mug")


def test_a_model_trained_here_brings_its_trained_names_without_its_file(tiny_model):
    """What `lang-seg train` writes into the model's config (per class its wordings, the data set's
    name first) makes it closed-set wherever it is used, with no checkpoint path passed along (the
    node's referrer passes none): its class names, read with the phrase reader's rules, not
    ADE20K's 150 classes."""
    from dataclasses import replace

    from lang_seg_ros.referring.vocabulary import is_training_vocabulary

    assert not is_training_vocabulary(tiny_model)
    tiny_model.config.text_encoder = replace(tiny_model.config.text_encoder, vocabulary=(
        ("floor", "ground", "carpet"), ("mug", "cup"), ("table", "desk")))
    assert model_vocabulary(tiny_model) == ("floor", "mug", "table")
    assert is_training_vocabulary(tiny_model)
    referrer = ZeroShotReferrer(Segmenter(tiny_model, device="cpu", working_size=64))
    assert referrer.vocabulary == ("floor", "mug", "table")
    image = (np.random.default_rng(2).random((48, 64, 3)) * 255).astype(np.uint8)
    # the phrase competes with the trained names (the tiny model's random text encoder may read
    # "giraffe" as one of them: the near-synonym rule of a training vocabulary)
    assert referrer.refer(image, "the giraffe on the left").labels[:3] == ("floor", "mug", "table")


def test_query_labels_add_the_vocabulary_and_the_phrase_once():
    query = parse_expression("the Car next to the dog")
    assert query_labels(query, ["road", "car"], ["sky", "road", "CAR"]) == ("road", "car", "sky", "dog")
    assert query_labels(query) == ("other", "car", "dog")  # no context at all: the bare background


def test_refer_without_labels_uses_the_model_vocabulary(tiny_model):
    image = (np.random.default_rng(2).random((48, 64, 3)) * 255).astype(np.uint8)
    referrer = ZeroShotReferrer(Segmenter(tiny_model, device="cpu", working_size=64), min_score=0.0)
    result = referrer.refer(image, "the giraffe on the left")
    assert result.labels == load_vocabulary("ade20k") + ("giraffe",)
    assert referrer.refer(image, "the car", labels=["road", "car"]).labels == ("road", "car")


@needs_camvid
def test_an_absent_category_is_not_found_on_a_real_street_frame(tmp_path):
    """`lang-seg refer` with the shipped model and no --labels: the giraffe competes with the 11
    street labels and loses everywhere; the parked car is found, with the 255/0 mask and JSON."""
    image = str(VAL / f"{FRAME}.png")
    mask_path, json_path = tmp_path / "mask.png", tmp_path / "out.json"
    assert main(["refer", image, "the giraffe", "--out", str(mask_path), "--json", str(json_path),
                 "--device", "cpu"]) == 0
    answer = json.loads(json_path.read_text())
    assert answer["found"] is False and answer["bbox"] is None and answer["score"] == 0.0
    assert answer["labels"] == list(CAMVID_NAMES[:11]) + ["giraffe"]
    assert not cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED).any()

    assert main(["refer", image, "the car on the right", "--out", str(mask_path), "--json", str(json_path),
                 "--device", "cpu"]) == 0
    answer = json.loads(json_path.read_text())
    mask = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
    assert answer["found"] is True and set(np.unique(mask)) == {0, 255}
    x0, y0, x1, y1 = answer["bbox"]
    assert x0 > 300 and (mask[y0:y1, x0:x1] == 255).sum() == (mask == 255).sum()  # the parked car, right side

    # A near-synonym of a trained name reads as that name: the pedestrian on the pavement, right.
    assert main(["refer", image, "the person on the right", "--out", str(mask_path), "--json", str(json_path),
                 "--device", "cpu"]) == 0
    answer = json.loads(json_path.read_text())
    assert answer["found"] and answer["category"] == "pedestrian"
    assert "'person' read as 'pedestrian'" in answer["reason"]
    assert answer["bbox"][0] > 400


def test_near_synonyms_read_as_labels_far_words_do_not():
    from lang_seg_ros.referring.aliases import resolve_aliases

    vectors = {"pedestrian": [1, 0, 0], "car": [0, 1, 0], "road": [0, 0, 1],
               "person": [0.8, 0.1, 0.0], "dog": [0.4, 0.4, 0.4], "automobile": [0.1, 0.9, 0.1]}

    def encode(texts):
        return np.asarray([vectors[t] for t in texts], np.float32)

    labels = ["pedestrian", "car", "road"]
    query, note = resolve_aliases(parse_expression("the person next to the automobile"), labels, encode)
    assert (query.category, query.relation) == ("pedestrian", ("next_to", "car"))
    assert note == "'person' read as 'pedestrian'; 'automobile' read as 'car'"
    query, note = resolve_aliases(parse_expression("the dog on the left"), labels, encode)  # cosine 0.58 < 0.6
    assert query == parse_expression("the dog on the left") and note == ""
    assert resolve_aliases(parse_expression("the dog"), labels, encode, min_similarity=0.5)[0].category == "pedestrian"


def test_the_pipeline_adds_the_vocabulary_when_asked(tiny_model):
    from lang_seg_ros.pipeline import FramePipeline, PipelineSettings

    image = (np.random.default_rng(3).random((48, 64, 3)) * 255).astype(np.uint8)
    pipeline = FramePipeline(Segmenter(tiny_model, device="cpu"), PipelineSettings(working_size=64))
    pipeline.set_labels("road, car")
    pipeline.set_expression("the giraffe")
    assert pipeline.process(image).referring.result.labels == ("road", "car", "giraffe")  # default: off
    pipeline.configure(PipelineSettings(working_size=64, referring_vocabulary=True))
    ade = [label for label in load_vocabulary("ade20k") if label not in ("road", "car")]
    expected = ("road", "car", *ade, "giraffe")
    assert pipeline.process(image).referring.result.labels == expected
    assert pipeline.refer("the giraffe").result.labels == expected  # the service, on the latest frame
