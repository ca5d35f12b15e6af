"""The referring model, its training and its data readers live in model/, train/ and data/:
the referring package re-exports the model's API, the model imports neither referring nor
training, and the documented training command runs."""
import subprocess
import sys


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


def test_documented_training_command_runs():
    result = subprocess.run([sys.executable, "-m", "lang_seg_ros.train.lts", "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "--config" in result.stdout and "Warning" not in result.stderr
