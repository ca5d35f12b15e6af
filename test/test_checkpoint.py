"""Loading the authors' checkpoints safely, and our own format, with errors that say what is wrong."""
from __future__ import annotations

import argparse
import os
import sys
import types
from pathlib import Path

import pytest
import torch

from lang_seg_ros.model import build_model, convert_checkpoint, load_checkpoint, save_checkpoint


def lightning_checkpoint(model, path: Path, extra: dict | None = None, **save_kw) -> Path:
    """A file shaped like lang-seg's: a Lightning dict with `net.`-prefixed weights and a foreign object."""
    module = types.ModuleType("pytorch_lightning.callbacks.model_checkpoint")

    class ModelCheckpoint:  # stands for a Lightning class that is not installed when loading
        def __init__(self):
            self.best_model_path = "/somewhere/demo_e200.ckpt"

    ModelCheckpoint.__module__ = module.__name__
    ModelCheckpoint.__qualname__ = "ModelCheckpoint"
    module.ModelCheckpoint = ModelCheckpoint
    fake = {"pytorch_lightning": types.ModuleType("pytorch_lightning"),
            "pytorch_lightning.callbacks": types.ModuleType("pytorch_lightning.callbacks"), module.__name__: module}
    sys.modules.update(fake)
    try:
        payload = {
            "epoch": 199,
            "global_step": 1234,
            "pytorch-lightning_version": "1.3.5",
            "state_dict": {"net." + k: v for k, v in model.state_dict().items()},
            "callbacks": {ModelCheckpoint: ModelCheckpoint()},
            "hyper_parameters": argparse.Namespace(backbone="clip_vitl16_384", arch_option=0),
            **(extra or {}),
        }
        torch.save(payload, path, **save_kw)
    finally:
        for name in fake:
            del sys.modules[name]
    return path


