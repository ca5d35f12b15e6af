"""Moved to `lang_seg_ros.model.lts`; this name stays importable (it is the same module)."""
import sys

from ..model import lts as _module

sys.modules[__name__] = _module
