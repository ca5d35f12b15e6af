"""Object-level outputs of the node over DDS: instances, stuff labels, panoptic ids, 3D from depth,
the labelled cloud and track ids (issue 6). The node runs in its own process with instance
splitting, tracking, depth, the panoptic image and the cloud on.

The tiny random model decides which pixels get which label; every check here is against the
node's own published mask and regions (and hand-computed geometry), so it holds whatever the
model says. With the labels below, that model (seed 0) splits the test image between three
labels in several pieces each, which gives the checks something to bite on; the tests assert
that much structure so that they cannot pass vacuously.
"""
from __future__ import annotations

import os
import random

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed: run scripts/setup_ros.sh (ROS 2 Jazzy wheels)")


from harness import (Client, add_depth_publishers, camera_info, expected_3d, full_mask, mask_of, send_with_depth,  # noqa: E402
                     shifted, spin_for, stamp_key, start_node)
from lang_seg_ros.objects.panoptic import decode_panoptic  # noqa: E402
from lang_seg_ros.objects.regions import extract_regions  # noqa: E402
from lang_seg_ros.ros.image_conversion import numpy_to_image  # noqa: E402
from lang_seg_ros.srv import SetLabels  # noqa: E402

LABELS = ["floor", "road", "a", "tree"]
# Intrinsics of the 160 x 120 colour image (and of a depth image registered to it).
FX, FY, CX, CY = 100.0, 110.0, 79.5, 59.5


@pytest.fixture(scope="module")
def obj(ros, node_checkpoint, tmp_path_factory):
    proc = start_node(tmp_path_factory, node_checkpoint, f"/o{os.getpid()}_{random.randint(0, 99999)}",
                      labels=", ".join(LABELS), instances=True, tracking=True, publish_panoptic=True,
                      use_depth=True, publish_cloud=True, publish_overlay=False,
                      traversable_labels=["Floor", "road"], obstacle_max_range=20.0, marker_lifetime=0.5,
                      region_embeddings=True, overlap_postprocessing="on")  # the finisher thread
    client = Client(ros, proc)
    try:
        client.wait_ready()
        add_depth_publishers(client)
        yield client
    finally:
        client.close()
        code = proc.stop()
        assert code == 0, proc.log()[-3000:]


def point_tuple(p) -> tuple[float, float, float]:
    return (p.x, p.y, p.z)


# ---- panoptic ids, instances -------------------------------------------------------------------
def test_panoptic_image_decodes_back_to_the_regions(obj):
    msg = obj.make_image(frame_id="pan_cam")
    out = obj.send(msg)
    assert out is not None and out.regions
    panoptic_topic = obj.wait_all(msg.header, ["panoptic"])["panoptic"]
    assert panoptic_topic is not None and panoptic_topic.encoding == "32SC1"
    assert stamp_key(panoptic_topic.header) == stamp_key(msg.header) and panoptic_topic.header.frame_id == "pan_cam"
    panoptic = mask_of(out.panoptic)
    assert out.panoptic.encoding == "32SC1" and panoptic.shape == (msg.height, msg.width)
    np.testing.assert_array_equal(mask_of(panoptic_topic), panoptic)

    mask = mask_of(out.mask)
    assert len({r.label_index for r in out.regions}) >= 2 and len(out.regions) >= 4, "too little structure"
    segments = {s.id: s for s in decode_panoptic(panoptic)}
    assert set(segments) == {r.panoptic_id for r in out.regions}, "ids in the image != the regions' ids"
    covered = np.zeros(panoptic.shape, bool)
    instances: dict[int, list[int]] = {}
    for region in out.regions:
        segment = segments[region.panoptic_id]
        region_mask = full_mask(region, panoptic.shape)
        np.testing.assert_array_equal(segment.mask, region_mask)
        assert segment.label_index == region.label_index and segment.instance == region.instance
        assert region.panoptic_id == (region.label_index + 1) * out.PANOPTIC_DIVISOR + region.instance
        assert region.is_stuff == out.label_is_stuff[region.label_index]
        assert (mask[region_mask] == region.label_index).all()  # a region is pixels of its label
        assert not (covered & region_mask).any()  # regions are disjoint
        covered |= region_mask
        instances.setdefault(region.label_index, []).append(region.instance)
    for label_index, numbers in instances.items():  # things of a label: instances 1..n
        assert sorted(numbers) == list(range(1, len(numbers) + 1))
    assert (panoptic[~covered] == 0).all()


