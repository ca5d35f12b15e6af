"""Labels a model never trained on, read through the wordings it did train on.

A model trained from a wording list (the default street model: ~150 wordings of 11 classes)
knows "roadway", "pedestrian" and "car" but not "carriageway", "passer-by" or "hatchback", and
the frozen text encoder places such words wherever its own training put them: MiniLM sets
"carriageway" beside "footway", so a label set with both "carriageway" and "footpath" gave the
road to "footpath". WordNet knows better: a carriageway is a kind of roadway, a passer-by a
pedestrian, a hatchback a car.

So a label outside the model's trained vocabulary (`TextEncoderConfig.vocabulary`, written by
the trainer) is *grounded*: the trained wordings among its first WordNet sense's synonyms, else
its hypernyms, else its hypernyms' hypernyms (nearest level only), and for a phrase WordNet
lacks ("bike rider"), its head noun itself when trained, else that noun's synonyms and
hypernyms. Its embedding is then the mean of its own and the mean of theirs, L2-normalised:
the label keeps its own meaning and moves towards what the image branch learnt for its kind.
Labels the model trained on, labels WordNet cannot place and models without a vocabulary (the
official CLIP checkpoints) are encoded as they are. This runs when a label set is prepared, never
per frame. Measured on CamVid val (`lang_seg_ros/weights/MODEL_CARD.md`): the held-out wordings
47.0 -> 67 mIoU, the training names unchanged.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F

from ..wordnet import WordNet, find_wordnet, head_words, open_wordnet, spellings

__all__ = ["Grounding", "LabelGrounding", "encode_labels", "grounded", "grounding_for"]

_LOG = logging.getLogger(__name__)

#: Hypernym steps searched above a label's sense (carriageway -> roadway is 1; further up, the
#: shared ancestors are too general to say which class a word means).
MAX_STEPS = 2


@dataclass(frozen=True)
class Grounding:
    """How one label is read. `wordings`: the trained wordings its embedding is averaged with
    (empty: encoded as it is); `how`: "trained", "synonym", "hypernym", "hypernym, 2 steps",
    "head noun", "head noun's synonym" / "head noun's hypernym", or "" (WordNet cannot place it)."""

    label: str
    wordings: tuple[str, ...] = ()
    how: str = ""

    def __str__(self) -> str:
        return f"{self.label!r} as {', '.join(repr(w) for w in self.wordings)} (WordNet: {self.how})"


class LabelGrounding:
    """Label -> the trained wordings WordNet puts it under (see the module doc).

    Args:
        vocabulary: the wordings the model was trained on, grouped by the class they name
            (case-insensitive). The groups pick each wording's WordNet sense: "pavement" beside
            "sidewalk" is the walk (sidewalk.n.01), not the paving material, so "blacktop", a
            paving material, is not read as a pavement.
        wordnet: the WordNet database, or None (then only exact trained wordings are known and
            every other label is encoded as it is).
    """

    def __init__(self, vocabulary: Iterable[Iterable[str]], wordnet: WordNet | None) -> None:
        groups = [[w.strip().lower() for w in group if w.strip()] for group in vocabulary]
        self.vocabulary = frozenset(w for group in groups for w in group)
        self.wordnet = wordnet
        self._by_synset: dict[int, set[str]] = {}  # synset offset -> the trained wordings meaning it
        self._ancestors: dict[int, set[int]] = {}
        if wordnet is not None:
            for group in groups:
                senses = {w: wordnet.senses(w) for w in group}
                lemma = {w: (wordnet.lemmas(w) or [w])[0] for w in group}  # "pavements" is "pavement"
                for wording, own in senses.items():
                    others = {s for w, ss in senses.items() if lemma[w] != lemma[wording] for s in ss}
                    for sense in [s for s in own if self._near(s, others)] or list(own[:1]):
                        self._by_synset.setdefault(sense, set()).add(wording)

    def _near(self, sense: int, others: set[int]) -> bool:
        """Whether `sense` is one of `others`, or within MAX_STEPS hypernym steps of one (either way)."""
        assert self.wordnet is not None
        if sense in others:
            return True
        return bool(self._within(sense) & others) or any(sense in self._within(o) for o in others)

    def _within(self, sense: int) -> set[int]:
        """`sense` and its hypernyms up to MAX_STEPS steps."""
        assert self.wordnet is not None
        if sense not in self._ancestors:
            self._ancestors[sense] = {s for s, d in self.wordnet.ancestors(sense).items() if d <= MAX_STEPS}
        return self._ancestors[sense]

    def _trained_in(self, synsets: Iterable[int]) -> tuple[str, ...]:
        return tuple(sorted({t for s in synsets for t in self._by_synset.get(s, ())}))

    def _walk(self, synset: int) -> tuple[tuple[str, ...], int]:
        """Trained wordings at the nearest level above `synset` (0 = its synonyms), and the level."""
        assert self.wordnet is not None
        level = [synset]
        for steps in range(MAX_STEPS + 1):
            found = self._trained_in(level)
            if found:
                return found, steps
            level = list(dict.fromkeys(p for s in level for p in self.wordnet.hypernyms(s)))
        return (), -1

    def ground(self, label: str) -> Grounding:
        key = label.strip().lower()
        if key in self.vocabulary:
            return Grounding(label, (), "trained")
        if self.wordnet is None:
            return Grounding(label)
        senses = self.wordnet.senses(key)
        if senses:
            found, steps = self._walk(senses[0])
            how = ("synonym", "hypernym", "hypernym, 2 steps")[steps] if found else ""
            return Grounding(label, found, how)
        group, _ = head_words(key)
        if len(group) < 2 and group == [key]:
            return Grounding(label)  # one word WordNet does not know
        head = group[-1] if group else ""
        for form in spellings(head):
            if form in self.vocabulary:
                return Grounding(label, (form,), "head noun")
        for form in spellings(head):
            senses = self.wordnet.senses(form)
            if senses:
                found, steps = self._walk(senses[0])
                if found and steps < 2:
                    return Grounding(label, found, ("head noun's synonym", "head noun's hypernym")[steps])
        return Grounding(label)

    def encode(self, labels: Sequence[str], encode: Callable[[list[str]], torch.Tensor]) -> torch.Tensor:
        """(N, C) L2-normalised embeddings of `labels`: `encode(labels)` with every grounded label
        averaged with the mean of its trained wordings' embeddings (equal weight)."""
        own = encode(list(labels))
        groundings = [self.ground(label) for label in labels]
        targets = list(dict.fromkeys(w for g in groundings for w in g.wordings))
        if not targets:
            return own
        rows = {w: i for i, w in enumerate(targets)}
        theirs = encode(targets).to(own)
        out = own.clone()
        for i, g in enumerate(groundings):
            if g.wordings:
                mean = F.normalize(theirs[[rows[w] for w in g.wordings]].mean(0), dim=0)
                out[i] = own[i] + mean
                _LOG.info("label %s", g)
        return F.normalize(out, dim=-1)


