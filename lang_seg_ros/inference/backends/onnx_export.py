"""ONNX export of LSeg's image branch with the label embeddings as a run-time input.

LSeg meets its labels only in a product of pixel and label embeddings, so the exported graph
takes `image` (B, 3, H, W) normalised and `text_features` (N, C) L2-normalised label embeddings
and returns `logits` (B, N, H/2, W/2): the image encoder, the fusion decoder, the 1x1 head
folded into the labels inside the graph, the temperature and the spatial-regularisation blocks.
B and N are dynamic (H and W too with `dynamic=True`): the label set is never fixed at export and
changes live without re-export. The text encoder stays a torch module, run once per label set;
where no installed package provides its weights (the CLIP tower of official checkpoints) they
go to one companion file beside the ONNX file, `<stem>.text.safetensors`, found automatically.

`outputs="embeddings"` exports the pixel embeddings (B, C, H/2, W/2) instead, with no label input.

Metadata travels in the ONNX file (`metadata_props`): the architecture config (JSON), the
normalisation, the embedding size, the text encoder, the outputs, the export size and precision.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ...model import LSeg, load_checkpoint
from ...model._registry import config_with_overrides
from ...model.config import LSegConfig
from ...model.grounding import encode_labels
from ...model.text_encoders import build_text_encoder

_LOG = logging.getLogger(__name__)

__all__ = ["OnnxInfo", "cached_export", "export_onnx", "read_onnx_info", "TextModel", "text_model_for"]

META_PREFIX = "lang_seg_ros."
OPSET = 17
OUTPUTS = ("logits", "embeddings")


class _LogitsGraph(nn.Module):
    def __init__(self, model: LSeg) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        return self.model.decoded_logits(self.model.decode(image), text_features).float()


class _EmbeddingGraph(nn.Module):
    def __init__(self, model: LSeg) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(image).float()


@dataclasses.dataclass(frozen=True)
class OnnxInfo:
    """What an exported file says about itself (its `metadata_props`)."""

    path: Path
    config: LSegConfig
    outputs: str  # "logits" or "embeddings"
    precision: str  # "fp32" or "fp16"
    size: tuple[int, int] | None  # (H, W) it was exported for; None = dynamic
    has_head_block: bool  # logits of several label sets must be regularised one set at a time

    @property
    def text_weights(self) -> Path:
        """The companion file with the text encoder's weights (may not exist: a package provides them)."""
        return self.path.with_name(self.path.stem + ".text.safetensors")