def test_mask_pooling_gives_each_region_one_label_in_the_mask(obj):
    assert all(r.successful for r in obj.set_parameters(mask_pooling=True))
    try:
        out = obj.send(obj.make_image())
        assert out is not None and out.regions
        mask = mask_of(out.mask)
        for region in out.regions:
            region_mask = full_mask(region, mask.shape)
            assert (mask[region_mask] == region.label_index).all()
            assert 0.0 < region.score <= 1.0 and region.label == out.labels[region.label_index]
    finally:
        assert all(r.successful for r in obj.set_parameters(mask_pooling=False))


# ---- stuff labels ------------------------------------------------------------------------------
def test_stuff_labels_from_the_label_set_and_the_parameter(obj):
    before = obj.send(obj.make_image())
    mask = mask_of(before.mask)
    label_map = np.where(mask == before.no_label, -1, mask.astype(np.int32))
    pieces = {i: len([r for r in extract_regions(label_map, None, LABELS) if r.label_index == i]) for i in range(4)}
    stuff = max(pieces, key=pieces.get)  # the label in most pieces: as stuff, all of them are one region
    assert pieces[stuff] >= 2 and sum(r.label_index == stuff for r in before.regions) >= 2
    marked = [f"{label} : STUFF" if i == stuff else label for i, label in enumerate(LABELS)]
    flags = [i == stuff for i in range(4)]
    response = obj.call(SetLabels, obj.proc.topic("set_labels"), SetLabels.Request(labels_csv=", ".join(marked)))
    try:
        assert response.success, response.message
        assert list(response.labels) == LABELS and list(response.label_is_stuff) == flags
        assert obj.spin_until(lambda: [m for m in obj.out.get("current_labels")
                                       if m.label_set_id == response.label_set_id], 5.0)
        latched = [m for m in obj.out.get("current_labels") if m.label_set_id == response.label_set_id][-1]
        assert list(latched.labels) == LABELS and list(latched.label_is_stuff) == flags
        out = obj.send(obj.make_image())
        assert list(out.labels) == LABELS and list(out.label_is_stuff) == flags
        mask = mask_of(out.mask)
        (region,) = [r for r in out.regions if r.label_index == stuff]
        assert region.area == int((mask == stuff).sum()) and region.is_stuff
        assert region.instance == 0 and region.panoptic_id == (stuff + 1) * 1000
        assert not any(r.is_stuff for r in out.regions if r.label_index != stuff)

        # the parameter marks labels too (case-insensitively); that is a new label set id
        other = (stuff + 1) % 4
        assert all(r.successful for r in obj.set_parameters(stuff_labels=f"{LABELS[other].upper()}, sky"))
        out = obj.send(obj.make_image())
        assert list(out.label_is_stuff) == [i in (stuff, other) for i in range(4)]
        assert out.label_set_id == response.label_set_id + 1
        assert all(r.is_stuff == (r.label_index in (stuff, other)) for r in out.regions)
        assert not obj.set_parameters(stuff_labels="bad\x07label")[0].successful
        dup = obj.call(SetLabels, obj.proc.topic("set_labels"), SetLabels.Request(labels_csv="a:stuff, a"))
        assert not dup.success and "duplicate label 'a'" in dup.message
    finally:
        assert all(r.successful for r in obj.set_parameters(stuff_labels=""))
        assert obj.call(SetLabels, obj.proc.topic("set_labels"), SetLabels.Request(labels=LABELS)).success


