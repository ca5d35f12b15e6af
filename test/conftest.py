"""Shared fixtures: tiny models and checkpoints, built once per session."""
from __future__ import annotations

import os
from pathlib import Path

# Before torch loads OpenMP: waiting threads sleep instead of spinning (2 shared cores in CI).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

from lang_seg_ros.model import build_model, save_checkpoint  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model():
    torch.manual_seed(0)
    return build_model("lseg_tiny").eval()


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_model, tmp_path_factory) -> Path:
    """The tiny model in our own format, as the node and the CLI load it."""
    return save_checkpoint(tiny_model, tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")
