"""The numpy facade: image formats, label handling, caching, output at input resolution."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from lang_seg_ros.inference import NO_LABEL, Segmenter, clean_labels, parse_labels


@pytest.fixture()
def segmenter(tiny_model):
    seg = Segmenter(tiny_model, device="cpu", working_size=96)
    seg.set_labels(["road", "sky", "car", "tree"])
    return seg


@pytest.fixture(scope="module")
def rgb():
    return (np.random.default_rng(0).random((75, 130, 3)) * 255).astype(np.uint8)


def test_outputs_are_at_input_resolution(segmenter, rgb):
    result = segmenter.segment(rgb)
    assert result.labels == ("road", "sky", "car", "tree")
    assert result.label_map.shape == (75, 130) and result.label_map.dtype == np.int32
    assert result.confidence.shape == (75, 130) and result.confidence.dtype == np.float32
    assert result.label_map.min() >= 0 and result.label_map.max() < 4
    assert np.all((result.confidence >= 0.25 - 1e-6) & (result.confidence <= 1))  # max of 4 probabilities
    assert set(result.timings_ms) == {"preprocess", "forward", "postprocess"}


def test_confidence_is_the_softmax_of_the_chosen_label(segmenter, rgb, tiny_model):
    """Single scale: resize to the working size, pad to 32, logits back to input size, softmax."""
    import torch.nn.functional as F

    result = segmenter.segment(rgb)
    x = (torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255 - 0.5) / 0.5
    x = F.interpolate(x, (55, 96), mode="bilinear", align_corners=False, antialias=True)
    x = F.pad(x, (0, 0, 0, 9), value=-1.0)
    with torch.no_grad():
        logits = tiny_model(x, tiny_model.encode_text(list(result.labels)))[:, :, :55]
    logits = F.interpolate(logits, (75, 130), mode="bilinear", align_corners=True)
    probs = logits.softmax(1)[0]
    np.testing.assert_array_equal(result.label_map, probs.argmax(0).numpy())
    # The log-partition function is interpolated from the stride-2 grid away from label borders
    # (lang_seg_ros/inference/decide.py): a lower bound of the exact probability, and close to it.
    exact = probs.amax(0).numpy()
    assert np.all(result.confidence <= exact + 1e-5)
    np.testing.assert_allclose(result.confidence, exact, atol=1e-3)


def test_colour_orders_and_channel_counts_agree(segmenter, rgb):
    base = segmenter.segment(rgb).label_map
    assert np.array_equal(segmenter.segment(rgb[:, :, ::-1].copy(), color_order="bgr").label_map, base)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])
    assert np.array_equal(segmenter.segment(rgba, color_order="rgba").label_map, base)
    gray = rgb[:, :, 1]
    assert np.array_equal(segmenter.segment(gray).label_map, segmenter.segment(np.dstack([gray] * 3)).label_map)


def test_a_bgra_frame_segments_like_the_same_rgb_frame(segmenter, rgb):
    """4-channel BGRA (a ROS bgra8 camera, `lang-seg segment` on a PNG with alpha) is BGR plus alpha."""
    base = segmenter.segment(rgb)
    bgra = np.dstack([rgb[:, :, ::-1], np.full(rgb.shape[:2], 200, np.uint8)])
    for order in ("bgra", "BGRA"):
        result = segmenter.segment(bgra, color_order=order)
        np.testing.assert_array_equal(result.label_map, base.label_map)
        np.testing.assert_array_equal(result.confidence, base.confidence)
    # the same bytes read as RGBA are another picture, so the check above can tell the orders apart
    assert not np.array_equal(segmenter.segment(bgra, color_order="rgba").confidence, base.confidence)


@pytest.mark.parametrize("bad, error", [
    (np.zeros((0, 10, 3), np.uint8), "empty image"),
    (np.zeros((10, 10, 3), np.float32), "uint8"),
    (np.zeros((10, 10, 5), np.uint8), "shape"),
])
def test_bad_images_raise_clear_errors(segmenter, bad, error):
    with pytest.raises(ValueError, match=error):
        segmenter.segment(bad)


def test_label_sets_are_cleaned():
    assert parse_labels("dog, grass ,other") == ["dog", "grass", "other"]
    assert clean_labels(" dog ,, grass , other,") == ("dog", "grass", "other")
    assert clean_labels(["  big   dog "]) == ("big dog",)
    for empty in ("", " , ,", []):
        with pytest.raises(ValueError, match="empty"):
            clean_labels(empty)
    with pytest.raises(ValueError, match="at most"):
        clean_labels([f"l{i}" for i in range(5000)])


def test_bad_label_sets_are_refused_and_the_active_set_stays(segmenter, rgb):
    """One policy (lang_seg_ros.inference.labels): refused with the reason, never cut or dropped."""
    assert segmenter.set_labels(" car ,, road,") == ("car", "road")
    for bad, why in [("car, car, road", "duplicate"), ("car, CAR", "case is ignored"), (" , ", "empty"), ("x" * 300, "exceeds max_label_chars=256"),
                     ("car, ro\x00ad", "control"), ([f"l{i}" for i in range(1025)], "at most")]:
        with pytest.raises(ValueError, match=why):
            segmenter.set_labels(bad)
        with pytest.raises(ValueError, match=why):
            segmenter.segment(rgb, labels=bad)
    assert segmenter.labels == ("car", "road")  # a rejected set leaves the active one in place
    assert segmenter.segment(rgb).labels == ("car", "road")


def test_labels_longer_than_clip_context_are_truncated_with_a_warning(segmenter, rgb, caplog):
    long_label = " ".join(["x"] * 100)  # 100 tokens in 199 characters
    with caplog.at_level(logging.WARNING):
        result = segmenter.segment(rgb, labels=[long_label, "road"])
    assert "tokens" in caplog.text
    assert result.label_map.shape == rgb.shape[:2]


def test_unchanged_labels_are_never_encoded_again(segmenter, rgb):
    cache = segmenter.text_cache
    before = cache.encoded
    for _ in range(3):
        segmenter.segment(rgb)
    assert cache.encoded == before
    segmenter.set_labels(["road", "sky", "car", "tree", "person"])
    assert cache.encoded == before + 1  # only the new label


def test_segment_without_labels_is_a_runtime_error(tiny_model, rgb):
    with pytest.raises(RuntimeError, match="set_labels"):
        Segmenter(tiny_model, device="cpu").segment(rgb)


def test_threshold_marks_uncertain_pixels(tiny_model, rgb):
    seg = Segmenter(tiny_model, device="cpu", working_size=96, threshold=0.9999)
    result = seg.segment(rgb, labels=["road", "sky"])
    assert (result.label_map == NO_LABEL).sum() == (result.confidence < 0.9999).sum() > 0


def test_many_labels_are_decided_in_chunks_with_the_same_result(tiny_model, rgb, monkeypatch):
    """Single scale: the exact pass over border pixels in chunks (decide._CHUNK_ELEMENTS). The random
    tiny model paints one label everywhere, so this only shows that chunking breaks nothing here;
    test_decide_chunks.py checks both chunked paths on logits with borders (and the multi-scale one
    through a Segmenter)."""
    from lang_seg_ros.inference import decide

    labels = [f"thing {i}" for i in range(40)]
    seg = Segmenter(tiny_model, device="cpu", working_size=96)
    whole = seg.segment(rgb, labels=labels)
    monkeypatch.setattr(decide, "_CHUNK_ELEMENTS", 40 * 7)  # 7 border pixels per chunk
    chunked = seg.segment(rgb, labels=labels)
    np.testing.assert_array_equal(chunked.label_map, whole.label_map)
    np.testing.assert_allclose(chunked.confidence, whole.confidence, rtol=1e-5)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_half_precisions_run_and_mostly_agree(tiny_model, rgb, precision):
    import copy

    full = Segmenter(copy.deepcopy(tiny_model), device="cpu", working_size=96).segment(rgb, labels=["a", "b"])
    half = Segmenter(copy.deepcopy(tiny_model), device="cpu", working_size=96, precision=precision)
    result = half.segment(rgb, labels=["a", "b"])
    assert (result.label_map == full.label_map).mean() > 0.9


def test_bad_settings_are_rejected(tiny_model):
    with pytest.raises(ValueError, match="precision"):
        Segmenter(tiny_model, precision="int4")
    with pytest.raises(ValueError, match="working_size"):
        Segmenter(tiny_model, working_size=8)


def test_features_for_object_level_classification(segmenter, rgb):
    from lang_seg_ros.objects.instances import classify_by_mask_pooling

    result = segmenter.segment(rgb, return_features=True)
    # working size 96x55 -> stride-2 embeddings covering the image: 48 x 28
    assert result.pixel_features.shape == (32, 28, 48)
    assert result.text_features.shape == (4, 32)
    np.testing.assert_allclose(np.linalg.norm(result.pixel_features, axis=0), 1, atol=1e-5)
    whole = np.ones(rgb.shape[:2], np.int32)
    labels, scores = classify_by_mask_pooling(whole, result.pixel_features, result.text_features)
    assert 0 <= labels[1] < 4 and 0.25 <= scores[1] <= 1
    assert segmenter.segment(rgb).pixel_features is None


def test_several_label_sets_from_one_encoding_equal_separate_calls(segmenter, rgb):
    sets = [["road", "sky"], ["car", "road", "tree", "person"]]
    together = segmenter.segment_sets(rgb, sets)
    for labels, result in zip(sets, together):
        alone = segmenter.segment(rgb, labels=labels)
        assert result.labels == tuple(labels)
        np.testing.assert_array_equal(result.label_map, alone.label_map)
        np.testing.assert_allclose(result.confidence, alone.confidence, rtol=1e-6)


def test_a_spatial_regularisation_block_runs_in_half_precision_too(rgb):
    """The block acts on fp32 logits; an fp16 / bf16 image branch must not break it."""
    import copy

    from lang_seg_ros.model import build_model

    torch.manual_seed(0)
    model = build_model("lseg_tiny", block_type="depthwise", block_depth=2, block_activation="lrelu").eval()
    half = Segmenter(copy.deepcopy(model), device="cpu", precision="bf16", working_size=96)
    reference = Segmenter(model, device="cpu", working_size=96).segment(rgb, labels=["road", "sky", "car"])
    result = half.segment(rgb, labels=["road", "sky", "car"])
    assert (result.label_map == reference.label_map).mean() > 0.9
