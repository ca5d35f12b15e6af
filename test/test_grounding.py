"""Label grounding: a label the model never trained on is read through the trained wordings WordNet
puts it under ("carriageway" is a kind of roadway), on a constructed WordNet database and, when
wordnet-base is installed, on the real one with the shipped model."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from wordnet_db import write_wordnet

from lang_seg_ros.model import TextEncoderConfig
from lang_seg_ros.model.grounding import (Grounding, LabelGrounding, encode_labels, grounded, grounding_for,
                                         wordnet_missing)
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
    alone = (("pavement", "pavements"), ("sidewalk",), ("walkway",))  # no other wording to say which sense
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


class Encoder(torch.nn.Module):
    """A frozen text encoder (`fixed_vector` per string)."""

    def encode_labels(self, labels):
        return encode(labels)


@pytest.fixture
def use_wordnet(monkeypatch):
    """Point WordNet lookups at a folder (None: no WordNet installed); grounding re-reads it."""
    def use(folder):
        monkeypatch.setenv("WNSEARCHDIR", str(folder) if folder else "")
        monkeypatch.setattr("lang_seg_ros.wordnet._SEARCH", () if folder is None else (str(folder),))
        grounding_for.cache_clear()
    yield use
    grounding_for.cache_clear()


def test_without_wordnet_or_vocabulary_labels_are_encoded_as_they_are(street_wordnet, use_wordnet, caplog):
    labels = ["carriageway", "road"]
    raw = Encoder().encode_labels(labels)
    official = TextEncoderConfig(type="sentence_transformers")
    street = TextEncoderConfig(type="sentence_transformers", vocabulary=VOCABULARY)
    use_wordnet(street_wordnet)
    torch.testing.assert_close(encode_labels(Encoder(), labels, official), raw)  # no vocabulary: as before
    assert not torch.allclose(encode_labels(Encoder(), labels, street), raw)
    assert [str(g) for g in grounded(street, labels)] == ["'carriageway' as 'roadway' (WordNet: hypernym)"]
    assert not wordnet_missing(street) and not wordnet_missing(official)
    use_wordnet(None)  # no WordNet on this machine: a warning, and labels as they are
    assert find_wordnet() is None
    with caplog.at_level("WARNING", logger="lang_seg_ros.model.grounding"):
        torch.testing.assert_close(encode_labels(Encoder(), labels, street), raw)
    assert "WordNet not found" in caplog.text and "11 trained wordings" in caplog.text
    assert wordnet_missing(street) and grounded(street, labels) == []
    with pytest.raises(ValueError, match="at least one label"):
        encode_labels(Encoder(), [], street)


def test_negatives_stay_as_they_are_and_untagged_senses_must_agree(tmp_path):
    synsets = {
        "entity": (["entity"], [], 0), "person": (["person"], ["entity"], 0),
        "fierce_person": (["tiger"], ["person"], 0), "cat": (["big_cat"], ["entity"], 0),
        "tiger_cat": (["tiger"], ["cat"], 0), "road": (["road"], ["entity"], 0),
        # "hatch": a car (untagged senses that agree) or a door (no trained wording: no vote)
        "car": (["car"], ["entity"], 0), "hatch_car": (["hatch"], ["car"], 0), "door": (["door"], ["entity"], 0),
        "hatch_door": (["hatch"], ["door"], 0),
        # "lane": a road or a person's name (untagged senses that disagree)
        "lane_road": (["lane"], ["road"], 0), "lane_person": (["lane"], ["person"], 0),
        "bike": (["bike"], ["entity"], 0),
    }
    index = {"tiger": (["fierce_person", "tiger_cat"], 1), "person": (["person"], 1), "road": (["road"], 1),
             "car": (["car"], 1), "hatch": (["hatch_door", "hatch_car"], 0), "door": (["door"], 1),
             "lane": (["lane_road", "lane_person"], 0), "bike": (["bike"], 1), "big_cat": (["cat"], 1)}
    wordnet = WordNet(write_wordnet(tmp_path / "wn", synsets, index))
    vocabulary = (("road",), ("person",), ("car",), ("bike",))
    assert LabelGrounding(vocabulary, wordnet).ground("tiger").wordings == ("person",)  # its first sense
    assert LabelGrounding(vocabulary, wordnet, negatives=["Tiger"]).ground("tiger").wordings == ()
    grounding = LabelGrounding(vocabulary, wordnet)
    assert grounding.ground("hatch").wordings == ("car",)
    assert grounding.ground("lane").wordings == ()  # a road or a person: WordNet cannot say which
    assert grounding.ground("e-bike").wordings == ("bike",)  # a hyphenated word's last part


def test_grounding_a_large_class_is_linear(tmp_path):
    """A class with many wordings (a hostile file may hold 256 per class) is set up in well under a
    second: each wording's senses are checked against the class's once, not against every wording."""
    synsets = {"entity": (["entity"], [], 0)}
    synsets.update({f"s{i}": ([f"w{i}"], ["entity"], 0) for i in range(256)})
    index = {f"w{i}": ([f"s{i}"], 1) for i in range(256)}
    wordnet = WordNet(write_wordnet(tmp_path / "wn", synsets, index))
    groups = [[f"w{i}" for i in range(256)]] * 40
    start = time.perf_counter()
    LabelGrounding(groups, wordnet)
    assert time.perf_counter() - start < 2.0


def test_exported_models_read_labels_as_the_torch_model(tmp_path, street_wordnet, use_wordnet):
    pytest.importorskip("onnx")
    from lang_seg_ros.inference.backends.onnx_export import export_onnx, read_onnx_info, text_model_for
    from lang_seg_ros.model import build_model

    model = build_model("lseg_tiny").eval()
    model.config.text_encoder = TextEncoderConfig(**{**model.config.text_encoder.__dict__,
                                                     "vocabulary": VOCABULARY, "negatives": ("dog",)})
    info = export_onnx(model, tmp_path / "tiny.onnx", height=64, width=64, check=False)
    exported = text_model_for(read_onnx_info(info.path))
    assert exported.config.text_encoder.vocabulary == VOCABULARY
    assert exported.config.text_encoder.negatives == ("dog",)
    use_wordnet(street_wordnet)
    labels = ["carriageway", "road", "dog"]
    torch.testing.assert_close(exported.encode_text(labels), model.encode_text(labels))
    assert not torch.allclose(model.encode_text(labels)[0], model.text_encoder.encode_labels(labels)[0])


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

    text_config = load_checkpoint(default_checkpoint_path()).config.text_encoder
    read = {g.label: g.wordings for g in grounded(text_config, _wording_set("heldout"))}
    assert read["carriageway"] == ("roadway",)  # was 96 % swallowed by "footpath"
    assert "pedestrian" in read["passer-by"]  # was 76 % swallowed by "bike rider"
    assert "car" in read["hatchback"]
    assert "footpath" not in read  # a kind of path, under no trained wording: itself


@pytest.mark.parametrize("vocabulary", [[["road", 3]], ["road"], [["x" * 201]], [["w"] * 20_001], "road", [[None]]])
def test_a_checkpoint_vocabulary_that_is_not_short_strings_is_refused(vocabulary):
    from lang_seg_ros.model import TextEncoderConfig

    with pytest.raises(ValueError, match="vocabulary"):
        TextEncoderConfig(vocabulary=vocabulary)


def test_files_without_a_vocabulary_look_as_before():
    """An official-style config writes no grounding fields (older versions read it), and reads back."""
    from lang_seg_ros.model import LSegConfig

    config = LSegConfig()
    assert "vocabulary" not in config.to_dict()["text_encoder"] and "negatives" not in config.to_dict()["text_encoder"]
    street = config.replace(text_encoder=TextEncoderConfig(vocabulary=(("road", "street"),), negatives=("dog",)))
    assert LSegConfig.from_dict(street.to_dict()) == street
    assert LSegConfig.from_dict(config.to_dict()) == config


def test_how_far_a_label_is_read_and_where_the_walk_stops(tmp_path):
    """Each level says how it was read; three hypernym steps are too far to say which class; a
    phrase's head noun is read through WordNet up to one step; a tagged word's first sense decides."""
    synsets = {
        "entity": (["entity"], [], 0), "road": (["road"], ["entity"], 0), "roadway": (["roadway"], ["road"], 0),
        "carriageway": (["carriageway"], ["roadway"], 0), "lane": (["fast_lane"], ["carriageway"], 0),
        "slow": (["slow_lane"], ["lane"], 0), "route": (["route"], ["road"], 0),
        "person": (["person"], ["entity"], 0), "car": (["car"], ["entity"], 0),
        "jack_car": (["jack"], ["car"], 0), "jack_person": (["jack"], ["person"], 0),
        # "walk": an activity first, the path second; "sidewalk" (trained with it) is a kind of path
        "activity": (["activity"], ["entity"], 0), "walk_activity": (["walk"], ["activity"], 0),
        "stroll": (["stroll"], ["walk_activity"], 0), "walk_path": (["walk", "walkway"], ["entity"], 0),
        "sidewalk": (["sidewalk"], ["walk_path"], 0), "footpath": (["footpath"], ["walk_path"], 0),
        # "trail": an animal's track first, a path second (under "walk", trained with it)
        "trail_track": (["trail"], ["entity"], 0), "trail_path": (["trail"], ["walk_path"], 0),
        "spoor": (["spoor"], ["trail_track"], 0),
    }
    index = {lemma: ([name], 1) for name, (lemmas, _, _) in synsets.items() for lemma in lemmas}
    index["jack"] = (["jack_car", "jack_person"], 1)  # tagged: its first sense (a car) is the usual one
    index["walk"] = (["walk_activity", "walk_path"], 1)
    index["trail"] = (["trail_track", "trail_path"], 1)
    wordnet = WordNet(write_wordnet(tmp_path / "wn", synsets, index))
    grounding = LabelGrounding((("road",), ("person",), ("car",), ("walk", "sidewalk", "trail")), wordnet)
    assert grounding.ground("route") == Grounding("route", ("road",), "hypernym")
    assert grounding.ground("roadway") == Grounding("roadway", ("road",), "hypernym")
    assert grounding.ground("carriageway") == Grounding("carriageway", ("road",), "hypernym, 2 steps")
    assert grounding.ground("fast lane") == Grounding("fast lane")  # three steps up: too far
    assert grounding.ground("walkway") == Grounding("walkway", ("walk",), "synonym")
    assert grounding.ground("jack") == Grounding("jack", ("car",), "hypernym")
    # "walk" beside "sidewalk" is the path (a sense above another wording's), not the activity
    assert grounding.ground("stroll") == Grounding("stroll")
    assert grounding.ground("footpath") == Grounding("footpath", ("walk",), "hypernym")
    assert grounding.ground("spoor") == Grounding("spoor")  # "trail" beside "walk" is the path, below it
    assert grounding.ground("the") == Grounding("the")  # no head noun at all
    # a phrase WordNet lacks: its head noun, through WordNet, at most one step up
    assert grounding.ground("busy roadway") == Grounding("busy roadway", ("road",), "head noun's hypernym")
    assert grounding.ground("wide carriageway") == Grounding("wide carriageway")  # two steps: no
    assert grounding.ground("old walkway") == Grounding("old walkway", ("walk",), "head noun's synonym")


def test_the_models_negatives_reach_the_grounding(street_wordnet, use_wordnet):
    use_wordnet(street_wordnet)
    config = TextEncoderConfig(vocabulary=VOCABULARY, negatives=("carriageway",))
    assert grounded(config, ["carriageway", "passer-by"]) == [Grounding("passer-by", ("pedestrian",), "hypernym")]