class Payload:
    """What a tampered checkpoint may carry: unpickling it runs code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def outputs(model, labels=("road", "car", "sky")):
    images = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        return model(images, model.encode_text(list(labels)))


def test_official_checkpoint_loads_without_lightning_and_reproduces_outputs(tiny_model, tmp_path):
    path = lightning_checkpoint(tiny_model, tmp_path / "demo.ckpt")
    model = load_checkpoint(path)
    assert not model.training
    assert "pytorch_lightning" not in sys.modules
    assert torch.equal(outputs(model), outputs(tiny_model))


def test_legacy_torch_serialisation_loads_too(tiny_model, tmp_path):
    path = lightning_checkpoint(tiny_model, tmp_path / "old.ckpt", _use_new_zipfile_serialization=False)
    assert torch.equal(outputs(load_checkpoint(path)), outputs(tiny_model))


def test_malicious_checkpoint_executes_nothing(tiny_model, tmp_path):
    marker = tmp_path / "pwned"
    path = lightning_checkpoint(tiny_model, tmp_path / "evil.ckpt", extra={"callbacks": Payload(marker)})
    # The payload is live: an ordinary unpickling runs it.
    torch.load(path, weights_only=False)
    assert marker.exists()
    marker.unlink()

    model = load_checkpoint(path)
    assert not marker.exists()
    assert torch.equal(outputs(model), outputs(tiny_model))


def test_fp16_clip_matrices_as_released_are_accepted(tiny_model, tmp_path):
    half = build_model("lseg_tiny").eval()
    half.load_state_dict(tiny_model.state_dict())
    for name, param in half.clip_pretrained.named_parameters():
        if param.ndim == 2 and "embedding" not in name:
            param.data = param.data.half()  # the released files store CLIP matrices in fp16
    path = lightning_checkpoint(half, tmp_path / "fp16.ckpt")
    model = load_checkpoint(path)
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_missing_and_unexpected_keys_are_named(tiny_model, tmp_path):
    state = {"net." + k: v for k, v in tiny_model.state_dict().items()}
    del state["net.scratch.head1.bias"]
    state["net.scratch.aux_head.weight"] = torch.zeros(1)
    torch.save({"state_dict": state}, tmp_path / "bad.ckpt")
    with pytest.raises(ValueError, match=r"missing keys: scratch\.head1\.bias.*unexpected keys: scratch\.aux_head\.weight"):
        load_checkpoint(tmp_path / "bad.ckpt")


def test_head_block_weights_need_their_settings(tmp_path):
    model = build_model("lseg_tiny", block_type="bottleneck", block_depth=2, block_activation="tanh").eval()
    path = lightning_checkpoint(model, tmp_path / "block.ckpt")
    with pytest.raises(ValueError, match="block_type.*block_depth.*block_activation"):
        load_checkpoint(path)
    loaded = load_checkpoint(path, block_type="bottleneck", block_depth=2, block_activation="tanh")
    assert torch.equal(outputs(loaded), outputs(model))


def test_block_settings_for_a_checkpoint_without_block_weights_are_an_error(tiny_model, tmp_path):
    path = lightning_checkpoint(tiny_model, tmp_path / "plain.ckpt")
    with pytest.raises(ValueError, match="missing keys: scratch.head_block"):
        load_checkpoint(path, block_type="depthwise", block_depth=1, block_activation="relu")


def test_missing_file_says_where_official_checkpoints_come_from(tmp_path):
    with pytest.raises(FileNotFoundError, match="isl-org/lang-seg"):
        load_checkpoint(tmp_path / "demo_e200.ckpt")


def test_embedded_models_are_named_where_a_path_is_accepted(tmp_path):
    """"" and None are the default model; "default" and "default-large" the package's files; any
    other string, or a Path, is a path (a file called default-large is "./default-large")."""
    from lang_seg_ros.model.checkpoint import resolve_checkpoint
    from lang_seg_ros.weights import EMBEDDED_MODELS, embedded_model_file

    weights = Path(__file__).resolve().parents[1] / "lang_seg_ros" / "weights"
    assert resolve_checkpoint(None) == resolve_checkpoint("") == resolve_checkpoint("default") == weights / "default.safetensors"
    assert embedded_model_file("default-large") == weights / "default-large.safetensors"
    assert resolve_checkpoint("./default-large") == "./default-large"
    assert resolve_checkpoint(tmp_path / "default-large") == tmp_path / "default-large"
    assert set(EMBEDDED_MODELS) == {"default", "default-large"}
    with pytest.raises(ValueError, match="embedded models are default, default-large"):
        embedded_model_file("large")


def test_the_loader_reads_checkpoint_arguments_by_the_same_rule():
    """`load_checkpoint` takes what a `--checkpoint` or the node's `checkpoint` takes: None (the CLI
    without the option) is the embedded default model, so callers pass the argument as it came."""
    default = load_checkpoint("default")
    assert load_checkpoint(None).config == default.config
    assert load_checkpoint(None).logit_scale == default.logit_scale


def test_own_format_round_trips_bit_exactly(tiny_model, tmp_path):
    path = save_checkpoint(tiny_model, tmp_path / "tiny.safetensors")
    model = load_checkpoint(path)
    original, loaded = tiny_model.state_dict(), model.state_dict()
    assert original.keys() == loaded.keys()
    assert all(torch.equal(original[k], loaded[k]) and original[k].dtype == loaded[k].dtype for k in original)
    assert model.config == tiny_model.config
    assert torch.equal(outputs(model), outputs(tiny_model))


def test_own_format_in_fp16_is_half_the_size_and_close(tiny_model, tmp_path):
    full = save_checkpoint(tiny_model, tmp_path / "fp32.safetensors")
    half = save_checkpoint(tiny_model, tmp_path / "fp16.safetensors", dtype=torch.float16)
    assert os.path.getsize(half) < 0.6 * os.path.getsize(full)
    torch.testing.assert_close(outputs(load_checkpoint(half)), outputs(tiny_model), atol=0.05, rtol=0.01)


def test_converter_turns_an_official_checkpoint_into_our_format(tmp_path):
    model = build_model("lseg_tiny", block_type="depthwise", block_depth=2, block_activation="relu").eval()
    src = lightning_checkpoint(model, tmp_path / "fold0.ckpt")
    dst = convert_checkpoint(src, tmp_path / "fold0.safetensors", block_type="depthwise", block_depth=2,
                             block_activation="relu")
    converted = load_checkpoint(dst)  # settings now recorded: no overrides needed
    assert converted.config.block_type == "depthwise"
    assert torch.equal(outputs(converted), outputs(model))


def test_a_file_that_is_no_checkpoint_is_a_clear_error(tmp_path):
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"\x80\x04K\x01.")  # a pickle of the number 1
    with pytest.raises(ValueError, match="not a lang-seg checkpoint"):
        load_checkpoint(junk)


@pytest.mark.parametrize("suffix", [".ckpt", ".safetensors"])
def test_truncated_checkpoints_are_a_clear_error(tiny_model, tmp_path, suffix):
    path = tmp_path / f"model{suffix}"
    if suffix == ".ckpt":
        lightning_checkpoint(tiny_model, path)
    else:
        save_checkpoint(tiny_model, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="damaged|not a readable"):
        load_checkpoint(path)
