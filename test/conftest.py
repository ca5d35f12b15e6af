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
