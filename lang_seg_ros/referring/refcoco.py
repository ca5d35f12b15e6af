"""Moved to `lang_seg_ros.data.refcoco`; this name stays importable (it is the same module)."""
import sys

from ..data import refcoco as _module

sys.modules[__name__] = _module
