"""Moved to `lang_seg_ros.objects.panoptic`; this name stays importable (it is the same module)."""
import sys

from .objects import panoptic as _module

sys.modules[__name__] = _module
