"""Shared fixtures: tiny models and checkpoints.

No fixture hands the same mutable model to two tests. Building the tiny model takes seconds, so it
is built once per session, but that instance is private (`_pristine_tiny_model`): each test that asks
for `tiny_model` gets its own deep copy. A test may therefore do anything to its model (train it,
cast it, wrap it in a `Segmenter`, which converts the image branch to channels_last in place and
so changes float rounding) without another test ever seeing it. Module-scoped ROS nodes are shared
too, so a test that stops its node, or needs one that has never seen some input, starts its own.
The suite passes in any order: CI runs it in a random one (pytest-randomly, from the `test` extra;
the seed is printed at the start and the end, also under -q).
"""
from __future__ import annotations

import copy
import os
from pathlib import Path

# Before torch loads OpenMP: waiting threads sleep instead of spinning (2 shared cores in CI).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

from lang_seg_ros.model import build_model, save_checkpoint  # noqa: E402


def _random_order_seed(config) -> int | None:
    """The seed of pytest-randomly's test order (installed with the `test` extra), None when it is off."""
    if not config.pluginmanager.hasplugin("randomly") or not config.getoption("randomly_reorganize", True):
        return None
    return config.getoption("randomly_seed", None)


def _say_seed(config, reporter) -> None:
    seed = _random_order_seed(config)
    if seed is not None and reporter is not None:
        reporter.write_line(f"random test order (pytest-randomly), seed {seed}: rerun it with "
                            f"`python -m pytest -q test -p randomly --randomly-seed={seed}`; a fixed order: "
                            f"-p no:randomly")


def pytest_sessionstart(session) -> None:
    # pytest-randomly prints its seed in the header, which -q (the README's and CI's command) hides
    if session.config.get_verbosity() < 0:
        _say_seed(session.config, session.config.pluginmanager.get_plugin("terminalreporter"))


def pytest_terminal_summary(terminalreporter, config) -> None:
    _say_seed(config, terminalreporter)


def model_snapshot(model: torch.nn.Module) -> tuple[dict, tuple]:
    """What a test could change in a model and another test would see: every parameter and buffer
    (values, dtype, device, memory layout, requires_grad) and the train/eval flags."""
    tensors = {name: (t.detach().clone(), t.dtype, t.device, t.stride(), t.requires_grad)
               for name, t in [*model.named_parameters(), *model.named_buffers()]}
    return tensors, tuple(m.training for m in model.modules())


def same_snapshot(a: tuple[dict, tuple], b: tuple[dict, tuple]) -> bool:
    (ta, fa), (tb, fb) = a, b
    return fa == fb and ta.keys() == tb.keys() and all(
        ta[k][1:] == tb[k][1:] and torch.equal(ta[k][0], tb[k][0]) for k in ta)


@pytest.fixture(scope="session")
def _pristine_tiny_model():
    """Built once; never handed to a test (tests get copies), and checked at the end of the session."""
    torch.manual_seed(0)
    model = build_model("lseg_tiny").eval()
    before = model_snapshot(model)
    yield model
    assert same_snapshot(model_snapshot(model), before), "a test changed the session's pristine tiny model"


@pytest.fixture(scope="session")
def model_snapshots():
    """(snapshot, same) for tests of the fixtures themselves: `same(snapshot(a), snapshot(b))`."""
    return model_snapshot, same_snapshot


@pytest.fixture
def tiny_model(_pristine_tiny_model):
    """The tiny LSeg (seed 0, eval mode), this test's own copy: changing it affects no other test."""
    return copy.deepcopy(_pristine_tiny_model)


@pytest.fixture(scope="session")
def tiny_checkpoint(_pristine_tiny_model, tmp_path_factory) -> Path:
    """The tiny model in our own format, as the node and the CLI load it (a file: tests only read it)."""
    return save_checkpoint(_pristine_tiny_model, tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


@pytest.fixture
def write_synthetic(tmp_path):
    """A writer of synthetic image / label-PNG pairs into tmp_path/img and tmp_path/gt (the layout
    `lang-seg eval` reads); returns the data set's class names."""
    def write(n: int = 3, size: tuple[int, int] = (48, 72)) -> list[str]:
        import cv2
        import numpy as np

        from lang_seg_ros.data import build_dataset

        ds = build_dataset("synthetic", num_images=n, size=size, seed=3)
        (tmp_path / "img").mkdir(exist_ok=True)
        (tmp_path / "gt").mkdir(exist_ok=True)
        for i in range(n):
            image, mask = ds.load(i)
            cv2.imwrite(str(tmp_path / "img" / f"{i}.png"), image[..., ::-1])
            cv2.imwrite(str(tmp_path / "gt" / f"{i}.png"), mask.astype(np.uint8))
        return ds.names
    return write
