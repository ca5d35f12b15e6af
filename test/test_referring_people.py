"""People as candidates: one standing person is one candidate, two people shoulder to shoulder are
two (the upright split), and pedestrians get their own pixel threshold; on constructed label maps."""
from __future__ import annotations

import numpy as np

from lang_seg_ros.referring import ZeroShotReferrer, parse_expression

LABELS = ("road", "car", "pedestrian")


def people(bridge: bool = True) -> np.ndarray:
    """100x120: two people (12x60 each) side by side, joined at the shoulders by a 4-pixel-wide,
    20-pixel-tall bridge (a merged mask); a car (40x20)."""
    label_map = np.zeros((100, 120), np.int32)
    label_map[20:80, 20:32] = 2
    label_map[20:80, 36:48] = 2
    if bridge:
        label_map[25:45, 32:36] = 2
    label_map[60:80, 70:110] = 1
    return label_map


def candidates(referrer: ZeroShotReferrer, label_map: np.ndarray, confidence: np.ndarray | None = None,
               phrase: str = "the pedestrian") -> list:
    confidence = np.full(label_map.shape, 0.9, np.float32) if confidence is None else confidence
    query = parse_expression(phrase)
    regions = referrer.regions(query, label_map, confidence, LABELS)
    return referrer.candidates(regions, LABELS, query.category, label_map.shape)


def test_two_people_shoulder_to_shoulder_are_two_candidates():
    label_map = people()
    plain = ZeroShotReferrer(None, min_score=0.5, min_area_fraction=0.01, relative_area=0.0, upright_aspect=1.0)
    assert len(candidates(plain, label_map)) == 1  # the round watershed sees one blob: the bridge is its peak
    upright = ZeroShotReferrer(None, min_score=0.5, min_area_fraction=0.01, relative_area=0.0, upright_aspect=3.0)
    found = sorted(candidates(upright, label_map), key=lambda r: r.centroid[0])
    assert len(found) == 2
    assert found[0].bbox[0] == 20 and found[1].bbox[2] == 48 and sum(r.area for r in found) == (label_map == 2).sum()
    assert found[0].centroid[0] < 34 < found[1].centroid[0]
    # the car is not upright: never split that way, and the car query ignores the people
    cars = candidates(upright, label_map, phrase="the car")
    assert len(cars) == 1 and cars[0].area == 800


def test_one_person_stays_one_candidate():
    label_map = np.zeros((100, 120), np.int32)
    label_map[10:90, 50:66] = 2  # one tall person, with a head
    label_map[2:10, 54:62] = 2
    upright = ZeroShotReferrer(None, min_score=0.5, min_area_fraction=0.01, relative_area=0.0, upright_aspect=3.0)
    found = candidates(upright, label_map)
    assert len(found) == 1 and found[0].area == (label_map == 2).sum()


def test_pedestrians_have_their_own_pixel_threshold():
    label_map = people(bridge=False)
    confidence = np.full(label_map.shape, 0.9, np.float32)
    confidence[20:80, 20:24] = 0.7  # a soft edge on the left person
    confidence[60:80, 70:80] = 0.7  # and on the car
    referrer = ZeroShotReferrer(None, min_score=0.5, min_area_fraction=0.01, relative_area=0.0,
                                pixel_threshold=0.6, upright_pixel_threshold=0.8)
    person = min(candidates(referrer, label_map, confidence), key=lambda r: r.centroid[0])
    assert person.bbox[0] == 24  # the unsure edge left out
    car = candidates(referrer, label_map, confidence, "the car")[0]
    assert car.bbox[0] == 70  # 0.7 >= 0.6: the car keeps its edge


def test_a_model_brings_the_thresholds_chosen_for_it(tiny_model, tmp_path):
    """Thresholds chosen on train for one model's probabilities do not carry over to another's
    (`default-large` chose the people's pixel threshold 0.6 where v3 chose 0.8): a checkpoint
    carries its own in its config, the referrer takes them, an argument still overrides them."""
    from lang_seg_ros.model import load_checkpoint, save_checkpoint
    from lang_seg_ros.referring import DEFAULT_THRESHOLDS

    from lang_seg_ros.model.config import REFERRING_FIELDS

    assert set(DEFAULT_THRESHOLDS) == set(REFERRING_FIELDS)  # every threshold a file may carry has a default
    plain = ZeroShotReferrer(tiny_model)
    assert plain.upright_pixel_threshold == DEFAULT_THRESHOLDS["upright_pixel_threshold"] == 0.8
    assert "referring" not in tiny_model.config.to_dict()  # none chosen: the file stays as before
    tiny_model.config = tiny_model.config.replace(referring={"upright_pixel_threshold": 0.6, "split_depth": 0.4})
    loaded = load_checkpoint(save_checkpoint(tiny_model, tmp_path / "chosen.safetensors"))
    referrer = ZeroShotReferrer(loaded)
    assert (referrer.upright_pixel_threshold, referrer.split_depth) == (0.6, 0.4)
    assert referrer.pixel_threshold == DEFAULT_THRESHOLDS["pixel_threshold"]  # not chosen: the default
    assert ZeroShotReferrer(loaded, split_depth=0.2).split_depth == 0.2


def test_thresholds_in_a_checkpoint_are_checked(tiny_model):
    """A checkpoint's config is untrusted: unknown names and values out of range are refused."""
    import pytest

    for bad in ({"pixel_threshold": 1.5}, {"pixel_threshold": float("nan")}, {"eval": 0.5},
                {"min_score": "0.5"}, {"upright_aspect": 0.5}, ["min_score"]):
        with pytest.raises(ValueError, match="referring"):
            tiny_model.config.replace(referring=bad)


def test_a_file_with_thresholds_out_of_range_does_not_load(tiny_model, tmp_path):
    """The same checks on the loader's path: a file whose config says pixel_threshold 9 is refused
    when loaded, not used by a referrer later."""
    import json

    import pytest
    from safetensors import safe_open
    from safetensors.torch import save_file

    from lang_seg_ros.model import load_checkpoint, save_checkpoint
    from lang_seg_ros.model.checkpoint import CONFIG_KEY

    good = save_checkpoint(tiny_model, tmp_path / "good.safetensors")
    with safe_open(str(good), framework="pt") as f:
        meta, state = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    meta[CONFIG_KEY] = json.dumps({**json.loads(meta[CONFIG_KEY]), "referring": {"pixel_threshold": 9}})
    save_file(state, str(tmp_path / "hostile.safetensors"), metadata=meta)
    with pytest.raises(ValueError, match=r"referring\.pixel_threshold must be a number in \[0, 1\]"):
        load_checkpoint(tmp_path / "hostile.safetensors")


def test_default_large_refers_with_its_own_thresholds():
    """Chosen on CamVid train for default-large (docs/referring.md): its people's pixel threshold
    and split depth differ from v3's, which the default model keeps."""
    from lang_seg_ros.model import load_checkpoint

    large, default = ZeroShotReferrer(load_checkpoint("default-large")), ZeroShotReferrer(load_checkpoint(None))
    assert (large.upright_pixel_threshold, large.split_depth, large.pixel_threshold) == (0.6, 0.4, 0.4)
    assert (default.upright_pixel_threshold, default.split_depth, default.pixel_threshold) == (0.8, 0.6, 0.4)