@lru_cache(maxsize=8)
def grounding_for(vocabulary: tuple[tuple[str, ...], ...]) -> LabelGrounding | None:
    """The grounding of a model with this trained vocabulary (None: the model has none, e.g. an
    official checkpoint). Without WordNet installed it knows only the vocabulary, and says so once."""
    if not vocabulary:
        return None
    folder = find_wordnet()
    if folder is None:
        _LOG.warning("WordNet not found (apt-get install wordnet-base): labels outside the model's %d trained "
                     "wordings are encoded as they are, which loses ~20 mIoU on unseen wordings", len(vocabulary))
    return LabelGrounding(vocabulary, open_wordnet(str(folder)) if folder is not None else None)


def encode_labels(text_encoder: torch.nn.Module, labels: Sequence[str],
                  vocabulary: Sequence[Sequence[str]]) -> torch.Tensor:
    """(N, C) L2-normalised fp32 embeddings of `labels` from `text_encoder.encode_labels`, grounded
    when the model has a trained `vocabulary` (LSeg and exported models alike call this)."""
    if not labels:
        raise ValueError("at least one label is needed")
    grounding = grounding_for(tuple(tuple(group) for group in vocabulary))
    if grounding is None:
        return text_encoder.encode_labels(list(labels))
    return grounding.encode(labels, text_encoder.encode_labels)


def grounded(vocabulary: Sequence[Sequence[str]], labels: Sequence[str]) -> list[Grounding]:
    """The labels of a set that a model with this `vocabulary` reads through trained wordings (what
    the node and the CLI log when a label set changes)."""
    grounding = grounding_for(tuple(tuple(group) for group in vocabulary)) if vocabulary else None
    if grounding is None:
        return []
    return [g for g in map(grounding.ground, labels) if g.wordings]
