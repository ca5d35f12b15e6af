"""ObjectRegion messages built from core regions (no node): box, mask and header, field by field."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rclpy")

from std_msgs.msg import Header  # noqa: E402

from lang_seg_ros.objects.regions import Region  # noqa: E402
from lang_seg_ros.ros import messages  # noqa: E402


def region(id_: int, bbox, mask) -> Region:
    return Region(id=id_, label="mug", label_index=1, score=0.75, bbox=bbox, centroid=(4.5, 2.0),
                  area=int(np.asarray(mask).sum()), mask=np.asarray(mask, bool))


def test_a_region_message_carries_its_box_and_mask_in_its_own_image():
    header = Header(frame_id="cam")
    mask = np.array([[1, 0, 1], [1, 1, 0]], bool)
    first = messages.region_to_msg(region(1, (3, 1, 6, 3), mask), header)
    second = messages.region_to_msg(region(2, (0, 0, 1, 1), [[True]]), header)
    assert (first.bbox.x_offset, first.bbox.y_offset, first.bbox.width, first.bbox.height) == (3, 1, 3, 2)
    assert first.bbox.do_rectify is False
    assert (first.id, first.label, first.label_index, first.area) == (1, "mug", 1, 4)
    assert (first.centroid_x, first.centroid_y) == (4.5, 2.0) and first.score == pytest.approx(0.75)
    image = first.mask
    assert (image.height, image.width, image.encoding, image.step, image.header.frame_id) == (2, 3, "mono8", 3, "cam")
    np.testing.assert_array_equal(np.frombuffer(bytes(image.data), np.uint8).reshape(2, 3), mask * 255)
    assert second.mask is not first.mask and bytes(second.mask.data) == b"\xff"
    assert (second.bbox.width, second.bbox.height) == (1, 1) and first.bbox.width == 3


def test_without_masks_the_image_is_empty_but_stamped():
    msg = messages.region_to_msg(region(1, (0, 0, 2, 1), [[True, True]]), Header(frame_id="cam"), with_mask=False)
    assert len(msg.mask.data) == 0 and msg.mask.header.frame_id == "cam"
    assert (msg.bbox.width, msg.bbox.height) == (2, 1)


def test_a_frame_finished_without_regions_sends_no_topic_that_carries_them(tiny_model):
    """Its masks and 3D points go out; segmentation, detections (2D and 3D) and markers do not,
    even when asked for: a message listing no regions would say the frame has none."""
    from lang_seg_ros.inference import Segmenter
    from lang_seg_ros.pipeline import FramePipeline, PipelineSettings
    from lang_seg_ros.ros.outputs import REGION_TOPICS, frame_messages

    image = np.zeros((96, 128, 3), np.uint8)
    image[:, :64], image[24:72, 96:] = (255, 0, 0), 255
    depth = np.full((96, 128), 2000, np.uint16)
    k = np.array([[100.0, 0, 63.5], [0, 100.0, 47.5], [0, 0, 1]])
    pipeline = FramePipeline(Segmenter(model=tiny_model, device="cpu"), PipelineSettings(working_size=128))
    pipeline.set_labels("red, white, other")
    asked = set(REGION_TOPICS) | {"confidence"}
    sent = {}
    for regions in (True, False):
        result = pipeline.finish(pipeline.infer(image, depth=depth, intrinsics=k), regions=regions)
        sent[regions] = frame_messages(Header(frame_id="cam"), result, {}, 0.0, 1, 0, depth_header=Header(frame_id="d"),
                                       wanted=asked)
    assert {"segmentation", "detections", "detections_3d", "regions/markers"} <= set(sent[True])
    assert not set(sent[False]) & set(REGION_TOPICS)
    assert {"label_mask", "confidence"} <= set(sent[False])
    assert bytes(sent[False]["label_mask"].data) == bytes(sent[True]["label_mask"].data)
