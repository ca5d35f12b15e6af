"""The node in the words other stacks read (issue 19), over DDS with the real node: vision_msgs
`LabelInfo` (latched, ahead of the masks it describes), `Detection2DArray` / `Detection3DArray`,
the confidence image and the organised cloud aligned with the mask that Nav2's semantic
segmentation layer takes, and the referred object's points and pose for a grasp planner.

Every check is against the node's own mask and regions and a synthetic depth with known K, so
it holds whatever the tiny random model decides.
"""
from __future__ import annotations

import os
import random

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed: run scripts/setup_ros.sh (ROS 2 Jazzy wheels)")

from std_msgs.msg import String  # noqa: E402

from harness import (LATCHED, Client, add_depth_publishers, camera_info, expected_3d, full_mask, send_with_depth,  # noqa: E402
                     spin_for, stamp_key, start_node)
from lang_seg_ros.ros.image_conversion import image_to_numpy  # noqa: E402

LABELS = ["floor", "road", "a", "tree"]
FX, FY, CX, CY = 100.0, 110.0, 79.5, 59.5
XYZ = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4")])


@pytest.fixture(scope="module")
def std(ros, node_checkpoint, tmp_path_factory):
    proc = start_node(tmp_path_factory, node_checkpoint, f"/v{os.getpid()}_{random.randint(0, 99999)}",
                      labels=", ".join(LABELS), tracking=True, use_depth=True, publish_overlay=False,
                      publish_confidence=True, publish_aligned_points=True, threshold=0.05,
                      referring_min_score=0.0)  # the tiny random model is never sure of anything
    client = Client(ros, proc)
    client.labels_pub = client.publisher(String, "labels")
    client.expression_pub = client.publisher(String, "referring_expression")
    try:
        client.wait_ready()
        add_depth_publishers(client)
        client.spin_until(lambda: client.labels_pub.get_subscription_count() > 0, 10.0)
        yield client
    finally:
        client.close()
        assert proc.stop() == 0, proc.log()[-3000:]


