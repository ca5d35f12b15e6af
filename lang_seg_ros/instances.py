"""Moved to `lang_seg_ros.objects.instances`; this name stays importable (it is the same module)."""
import sys

from .objects import instances as _module

sys.modules[__name__] = _module
