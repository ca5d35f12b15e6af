"""Checkpoint I/O: the authors' Lightning `.ckpt` files and our own safetensors format.

Checkpoints are untrusted files. Official ones are pickles that may name Lightning classes (or,
if tampered with, anything at all), so they are read with an unpickler that resolves only the
few globals torch needs to rebuild tensors and turns every other global into an inert
placeholder: loading never imports or runs code from the file. Our own format is safetensors
(no code by construction) with the architecture config as JSON in the file's metadata.
"""
from __future__ import annotations

import json
import logging
import os
import pickle
import re
import types
from pathlib import Path
from typing import Any, Sequence

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..weights import EMBEDDED_MODELS, embedded_model_file
from ._registry import IMAGENET_MEAN, IMAGENET_STD, config_with_overrides
from .config import REFERRING_FIELDS, ImageEncoderConfig, LSegConfig, TextEncoderConfig
from .device import resolve_device  # the one device resolver (also importable from here)
from .lseg import LSeg

_LOG = logging.getLogger(__name__)

FORMAT_KEY = "lang_seg_ros.format"
CONFIG_KEY = "lang_seg_ros.config"
FORMAT_VERSION = "1"
OFFICIAL_PREFIX = "net."
OFFICIAL_SOURCE = (
    "The authors' LSeg checkpoints (demo_e200.ckpt, fss_l16.ckpt, fss_rn101.ckpt and the PASCAL/COCO "
    "fold checkpoints) are linked from the README of https://github.com/isl-org/lang-seg; download one "
    "and pass its path. Without a path, lang_seg_ros uses its embedded default model."
)
_BLOCK_KEY = "scratch.head_block.depthwise.depthwise.weight"


# ---------------------------------------------------------------------------------------------
# Safe unpickling of official checkpoints


