"""The referring model, its training and its data readers moved to model/, train/ and data/;
the former module paths stay importable as the same modules, and the documented command runs."""
import subprocess
import sys

import pytest

MOVED = {
    "lang_seg_ros.referring.lts": "lang_seg_ros.model.lts",
    "lang_seg_ros.referring.train_lts": "lang_seg_ros.train.lts",
    "lang_seg_ros.referring.refcoco": "lang_seg_ros.data.refcoco",
    "lang_seg_ros.referring.synthetic": "lang_seg_ros.data.referring_synthetic",
}


@pytest.mark.parametrize("old, new", sorted(MOVED.items()))
def test_old_paths_are_the_moved_modules(old, new):
    import importlib

    assert importlib.import_module(old) is importlib.import_module(new)


def test_referring_package_still_exports_the_lts_api():
    from lang_seg_ros import referring
    from lang_seg_ros.model import lts

    for name in ("LocateThenSegment", "LTSConfig", "load_lts", "save_lts"):
        assert getattr(referring, name) is getattr(lts, name)


def test_model_package_imports_neither_referring_nor_train():
    code = ("import sys, lang_seg_ros.model, lang_seg_ros.model.lts; "
            "print(sorted(m for m in sys.modules if m.startswith(('lang_seg_ros.referring', 'lang_seg_ros.train'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("module", ["lang_seg_ros.referring.train_lts", "lang_seg_ros.train.lts"])
def test_documented_training_command_runs(module):
    result = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "--config" in result.stdout and "Warning" not in result.stderr
