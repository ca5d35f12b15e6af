"""Image-branch backends under the `Segmenter`: eager PyTorch, ONNX Runtime, OpenVINO, TensorRT.

A backend turns normalised images into stride-2 logits for label sets whose embeddings come
from the text encoder (torch, once per label set):

    backend.logits(images (B, 3, H, W) fp32, H and W multiples of 32, sets) -> (B, sum N, H/2, W/2) fp32

Everything before (pre-processing) and after (the label decision, objects) is shared, so every
backend gives the same outputs through one inference path. `torch` runs the `LSeg` itself; the
others run a file written by `lang-seg export` (`onnx_export.py`), so the label set stays open:
any labels, changed live, no re-export.
"""
from __future__ import annotations

from typing import Protocol, Sequence

import torch

from ..decide import FactoredLogits
from .graphs import TracedImageBranch

__all__ = ["BACKENDS", "COMPILE_MODES", "ImageBackend", "TorchBackend", "load_backend", "require"]

#: `torch.compile` modes of the torch backend ("debug": graph capture only, no code generation).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "debug")
#: Backend names, and the PyPI package each needs.
BACKENDS = {"torch": "torch", "onnxruntime": "onnxruntime", "openvino": "openvino", "tensorrt": "tensorrt"}


class ImageBackend(Protocol):
    name: str
    #: pixel embeddings (mask pooling, region embeddings) can be had from this backend
    supports_features: bool

    def logits(self, images: torch.Tensor, sets: Sequence) -> torch.Tensor:
        """(B, 3, H, W) normalised images -> (B, sum of the sets' N, H/2, W/2) fp32 logits, each set
        regularised on its own (`PreparedLabels`: labels, text (N, C), folded head)."""
        ...


class TorchBackend:
    """The `LSeg` in PyTorch at the Segmenter's precision, channels-last; the image branch as traced
    graphs per input shape (`graphs.TracedImageBranch`: no GIL, batch norms folded at fp32) unless
    `trace` is off or `compile` is set; the 1x1 head folded into each label set once
    (`PreparedLabels.folded`)."""

    name = "torch"
    supports_features = True

    def __init__(self, model, dtype: torch.dtype, compile: str | None = None, trace: bool = True) -> None:
        """compile: None, or a `torch.compile` mode for the image branch: "default",
        "max-autotune", or "reduce-overhead" (CUDA graphs on a GPU). Each new input size compiles
        once (pre-warm sizes with `Segmenter.warmup`). trace: without `compile`, traced graphs
        (True) or eager PyTorch (False)."""
        self.model, self.dtype = model, dtype
        self._decode = TracedImageBranch(model) if trace and compile is None else model.decode
        if compile is not None:
            if compile not in COMPILE_MODES:
                raise ValueError(f"compile must be one of {', '.join(COMPILE_MODES)}, got {compile!r}")
            backend = "eager" if compile == "debug" else "inductor"
            mode = None if compile in ("debug", "default") else compile
            self._decode = torch.compile(model.decode, backend=backend, mode=mode, dynamic=False)

    def decode(self, images: torch.Tensor) -> torch.Tensor:
        return self._decode(images.to(self.dtype).contiguous(memory_format=torch.channels_last))

    def logits(self, images: torch.Tensor, sets: Sequence) -> torch.Tensor:
        decoded = self.decode(images)
        return torch.cat([self.model.decoded_logits(decoded, folded=p.folded) for p in sets], dim=1)

    #: Logits of an image (all sets) above this size are never written (`factored_logits`): past
    #: the caches, writing and reading them back costs more than computing them block by block
    #: (one core, bench_postprocess: 480x360, 150 labels, 28 MB: head + decision 35.6 -> 29.5 ms;
    #: 20 labels, 3.7 MB: 12.6 -> 13.4 ms; crossing near 50 labels there, 20-30 at 640x480).
    factor_above_bytes = 8 << 20

    def factored_logits(self, images: torch.Tensor, sets: Sequence) -> list[list[FactoredLogits]] | None:
        """`logits` as `FactoredLogits` per image and set (the label decision computes them block by
        block, never the whole (N, h, w)), or None: when the model's head is not linear (a spatial
        regularisation block acts on whole logit maps), or when the logits are small enough to
        stay in the caches (`factor_above_bytes`). Equal to `logits` up to float rounding."""
        count = sum(len(p.labels) for p in sets)
        if not self.model.head_is_linear or count * images.shape[-2] * images.shape[-1] < self.factor_above_bytes:
            return None  # (N x h/2 x w/2 cells x 4 bytes = N x H x W bytes)
        return self.factor(self.decode(images), sets)

    def factor(self, decoded: torch.Tensor, sets: Sequence) -> list[list[FactoredLogits]]:
        """`factored_logits` of fused features (B, F, h, w) from `decode`: their per-pixel scale
        (label-independent, once per image) and each set's folded weights."""
        f = decoded.float()
        scale = self.model.pixel_scale(f, sets[0].folded)  # (B, h, w): the same for every label set
        batch, channels, height, width = f.shape
        cells = f.permute(0, 2, 3, 1).reshape(batch, height * width, channels)  # a view when channels-last
        round_to = decoded.dtype if decoded.dtype != torch.float32 else None
        return [[FactoredLogits(cells[i], p.folded.label_weight.to(f.device), p.folded.label_bias.to(f.device),
                                scale[i].reshape(-1), (height, width), round_to) for p in sets]
                for i in range(batch)]


def require(name: str, device: torch.device) -> None:
    """Fail early, before any export, when backend `name` cannot run here: ValueError for an unknown
    name, ImportError naming the package to install, RuntimeError for a missing GPU."""
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {name!r}")
    if name == "torch":
        return
    try:
        __import__(BACKENDS[name])
    except ImportError as exc:
        raise ImportError(f"backend {name!r} needs the {BACKENDS[name]!r} package: pip install {BACKENDS[name]}") from exc
    if name == "tensorrt" and device.type != "cuda":
        raise RuntimeError("backend 'tensorrt' needs a CUDA device (device: cuda, or auto on a GPU machine)")


def load_backend(name: str, onnx_path, device: torch.device, precision: str):
    """An ONNX backend by name for the file `onnx_path` (see `lang_seg_ros.inference.backends.runtimes`).

    Raises ValueError for an unknown name, and ImportError naming the package to install (or
    RuntimeError saying what is missing, e.g. a GPU for TensorRT) when it cannot run here."""
    require(name, device)
    if name == "torch":
        raise ValueError("the torch backend runs the LSeg itself: TorchBackend(model, dtype)")
    from . import runtimes

    return runtimes.RUNTIMES[name](onnx_path, device, precision)
