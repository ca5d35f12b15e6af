"""Label grounding: a label the model never trained on is read through the trained wordings WordNet
puts it under ("carriageway" is a kind of roadway), on a constructed WordNet database and, when
wordnet-base is installed, on the real one with the shipped model."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from wordnet_db import write_wordnet

from lang_seg_ros.model.grounding import LabelGrounding, encode_labels, grounded, grounding_for
from lang_seg_ros.wordnet import WordNet, find_wordnet

REPO = Path(__file__).resolve().parents[1]

#: A street model's trained wordings, grouped by class (as the trainer writes them).
VOCABULARY = (("road", "roadway", "asphalt"), ("pavement", "sidewalk", "walkway", "pavements"),
              ("pedestrian", "person"), ("bicyclist", "rider"))


@pytest.fixture
def street_wordnet(tmp_path) -> Path:
    synsets = {
        "entity": (["entity"], [], 0), "physical": (["physical_entity"], ["entity"], 0),
        "road": (["road", "route"], ["physical"], 0), "roadway": (["roadway"], ["road"], 0),
        "carriageway": (["carriageway"], ["roadway"], 0),
        # WordNet's first "pavement" is the paving material, of which blacktop and asphalt are kinds
        "paving": (["paving", "pavement", "paving_material"], ["physical"], 0),
        "blacktop": (["blacktop"], ["paving"], 0), "asphalt": (["asphalt"], ["paving"], 0),
        "walk": (["walk", "walkway"], ["physical"], 0), "sidewalk": (["sidewalk", "pavement"], ["walk"], 0),
        "person": (["person"], ["physical"], 0), "pedestrian": (["pedestrian", "walker"], ["person"], 0),
        "passerby": (["passerby", "passer-by"], ["pedestrian"], 0), "rider": (["rider"], ["person"], 0),
        "dog": (["dog"], ["physical"], 0),
    }
    index = {lemma: ([name], 1) for name, (lemmas, _, _) in synsets.items() for lemma in lemmas}
    index["pavement"] = (["paving", "sidewalk"], 2)
    return write_wordnet(tmp_path / "wn", synsets, index)


def test_unseen_labels_are_read_through_the_trained_wordings_above_them(street_wordnet):
    grounding = LabelGrounding(VOCABULARY, WordNet(street_wordnet))
    assert grounding.ground("carriageway").wordings == ("roadway",)  # a kind of roadway
    assert grounding.ground("carriageway").how == "hypernym"
    assert grounding.ground("Passer-by").wordings == ("pedestrian",)
    assert grounding.ground("bike rider").wordings == ("rider",)  # not in WordNet: its head noun
    assert grounding.ground("bike rider").how == "head noun"
    assert grounding.ground("road").how == "trained"  # trained wordings stay as they are
    assert grounding.ground("road").wordings == ()
    assert grounding.ground("dog").wordings == ()  # under no trained wording: itself, and may lose
    assert grounding.ground("zebra crossing").wordings == ()  # neither it nor its head is known


def test_a_wordings_class_picks_its_sense(street_wordnet):
    """"pavement" beside "sidewalk" means the walk, not the paving material blacktop is a kind of."""
    wordnet = WordNet(street_wordnet)
    assert LabelGrounding(VOCABULARY, wordnet).ground("blacktop").wordings == ()
    alone = tuple((word,) for group in VOCABULARY for word in group)  # no class to say which sense
    assert LabelGrounding(alone, wordnet).ground("blacktop").wordings == ("pavement", "pavements")


def fixed_vector(text: str) -> torch.Tensor:
    """A frozen encoder's unit vector for `text` (the same every call, different per string)."""
    return F.normalize(torch.randn(8, generator=torch.Generator().manual_seed(sum(map(ord, text)) * 31 + len(text))),
                       dim=0)


def encode(texts) -> torch.Tensor:
    return torch.stack([fixed_vector(t) for t in texts])