class _Inert:
    """Stands in for every global the pickle names that is not needed to rebuild tensors.

    Constructing, calling or restoring state on it does nothing, so a `__reduce__` payload such
    as `(os.system, ("...",))` becomes an `_Inert` instance instead of a command.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> "_Inert":
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> "_Inert":
        return self


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch", "Size"),
    ("torch", "device"),
    ("torch", "Tensor"),
    ("torch.nn.parameter", "Parameter"),
    ("torch._tensor", "_rebuild_from_type_v2"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        _LOG.debug("checkpoint pickle names %s.%s: replaced by an inert placeholder", module, name)
        return _Inert


def _safe_load(fp: Any, **kwargs: Any) -> Any:
    return _SafeUnpickler(fp, **kwargs).load()


_SAFE_PICKLE = types.SimpleNamespace(Unpickler=_SafeUnpickler, load=_safe_load, __name__="lang_seg_ros_safe_pickle")


def read_official_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a lang-seg Lightning checkpoint, `net.` prefix removed; nothing in it is executed."""
    try:
        obj = torch.load(path, map_location="cpu", pickle_module=_SAFE_PICKLE, weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, ValueError, TypeError, KeyError, SafetensorError) as exc:
        # (torch.load hands a *.safetensors name to safetensors, whatever the bytes are)
        raise ValueError(f"{path}: not a lang-seg checkpoint, or a damaged one ({exc})") from exc
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a lang-seg checkpoint (no state_dict mapping inside)")
    tensors = {k.removeprefix(OFFICIAL_PREFIX): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ValueError(f"{path}: the checkpoint holds no tensors")
    return tensors


# ---------------------------------------------------------------------------------------------
# Architecture inference from official tensors


def _count(state: dict[str, torch.Tensor], pattern: str) -> int:
    regex = re.compile(pattern)
    return len({m.group(1) for k in state if (m := regex.match(k))})


def _infer_text_encoder(state: dict[str, torch.Tensor]) -> TextEncoderConfig:
    if "clip_pretrained.token_embedding.weight" not in state:
        raise ValueError("checkpoint has no CLIP text encoder (clip_pretrained.*); cannot infer the architecture")
    if "clip_pretrained.visual.conv1.weight" not in state:
        raise ValueError("only CLIP checkpoints with a ViT visual tower are supported (clip_pretrained.visual.conv1)")
    vocab, width = state["clip_pretrained.token_embedding.weight"].shape
    text = {
        "context_length": state["clip_pretrained.positional_embedding"].shape[0],
        "vocab_size": vocab,
        "width": width,
        "heads": max(1, width // 64),
        "layers": _count(state, r"clip_pretrained\.transformer\.resblocks\.(\d+)\."),
    }
    conv1 = state["clip_pretrained.visual.conv1.weight"]
    grid = int(round((state["clip_pretrained.visual.positional_embedding"].shape[0] - 1) ** 0.5))
    vision = {
        "width": conv1.shape[0],
        "patch_size": conv1.shape[-1],
        "image_size": grid * conv1.shape[-1],
        "layers": _count(state, r"clip_pretrained\.visual\.transformer\.resblocks\.(\d+)\."),
    }
    base = TextEncoderConfig()
    import open_clip

    published = open_clip.get_model_config(base.name)
    embed_dim = state["clip_pretrained.text_projection"].shape[1]
    return TextEncoderConfig(
        embed_dim=0 if embed_dim == published["embed_dim"] else embed_dim,
        text_cfg={k: v for k, v in text.items() if published["text_cfg"].get(k) != v},
        vision_cfg={k: v for k, v in vision.items() if published["vision_cfg"].get(k) != v},
    )


def _infer_image_encoder(state: dict[str, torch.Tensor]) -> ImageEncoderConfig:
    if "pretrained.model.patch_embed.proj.weight" in state:
        proj = state["pretrained.model.patch_embed.proj.weight"]
        width, patch = proj.shape[0], proj.shape[-1]
        depth = _count(state, r"pretrained\.model\.blocks\.(\d+)\.")
        grid = int(round((state["pretrained.model.pos_embed"].shape[1] - 1) ** 0.5))
        if depth % 4:
            raise ValueError(f"cannot infer DPT hooks for a ViT of depth {depth}")
        return ImageEncoderConfig(
            type="vit",
            img_size=grid * patch,
            patch_size=patch,
            width=width,
            depth=depth,
            num_heads=max(1, width // 64),
            num_classes=state["pretrained.model.head.weight"].shape[0] if "pretrained.model.head.weight" in state else 0,
            hooks=tuple(depth * q // 4 - 1 for q in (1, 2, 3, 4)),
            reassemble_channels=tuple(state[f"pretrained.act_postprocess{i}.3.weight"].shape[0] for i in range(1, 5)),
        )
    if "pretrained.layer1.0.weight" in state:
        blocks = _count(state, r"pretrained\.layer3\.(\d+)\.")
        names = {6: "resnet50", 23: "resnet101", 36: "resnet152"}
        if blocks not in names:
            raise ValueError(f"unrecognised ResNet: layer3 has {blocks} blocks")
        return ImageEncoderConfig(type="resnet", name=names[blocks])
    raise ValueError("unrecognised image encoder: neither a ViT (pretrained.model.*) nor a ResNet (pretrained.layer*)")


def infer_official_config(state: dict[str, torch.Tensor], **overrides: Any) -> LSegConfig:
    """The architecture of an official checkpoint, read off its tensors.

    The spatial-regularisation settings are not recorded in official files: when the tensors hold
    a head block, `block_type`, `block_depth` and `block_activation` must be given.
    """
    image = _infer_image_encoder(state)
    config = LSegConfig(
        image_encoder=image,
        text_encoder=_infer_text_encoder(state),
        features=state["scratch.layer1_rn.weight"].shape[0],
        embed_dim=state["scratch.head1.weight"].shape[0],
        use_bn="scratch.refinenet1.resConfUnit1.bn1.weight" in state,
        mean=IMAGENET_MEAN if image.type == "resnet" else (0.5, 0.5, 0.5),
        std=IMAGENET_STD if image.type == "resnet" else (0.5, 0.5, 0.5),
    )
    block_keys = ("block_type", "block_depth", "block_activation")
    if _BLOCK_KEY in state and not all(overrides.get(k) is not None for k in block_keys):
        raise ValueError(
            "this checkpoint holds spatial-regularisation weights (scratch.head_block.*), but official "
            "checkpoints do not record their settings: pass block_type='bottleneck'|'depthwise', "
            "block_depth=N and block_activation='relu'|'lrelu'|'tanh' as used in training "
            "(lang-seg's --arch_option 1 = bottleneck, 2 = depthwise; --block_depth; --activation)"
        )
    return config.replace(**overrides) if overrides else config


# ---------------------------------------------------------------------------------------------
# Loading and saving


def embedded_checkpoint_path(name: str = "default") -> Path:
    """The file of the embedded model `name` (`lang_seg_ros.weights.EMBEDDED_MODELS`)."""
    path = embedded_model_file(name)
    if not path.is_file():
        raise FileNotFoundError(f"the embedded model {name!r} is missing ({path}); pass a checkpoint path. {OFFICIAL_SOURCE}")
    return path


def default_checkpoint_path() -> Path:
    """The embedded default model shipped inside the package."""
    return embedded_checkpoint_path("default")


def resolve_checkpoint(checkpoint: str | os.PathLike | None) -> Path | str | os.PathLike:
    """A `checkpoint` argument as a loadable path: None or "" the embedded default model, an
    `EMBEDDED_MODELS` name that model's file, anything else unchanged (a path)."""
    if checkpoint is None or checkpoint == "":
        return default_checkpoint_path()
    if isinstance(checkpoint, str) and checkpoint in EMBEDDED_MODELS:
        return embedded_checkpoint_path(checkpoint)
    return checkpoint


def load_state_strict(model: LSeg, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Load `state` into `model`; missing, unexpected or mis-shaped keys are an error naming them."""
    expected = model.checkpoint_state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)

    def show(keys: list[str]) -> str:
        return ", ".join(keys[:8]) + (f" (+{len(keys) - 8} more)" if len(keys) > 8 else "")

    problems = []
    if missing:
        problems.append(f"missing keys: {show(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {show(unexpected)}")
    if mismatched:
        problems.append(
            "shape mismatch: " + show([f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}" for k in mismatched])
        )
    if problems:
        raise ValueError(f"{source} does not match the architecture: " + "; ".join(problems))
    model.load_state_dict(state, strict=False)


def build_model(name_or_config: str | LSegConfig | dict[str, Any], **overrides: Any) -> LSeg:
    """A randomly initialised LSeg of a named architecture (see `list_models()`) or config."""
    return LSeg(config_with_overrides(name_or_config, **overrides))


def _is_own_format(path: Path) -> bool:
    """A safetensors file: an 8-byte little-endian header length, then the JSON header. Its first
    byte is the length's low byte, which may be 0x80 like a pickle's (a 45,440-byte header)."""
    with open(path, "rb") as fp:
        head = fp.read(9)
    if len(head) == 9 and head[8:9] == b"{" and 8 + int.from_bytes(head[:8], "little") <= path.stat().st_size:
        return True
    if head[:2] == b"PK" or head[:1] == b"\x80":  # zip (torch >= 1.6) or a raw pickle
        return False
    return path.suffix == ".safetensors" or len(head) >= 8


def _read_own(path: Path, tensors: bool = True) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """(metadata, tensors) of one of our safetensors files; ValueError for a damaged file or one
    without our format and config in its metadata. `tensors=False`: the metadata only ({} tensors)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            state = {k: f.get_tensor(k) for k in f.keys()} if tensors else {}
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise ValueError(f"{path}: not a readable safetensors checkpoint ({exc})") from exc
    if meta.get(FORMAT_KEY) != FORMAT_VERSION or CONFIG_KEY not in meta:
        raise ValueError(f"{path}: safetensors file without a lang_seg_ros config in its metadata")
    return meta, state


def load_checkpoint(path: str | os.PathLike | None, device: str | torch.device = "cpu", **overrides: Any) -> LSeg:
    """An LSeg in eval mode from an official `.ckpt` or one of our `.safetensors` files, or an
    embedded model (None / "" / "default" / "default-large": `resolve_checkpoint`, the one rule).

    `overrides` replace config fields (for official files: the spatial-regularisation settings
    `block_type`, `block_depth`, `block_activation`, which those files do not record).
    """
    path = Path(resolve_checkpoint(path))
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}. {OFFICIAL_SOURCE}")
    if _is_own_format(path):
        meta, state = _read_own(path)
        config = config_with_overrides(json.loads(meta[CONFIG_KEY]), **overrides)
    else:
        state = read_official_state_dict(path)
        config = infer_official_config(state, **overrides)
    model = LSeg(config)
    load_state_strict(model, state, source=str(path))
    return model.to(resolve_device(device)).eval()


#: safetensors metadata key of the label names a checkpoint was trained with (JSON list of str):
#: the referring vocabulary (`referring.vocabulary`) reads it.
LABELS_KEY = "lang_seg_ros.labels"


def save_checkpoint(model: LSeg, path: str | os.PathLike, dtype: torch.dtype | None = None,
                    labels: Sequence[str] | None = None) -> Path:
    """Write our own format: safetensors weights with the config JSON in the metadata.

    `dtype` (e.g. torch.float16) casts floating-point tensors to halve the file; integer buffers
    such as BatchNorm's `num_batches_tracked` keep their type. `labels`: the names the model was
    trained with, stored under `LABELS_KEY` (the trainer passes its training names).
    """
    state = {}
    for key, value in model.checkpoint_state_dict().items():
        value = value.detach().cpu()
        if dtype is not None and value.is_floating_point():
            value = value.to(dtype)
        state[key] = value.contiguous()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {FORMAT_KEY: FORMAT_VERSION, CONFIG_KEY: json.dumps(model.config.to_dict())}
    if labels:
        meta[LABELS_KEY] = json.dumps([str(label) for label in labels])
    save_file(state, str(path), metadata=meta)
    return path


def convert_checkpoint(
    src: str | os.PathLike, dst: str | os.PathLike, dtype: torch.dtype | None = None, **overrides: Any
) -> Path:
    """Official `.ckpt` -> our `.safetensors` (architecture inferred, settings recorded)."""
    return save_checkpoint(load_checkpoint(src, **overrides), dst, dtype=dtype)


def own_checkpoint(src: str | os.PathLike | None) -> Path:
    """The path of one of our `.safetensors` checkpoints (or an embedded model's), its metadata
    checked as the loader checks it; ValueError otherwise (an official `.ckpt`: convert it first)."""
    path = Path(resolve_checkpoint(src))
    try:
        if not (path.is_file() and _is_own_format(path)):
            raise ValueError(f"{path}: no such file, or an official checkpoint")
        _read_own(path, tensors=False)
    except ValueError as exc:
        raise ValueError(f"not one of our .safetensors checkpoints: {exc}; convert it first (lang-seg convert)") from exc
    return path


def with_referring_thresholds(src: str | os.PathLike | None, dst: str | os.PathLike,
                              thresholds: dict[str, Any]) -> Path:
    """A copy of one of our `.safetensors` checkpoints (or an embedded model's) whose config carries
    `thresholds` as the zero-shot referrer's for these weights (`LSegConfig.referring`: those of
    `REFERRING_FIELDS` among them; `lang-seg eval-refer --choose-thresholds --save-chosen`).
    Tensors and other metadata are copied unchanged; the file is replaced in one step (`dst` may
    be `src`). Raises ValueError for a file that is not ours (`own_checkpoint`), for no
    thresholds and for thresholds out of range."""
    chosen = {k: v for k, v in thresholds.items() if k in REFERRING_FIELDS}
    if not chosen:
        raise ValueError("no thresholds to write (nothing was chosen)")
    meta, state = _read_own(own_checkpoint(src))
    config = json.loads(meta[CONFIG_KEY])
    config["referring"] = chosen
    meta[CONFIG_KEY] = json.dumps(LSegConfig.from_dict(config).to_dict())  # checked as a loader checks it
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    partial = dst.with_name(dst.name + ".partial")
    save_file(state, str(partial), metadata=meta)
    os.replace(partial, dst)
    return dst
