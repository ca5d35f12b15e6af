"""What a word means, from WordNet's noun hierarchy: "hatchback" is a kind of car, "passer-by" a
person, "moped" a motorbike. A referring phrase whose words no wording list names is read as the
label its head noun falls under ("the hatchback on the right" -> car).

WordNet 3.0's noun database is read by `lang_seg_ros.wordnet` (Debian/Ubuntu: `apt-get install -y
--no-install-recommends wordnet-base`). Without it `find_wordnet()` is None and `LabelLexicon` answers
"unknown" for every word: referring then falls back to the text-embedding rule (`aliases`), and
says so once in the log.

A label is described by anchor synsets ("car": motor vehicles, buses, trains, ...; "pedestrian":
person; "bicyclist": bicycle, motorcycle, cyclist). A word's label is the label of the nearest
anchor among the hypernyms of its first *concrete* sense (a physical entity: "van" is a truck,
not the vanguard; "cat" is a feline, not a "cool cat"), so a word under no anchor ("dog",
"giraffe", "boat") means no label and an absent category stays "not found".
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping, Sequence

from ..wordnet import WordNet, find_wordnet, head_words, open_wordnet, spellings

__all__ = ["CAMVID_ANCHORS", "LabelLexicon", "Reading", "WordNet", "camvid_lexicon", "find_wordnet", "head_words"]

_LOG = logging.getLogger(__name__)

#: The synset every concrete sense falls under (WordNet 3.0: physical_entity.n.01).
_CONCRETE = ("physical_entity", 1)
#: Parts of a body: "on foot" says how a person goes, not what they stand on (body_part.n.01).
_BODY_PART = ("body_part", 1)

#: CamVid's 11 classes as WordNet anchors, (lemma, sense number) as in NLTK's "car.n.01". The
#: classes merge CamVid's 32 finer ones (Brostow et al. 2009): "car" holds cars, SUVs, trucks,
#: buses, trains and other moving vehicles; "bicyclist" the rider with the bicycle or motorbike.
CAMVID_ANCHORS: dict[str, tuple[tuple[str, int], ...]] = {
    "sky": (("sky", 1), ("cloud", 2)),
    "building": (("building", 1), ("wall", 1), ("bridge", 1), ("tunnel", 1), ("facade", 1), ("arch", 1),
                 ("skyscraper", 1), ("tower", 1)),
    "pole": (("pole", 1), ("post", 4), ("column", 6), ("lamppost", 1), ("streetlight", 1), ("bollard", 1)),
    "road": (("road", 1), ("street", 1), ("street", 2), ("roadway", 1), ("lane", 1), ("paved_surface", 1)),
    "pavement": (("sidewalk", 1), ("curb", 1), ("footpath", 1)),
    "tree": (("tree", 1), ("woody_plant", 1), ("shrub", 1), ("vegetation", 1), ("foliage", 2), ("hedge", 1)),
    "sign symbol": (("sign", 2), ("street_sign", 1), ("traffic_light", 1), ("signboard", 1)),
    "fence": (("fence", 1), ("railing", 1), ("barrier", 1), ("gate", 1)),
    "car": (("self-propelled_vehicle", 1), ("bus", 1), ("train", 1), ("car", 1), ("car", 2), ("trailer", 3)),
    "pedestrian": (("person", 1),),
    "bicyclist": (("bicycle", 1), ("motorcycle", 1), ("cyclist", 1), ("motorcyclist", 1), ("scooter", 2),
                  ("unicycle", 1), ("tricycle", 1)),
}
#: A person with one of these labels' vehicles ("bike rider", "person on a bicycle") is a rider.
CAMVID_RIDERS = {"pedestrian": {"bicyclist": "bicyclist"}}



@dataclass(frozen=True)
class Reading:
    """How a phrase was read: `label` (None: no label), `word` (the head noun that decided),
    `known` (WordNet knows the head as a concrete noun; False: the lexicon cannot tell) and `why`."""

    label: str | None
    word: str
    known: bool
    why: str
    #: the outcomes of the word's other concrete senses when none was seen in WordNet's tagged
    #: corpus and they disagree ("ostrich": a bird, or a person who hides from reality): then the
    #: first sense is no better than the others and the caller may break the tie.
    alternatives: tuple[str | None, ...] = ()


class LabelLexicon:
    """Phrase -> label by WordNet hypernyms of the head noun.

    Args:
        anchors: label -> (lemma, sense) anchor synsets (e.g. `CAMVID_ANCHORS`).
        riders: {person label: {vehicle label: rider label}}: "bike rider" -> bicyclist.
        wordnet: the database folder; None: `find_wordnet()`; False: none. A lexicon without one
            (or with a folder that lacks the files) knows nothing.
    """

    def __init__(self, anchors: Mapping[str, Sequence[tuple[str, int]]],
                 riders: Mapping[str, Mapping[str, str]] | None = None,
                 wordnet: str | os.PathLike | None | bool = None) -> None:
        if wordnet is False:
            folder = None
        elif wordnet is None:
            folder = find_wordnet()
        else:
            folder = find_wordnet([str(wordnet)])
        self.wordnet = open_wordnet(str(folder)) if folder is not None else None
        self.riders = {k: dict(v) for k, v in (riders or {}).items()}
        self._anchors: dict[int, str] = {}
        self._concrete: int | None = None
        self._body_part: int | None = None
        if self.wordnet is not None:
            for label, synsets in anchors.items():
                for lemma, sense in synsets:
                    try:
                        self._anchors.setdefault(self.wordnet.synset(lemma, sense), label)
                    except KeyError:
                        _LOG.warning("WordNet has no %s.n.%02d (anchor of %r)", lemma, sense, label)
            self._concrete = self.wordnet.synset(*_CONCRETE)
            try:
                self._body_part = self.wordnet.synset(*_BODY_PART)
            except KeyError:  # a database without it (a constructed one): no word is a body part
                self._body_part = None
        self.labels = tuple(anchors)

    @property
    def available(self) -> bool:
        return self.wordnet is not None

    def _sense_label(self, sense: int) -> tuple[bool, str | None, str]:
        """(concrete, label or None, the anchor's name) of one synset."""
        ancestors = self.wordnet.ancestors(sense)
        if self._concrete not in ancestors:
            return False, None, ""
        hits = [(d, self._anchors[a]) for a, d in ancestors.items() if a in self._anchors]
        if not hits:
            return True, None, ""
        distance, label = min(hits)
        anchor = next(a for a, d in ancestors.items() if d == distance and self._anchors.get(a) == label)
        return True, label, self.wordnet.words(anchor)[0].replace("_", " ")

    def word_label(self, word: str, wanted: str | None = None) -> Reading:
        """The label of one noun (hyphen spellings tried too): its first concrete sense's; with
        `wanted`, the first concrete sense with that label, if any ("on a scooter": the motor
        scooter, not the sea scooter the first sense is)."""
        if self.wordnet is None:
            return Reading(None, word, False, "no WordNet")
        forms = spellings(word)
        for form in forms:
            senses = [(sense, *self._sense_label(sense)) for sense in self.wordnet.senses(form)]
            concrete = [(label, kind) for _, is_concrete, label, kind in senses if is_concrete]
            if wanted is not None:
                concrete = [(label, kind) for label, kind in concrete if label == wanted]
            if not concrete:
                continue  # only abstract senses ("van": the vanguard) or none with the wanted label
            label, kind = concrete[0]
            outcomes = tuple(dict.fromkeys(lab for lab, _ in concrete))
            alternatives = outcomes if len(outcomes) > 1 and self.wordnet.tagged(form) == 0 else ()
            why = f"{form!r} is a kind of {kind!r}" if label else f"{form!r} is no kind of label"
            return Reading(label, form, True, why, alternatives)
        known = any(self.wordnet.senses(form) for form in forms)
        return Reading(None, word, False, f"{word!r} has no concrete sense" if known else f"{word!r} not in WordNet")

    def vehicle_word(self, word: str, vehicle: str) -> str | None:
        """`word` when it names a `vehicle`-label noun ("bike", "scooter"); for an activity, the
        first `vehicle`-label noun WordNet derives it from ("cycling" / "biking": "wheel" or
        "cyclist", "motorcycling": "motorcycle"); else None."""
        if self.wordnet is None:
            return None
        if self.word_label(word, wanted=vehicle).label == vehicle:
            return word
        for form in spellings(word):
            for noun in self.wordnet.derived_nouns(form):
                concrete, label, _ = self._sense_label(noun)
                if concrete and label == vehicle:
                    return self.wordnet.words(noun)[0].replace("_", " ")
        return None

    def is_body_part(self, phrase: str) -> bool:
        """Whether the phrase is a bare body part, its head noun first of all one ("foot",
        "feet", "knees"; not "back of the truck"): "the woman on foot" is a woman walking, not
        one above a foot."""
        if self.wordnet is None or self._body_part is None:
            return False
        group, rest = head_words(phrase)
        if rest:
            return False
        for form in spellings(group[-1]) if group else ():
            for sense in self.wordnet.senses(form):
                ancestors = self.wordnet.ancestors(sense)
                if self._concrete in ancestors:  # the first concrete sense decides
                    return self._body_part in ancestors
        return False

    def read(self, phrase: str) -> Reading:
        """The label a noun phrase means: its head noun's, a person with a vehicle as that
        vehicle's rider ("bike rider", "person on a bicycle" -> bicyclist).

        The head is the rightmost concrete noun of the group before any post-modifier (compounds
        first: "office building", "estate car"); words WordNet knows only as abstract nouns or as
        other parts of speech ("red", "parked", "jogging") are modifiers and skipped; a word it does
        not know at all ("biker") ends the search: the lexicon cannot tell (`known` False).
        """
        if self.wordnet is None:
            return Reading(None, phrase, False, "no WordNet")
        group, rest = head_words(phrase)
        reading = None
        for end in range(len(group), 0, -1):
            for start in range(end):  # the longest compound WordNet knows
                compound = "_".join(group[start:end])
                if end - start > 1 and not self.wordnet.senses(compound):
                    continue
                candidate = self.word_label(compound)
                if candidate.known:
                    reading = candidate
                    break
            if reading is not None:
                break
            word = group[end - 1]
            if not any(self.wordnet.knows(form) for form in spellings(word)):
                return Reading(None, word, False, f"{word!r} not in WordNet")
        if reading is None:
            return Reading(None, group[-1] if group else phrase, False, "no concrete noun")
        if reading.label in self.riders:  # "bike rider", "person on a bicycle", "woman cycling"
            for word in group + rest:
                if word.replace("_", " ") == reading.word.replace("_", " "):
                    continue
                for vehicle, rider in self.riders[reading.label].items():
                    other = self.vehicle_word(word, vehicle)
                    if other is not None:
                        how = f"a {other!r}" if other == word else f"{word!r} (derived from {other!r})"
                        return Reading(rider, reading.word, True, f"{reading.why}, with {how}", reading.alternatives)
        return reading


@lru_cache(maxsize=1)
def camvid_lexicon() -> LabelLexicon:
    """The lexicon of the CamVid labels (the embedded default model's vocabulary)."""
    lexicon = LabelLexicon(CAMVID_ANCHORS, CAMVID_RIDERS)
    if not lexicon.available:
        _LOG.info("WordNet not found (apt-get install wordnet-base): referring phrases are read by text "
                  "embeddings only")
    return lexicon
