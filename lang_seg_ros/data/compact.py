"""A compact copy of an image/mask data set for training elsewhere (a GPU box, a laptop).

Images are re-encoded as JPEG (quality 95 by default); masks are copied byte for byte (they
must stay lossless: a JPEG mask would invent labels at every edge). File stems are kept, so
every layout of :mod:`lang_seg_ros.data.datasets` reads the copy as it reads the original
(``FolderSegDataset`` pairs images and masks by stem and accepts ``.jpg``). CamVid's 91 MB of
PNGs become about a quarter of that.

    python -m lang_seg_ros.data.compact ../shared/datasets/camvid /data/camvid_jpg
    lang-seg train configs/train/camvid_v2_wordings.yaml  # with datasets[0].args.root: /data/camvid_jpg

Re-running skips files already written, so an interrupted copy resumes.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from .datasets import IMAGE_SUFFIXES

__all__ = ["CompactReport", "write_compact_copy"]


@dataclass
class CompactReport:
    """What a copy did: files written or skipped, and the bytes before and after."""

    images: int = 0
    masks: int = 0
    skipped: int = 0
    bytes_in: int = 0
    bytes_out: int = 0


def _is_mask_dir(folder: Path, mask_suffixes: tuple[str, ...]) -> bool:
    name = folder.name.lower()
    return any(name.endswith(s) for s in mask_suffixes)


def write_compact_copy(src: str | Path, dst: str | Path, quality: int = 95,
                       mask_dirs: tuple[str, ...] = ("annot", "masks", "labels", "annotations")) -> CompactReport:
    """Copy the tree ``src`` to ``dst``: images as JPEG ``quality``, files under a folder whose
    name ends with one of ``mask_dirs`` (CamVid's ``trainannot``, ...) and non-image files
    unchanged. Existing outputs are kept (resumable). Returns a :class:`CompactReport`."""
    import cv2

    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise FileNotFoundError(f"data set folder {src} does not exist")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in [1, 100], got {quality}")
    report = CompactReport()
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        rel = path.relative_to(src)
        in_mask_dir = any(_is_mask_dir(Path(part), mask_dirs) for part in rel.parts[:-1])
        is_image = path.suffix.lower() in IMAGE_SUFFIXES and not in_mask_dir
        out = dst / (rel.with_suffix(".jpg") if is_image else rel)
        report.bytes_in += path.stat().st_size
        if out.is_file():
            report.skipped += 1
            report.bytes_out += out.stat().st_size
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp" + out.suffix)
        if is_image:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise OSError(f"cannot read image {path}")
            if not cv2.imwrite(str(tmp), image, [cv2.IMWRITE_JPEG_QUALITY, quality]):
                raise OSError(f"cannot write {tmp}")
            report.images += 1
        else:
            shutil.copyfile(path, tmp)
            report.masks += in_mask_dir
        tmp.replace(out)  # a half-written file never looks finished
        report.bytes_out += out.stat().st_size
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lang_seg_ros.data.compact",
                                     description="JPEG copy of an image/mask data set (masks kept lossless)")
    parser.add_argument("src", help="data set root, e.g. ../shared/datasets/camvid")
    parser.add_argument("dst", help="where to write the copy")
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality (default 95)")
    args = parser.parse_args(argv)
    r = write_compact_copy(args.src, args.dst, args.quality)
    print(f"{r.images} images as JPEG q{args.quality}, {r.masks} masks copied, {r.skipped} already there; "
          f"{r.bytes_in / 2**20:.1f} MB -> {r.bytes_out / 2**20:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
