"""The compact JPEG copy of a data set trains like the original: same pairs, same masks (byte for
byte), images within JPEG q95 noise, and an interrupted copy resumes."""

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from lang_seg_ros.data import build_dataset  # noqa: E402
from lang_seg_ros.data.compact import main, write_compact_copy  # noqa: E402


def _camvid_like(root, n=3):
    ds = build_dataset("synthetic", num_images=n, size=(96, 128), seed=5)
    for split in ("train", "val"):
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        for i in range(n):
            image, mask = ds.load(i)
            mask = np.where(mask == 255, 11, mask)  # CamVid's ignore index
            image = cv2.GaussianBlur(image, (5, 5), 0)  # photo-like, not per-pixel noise
            cv2.imwrite(str(root / split / f"f{i}.png"), image[..., ::-1])
            cv2.imwrite(str(root / f"{split}annot" / f"f{i}.png"), mask.astype(np.uint8))
    (root / "README.md").write_text("toy")


def test_copy_reads_like_the_original(tmp_path):
    _camvid_like(tmp_path / "src")
    report = write_compact_copy(tmp_path / "src", tmp_path / "dst")
    assert (report.images, report.masks, report.skipped) == (6, 6, 0)
    assert sorted(p.name for p in (tmp_path / "dst" / "train").iterdir()) == ["f0.jpg", "f1.jpg", "f2.jpg"]
    assert (tmp_path / "dst" / "README.md").read_text() == "toy"
    original = build_dataset("camvid", root=str(tmp_path / "src"), split="train")
    compact = build_dataset("camvid", root=str(tmp_path / "dst"), split="train")
    assert len(compact) == len(original) == 3
    for i in range(3):
        (img_a, mask_a), (img_b, mask_b) = original.load(i), compact.load(i)
        np.testing.assert_array_equal(mask_b, mask_a)  # masks are never lossy
        assert np.abs(img_a.astype(int) - img_b.astype(int)).mean() < 3.0  # JPEG q95


def test_an_interrupted_copy_resumes(tmp_path, capsys):
    _camvid_like(tmp_path / "src")
    write_compact_copy(tmp_path / "src", tmp_path / "dst")
    (tmp_path / "dst" / "val" / "f1.jpg").unlink()  # as if the copy had stopped there
    assert main([str(tmp_path / "src"), str(tmp_path / "dst")]) == 0
    assert "1 images as JPEG q95, 0 masks copied, 12 already there" in capsys.readouterr().out
    assert (tmp_path / "dst" / "val" / "f1.jpg").is_file() and not list((tmp_path / "dst").rglob("*.tmp*"))
