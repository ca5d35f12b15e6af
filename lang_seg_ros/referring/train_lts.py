"""Moved to `lang_seg_ros.train.lts`; this name stays importable (it is the same module), and
`python -m lang_seg_ros.referring.train_lts --config ...` still runs its `main`."""
import sys

from ..train import lts as _module

if __name__ == "__main__":
    _module.main()
else:
    sys.modules[__name__] = _module
