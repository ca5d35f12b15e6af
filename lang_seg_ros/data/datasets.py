"""Segmentation data set adapters for LSeg training and evaluation.

LSeg (Li et al., ICLR 2022, arXiv 2201.03546, Sec. 4) trains on several data sets at once,
each with its own label-name list; the label names, not fixed class indices, are what the
model learns from. A data set here is therefore images + index masks + the names of the
indices + an ignore index, and nothing else.

Layouts provided:
  - :class:`FolderSegDataset`: an image folder and a mask folder paired by file stem,
    masks single-channel PNGs whose value ``i`` means ``names[i]`` (CamVid layout).
  - :func:`camvid`: CamVid (SegNet tutorial version): ``train/``, ``trainannot/``,
    ``val/``, ``valannot/``; 11 classes, 11 = unlabelled.
  - :func:`synthetic`: toy scenes generated in memory, for smoke tests.
  - :func:`ade20k`: ADEChallengeData2016: ``images/{training,validation}/*.jpg``,
    ``annotations/{training,validation}/*.png`` with 0 = "other" (ignored) and 1..150 the
    classes of ``objectInfo150.csv``.

Adding a layout: write a function ``(root, split, **kw) -> FolderSegDataset`` (or any
object with ``names``, ``ignore_index``, ``__len__`` and ``load(i) -> (image, mask)``),
decorate it with :func:`register_dataset`, and name it in a training config's
``datasets[].type``. See ``docs/training.md``.

numpy + OpenCV only.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

__all__ = [
    "CAMVID_NAMES",
    "FolderSegDataset",
    "SegDataset",
    "SyntheticSegDataset",
    "ade20k",
    "build_dataset",
    "camvid",
    "folder",
    "list_datasets",
    "read_names",
    "register_dataset",
    "synthetic",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

#: CamVid (SegNet version) index -> name; index 11 is "unlabelled" and ignored.
CAMVID_NAMES = (
    "sky", "building", "pole", "road", "pavement", "tree", "sign symbol", "fence", "car",
    "pedestrian", "bicyclist",
)
CAMVID_IGNORE = 11


def read_names(path: str | Path) -> list[str]:
    """Label names from a file: one name per line (blank lines and ``#`` comments skipped),
    or a comma-separated single line."""
    lines = [ln.strip() for ln in Path(path).read_text().splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if len(lines) == 1 and "," in lines[0]:
        lines = [n.strip() for n in lines[0].split(",")]
    if not lines:
        raise ValueError(f"{path}: no label names")
    return lines


def _imread_rgb(path: Path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise OSError(f"cannot read image {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _imread_mask(path: Path) -> np.ndarray:
    import cv2

    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise OSError(f"cannot read mask {path}")
    if mask.ndim != 2:
        raise ValueError(f"{path}: masks must be single-channel, got shape {mask.shape}")
    return mask


class FolderSegDataset:
    """Images and single-channel index masks in two folders, paired by file stem.

    Args:
        image_dir: folder of RGB images (png/jpg/...).
        mask_dir: folder of single-channel PNG masks with the same stems.
        names: ``names[i]`` is the label of mask value ``i``.
        ignore_index: mask value ignored in loss and metrics (any value ``>= len(names)``
            is also treated as ignore by :meth:`load`, which maps it to ``ignore_index``).
        mask_offset: added to raw mask values before use (ADE20K: -1, so 0 "other"
            becomes -1 and is ignored).
        cache: keep decoded images and masks in memory after the first read.
        name: a label for logs.
    ``load(i)`` returns ``(image uint8 (H, W, 3) RGB, mask int64 (H, W))``.
    """

    def __init__(
        self,
        image_dir: str | Path,
        mask_dir: str | Path,
        names: Sequence[str],
        ignore_index: int = 255,
        mask_offset: int = 0,
        cache: bool = False,
        name: str = "",
    ) -> None:
        self.image_dir, self.mask_dir = Path(image_dir), Path(mask_dir)
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f"image folder {self.image_dir} does not exist")
        if not self.mask_dir.is_dir():
            raise FileNotFoundError(f"mask folder {self.mask_dir} does not exist")
        self.names = [str(n).strip() for n in names]
        if not self.names or any(not n for n in self.names):
            raise ValueError(f"names must be non-empty strings, got {list(names)!r}")
        if 0 <= ignore_index < len(self.names):
            raise ValueError(f"ignore_index {ignore_index} collides with label {self.names[ignore_index]!r}")
        self.ignore_index = int(ignore_index)
        self.mask_offset = int(mask_offset)
        self.name = name or self.image_dir.name
        masks = {p.stem: p for p in self.mask_dir.iterdir() if p.suffix.lower() == ".png"}
        self.pairs: list[tuple[Path, Path]] = []
        for img in sorted(self.image_dir.iterdir()):
            if img.suffix.lower() in IMAGE_SUFFIXES and img.stem in masks:
                self.pairs.append((img, masks[img.stem]))
        if not self.pairs:
            raise ValueError(f"no image/mask pairs with matching names in {self.image_dir} and {self.mask_dir}")
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.pairs)

    def stem(self, i: int) -> str:
        return self.pairs[i][0].stem

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        img_path, mask_path = self.pairs[i]
        image = _imread_rgb(img_path)
        raw = _imread_mask(mask_path).astype(np.int64) + self.mask_offset
        if raw.shape != image.shape[:2]:
            raise ValueError(f"{mask_path}: mask {raw.shape} and image {image.shape[:2]} differ in size")
        mask = np.where((raw < 0) | (raw >= len(self.names)), self.ignore_index, raw)
        if self._cache is not None:
            self._cache[i] = (image, mask)
        return image, mask

    def class_pixel_counts(self) -> np.ndarray:
        """Pixels per label over the whole set, (len(names),) int64 (reads every mask)."""
        counts = np.zeros(len(self.names), np.int64)
        for i in range(len(self)):
            mask = self.load(i)[1]
            valid = mask[(mask >= 0) & (mask < len(self.names))]
            counts += np.bincount(valid.ravel(), minlength=len(self.names))
        return counts

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {len(self)} pairs, {len(self.names)} labels)"


SegDataset = FolderSegDataset  # the protocol every adapter follows

_DATASETS: dict[str, Callable[..., FolderSegDataset]] = {}


def register_dataset(fn: Callable[..., FolderSegDataset]) -> Callable[..., FolderSegDataset]:
    """Register a layout under its function name for ``datasets[].type`` in configs."""
    _DATASETS[fn.__name__] = fn
    return fn


def list_datasets() -> list[str]:
    return sorted(_DATASETS)


def build_dataset(type: str, **kwargs) -> FolderSegDataset:  # noqa: A002 - config field name
    """``build_dataset("camvid", root=..., split="train")``; unknown type -> ValueError."""
    if type not in _DATASETS:
        raise ValueError(f"datasets[].type {type!r} unknown; known: {list_datasets()}")
    return _DATASETS[type](**kwargs)


@register_dataset
def folder(
    images: str | Path,
    masks: str | Path,
    names: Sequence[str] | str | Path,
    ignore_index: int = 255,
    cache: bool = False,
    name: str = "",
) -> FolderSegDataset:
    """Generic image/mask folder pair; ``names`` a list, a comma-separated string or a file."""
    if isinstance(names, (str, Path)) and Path(names).is_file():
        names = read_names(names)
    elif isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    return FolderSegDataset(images, masks, names, ignore_index, cache=cache, name=name)


@register_dataset
def camvid(
    root: str | Path,
    split: str = "train",
    cache: bool = False,
    names: Sequence[str] | None = None,
) -> FolderSegDataset:
    """CamVid, SegNet tutorial layout: ``<root>/<split>/`` and ``<root>/<split>annot/``.

    ``names`` replaces the 11 default label names (other wordings, same indices).
    """
    names = list(names) if names is not None else list(CAMVID_NAMES)
    if len(names) != len(CAMVID_NAMES):
        raise ValueError(f"camvid needs {len(CAMVID_NAMES)} names, got {len(names)}")
    root = Path(root)
    return FolderSegDataset(
        root / split, root / f"{split}annot", names, CAMVID_IGNORE, cache=cache, name=f"camvid-{split}"
    )


def _ade20k_names(root: Path) -> list[str]:
    info = root / "objectInfo150.csv"
    if info.is_file():
        with info.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        # "Name" holds synonyms separated by ';' - the first is the label name.
        return [row["Name"].split(";")[0].strip() for row in rows]
    names_txt = root / "names.txt"
    if names_txt.is_file():
        return read_names(names_txt)
    raise FileNotFoundError(f"{root}: neither objectInfo150.csv nor names.txt found for ADE20K names")


@register_dataset
def ade20k(
    root: str | Path,
    split: str = "training",
    cache: bool = False,
    names: Sequence[str] | None = None,
) -> FolderSegDataset:
    """ADE20K scene parsing (ADEChallengeData2016 layout): ``images/<split>/*.jpg`` and
    ``annotations/<split>/*.png``; mask 0 = "other" (ignored, mapped to 255), 1..150 the
    classes of ``objectInfo150.csv`` (first synonym; or ``names.txt``). ``split`` is
    ``training`` or ``validation`` (``train``/``val`` accepted)."""
    root = Path(root)
    split = {"train": "training", "val": "validation"}.get(split, split)
    names = list(names) if names is not None else _ade20k_names(root)
    return FolderSegDataset(
        root / "images" / split, root / "annotations" / split, names, 255, mask_offset=-1,
        cache=cache, name=f"ade20k-{split}",
    )


class SyntheticSegDataset:
    """Deterministic toy scenes for smoke tests: a textured background (label 0) with a
    rectangle (label 1) and a disc (label 2) in fixed colours at random places; a one-pixel
    ``ignore_index`` border around the rectangle mimics unlabelled edges.

    Args:
        num_images: number of samples.
        size: (height, width) in pixels.
        names: the 3 label names (background, rectangle, disc).
        seed: scenes are a pure function of (seed, index).
    """

    def __init__(self, num_images: int = 16, size: Sequence[int] = (64, 64),
                 names: Sequence[str] = ("background", "red box", "blue disc"),
                 ignore_index: int = 255, seed: int = 0) -> None:
        if len(names) != 3:
            raise ValueError(f"synthetic data needs 3 names, got {list(names)}")
        self.names = [str(n) for n in names]
        self.ignore_index = int(ignore_index)
        self.size = (int(size[0]), int(size[1]))
        self.num_images = int(num_images)
        self.seed = int(seed)
        self.name = "synthetic"

    def __len__(self) -> int:
        return self.num_images

    def stem(self, i: int) -> str:
        return f"synthetic_{i:04d}"

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        h, w = self.size
        rng = np.random.default_rng([self.seed, i])
        image = (rng.integers(90, 140, (h, w, 3))).astype(np.uint8)
        image[..., 1] = np.clip(image[..., 1].astype(int) + 40, 0, 255)  # greenish background
        mask = np.zeros((h, w), np.int64)
        bh, bw = rng.integers(h // 5, h // 2), rng.integers(w // 5, w // 2)
        top, left = rng.integers(1, h - bh - 1), rng.integers(1, w - bw - 1)
        mask[top - 1 : top + bh + 1, left - 1 : left + bw + 1] = self.ignore_index
        mask[top : top + bh, left : left + bw] = 1
        image[top : top + bh, left : left + bw] = (220, 40, 40)
        r = rng.integers(min(h, w) // 8, min(h, w) // 4)
        cy, cx = rng.integers(r, h - r), rng.integers(r, w - r)
        yy, xx = np.mgrid[:h, :w]
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        mask[disc] = 2
        image[disc] = (40, 60, 220)
        return image, mask

    def class_pixel_counts(self) -> np.ndarray:
        counts = np.zeros(3, np.int64)
        for i in range(len(self)):
            m = self.load(i)[1]
            counts += np.bincount(m[m < 3].ravel(), minlength=3)
        return counts


@register_dataset
def synthetic(num_images: int = 16, size: Sequence[int] = (64, 64),
              names: Sequence[str] = ("background", "red box", "blue disc"), seed: int = 0,
              cache: bool = False) -> SyntheticSegDataset:
    """Toy scenes generated in memory (:class:`SyntheticSegDataset`), for smoke tests."""
    return SyntheticSegDataset(num_images, size, names, seed=seed)
