"""LSeg: language-driven semantic segmentation (Li et al., ICLR 2022, arXiv 2201.03546).

Figure 2 of the paper in code: a dense image encoder gives per-pixel embeddings, a frozen text
encoder gives one embedding per label, and their dot product scaled by a fixed temperature is a
logit per label and pixel. Attribute names (`pretrained`, `scratch`, `clip_pretrained`) are the
official ones so `state_dict()` keys equal the released checkpoints' after `net.` is removed.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import LOGIT_SCALE, LSegConfig
from .fusion import LSegDecoder
from .grounding import encode_labels
from .image_encoders import build_image_encoder
from .spatial_regularization import SpatialRegularization
from .text_encoders import build_text_encoder


@dataclass(frozen=True)
class FoldedHead:
    """The 1x1 embedding head folded into one label set (see `LSeg.fold_head`); fp32 tensors.

    label_weight (N, F) = T W, label_bias (N,) = T b, gram (F, F) = W'W, head_bias (F,) = W'b,
    bias_sq () = b'b, for label embeddings T (N, C) and the head's weight W (C, F) and bias b (C,).
    """

    label_weight: torch.Tensor
    label_bias: torch.Tensor
    gram: torch.Tensor
    head_bias: torch.Tensor
    bias_sq: torch.Tensor


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
        """(N, C) L2-normalised label embeddings, on the model's device, in fp32; labels outside
        the trained vocabulary are grounded (`model.grounding`)."""
        return encode_labels(self.text_encoder, labels, self.config.text_encoder)

    def decode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised images -> fused decoder features (B, F, H/2, W/2), before the head."""
        h, w = images.shape[-2:]
        if h % 32 or w % 32:
            raise ValueError(f"image height and width must be multiples of 32, got {h}x{w}")
        return self.scratch.fuse(self.pretrained(images))

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised images -> (B, C, H/2, W/2) L2-normalised pixel embeddings."""
        return self.scratch.embed(self.decode(images))

    def label_logits(self, pixel_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        """Temperature-scaled logits (B, N, h, w) at the embeddings' resolution (stride 2).

        pixel_features (B, C, h, w) and text_features (N, C) are L2-normalised; the spatial
        regularisation blocks, when present, act here, before upsampling.
        """
        text_features = text_features.to(device=pixel_features.device, dtype=pixel_features.dtype)
        logits = self.logit_scale * torch.einsum("bchw,nc->bnhw", pixel_features, text_features)
        return self._regularise(logits)

    def _regularise(self, logits: torch.Tensor) -> torch.Tensor:
        """The spatial-regularisation blocks, when present, in their own precision (the Segmenter
        keeps them in fp32 while the image branch runs in fp16 / bf16); same dtype out as in."""
        if not hasattr(self.scratch, "head_block"):
            return logits
        block = self.scratch.head_block
        dtype = next(block.parameters(), logits).dtype
        return block(logits.contiguous().to(dtype)).to(logits.dtype)

    def fold_head(self, text_features: torch.Tensor) -> FoldedHead:
        """The 1x1 head folded into a label set: computed once per label set, not per frame.

        With e = W f + b the pixel embedding of fused features f (F channels), the logit of a
        label t is <t, e / |e|> = (t W f + t b) / sqrt(f' W'W f + 2 b'W f + b'b): the label terms
        t W and t b, and the head terms W'W, W'b and b'b, are all independent of the image.
        """
        weight = self.scratch.head1.weight.flatten(1).float()  # (C, F)
        bias = self.scratch.head1.bias.float()  # (C,)
        text = text_features.to(device=weight.device, dtype=torch.float32)
        # Row-wise products (not a matmul) so each label's folded weights are computed the same
        # way wherever it sits in the set.
        return FoldedHead(label_weight=(text[:, :, None] * weight[None]).sum(1), label_bias=(text * bias).sum(1),
                          gram=weight.T @ weight, head_bias=weight.T @ bias, bias_sq=bias @ bias)

    def decoded_logits(self, decoded: torch.Tensor, text_features: torch.Tensor | None = None,
                       folded: FoldedHead | None = None) -> torch.Tensor:
        """`label_logits(scratch.embed(decoded), text_features)` without the (B, C, h, w) embeddings.

        decoded: (B, F, h, w) fused features from `decode`; the labels as (N, C) embeddings or as
        their `fold_head` (cached by callers that see many frames with one label set). Computing
        on the F fused channels instead of the C embedding channels is what makes small decoders
        fast (the default model: F = 32, C = 384). Equal to the unfolded path up to float rounding.
        Returns (B, N, h, w) temperature-scaled logits at stride 2, in `decoded`'s dtype.
        """
        if folded is None:
            if text_features is None:
                raise ValueError("decoded_logits needs text_features or their fold_head()")
            folded = self.fold_head(text_features)
        f = decoded.float()
        # Labels last in memory (B, h, w, N): the matmul writes it directly, and the per-pixel
        # decision over labels downstream reads each pixel's logits contiguously.
        numerator = torch.einsum("bfhw,nf->bhwn", f, folded.label_weight.to(f.device))
        numerator += folded.label_bias.to(f.device)
        logits = numerator.mul_(self.pixel_scale(f, folded)[..., None])
        logits = self._regularise(logits.permute(0, 3, 1, 2))  # (B, N, h, w), channels-last strides
        return logits.to(decoded.dtype)

    @property
    def head_is_linear(self) -> bool:
        """The logits are the folded head alone (no spatial-regularisation block after it), so a
        pixel's logits can be computed from its fused features on their own (`pixel_scale`)."""
        return not hasattr(self.scratch, "head_block")

    def pixel_scale(self, decoded: torch.Tensor, folded: FoldedHead) -> torch.Tensor:
        """(B, h, w) fp32: logit_scale / |e| per pixel for fp32 fused features `decoded` (B, F, h, w),
        so that logits = pixel_scale * (label_weight f + label_bias). Independent of the labels
        (the head's terms of any `fold_head`)."""
        f = decoded.permute(0, 2, 3, 1)  # (B, h, w, F): contiguous rows for channels-last features
        # |e|^2 = f'W'Wf + 2 b'Wf + b'b = sum_F f * (W'W f + 2 W'b) + b'b; the sum over F as a product
        # with a ones column (torch's sum over a short last dimension is slow: 640x480, one core,
        # 4.5 -> 3.3 ms), a (F, 1) matrix, not a vector: OpenVINO's MatMul fusion rejects the
        # vector form in exports
        terms = torch.matmul(f, folded.gram.to(f.device)).add_(folded.head_bias.to(f.device), alpha=2).mul_(f)
        squared_norm = torch.matmul(terms, torch.ones_like(folded.head_bias)[:, None].to(f.device))[..., 0]
        squared_norm += folded.bias_sq.to(f.device)
        return self.logit_scale / squared_norm.clamp_min(1e-24).sqrt()

    def forward(self, images: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised images, (N, C) label embeddings -> (B, N, H, W) logits."""
        return upsample_logits(self.decoded_logits(self.decode(images), text_features))

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
