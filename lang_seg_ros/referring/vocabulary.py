"""The context vocabulary a referring phrase competes with, chosen per model.

Zero-shot referring adds the expression's phrase to a label set and lets each pixel pick its
best label. Against "other" alone the phrase wins everywhere ("a giraffe" covered whole street
frames); against the names a model was trained with, it wins only where nothing it knows
better is. So every model gets a vocabulary of real labels:

1. the names stored in the checkpoint's metadata under `VOCABULARY_KEY` (a JSON list), when
   the file has them;
2. the class names of the model's trained vocabulary (`TextEncoderConfig.vocabulary`: per
   class its wordings, the first the data set's name; `lang-seg train` writes it into every
   checkpoint it saves, so a model trained here needs no file path to be known as closed-set):
   for the embedded default model the 11 CamVid names it was trained with (the same as
   `vocabularies/camvid.txt`, see `lang_seg_ros/weights/MODEL_CARD.md`);
3. otherwise (official LSeg checkpoints, CLIP text encoders): the 150 ADE20K class names
   (`vocabularies/ade20k.txt`), a broad everyday list.
"""
from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["VOCABULARY_KEY", "checkpoint_vocabulary", "is_training_vocabulary", "load_vocabulary", "model_vocabulary",
           "vocabulary_names"]

#: safetensors metadata key under which a checkpoint stores its label names (JSON list of str;
#: `model.checkpoint.LABELS_KEY`, written by `save_checkpoint(..., labels=)`, which the trainer
#: calls with its training names; kept here too so that reading it imports no torch).
VOCABULARY_KEY = "lang_seg_ros.labels"

_DIR = Path(__file__).resolve().parent / "vocabularies"


def vocabulary_names() -> list[str]:
    """Names of the vocabularies shipped with the package ("ade20k", "camvid")."""
    return sorted(p.stem for p in _DIR.glob("*.txt"))


@lru_cache(maxsize=None)
def load_vocabulary(name_or_path: str) -> tuple[str, ...]:
    """A shipped vocabulary by name, or a file: one label per line, `#` comments skipped.

    Raises ValueError for an unknown name and FileNotFoundError for a missing file."""
    path = Path(name_or_path)
    if not path.suffix:
        path = _DIR / f"{name_or_path}.txt"
        if not path.is_file():
            raise ValueError(f"unknown vocabulary {name_or_path!r}; shipped: {', '.join(vocabulary_names())}")
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    names = tuple(dict.fromkeys(line for line in lines if line and not line.startswith("#")))
    if not names:
        raise ValueError(f"{path}: no label names")
    return names


def checkpoint_vocabulary(path: str | os.PathLike) -> tuple[str, ...] | None:
    """The label names stored in one of our `.safetensors` checkpoints, or None (none stored, or
    not our format: an official `.ckpt` records no names)."""
    path = Path(path)
    if path.suffix != ".safetensors" or not path.is_file():
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="np") as f:
            meta = f.metadata() or {}
    except Exception:  # a damaged file fails loudly where the model is loaded, not here
        return None
    try:
        names = json.loads(meta[VOCABULARY_KEY])
    except (KeyError, ValueError):
        return None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n.strip() for n in names):
        return None
    return tuple(dict.fromkeys(n.strip() for n in names))


def _trained_names(model: Any) -> tuple[str, ...] | None:
    """The class names of the model's trained vocabulary (each group's first wording), or None.
    Without this a model fine-tuned here (another encoder, other wordings) counted as open-set
    wherever its file path was not passed along: the node's referrer read its phrases against
    ADE20K's 150 classes and no phrase reader ran (`ZeroShotReferrer.phrase_reader` asks without
    the path): a CamVid-trained EfficientNet-Lite1 found 9.6 % of worded expressions on CamVid
    train instead of the default model's 73.2 %."""
    config = getattr(getattr(model, "config", None), "text_encoder", None)
    groups = getattr(config, "vocabulary", None) or ()
    names = tuple(dict.fromkeys(group[0].strip() for group in groups if group and group[0].strip()))
    return names or None


def model_vocabulary(model: Any, checkpoint: str | os.PathLike | None = None) -> tuple[str, ...]:
    """The context vocabulary for `model` (an `LSeg`, or a `Segmenter`: its `.model`).

    checkpoint: the file the model was loaded from, when known (its stored names win); None for
    the embedded default model or unknown. A model object may also carry `vocabulary` itself.
    """
    return _vocabulary_source(model, checkpoint)[0]


def is_training_vocabulary(model: Any, checkpoint: str | os.PathLike | None = None) -> bool:
    """Whether `model_vocabulary` gives the names the model was trained with (a closed-set model,
    whose phrases need near-synonyms read as its labels), not the broad ADE20K fallback."""
    return _vocabulary_source(model, checkpoint)[1]


def _vocabulary_source(model: Any, checkpoint: str | os.PathLike | None) -> tuple[tuple[str, ...], bool]:
    model = getattr(model, "model", model)
    own = getattr(model, "vocabulary", None)
    if own:
        return tuple(own), True
    if checkpoint is not None:
        stored = checkpoint_vocabulary(checkpoint)
        if stored:
            return stored, True
    trained = _trained_names(model)
    if trained:  # the embedded default model too: its config carries the 11 CamVid names' wordings
        return trained, True
    return load_vocabulary("ade20k"), False
