"""Data-parallel training (torchrun, 2 CPU processes, gloo) is the one-process run up to float
rounding: same losses, same validation, same checkpoint, one writer, and resumable.

The model is `lseg_tiny` with BatchNorm switched on in the decoder, so the test fails if the
processes normalised with their own half-batch statistics; the data set samples wordings and
negatives per step, as the default model's recipe does. SGD, because Adam's first steps divide
near-zero gradients by their own size and turn float rounding into visible weight differences.
A few seconds per process start; about 20-40 s in all on 2 cores.
"""

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

CONFIG = {
    "model": "lseg_tiny",
    "model_overrides": {"use_bn": True},
    "datasets": [{
        "type": "synthetic",
        "args": {"num_images": 16, "size": [64, 64], "seed": 0},
        "wordings": {
            "wordings": {"background": ["grass field"], "red box": ["red square"], "blue disc": ["blue circle"]},
            "templates": ["{}", "a photo of a {}"],
            "negatives": ["dog", "kitchen", "guitar", "pizza", "moon"],
            "negatives_per_step": 2,
            "max_similarity": 0.99,  # the tiny text tower is random: keep every negative
        },
    }],
    "val": {"type": "synthetic", "args": {"num_images": 4, "size": [64, 64], "seed": 1}},
    "augment": {"crop_size": [64, 64], "scale_range": [0.9, 1.1], "jitter_prob": 0.5},
    "optim": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "backbone_lr_mult": 1.0,
              "schedule": "constant", "grad_clip": 1.0},
    "batch_size": 4,
    "iterations": 4,
    "val_every": 2,
    "val_working_size": 64,
    "checkpoint_every": 2,
    "log_every": 1,
    "seed": 0,
    "device": "cpu",
    "num_threads": 1,
    "channels_last": False,
    "prefetch": False,
}


def _run(args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1"}
    env.pop("WORLD_SIZE", None)
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _torchrun(config, out_dir, cwd, *extra):
    return _run(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                 "-m", "lang_seg_ros.train", str(config), "--out-dir", str(out_dir), "--no-progress", *extra], cwd)


def _records(out_dir):
    return [json.loads(line) for line in (out_dir / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    config = root / "tiny_ddp.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    cwd = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    _run(["-m", "lang_seg_ros.train", str(config), "--out-dir", str(root / "one"), "--no-progress"], cwd)
    # Two processes, interrupted after 2 of the 4 iterations and resumed.
    _torchrun(config, root / "two", cwd, "--iterations", "2")
    after_two = _records(root / "two")
    _torchrun(config, root / "two", cwd)
    return root / "one", root / "two", after_two


def test_two_processes_log_the_one_process_losses_and_validation(runs):
    one, two, after_two = runs
    a, b = _records(one), _records(two)
    # One writer: every record once (rank 1 logging too would double them).
    assert [r["iteration"] for r in a] == [r["iteration"] for r in b] == [1, 2, 2, 3, 4, 4]
    assert len(after_two) == 3  # the interrupted run had logged iterations 1, 2 and its validation
    for ra, rb in zip(a, b):
        if "loss" in ra:
            assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-5)
        else:
            assert rb["val_miou"] == pytest.approx(ra["val_miou"], abs=1e-4)


def test_two_processes_write_the_one_process_checkpoint(runs):
    one, two, _ = runs
    a = torch.load(one / "last.pt", weights_only=False)
    b = torch.load(two / "last.pt", weights_only=False)
    assert a["iteration"] == b["iteration"] == 4 and a["cursors"] == b["cursors"]
    bn_buffers = [k for k in a["model"] if k.endswith("running_var") and k.startswith("scratch.")]
    assert bn_buffers, "the test model must have BatchNorm in the decoder"
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=1e-4, atol=1e-5, msg=key)
    assert (two / "best.safetensors").is_file() and not list(two.glob("*.tmp"))
