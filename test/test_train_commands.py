"""`lang-seg train` / `lang-seg eval` sub-commands (argparse, registered on the main CLI)."""

import argparse
import json

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from lang_seg_ros.train.commands import parse_names, register  # noqa: E402


def _parser():
    parser = argparse.ArgumentParser(prog="lang-seg")
    register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_parse_names():
    assert parse_names("sky, sign symbol ,road") == ["sky", "sign symbol", "road"]
    with pytest.raises(ValueError):
        parse_names("sky,,road")
    with pytest.raises(ValueError, match="duplicate"):
        parse_names("sky,sky")


def test_eval_writes_contract_json(tmp_path, tiny_checkpoint, write_synthetic):
    names = write_synthetic(3)
    out = tmp_path / "res" / "out.json"
    args = _parser().parse_args([
        "eval", "--images", str(tmp_path / "img"), "--masks", str(tmp_path / "gt"),
        "--names", ",".join(names), "--ignore-index", "255", "--checkpoint", str(tiny_checkpoint),
        "--scales", "1.0", "0.75", "--flip", "--json", str(out), "--plot", str(tmp_path / "c.png"),
        "--no-progress", "--device", "cpu",
    ])
    assert args.func(args) == 0
    res = json.loads(out.read_text())
    assert 0.0 <= res["miou"] <= 1.0 and 0.0 <= res["pixel_accuracy"] <= 1.0
    assert set(res["per_class_iou"]) == set(names)
    assert res["images"] == 3 and res["scales"] == [1.0, 0.75] and res["flip"] is True
    conf = np.array(res["confusion_matrix"])
    assert conf.shape == (3, 3) and conf.sum() == res["pixels"]
    assert (tmp_path / "c.png").is_file()


@pytest.mark.parametrize("extra", [[], ["--scales", "0.75", "1.25", "--flip"], ["--working-size", "96"]])
def test_eval_scores_what_segment_outputs(tmp_path, tiny_checkpoint, extra, write_synthetic):
    """One inference path: eval's confusion matrix is that of the label maps `lang-seg segment`'s
    Segmenter produces with the same options."""
    from lang_seg_ros.cli_options import segmenter_from_args
    from lang_seg_ros.train.metrics import confusion_matrix

    names = write_synthetic(2)
    argv = ["eval", "--images", str(tmp_path / "img"), "--masks", str(tmp_path / "gt"), "--names", ",".join(names),
            "--checkpoint", str(tiny_checkpoint), "--no-progress", "--device", "cpu",
            "--json", str(tmp_path / "e.json")]
    args = _parser().parse_args(argv + extra)
    assert args.func(args) == 0
    res = json.loads((tmp_path / "e.json").read_text())
    segmenter = segmenter_from_args(args)
    expected = 0
    for i in range(2):
        image = cv2.imread(str(tmp_path / "img" / f"{i}.png"))
        mask = cv2.imread(str(tmp_path / "gt" / f"{i}.png"), cv2.IMREAD_UNCHANGED)
        label_map = segmenter.segment(image, color_order="bgr", labels=names).label_map
        expected = expected + confusion_matrix(label_map, mask, len(names), 255)
    assert np.array_equal(np.array(res["confusion_matrix"]), expected)
    assert res["working_size"] == (None if "--scales" in extra else args.working_size)
    assert res["flip"] is ("--flip" in extra)


def test_train_command_runs_tiny_config(tmp_path, capsys):
    args = _parser().parse_args([
        "train", "configs/train/tiny_synthetic.yaml", "--iterations", "2", "--out-dir", str(tmp_path / "r"),
        "--no-progress",
    ])
    assert args.func(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["best"]["iteration"] == 2
    assert (tmp_path / "r" / "best.safetensors").is_file()


def test_eval_published_scales_and_bad_scales(tmp_path, tiny_checkpoint, write_synthetic):
    names = write_synthetic(1)
    base = ["eval", "--images", str(tmp_path / "img"), "--masks", str(tmp_path / "gt"), "--names", ",".join(names),
            "--checkpoint", str(tiny_checkpoint), "--no-progress", "--device", "cpu"]
    args = _parser().parse_args(base + ["--scales", "published", "--json", str(tmp_path / "p.json")])
    assert args.func(args) == 0
    res = json.loads((tmp_path / "p.json").read_text())
    assert res["scales"] == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75] and res["flip"] is True
    args = _parser().parse_args(base + ["--scales", "big", "--json", str(tmp_path / "q.json")])
    with pytest.raises(ValueError, match="--scales"):
        args.func(args)


def test_eval_limit_scores_the_first_images_and_shows_progress_per_wording_set(tmp_path, tiny_checkpoint,
                                                                              write_synthetic, capsys):
    names = write_synthetic(3)
    wordings = tmp_path / "other.txt"
    wordings.write_text("\n".join(f"a {n}" for n in names))
    out = tmp_path / "out.json"
    args = _parser().parse_args([
        "eval", "--images", str(tmp_path / "img"), "--masks", str(tmp_path / "gt"), "--names", ",".join(names),
        "--checkpoint", str(tiny_checkpoint), "--json", str(out), "--device", "cpu", "--limit", "2",
        "--wording-sets", str(wordings), "--precision", "fp32"])
    assert args.func(args) == 0
    res = json.loads(out.read_text())
    assert res["images"] == 2 and 0 < res["pixels"] <= 2 * 48 * 72 and res["precision"] == "fp32"
    progress = capsys.readouterr().err
    assert "eval (--names)" in progress and "eval (other)" in progress and "2/2" in progress
