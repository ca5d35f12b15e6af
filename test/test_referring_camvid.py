"""The real-frame referring benchmark: expressions generated from a label map name the right
component, ambiguous ones are left out, and the scoring counts what it says it counts."""
from __future__ import annotations

import numpy as np
import pytest

from lang_seg_ros.data.referring_camvid import ABSENT_CATEGORIES, frame_expressions, generate
from lang_seg_ros.referring.benchmark import evaluate_referring, mask_iou, report_tables
from lang_seg_ros.referring.zero_shot import ReferringResult

CAR, PEDESTRIAN, BICYCLIST, ROAD = 8, 9, 10, 3


def street() -> np.ndarray:
    """A 120x200 CamVid-style label map: three cars of different sizes, a pedestrian beside the
    right-hand car, no bicyclist."""
    label_map = np.full((120, 200), ROAD, np.uint8)
    label_map[60:90, 5:35] = CAR      # left car, 900 px
    label_map[50:100, 80:130] = CAR   # middle car, the largest: 2500 px
    label_map[70:90, 160:185] = CAR   # right car, 500 px
    label_map[55:95, 188:198] = PEDESTRIAN  # 400 px, 3 px right of the right car
    return label_map


def by_text(label_map: np.ndarray, **kwargs) -> dict:
    return {e.expression: e for e in frame_expressions(label_map, "street", **kwargs)}


def component(label_map: np.ndarray, y: int, x: int) -> np.ndarray:
    import cv2

    _, ids = cv2.connectedComponents((label_map == label_map[y, x]).astype(np.uint8), connectivity=8)
    return ids == ids[y, x]


def test_each_template_names_the_right_component():
    label_map = street()
    got = by_text(label_map, min_area=300)
    expected = {
        "the car on the left": (70, 10), "the car on the right": (80, 170), "the largest car": (70, 100),
        "the second car from the left": (70, 100), "the second car from the right": (70, 100),
        "the pedestrian": (60, 190), "the pedestrian next to the car": (60, 190),
        "the car next to the pedestrian": (80, 170), "the person": (60, 190),
    }
    for text, (y, x) in expected.items():
        assert text in got, f"{text!r} missing from {sorted(got)}"
        assert got[text].positive and np.array_equal(got[text].target, component(label_map, y, x)), text
    assert got["the largest car"].template == "largest" and got["the car on the left"].category == "car"
    assert "the car" not in got  # three cars: "the car" is ambiguous


def test_absent_categories_have_no_target_and_are_deterministic():
    label_map = street()
    first = frame_expressions(label_map, "street", seed=3)
    assert [e.expression for e in first] == [e.expression for e in frame_expressions(label_map, "street", seed=3)]
    absent = [e for e in first if not e.positive]
    far = [e for e in absent if e.template == "absent_far"]
    assert len(far) == 2 and all(e.category in ABSENT_CATEGORIES and e.target is None for e in far)
    assert [e.expression for e in absent if e.template == "absent_street"] == ["the bicyclist"]


def test_ambiguous_expressions_are_left_out():
    label_map = street()
    label_map[20:40, 8:38] = CAR  # a second car above the left one, 3 px apart in x: too close to call
    label_map[50:100, 80:130] = ROAD
    label_map[20:70, 80:129] = CAR  # the middle car now only about as large as another: no "largest"
    got = by_text(label_map, min_area=300)
    assert "the car on the left" not in got and "the car on the right" in got
    # A small car further right (under min_area but clearly visible) would change "on the right".
    label_map[100:110, 190:198] = CAR
    assert "the car on the right" not in by_text(label_map, min_area=300)


def answer(mask: np.ndarray | None) -> ReferringResult:
    found = mask is not None and bool(mask.any())
    empty = np.zeros((120, 200), bool)
    return ReferringResult("", None, found, 0.9 if found else 0.0, mask if found else empty, None, None, (), "")


def test_scores_count_hits_misses_and_not_found():
    label_map = street()
    examples = frame_expressions(label_map, "street", min_area=300)
    positives = [e for e in examples if e.positive]
    # An oracle answers every expression right: all hits, every absent category not found.
    oracle = evaluate_referring(lambda image, texts: [answer(e.target) for e in examples], [(None, examples)])
    assert oracle["overall"] == {"positives": len(positives), "found_rate": 1.0, "precision_at_0_5": 1.0,
                                 "mean_iou": 1.0, "misses_on_unlabelled": 0, "absent": 3, "not_found_accuracy": 1.0}
    # Answering everything with the whole image: found, never right, every absent one "found".
    everything = np.ones((120, 200), bool)
    bad = evaluate_referring(lambda image, texts: [answer(everything) for _ in texts], [(None, examples)])
    assert bad["overall"]["precision_at_0_5"] == 0.0 and bad["overall"]["not_found_accuracy"] == 0.0
    assert bad["templates"]["absent_far"] == {"absent": 2, "not_found_accuracy": 0.0}
    assert mask_iou(everything, positives[0].target) == pytest.approx(positives[0].target.mean())


