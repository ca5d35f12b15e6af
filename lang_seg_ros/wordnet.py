"""WordNet 3.0's noun database, read directly from its files (no NLTK).

Debian/Ubuntu ship it as `wordnet-base` (`apt-get install -y --no-install-recommends
wordnet-base`, under /usr/share/wordnet); NLTK's `wordnet` corpus folder holds the same files.
Read here: `index.noun` (lemma -> synsets, most frequent sense first), `data.noun` (each
synset's lemmas, hypernym and derivation pointers, at the byte offset the index gives) and
`noun.exc` (irregular plurals); for derivations ("cycling" -> to ride a bicycle -> bicycle), also
`index.verb`, `data.verb` and `verb.exc`, read when first needed. Two readers use it: referring
(`referring.lexicon`: which label a phrase's head noun falls under) and label grounding
(`model.grounding`: which trained wordings a label the model never saw falls under). Without the files `find_wordnet()` is None and both say so.
"""
from __future__ import annotations

import os
import re
import threading
from functools import lru_cache
from pathlib import Path
from typing import Iterable

__all__ = ["WordNet", "find_wordnet", "head_words", "open_wordnet", "spellings"]

#: Where WordNet's database may be: $WNSEARCHDIR, Debian's wordnet-base, NLTK's corpus folders.
_SEARCH = ("/usr/share/wordnet", "/usr/local/share/wordnet", "/usr/share/nltk_data/corpora/wordnet",
           "/usr/local/share/nltk_data/corpora/wordnet", "~/nltk_data/corpora/wordnet")


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
    """WordNet's noun database, read lazily: the index once (about 0.3 s), synsets on demand.
    Safe to share between threads (a node's worker and a library user's)."""

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
        self._lock = threading.Lock()  # one file position: a seek and its read go together
        self._synsets: dict[int, tuple[tuple[str, ...], tuple[int, ...], tuple[tuple[str, int], ...]]] = {}
        self._other: set[str] | None = None  # adjective, verb and adverb lemmas, read when first needed
        self._verbs: _VerbIndex | None = None  # read when first needed

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

    def _read(self, offset: int) -> tuple[tuple[str, ...], tuple[int, ...], tuple[tuple[str, int], ...]]:
        if offset not in self._synsets:
            with self._lock:
                self._data.seek(offset)
                line = self._data.readline()
            self._synsets[offset] = _parse_synset(line)
        return self._synsets[offset]

    def words(self, offset: int) -> tuple[str, ...]:
        return self._read(offset)[0]

    def hypernyms(self, offset: int) -> tuple[int, ...]:
        return self._read(offset)[1]

    def _verb_index(self) -> "_VerbIndex":
        with self._lock:
            if self._verbs is None:
                self._verbs = _VerbIndex(self.folder)
        return self._verbs

    def derived_nouns(self, word: str) -> tuple[int, ...]:
        """Noun synsets one verb away from `word`'s first sense by WordNet's derivation links:
        "cycling" (the noun, or the verb "cycle": to ride a bicycle) -> bicycle, cyclist, ...;
        "pedalling" -> pedal, bicycle, .... What a person who is "cycling" rides, when no noun of
        the phrase names it. Only the first sense, as elsewhere: "wheeling" (to turn) is no
        cycling, though "wheel" is also a verb for riding a bicycle. () when WordNet has no links."""
        verbs = self._verb_index()
        verb_senses: list[int] = []
        for sense in self.senses(word)[:1]:  # the noun "cycling" -> the verbs it derives from
            verb_senses += [o for pos, o in self._read(sense)[2] if pos == "v"]
        if not verb_senses:
            verb_senses = verbs.senses(word.lower())[:1]  # "biking", "pedalling": verb forms
        nouns: list[int] = []
        for sense in dict.fromkeys(verb_senses):
            nouns += [o for pos, o in verbs.derivations(sense) if pos == "n"]
        return tuple(dict.fromkeys(nouns))

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


