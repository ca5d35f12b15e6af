"""What a referring phrase means in a closed vocabulary: "the hatchback" is a car, "the passer-by" a
pedestrian, "the bike rider" a bicyclist, "the giraffe" nothing the model knows.

A model trained on a few names knows them, not the words people use: against the CamVid names,
"hatchback" loses every pixel to "car" and "the hatchback on the right" is "not found" although
it is in view. `PhraseReader` reads a phrase as one of the context labels, in this order:

1. the phrase is a context label;
2. the phrase is one of the wordings the model was trained with for a label
   (`wordings.CAMVID_KNOWN`: "person" -> pedestrian);
3. WordNet (`lexicon`): the label its head noun falls under ("hatchback" is a kind of car;
   "bike rider", "person on a bicycle": a person with a bicycle is a bicyclist). When WordNet
   knows the head as a concrete noun under no label ("giraffe", "sofa"), that is final: the
   phrase stays itself and an absent category stays "not found";
4. only when WordNet cannot tell (not installed, or a word it lacks: "biker"): text embeddings
   (a prompt ensemble, `PROMPTS`): the phrase's nearest neighbour among the trained wordings and
   the model's training negatives (dog, sofa, ...); a label when that neighbour is a wording with
   cosine >= `PhraseRule.min_similarity` and at least `margin` above the nearest negative.

The rule's numbers were chosen on development wordings (`wordings.CAMVID_DEV`, kept apart from
every list the rule uses and from the benchmark's worded list): `choose_phrase_rule`,
`python -m lang_seg_ros.referring.aliases`.

`nearest_label` / `resolve_aliases` are the earlier rule (cosine >= 0.6 to a label name), still
used for closed vocabularies other than CamVid's (checkpoints that store their own names).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Callable, Mapping, Sequence

import numpy as np

from .parse import ReferringQuery

__all__ = ["DEFAULT_ALIAS_SIMILARITY", "PROMPTS", "PhraseReader", "PhraseRule", "camvid_reader",
           "choose_phrase_rule", "nearest_label", "resolve_aliases"]

#: Default minimum cosine similarity between a phrase and a label for the phrase to mean the label.
DEFAULT_ALIAS_SIMILARITY = 0.6

#: texts -> (N, C) embeddings (any array-like; normalised here).
Encode = Callable[[list[str]], object]

#: Prompt ensemble of the embedding rule: each text is embedded in these and the mean kept.
PROMPTS = ("{}", "a photo of a {}.", "a {} in the street.", "there is a {} in the scene.")


def _normalised(vectors: object) -> np.ndarray:
    array = vectors.detach().float().cpu().numpy() if hasattr(vectors, "detach") else np.asarray(vectors, np.float32)
    return array / np.maximum(np.linalg.norm(array, axis=1, keepdims=True), 1e-12)


def nearest_label(phrase: str, labels: Sequence[str], encode: Encode,
                  min_similarity: float = DEFAULT_ALIAS_SIMILARITY) -> tuple[str, float] | None:
    """The label of `labels` whose embedding is closest to `phrase`'s, with the cosine, when at
    least `min_similarity`; None otherwise, and when `phrase` already is one of the labels."""
    if not labels or phrase.lower() in (label.lower() for label in labels):
        return None
    vectors = _normalised(encode([phrase, *labels]))
    similarity = vectors[1:] @ vectors[0]
    best = int(np.argmax(similarity))
    return (labels[best], float(similarity[best])) if similarity[best] >= min_similarity else None


def resolve_aliases(query: ReferringQuery, labels: Sequence[str], encode: Encode,
                    min_similarity: float = DEFAULT_ALIAS_SIMILARITY) -> tuple[ReferringQuery, str]:
    """`query` with its category (and related category) replaced by near-synonym labels, and a
    note saying which ("'person' read as 'pedestrian'"; "" when nothing changed)."""
    notes, changes = [], {}
    category = nearest_label(query.category, labels, encode, min_similarity)
    if category is not None:
        changes["category"] = category[0]
        notes.append(f"{query.category!r} read as {category[0]!r}")
    if query.relation is not None:
        other = nearest_label(query.relation[1], labels, encode, min_similarity)
        if other is not None:
            changes["relation"] = (query.relation[0], other[0])
            notes.append(f"{query.relation[1]!r} read as {other[0]!r}")
    return (replace(query, **changes) if changes else query), "; ".join(notes)


@dataclass(frozen=True)
class PhraseRule:
    """The embedding rule's numbers (step 4). Chosen on `wordings.CAMVID_DEV` with the default
    model's text encoder, WordNet off (every dev phrase goes through the rule): the most dev
    wordings read right with no dev absent category read as a label (`choose_phrase_rule`)."""

    min_similarity: float = 0.45
    margin: float = 0.02
    prompts: tuple[str, ...] = PROMPTS


class PhraseReader:
    """Phrase -> one of a closed vocabulary's labels, or None (see the module docstring).

    Args:
        encode: the model's text encoder (texts -> (N, C)); embeddings are cached by it.
        known: label -> the wordings the model was trained with for it.
        lexicon: a `lexicon.LabelLexicon` (None or one without WordNet: steps 1, 2 and 4 only).
        negatives: nouns that are no label (the model's training negatives).
        rule: the embedding rule's numbers; `use_embeddings=False` turns step 4 off.
    """

    def __init__(self, encode: Encode, known: Mapping[str, Sequence[str]], lexicon=None,
                 negatives: Sequence[str] = (), rule: PhraseRule = PhraseRule(), use_embeddings: bool = True) -> None:
        self.encode = encode
        self.known = {label: tuple(words) for label, words in known.items()}
        self._wording_label = {}
        for label, words in self.known.items():
            for word in (label, *words):
                self._wording_label.setdefault(word.lower(), label)
        self.lexicon = lexicon
        self.negatives = tuple(n for n in dict.fromkeys(negatives) if n.lower() not in self._wording_label)
        self.rule = rule
        self.use_embeddings = use_embeddings
        self._bank: tuple[np.ndarray, list[str | None]] | None = None

    # -- the embedding rule ---------------------------------------------------------------
    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        total = 0.0
        for prompt in self.rule.prompts:
            total = total + _normalised(self.encode([prompt.format(t) for t in texts]))
        return _normalised(total)

    def _exemplars(self) -> tuple[np.ndarray, list[str | None]]:
        if self._bank is None:
            texts = list(self._wording_label) + [n.lower() for n in self.negatives]
            owners = list(self._wording_label.values()) + [None] * len(self.negatives)
            self._bank = (self._embed(texts), owners)
        return self._bank

    def similarities(self, phrase: str) -> tuple[str | None, float, float]:
        """(label of the nearest trained wording, its cosine, the nearest negative's cosine)."""
        bank, owners = self._exemplars()
        sims = bank @ self._embed([phrase])[0]
        is_label = np.array([o is not None for o in owners])
        best = int(np.argmax(np.where(is_label, sims, -np.inf)))
        negative = float(sims[~is_label].max()) if (~is_label).any() else -1.0
        return owners[best], float(sims[best]), negative

    def embedding_label(self, phrase: str, rule: PhraseRule | None = None) -> tuple[str | None, str]:
        rule = rule or self.rule
        label, similarity, negative = self.similarities(phrase)
        if similarity >= rule.min_similarity and similarity >= negative + rule.margin:
            return label, f"nearest trained wording is one of {label!r}'s (cosine {similarity:.2f})"
        return None, f"no wording close enough (cosine {similarity:.2f}, nearest negative {negative:.2f})"

    # -- the reading ----------------------------------------------------------------------
    def label_of(self, phrase: str) -> tuple[str | None, str]:
        """(label of the whole vocabulary the phrase means or None, how it was decided)."""
        from .lexicon import head_words

        text = " ".join(phrase.lower().split())
        if text in self._wording_label:
            label = self._wording_label[text]
            return label, ("a label" if text == label.lower() else f"a trained wording of {label!r}")
        group, rest = head_words(text)
        for start in range(1, len(group)):  # "parked vehicle", "white van": a trained head noun
            head = " ".join(group[start:])
            if head in self._wording_label:
                label = self._wording_label[head]
                rider = self._rider(label, group[:start] + rest)
                if rider is not None:
                    return rider[0], f"{head!r} is a trained wording of {label!r}, with a {rider[1]!r}"
                return label, f"{head!r} is a trained wording of {label!r}"
        if self.lexicon is not None and getattr(self.lexicon, "available", False):
            reading = self.lexicon.read(text)
            if reading.known and reading.alternatives and self.use_embeddings:
                # Senses in no known order disagree ("ostrich": a bird or a person): the embedding
                # rule picks among them; nothing it is sure of -> no label if that is one of them.
                label, how = self.embedding_label(text)
                if label not in reading.alternatives:
                    label = None if None in reading.alternatives else reading.label
                options = ", ".join(str(a) for a in reading.alternatives)
                return label, f"WordNet: {reading.word!r} is one of {options}; embeddings: {how}"
            if reading.known:
                return reading.label, f"WordNet: {reading.why}"
        if self.use_embeddings:
            return self.embedding_label(text)
        return None, "unknown word"

    def _rider(self, label: str, words: Sequence[str]) -> tuple[str, str] | None:
        """(rider label, vehicle word) when `label` is a person's and a word names a vehicle one
        rides ("man on a bike"), by the trained wordings or WordNet; else None."""
        riders = getattr(self.lexicon, "riders", None) or {}
        for vehicle, rider in riders.get(label, {}).items():
            for word in words:
                if self._wording_label.get(word) == vehicle:
                    return rider, word
                if getattr(self.lexicon, "available", False) and self.lexicon.vehicle_word(word, vehicle):
                    return rider, word
        return None

    def read(self, phrase: str, labels: Sequence[str]) -> tuple[str | None, str]:
        """The context label (one of `labels`) `phrase` means, or None, and how."""
        lowered = {label.lower(): label for label in labels}
        if phrase.lower() in lowered:
            return lowered[phrase.lower()], "a label"
        label, how = self.label_of(phrase)
        if label is None or label.lower() not in lowered:
            return None, how
        return lowered[label.lower()], how

    def resolve(self, query: ReferringQuery, labels: Sequence[str]) -> tuple[ReferringQuery, str]:
        """`query` with its category (and related category) read as context labels, and a note
        ("'hatchback' read as 'car' (WordNet: ...)"; "" when nothing changed). "the person on a
        bicycle" (parsed as a person above a bicycle) is read whole: a bicyclist; "on foot" (a
        body part) is no relation: "the woman on foot" is a woman."""
        notes, changes = [], {}
        category = query.category
        riders = getattr(self.lexicon, "riders", {}) or {}
        alone = self.read(query.category, labels)[0] if query.relation is not None and query.relation[0] == "above" \
            else None  # the category's label by itself, for the two "on ..." readings below
        if alone in riders and self.lexicon.is_body_part(query.relation[1]):
            # "the woman on foot": how a person goes, not what she is above ("the car on the
            # shoulder", "the man on the back of the truck" keep their relation)
            notes.append(f"'on {query.relation[1]}' describes the {category!r}, not a place")
            query = replace(query, relation=None)
            changes["relation"] = None
        if query.relation is not None and query.relation[0] == "above":
            whole = f"{query.category} on a {query.relation[1]}"
            rider, how = self.read(whole, labels)
            if rider is not None and alone is not None and rider != alone and rider in riders.get(alone, {}).values():
                changes.update(category=rider, relation=None)
                notes.append(f"{whole!r} read as {rider!r} ({how})")
                category = None
        if category is not None:
            label, how = self.read(category, labels)
            if label is not None and label.lower() != category.lower():
                changes["category"] = label
                notes.append(f"{category!r} read as {label!r} ({how})")
            if query.relation is not None:
                other, how = self.read(query.relation[1], labels)
                if other is not None and other.lower() != query.relation[1].lower():
                    changes["relation"] = (query.relation[0], other)
                    notes.append(f"{query.relation[1]!r} read as {other!r} ({how})")
        return (replace(query, **changes) if changes else query), "; ".join(notes)


_READERS: dict[int, tuple[object, PhraseReader]] = {}


def camvid_reader(encode: Encode) -> PhraseReader:
    """The reader of the CamVid vocabulary (the embedded default model), one per text encoder."""
    from .lexicon import camvid_lexicon
    from .wordings import CAMVID_KNOWN, CAMVID_NEGATIVES

    key = id(encode)
    if key not in _READERS or _READERS[key][0] is not encode:
        _READERS[key] = (encode, PhraseReader(encode, CAMVID_KNOWN, camvid_lexicon(), CAMVID_NEGATIVES))
    return _READERS[key][1]


def choose_phrase_rule(reader: PhraseReader, wordings: Mapping[str, Sequence[str]], absent: Sequence[str],
                       similarities: Sequence[float] = tuple(np.round(np.arange(0.35, 0.751, 0.05), 2)),
                       margins: Sequence[float] = (0.0, 0.02, 0.05, 0.1)) -> dict:
    """Grid of the embedding rule on development wordings (every phrase through the rule, as
    without WordNet) and the chosen numbers: no absent category read as a label, then the most
    wordings read right, then the fewest read wrong, then the highest (similarity, margin)."""
    cases = [(label, w) for label, words in wordings.items() for w in words] + [(None, w) for w in absent]
    scored = [(truth, *reader.similarities(w)) for truth, w in cases]
    grid = []
    for similarity in similarities:
        for margin in margins:
            right = wrong = mapped_absent = 0
            for truth, label, sim, negative in scored:
                if not (sim >= similarity and sim >= negative + margin):
                    continue
                if truth is None:
                    mapped_absent += 1
                elif label == truth:
                    right += 1
                else:
                    wrong += 1
            grid.append({"min_similarity": float(similarity), "margin": float(margin), "right": right,
                         "wrong": wrong, "absent_read_as_label": mapped_absent})
    positives = len(cases) - len(absent)
    best = max(grid, key=lambda g: (g["absent_read_as_label"] == 0, g["right"], -g["wrong"], g["min_similarity"],
                                    g["margin"]))
    return {"wordings": positives, "absent": len(absent), "grid": grid, "chosen": best}


def evaluate_reader(reader: PhraseReader, wordings: Mapping[str, Sequence[str]], absent: Sequence[str],
                    labels: Sequence[str]) -> dict:
    """How `reader` reads each phrase: right / wrong / no label per labelled wording, and absent
    categories read as a label (which must be none)."""
    rows, right, wrong, missed, mapped = [], 0, 0, 0, 0
    for truth, words in list(wordings.items()) + [(None, absent)]:
        for word in words:
            label, how = reader.read(word, labels)
            rows.append({"phrase": word, "truth": truth, "read": label, "how": how})
            if truth is None:
                mapped += label is not None
            elif label == truth:
                right += 1
            elif label is None:
                missed += 1
            else:
                wrong += 1
    return {"right": right, "wrong": wrong, "no_label": missed, "absent": len(absent),
            "absent_read_as_label": mapped, "rows": rows}


def main(argv: Sequence[str] | None = None) -> int:
    """Choose the embedding rule on the development wordings and show how the default model's
    reader reads them (with and without WordNet)."""
    import argparse
    import json

    from ..inference import Segmenter
    from .lexicon import camvid_lexicon
    from .vocabulary import load_vocabulary
    from .wordings import CAMVID_DEV, CAMVID_DEV_ABSENT, CAMVID_KNOWN, CAMVID_NEGATIVES

    parser = argparse.ArgumentParser(prog="python -m lang_seg_ros.referring.aliases", description=main.__doc__)
    parser.add_argument("--json", help="write the grid and every reading")
    args = parser.parse_args(argv)
    encode = Segmenter(device="cpu").text_cache
    labels = load_vocabulary("camvid")
    plain = PhraseReader(encode, CAMVID_KNOWN, None, CAMVID_NEGATIVES)
    chosen = choose_phrase_rule(plain, CAMVID_DEV, CAMVID_DEV_ABSENT)
    rule = PhraseRule(chosen["chosen"]["min_similarity"], chosen["chosen"]["margin"])
    print(f"embedding rule on {chosen['wordings']} dev wordings + {chosen['absent']} dev absent categories:")
    for g in chosen["grid"]:
        print(f"  cos >= {g['min_similarity']:.2f}, margin {g['margin']:.2f}: right {g['right']:3d}  wrong "
              f"{g['wrong']:3d}  absent read as a label {g['absent_read_as_label']}")
    print(f"chosen: min_similarity {rule.min_similarity}, margin {rule.margin} (shipped: {PhraseRule()})")
    report = {"grid": chosen}
    for name, lexicon in (("embeddings only", None), ("WordNet + embeddings", camvid_lexicon())):
        reader = PhraseReader(encode, CAMVID_KNOWN, lexicon, CAMVID_NEGATIVES, rule)
        result = evaluate_reader(reader, CAMVID_DEV, CAMVID_DEV_ABSENT, labels)
        report[name] = result
        print(f"{name}: right {result['right']}, wrong {result['wrong']}, no label {result['no_label']}; "
              f"absent read as a label {result['absent_read_as_label']}/{result['absent']}")
        for row in result["rows"]:
            if row["read"] != row["truth"]:
                print(f"    {row['phrase']!r}: {row['truth']} -> {row['read']} ({row['how']})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    raise SystemExit(main())
