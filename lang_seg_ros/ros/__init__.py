"""The ROS 2 layer: the node, its lifecycle variant, message conversions and the replay tool.

Only modules in this package import rclpy; importing this package itself imports nothing but
the header parser (`image_headers`, pure Python), to set OpenCV's pixel limit before cv2 loads.

The generated messages (`lang_seg_ros.msg`, `lang_seg_ros.srv`) are installed by
scripts/setup_ros.sh outside the source tree and named in a `lang_seg_ros.pkg` file on
sys.path; `pkgutil.extend_path` adds that directory to the package's search path. The
top-level `lang_seg_ros/__init__.py` does this too; repeating it here (once) keeps the ROS
layer working whichever is imported first.
"""
import os as _os
import pkgutil as _pkgutil
import sys as _sys

from .image_headers import set_opencv_pixel_fence as _set_fence

# OpenCV reads its decoded-pixel limit (the second fence against decompression bombs, behind the
# header check in image_conversion) once, at import: set it before anything here imports cv2.
_set_fence()

_parent = _sys.modules[__name__.rpartition(".")[0]]
if not any(_os.path.isdir(_os.path.join(p, "msg")) for p in _parent.__path__):
    _parent.__path__ = _pkgutil.extend_path(_parent.__path__, _parent.__name__)
del _parent, _os, _pkgutil, _sys