def test_eval_refer_command_reports_every_template(tmp_path, tiny_checkpoint, capsys):
    import json

    import cv2

    from lang_seg_ros.cli import main

    (tmp_path / "val").mkdir()
    (tmp_path / "valannot").mkdir()
    for name in ("a", "b"):
        cv2.imwrite(str(tmp_path / "val" / f"{name}.png"), np.full((120, 200, 3), 90, np.uint8))
        cv2.imwrite(str(tmp_path / "valannot" / f"{name}.png"), street())
    out = tmp_path / "report.json"
    code = main(["eval-refer", "--images", str(tmp_path / "val"), "--masks", str(tmp_path / "valannot"),
                 "--checkpoint", str(tiny_checkpoint), "--device", "cpu", "--working-size", "96",
                 "--min-area", "300", "--json", str(out), "--limit", "1"])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["frames"] == 1 and report["overall"]["positives"] + report["overall"]["absent"] == len(report["cases"])
    assert {"left", "right", "largest", "next_to", "absent_far"} <= set(report["templates"])
    printed = capsys.readouterr().out
    assert "### generator: named" in printed and "### generator: pieces" in printed and "| car |" in printed
    assert set(report["generators"]) == {"named", "pieces"} and "worded" in printed


def test_thresholds_chosen_on_frames_go_into_a_copy_of_the_checkpoint(tmp_path, tiny_checkpoint, capsys):
    """Train, choose on train frames, ship: `--save-chosen` writes the chosen thresholds into a copy
    of the model, whose referrer then uses them; the original file is left as it was."""
    import cv2

    from lang_seg_ros.cli import main
    from lang_seg_ros.model import load_checkpoint
    from lang_seg_ros.referring import ZeroShotReferrer

    for folder in ("train", "trainannot"):
        (tmp_path / folder).mkdir()
    cv2.imwrite(str(tmp_path / "train" / "a.png"), np.full((120, 200, 3), 90, np.uint8))
    cv2.imwrite(str(tmp_path / "trainannot" / "a.png"), street())
    chosen = tmp_path / "chosen.safetensors"
    args = ["eval-refer", "--images", str(tmp_path / "train"), "--masks", str(tmp_path / "trainannot"),
            "--checkpoint", str(tiny_checkpoint), "--device", "cpu", "--working-size", "96", "--min-area", "300",
            "--choose-thresholds", "--no-progress"]
    assert main([*args, "--save-chosen", str(chosen)]) == 0
    picked = capsys.readouterr().out.split("chosen: ")[1].splitlines()[0]
    settings = dict(item.split("=", 1) for item in picked.split(", ") if not item.startswith("upright_labels"))
    model = load_checkpoint(chosen)
    assert model.config.referring == {k: float(v) for k, v in settings.items()}  # all seven, as chosen
    referrer = ZeroShotReferrer(model)
    assert {name: getattr(referrer, name) for name in settings} == model.config.referring
    assert "referring" not in load_checkpoint(tiny_checkpoint).config.to_dict()
    with pytest.raises(SystemExit, match="--save-chosen writes"):
        main([*args[:-2], "--no-progress", "--save-chosen", str(chosen)])
    # refused before the sweep, not after it: a file that is not ours, or nothing chosen
    from lang_seg_ros.model import with_referring_thresholds

    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08" + bytes(64))
    with pytest.raises(ValueError, match="not one of our"):
        with_referring_thresholds(junk, tmp_path / "out.safetensors", {"split_depth": 0.4})
    with pytest.raises(ValueError, match="no thresholds"):
        with_referring_thresholds(tiny_checkpoint, tmp_path / "out.safetensors", {})
    assert not (tmp_path / "out.safetensors").exists()


def test_misses_on_pixels_the_ground_truth_leaves_unlabelled_are_counted_apart():
    # CamVid leaves distant crowds unlabelled (11): a referrer that finds a person there answers
    # "the car on the right" wrongly by IoU, and the report says where that answer lies.
    label_map = street()
    label_map[10:30, 150:170] = 11  # an unlabelled blob, 400 px
    examples = generate(label_map, "street", ("named",), min_area=300)
    assert all(e.unlabelled is not None and e.unlabelled.sum() == 400 for e in examples)
    right = next(e for e in examples if e.expression == "the car on the right")
    blob = label_map == 11

    targets = {e.expression: e.target for e in examples}

    def refer(image, texts):
        return [answer(blob if t == right.expression else targets[t]) for t in texts]

    report = evaluate_referring(refer, [(None, examples)])
    assert report["overall"]["misses_on_unlabelled"] == 1 and report["categories"]["car"]["misses_on_unlabelled"] == 1
    case = next(c for c in report["cases"] if c["expression"] == right.expression)
    assert case["iou"] == 0.0 and case["answer_unlabelled"] == 1.0
    assert "misses answered where the ground truth has no label (>= half the answer): 1 of 1 (car 1)" in \
        report_tables(report)
    assert generate(label_map, "street", ("named",), min_area=300, unlabelled_id=None)[0].unlabelled is None
