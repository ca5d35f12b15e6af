"""RefCOCO / RefCOCO+ / RefCOCOg reader (Yu et al. 2016, arXiv 1608.00272; Mao et al. 2016,
arXiv 1511.02283), the data sets LTS (arXiv 2103.16284, Sec. 4.1) is trained and evaluated on.

The layout of the `refer` toolkit (github.com/lichengunc/refer):

    ROOT/refcoco/refs(unc).p           ROOT/refcoco/instances.json
    ROOT/refcoco+/refs(unc).p          ROOT/refcoco+/instances.json
    ROOT/refcocog/refs(umd).p          ROOT/refcocog/instances.json   (also refs(google).p)
    ROOT/images/mscoco/images/train2014/COCO_train2014_*.jpg

A refs pickle is a list of dicts (`ref_id`, `ann_id`, `image_id`, `split`, `sentences`: a list
of {`sent`, `raw`, `sent_id`, ...}); `instances.json` is COCO's (`images`, `annotations` with
polygon or RLE `segmentation`). One sample per (ref, sentence), as the benchmarks count them.

The pickle is untrusted input: `load_refs` uses an unpickler that resolves no global except
builtin containers and scalars, so a crafted file cannot run code.
"""
from __future__ import annotations

import builtins
import io
import json
import os
import pickle
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np

__all__ = ["RefCOCO", "RefItem", "RefSample", "annotation_mask", "load_refs", "rle_decode"]

#: The split used when the data set is named without one (refer toolkit conventions).
DEFAULT_SPLIT_BY = {"refcoco": "unc", "refcoco+": "unc", "refcocog": "umd"}
_SAFE_GLOBALS = frozenset(
    (module, name)
    for module in ("builtins", "__builtin__")
    for name in ("dict", "list", "tuple", "set", "frozenset", "str", "unicode", "bytes", "bytearray",
                 "int", "long", "float", "complex", "bool")
)


class _ContainersOnlyUnpickler(pickle.Unpickler):
    """Resolves only builtin container and scalar types; any other global (os.system, eval,
    getattr, a class to instantiate) raises `pickle.UnpicklingError` before it is called."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS:
            return getattr(builtins, {"unicode": "str", "long": "int"}.get(name, name))
        raise pickle.UnpicklingError(f"refs pickle refers to {module}.{name}; only builtin containers are allowed")


def load_refs(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The refs of a `refs(*).p` file, unpickled without resolving any non-container global.

    Python 2 `str` objects (the files were written by Python 2) decode as UTF-8.
    Raises `pickle.UnpicklingError` for a pickle that names any other global, `ValueError`
    when the content is not a list of refs.
    """
    data = _ContainersOnlyUnpickler(io.BytesIO(Path(path).read_bytes()), encoding="utf-8", errors="replace").load()
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise ValueError(f"{path}: expected a list of ref dicts, got {type(data).__name__}")
    for ref in data[:1]:
        missing = {"ref_id", "ann_id", "image_id", "split", "sentences"} - set(ref)
        if missing:
            raise ValueError(f"{path}: refs lack the keys {sorted(missing)}")
    return data


def rle_decode(counts: list[int] | str | bytes, height: int, width: int) -> np.ndarray:
    """COCO run-length encoding -> (H, W) uint8 {0, 1} mask.

    Runs alternate 0s and 1s, starting with 0s, over the mask in column-major order; `counts`
    is the run list, or COCO's compressed string (6-bit chunks, offset 48, runs after the
    second stored as differences to the run two back; pycocotools' `rleFrString`).
    """
    if isinstance(counts, (str, bytes)):
        counts = _rle_string_counts(counts.decode("ascii") if isinstance(counts, bytes) else counts)
    counts = np.asarray(counts, np.int64)
    if counts.sum() != height * width or (counts < 0).any():
        raise ValueError(f"RLE runs sum to {counts.sum()}, not {height}x{width}={height * width}")
    flat = np.repeat(np.arange(len(counts), dtype=np.uint8) % 2, counts)
    return np.ascontiguousarray(flat.reshape(width, height).T)


