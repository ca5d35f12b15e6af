"""Labels a model never trained on, read through the wordings it did train on.

A model trained from a wording list (the default street model: 127 wordings of 11 classes)
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
Labels the model trained on (its wordings, and the negatives it learnt to give no pixels),
labels WordNet cannot place and models without a vocabulary (the official CLIP checkpoints) are
encoded as they are. This runs when a label set is prepared, never
per frame. Measured on CamVid val (`lang_seg_ros/weights/MODEL_CARD.md`): the held-out wordings
47.0 -> 68.0 mIoU, the training names unchanged.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F

from ..wordnet import WordNet, find_wordnet, head_words, open_wordnet, spellings
from .config import TextEncoderConfig

__all__ = ["Grounding", "LabelGrounding", "encode_labels", "grounded", "grounding_for", "wordnet_missing"]

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
        negatives: words trained as labels with no pixels: known, so encoded as they are ("tiger",
            whose first WordNet sense is a fierce person, must not turn into a pedestrian).
    """

    def __init__(self, vocabulary: Iterable[Iterable[str]], wordnet: WordNet | None,
                 negatives: Iterable[str] = ()) -> None:
        groups = [[w.strip().lower() for w in group if w.strip()] for group in vocabulary]
        self.vocabulary = frozenset(w for group in groups for w in group)
        self.negatives = frozenset(w.strip().lower() for w in negatives) - self.vocabulary
        self.wordnet = wordnet
        self._by_synset: dict[int, set[str]] = {}  # synset offset -> the trained wordings meaning it
        self._classes: dict[str, set[int]] = {}  # trained wording -> the groups (classes) naming it
        self._ancestors: dict[int, set[int]] = {}
        for index, group in enumerate(groups):
            for wording in group:
                self._classes.setdefault(wording, set()).add(index)
            if wordnet is not None:
                self._add_senses(group)

    def _add_senses(self, group: list[str]) -> None:
        """Each wording's senses that another wording of its class backs: the same synset, or one
        within MAX_STEPS hypernym steps either way ("pavement" beside "sidewalk": sidewalk.n.01);
        a wording no other backs keeps its first sense. Linear in the group's senses."""
        assert self.wordnet is not None
        senses = {w: self.wordnet.senses(w) for w in group}
        lemma = {w: (self.wordnet.lemmas(w) or [w])[0] for w in group}  # "pavements" is "pavement"
        held: dict[int, set[str]] = {}  # synset -> the lemmas of the group with that sense
        below: dict[int, set[str]] = {}  # synset -> the lemmas with a sense at most MAX_STEPS under it
        for wording, own in senses.items():
            for sense in own:
                held.setdefault(sense, set()).add(lemma[wording])
                for above in self._within(sense):
                    below.setdefault(above, set()).add(lemma[wording])
        for wording, own in senses.items():
            me = {lemma[wording]}
            backed = [sense for sense in own
                      if below.get(sense, me) - me or any(held.get(a, me) - me for a in self._within(sense))]
            for sense in backed or list(own[:1]):
                self._by_synset.setdefault(sense, set()).add(wording)

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

    def _read_noun(self, word: str, max_steps: int = MAX_STEPS) -> tuple[tuple[str, ...], int] | None:
        """(trained wordings, steps) for a word WordNet knows as a noun, None for one it does not.
        Its first sense decides; where WordNet has no frequency order for its senses (none was
        seen in its tagged corpus) every sense may, and senses without trained wordings do not
        vote. Wordings of two classes read from them ("lane": a road, or a person) mean no reading."""
        assert self.wordnet is not None
        senses = self.wordnet.senses(word)
        if not senses:
            return None
        walks = [self._walk(s) for s in (senses if self.wordnet.tagged(word) == 0 else senses[:1])]
        walks = [(found, steps) for found, steps in walks if found and steps <= max_steps]
        classes = {c for found, _ in walks for w in found for c in self._classes[w]}
        return walks[0] if len(classes) == 1 else ((), -1)

    def ground(self, label: str) -> Grounding:
        key = label.strip().lower()
        if key in self.vocabulary:
            return Grounding(label, (), "trained")
        if key in self.negatives or self.wordnet is None:
            return Grounding(label)
        for form in spellings(key):  # "e-bike": e-bike, ebike, e_bike, then its last part, bike
            read = self._read_noun(form)
            if read is not None:
                found, steps = read
                return Grounding(label, found, ("synonym", "hypernym", "hypernym, 2 steps")[steps] if found else "")
        group, _ = head_words(key)
        if len(group) < 2 and group == [key]:
            return Grounding(label)  # one word WordNet does not know
        head = group[-1] if group else ""
        for form in spellings(head):
            if form in self.vocabulary:
                return Grounding(label, (form,), "head noun")
        for form in spellings(head):
            read = self._read_noun(form, max_steps=1)
            if read is not None:
                found, steps = read
                return Grounding(label, found, ("head noun's synonym", "head noun's hypernym")[steps] if found else "")
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
def grounding_for(vocabulary: tuple[tuple[str, ...], ...], negatives: tuple[str, ...] = ()) -> LabelGrounding | None:
    """The grounding of a model with this trained vocabulary (None: the model has none, e.g. an
    official checkpoint). Without WordNet installed it knows only the vocabulary, and says so once."""
    if not vocabulary:
        return None
    folder = find_wordnet()
    if folder is None:
        _LOG.warning("WordNet not found (apt-get install wordnet-base): labels outside the model's %d trained "
                     "wordings are encoded as they are, which loses ~20 mIoU on unseen wordings",
                     sum(map(len, vocabulary)))
    return LabelGrounding(vocabulary, open_wordnet(str(folder)) if folder is not None else None, negatives)


def _of(config: TextEncoderConfig) -> LabelGrounding | None:
    return grounding_for(tuple(map(tuple, config.vocabulary)), tuple(config.negatives))


def encode_labels(text_encoder: torch.nn.Module, labels: Sequence[str], config: TextEncoderConfig) -> torch.Tensor:
    """(N, C) L2-normalised fp32 embeddings of `labels` from `text_encoder.encode_labels`, grounded
    when the model's text-encoder `config` has a trained vocabulary (LSeg and exported models alike)."""
    if not labels:
        raise ValueError("at least one label is needed")
    grounding = _of(config)
    if grounding is None:
        return text_encoder.encode_labels(list(labels))
    return grounding.encode(labels, text_encoder.encode_labels)


def grounded(config: TextEncoderConfig, labels: Sequence[str]) -> list[Grounding]:
    """The labels of a set that a model with this text-encoder `config` reads through trained
    wordings (what the node logs when a label set changes)."""
    grounding = _of(config)
    return [g for g in map(grounding.ground, labels) if g.wordings] if grounding is not None else []


def wordnet_missing(config: TextEncoderConfig) -> bool:
    """Whether the model could ground unseen labels but WordNet is not installed (the node says so)."""
    grounding = _of(config)
    return grounding is not None and grounding.wordnet is None