def export_onnx(model: LSeg, path: str | os.PathLike, height: int = 384, width: int = 480, dynamic: bool = False,
                precision: str = "fp32", outputs: str = "logits", check: bool = True) -> OnnxInfo:
    """Write `model`'s image branch to `path` (see the module doc); returns what the file says.

    height, width: the input size (multiples of 32) it is traced at and, without `dynamic`,
    fixed to. precision: "fp32", or "fp16" (traced on a CUDA device when there is one): a
    strongly typed graph, every type explicit (fp16 image input and image branch, fp32 label
    embeddings, label stage and logits, as torch runs them), which is what TensorRT 10 / 11
    strongly typed engines build from as it is (they take the precision from the file).
    check: run the file with onnxruntime (when installed) at the traced size, and at a second
    size with `dynamic`, against the torch model; ValueError when they differ (some
    architectures, e.g. ViTs with resized position embeddings, do not trace for dynamic sizes).
    """
    if height % 32 or width % 32 or height <= 0 or width <= 0:
        raise ValueError(f"height and width must be positive multiples of 32, got {height}x{width}")
    if outputs not in OUTPUTS:
        raise ValueError(f"outputs must be one of {OUTPUTS}, got {outputs!r}")
    if precision not in ("fp32", "fp16"):
        raise ValueError(f"precision must be fp32 or fp16, got {precision!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if precision == "fp16" and torch.cuda.is_available() else "cpu")
    dtype = torch.float16 if precision == "fp16" else torch.float32
    model = model.eval().to(device)
    image = torch.randn(1, 3, height, width, device=device, dtype=dtype)
    text = torch.nn.functional.normalize(torch.randn(3, model.config.embed_dim, device=device), dim=1)
    spatial = {2: "height", 3: "width"} if dynamic else {}
    if outputs == "logits":
        graph, args, names = _LogitsGraph(model), (image, text), ["image", "text_features"]
        axes = {"image": {0: "batch", **spatial}, "text_features": {0: "labels"},
                "logits": {0: "batch", 1: "labels", **({2: "height2", 3: "width2"} if dynamic else {})}}
    else:
        graph, args, names = _EmbeddingGraph(model), (image,), ["image"]
        axes = {"image": {0: "batch", **spatial}, "embeddings": {0: "batch", **({2: "height2", 3: "width2"}
                                                                              if dynamic else {})}}
    graph = graph.eval()
    model.pretrained.to(dtype)
    model.scratch.to(dtype)
    if hasattr(model.scratch, "head_block"):
        model.scratch.head_block.float()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the tracer's notes on shape arithmetic
            torch.onnx.export(graph, args, str(path), input_names=names, output_names=[outputs],
                              dynamic_axes=axes, opset_version=OPSET, dynamo=False)
    finally:
        graph.eval()  # the exporter restores the wrapper's mode; keep the model in eval mode
        model.float()
    info = OnnxInfo(path, model.config, outputs, precision, None if dynamic else (height, width),
                    hasattr(model.scratch, "head_block"))
    _write_metadata(info)
    if model.text_encoder.weights_in_checkpoint:
        from safetensors.torch import save_file

        state = {k: v.detach().cpu().contiguous() for k, v in model.text_encoder.state_dict().items()}
        save_file(state, str(info.text_weights), metadata={"lang_seg_ros.text_encoder": model.config.text_encoder.type})
    if check:
        _check(info, model, [(height, width)] + ([(height + 64, width - 32 if width > 64 else width + 32)]
                                                  if dynamic else []))
    return info


def _write_metadata(info: OnnxInfo) -> None:
    import onnx

    proto = onnx.load(str(info.path))
    cfg = info.config
    values = {"config": json.dumps(cfg.to_dict()), "outputs": info.outputs, "precision": info.precision,
              "size": json.dumps(list(info.size) if info.size else None), "mean": json.dumps(list(cfg.mean)),
              "std": json.dumps(list(cfg.std)), "embed_dim": str(cfg.embed_dim),
              "text_encoder": json.dumps(dataclasses.asdict(cfg.text_encoder)),
              "has_head_block": json.dumps(info.has_head_block)}
    del proto.metadata_props[:]
    for key, value in values.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = META_PREFIX + key, value
    onnx.save(proto, str(info.path))


def read_onnx_info(path: str | os.PathLike) -> OnnxInfo:
    """The metadata of a file written by `export_onnx`; ValueError for any other ONNX file."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX file not found: {path}")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - a damaged file: say which
        raise ValueError(f"{path}: not a readable ONNX file ({exc})") from exc
    meta = {p.key[len(META_PREFIX):]: p.value for p in proto.metadata_props if p.key.startswith(META_PREFIX)}
    if "config" not in meta:
        raise ValueError(f"{path}: no lang_seg_ros metadata; export it with `lang-seg export`")
    size = json.loads(meta.get("size", "null"))
    return OnnxInfo(path, config_with_overrides(json.loads(meta["config"])), meta.get("outputs", "logits"),
                    meta.get("precision", "fp32"), tuple(size) if size else None,
                    json.loads(meta.get("has_head_block", "false")))


class TextModel(nn.Module):
    """The torch side of an exported model: its config and text encoder (what `LSeg` offers the
    Segmenter besides the image branch)."""

    def __init__(self, config: LSegConfig, text_encoder: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.text_encoder = text_encoder

    @torch.no_grad()
    def encode_text(self, labels: list[str]) -> torch.Tensor:
        """(N, C) L2-normalised label embeddings, fp32, as `LSeg.encode_text` (grounded alike)."""
        return encode_labels(self.text_encoder, labels, self.config.text_encoder)


def text_model_for(info: OnnxInfo) -> TextModel:
    """The text encoder of an exported model: from its package, or its companion weights file."""
    encoder = build_text_encoder(info.config.text_encoder)
    if encoder.weights_in_checkpoint:
        if not info.text_weights.is_file():
            raise FileNotFoundError(f"{info.path}: its text encoder's weights are not installed by any package and "
                                    f"the companion file {info.text_weights.name} is missing; export again")
        from safetensors.torch import load_file

        missing, unexpected = encoder.load_state_dict(load_file(str(info.text_weights)), strict=False)
        if missing or unexpected:
            raise ValueError(f"{info.text_weights}: text encoder weights do not match "
                             f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return TextModel(info.config, encoder.eval())


def _check(info: OnnxInfo, model: LSeg, sizes: list[tuple[int, int]]) -> None:
    try:
        import onnxruntime as ort
    except ImportError:
        _LOG.info("onnxruntime not installed: %s not checked against torch", info.path)
        return
    session = ort.InferenceSession(str(info.path), providers=["CPUExecutionProvider"])
    device = next(model.parameters()).device
    for height, width in sizes:
        image = torch.randn(1, 3, height, width)
        text = torch.nn.functional.normalize(torch.randn(5, model.config.embed_dim), dim=1)
        feeds = {"image": image.numpy().astype("float16" if info.precision == "fp16" else "float32")}
        with torch.no_grad():
            if info.outputs == "logits":
                feeds["text_features"] = text.numpy()
                reference = _LogitsGraph(model).eval()(image.to(device), text.to(device)).cpu()
            else:
                reference = _EmbeddingGraph(model).eval()(image.to(device)).cpu()
        got = torch.from_numpy(session.run(None, feeds)[0]).float()
        error = (got - reference).abs().max().item() if got.shape == reference.shape else float("inf")
        limit = 1e-2 * max(1.0, reference.abs().max().item()) if info.precision == "fp32" else 0.5
        if not error <= limit:
            raise ValueError(f"{info.path}: the exported graph differs from the model at {height}x{width} (max "
                             f"{error:.3g}); this architecture does not export for that size"
                             + (": export with fixed --height/--width instead of --dynamic" if len(sizes) > 1 else ""))


def cache_dir() -> Path:
    """Where exports made on the fly are kept: $LANG_SEG_ROS_CACHE, else ~/.cache/lang_seg_ros."""
    root = os.environ.get("LANG_SEG_ROS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "lang_seg_ros")
    return Path(root)


def cached_export(checkpoint: str | os.PathLike, precision: str = "fp32", **load_overrides: Any) -> Path:
    """An ONNX export (logits, dynamic sizes) of a checkpoint, made once and cached by the file's hash."""
    digest = hashlib.sha256()
    with open(checkpoint, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    digest.update(json.dumps(load_overrides, sort_keys=True).encode())
    path = cache_dir() / "onnx" / f"{Path(checkpoint).stem}-{digest.hexdigest()[:16]}-{precision}.onnx"
    if not path.is_file():
        _LOG.info("exporting %s to %s (once)", checkpoint, path)
        tmp = path.with_name(path.stem + f".tmp{os.getpid()}.onnx")
        model = load_checkpoint(checkpoint, **load_overrides)
        info = export_onnx(model, tmp, dynamic=True, precision=precision)
        if info.text_weights.is_file():
            os.replace(info.text_weights, path.with_name(path.stem + ".text.safetensors"))
        os.replace(tmp, path)
    return path