# ---- 3D from depth -----------------------------------------------------------------------------
def test_3d_of_each_region_from_registered_depth_and_camera_info(obj):
    """16UC1 millimetres at the image size: a ramp with a hole of invalid (0) depth."""
    v, u = np.mgrid[0:120, 0:160]
    depth_mm = (1000 + 10 * u + 5 * v).astype(np.uint16)
    depth_mm[10:40, 20:70] = 0
    info = camera_info(160, 120, FX, FY, CX, CY)
    msg, out = send_with_depth(obj, [(depth_mm, "16UC1", 0.0)], info)
    assert out.depth_header.frame_id == "depth_optical" and stamp_key(out.depth_header) == stamp_key(msg.header)
    depth_m = np.where(depth_mm > 0, depth_mm / 1000.0, np.nan)
    with_3d = 0
    for region in out.regions:
        points, valid_fraction = expected_3d(full_mask(region, depth_m.shape), depth_m, FX, FY, CX, CY)
        if not len(points):
            assert not region.has_3d
            continue
        with_3d += 1
        assert region.has_3d and region.frame_id_3d == "depth_optical"
        assert point_tuple(region.centroid_3d) == pytest.approx(tuple(points.mean(axis=0)), abs=1e-6)
        assert point_tuple(region.extent_min) == pytest.approx(tuple(points.min(axis=0)), abs=1e-6)
        assert point_tuple(region.extent_max) == pytest.approx(tuple(points.max(axis=0)), abs=1e-6)
        assert region.median_depth == pytest.approx(float(np.median(points[:, 2])), abs=1e-6)
        assert region.valid_fraction == pytest.approx(valid_fraction, abs=1e-6)
    assert with_3d >= 1

    # the labelled cloud: every labelled pixel with a valid depth, in the depth frame
    cloud = obj.wait_all(msg.header, ["cloud"])["cloud"]
    assert cloud is not None and cloud.header.frame_id == "depth_optical"
    assert [f.name for f in cloud.fields] == ["x", "y", "z", "label", "instance"] and cloud.point_step == 20
    points = np.frombuffer(bytes(cloud.data), np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                                                        ("label", "<u4"), ("instance", "<u4")]))
    mask = mask_of(out.mask)
    labelled = (mask != out.no_label) & (depth_mm > 0)
    assert cloud.width == len(points) == int(labelled.sum()) and cloud.height == 1
    np.testing.assert_array_equal(points["label"], mask[labelled])
    np.testing.assert_allclose(points["z"], depth_m[labelled], rtol=1e-6)
    for region in out.regions:
        mine = points[points["instance"] == region.id]
        if region.has_3d:
            assert len(mine) == round(region.valid_fraction * region.area)
            centroid = [mine[c].astype(np.float64).mean() for c in "xyz"]
            assert centroid == pytest.approx(point_tuple(region.centroid_3d), abs=1e-5)


