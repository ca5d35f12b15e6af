"""Moved to `lang_seg_ros.objects.regions`; this name stays importable (it is the same module)."""
import sys

from .objects import regions as _module

sys.modules[__name__] = _module
