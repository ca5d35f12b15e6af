"""The shipped Nav2 config (config/nav2_semantic_layer.yaml) and the node's messages against a
stand-in of the intake of Nav2's semantic segmentation layer (nav2_layer_standin.py; the upstream
rules it mirrors are listed there). No node runs here: messages are built in the test.

The config tests need only PyYAML (and rclpy for the rcl parse); the frame tests need
`vision_msgs` for LabelInfo and skip without it.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nav2_layer_standin import (DEFAULT_CONFIG, GROUP_PARAMETERS, LAYER_PARAMETERS, PLUGIN,  # noqa: E402
                                SOURCE_PARAMETERS, FrameRefused, SemanticLayerIntake, find_semantic_layers,
                                labelled_classes, load_layer_config, parameter_problems)

sensor_msgs = pytest.importorskip("sensor_msgs.msg")
from builtin_interfaces.msg import Time  # noqa: E402
from sensor_msgs.msg import Image, PointCloud2, PointField  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

# The embedded default model's labels, in the order the node's `labels` would give them.
STREET = ["sky", "building", "pole", "road", "pavement", "tree", "sign symbol", "fence", "car", "pedestrian",
          "bicyclist"]
ID = {name: i for i, name in enumerate(STREET)}
LETHAL = {"car", "pedestrian", "bicyclist", "pole", "building", "fence", "tree", "sign symbol"}
TOPICS = {"segmentation_topic": "/label_mask", "confidence_topic": "/confidence",
          "pointcloud_topic": "/aligned_points", "labels_topic": "/label_info"}


# ------------------------------------------------------------------------------------- config


def _doc() -> dict:
    return yaml.safe_load(DEFAULT_CONFIG.read_text())


def test_config_has_the_layer_in_both_costmaps():
    assert find_semantic_layers(_doc()) == [("local_costmap", "semantic_segmentation_layer"),
                                            ("global_costmap", "semantic_segmentation_layer")]
    for costmap in ("local_costmap", "global_costmap"):
        params = _doc()[costmap][costmap]["ros__parameters"]
        plugins = params["plugins"]
        # inflation after the semantic layer, so its lethal cells are inflated
        assert plugins.index("semantic_segmentation_layer") < plugins.index("inflation_layer")
        assert params["semantic_segmentation_layer"]["plugin"] == PLUGIN


def test_config_keys_are_the_layers_parameters_with_their_types():
    """Every key is one the layer declares (upstream onInitialize), of the declared type: an int
    for a double parameter (5 instead of 5.0) would stop the costmap at start-up."""
    for costmap in ("local_costmap", "global_costmap"):
        block = _doc()[costmap][costmap]["ros__parameters"]["semantic_segmentation_layer"]
        assert parameter_problems(block) == []
        source = block[block["observation_sources"]]
        # every parameter is written out, none left to a default the reader cannot see
        assert set(LAYER_PARAMETERS) <= set(block)
        assert set(SOURCE_PARAMETERS) <= set(source)
        for group in source["class_types"]:
            assert set(GROUP_PARAMETERS) == set(source[group])


def test_parameter_problems_catches_wrong_names_and_types():
    block = {"plugin": PLUGIN, "observation_sources": "cam", "use_approximate_time_sync": 1, "tile_map_decay": 2.0,
             "cam": {"segmentation_topic": "/m", "max_obstacle_distance": 5, "class_types": ["g"],
                     "g": {"classes": ["road"], "base_cost": 0.0, "dominant": True}}}
    problems = parameter_problems(block)
    assert any(p.startswith("use_approximate_time_sync:") for p in problems)
    assert any(p.startswith("tile_map_decay:") for p in problems)
    assert any(p.startswith("cam.max_obstacle_distance:") for p in problems)
    assert any(p.startswith("cam.g.base_cost:") for p in problems)
    assert any(p.startswith("cam.g.dominant:") for p in problems)


def test_config_class_groups_cover_the_street_labels_once():
    for costmap in ("local_costmap", "global_costmap"):
        source = load_layer_config(DEFAULT_CONFIG, costmap).source()
        assert source.skipped_groups == () and source.duplicate_classes == ()
        groups = {g.name: g for g in source.groups}
        assert set(groups["traversable"].classes) == {"road", "pavement"}
        assert groups["traversable"].base_cost == groups["traversable"].max_cost == 0
        assert set(groups["lethal"].classes) == LETHAL
        assert groups["lethal"].max_cost == 254 and groups["lethal"].dominant_priority
        # every label the default model publishes is in exactly one group: none is ignored with
        # the layer's "not defined in the costmap parameters" error
        assert sorted(source.class_groups()) == sorted(STREET)
        assert all(0 <= g.base_cost <= 254 and 0 <= g.max_cost <= 254 and 0 <= g.mark_confidence <= 255
                   for g in source.groups)
        assert 0.0 < source.min_obstacle_distance < source.max_obstacle_distance


def test_config_topics_are_the_nodes_and_both_costmaps_agree():
    local = load_layer_config(DEFAULT_CONFIG, "local_costmap")
    glob = load_layer_config(DEFAULT_CONFIG, "global_costmap")
    for cfg in (local, glob):
        source = cfg.source()
        assert {k: getattr(source, k) for k in TOPICS} == TOPICS
        # ExactTime: the node stamps mask, confidence and cloud with the input image's stamp
        assert cfg.use_approximate_time_sync is False
        assert cfg.combination_method == 1
    assert local.source().groups == glob.source().groups
    assert labelled_classes(local) == labelled_classes(glob)


def test_config_has_no_yaml_aliases():
    """rcl's parameter parser refuses anchors and aliases ("Will not support aliasing")."""
    events = list(yaml.parse(DEFAULT_CONFIG.read_text()))
    assert not any(isinstance(e, yaml.AliasEvent) for e in events)
    assert not any(getattr(e, "anchor", None) for e in events)


