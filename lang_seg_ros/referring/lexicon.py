"""What a word means, from WordNet's noun hierarchy: "hatchback" is a kind of car, "passer-by" a
person, "moped" a motorbike. A referring phrase whose words no wording list names is read as the
label its head noun falls under ("the hatchback on the right" -> car).

WordNet 3.0's database files (Debian/Ubuntu: `apt-get install -y --no-install-recommends
wordnet-base`, installed under /usr/share/wordnet; or NLTK's `wordnet` corpus folder) are read
directly: `index.noun` (lemma -> synsets, most frequent sense first), `data.noun` (each synset's
lemmas and hypernym pointers, at the byte offset the index gives) and `noun.exc` (irregular
plurals). No NLTK needed. Without the files `find_wordnet()` is None and `LabelLexicon` answers
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
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Mapping, Sequence

__all__ = ["CAMVID_ANCHORS", "LabelLexicon", "Reading", "WordNet", "camvid_lexicon", "find_wordnet", "head_words"]

_LOG = logging.getLogger(__name__)

#: Where WordNet's database may be: $WNSEARCHDIR, Debian's wordnet-base, NLTK's corpus folders.
_SEARCH = ("/usr/share/wordnet", "/usr/local/share/wordnet", "/usr/share/nltk_data/corpora/wordnet",
           "/usr/local/share/nltk_data/corpora/wordnet", "~/nltk_data/corpora/wordnet")
#: The synset every concrete sense falls under (WordNet 3.0: physical_entity.n.01).
_CONCRETE = ("physical_entity", 1)

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

#: Words that join a head noun to what follows it ("person *on* a bicycle", "man *with* a dog").
_POST = {"on", "in", "at", "with", "of", "by", "from", "near", "beside", "behind", "under", "over", "riding",
         "wearing", "carrying", "pushing", "holding", "walking", "crossing", "standing", "sitting", "who", "that",
         "which", "is", "are", "in front of", "next", "to", "into", "onto", "along", "across", "astride", "atop"}
_ARTICLES = {"the", "a", "an", "this", "that", "his", "her", "their", "its", "some", "one", "two"}


def find_wordnet(paths: Iterable[str] | None = None) -> Path | None:
    """The folder holding WordNet's `index.noun` and `data.noun` among `paths` (default:
    $WNSEARCHDIR, then the usual install places), or None."""
    if paths is not None:
        candidates = list(paths)
    else:
        candidates = ([os.environ["WNSEARCHDIR"]] if os.environ.get("WNSEARCHDIR") else []) + list(_SEARCH)
    for candidate in candidates:
        folder = Path(candidate).expanduser()
        if (folder / "index.noun").is_file() and (folder / "data.noun").is_file():
            return folder
    return None


class WordNet:
    """WordNet's noun database, read lazily: the index once (about 0.3 s), synsets on demand."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self._index: dict[str, tuple[int, ...]] = {}
        self._tagged: dict[str, int] = {}  # how many leading senses are ordered by corpus frequency
        with open(self.folder / "index.noun", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(" "):
                    continue  # the licence header
                parts = line.split()
                # lemma pos synset_cnt p_cnt [ptr_symbol]*p_cnt sense_cnt tagsense_cnt synset_offset*
                synsets = int(parts[2])
                self._index[parts[0]] = tuple(int(o) for o in parts[-synsets:])
                self._tagged[parts[0]] = int(parts[-synsets - 1])
        self._exceptions: dict[str, str] = {}
        exc = self.folder / "noun.exc"
        if exc.is_file():
            for line in exc.read_text(encoding="utf-8", errors="replace").splitlines():
                parts = line.split()
                if len(parts) >= 2:
                    self._exceptions.setdefault(parts[0], parts[1])
        self._data = open(self.folder / "data.noun", "rb")  # noqa: SIM115 - kept open, read by offset
        self._synsets: dict[int, tuple[tuple[str, ...], tuple[int, ...]]] = {}
        self._other: set[str] | None = None  # adjective, verb and adverb lemmas, read when first needed

    def lemmas(self, word: str) -> list[str]:
        """The index forms of `word`: itself, its irregular singular, regular singulars (morphy)."""
        word = word.lower().strip().replace(" ", "_")
        forms = [self._exceptions[word], word] if word in self._exceptions else [word]  # "men": man first
        for suffix, ending in (("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"),
                               ("men", "man"), ("ies", "y"), ("s", "")):
            if word.endswith(suffix) and len(word) > len(suffix):
                forms.append(word[: -len(suffix)] + ending)
        return [f for f in dict.fromkeys(forms) if f in self._index]

    def knows(self, word: str) -> bool:
        """Whether `word` is in WordNet as any part of speech (a noun, or an adjective, verb or
        adverb, inflected forms included: "parked", "jogging")."""
        word = word.lower()
        if self.lemmas(word):
            return True
        if self._other is None:
            self._other = set()
            for pos in ("adj", "verb", "adv"):
                path = self.folder / f"index.{pos}"
                if path.is_file():
                    with open(path, encoding="utf-8", errors="replace") as f:
                        self._other.update(line.split(" ", 1)[0] for line in f if not line.startswith(" "))
        forms = {word}
        for suffix in ("ing", "ed", "es", "s", "ly"):
            if word.endswith(suffix) and len(word) > len(suffix) + 1:
                stem = word[: -len(suffix)]
                forms |= {stem, stem + "e"} | ({stem[:-1]} if len(stem) > 2 and stem[-1] == stem[-2] else set())
        return bool(forms & self._other)

    def senses(self, word: str) -> tuple[int, ...]:
        """Synset offsets of `word`'s noun senses, most frequent first ((): not a noun WordNet knows)."""
        forms = self.lemmas(word)
        return self._index[forms[0]] if forms else ()

    def tagged(self, word: str) -> int:
        """How many of `word`'s first senses were seen in WordNet's sense-tagged corpus (those are
        ordered by frequency; the rest, and all senses of a word with 0, in no reliable order)."""
        forms = self.lemmas(word)
        return self._tagged.get(forms[0], 0) if forms else 0

    def synset(self, lemma: str, sense: int) -> int:
        """The offset of NLTK's "<lemma>.n.<sense>" (KeyError when there is none)."""
        senses = self._index[lemma]
        if not 1 <= sense <= len(senses):
            raise KeyError(f"{lemma}.n.{sense:02d}")
        return senses[sense - 1]

    def _read(self, offset: int) -> tuple[tuple[str, ...], tuple[int, ...]]:
        if offset not in self._synsets:
            self._data.seek(offset)
            parts = self._data.readline().decode("utf-8", "replace").split("|")[0].split()
            count = int(parts[3], 16)
            words = tuple(parts[4 + 2 * i] for i in range(count))
            at = 4 + 2 * count
            pointers = int(parts[at])
            hypernyms = tuple(int(parts[at + 2 + 4 * i]) for i in range(pointers)
                              if parts[at + 1 + 4 * i] in ("@", "@i"))
            self._synsets[offset] = (words, hypernyms)
        return self._synsets[offset]

    def words(self, offset: int) -> tuple[str, ...]:
        return self._read(offset)[0]

    def hypernyms(self, offset: int) -> tuple[int, ...]:
        return self._read(offset)[1]

    def ancestors(self, offset: int) -> dict[int, int]:
        """Every hypernym of the synset (itself included) -> its distance in hypernym steps."""
        depth, frontier, step = {offset: 0}, [offset], 0
        while frontier:
            step += 1
            nxt = []
            for node in frontier:
                for parent in self.hypernyms(node):
                    if parent not in depth:
                        depth[parent] = step
                        nxt.append(parent)
            frontier = nxt
        return depth


@lru_cache(maxsize=4)
def _wordnet(folder: str) -> WordNet:
    return WordNet(folder)


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


def _spellings(word: str) -> list[str]:
    """A word and its hyphen variants as WordNet may spell them ("grown-up": grownup; "e-bike":
    its last part, bike)."""
    if "-" not in word:
        return [word]
    return list(dict.fromkeys([word, word.replace("-", ""), word.replace("-", "_"), word.split("-")[-1]]))


def head_words(phrase: str) -> tuple[list[str], list[str]]:
    """(the words of the head noun group, the words after it): "red hatchback on the right" ->
    (["red", "hatchback"], ["on", "the", "right"]); "person walking" -> (["person"], ["walking"])."""
    words = [w for w in re.split(r"[^a-z0-9'\-]+", phrase.lower()) if w]
    while words and words[0] in _ARTICLES:
        words = words[1:]
    for i, word in enumerate(words):
        if i > 0 and word in _POST:
            return words[:i], words[i:]
    return words, []


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
        self.wordnet = _wordnet(str(folder)) if folder is not None else None
        self.riders = {k: dict(v) for k, v in (riders or {}).items()}
        self._anchors: dict[int, str] = {}
        self._concrete: int | None = None
        if self.wordnet is not None:
            for label, synsets in anchors.items():
                for lemma, sense in synsets:
                    try:
                        self._anchors.setdefault(self.wordnet.synset(lemma, sense), label)
                    except KeyError:
                        _LOG.warning("WordNet has no %s.n.%02d (anchor of %r)", lemma, sense, label)
            self._concrete = self.wordnet.synset(*_CONCRETE)
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
        forms = _spellings(word)
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
            if not any(self.wordnet.knows(form) for form in _spellings(word)):
                return Reading(None, word, False, f"{word!r} not in WordNet")
        if reading is None:
            return Reading(None, group[-1] if group else phrase, False, "no concrete noun")
        if reading.label in self.riders:  # "bike rider", "person on a bicycle", "man riding a motorbike"
            words = group + rest
            for word in words[:]:
                if word == reading.word or word.replace("_", " ") == reading.word.replace("_", " "):
                    continue
                for vehicle, rider in self.riders[reading.label].items():
                    other = self.word_label(word, wanted=vehicle)
                    if other.label == vehicle:
                        return Reading(rider, reading.word, True, f"{reading.why}, with a {other.word!r}",
                                       reading.alternatives)
        return reading


@lru_cache(maxsize=1)
def camvid_lexicon() -> LabelLexicon:
    """The lexicon of the CamVid labels (the embedded default model's vocabulary)."""
    lexicon = LabelLexicon(CAMVID_ANCHORS, CAMVID_RIDERS)
    if not lexicon.available:
        _LOG.info("WordNet not found (apt-get install wordnet-base): referring phrases are read by text "
                  "embeddings only")
    return lexicon