def test_navigation_outputs_traversable_mask_obstacles_and_markers(obj):
    """traversable_labels [Floor, road] (a string array, matched without case): the mask marks
    exactly those labels; the obstacle cloud holds every 2nd pixel (obstacle_stride 2) of the other
    labels with a valid depth, in metres; the markers are the regions' 3D boxes."""
    v, u = np.mgrid[0:120, 0:160]
    depth_mm = (1000 + 10 * u + 5 * v).astype(np.uint16)
    depth_mm[50:90, 100:150] = 0  # no depth here
    depth_mm[:20, :] = 30000  # 30 m: beyond obstacle_max_range (20 m)
    msg, out = send_with_depth(obj, [(depth_mm, "16UC1", 0.0)], camera_info(160, 120, FX, FY, CX, CY))
    got = obj.wait_all(msg.header, ["traversable_mask", "obstacles", "regions/markers"])
    mask = mask_of(out.mask)
    traversable = np.isin(mask, [out.labels.index("floor"), out.labels.index("road")])
    obstacle = (mask != out.no_label) & ~traversable
    assert traversable.any() and obstacle.any()  # the model's mask has both kinds here

    trav = got["traversable_mask"]
    assert trav.encoding == "mono8" and trav.header.frame_id == msg.header.frame_id
    np.testing.assert_array_equal(mask_of(trav), np.where(traversable, 255, 0))

    cloud = got["obstacles"]
    assert cloud.header.frame_id == "depth_optical" and stamp_key(cloud.header) == stamp_key(msg.header)
    assert [f.name for f in cloud.fields] == ["x", "y", "z"] and cloud.point_step == 12
    points = np.frombuffer(bytes(cloud.data), np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4")]))
    depth_m = np.where(depth_mm > 0, depth_mm / 1000.0, np.nan)
    keep = np.zeros_like(obstacle)
    keep[::2, ::2] = obstacle[::2, ::2] & (depth_mm[::2, ::2] > 0)
    rows, cols = np.nonzero(keep)
    z = depth_m[rows, cols]
    expected = np.stack([(cols - CX) * z / FX, (rows - CY) * z / FY, z], axis=1)
    expected = expected[np.linalg.norm(expected, axis=1) <= 20.0]
    assert cloud.width == len(points) == len(expected) > 0
    np.testing.assert_allclose(np.stack([points["x"], points["y"], points["z"]], axis=1), expected,
                               rtol=1e-5, atol=1e-5)

    markers = got["regions/markers"].markers
    assert markers[0].action == markers[0].DELETEALL  # regions gone since the last frame disappear
    boxes = {m.id: m for m in markers if m.ns == "regions"}
    texts = {m.id: m for m in markers if m.ns == "labels"}
    with_3d = {r.id: r for r in out.regions if r.has_3d}
    assert with_3d and set(boxes) == set(texts) == set(with_3d)
    for rid, region in with_3d.items():
        box = boxes[rid]
        assert box.header.frame_id == "depth_optical" and box.type == box.CUBE
        assert box.lifetime.sec == 0 and box.lifetime.nanosec == 500_000_000
        lo, hi = np.array(point_tuple(region.extent_min)), np.array(point_tuple(region.extent_max))
        assert point_tuple(box.pose.position) == pytest.approx(tuple((lo + hi) / 2), abs=1e-6)
        assert (box.scale.x, box.scale.y, box.scale.z) == pytest.approx(tuple(np.maximum(hi - lo, 0.01)), abs=1e-6)
        assert texts[rid].text.startswith(f"{region.label} {region.score:.2f}")
        assert texts[rid].text.endswith(f"#{region.track_id}")  # tracking is on


def test_region_embeddings_are_unit_vectors_that_classify_like_the_labels(obj):
    """region_embeddings: each region carries its pooled pixel embedding (unit norm), the message
    the label embeddings; with the tiny model the pooled embedding is a real (non-constant) vector."""
    out = obj.send(obj.make_image(frame_id="emb_cam"))
    assert out is not None and out.regions
    dim = out.embedding_dim
    labels = np.asarray(out.label_embeddings, np.float32).reshape(len(out.labels), dim)
    np.testing.assert_allclose(np.linalg.norm(labels, axis=1), 1.0, atol=1e-4)
    vectors = np.stack([np.asarray(r.embedding, np.float32) for r in out.regions])
    assert vectors.shape == (len(out.regions), dim) and dim > 0
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert len({v.tobytes() for v in vectors}) > 1  # regions differ


def test_3d_from_a_half_resolution_constant_plane_and_depth_matching_by_stamp(obj):
    """32FC1 metres at half the image size (nearest resize, intrinsics scaled): z is exactly the
    plane's; of two depth frames the one nearest in stamp is used; none within depth_slop: no 3D."""
    info = camera_info(80, 60, FX / 2, FY / 2, (CX + 0.5) / 2 - 0.5, (CY + 0.5) / 2 - 0.5)
    far = np.full((60, 80), 5.0, np.float32)
    plane = np.full((60, 80), 2.0, np.float32)
    msg, out = send_with_depth(obj, [(far, "32FC1", -1.0), (plane, "32FC1", 0.02)], info)
    near = shifted(msg.header.stamp, 0.02)
    assert stamp_key(out.depth_header) == (near.sec, near.nanosec)
    depth_m = np.full((120, 160), 2.0)
    assert out.regions and all(r.has_3d for r in out.regions)
    for region in out.regions:
        points, valid_fraction = expected_3d(full_mask(region, depth_m.shape), depth_m, FX, FY, CX, CY)
        assert region.centroid_3d.z == 2.0 and region.extent_min.z == 2.0 and region.extent_max.z == 2.0
        assert region.median_depth == 2.0 and region.valid_fraction == 1.0
        assert point_tuple(region.centroid_3d) == pytest.approx(tuple(points.mean(axis=0)), abs=1e-9)
        assert point_tuple(region.extent_min) == pytest.approx(tuple(points.min(axis=0)), abs=1e-9)

    # a frame 10 s later than any depth frame: regions without 3D, the reason in the log
    start = len(obj.proc.log())
    late = obj.make_image()
    late.header.stamp = shifted(late.header.stamp, 10.0)
    out = obj.send(late)
    assert out is not None and out.regions and not any(r.has_3d for r in out.regions)
    assert out.depth_header.frame_id == ""
    assert obj.proc.wait_log(r"\[no_depth\] .*no depth image within depth_slop", timeout=3.0, start=start)


def test_depth_camera_info_for_another_size_is_refused_not_rescaled(obj):
    """A depth CameraInfo whose width and height differ from the depth image's would silently
    mis-scale the intrinsics: the frame gets no 3D and the log says why."""
    start = len(obj.proc.log())
    wrong = camera_info(160, 120, FX, FY, CX, CY)  # the colour camera's size, but the depth is 80 x 60
    plane = np.full((60, 80), 2.0, np.float32)
    for _ in range(3):  # depth is best effort: a lost depth frame is sent again with a fresh stamp
        msg = obj.make_image()
        depth = numpy_to_image(plane, "32FC1")
        depth.header.stamp, depth.header.frame_id = msg.header.stamp, "depth_optical"
        obj.depth_info_pub.publish(wrong)
        obj.depth_pub.publish(depth)
        spin_for(obj.executor, 0.1)
        out = obj.send(msg)
        assert out is not None and out.regions and not any(r.has_3d for r in out.regions)
        assert out.depth_header.frame_id == ""
        if obj.proc.wait_log(r"\[bad_depth\] .*the depth camera info is for a 160x120 image but the depth image is 80x60",
                             timeout=3.0, start=start):
            break
    else:
        raise AssertionError(f"no bad_depth line in the log:\n{obj.proc.log()[start:][-3000:]}")
    # the right info again: 3D again
    _, out = send_with_depth(obj, [(plane, "32FC1", 0.0)], camera_info(80, 60, FX / 2, FY / 2, 39.5, 29.5))
    assert all(r.has_3d for r in out.regions)


# ---- tracking ----------------------------------------------------------------------------------
def test_track_ids_are_stable_across_identical_frames_and_restart_on_a_label_change(obj):
    first = obj.send(obj.make_image(height=96, width=128))
    second = obj.send(obj.make_image(height=96, width=128))
    assert first is not None and second is not None and first.regions
    key = lambda r: (r.label_index, r.bbox.x_offset, r.bbox.y_offset, r.area)  # noqa: E731
    assert [key(r) for r in first.regions] == [key(r) for r in second.regions]
    assert all(r.track_id > 0 for r in first.regions)
    assert [r.track_id for r in second.regions] == [r.track_id for r in first.regions]
    assert len({r.track_id for r in second.regions}) == len(second.regions)

    # a new label set: label indices mean other things, tracks restart with new ids
    labels = list(reversed(LABELS))
    assert obj.call(SetLabels, obj.proc.topic("set_labels"), SetLabels.Request(labels=labels)).success
    try:
        third = obj.send(obj.make_image(height=96, width=128))
        assert third.regions and min(r.track_id for r in third.regions) > max(r.track_id for r in second.regions)
        assert all(r.successful for r in obj.set_parameters(tracking=False))
        fourth = obj.send(obj.make_image(height=96, width=128))
        assert all(r.track_id == 0 for r in fourth.regions)
    finally:
        assert all(r.successful for r in obj.set_parameters(tracking=True))
        assert obj.call(SetLabels, obj.proc.topic("set_labels"), SetLabels.Request(labels=LABELS)).success


def test_object_parameters_are_validated(obj):
    results = obj.set_parameters(split_depth=0.0)
    assert not results[0].successful and "split_depth" in results[0].reason
    assert not obj.set_parameters(use_depth=False)[0].successful  # start-up only
    assert not obj.set_parameters(tracking_iou=1.5)[0].successful
    assert not obj.set_parameters(cloud_stride=0)[0].successful
    assert not obj.set_parameters(obstacle_stride=0)[0].successful
    results = obj.set_parameters(traversable_labels="road, ROAD")
    assert not results[0].successful and "traversable_labels" in results[0].reason and "case" in results[0].reason
