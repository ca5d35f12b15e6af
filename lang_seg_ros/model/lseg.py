"""LSeg: language-driven semantic segmentation (Li et al., ICLR 2022, arXiv 2201.03546).

Figure 2 of the paper in code: a dense image encoder gives per-pixel embeddings, a frozen text
encoder gives one embedding per label, and their dot product scaled by a fixed temperature is a
logit per label and pixel. Attribute names (`pretrained`, `scratch`, `clip_pretrained`) are the
official ones so `state_dict()` keys equal the released checkpoints' after `net.` is removed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import LOGIT_SCALE, LSegConfig
from .fusion import LSegDecoder
from .image_encoders import build_image_encoder
from .spatial_regularization import SpatialRegularization
from .text_encoders import build_text_encoder


class LSeg(nn.Module):
    def __init__(self, config: LSegConfig) -> None:
        super().__init__()
        self.config = config
        self.logit_scale = LOGIT_SCALE
        text_encoder = build_text_encoder(config.text_encoder)
        if text_encoder.embed_dim != config.embed_dim:
            raise ValueError(
                f"embed_dim {config.embed_dim} differs from the text encoder's {text_encoder.embed_dim}"
            )
        self._text_key = text_encoder.checkpoint_prefix
        self.add_module(self._text_key, text_encoder)
        self.pretrained = build_image_encoder(config.image_encoder)
        head_block = None
        if config.block_type is not None:
            head_block = SpatialRegularization(config.block_type, config.block_depth, config.block_activation)
        self.scratch = LSegDecoder(
            self.pretrained.out_channels, config.features, config.embed_dim, config.use_bn, head_block
        )

    @property
    def text_encoder(self) -> nn.Module:
        return getattr(self, self._text_key)

    @torch.no_grad()
    def encode_text(self, labels: list[str]) -> torch.Tensor:
        """(N, C) L2-normalised label embeddings, on the model's device, in fp32."""
        if not labels:
            raise ValueError("at least one label is needed")
        return self.text_encoder.encode_labels(list(labels))

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised images -> (B, C, H/2, W/2) L2-normalised pixel embeddings."""
        h, w = images.shape[-2:]
        if h % 32 or w % 32:
            raise ValueError(f"image height and width must be multiples of 32, got {h}x{w}")
        return self.scratch(self.pretrained(images))

    def label_logits(self, pixel_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        """Temperature-scaled logits (B, N, h, w) at the embeddings' resolution (stride 2).

        pixel_features (B, C, h, w) and text_features (N, C) are L2-normalised; the spatial
        regularisation blocks, when present, act here, before upsampling.
        """
        text_features = text_features.to(device=pixel_features.device, dtype=pixel_features.dtype)
        logits = self.logit_scale * torch.einsum("bchw,nc->bnhw", pixel_features, text_features)
        if hasattr(self.scratch, "head_block"):
            logits = self.scratch.head_block(logits)
        return logits

    def forward(self, images: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised images, (N, C) label embeddings -> (B, N, H, W) logits."""
        return upsample_logits(self.label_logits(self.encode_image(images), text_features))

    def checkpoint_state_dict(self) -> dict[str, torch.Tensor]:
        """The state dict our checkpoints store: without frozen weights an installed package provides."""
        state = self.state_dict()
        if not self.text_encoder.weights_in_checkpoint:
            prefix = self._text_key + "."
            state = {k: v for k, v in state.items() if not k.startswith(prefix)}
        return state


def upsample_logits(logits: torch.Tensor) -> torch.Tensor:
    """Stride-2 logits to input resolution: bilinear x2 with align_corners=True, as published."""
    return F.interpolate(logits, scale_factor=2, mode="bilinear", align_corners=True)
