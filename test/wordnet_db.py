"""A WordNet database in the real file format, built from a few synsets, for tests that must not
depend on whether wordnet-base is installed (referring's lexicon, label grounding)."""
from __future__ import annotations

from pathlib import Path

_HEADER = "  1 a constructed test database\n"
_WIDTH = 200  # offsets are byte positions: a fixed line width makes them known before writing


def _offsets(names) -> dict[str, int]:
    start = len(_HEADER.encode())
    return {name: start + i * (_WIDTH + 1) for i, name in enumerate(names)}


def _data_file(path: Path, pos: str, synsets: dict, offsets: dict, pointers: dict) -> None:
    body = []
    for name, lemmas in synsets.items():
        words = " ".join(f"{w} 0" for w in lemmas)
        links = pointers.get(name, [])
        line = (f"{offsets[name]:08d} 03 {pos} {len(lemmas):02x} {words} {len(links):03d} "
                + " ".join(links) + f" | {name}")
        assert len(line) <= _WIDTH, line
        body.append(line.ljust(_WIDTH))
    path.write_text(_HEADER + "\n".join(body) + "\n")


def write_wordnet(folder: Path, synsets: dict[str, tuple[list[str], list[str], int]],
                  index: dict[str, tuple[list[str], int]],
                  verbs: dict[str, tuple[list[str], list[str]]] | None = None,
                  noun_verbs: dict[str, list[str]] | None = None) -> Path:
    """A WordNet database in the real file format: synsets name -> (lemmas, hypernym names, is
    instance); index lemma -> (synset names in sense order, tagged sense count). Optionally verbs:
    name -> (lemmas, derivationally related noun synset names), and noun_verbs: noun synset name ->
    its derivationally related verb names ("cycling" -> "ride_bicycle")."""
    folder.mkdir(parents=True, exist_ok=True)
    verbs = {"walk_verb": (["walk"], []), **(verbs or {})}  # "walking": known as a verb form
    noun_verbs = noun_verbs or {}
    offsets, verb_offsets = _offsets(synsets), _offsets(verbs)
    pointers = {name: [f"{'@i' if instance else '@'} {offsets[p]:08d} n 0000" for p in parents]
                + [f"+ {verb_offsets[v]:08d} v 0000" for v in noun_verbs.get(name, [])]
                for name, (_, parents, instance) in synsets.items()}
    _data_file(folder / "data.noun", "n", {n: lemmas for n, (lemmas, _, _) in synsets.items()}, offsets, pointers)
    rows = [f"{lemma} n {len(names)} 1 @ {len(names)} {tagged} " + " ".join(f"{offsets[n]:08d}" for n in names)
            for lemma, (names, tagged) in sorted(index.items())]
    (folder / "index.noun").write_text(_HEADER + "\n".join(rows) + "\n")
    (folder / "noun.exc").write_text("men man\n")
    (folder / "index.adj").write_text("red a 1 0 1 0 00000000\n")
    verb_pointers = {name: [f"+ {offsets[n]:08d} n 0000" for n in nouns] for name, (_, nouns) in verbs.items()}
    _data_file(folder / "data.verb", "v", {n: lemmas for n, (lemmas, _) in verbs.items()}, verb_offsets, verb_pointers)
    rows = sorted(f"{lemma} v 1 1 + 1 0 {verb_offsets[name]:08d}" for name, (lemmas, _) in verbs.items()
                  for lemma in lemmas)
    (folder / "index.verb").write_text(_HEADER + "\n".join(rows) + "\n")
    return folder
