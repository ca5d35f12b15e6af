"""Wording-robust label sampling: teach the text space around each class, not one point of it.

LSeg (Li et al., ICLR 2022, arXiv 2201.03546, Sec. 3-4) trains one image model against the
label names of several data sets, so pixel embeddings must land near *regions* of the text
space. With a single data set and one fixed name per class, the model only learns eleven
points: "pedestrian" works, "person" does not. Here each training step names every class by
one wording sampled from a hand-written list (``configs/wordings/camvid/train_wordings.yaml``)
inside one sampled prompt template ("a photo of a {}", ...), and adds a random subset of
negative nouns (labels with no pixels) to the softmax, so a pixel must be closer to its class's
wordings than to unrelated words.

The text encoder is frozen, so every ``wording x template`` and ``negative x template`` string
is encoded once, when the bank is built; a step is a tensor lookup. Negatives whose plain-text
embedding is within ``max_similarity`` (cosine) of any class wording, or of any protected
wording (held-out evaluation sets), are dropped at build time: a synonym never becomes a
negative, and a held-out wording is never pushed away from its class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

__all__ = ["WordingBank", "WordingConfig", "build_wording_bank", "load_class_wordings", "read_word_list"]

Encoder = Callable[[list[str]], torch.Tensor]


@dataclass
class WordingConfig:
    """How a data set's classes are named during training (``datasets[].wordings``).

    wordings: YAML file (or mapping) ``class name -> [wordings]``; a class missing from it is
        named by its data-set name only. Paths are relative to the training config.
    templates: prompt templates with one ``{}``; ``"{}"`` (the plain wording, which is what
        ``lang-seg segment`` / ``eval`` encode) is always included.
    plain_prob: probability that a class is named without a template. Inference encodes plain
        strings, so most steps should see them.
    canonical_prob: probability that a class is named by its data-set name (the first wording),
        keeping the names the default model is scored on strong.
    negatives: a word-list file (or list) of nouns that are no class's wording.
    negatives_per_step: how many of them join each step's softmax (labels with no pixels).
    max_similarity: cosine between plain-text embeddings at or above which a negative counts as
        a synonym of some class or protected wording and is dropped.
    heldout: word-list files of wordings kept out of training (evaluation sets): an overlap
        with ``wordings`` is a ``ValueError``, and negatives near them are dropped too.
    """

    wordings: str | dict[str, list[str]] | None = None
    templates: list[str] = field(default_factory=lambda: ["{}"])
    plain_prob: float = 0.5
    canonical_prob: float = 0.25
    negatives: str | list[str] | None = None
    negatives_per_step: int = 0
    max_similarity: float = 0.6
    heldout: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.templates = list(self.templates)
        bad = [t for t in self.templates if t.count("{}") != 1]
        if bad:
            raise ValueError(f"wordings.templates need exactly one '{{}}' each, got {bad}")
        if "{}" not in self.templates:
            self.templates.insert(0, "{}")
        for key in ("plain_prob", "canonical_prob"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ValueError(f"wordings.{key} must be in [0, 1], got {getattr(self, key)}")
        if self.negatives_per_step < 0:
            raise ValueError(f"wordings.negatives_per_step must be >= 0, got {self.negatives_per_step}")
        if isinstance(self.heldout, str):
            self.heldout = [self.heldout]


def read_word_list(path: str | Path) -> list[str]:
    """One word or phrase per line; blank lines and ``#`` comments skipped; order kept, duplicates dropped."""
    words = [ln.strip() for ln in Path(path).read_text().splitlines()]
    return list(dict.fromkeys(w for w in words if w and not w.startswith("#")))


def load_class_wordings(source: str | Path | dict[str, list[str]] | None, names: Sequence[str]) -> list[list[str]]:
    """Per class (in ``names`` order) its wordings, the class name first; unknown keys are a ``ValueError``."""
    if source is None:
        mapping: dict[str, list[str]] = {}
    elif isinstance(source, dict):
        mapping = source
    else:
        import yaml

        mapping = yaml.safe_load(Path(source).read_text()) or {}
    unknown = sorted(set(mapping) - set(names))
    if unknown:
        raise ValueError(f"wordings for unknown classes {unknown}; the classes are {list(names)}")
    out = []
    for name in names:
        words = [str(w).strip() for w in mapping.get(name, []) if str(w).strip()]
        out.append(list(dict.fromkeys([name, *words])))
    return out