def _rle_string_counts(s: str) -> list[int]:
    counts: list[int] = []
    p = 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            c = ord(s[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)  # sign-extend
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def _polygons_mask(polygons: list[list[float]], height: int, width: int) -> np.ndarray:
    """Union of polygons in COCO pixel coordinates (pixel (i, j) covers [j, j+1) x [i, i+1)):
    the pixels whose centre lies inside (scikit-image); within ~1% of pycocotools' pixels."""
    from skimage.draw import polygon as fill_polygon

    mask = np.zeros((height, width), np.uint8)
    for p in polygons:
        xy = np.asarray(p, np.float64).reshape(-1, 2) - 0.5  # to pixel-centre coordinates
        rows, cols = fill_polygon(xy[:, 1], xy[:, 0], shape=mask.shape)
        mask[rows, cols] = 1
    return mask


def annotation_mask(segmentation: list | dict, height: int, width: int, backend: str = "auto") -> np.ndarray:
    """A COCO `segmentation` (polygon list, RLE with a run list, or compressed RLE) -> (H, W) uint8 {0, 1}.

    backend: "pycocotools" (the reference rasteriser), "numpy" (no extra dependency: our RLE
    decoder, scikit-image polygon filling whose edges may differ by a pixel), or "auto"
    (pycocotools when installed).
    """
    if backend not in ("auto", "pycocotools", "numpy"):
        raise ValueError(f"backend must be 'auto', 'pycocotools' or 'numpy', got {backend!r}")
    coco_mask = None
    if backend != "numpy":
        try:
            from pycocotools import mask as coco_mask
        except ImportError:
            if backend == "pycocotools":
                raise
    if isinstance(segmentation, list):
        polygons = [p for p in segmentation if len(p) >= 6]  # fewer than 3 points: no area
        if not polygons:
            return np.zeros((height, width), np.uint8)
        if coco_mask is None:
            return _polygons_mask(polygons, height, width)
        rle = coco_mask.merge(coco_mask.frPyObjects(polygons, height, width))
    else:
        counts = segmentation["counts"]
        h, w = segmentation.get("size", (height, width))
        if coco_mask is None:
            return rle_decode(counts, h, w)
        rle = coco_mask.frPyObjects(segmentation, h, w) if isinstance(counts, list) else {
            "size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    with warnings.catch_warnings():  # pycocotools 2.0.11 under numpy 2: a harmless copy-keyword warning
        warnings.simplefilter("ignore", DeprecationWarning)
        return np.ascontiguousarray(coco_mask.decode(rle))


class RefSample(NamedTuple):
    image: np.ndarray  # (H, W, 3) uint8 RGB
    sentence: str
    mask: np.ndarray  # (H, W) uint8, 1 on the referred object


class RefItem(NamedTuple):
    """Which ref and sentence a sample index stands for."""

    ref_id: int
    sent_id: int
    image_id: int
    ann_id: int
    sentence: str


class RefCOCO:
    """(image, sentence, mask) samples of one split of a RefCOCO-family data set.

    refs_path: a `refs(*).p` pickle; instances_path: its COCO `instances.json`; image_dir: the
    COCO train2014 images. `text_field`: "sent" (normalised, lower case; what papers train on)
    or "raw". Use `from_root` for the refer toolkit's layout.
    """

    def __init__(
        self,
        refs_path: str | os.PathLike,
        instances_path: str | os.PathLike,
        image_dir: str | os.PathLike,
        split: str = "train",
        text_field: str = "sent",
        mask_backend: str = "auto",
    ) -> None:
        refs = load_refs(refs_path)
        self.splits = tuple(sorted({str(r["split"]) for r in refs}))
        if split not in self.splits:
            raise ValueError(f"split {split!r} is not in {refs_path} (splits: {list(self.splits)})")
        if text_field not in ("sent", "raw"):
            raise ValueError(f"text_field must be 'sent' or 'raw', got {text_field!r}")
        instances = json.loads(Path(instances_path).read_text())
        self.images = {img["id"]: img for img in instances["images"]}
        self.annotations = {ann["id"]: ann for ann in instances["annotations"]}
        self.image_dir = Path(image_dir)
        self.split = split
        self.mask_backend = mask_backend
        self.items = [
            RefItem(int(r["ref_id"]), int(s.get("sent_id", -1)), int(r["image_id"]), int(r["ann_id"]), str(s[text_field]))
            for r in refs if r["split"] == split for s in r["sentences"]
        ]

    @classmethod
    def from_root(
        cls, root: str | os.PathLike, dataset: str = "refcoco", split: str = "train",
        split_by: str | None = None, image_dir: str | os.PathLike | None = None, **kwargs: Any,
    ) -> "RefCOCO":
        """`ROOT/<dataset>/refs(<split_by>).p` + `ROOT/<dataset>/instances.json`; images default
        to `ROOT/images/mscoco/images/train2014`. split_by defaults to unc (RefCOCO, RefCOCO+), umd (RefCOCOg)."""
        root = Path(root)
        split_by = split_by or DEFAULT_SPLIT_BY.get(dataset, "unc")
        image_dir = image_dir if image_dir is not None else root / "images" / "mscoco" / "images" / "train2014"
        return cls(root / dataset / f"refs({split_by}).p", root / dataset / "instances.json", image_dir, split, **kwargs)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> RefSample:
        item = self.items[index]
        info = self.images[item.image_id]
        path = self.image_dir / info["file_name"]
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise FileNotFoundError(f"cannot read image {path}")
        height, width = bgr.shape[:2]
        mask = annotation_mask(self.annotations[item.ann_id]["segmentation"], height, width, self.mask_backend)
        return RefSample(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), item.sentence, mask)