def test_config_parses_with_rcl_with_the_declared_types():
    """The file as a Nav2 costmap node reads it: rcl parses it, and each parameter arrives with
    the type the layer declares."""
    rclpy = pytest.importorskip("rclpy")
    from rclpy.context import Context
    from rclpy.parameter import Parameter

    kinds = {bool: Parameter.Type.BOOL, int: Parameter.Type.INTEGER, float: Parameter.Type.DOUBLE,
             str: Parameter.Type.STRING, list: Parameter.Type.STRING_ARRAY}
    ctx = Context()
    rclpy.init(context=ctx, args=["--ros-args", "--params-file", str(DEFAULT_CONFIG)])
    try:
        for costmap in ("local_costmap", "global_costmap"):
            node = rclpy.create_node(costmap, namespace=costmap, context=ctx,
                                     automatically_declare_parameters_from_overrides=True)
            try:
                got = node.get_parameters_by_prefix("semantic_segmentation_layer")
                prefix = "lang_seg_camera."
                for name, (kind, _) in LAYER_PARAMETERS.items():
                    assert got[name].type_ == kinds[kind], name
                for name, (kind, _) in SOURCE_PARAMETERS.items():
                    assert got[prefix + name].type_ == kinds[kind], name
                for group in got[prefix + "class_types"].value:
                    for name, (kind, _) in GROUP_PARAMETERS.items():
                        assert got[f"{prefix}{group}.{name}"].type_ == kinds[kind], f"{group}.{name}"
                assert got[prefix + "lethal.classes"].value == [
                    "car", "pedestrian", "bicyclist", "pole", "building", "fence", "tree", "sign symbol"]
            finally:
                node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)


# ------------------------------------------------------------------------------------- frames


@pytest.fixture
def vision():
    return pytest.importorskip("vision_msgs.msg")


def _header(ns: int = 1_700_000_000_000_000_000, frame_id: str = "camera_depth_optical_frame") -> Header:
    return Header(stamp=Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000), frame_id=frame_id)


def _label_info(vision, labels=STREET):
    msg = vision.LabelInfo(header=_header(), threshold=0.0)
    msg.class_map = [vision.VisionClass(class_id=i, class_name=name) for i, name in enumerate(labels)]
    return msg


def _mono(array: np.ndarray, encoding: str, header: Header) -> Image:
    array = np.ascontiguousarray(array)
    return Image(header=header, height=array.shape[0], width=array.shape[1], encoding=encoding,
                 is_bigendian=int(sys.byteorder == "big"), step=array.shape[1] * array.itemsize,
                 data=array.tobytes())