class WordingBank:
    """All prompts of a data set's classes and negatives, encoded once, sampled per step.

    Args:
        class_wordings: per class, its wordings (the first is the data set's name).
        templates: prompt templates, ``"{}"`` among them.
        encode: frozen text encoder, ``list[str] -> (S, C)`` L2-normalised; called only here.
        negatives: candidate negative nouns (filtered, see ``max_similarity``).
        protected: wordings that must never be negatives (e.g. held-out evaluation wordings).
        plain_prob, canonical_prob, negatives_per_step, max_similarity: see :class:`WordingConfig`.
    """

    def __init__(self, class_wordings: Sequence[Sequence[str]], templates: Sequence[str], encode: Encoder,
                 negatives: Sequence[str] = (), protected: Sequence[str] = (), plain_prob: float = 0.5,
                 canonical_prob: float = 0.25, negatives_per_step: int = 0, max_similarity: float = 0.6) -> None:
        self.class_wordings = [list(w) for w in class_wordings]
        self.templates = list(templates)
        if "{}" not in self.templates:
            self.templates.insert(0, "{}")
        self.plain_prob = float(plain_prob)
        self.canonical_prob = float(canonical_prob)
        self.max_similarity = float(max_similarity)

        all_wordings = [w for ws in self.class_wordings for w in ws]
        lowered = {w.lower() for w in [*all_wordings, *protected]}
        candidates = [n for n in dict.fromkeys(negatives) if n.lower() not in lowered]
        plain = list(dict.fromkeys([*all_wordings, *protected, *candidates]))
        prompts = list(plain)
        for t in self.templates:
            if t != "{}":
                prompts += [t.format(w) for w in [*all_wordings, *candidates]]
        self.prompts = list(dict.fromkeys(prompts))
        with torch.no_grad():
            self.features = _encode_in_chunks(encode, self.prompts)  # (S, C): the one encoding pass
        self._index = {p: i for i, p in enumerate(self.prompts)}

        # A negative too close to any class or protected wording is a synonym: drop it.
        anchors = self.features[[self._index[w] for w in dict.fromkeys([*all_wordings, *protected])]]
        if candidates:
            sims = self.features[[self._index[n] for n in candidates]] @ anchors.T
            self.negative_similarity = sims.max(1).values
            keep = self.negative_similarity < self.max_similarity
            self.negatives = [n for n, k in zip(candidates, keep.tolist()) if k]
            self.dropped_negatives = [n for n, k in zip(candidates, keep.tolist()) if not k]
        else:
            self.negatives, self.dropped_negatives = [], []
            self.negative_similarity = torch.zeros(0)
        self.negatives_per_step = min(int(negatives_per_step), len(self.negatives))
        # Lookup tables (class or negative, wording, template) -> row of `features`.
        self._class_rows = [np.array([[self._index[t.format(w)] for t in self.templates] for w in ws])
                            for ws in self.class_wordings]
        self._negative_rows = np.array([[self._index[t.format(n)] for t in self.templates]
                                        for n in self.negatives]).reshape(len(self.negatives), len(self.templates))
        self._plain = self.templates.index("{}")

    @property
    def num_classes(self) -> int:
        return len(self.class_wordings)

    def _template(self, rng: np.random.Generator) -> int:
        if len(self.templates) == 1 or rng.random() < self.plain_prob:
            return self._plain
        others = [i for i in range(len(self.templates)) if i != self._plain]
        return int(others[rng.integers(len(others))])

    def sample_rows(self, rng: np.random.Generator) -> np.ndarray:
        """Rows of :attr:`features` for one step: ``num_classes`` class prompts (class order), then
        ``negatives_per_step`` distinct negatives. Deterministic in the generator's state."""
        rows = []
        for table in self._class_rows:
            w = 0 if rng.random() < self.canonical_prob else int(rng.integers(len(table)))
            rows.append(table[w, self._template(rng)])
        if self.negatives_per_step:
            picks = rng.choice(len(self.negatives), self.negatives_per_step, replace=False)
            rows += [self._negative_rows[n, self._template(rng)] for n in picks]
        return np.asarray(rows, np.int64)

    def sample(self, rng: np.random.Generator) -> tuple[torch.Tensor, list[str]]:
        """One step's label embeddings ``(num_classes + negatives_per_step, C)`` and their prompts.
        Class ``i``'s pixels (mask value ``i``) score against row ``i``; the rest have no pixels."""
        rows = self.sample_rows(rng)
        return self.features[torch.from_numpy(rows)], [self.prompts[r] for r in rows]

    def to(self, device: torch.device | str) -> "WordingBank":
        self.features = self.features.to(device)
        return self


def _encode_in_chunks(encode: Encoder, texts: list[str], chunk: int = 256) -> torch.Tensor:
    parts = [encode(texts[i : i + chunk]).float() for i in range(0, len(texts), chunk)]
    return torch.cat(parts).detach()


def build_wording_bank(cfg: WordingConfig, names: Sequence[str], encode: Encoder) -> WordingBank:
    """A :class:`WordingBank` from a config (files already resolved to absolute paths)."""
    class_wordings = load_class_wordings(cfg.wordings, names)
    heldout = [w for path in cfg.heldout for w in read_word_list(path)]
    trained = {w.lower() for ws in class_wordings for w in ws}
    leaked = sorted(w for w in heldout if w.lower() in trained)
    if leaked:
        raise ValueError(f"wordings.heldout {leaked} are also training wordings; remove them from one of the two")
    negatives = read_word_list(cfg.negatives) if isinstance(cfg.negatives, (str, Path)) else list(cfg.negatives or [])
    return WordingBank(class_wordings, cfg.templates, encode, negatives=negatives, protected=heldout,
                       plain_prob=cfg.plain_prob, canonical_prob=cfg.canonical_prob,
                       negatives_per_step=cfg.negatives_per_step, max_similarity=cfg.max_similarity)
