"""`Segmenter`: the numpy-in, numpy-out facade over LSeg that the CLI and the ROS node use.

It owns the device and precision choice, the label-embedding cache (a label is encoded once,
however often it appears in later label sets), and the published pre- and post-processing.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..model import LSeg, load_checkpoint
from ..model.checkpoint import resolve_checkpoint
from ..model.device import resolve_device, resolve_precision, single_cpu_thread
from ..model.lseg import FoldedHead, upsample_logits
from .backends import BACKENDS, TorchBackend
from .decide import decide_full, decide_stride2
from .labels import clean_labels
from .multiscale import multiscale_logits
from .preprocess import black_level, normalize, pad_bottom_right, round_up, working_shape

_LOG = logging.getLogger(__name__)

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
#: Label-map value of pixels whose confidence is below the threshold.
NO_LABEL = -1
#: Upper bound on logits held at once while upsampling (elements); bounds memory for big label sets.
_CHUNK_ELEMENTS = 1 << 24


@dataclass(frozen=True)
class SegmentationResult:
    """Everything at the input image's resolution (H, W)."""

    labels: tuple[str, ...]  # the label set used for this image; label_map indexes into it
    label_map: np.ndarray  # (H, W) int32, NO_LABEL where confidence < threshold
    confidence: np.ndarray  # (H, W) float32, softmax probability of the chosen label
    timings_ms: dict[str, float] = field(default_factory=dict)
    # With `segment(..., return_features=True)` in single-scale mode: (C, h, w) L2-normalised pixel
    # embeddings covering the whole image (stride 2 of the working size), and (N, C) label embeddings.
    pixel_features: np.ndarray | None = None
    text_features: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class PreparedLabels:
    """A label set ready for frames: everything that depends only on the labels, computed once.

    labels: the cleaned labels; text: (N, C) fp32 L2-normalised embeddings on the model's device;
    folded: the 1x1 head folded into them (`LSeg.fold_head`; None on ONNX backends, whose graph
    folds it). Immutable, so a worker thread can hold one while another thread prepares the next.
    """

    labels: tuple[str, ...]
    text: torch.Tensor
    folded: FoldedHead | None

    def __len__(self) -> int:
        return len(self.labels)


class LabelEmbeddingCache:
    """Per-label embeddings, least recently used dropped first; safe to share between threads."""

    def __init__(self, encode: Callable[[list[str]], torch.Tensor], max_entries: int = 4096) -> None:
        self._encode = encode
        self._max_entries = max_entries
        self._entries: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()
        self.encoded = 0  # labels encoded so far (cache misses)

    def __call__(self, labels: Sequence[str]) -> torch.Tensor:
        with self._lock:
            missing = [label for label in dict.fromkeys(labels) if label not in self._entries]
            if missing:
                for label, embedding in zip(missing, self._encode(missing)):
                    self._entries[label] = embedding
                self.encoded += len(missing)
            for label in labels:
                self._entries.move_to_end(label)
            out = torch.stack([self._entries[label] for label in labels])
            while len(self._entries) > max(self._max_entries, len(labels)):
                self._entries.popitem(last=False)
            return out


