"""Data set adapters (folder / CamVid / ADE20K layouts, synthetic) and augmentation."""

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from lang_seg_ros.data import (  # noqa: E402
    AugmentConfig,
    FolderSegDataset,
    augment,
    build_dataset,
    list_datasets,
    normalize_image,
    read_names,
)


def _write_pair(img_dir, mask_dir, stem, image, mask, ext=".png"):
    img_dir.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(img_dir / f"{stem}{ext}"), image[..., ::-1])
    cv2.imwrite(str(mask_dir / f"{stem}.png"), mask.astype(np.uint8))


def test_folder_pairs_by_stem_and_maps_unknown_to_ignore(tmp_path):
    img = np.zeros((8, 10, 3), np.uint8)
    img[..., 0] = 200  # red in RGB
    mask = np.array([[0, 1, 2, 5] * 2 + [0, 1]] * 8)
    _write_pair(tmp_path / "im", tmp_path / "gt", "a", img, mask)
    _write_pair(tmp_path / "im", tmp_path / "gt", "b", img, mask)
    (tmp_path / "im" / "orphan.png").write_bytes((tmp_path / "im" / "a.png").read_bytes())
    ds = FolderSegDataset(tmp_path / "im", tmp_path / "gt", ["x", "y", "z"], ignore_index=5)
    assert len(ds) == 2 and ds.stem(0) == "a"
    image, m = ds.load(0)
    assert image.shape == (8, 10, 3) and image[0, 0, 0] == 200  # loaded as RGB
    assert set(np.unique(m)) == {0, 1, 2, 5}
    np.testing.assert_array_equal(ds.class_pixel_counts(), [48, 48, 32])  # 2 images


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        FolderSegDataset(tmp_path / "none", tmp_path / "none", ["a"])
    (tmp_path / "im").mkdir()
    (tmp_path / "gt").mkdir()
    with pytest.raises(ValueError, match="no image/mask pairs"):
        FolderSegDataset(tmp_path / "im", tmp_path / "gt", ["a"])
    with pytest.raises(ValueError, match="collides"):
        FolderSegDataset(tmp_path / "im", tmp_path / "gt", ["a", "b"], ignore_index=1)


def test_camvid_layout(tmp_path):
    mask = np.full((6, 8), 11)
    mask[:3] = 8
    _write_pair(tmp_path / "val", tmp_path / "valannot", "f1", np.zeros((6, 8, 3), np.uint8), mask)
    ds = build_dataset("camvid", root=str(tmp_path), split="val")
    assert ds.names[8] == "car" and ds.ignore_index == 11 and len(ds.names) == 11
    renamed = build_dataset("camvid", root=str(tmp_path), split="val",
                            names=["sky", "building", "pole", "road", "sidewalk", "tree", "sign",
                                   "fence", "automobile", "person", "bicyclist"])
    assert renamed.names[8] == "automobile"
    assert (renamed.load(0)[1][:3] == 8).all() and (renamed.load(0)[1][3:] == 11).all()


def test_ade20k_layout_shifts_labels(tmp_path):
    (tmp_path / "objectInfo150.csv").write_text(
        "Idx,Ratio,Train,Val,Name\n1,0.1,1,1,wall\n2,0.1,1,1,building;edifice\n3,0.1,1,1,sky\n")
    mask = np.array([[0, 1, 2, 3]])
    _write_pair(tmp_path / "images" / "validation", tmp_path / "annotations" / "validation", "ADE_1",
                np.zeros((1, 4, 3), np.uint8), mask, ext=".jpg")
    ds = build_dataset("ade20k", root=str(tmp_path), split="val")
    assert ds.names == ["wall", "building", "sky"]
    np.testing.assert_array_equal(ds.load(0)[1], [[255, 0, 1, 2]])


def test_read_names_formats(tmp_path):
    (tmp_path / "a.txt").write_text("# labels\nsky\n\nsign symbol\n")
    (tmp_path / "b.txt").write_text("sky, sign symbol\n")
    assert read_names(tmp_path / "a.txt") == ["sky", "sign symbol"]
    assert read_names(tmp_path / "b.txt") == ["sky", "sign symbol"]


def test_registry_and_unknown_type():
    assert {"camvid", "ade20k", "folder", "synthetic"} <= set(list_datasets())
    with pytest.raises(ValueError, match="datasets\\[\\].type"):
        build_dataset("nope")


def test_synthetic_deterministic():
    a = build_dataset("synthetic", num_images=3, seed=4)
    b = build_dataset("synthetic", num_images=3, seed=4)
    for i in range(3):
        np.testing.assert_array_equal(a.load(i)[0], b.load(i)[0])
        assert set(np.unique(a.load(i)[1])) <= {0, 1, 2, 255}


def test_augment_shapes_pad_and_determinism():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (40, 50, 3)).astype(np.uint8)
    mask = rng.integers(0, 3, (40, 50))
    cfg = AugmentConfig(crop_size=(64, 64), scale_range=(0.5, 0.5))
    out_img, out_mask = augment(image, mask, cfg, 255, np.random.default_rng(1))
    assert out_img.shape == (64, 64, 3) and out_img.dtype == np.uint8 and out_mask.shape == (64, 64)
    assert (out_mask == 255).sum() >= 64 * 64 - 20 * 25  # padding is ignored
    again = augment(image, mask, cfg, 255, np.random.default_rng(1))
    np.testing.assert_array_equal(out_img, again[0])
    np.testing.assert_array_equal(out_mask, again[1])


def test_augment_flip_only_keeps_alignment():
    image = np.zeros((32, 32, 3), np.uint8)
    image[:, :8] = 255
    mask = np.zeros((32, 32), np.int64)
    mask[:, :8] = 1
    cfg = AugmentConfig(crop_size=(32, 32), scale_range=(1, 1), flip=1.0, jitter_prob=0.0)
    img, m = augment(image, mask, cfg, 255, np.random.default_rng(0))
    assert (m[:, -8:] == 1).all() and (img[:, -8:] == 255).all() and (m[:, :-8] == 0).all()


def test_bad_augment_config():
    with pytest.raises(ValueError, match="crop_size"):
        AugmentConfig(crop_size=(8, 8))
    with pytest.raises(ValueError, match="scale_range"):
        AugmentConfig(scale_range=(2.0, 1.0))


def test_normalize_image():
    x = normalize_image(np.full((2, 3, 3), 255, np.uint8), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert x.shape == (3, 2, 3) and np.allclose(x, 1.0)
