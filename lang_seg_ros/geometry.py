"""Moved to `lang_seg_ros.objects.geometry`; this name stays importable (it is the same module)."""
import sys

from .objects import geometry as _module

sys.modules[__name__] = _module