class Segmenter:
    """Segments numpy images against a label set.

    Args:
        model: an `LSeg`, a checkpoint path (official `.ckpt` or our `.safetensors`), the name of
            an embedded model ("default", "default-large": `lang_seg_ros.weights.EMBEDDED_MODELS`), or
            None for the embedded default model.
        device: "cpu", "cuda", "cuda:N" or "auto" (CUDA when available).
        precision: "fp32", "fp16", "bf16" for the image branch, or "auto": what the device runs
            natively (`model.device.resolve_precision`; the node's and CLI's default); label
            embeddings stay fp32. The precision used is `self.precision`.
        working_size: long side, in pixels, the image is resized to for single-scale inference
            (then padded to multiples of 32).
        scales: None for single-scale; else the published multi-scale evaluation at these
            scales (see `multiscale.PUBLISHED_SCALES`), `flip` adding mirrored passes.
        threshold: pixels whose best label has a lower softmax probability get `NO_LABEL`.
        backend: "torch" (PyTorch; see `trace`), or "onnxruntime", "openvino", "tensorrt" for the image branch
            (`lang_seg_ros.inference.backends`): `model` is then a file from `lang-seg export`, or
            a checkpoint exported once on the fly (cached); the label set stays open.
        compile: torch backend only: None or a `torch.compile` mode for the image branch,
            e.g. "reduce-overhead" (CUDA graphs on a GPU); see `backends.TorchBackend`.
        trace: torch backend without `compile`: run the image branch as traced TorchScript graphs
            (`backends.graphs`: no GIL held, batch norms folded at fp32; equal to eager up to
            float rounding), or eager PyTorch (False).
        **load_overrides: passed to `load_checkpoint` (e.g. the spatial-regularisation settings).
    """

    def __init__(
        self,
        model: LSeg | str | Path | None = None,
        device: str = "auto",
        precision: str = "fp32",
        working_size: int = 480,
        scales: Sequence[float] | None = None,
        flip: bool = False,
        threshold: float = 0.0,
        backend: str = "torch",
        compile: str | None = None,
        trace: bool = True,
        **load_overrides: Any,
    ) -> None:
        if working_size < 32:
            raise ValueError(f"working_size must be at least 32 pixels, got {working_size}")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        self.device = resolve_device(device)
        if not isinstance(model, LSeg):
            model = resolve_checkpoint(model)  # None: the embedded default model; "default-large"
        is_onnx = not isinstance(model, LSeg) and str(model).endswith(".onnx")
        if is_onnx and precision == "auto":  # an exported file has its precision: run it at that
            from .backends.onnx_export import read_onnx_info

            precision = read_onnx_info(model).precision
        self.precision = precision = resolve_precision(precision, self.device, backend)
        self.dtype = PRECISIONS[precision]
        if backend == "torch":
            if is_onnx:
                raise ValueError(f"{model}: an ONNX file runs on backend onnxruntime, openvino or tensorrt, not torch")
            if not isinstance(model, LSeg):
                model = load_checkpoint(model, device="cpu", **load_overrides)
            self.model = model.eval().to(self.device)
            # The image branch runs at the chosen precision; the frozen text encoder stays fp32.
            # channels_last suits the convolutions of CPU and GPU kernels alike.
            self.model.pretrained.to(self.dtype, memory_format=torch.channels_last)
            self.model.scratch.to(self.dtype, memory_format=torch.channels_last)
            if hasattr(self.model.scratch, "head_block"):  # it acts on the fp32 logits
                self.model.scratch.head_block.float()
            self.backend = TorchBackend(self.model, self.dtype, compile, trace)
        else:
            from .backends import load_backend, require
            from .backends.onnx_export import cached_export, read_onnx_info, text_model_for

            require(backend, self.device)  # before an export that would be wasted
            if compile is not None:
                raise ValueError(f"compile is a torch-backend option, not {backend!r}'s")
            if isinstance(model, LSeg):
                raise ValueError(f"backend {backend!r} runs an exported file: pass its path (lang-seg export)")
            onnx_path = model if is_onnx else cached_export(model, "fp16" if precision == "fp16" else "fp32",
                                                             **load_overrides)
            self.backend = load_backend(backend, onnx_path, self.device, precision)
            self.model = text_model_for(read_onnx_info(onnx_path)).to(self.device)
        self.working_size = int(working_size)
        self.scales = tuple(scales) if scales else None
        self.flip = bool(flip)
        self.threshold = float(threshold)
        self.text_cache = LabelEmbeddingCache(self.model.encode_text)
        self._fill = black_level(self.model.config.mean, self.model.config.std)
        self._active: PreparedLabels | None = None

    @property
    def labels(self) -> tuple[str, ...]:
        return self._active.labels if self._active else ()

    @torch.inference_mode()
    def prepare(self, labels: Iterable[str] | str | PreparedLabels) -> PreparedLabels:
        """Clean a label set (`clean_labels`: ValueError saying why) and compute its embeddings and
        folded head terms; a label already seen is not encoded again."""
        if isinstance(labels, PreparedLabels):
            return labels
        cleaned = clean_labels(labels)
        text = self.text_cache(cleaned).float().to(self.device)
        return PreparedLabels(cleaned, text, self.model.fold_head(text) if self.backend.supports_features else None)

    def set_labels(self, labels: Iterable[str] | str | PreparedLabels) -> tuple[str, ...]:
        """Make `labels` the set used by later `segment` calls; returns the cleaned set.

        The embeddings are computed here, so frames never pay for a label change, and the new set
        replaces the old one in a single assignment (callers on other threads see either set).
        """
        self._active = self.prepare(labels)
        return self._active.labels

    def segment(self, image: np.ndarray, color_order: str = "rgb",
                labels: Iterable[str] | str | PreparedLabels | None = None,
                return_features: bool = False) -> SegmentationResult:
        """Label map and confidence of a uint8 image, at its own resolution.

        `labels` defaults to the active set (`set_labels`); a `PreparedLabels` costs nothing per
        frame, plain strings are cleaned and looked up in the embedding cache. `return_features`
        also returns the pixel and label embeddings (single-scale mode only: multi-scale
        evaluation has no single feature map), for object-level classification.
        """
        if labels is None:
            if self._active is None:
                raise RuntimeError("no label set: call set_labels([...]) first or pass labels=")
            labels = self._active
        return self.segment_sets(image, [labels], color_order, return_features)[0]

    def segment_batch(self, images: Sequence[np.ndarray], color_order: str = "rgb",
                      labels: Iterable[str] | str | PreparedLabels | None = None) -> list[SegmentationResult]:
        """`segment` of several same-sized images (frames of one camera, or of several cameras) in
        one model pass: better throughput on a GPU or a batched engine. Single scale only
        (`segment_sets_batch` with one label set)."""
        if not images:
            return []
        if self.scales:
            raise ValueError("segment_batch is single-scale only (scales=None)")
        if labels is None:
            if self._active is None:
                raise RuntimeError("no label set: call set_labels([...]) first or pass labels=")
            labels = self._active
        return [results[0] for results in self.segment_sets_batch(images, [labels], [color_order] * len(images))]

    def warmup(self, sizes: Iterable[tuple[int, int]], batch: int = 1) -> dict[tuple[int, int], float]:
        """Run one black frame (or batch) of each (height, width) so the first real frame of that size
        does not stall (allocator growth, kernel selection, engine builds). Returns ms per size."""
        labels = self.prepare(["thing", "stuff"])
        took = {}
        for height, width in sizes:
            if height < 1 or width < 1:
                raise ValueError(f"warm-up sizes must be positive, got {height}x{width}")
            frame = np.zeros((height, width, 3), np.uint8)
            t0 = time.perf_counter()
            if batch > 1:
                self.segment_batch([frame] * batch, labels=labels)
            else:
                self.segment(frame, labels=labels)
            took[(height, width)] = (time.perf_counter() - t0) * 1e3
        return took

    def segment_sets(self, image: np.ndarray, label_sets: Sequence[Iterable[str] | str | PreparedLabels],
                     color_order: str = "rgb", return_features: bool = False) -> list[SegmentationResult]:
        """One result per label set, from a single pass of the image encoder.

        Labels compete only within their own set, so this equals calling `segment` once per set,
        at the cost of one image encoding (e.g. the frame's labels plus a referring query).
        """
        return self.segment_sets_batch([image], label_sets, [color_order], return_features)[0]

    @torch.inference_mode()
    def segment_sets_batch(self, images: Sequence[np.ndarray],
                           label_sets: Sequence[Iterable[str] | str | PreparedLabels],
                           color_orders: Sequence[str] | None = None,
                           return_features: bool = False) -> list[list[SegmentationResult]]:
        """`segment_sets` of several images of one size (frames of several cameras) in one batched
        image-encoder pass: per image, one result per label set. Each image has its own colour
        order (default "rgb"). Multi-scale mode runs the images one after another (its passes are
        per scale). Timings are each image's share of the batch."""
        if not images:
            return []
        orders = list(color_orders) if color_orders is not None else ["rgb"] * len(images)
        if len(orders) != len(images):
            raise ValueError(f"{len(images)} images but {len(orders)} colour orders")
        if len({image.shape[:2] for image in images}) != 1:
            raise ValueError(f"segment_sets_batch needs images of one size, got {sorted({i.shape[:2] for i in images})}")
        t0 = time.perf_counter()
        sets = [self.prepare(labels) for labels in label_sets]
        with single_cpu_thread(self.device):  # three element-wise ops a frame: see single_cpu_thread
            inputs = [normalize(image, self.model.config.mean, self.model.config.std, self.device, order)
                      for image, order in zip(images, orders)]
        x = inputs[0] if len(inputs) == 1 else torch.cat(inputs)  # one camera: no copy
        height, width = x.shape[-2:]
        t1 = time.perf_counter()
        features = [None] * len(images)
        if self.scales:
            def forward(batch: torch.Tensor) -> torch.Tensor:
                return upsample_logits(self.backend.logits(batch, sets)).float()

            step = max(1, _CHUNK_ELEMENTS // (height * width))
            decided = []
            for one in x.split(1):
                logits = multiscale_logits(forward, one, self._fill, self.scales, self.flip)
                decided.append([decide_full(set_logits.split(step, dim=1), lambda chunk: chunk)
                                for set_logits in logits.split([len(p) for p in sets], dim=1)])
            t2 = time.perf_counter()
        else:
            h, w = working_shape(height, width, self.working_size)
            if (h, w) != (height, width):
                x = F.interpolate(x, (h, w), mode="bilinear", align_corners=False, antialias=True)
            padded = pad_bottom_right(x, round_up(h), round_up(w), self._fill)
            per_image = None  # per image, per set: (N, h2, w2) logits or `FactoredLogits`
            if return_features and self.backend.supports_features:
                pixels = self.model.scratch.embed(self.backend.decode(padded))
                features = [one.float().cpu().numpy() for one in pixels[:, :, : (h + 1) // 2, : (w + 1) // 2]]
                logits = torch.cat([self.model.label_logits(pixels, p.text) for p in sets], dim=1)
            elif isinstance(self.backend, TorchBackend):
                # past the caches, the head computed inside the decision a block at a time
                per_image = self.backend.factored_logits(padded, sets)
                logits = None if per_image is not None else self.backend.logits(padded, sets)
            else:
                logits = self.backend.logits(padded, sets)
            if per_image is None:
                per_image = [[set_logits[0] for set_logits in one.split([len(p) for p in sets], dim=1)]
                             for one in logits.split(1)]
            t2 = time.perf_counter()
            with single_cpu_thread(self.device):
                decided = [[decide_stride2(set_logits, (h, w), (height, width), exact_below=self.threshold)
                            for set_logits in one] for one in per_image]
        results = []
        for per_image in decided:
            results.append([])
            for prepared, (label_map, confidence) in zip(sets, per_image):
                if self.threshold > 0:
                    label_map[confidence < self.threshold] = NO_LABEL
                results[-1].append((prepared, label_map.to(torch.int32).cpu().numpy(),
                                    confidence.float().cpu().numpy()))
        t3 = time.perf_counter()
        share = len(images)
        timings = {"preprocess": (t1 - t0) * 1e3 / share, "forward": (t2 - t1) * 1e3 / share,
                   "postprocess": (t3 - t2) * 1e3 / share}
        return [[SegmentationResult(p.labels, label_map, confidence, dict(timings), image_features,
                                    p.text.cpu().numpy() if return_features else None)
                 for p, label_map, confidence in per_image]
                for per_image, image_features in zip(results, features)]

    @property
    def supports_features(self) -> bool:
        """Pixel embeddings (`return_features`) are available: the torch backend only."""
        return self.backend.supports_features
