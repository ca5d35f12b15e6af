"""The RefCOCO reader on a tiny data set in the refer toolkit's layout, written here."""
from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest

from lang_seg_ros.data.refcoco import RefCOCO, annotation_mask, load_refs, rle_decode

RED, BLUE = (200, 30, 30), (30, 30, 200)  # RGB


def write_tiny_refcoco(root: Path) -> Path:
    """ROOT/refcoco/{refs(unc).p, instances.json} and two images in ROOT/images/mscoco/images/train2014.

    Image 1 (40x60): a red box at rows 5-14, cols 10-29 (a polygon) and a blue box at rows
    20-29, cols 40-49 (an RLE run list). Image 2 (32x32, black): the referred "object" is its
    top-left 2x2 pixels (a run list). Three refs: two in train (one with two sentences), one in val.
    """
    image_dir = root / "images" / "mscoco" / "images" / "train2014"
    image_dir.mkdir(parents=True)
    (root / "refcoco").mkdir()
    img1 = np.zeros((40, 60, 3), np.uint8)
    img1[5:15, 10:30] = RED
    img1[20:30, 40:50] = BLUE
    cv2.imwrite(str(image_dir / "COCO_train2014_000000000001.png"), img1[..., ::-1])
    cv2.imwrite(str(image_dir / "COCO_train2014_000000000002.png"), np.zeros((32, 32, 3), np.uint8))
    blue = np.zeros((40, 60), np.uint8)
    blue[20:30, 40:50] = 1
    flat = blue.T.ravel()  # column-major, as COCO counts runs
    changes = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate(([0], changes, [flat.size]))).tolist()  # starts with zeros
    instances = {
        "images": [
            {"id": 1, "file_name": "COCO_train2014_000000000001.png", "height": 40, "width": 60},
            {"id": 2, "file_name": "COCO_train2014_000000000002.png", "height": 32, "width": 32},
        ],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 1, "iscrowd": 0,
             "segmentation": [[10, 5, 30, 5, 30, 15, 10, 15]]},  # x, y corners of the red box
            {"id": 11, "image_id": 1, "category_id": 2, "iscrowd": 0,
             "segmentation": {"size": [40, 60], "counts": runs}},
            {"id": 20, "image_id": 2, "category_id": 1, "iscrowd": 0,
             "segmentation": {"size": [32, 32], "counts": [0, 2, 30, 2, 990]}},
        ],
        "categories": [{"id": 1, "name": "thing"}, {"id": 2, "name": "other thing"}],
    }
    (root / "refcoco" / "instances.json").write_text(json.dumps(instances))

    def ref(ref_id, ann_id, image_id, split, *sentences):
        return {"ref_id": ref_id, "ann_id": ann_id, "image_id": image_id, "split": split, "category_id": 1,
                "file_name": f"COCO_train2014_{image_id:012d}_{ann_id}.jpg",
                "sentences": [{"sent": s, "raw": s.capitalize(), "sent_id": 100 * ref_id + i, "tokens": s.split()}
                              for i, s in enumerate(sentences)]}

    refs = [ref(0, 10, 1, "train", "the red box", "left box"),
            ref(1, 11, 1, "train", "the blue box"),
            ref(2, 20, 2, "val", "top left corner")]
    (root / "refcoco" / "refs(unc).p").write_bytes(pickle.dumps(refs, protocol=2))
    return root


@pytest.fixture
def refcoco_root(tmp_path) -> Path:
    return write_tiny_refcoco(tmp_path / "refer")


def test_one_sample_per_sentence_with_image_and_mask(refcoco_root):
    ds = RefCOCO.from_root(refcoco_root, "refcoco", split="train")
    assert ds.splits == ("train", "val")
    assert len(ds) == 3
    assert [ds[i].sentence for i in range(3)] == ["the red box", "left box", "the blue box"]
    image, sentence, mask = ds[0]
    assert image.shape == (40, 60, 3) and image.dtype == np.uint8
    assert tuple(image[10, 20]) == RED  # RGB order
    expected = np.zeros((40, 60), np.uint8)
    expected[5:15, 10:30] = 1
    assert np.array_equal(mask, expected)  # COCO polygon corners lie on pixel edges
    blue = ds[2].mask
    assert blue.sum() == 100 and blue[20:30, 40:50].all()  # the RLE is exact
    assert ds.items[2].ann_id == 11


def test_splits_and_text_field(refcoco_root):
    val = RefCOCO.from_root(refcoco_root, "refcoco", split="val", text_field="raw")
    assert len(val) == 1 and val[0].sentence == "Top left corner"
    assert val[0].mask.sum() == 4 and val[0].mask[:2, :2].all()
    with pytest.raises(ValueError, match="testA"):
        RefCOCO.from_root(refcoco_root, "refcoco", split="testA")


