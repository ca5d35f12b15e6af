"""DPT image encoder on a timm ViT (Ranftl et al., "Vision Transformers for Dense Prediction",
ICCV 2021, arXiv 2103.13413), as LSeg uses it (`clip_vitl16_384`, `clip_vitb32_384`).

State-dict keys follow the official lang-seg layout: `model.*` is the timm ViT and
`act_postprocess{1..4}.*` the reassembly blocks, so `pretrained.` + these keys equal the
checkpoint's `net.pretrained.*` keys.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from timm.models.vision_transformer import VisionTransformer

from .config import ImageEncoderConfig

#: Output strides of the four reassembled maps (DPT Sec. 3.2).
STRIDES = (4, 8, 16, 32)


class ProjectReadout(nn.Module):
    """Readout "project": concatenate the cls token to every patch token, then Linear + GELU."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.project = nn.Sequential(nn.Linear(2 * width, width), nn.GELU())

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        patches = tokens[:, 1:]
        readout = tokens[:, :1].expand_as(patches)
        return self.project(torch.cat((patches, readout), dim=-1))


class Reassemble(nn.Sequential):
    """Tokens of one tapped block -> a feature map at `stride` (DPT Sec. 3.2).

    Indices mirror the official `act_postprocess` Sequential so keys map one to one:
    0 readout, 1 and 2 the (parameter-free) transpose and unflatten, 3 the 1x1 projection,
    4 the resampling (transposed conv up, or a strided 3x3 conv down) when the stride differs
    from the patch size.
    """

    def __init__(self, width: int, channels: int, patch_size: int, stride: int) -> None:
        layers: list[nn.Module] = [ProjectReadout(width), nn.Identity(), nn.Identity(), nn.Conv2d(width, channels, 1)]
        if stride < patch_size:
            factor = patch_size // stride
            layers.append(nn.ConvTranspose2d(channels, channels, kernel_size=factor, stride=factor))
        elif stride == 2 * patch_size:
            layers.append(nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=1))
        elif stride != patch_size:
            raise ValueError(f"cannot reassemble patch size {patch_size} to stride {stride}")
        super().__init__(*layers)

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:  # type: ignore[override]
        x = self[0](tokens).transpose(1, 2).unflatten(2, grid)
        for layer in list(self)[3:]:
            x = layer(x)
        return x


class ViTBackbone(nn.Module):
    """timm ViT tapped at four blocks + reassembly; input (B, 3, H, W), H and W multiples of 32."""

    def __init__(self, cfg: ImageEncoderConfig) -> None:
        super().__init__()
        self.model = VisionTransformer(
            img_size=cfg.img_size,
            patch_size=cfg.patch_size,
            embed_dim=cfg.width,
            depth=cfg.depth,
            num_heads=cfg.num_heads,
            num_classes=cfg.num_classes,
        )
        self.patch_size = cfg.patch_size
        self.hooks = tuple(cfg.hooks)
        self.out_channels = tuple(cfg.reassemble_channels)
        for i, (channels, stride) in enumerate(zip(self.out_channels, STRIDES), start=1):
            self.add_module(f"act_postprocess{i}", Reassemble(cfg.width, channels, cfg.patch_size, stride))

    def position_embedding(self, grid_h: int, grid_w: int) -> torch.Tensor:
        """Resize the learned grid to (grid_h, grid_w): bilinear, align_corners=False, no antialias.

        This is what the official `_resize_pos_embed` does; timm's own resampling (bicubic,
        antialiased) gives different numbers, so it is not used.
        """
        pos = self.model.pos_embed
        cls_pos, grid_pos = pos[:, :1], pos[0, 1:]
        old = int(math.sqrt(grid_pos.shape[0]))
        if (old, old) == (grid_h, grid_w):
            return pos
        grid_pos = grid_pos.reshape(1, old, old, -1).permute(0, 3, 1, 2)
        grid_pos = F.interpolate(grid_pos, size=(grid_h, grid_w), mode="bilinear", align_corners=False)
        grid_pos = grid_pos.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, -1)
        return torch.cat((cls_pos, grid_pos), dim=1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        b, _, h, w = x.shape
        grid = (h // self.patch_size, w // self.patch_size)
        tokens = self.model.patch_embed.proj(x).flatten(2).transpose(1, 2)
        tokens = torch.cat((self.model.cls_token.expand(b, -1, -1), tokens), dim=1)
        tokens = tokens + self.position_embedding(*grid)
        taps = []
        for index, block in enumerate(self.model.blocks[: self.hooks[-1] + 1]):
            tokens = block(tokens)  # raw block outputs: the final LayerNorm is never applied
            if index in self.hooks:
                taps.append(tokens)
        reassemble = (self.act_postprocess1, self.act_postprocess2, self.act_postprocess3, self.act_postprocess4)
        return [block(tap, grid) for block, tap in zip(reassemble, taps)]