def ramp_depth(hole: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """16UC1 millimetres at the image size (a ramp, 0 = invalid in a hole) and the same in metres."""
    v, u = np.mgrid[0:120, 0:160]
    depth_mm = (1000 + 10 * u + 5 * v).astype(np.uint16)
    if hole:
        depth_mm[10:40, 20:70] = 0
    return depth_mm, np.where(depth_mm > 0, depth_mm / 1000.0, np.nan)


def xyz_of(cloud) -> np.ndarray:
    assert [(f.name, f.offset, f.datatype) for f in cloud.fields][:3] == [("x", 0, 7), ("y", 4, 7), ("z", 8, 7)]
    return np.frombuffer(bytes(cloud.data), XYZ).reshape(cloud.height, cloud.width) if cloud.height > 1 else \
        np.frombuffer(bytes(cloud.data), XYZ)


def label_infos(std, labels: list[str]) -> list:
    return [m for m in std.out.get("label_info") if [c.class_name for c in m.class_map] == labels]


# ---- type hashes: what a ROS install's tools see --------------------------------------------------
@pytest.mark.parametrize("topic, name", [("label_info", "LabelInfo"), ("detections", "Detection2DArray"),
                                         ("detections_3d", "Detection3DArray")])
def test_the_node_advertises_upstream_vision_msgs_types(std, ros, topic, name):
    from test_vision_msgs_types import UPSTREAM_RIHS01

    infos = std.spin_until(lambda: ros.node.get_publishers_info_by_topic(std.proc.topic(topic)), 5.0)
    assert [(i.topic_type, str(i.topic_type_hash)) for i in infos] == [
        (f"vision_msgs/msg/{name}", f"RIHS01_{UPSTREAM_RIHS01[name]}")]


# ---- label_info ------------------------------------------------------------------------------------
def test_label_info_is_latched_for_a_late_subscriber(std, ros):
    from vision_msgs.msg import LabelInfo

    got = []
    late = ros.node.create_subscription(LabelInfo, std.proc.topic("label_info"), got.append, LATCHED)
    try:
        assert std.spin_until(lambda: got, 5.0), "a late subscriber got no LabelInfo"
    finally:
        ros.node.destroy_subscription(late)
    info = got[-1]
    assert [(c.class_id, c.class_name) for c in info.class_map] == list(enumerate(LABELS))
    assert info.threshold == pytest.approx(0.05)


def test_label_info_changes_before_the_first_mask_of_the_new_set(std):
    new = ["tree", "road", "sky"]
    try:
        std.out.arrivals.clear()
        std.labels_pub.publish(String(data=", ".join(new)))
        assert std.spin_until(lambda: label_infos(std, new), 5.0)
        out = None
        for _ in range(20):  # until a frame was computed with the new set
            out = std.send(std.make_image(), timeout=3.0, retries=1)
            if out is not None and list(out.labels) == new:
                break
        assert out is not None and list(out.labels) == new
        order = [(name, msg) for name, msg in std.out.arrivals if name in ("label_info", "segmentation")]
        first_info = next(i for i, (n, m) in enumerate(order)
                          if n == "label_info" and [c.class_name for c in m.class_map] == new)
        first_mask = next(i for i, (n, m) in enumerate(order) if n == "segmentation" and list(m.labels) == new)
        assert first_info < first_mask
        # the threshold travels in it too, republished when it changes
        assert all(r.successful for r in std.set_parameters(threshold=0.2))
        assert std.spin_until(lambda: [m for m in label_infos(std, new) if m.threshold == pytest.approx(0.2)], 5.0)
    finally:
        std.set_parameters(threshold=0.05)
        std.labels_pub.publish(String(data=", ".join(LABELS)))
        assert std.spin_until(lambda: std.out.get("label_info")
                              and [c.class_name for c in std.out.get("label_info")[-1].class_map] == LABELS, 5.0)


# ---- confidence + aligned points: what Nav2's semantic layer takes ------------------------------
def test_confidence_and_aligned_points_share_the_masks_stamp_and_size(std):
    depth_mm, depth_m = ramp_depth()
    msg, out = send_with_depth(std, [(depth_mm, "16UC1", 0.0)], camera_info(160, 120, FX, FY, CX, CY))
    got = std.wait_all(msg.header, ["label_mask", "confidence", "aligned_points"])
    mask_msg, confidence, cloud = got["label_mask"], got["confidence"], got["aligned_points"]
    assert None not in (mask_msg, confidence, cloud), std.proc.log()[-2000:]
    for m in (mask_msg, confidence, cloud):
        assert stamp_key(m.header) == stamp_key(msg.header)
    assert confidence.header.frame_id == mask_msg.header.frame_id == msg.header.frame_id
    assert cloud.header.frame_id == "depth_optical"
    assert confidence.encoding == "mono8" and (confidence.height, confidence.width) == (mask_msg.height, mask_msg.width)
    assert (cloud.height, cloud.width) == (mask_msg.height, mask_msg.width) and cloud.point_step == 12
    assert not cloud.is_dense  # the hole has no depth

    # every point is its pixel's depth back-projected with K; NaN (all three) where depth is 0
    points = xyz_of(cloud)
    v, u = np.mgrid[0:120, 0:160]
    np.testing.assert_allclose(points["z"], depth_m.astype(np.float32), rtol=1e-6)
    np.testing.assert_allclose(points["x"], (u - CX) * depth_m / FX, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(points["y"], (v - CY) * depth_m / FY, rtol=1e-5, atol=1e-6)
    hole = depth_mm == 0
    assert hole.any() and all(np.isnan(points[c][hole]).all() for c in "xyz")

    # confidence: round(255 * probability of the pixel's label), 0 where the pixel has no label;
    # a region's mean probability is its score, so the image's mean over the region matches it
    conf = image_to_numpy(confidence).astype(np.float64)
    mask = image_to_numpy(mask_msg)
    assert (conf[mask == out.no_label] == 0).all()
    labelled = conf[mask != out.no_label]
    assert labelled.size and (labelled >= round(0.05 * 255) - 1).all()  # the threshold holds
    for region in out.regions:
        region_conf = conf[full_mask(region, mask.shape)]
        assert region_conf.mean() / 255.0 == pytest.approx(region.score, abs=0.6 / 255)


def test_the_nav2_layer_stand_in_takes_a_whole_frame_set(std):
    """What Nav2's semantic segmentation layer would take from the node, per the shipped config
    (config/nav2_semantic_layer.yaml): the frame set is accepted, and every labelled pixel of a
    class the config groups becomes one point of its group (road: traversable, tree: lethal)."""
    from nav2_layer_standin import SemanticLayerIntake

    intake = SemanticLayerIntake.from_file()
    depth_mm, _ = ramp_depth(hole=False)  # 1.0-2.8 m: inside the layer's (0.3, 5.0) m range
    msg, out = send_with_depth(std, [(depth_mm, "16UC1", 0.0)], camera_info(160, 120, FX, FY, CX, CY))
    got = std.wait_all(msg.header, ["label_mask", "confidence", "aligned_points"])
    mapping = intake.on_label_info(std.out.get("label_info")[-1])
    assert mapping.ids == {"road": LABELS.index("road"), "tree": LABELS.index("tree")}
    summary = intake.on_frame(got["label_mask"], got["aligned_points"], got["confidence"])
    mask = image_to_numpy(got["label_mask"])
    assert (summary.width, summary.height) == (160, 120) and summary.invalid_points == 0
    groups = intake.source.class_groups()
    for name in ("road", "tree"):
        assert summary.groups[groups[name].name].points == int((mask == LABELS.index(name)).sum())
    assert (mask == LABELS.index("road")).any() or (mask == LABELS.index("tree")).any()


# ---- detections -------------------------------------------------------------------------------------
def test_detections_are_the_regions_in_vision_msgs(std):
    depth_mm, depth_m = ramp_depth()
    msg, out = send_with_depth(std, [(depth_mm, "16UC1", 0.0)], camera_info(160, 120, FX, FY, CX, CY))
    got = std.wait_all(msg.header, ["detections", "detections_3d"])
    d2, d3 = got["detections"], got["detections_3d"]
    assert d2 is not None and d3 is not None
    assert d2.header.frame_id == msg.header.frame_id and d3.header.frame_id == "depth_optical"
    assert len(out.regions) >= 2 and len(d2.detections) == len(out.regions)
    by_id = {}
    for region, det in zip(out.regions, d2.detections):
        assert region.track_id > 0 and det.id == str(region.track_id)  # tracking on: the track id
        (hyp,) = det.results
        assert hyp.hypothesis.class_id == region.label == LABELS[region.label_index]
        assert hyp.hypothesis.score == pytest.approx(region.score)
        b = region.bbox
        assert (det.bbox.center.position.x, det.bbox.center.position.y) == pytest.approx(
            (b.x_offset + b.width / 2, b.y_offset + b.height / 2))
        assert (det.bbox.size_x, det.bbox.size_y) == (b.width, b.height)
        by_id[det.id] = region
    with_3d = [r for r in out.regions if r.has_3d]
    assert len(d3.detections) == len(with_3d) >= 1
    for det in d3.detections:
        region = by_id[det.id]
        points, _ = expected_3d(full_mask(region, depth_m.shape), depth_m, FX, FY, CX, CY)
        lo, hi = points.min(axis=0), points.max(axis=0)
        c, size = det.bbox.center.position, det.bbox.size
        assert (c.x, c.y, c.z) == pytest.approx(tuple((lo + hi) / 2), abs=1e-6)
        assert (size.x, size.y, size.z) == pytest.approx(tuple(hi - lo), abs=1e-6)
        assert det.bbox.center.orientation.w == 1.0
        p = det.results[0].pose.pose.position
        assert (p.x, p.y, p.z) == pytest.approx(tuple(points.mean(axis=0)), abs=1e-6)


# ---- grasping: the referred object's points and pose ---------------------------------------------
def test_referred_object_points_and_pose_with_depth(std):
    depth_mm, depth_m = ramp_depth()
    info = camera_info(160, 120, FX, FY, CX, CY)
    _, out = send_with_depth(std, [(depth_mm, "16UC1", 0.0)], info)
    label = LABELS[max(out.regions, key=lambda r: r.area).label_index]
    std.expression_pub.publish(String(data=f"the largest {label}"))
    spin_for(std.executor, 0.3)
    try:
        for _ in range(5):
            msg, out = send_with_depth(std, [(depth_mm, "16UC1", 0.0)], info)
            got = std.wait_all(msg.header, ["referring/region", "referring/points", "referring/pose"], 3.0)
            if got["referring/region"] is not None and got["referring/region"].found \
                    and got["referring/region"].region.has_3d:
                break
        region_msg, cloud, pose = got["referring/region"], got["referring/points"], got["referring/pose"]
        assert region_msg is not None and region_msg.found and region_msg.region.has_3d, std.proc.log()[-2000:]
        assert cloud is not None and pose is not None
        for m in (cloud, pose):
            assert stamp_key(m.header) == stamp_key(msg.header) and m.header.frame_id == "depth_optical"
        mask = full_mask(region_msg.region, depth_m.shape)
        expected, _ = expected_3d(mask, depth_m, FX, FY, CX, CY)
        points = xyz_of(cloud)
        assert cloud.height == 1 and cloud.width == len(expected) and cloud.is_dense
        got_points = np.stack([points[c] for c in "xyz"], axis=1).astype(np.float64)
        np.testing.assert_allclose(np.sort(got_points, axis=0), np.sort(expected, axis=0), rtol=1e-5, atol=1e-6)
        p = pose.pose.position
        c = region_msg.region.centroid_3d
        assert (p.x, p.y, p.z) == pytest.approx((c.x, c.y, c.z), abs=1e-6)
        assert (p.x, p.y, p.z) == pytest.approx(tuple(expected.mean(axis=0)), abs=1e-5)
        assert pose.pose.orientation.w == 1.0
    finally:
        std.expression_pub.publish(String(data=""))
        spin_for(std.executor, 0.2)
