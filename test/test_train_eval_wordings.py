"""`lang-seg eval --wording-sets`: the same masks scored under other wordings of the classes,
one mIoU per set, while the `--names` contract (miou, per_class_iou, ...) stays as it was."""

import argparse
import json

import pytest

cv2 = pytest.importorskip("cv2")

from lang_seg_ros.data import build_dataset  # noqa: E402
from lang_seg_ros.train.commands import register  # noqa: E402


def _eval(tmp_path, checkpoint, *extra):
    parser = argparse.ArgumentParser(prog="lang-seg")
    register(parser.add_subparsers(dest="command", required=True))
    names = ",".join(build_dataset("synthetic").names)
    args = parser.parse_args(["eval", "--images", str(tmp_path / "img"), "--masks", str(tmp_path / "gt"),
                              "--names", names, "--ignore-index", "255", "--checkpoint", str(checkpoint),
                              "--json", str(tmp_path / "out.json"), "--no-progress", "--device", "cpu", *extra])
    return args.func(args)


def test_each_wording_set_gets_its_own_miou(tmp_path, tiny_checkpoint, capsys, write_synthetic):
    write_synthetic(2, size=(48, 64))
    (tmp_path / "plain.txt").write_text("# the data set's own names\nbackground\nred box\nblue disc\n")
    (tmp_path / "other.txt").write_text("grass\ncrimson square\nnavy circle\n")
    assert _eval(tmp_path, tiny_checkpoint) == 0
    before = json.loads((tmp_path / "out.json").read_text())
    assert _eval(tmp_path, tiny_checkpoint, "--wording-sets", str(tmp_path / "plain.txt"),
                 str(tmp_path / "other.txt")) == 0
    res = json.loads((tmp_path / "out.json").read_text())
    # today's contract is untouched by the extra sets
    assert res["miou"] == before["miou"] and res["per_class_iou"] == before["per_class_iou"]
    sets = res["wording_sets"]
    assert list(sets) == ["plain", "other"]
    assert sets["plain"]["miou"] == pytest.approx(res["miou"])  # same words, same scores
    assert sets["other"]["names"] == ["grass", "crimson square", "navy circle"]
    assert set(sets["other"]["per_class_iou"]) == {"grass", "crimson square", "navy circle"}
    assert res["wording_sets_mean_miou"] == pytest.approx((sets["plain"]["miou"] + sets["other"]["miou"]) / 2)
    out = capsys.readouterr().out
    assert "wording set mIoU" in out and "other" in out
    # which wording took which class, by the --names class, each as the confusion matrix says
    for name, words in (("plain", ["background", "red box", "blue disc"]),
                        ("other", ["grass", "crimson square", "navy circle"])):
        for entry in sets[name]["swallowed"]:
            assert entry["wording"] in words and entry["class"] == build_dataset("synthetic").names[
                words.index(entry["wording"])] and 0.15 <= entry["share"] <= 1
    assert "swallowed classes" in out


def test_swallowed_names_the_label_that_took_a_class():
    from lang_seg_ros.train.metrics import swallowed

    conf = [[90, 10, 0],  # road: 10 % as footpath (under the 15 % bar)
            [60, 40, 0],  # pavement: 60 % taken by road
            [0, 20, 80]]  # car: 20 % as footpath
    assert swallowed(conf, ["road", "footpath", "car"]) == [
        {"class": "footpath", "as": "road", "share": 0.6}, {"class": "car", "as": "footpath", "share": 0.2}]
    assert swallowed(conf, ["road", "footpath", "car"], min_share=0.7) == []
    assert swallowed([[0, 0], [0, 5]], ["a", "b"]) == []  # a class with no pixels takes nothing


def test_a_wording_set_must_name_every_class(tmp_path, tiny_checkpoint, write_synthetic):
    write_synthetic(2, size=(48, 64))
    (tmp_path / "short.txt").write_text("grass\nbox\n")
    with pytest.raises(ValueError, match="same classes"):
        _eval(tmp_path, tiny_checkpoint, "--wording-sets", str(tmp_path / "short.txt"))
