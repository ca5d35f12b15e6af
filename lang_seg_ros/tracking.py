"""Moved to `lang_seg_ros.objects.tracking`; this name stays importable (it is the same module)."""
import sys

from .objects import tracking as _module

sys.modules[__name__] = _module