def _cloud(points: np.ndarray, header: Header, dtype=np.float32, datatype: int = PointField.FLOAT32) -> PointCloud2:
    """Organised (H, W, 3) or unorganised (N, 3) x, y, z cloud."""
    points = np.ascontiguousarray(points, dtype)
    height, width = points.shape[:2] if points.ndim == 3 else (1, points.shape[0])
    size = np.dtype(dtype).itemsize
    fields = [PointField(name=n, offset=i * size, datatype=datatype, count=1) for i, n in enumerate("xyz")]
    return PointCloud2(header=header, height=height, width=width, fields=fields, is_bigendian=sys.byteorder == "big",
                       point_step=3 * size, row_step=3 * size * width, data=points.tobytes(),
                       is_dense=bool(np.isfinite(points).all()))


def _scene():
    """A 4 x 6 frame: sky (no depth), building at 4 m, a car at 2 m, road at 1.5 m with one
    unlabelled pixel, one pixel without depth and one pixel 0.2 m away (inside the minimum)."""
    h, w = 4, 6
    ids = np.empty((h, w), np.uint8)
    ids[0], ids[1], ids[2], ids[3] = ID["sky"], ID["building"], ID["car"], ID["road"]
    ids[3, 0] = 255  # no label
    conf = np.zeros((h, w), np.uint8)
    conf[0], conf[1], conf[3] = 250, 90, 200
    conf[2] = [200, 200, 200, 60, 60, 127]  # car: three above mark_confidence 127, three not (127 is not above)
    conf[3, 0] = 0
    depth = np.array([np.nan, 4.0, 2.0, 1.5], np.float32)[:, None].repeat(w, 1)
    depth[3, 1] = np.nan
    depth[3, 2] = 0.2
    u = (np.arange(w, dtype=np.float32) - (w - 1) / 2) * 0.1
    v = (np.arange(h, dtype=np.float32) - (h - 1) / 2) * 0.1
    points = np.stack([u[None, :] * depth, v[:, None] * depth, depth], axis=-1).astype(np.float32)
    return ids, conf, points


def _frame(ns: int = 1_700_000_000_000_000_000):
    ids, conf, points = _scene()
    header = _header(ns, "camera_color_optical_frame")
    return (_mono(ids, "mono8", header), _mono(conf, "mono8", header),
            _cloud(points, _header(ns, "camera_depth_optical_frame")))


def _intake(vision=None, config=DEFAULT_CONFIG) -> SemanticLayerIntake:
    intake = SemanticLayerIntake.from_file(config)
    if vision is not None:
        intake.on_label_info(_label_info(vision))
    return intake


def test_accepts_a_consistent_frame_set(vision):
    intake = _intake(vision)
    mask, conf, cloud = _frame()
    summary = intake.on_frame(mask, cloud, conf)
    assert summary.confidence_used and (summary.width, summary.height) == (6, 4)
    g = summary.groups
    assert g["lethal"].points == 12  # building row + car row, all within 0.3-5 m
    assert g["traversable"].points == 3  # road row less the unlabelled, the no-depth and the too-near pixel
    assert g["caution"].points == 0  # sky has no depth
    assert summary.invalid_points == 6 + 1  # the sky row + one road pixel
    assert summary.out_of_range_points == 1
    assert summary.unmapped_points == 1  # the 255 pixel
    assert summary.label_ids == ID


def test_confidence_counts_against_mark_confidence(vision):
    mask, conf, cloud = _frame()
    summary = _intake(vision).on_frame(mask, cloud, conf)
    lethal = summary.groups["lethal"]
    # mark_confidence 127 (the yaml's lethal group): buildings at 90 never, the car's 200s yes,
    # its 60s and its 127 not (the layer compares mean confidence > mark_confidence)
    assert lethal.confident_points == 3
    assert lethal.mean_confidence == pytest.approx((6 * 90 + 3 * 200 + 2 * 60 + 127) / 12)
    assert summary.groups["traversable"].confident_points == 3  # mark_confidence 0, road at 200


def test_without_a_confidence_topic_every_pixel_counts_255(vision, tmp_path):
    doc = _doc()
    doc["local_costmap"]["local_costmap"]["ros__parameters"]["semantic_segmentation_layer"]["lang_seg_camera"][
        "confidence_topic"] = ""
    path = tmp_path / "no_conf.yaml"
    path.write_text(yaml.safe_dump(doc))
    intake = _intake(vision, path)
    mask, _, cloud = _frame()
    summary = intake.on_frame(mask, cloud)  # a pair: the confidence image is not subscribed
    assert not summary.confidence_used
    assert summary.groups["lethal"].confident_points == 12


