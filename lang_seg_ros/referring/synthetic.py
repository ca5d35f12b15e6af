"""Moved to `lang_seg_ros.data.referring_synthetic`; this name stays importable (it is the same module)."""
import sys

from ..data import referring_synthetic as _module

sys.modules[__name__] = _module
