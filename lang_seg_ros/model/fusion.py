"""DPT fusion decoder as LSeg uses it (DPT Sec. 3.3; the official `scratch` module).

`layer{1..4}_rn` bring the four encoder maps to a common width, `refinenet4 .. refinenet1` fuse
them coarse to fine (each one upsamples x2), and `head1` projects to the pixel-embedding size.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .spatial_regularization import SpatialRegularization


class ResidualConvUnit(nn.Module):
    """ReLU -> Conv3x3 -> BN -> ReLU -> Conv3x3 -> BN, plus the input (convs biased without BN)."""

    def __init__(self, features: int, use_bn: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1, bias=not use_bn)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1, bias=not use_bn)
        if use_bn:
            self.bn1 = nn.BatchNorm2d(features)
            self.bn2 = nn.BatchNorm2d(features)
        else:
            self.bn1 = self.bn2 = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn1(self.conv1(F.relu(x)))
        out = self.bn2(self.conv2(F.relu(out)))
        return out + x


class FeatureFusionBlock(nn.Module):
    """out = x (+ resConfUnit1(skip)) -> resConfUnit2 -> bilinear x2 (align_corners=True) -> 1x1 conv."""

    def __init__(self, features: int, use_bn: bool = True) -> None:
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, 1)
        # Quirk kept for key parity: refinenet4 owns a resConfUnit1 it never uses.
        self.resConfUnit1 = ResidualConvUnit(features, use_bn)
        self.resConfUnit2 = ResidualConvUnit(features, use_bn)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        return self.out_conv(x)


class LSegDecoder(nn.Module):
    """Four encoder maps (strides 4..32) -> L2-normalised pixel embeddings at stride 2.

    Also owns the optional spatial regularisation block (`head_block`), which acts on logits, so
    that checkpoint keys stay `scratch.head_block.*`.
    """

    def __init__(
        self,
        in_channels: tuple[int, ...],
        features: int,
        embed_dim: int,
        use_bn: bool = True,
        head_block: SpatialRegularization | None = None,
    ) -> None:
        super().__init__()
        for i, channels in enumerate(in_channels, start=1):
            self.add_module(f"layer{i}_rn", nn.Conv2d(channels, features, 3, padding=1, bias=False))
        for i in range(1, 5):
            self.add_module(f"refinenet{i}", FeatureFusionBlock(features, use_bn))
        self.head1 = nn.Conv2d(features, embed_dim, 1)
        if head_block is not None:
            self.head_block = head_block

    def fuse(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """Four encoder maps -> fused decoder features (B, features, H/2, W/2), before the head."""
        l1, l2, l3, l4 = (self.layer1_rn(feats[0]), self.layer2_rn(feats[1]),
                          self.layer3_rn(feats[2]), self.layer4_rn(feats[3]))
        path = self.refinenet4(l4)
        path = self.refinenet3(path, l3)
        path = self.refinenet2(path, l2)
        return self.refinenet1(path, l1)

    def embed(self, fused: torch.Tensor) -> torch.Tensor:
        """Fused features -> L2-normalised pixel embeddings (B, embed_dim, H/2, W/2)."""
        return F.normalize(self.head1(fused), dim=1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return self.embed(self.fuse(feats))