def test_refuses_a_cloud_of_another_size(vision):
    intake = _intake(vision)
    mask, conf, _ = _frame()
    _, _, points = _scene()
    cloud = _cloud(points[:, :5], _header())  # 4 x 5 against a 4 x 6 mask
    with pytest.raises(FrameRefused) as err:
        intake.on_frame(mask, cloud, conf)
    assert err.value.rule == "cloud_size"


def test_refuses_an_unorganised_cloud(vision):
    """The usual unorganised cloud keeps only the valid points: its width * height is not the
    mask's, so the layer cannot pair points with pixels."""
    intake = _intake(vision)
    mask, conf, _ = _frame()
    _, _, points = _scene()
    flat = points.reshape(-1, 3)
    cloud = _cloud(flat[np.isfinite(flat).all(axis=1)], _header())
    assert cloud.height == 1 and cloud.width == 24 - 7
    with pytest.raises(FrameRefused) as err:
        intake.on_frame(mask, cloud, conf)
    assert err.value.rule == "cloud_size"


def test_a_flat_cloud_with_every_pixel_passes_because_only_the_products_are_compared(vision):
    """Upstream checks width * height only (not the shape): a 1 x 24 cloud holding every pixel's
    point in row order reads the same as the 4 x 6 one. The node sends the organised one."""
    intake = _intake(vision)
    mask, conf, organised = _frame()
    _, _, points = _scene()
    flat = _cloud(points.reshape(-1, 3), _header())
    assert intake.on_frame(mask, flat, conf).groups == intake.on_frame(mask, organised, conf).groups


def test_refuses_stamps_that_differ_under_exact_time(vision):
    intake = _intake(vision)
    t = 1_700_000_000_000_000_000
    mask, conf, _ = _frame(t)
    _, _, cloud = _frame(t + 1)  # 1 ns later
    with pytest.raises(FrameRefused) as err:
        intake.on_frame(mask, cloud, conf)
    assert err.value.rule == "stamp"
    late_conf = _frame(t + 1)[1]
    with pytest.raises(FrameRefused) as err:
        intake.on_frame(mask, _frame(t)[2], late_conf)
    assert err.value.rule == "stamp"


def test_approximate_time_allows_100_ms_and_no_more(vision, tmp_path):
    doc = _doc()
    doc["local_costmap"]["local_costmap"]["ros__parameters"]["semantic_segmentation_layer"][
        "use_approximate_time_sync"] = True
    path = tmp_path / "approx.yaml"
    path.write_text(yaml.safe_dump(doc))
    intake = _intake(vision, path)
    t = 1_700_000_000_000_000_000
    mask, conf, _ = _frame(t)
    intake.on_frame(mask, _frame(t + 50_000_000)[2], conf)
    intake.on_frame(mask, _frame(t + 100_000_000)[2], conf)  # the set's span may reach the bound
    with pytest.raises(FrameRefused) as err:
        intake.on_frame(mask, _frame(t + 100_000_001)[2], conf)
    assert err.value.rule == "stamp"
    with pytest.raises(FrameRefused):  # confidence 60 ms before, cloud 60 ms after: span 120 ms
        intake.on_frame(mask, _frame(t + 60_000_000)[2], _frame(t - 60_000_000)[1])


def test_refuses_a_frame_before_any_label_info(vision):
    intake = _intake()
    mask, conf, cloud = _frame()
    with pytest.raises(FrameRefused) as err:
        intake.on_frame(mask, cloud, conf)
    assert err.value.rule == "no_label_info"
    # a LabelInfo naming none of the configured classes leaves the class map empty too
    intake.on_label_info(_label_info(vision, ["floor", "wall"]))
    with pytest.raises(FrameRefused) as err:
        intake.on_frame(mask, cloud, conf)
    assert err.value.rule == "no_label_info"
    intake.on_label_info(_label_info(vision))
    assert intake.on_frame(mask, cloud, conf).groups["lethal"].points == 12


