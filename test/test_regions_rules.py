"""extract_regions (lang_seg_ros/objects/regions.py): which regions `max_regions` keeps, their order and
ids, and the score rule, on label maps built so that every tie-break is decided by one rule only."""
from __future__ import annotations

import numpy as np
import pytest

from lang_seg_ros.objects.regions import extract_regions

LABELS = ("floor", "mug", "table")


def blank(shape=(20, 30)) -> np.ndarray:
    return np.full(shape, -1, np.int32)


def summary(regions) -> list[tuple]:
    return [(r.id, r.label_index, r.area, r.bbox) for r in regions]


def hook_and_block() -> np.ndarray:
    """Two 24-pixel regions of label 1 with the same top row: a hook whose box starts further left
    but ends further right than a block's (so "left first" means the left edge, not the right)."""
    m = blank()
    m[3, 0:2] = 1        # the hook: its top ...
    m[4:10, 0] = 1       # ... down the left side ...
    m[10, 0:16] = 1      # ... and along the bottom: 2 + 6 + 16 = 24 px, box x 0..16, y 3..11
    m[3:9, 4:8] = 1      # the block: 6 x 4 = 24 px, box x 4..8, y 3..9, two rows above the hook's bottom
    return m


def test_max_regions_keeps_the_largest_whatever_their_label():
    m = blank()
    m[0:2, 0:2] = 0     # label 0, 4 px
    m[5:9, 5:9] = 2     # label 2, 16 px
    m[12:15, 12:15] = 1  # label 1, 9 px
    assert summary(extract_regions(m, None, LABELS, max_regions=2)) == [(1, 1, 9, (12, 12, 15, 15)),
                                                                        (2, 2, 16, (5, 5, 9, 9))]
    assert extract_regions(m, None, LABELS, max_regions=0) == []
    assert len(extract_regions(m, None, LABELS, max_regions=3)) == 3


def test_among_equal_areas_max_regions_prefers_the_lower_label_then_top_then_left():
    m = blank()
    m[0:2, 20:22] = 1   # label 1, top
    m[10:12, 0:2] = 0   # label 0, lower
    assert summary(extract_regions(m, None, LABELS, max_regions=1)) == [(1, 0, 4, (0, 10, 2, 12))]
    m = blank()
    m[0:2, 20:22] = 1   # top right
    m[10:12, 0:2] = 1   # bottom left
    assert summary(extract_regions(m, None, LABELS, max_regions=1)) == [(1, 1, 4, (20, 0, 22, 2))]
    m = hook_and_block()
    assert summary(extract_regions(m, None, LABELS, max_regions=1)) == [(1, 1, 24, (0, 3, 16, 11))]
    m = blank()
    m[5:6, 0:12] = 1    # 12 px at x 0..12
    m[0:2, 14:18] = 0   # 8 px
    m[0:3, 20:24] = 1   # 12 px at x 20..24, higher: kept first among equal areas
    assert summary(extract_regions(m, None, LABELS, max_regions=2)) == [(1, 1, 12, (20, 0, 24, 3)),
                                                                        (2, 1, 12, (0, 5, 12, 6))]


def test_order_is_label_then_larger_then_top_then_left():
    m = blank()
    m[0:2, 0:2] = 2     # label 2 small
    m[10:20, 0:10] = 1  # label 1 big
    m[0:4, 20:24] = 1   # label 1 smaller
    m[15:17, 25:27] = 0  # label 0
    assert [(r.id, r.label_index, r.area) for r in extract_regions(m, None, LABELS)] == [
        (1, 0, 4), (2, 1, 100), (3, 1, 16), (4, 2, 4)]
    m = blank()
    m[0:2, 20:22] = 1   # top right
    m[10:12, 0:2] = 1   # bottom left
    assert [r.bbox for r in extract_regions(m, None, LABELS)] == [(20, 0, 22, 2), (0, 10, 2, 12)]
    assert [r.bbox for r in extract_regions(hook_and_block(), None, LABELS)] == [(0, 3, 16, 11), (4, 3, 8, 9)]


def test_the_first_index_past_the_label_set_is_no_label():
    m = blank()
    m[0:3, 0:3] = len(LABELS)
    m[5:8, 5:8] = 1
    assert [(r.label, r.area) for r in extract_regions(m, None, LABELS)] == [("mug", 9)]


def test_scores_are_the_float32_mean_clamped_to_0_1():
    m = blank()
    m[0:2, 0:2] = 0
    m[5:7, 5:7] = 1
    m[10:12, 10:12] = 2
    confidence = np.zeros(m.shape, np.float64)
    confidence[0:2, 0:2] = 0.1
    confidence[5:7, 5:7] = 1.5   # out of range: the score stays a probability
    confidence[10:12, 10:12] = -0.5
    floor, mug, table = extract_regions(m, confidence, LABELS)
    assert floor.score == float(np.float32(0.1))  # read as float32, like the model's confidence
    assert mug.score == 1.0 and table.score == 0.0
    assert all(r.score == 1.0 for r in extract_regions(m, None, LABELS))


def test_connectivity_other_than_4_or_8_is_refused():
    with pytest.raises(ValueError, match="^connectivity must be 4 or 8, got 6$"):
        extract_regions(blank(), None, LABELS, connectivity=6)
