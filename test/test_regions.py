"""extract_regions: connected components per label, against hand-made label maps."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from lang_seg_ros.objects.regions import Region, extract_regions

LABELS = ("floor", "mug", "table")


def _map(shape=(20, 30), fill=-1) -> np.ndarray:
    return np.full(shape, fill, dtype=np.int32)


def test_two_blobs_of_one_label_are_two_regions_with_boxes_centroids_areas():
    label_map = _map()
    label_map[2:6, 3:8] = 1  # 4 x 5 = 20 px
    label_map[10:13, 20:29] = 1  # 3 x 9 = 27 px
    regions = extract_regions(label_map, None, LABELS)
    assert [r.id for r in regions] == [1, 2]
    big, small = regions
    assert (big.label, big.label_index, big.area, big.bbox) == ("mug", 1, 27, (20, 10, 29, 13))
    assert (small.area, small.bbox) == (20, (3, 2, 8, 6))
    assert small.centroid == pytest.approx((5.0, 3.5))
    assert big.centroid == pytest.approx((24.0, 11.0))
    assert small.mask.shape == (4, 5) and small.mask.all() and small.mask.dtype == bool
    assert (small.width, small.height) == (5, 4)
    assert big.score == 1.0  # no confidence given


def test_no_label_pixels_and_out_of_range_indices_belong_to_no_region():
    label_map = _map()
    label_map[0:3, 0:3] = 7  # not an index of LABELS
    label_map[5:8, 5:8] = 2
    regions = extract_regions(label_map, None, LABELS)
    assert [(r.label, r.area) for r in regions] == [("table", 9)]


def test_min_area_drops_small_components_and_order_is_label_then_area():
    label_map = _map(fill=0)
    label_map[1:3, 1:3] = 2  # 4 px: dropped with min_area 5
    label_map[10:14, 10:14] = 2  # 16 px
    label_map[15:19, 1:2] = 1  # 4 px
    regions = extract_regions(label_map, None, LABELS, min_area=5)
    assert [(r.label_index, r.area) for r in regions] == [(0, 600 - 4 - 16 - 4), (2, 16)]
    assert [r.id for r in regions] == [1, 2]


def test_score_is_mean_confidence_over_the_component():
    label_map = _map()
    label_map[0:2, 0:2] = 0
    label_map[10:12, 10:12] = 0
    confidence = np.zeros(label_map.shape, np.float32)
    confidence[0:2, 0:2] = [[0.2, 0.4], [0.6, 0.8]]
    confidence[10:12, 10:12] = 0.9
    regions = extract_regions(label_map, confidence, LABELS)
    assert sorted(r.score for r in regions) == pytest.approx([0.5, 0.9])


def test_cropped_mask_excludes_other_components_inside_the_box():
    label_map = _map()
    label_map[2:10, 2] = 1  # an L shape ...
    label_map[9, 2:10] = 1
    label_map[3:5, 6:8] = 1  # ... and a separate blob inside its box
    regions = extract_regions(label_map, None, LABELS)
    ell = max(regions, key=lambda r: r.area)
    assert ell.bbox == (2, 2, 10, 10)
    assert ell.mask.sum() == ell.area == 15
    assert not ell.mask[1:3, 4:6].any()  # the blob's pixels, in box coordinates
    full = ell.full_mask(label_map.shape)
    assert full.sum() == 15 and full[9, 9] and not full[3, 6]


def test_connectivity_4_splits_diagonal_neighbours():
    label_map = _map((4, 4))
    label_map[0, 0] = label_map[1, 1] = 0
    assert len(extract_regions(label_map, None, LABELS, connectivity=8)) == 1
    assert len(extract_regions(label_map, None, LABELS, connectivity=4)) == 2


def test_max_regions_keeps_the_largest():
    label_map = _map()
    for i in range(5):
        label_map[i * 4:i * 4 + 2, 0:i + 1] = 1  # areas 2, 4, 6, 8, 10
    regions = extract_regions(label_map, None, LABELS, max_regions=2)
    assert sorted(r.area for r in regions) == [8, 10]


def test_regions_reassemble_the_label_map():
    rng = np.random.default_rng(0)
    label_map = rng.integers(-1, 3, size=(40, 50)).astype(np.int32)
    regions = extract_regions(label_map, rng.random((40, 50)).astype(np.float32), LABELS)
    rebuilt = np.full(label_map.shape, -1)
    for r in regions:
        full = r.full_mask(label_map.shape)
        assert (rebuilt[full] == -1).all(), "regions overlap"
        rebuilt[full] = r.label_index
        assert 0.0 <= r.score <= 1.0
    np.testing.assert_array_equal(rebuilt, label_map)


def test_empty_and_bad_inputs():
    assert extract_regions(_map(), None, LABELS) == []
    assert extract_regions(np.zeros((0, 0), np.int32), None, LABELS) == []
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        extract_regions(np.zeros((2, 2, 2), np.int32), None, LABELS)
    with pytest.raises(ValueError, match="confidence shape"):
        extract_regions(_map(), np.zeros((2, 2), np.float32), LABELS)


def test_region_is_frozen_and_module_is_ros_free():
    region = extract_regions(_map(fill=0), None, LABELS)[0]
    assert isinstance(region, Region)
    with pytest.raises(AttributeError):
        region.area = 3  # type: ignore[misc]
    code = "import sys, lang_seg_ros.objects.regions; assert 'rclpy' not in sys.modules, 'regions imported rclpy'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_box_with_more_components_than_16_bit_labels_is_labelled_with_32_bits():
    """OpenCV's statistics run on uint16 labels where they fit; 76,800 isolated pixels in one
    640x480 box overflow them, and the int32 labelling gives every one of them."""
    import cv2

    from lang_seg_ros.objects.regions import binary_components

    sparse = np.zeros((480, 640), np.uint8)
    sparse[::2, ::2] = 1
    count, labels, stats, _ = binary_components(sparse)
    assert count == 240 * 320 + 1 and labels.dtype == np.int32
    assert (stats[1:, cv2.CC_STAT_AREA] == 1).all()
    count, labels, stats, centroids = binary_components(sparse[:40, :60])  # fits: 16-bit labels
    assert count == 20 * 30 + 1 and labels.dtype == np.uint16
    expected = cv2.connectedComponentsWithStats(sparse[:40, :60], connectivity=8, ltype=cv2.CV_32S)
    np.testing.assert_array_equal(labels, expected[1])
    np.testing.assert_array_equal(stats, expected[2])
    np.testing.assert_array_equal(centroids, expected[3])
    regions = extract_regions(np.where(sparse[:40, :60] > 0, 1, -1), None, LABELS)
    assert len(regions) == 20 * 30 and all(r.area == 1 for r in regions)


def test_mask_centroid_equals_opencv_moments():
    import cv2

    from lang_seg_ros.objects.regions import mask_centroid

    rng = np.random.default_rng(0)
    for shape in [(1, 1), (7, 3), (120, 200)]:
        mask = (rng.random(shape) < 0.3).astype(np.uint8)
        mask.flat[0] = 1
        moments = cv2.moments(mask, binaryImage=True)
        area, x, y = mask_centroid(mask.view(bool))
        assert area == moments["m00"]
        assert (x, y) == (moments["m10"] / moments["m00"], moments["m01"] / moments["m00"])
    assert mask_centroid(np.zeros((4, 5), np.uint8))[0] == 0
