"""Image-encoder choice: every encoder returns four maps at strides 4, 8, 16, 32 and says their
channel counts in `out_channels`, which is all the DPT decoder needs to know."""
from __future__ import annotations

from torch import nn

from .config import ImageEncoderConfig


def build_image_encoder(cfg: ImageEncoderConfig) -> nn.Module:
    if cfg.type == "vit":
        from .vit import ViTBackbone

        return ViTBackbone(cfg)
    if cfg.type == "resnet":
        from .resnet import ResNetBackbone

        return ResNetBackbone(cfg)
    if cfg.type == "timm_cnn":
        from .timm_cnn import TimmCNNBackbone

        return TimmCNNBackbone(cfg)
    raise ValueError(f"unknown image_encoder.type {cfg.type!r}")