def _parse_synset(line: bytes) -> tuple[tuple[str, ...], tuple[int, ...], tuple[tuple[str, int], ...]]:
    """(lemmas, hypernym offsets, derivation links (pos, offset)) of one data-file line:
    offset lex_filenum ss_type w_cnt [word lex_id]* p_cnt [symbol offset pos source/target]* ..."""
    parts = line.decode("utf-8", "replace").split("|")[0].split()
    count = int(parts[3], 16)
    words = tuple(parts[4 + 2 * i] for i in range(count))
    at = 4 + 2 * count
    pointers = [tuple(parts[at + 1 + 4 * i: at + 4 + 4 * i]) for i in range(int(parts[at]))]
    hypernyms = tuple(int(offset) for symbol, offset, _ in pointers if symbol in ("@", "@i"))
    derived = tuple((pos[0], int(offset)) for symbol, offset, pos in pointers if symbol == "+")
    return words, hypernyms, derived


class _VerbIndex:
    """WordNet's verbs, for derivation links only: `index.verb`, `data.verb` and `verb.exc`
    ("rode" -> ride). A folder without them knows no verb."""

    _ENDINGS = (("ies", "y"), ("es", "e"), ("es", ""), ("s", ""), ("ed", "e"), ("ed", ""), ("ing", "e"), ("ing", ""))

    def __init__(self, folder: Path) -> None:
        self._index: dict[str, tuple[int, ...]] = {}
        self._exceptions: dict[str, str] = {}
        self._data = None
        if not ((folder / "index.verb").is_file() and (folder / "data.verb").is_file()):
            return
        with open(folder / "index.verb", encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.startswith(" "):
                    parts = line.split()
                    self._index[parts[0]] = tuple(int(o) for o in parts[-int(parts[2]):])
        if (folder / "verb.exc").is_file():
            for line in (folder / "verb.exc").read_text(encoding="utf-8", errors="replace").splitlines():
                parts = line.split()
                if len(parts) >= 2:
                    self._exceptions.setdefault(parts[0], parts[1])
        self._data = open(folder / "data.verb", "rb")  # noqa: SIM115 - kept open, read by offset
        self._lock = threading.Lock()
        self._derived: dict[int, tuple[tuple[str, int], ...]] = {}

    def senses(self, word: str) -> list[int]:
        """Verb synsets of an inflected form, most frequent first: those of the first base form
        WordNet knows (the form itself, its exception, morphy's rules, a doubled final consonant:
        "pedalling" -> pedal)."""
        forms = [self._exceptions[word]] if word in self._exceptions else []
        forms.append(word)
        for suffix, ending in self._ENDINGS:
            if word.endswith(suffix) and len(word) > len(suffix) + 1:
                stem = word[: -len(suffix)]
                forms.append(stem + ending)
                if not ending and len(stem) > 2 and stem[-1] == stem[-2]:
                    forms.append(stem[:-1])
        return next((list(self._index[form]) for form in dict.fromkeys(forms) if form in self._index), [])

    def derivations(self, offset: int) -> tuple[tuple[str, int], ...]:
        if self._data is None:
            return ()
        with self._lock:
            if offset not in self._derived:
                self._data.seek(offset)
                self._derived[offset] = _parse_synset(self._data.readline())[2]
            return self._derived[offset]


@lru_cache(maxsize=4)
def open_wordnet(folder: str) -> WordNet:
    """The database in `folder`, read once per process (it is read-only)."""
    return WordNet(folder)


#: Words that join a head noun to what follows it ("person *on* a bicycle", "man *with* a dog").
_POST = {"on", "in", "at", "with", "of", "by", "from", "near", "beside", "behind", "under", "over", "riding",
         "wearing", "carrying", "pushing", "holding", "walking", "crossing", "standing", "sitting", "who", "that",
         "which", "is", "are", "in front of", "next", "to", "into", "onto", "along", "across", "astride", "atop"}
_ARTICLES = {"the", "a", "an", "this", "that", "his", "her", "their", "its", "some", "one", "two"}


def spellings(word: str) -> list[str]:
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