def test_refuses_a_mono16_mask(vision):
    """A mono16 mask passes the layer's own size check (2 * w * h bytes >= w * h), and its bytes
    would be read as class ids: refused here, and the node never sends one below 256 labels."""
    intake = _intake(vision)
    mask, conf, cloud = _frame()
    ids, _, _ = _scene()
    wide = _mono(ids.astype(np.uint16), "mono16", mask.header)
    with pytest.raises(FrameRefused) as err:
        intake.on_frame(wide, cloud, conf)
    assert err.value.rule == "mask_encoding"


def test_refuses_a_missing_or_misfit_confidence(vision):
    intake = _intake(vision)
    mask, conf, cloud = _frame()
    with pytest.raises(FrameRefused) as err:
        intake.on_frame(mask, cloud)
    assert err.value.rule == "no_confidence"
    small = _mono(np.zeros((4, 5), np.uint8), "mono8", conf.header)
    with pytest.raises(FrameRefused) as err:
        intake.on_frame(mask, cloud, small)
    assert err.value.rule == "confidence_size"
    float_conf = _mono(np.zeros((4, 6), np.float32), "32FC1", conf.header)
    with pytest.raises(FrameRefused) as err:
        intake.on_frame(mask, cloud, float_conf)
    assert err.value.rule == "confidence_encoding"


def test_refuses_cloud_fields_the_layer_cannot_read(vision):
    intake = _intake(vision)
    mask, conf, _ = _frame()
    _, _, points = _scene()
    with pytest.raises(FrameRefused) as err:
        intake.on_frame(mask, _cloud(points, _header(), np.float64, PointField.FLOAT64), conf)
    assert err.value.rule == "cloud_fields"
    no_frame = _cloud(points, _header(frame_id=""))
    with pytest.raises(FrameRefused) as err:
        intake.on_frame(mask, no_frame, conf)
    assert err.value.rule == "cloud_frame"


def test_label_info_reports_the_configs_class_names(vision):
    intake = _intake()
    mapping = intake.on_label_info(_label_info(vision))
    assert mapping.missing == () and mapping.unconfigured == ()
    assert set(mapping.ids) == set(STREET)
    # a live label change: names the groups list but the set lacks are missing, new names are
    # ignored by the layer (its "not defined in the costmap parameters" error)
    mapping = intake.on_label_info(_label_info(vision, ["road", "car", "grass", "pedestrian"]))
    assert mapping.ids == {"road": 0, "car": 1, "pedestrian": 3}
    assert mapping.unconfigured == ("grass",)
    assert set(mapping.missing) == set(STREET) - {"road", "car", "pedestrian"}
    # the new ids apply to the next mask: id 1 is now a car (lethal), id 0 road
    ids = np.array([[0, 1, 2, 3]], np.uint8)
    header = _header()
    pts = np.array([[[0, 0, 1.0], [0, 0, 1.0], [0, 0, 1.0], [0, 0, 1.0]]], np.float32)
    summary = intake.on_frame(_mono(ids, "mono8", header), _cloud(pts, header),
                              _mono(np.full((1, 4), 200, np.uint8), "mono8", header))
    assert summary.groups["traversable"].points == 1
    assert summary.groups["lethal"].points == 2  # car (1) and pedestrian (3); "grass" (2) unmapped
    assert summary.unmapped_points == 1


def test_the_nodes_own_message_builders_pass(vision):
    """label_info_msg, confidence_image and aligned_points_msg of the node (vision_messages.py),
    and its mask conversion, give a frame set the layer accepts."""
    vm = pytest.importorskip("lang_seg_ros.ros.vision_messages")
    from lang_seg_ros.ros.image_conversion import numpy_to_image

    ids, conf8, points = _scene()
    header = _header(frame_id="camera_color_optical_frame")
    labels = ids.astype(np.int64)
    labels[labels == 255] = -1
    intake = _intake()
    intake.on_label_info(vm.label_info_msg(STREET, 0.0, header))
    mask = numpy_to_image(ids, "mono8", header)
    conf = vm.confidence_image(conf8.astype(np.float32) / 255.0, labels, header)
    cloud = vm.aligned_points_msg(points, _header(frame_id="camera_depth_optical_frame"))
    summary = intake.on_frame(mask, cloud, conf)
    assert summary.groups["lethal"].points == 12 and summary.groups["traversable"].points == 3
    assert summary.groups["lethal"].confident_points == 3
