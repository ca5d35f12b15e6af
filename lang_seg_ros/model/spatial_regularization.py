"""Spatial regularisation blocks of LSeg (paper Sec. 3 "Spatial regularization", Fig. 3).

One 3x3 conv with a single input and output channel is shared by all label maps (labels are
folded into the batch), so the blocks keep the logits equivariant to label order.
"""
from __future__ import annotations

import torch
from torch import nn

_ACTIVATIONS = {"relu": nn.ReLU, "lrelu": nn.LeakyReLU, "tanh": nn.Tanh}


class LabelwiseConv(nn.Module):
    """The same Conv2d(1, 1, 3) applied to every label map of (B, N, H, W)."""

    def __init__(self) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(1, 1, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, h, w = x.shape
        return self.depthwise(x.reshape(b * n, 1, h, w)).reshape(b, n, h, w)


class SpatialRegularization(nn.Module):
    """`depth - 1` activated applications of the block, then one without activation.

    DepthwiseBlock: conv(x). BottleneckBlock: conv(x) + max over labels of x.
    """

    def __init__(self, block_type: str, depth: int, activation: str) -> None:
        super().__init__()
        if block_type not in ("depthwise", "bottleneck"):
            raise ValueError(f"block_type must be 'depthwise' or 'bottleneck', got {block_type!r}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"block_activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        self.block_type, self.depth = block_type, depth
        self.depthwise = LabelwiseConv()
        self.activation = _ACTIVATIONS[activation]()

    def block(self, x: torch.Tensor) -> torch.Tensor:
        out = self.depthwise(x)
        if self.block_type == "bottleneck":
            out = out + x.amax(dim=1, keepdim=True)
        return out

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        for _ in range(self.depth - 1):
            logits = self.activation(self.block(logits))
        return self.block(logits)
