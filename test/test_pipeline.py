"""The frame pipeline without ROS: one frame in, everything the node publishes out."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from lang_seg_ros.inference import Segmenter
from lang_seg_ros.objects.panoptic import decode_panoptic
from lang_seg_ros.objects.regions import extract_regions
from lang_seg_ros.pipeline import FramePipeline, PipelineSettings

LABELS = "floor:stuff, road, a, tree"


@pytest.fixture()
def pipeline(tiny_model):
    pipe = FramePipeline(Segmenter(tiny_model, device="cpu"), PipelineSettings(working_size=128, min_region_area=5))
    pipe.set_labels(LABELS)
    return pipe


@pytest.fixture(scope="module")
def image():
    """(96, 128, 3) RGB: colour stripes and a white box, so the tiny random model gives structure."""
    out = np.zeros((96, 128, 3), np.uint8)
    out[:, :32], out[:, 32:64], out[:, 64:96] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    out[24:72, 96:] = 255
    return out


def test_label_set_work_happens_once_per_set_not_per_frame(pipeline, image):
    active = pipeline.labels
    assert active.labels == ("floor", "road", "a", "tree") and active.spec.is_stuff == (True, False, False, False)
    encoded = pipeline.segmenter.text_cache.encoded
    for _ in range(3):
        result = pipeline.process(image)
        assert result.labels is active  # the same immutable object every frame
    assert pipeline.segmenter.text_cache.encoded == encoded
    again = pipeline.set_labels(LABELS)
    assert again.id == active.id + 1 and pipeline.segmenter.text_cache.encoded == encoded  # cached per label


def test_the_folded_head_is_computed_per_label_set_not_per_frame(pipeline, image, monkeypatch):
    model = pipeline.segmenter.model
    calls = []
    fold_head = model.fold_head
    monkeypatch.setattr(model, "fold_head", lambda text: calls.append(len(text)) or fold_head(text))
    pipeline.set_labels("sky, road")
    for _ in range(3):
        pipeline.process(image)
    pipeline.set_expression("the red mug")  # the query's label set: folded once too
    for _ in range(3):
        pipeline.process(image)
    assert calls == [2, 3]


def test_regions_are_the_connected_components_of_the_label_map(pipeline, image):
    result = pipeline.process(image)
    assert result.label_map.shape == image.shape[:2] and result.label_map.dtype == np.int32
    things = [r.region for r in result.objects.regions if not r.is_stuff]
    expected = [r for r in extract_regions(result.label_map, result.confidence, result.labels.labels, min_area=5)
                if r.label_index != 0]
    assert len(things) >= 2, "the test scene should give several regions"
    assert [(r.label, r.bbox, r.area) for r in things] == [(r.label, r.bbox, r.area) for r in expected]
    np.testing.assert_allclose([r.centroid for r in things], [r.centroid for r in expected])
    stuff = [r for r in result.objects.regions if r.is_stuff]
    assert len(stuff) <= 1 and all(r.region.label == "floor" and r.instance == 0 for r in stuff)
    assert set(result.timings_ms) == {"preprocess", "forward", "postprocess", "regions"}  # the stages that ran


def test_panoptic_overlay_and_tracking_follow_the_settings(pipeline, image):
    assert pipeline.process(image).panoptic is None and pipeline.process(image).overlay is None
    pipeline.configure(PipelineSettings(working_size=128, min_region_area=5, panoptic=True, overlay=True,
                                        tracking=True))
    first, second = pipeline.process(image), pipeline.process(image)
    segments = {s.id: s for s in decode_panoptic(second.panoptic)}
    for region in second.objects.regions:
        assert np.array_equal(segments[region.panoptic_id].mask, region.region.full_mask(image.shape[:2]))
    assert second.overlay.shape[0] == 96 and second.overlay.shape[1] > 128  # image + legend panel
    assert [r.track_id for r in first.objects.regions] == [r.track_id for r in second.objects.regions]
    assert all(r.track_id > 0 for r in second.objects.regions)


def test_the_overlay_can_follow_the_rest_of_the_frame(pipeline, image):
    """The node sends what robots read first and draws the overlay after: `finish(overlay=False)`
    then `add_overlay` gives the overlay `finish` draws itself, and only when the settings ask."""
    pipeline.configure(PipelineSettings(working_size=128, min_region_area=5, overlay=True))
    inference = pipeline.infer(image)
    late = pipeline.finish(inference, overlay=False)
    assert late.overlay is None and "overlay" not in late.timings_ms
    pipeline.add_overlay(inference, late)
    np.testing.assert_array_equal(late.overlay, pipeline.process(image).overlay)
    assert late.timings_ms["overlay"] >= 0
    pipeline.configure(PipelineSettings(working_size=128, min_region_area=5))
    unwatched = pipeline.infer(image)
    result = pipeline.finish(unwatched, overlay=False)
    pipeline.add_overlay(unwatched, result)
    assert result.overlay is None


def test_a_frame_can_be_finished_without_regions_when_nobody_reads_them(pipeline, image):
    """`finish(regions=False)` (the node, when no output that carries regions has a subscriber)
    leaves out regions, panoptic ids and the referring answer; the label map and the traversable
    mask are those of a full finish, and `refer` on that frame answers as on a full one."""
    pipeline.configure(PipelineSettings(working_size=128, min_region_area=5, panoptic=True, referring_min_score=0.0))
    full = pipeline.process(image)
    target = max(full.objects.regions, key=lambda r: r.region.area).region.label
    pipeline.configure(PipelineSettings(working_size=128, min_region_area=5, panoptic=True, referring_min_score=0.0,
                                        traversable=(target,)))
    pipeline.set_expression(f"the {target} on the left")
    full = pipeline.finish(pipeline.infer(image))
    answer_on_full = pipeline.refer(f"the largest {target}")
    lean = pipeline.finish(pipeline.infer(image), regions=False)
    assert not full.regions_skipped and full.objects.regions and full.panoptic is not None and full.referring
    assert lean.regions_skipped and lean.objects.regions == [] and lean.panoptic is None and lean.referring is None
    np.testing.assert_array_equal(lean.objects.label_map, full.objects.label_map)
    np.testing.assert_array_equal(lean.traversable, full.traversable)
    answer = pipeline.refer(f"the largest {target}")
    assert answer.found == answer_on_full.found and answer.region is not None
    np.testing.assert_array_equal(answer.result.mask, answer_on_full.result.mask)


def test_referring_reuses_the_frames_regions_or_adds_its_phrase(pipeline, image):
    pipeline.configure(PipelineSettings(working_size=128, min_region_area=5, referring_min_score=0.0))
    target = max(pipeline.process(image).objects.regions, key=lambda r: r.region.area).region.label
    pipeline.set_expression(f"the {target} on the left")
    result = pipeline.process(image)
    answer = result.referring
    assert answer is not None and answer.found, answer.result.reason
    candidates = [r for r in result.objects.regions if r.region.label == target]
    leftmost = min(candidates, key=lambda r: r.region.centroid[0])
    assert answer.region.region.id == leftmost.region.id and answer.region.region.bbox == leftmost.region.bbox

    pipeline.set_expression("the red mug")  # not a label: one more label, from the same image encoding
    answer = pipeline.process(image).referring
    assert answer.result.labels == ("floor", "road", "a", "tree", "red mug")
    assert pipeline.refer("the red mug").result.labels == answer.result.labels  # on the latest frame
    pipeline.set_expression("")
    assert pipeline.process(image).referring is None


def test_bad_expressions_and_labels_leave_the_state_unchanged(pipeline):
    pipeline.set_expression("the road")
    for bad in ("the one on the left", "x" * 300, "the \x00road"):
        with pytest.raises(ValueError):
            pipeline.set_expression(bad)
    assert pipeline.expression == "the road"
    active = pipeline.labels
    for bad in ("road, road", "", ",".join(f"l{i}" for i in range(2000))):
        with pytest.raises(ValueError):
            pipeline.set_labels(bad)
    assert pipeline.labels is active


def test_depth_gives_3d_with_intrinsics_of_the_depth_or_of_the_colour_image(pipeline, image):
    k_depth = np.array([[50.0, 0, 31.5], [0, 55.0, 23.5], [0, 0, 1]])  # for the 64 x 48 depth image (pixel centres)
    k_colour = np.array([[100.0, 0, 63.5], [0, 110.0, 47.5], [0, 0, 1]])  # for the 128 x 96 colour image
    depth_mm = np.full((48, 64), 2000, np.uint16)  # half resolution, registered to the image
    result = pipeline.process(image, depth=depth_mm, intrinsics=k_depth)
    assert result.has_depth and result.objects.regions
    assert all(r.geometry is not None and r.geometry.median_depth == 2.0 for r in result.objects.regions)
    same = pipeline.process(image, depth=depth_mm, intrinsics=k_colour, intrinsics_size=(96, 128))
    for a, b in zip(result.objects.regions, same.objects.regions):
        np.testing.assert_allclose(a.geometry.centroid, b.geometry.centroid)
    with pytest.raises(ValueError, match="aspect ratio"):
        pipeline.process(image, depth=np.full((48, 48), 2000, np.uint16), intrinsics=k_depth)


def test_importing_the_core_imports_no_rclpy():
    code = ("import sys; import lang_seg_ros.inference, lang_seg_ros.pipeline, lang_seg_ros.objects, "
            "lang_seg_ros.referring, lang_seg_ros.train, lang_seg_ros.model, lang_seg_ros.data, lang_seg_ros.cli; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('rclpy', 'rosidl_runtime_py', 'rcl_interfaces')); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_an_expression_naming_its_category_twice_is_answered(pipeline, image):
    """"the mug next to the mug" adds one label, not two (a duplicate would refuse every frame)."""
    pipeline.set_expression("the mug next to the mug")
    result = pipeline.process(image)
    assert result.referring is not None and result.referring_error is None
    assert result.referring.result.labels == ("floor", "road", "a", "tree", "mug")


def test_a_query_that_does_not_fit_the_label_set_skips_referring_not_the_frame(tiny_model, image):
    pipeline = FramePipeline(Segmenter(tiny_model, device="cpu"), PipelineSettings(working_size=64))
    pipeline.set_labels([f"label {i}" for i in range(1024)])  # full: no room for the query's phrase
    pipeline.set_expression("the red mug")
    result = pipeline.process(image)
    assert result.referring is None and "not answered" in result.referring_error
    assert result.label_map.shape == image.shape[:2]


def test_a_new_pipeline_after_a_model_reload_continues_the_track_ids(pipeline, image):
    pipeline.configure(PipelineSettings(working_size=128, min_region_area=5, tracking=True))
    first = pipeline.process(image)
    reloaded = FramePipeline(pipeline.segmenter, pipeline.settings)
    reloaded.adopt(pipeline)
    reloaded.set_labels(LABELS, label_set_id=pipeline.labels.id)
    second = reloaded.process(image)
    assert [r.track_id for r in second.objects.regions] == [r.track_id for r in first.objects.regions]
    assert reloaded.refer("the road").tag is None  # the adopted last frame answers at once


def test_frames_of_several_cameras_in_one_batch_equal_frames_alone(pipeline, image):
    """`infer_batch` (the node's round of cameras): each frame's result is its own, as if alone,
    with each camera's colour order; a referring query rides along for all of them."""
    pipeline.set_expression("the car on the left")  # not a label: the query adds its phrase as a second set
    frames = [image, np.ascontiguousarray(image[:, ::-1]), np.roll(image, 40, axis=1)]
    orders = ["rgb", "bgr", "rgb"]  # the rear camera sends BGR: the same picture as RGB reversed
    alone = [pipeline.infer(np.ascontiguousarray(f[:, :, ::-1]) if o == "bgr" else f, "rgb")
             for f, o in zip(frames, orders)]
    batch = pipeline.infer_batch(frames, orders, [None] * 3, ["front", "rear", "side"])
    assert [b.tag for b in batch] == ["front", "rear", "side"]
    for a, b in zip(alone, batch):
        assert len(b.results) == len(a.results) == 2  # the frame's labels and the query's
        for ra, rb in zip(a.results, b.results):
            assert (ra.label_map == rb.label_map).mean() > 0.999
            np.testing.assert_allclose(rb.confidence, ra.confidence, atol=1e-4)
    for i, j in ((0, 1), (0, 2), (1, 2)):  # three different frames: a mix-up would show
        assert not np.allclose(alone[i].results[0].confidence, alone[j].results[0].confidence, atol=1e-2)
    assert pipeline.finish(batch[1]).objects.regions  # each finished on its own
