"""The torch backend's image branch as traced TorchScript graphs, one per input shape.

Why: eager PyTorch dispatches each of the image branch's few hundred operators from Python, so it
needs the GIL between operators. In the node, any other Python thread (the finisher building
messages, the executor taking a frame) then stalls the forward pass, and on a small CPU each
operator also pays an OpenMP wake-up. A traced graph runs in C++ without the GIL; at fp32 it is
also frozen (`torch.jit.freeze`: batch norms folded into their convolutions). Measured on one
2-core Xeon (AVX2, AVX-512, AMX; default model, 480x384, fp32, one thread): eager 95-108 ms alone
and 129 ms beside a thread running 10 ms of Python every 130 ms; frozen 74-78 ms alone and 79 ms
beside that thread. Outputs equal eager's up to float rounding (~3e-5 on the decoder features;
1 pixel in 10^6 of CamVid val label maps). bf16 / fp16 graphs are traced but not frozen: folding
in those precisions rounds the folded weights (0.33 % of val pixels then differ from fp32, against
0.21 % for eager bf16), and unfrozen they give eager's outputs exactly.

Rules that keep it safe:
- A shape gets its graph on first use (`Segmenter.warmup` pre-builds: ~1 s for the default
  model on this CPU). A frozen graph holds its own copy of the weights: frozen graphs are kept
  while their copies fit `max_bytes` (least recently used dropped first; a model too large for
  one runs eager at fp32); unfrozen ones share the model's weights, up to `UNFROZEN_GRAPHS`.
- Graphs are dropped when any weight or buffer of the model changed in place or was replaced (a
  trainer validating the model it trains, `load_state_dict`): frozen weights never go stale.
- A model tracing cannot handle, or a graph that fails where eager would not, leaves the backend
  eager, logged once; an input eager rejects too raises eager's error and leaves the graphs on; a
  GPU out of memory is raised as it is (the caller's to handle).
"""
from __future__ import annotations

import logging
import threading
import warnings
from collections import OrderedDict
from typing import Callable

import torch
from torch import nn

__all__ = ["TracedImageBranch"]

_LOG = logging.getLogger(__name__)
#: Graphs kept at bf16 / fp16 (each shares the model's weights: only its code and plan).
UNFROZEN_GRAPHS = 16


class _Branch(nn.Module):
    """The image branch as one module to trace: normalised images -> fused decoder features."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.decode(images)


class TracedImageBranch:
    """Callable like `model.decode` ((B, 3, H, W) normalised images -> (B, F, H/2, W/2) fused
    features), through a traced graph per input shape where the rules above allow.

    model: an `LSeg` in eval mode at its final device and dtype; max_bytes: memory for frozen
    graphs' weight copies (default 256 MiB: a dozen input shapes of the default model; an
    official ViT-L LSeg, ~1.3 GB at fp32, runs eager at fp32 and traced at fp16)."""

    def __init__(self, model: nn.Module, max_bytes: int = 256 << 20) -> None:
        self.model = model
        self._tensors = [*model.pretrained.parameters(), *model.pretrained.buffers(),
                         *model.scratch.parameters(), *model.scratch.buffers()]
        weight_bytes = sum(t.numel() * t.element_size() for t in self._tensors)
        self.capacity = int(max_bytes // max(1, weight_bytes))
        self._graphs: OrderedDict[tuple, Callable] = OrderedDict()
        self._version = self._weights_version()
        self._lock = threading.Lock()
        #: why the branch runs eager for good (tracing or a graph failed), else None
        self.failed: str | None = None

    def _weights_version(self) -> tuple[int, int]:
        """Changes whenever a weight is written in place (`Tensor._version`) or replaced."""
        return sum(t._version for t in self._tensors), sum(t.data_ptr() for t in self._tensors)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        graph, why = self._graph_for(images)
        if graph is not None:
            try:
                return graph(images)
            except torch.cuda.OutOfMemoryError:
                raise
            except Exception as exc:  # noqa: BLE001 - eager gives the answer, or the real error
                why = f"the traced graph failed: {type(exc).__name__}: {exc}"
        # An input eager rejects too (a size not a multiple of 32) raises here: the caller's
        # error, and the graphs stay; only a failure eager does not share turns them off
        features = self.model.decode(images)
        if why is not None:
            self._give_up(why)
        return features

    def _give_up(self, why: str) -> None:
        with self._lock:
            self.failed = why
            self._graphs.clear()
        _LOG.warning("the image branch runs eager from now on (%s)", why)

    def _graph_for(self, images: torch.Tensor) -> tuple[Callable | None, str | None]:
        """(the graph for `images`' shape, None), or (None, why tracing failed), or (None, None)
        where the rules above say eager."""
        if self.failed is not None or torch.is_grad_enabled() or self.model.training:
            return None, None  # graphs are inference-only
        limit = self.capacity if images.dtype == torch.float32 else UNFROZEN_GRAPHS
        if not limit:
            return None, None
        key = (tuple(images.shape), images.stride(), images.dtype, images.device)
        with self._lock:
            version = self._weights_version()
            if version != self._version:
                self._graphs.clear()
                self._version = version
            graph = self._graphs.get(key)
            if graph is not None:
                self._graphs.move_to_end(key)
                return graph, None
            try:
                graph = self._build(images)
            except torch.cuda.OutOfMemoryError:
                raise
            except Exception as exc:  # noqa: BLE001 - any tracing failure: eager, said once
                return None, f"tracing failed: {type(exc).__name__}: {exc}"
            self._graphs[key] = graph
            while len(self._graphs) > limit:
                self._graphs.popitem(last=False)
            return graph, None

    def _build(self, images: torch.Tensor) -> Callable:
        with warnings.catch_warnings():
            # TorchScript's deprecation notices, and the model's size check read as a constant
            # (a graph is only ever called with the shape it was traced at)
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            traced = torch.jit.trace(_Branch(self.model).eval(), images, check_trace=False)
            return torch.jit.freeze(traced) if images.dtype == torch.float32 else traced
