"""A WordNet database in the real file format, built from a few synsets, for tests that must not
depend on whether wordnet-base is installed (referring's lexicon, label grounding)."""
from __future__ import annotations

from pathlib import Path


def write_wordnet(folder: Path, synsets: dict[str, tuple[list[str], list[str], int]],
                  index: dict[str, tuple[list[str], int]]) -> Path:
    """A WordNet database in the real file format: synsets name -> (lemmas, hypernym names, is
    instance); index lemma -> (synset names in sense order, tagged sense count)."""
    folder.mkdir(parents=True, exist_ok=True)
    header = "  1 a constructed test database\n"
    offsets, position = {}, len(header.encode())
    # offsets are byte positions: fix the line width so that they are known before writing
    width = 200
    for i, name in enumerate(synsets):
        offsets[name] = position + i * (width + 1)
    body = []
    for name, (lemmas, parents, instance) in synsets.items():
        words = " ".join(f"{w} 0" for w in lemmas)
        pointers = " ".join(f"{'@i' if instance else '@'} {offsets[p]:08d} n 0000" for p in parents)
        line = f"{offsets[name]:08d} 03 n {len(lemmas):02x} {words} {len(parents):03d} {pointers} | {name}"
        body.append(line.ljust(width))
    (folder / "data.noun").write_text(header + "\n".join(body) + "\n")
    rows = [f"{lemma} n {len(names)} 1 @ {len(names)} {tagged} " + " ".join(f"{offsets[n]:08d}" for n in names)
            for lemma, (names, tagged) in sorted(index.items())]
    (folder / "index.noun").write_text(header + "\n".join(rows) + "\n")
    (folder / "noun.exc").write_text("men man\n")
    (folder / "index.adj").write_text("red a 1 0 1 0 00000000\n")
    (folder / "index.verb").write_text("walk v 1 0 1 0 00000000\n")
    return folder