def test_grounded_embedding_is_the_mean_of_the_label_and_its_wordings(street_wordnet):
    vectors = {t: fixed_vector(t) for t in ("road", "roadway", "carriageway", "dog", "passer-by", "pedestrian")}
    grounding = LabelGrounding(VOCABULARY, WordNet(street_wordnet))
    out = grounding.encode(["road", "carriageway", "dog", "passer-by"], encode)
    assert out.shape == (4, 8)
    torch.testing.assert_close(out[0], vectors["road"])  # trained: unchanged
    torch.testing.assert_close(out[2], vectors["dog"])  # not placed: unchanged
    torch.testing.assert_close(out[1], F.normalize(vectors["carriageway"] + vectors["roadway"], dim=0))
    torch.testing.assert_close(out[3], F.normalize(vectors["passer-by"] + vectors["pedestrian"], dim=0))
    torch.testing.assert_close(out.norm(dim=1), torch.ones(4))


def test_without_wordnet_or_vocabulary_labels_are_encoded_as_they_are(street_wordnet, monkeypatch):
    assert LabelGrounding(VOCABULARY, None).ground("carriageway").wordings == ()

    class Encoder(torch.nn.Module):
        def encode_labels(self, labels):
            return encode(labels)

    raw = Encoder().encode_labels(["carriageway", "road"])
    torch.testing.assert_close(encode_labels(Encoder(), ["carriageway", "road"], ()), raw)  # official checkpoints
    monkeypatch.setenv("WNSEARCHDIR", str(street_wordnet))
    grounding_for.cache_clear()
    try:
        assert not torch.allclose(encode_labels(Encoder(), ["carriageway", "road"], VOCABULARY), raw)
        assert [str(g) for g in grounded(VOCABULARY, ["carriageway", "road"])] == [
            "'carriageway' as 'roadway' (WordNet: hypernym)"]
    finally:
        grounding_for.cache_clear()
    with pytest.raises(ValueError, match="at least one label"):
        encode_labels(Encoder(), [], VOCABULARY)


def _wording_set(name: str) -> list[str]:
    lines = (REPO / "configs/wordings/camvid" / f"{name}.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_the_shipped_model_knows_its_trained_wordings_and_no_held_out_one():
    from lang_seg_ros.model import load_checkpoint
    from lang_seg_ros.model.checkpoint import default_checkpoint_path

    config = load_checkpoint(default_checkpoint_path()).config
    vocabulary = config.text_encoder.vocabulary
    assert [group[0] for group in vocabulary] == _wording_set("training_names")
    assert config.summary()["text_encoder"]["vocabulary"].startswith("127 trained wordings of 11 classes: sky, ")
    assert "roadway" in vocabulary[3] and "sidewalk" in vocabulary[4]
    words = {w.lower() for group in vocabulary for w in group}
    for held_out in ("heldout", "heldout_b"):
        assert not words & {w.lower() for w in _wording_set(held_out)}


@pytest.mark.skipif(find_wordnet() is None, reason="WordNet not installed (wordnet-base)")
def test_the_real_wordnet_grounds_the_held_out_wordings_of_the_shipped_model():
    from lang_seg_ros.model import load_checkpoint
    from lang_seg_ros.model.checkpoint import default_checkpoint_path

    vocabulary = load_checkpoint(default_checkpoint_path()).config.text_encoder.vocabulary
    read = {g.label: g.wordings for g in grounded(vocabulary, _wording_set("heldout"))}
    assert read["carriageway"] == ("roadway",)  # was 96 % swallowed by "footpath"
    assert "pedestrian" in read["passer-by"]  # was 76 % swallowed by "bike rider"
    assert "car" in read["hatchback"]
    assert "footpath" not in read  # a kind of path, under no trained wording: itself


@pytest.mark.parametrize("vocabulary", [[["road", 3]], ["road"], [["x" * 201]], [["w"] * 20_001], "road", [[None]]])
def test_a_checkpoint_vocabulary_that_is_not_short_strings_is_refused(vocabulary):
    from lang_seg_ros.model import TextEncoderConfig

    with pytest.raises(ValueError, match="vocabulary"):
        TextEncoderConfig(vocabulary=vocabulary)
