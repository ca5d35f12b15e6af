"""ResNet image encoder of LSeg's `clip_resnet101` few-shot checkpoints (torchvision ResNet,
grouped the way DPT's `_make_resnet_backbone` does: `layer1` = stem + layer1).

Keys: `layer1.{0: conv1, 1: bn1, 4: resnet.layer1}`, `layer2..4` = torchvision's layers.
"""
from __future__ import annotations

import torch
import torchvision
from torch import nn

from .config import ImageEncoderConfig


class ResNetBackbone(nn.Module):
    def __init__(self, cfg: ImageEncoderConfig) -> None:
        super().__init__()
        name = cfg.name or "resnet101"
        try:
            resnet = getattr(torchvision.models, name)(weights=None)
        except AttributeError as exc:
            raise ValueError(f"image_encoder.name {name!r} is not a torchvision ResNet") from exc
        self.layer1 = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool, resnet.layer1)
        self.layer2, self.layer3, self.layer4 = resnet.layer2, resnet.layer3, resnet.layer4
        self.out_channels = tuple(layer[-1].conv3.out_channels if hasattr(layer[-1], "conv3")
                                  else layer[-1].conv2.out_channels
                                  for layer in (resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        c1 = self.layer1(x)
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        return [c1, c2, c3, self.layer4(c3)]