def test_missing_image_names_the_path(refcoco_root):
    os.remove(refcoco_root / "images" / "mscoco" / "images" / "train2014" / "COCO_train2014_000000000001.png")
    with pytest.raises(FileNotFoundError, match="000000000001"):
        RefCOCO.from_root(refcoco_root, "refcoco")[0]


class _RunsShell:
    """A pickle payload: unpickling it with plain `pickle.load` would run a shell command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _CallsEval:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (eval, (f"open({str(self.path)!r}, 'w').write('x')",))


@pytest.mark.parametrize("payload", ["shell", "eval", "class"])
def test_malicious_refs_pickle_executes_nothing(refcoco_root, tmp_path, payload):
    marker = tmp_path / "pwned"
    evil = {"shell": lambda: _RunsShell(f"touch {marker}"), "eval": lambda: _CallsEval(marker),
            "class": lambda: _CallsEval}[payload]()
    refs_path = refcoco_root / "refcoco" / "refs(unc).p"
    refs = load_refs(refs_path)
    refs[0]["sentences"][0]["sent"] = evil  # hidden deep inside otherwise valid refs
    refs_path.write_bytes(pickle.dumps(refs, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="only builtin containers"):
        RefCOCO.from_root(refcoco_root, "refcoco")
    assert not marker.exists()


def test_refs_must_be_a_list_of_refs(tmp_path):
    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps({"not": "a list"}))
    with pytest.raises(ValueError, match="list of ref dicts"):
        load_refs(path)
    path.write_bytes(pickle.dumps([{"ref_id": 0}]))
    with pytest.raises(ValueError, match="ann_id"):
        load_refs(path)


def test_rle_decoder_on_hand_made_strings():
    # 3x3, column-major runs 2 zeros, 3 ones, 4 zeros: the first runs are stored as they are.
    assert rle_decode("234", 3, 3).T.ravel().tolist() == [0, 0, 1, 1, 1, 0, 0, 0, 0]
    # The 4th run is stored as a difference to the 2nd: 3 - 3 = 0 -> "0".
    assert rle_decode("2310", 3, 3).T.ravel().tolist() == [0, 0, 1, 1, 1, 0, 1, 1, 1]
    # A negative difference, 2 - 5 = -3: 5-bit chunk 29 with the sign bit, chr(29 + 48) = "M".
    assert rle_decode("151M", 3, 3).T.ravel().tolist() == [0, 1, 1, 1, 1, 1, 0, 1, 1]
    assert rle_decode([0, 2, 7], 3, 3)[:2, 0].tolist() == [1, 1]
    with pytest.raises(ValueError, match="sum"):
        rle_decode([1, 2], 3, 3)


def test_numpy_backend_agrees_with_pycocotools():
    coco_mask = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(0)
    for _ in range(5):
        centre, radius = rng.uniform(25, 75, 2), rng.uniform(8, 20)
        angles = np.sort(rng.uniform(0, 2 * np.pi, 9))
        polygon = np.stack([centre[0] + radius * np.cos(angles), centre[1] + radius * np.sin(angles)], 1)
        ours = annotation_mask([polygon.ravel().tolist()], 100, 120, backend="numpy")
        ref = annotation_mask([polygon.ravel().tolist()], 100, 120, backend="pycocotools")
        assert np.count_nonzero(ours != ref) <= 0.05 * ref.sum()
        rle = coco_mask.encode(np.asfortranarray(ref))
        compressed = {"size": rle["size"], "counts": rle["counts"].decode()}
        assert np.array_equal(annotation_mask(compressed, 100, 120, backend="numpy"), ref)
        assert np.array_equal(annotation_mask(compressed, 100, 120, backend="pycocotools"), ref)


def test_train_lts_reads_the_refcoco_layout(refcoco_root, tmp_path):
    """Two training steps and a validation straight from the layout (non-square images resized)."""
    from lang_seg_ros.train.lts import train

    result = train({
        "lseg": "lseg_tiny", "lts": {"name": "lts_tiny"},
        "data": {"type": "refcoco", "args": {"root": str(refcoco_root), "dataset": "refcoco"}, "image_size": 64},
        "iterations": 2, "batch_size": 2, "val_every": 2, "output_dir": str(tmp_path / "run"), "progress": False,
    })
    assert result["count"] == 1 and result["iterations"] == 2
    assert (tmp_path / "run" / "best.safetensors").exists()
