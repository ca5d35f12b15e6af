"""What users change at run time: the label set and the referring expression.

Both are checked by the core's one policy (`lang_seg_ros.inference.labels`) when they arrive,
so a refusal is answered at once; the worker reads a consistent snapshot before each frame and
encodes a new set there. Thread-safe; no ROS types.
"""
from __future__ import annotations

import threading
from typing import Any

from ..inference.labels import LabelSpec, parse_label_spec

__all__ = ["Commands"]


class Commands:
    """The accepted label set (as typed, parsed, and its id, which increases on every change) and
    the accepted referring expression ("" = none)."""

    def __init__(self, labels: str, settings: dict[str, Any]) -> None:
        self._lock = threading.Lock()
        self._text: str | list[str] = labels  # as typed, ":stuff" marks included
        self.spec = parse_label_spec(labels, settings["stuff_labels"], settings["max_labels"],
                                     settings["max_label_chars"])
        self.label_set_id = 1
        self.expression = ""  # set it to a `check_expression` result: one assignment

    def snapshot(self) -> tuple[LabelSpec, int, str]:
        with self._lock:
            return self.spec, self.label_set_id, self.expression

    def set_labels(self, entries: str | list[str] | None, settings: dict[str, Any]) -> bool:
        """A label set as typed, or None to re-read the current one with new `stuff_labels`;
        True when it changed the set. ValueError (saying why) when refused: nothing changes."""
        with self._lock:
            entries = self._text if entries is None else entries
        spec = parse_label_spec(entries, settings["stuff_labels"], settings["max_labels"], settings["max_label_chars"])
        with self._lock:
            self._text = entries
            if spec == self.spec:
                return False
            self.spec, self.label_set_id = spec, self.label_set_id + 1
            return True

    @staticmethod
    def check_expression(text: str, max_chars: int) -> str:
        """The clean expression ("" clears); ValueError when the policy or the parser refuses it."""
        from ..referring import read_expression  # loads the referring code (and torch)
        return read_expression(text, max_chars)[0]
