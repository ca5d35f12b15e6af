"""Hostile official checkpoints (lang_seg_ros/model/checkpoint.py): nothing in a pickle ever runs.

Every pickle protocol torch writes (2 to 5; 2 is its default, and names builtins `__builtin__`, 3
and up name them `builtins`, 4 and up with STACK_GLOBAL), and the payload shapes attackers use:
a callable applied by REDUCE (exec, eval, os.system, subprocess, getattr(__import__('os'), ...)) or
called by INST / OBJ, and an instance made by NEWOBJ / NEWOBJ_EX (which only take real classes) whose
`__setstate__` a first BUILD sets to exec or os.system and a second BUILD calls with the code. Each payload is first shown to be live (an ordinary torch.load runs it and
writes a marker file); the safe loader must then read the tensors and write nothing.
"""
from __future__ import annotations

import os
import pickle
import shlex
import struct
import subprocess
import types
from pathlib import Path

import pytest
import torch

from lang_seg_ros.model import load_checkpoint
from lang_seg_ros.model.checkpoint import read_official_state_dict

PROTOCOLS = (2, 3, 4, 5)


def _text(value: str) -> bytes:
    data = value.encode()
    return pickle.BINUNICODE + struct.pack("<I", len(data)) + data


def _global(module: str, name: str, protocol: int) -> bytes:
    """Push a global the way a pickler of this protocol writes it (GLOBAL below 4, STACK_GLOBAL from 4)."""
    if protocol < 3 and module == "builtins":
        module = "__builtin__"  # what protocol 2 (torch's default) writes, and what a loader sees
    if protocol >= 4:
        return _text(module) + _text(name) + pickle.STACK_GLOBAL
    return pickle.GLOBAL + f"{module}\n{name}\n".encode()


class RawOps:
    """Hand-written pickle opcodes that leave one object on the stack, written as they are by
    `RawPickler` wherever this object sits in the checkpoint."""

    def __init__(self, ops: bytes):
        self.ops = ops


class RawPickler(pickle._Pickler):  # the pure-Python pickler: `save` can be extended
    def save(self, obj, save_persistent_id=True):
        if isinstance(obj, RawOps):
            self.write(obj.ops)
            return
        super().save(obj, save_persistent_id)


def _dump(obj, file, protocol=None):
    RawPickler(file, protocol).dump(obj)


RAW_PICKLE = types.SimpleNamespace(Pickler=RawPickler, dump=_dump, __name__="raw_pickle")


class Reduce:
    """A `__reduce__` payload: the pickler writes the callable as a global, then REDUCE."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def write_marker_code(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').write('pwned')"


def payloads(marker: Path, protocol: int) -> dict[str, object]:
    code = write_marker_code(marker)
    touch = f"touch {shlex.quote(str(marker))}"
    g = lambda module, name: _global(module, name, protocol)  # noqa: E731
    # an instance made without __init__: NEWOBJ_EX from protocol 4, NEWOBJ before
    new_namespace = g("argparse", "Namespace") + (
        pickle.EMPTY_TUPLE + pickle.EMPTY_DICT + pickle.NEWOBJ_EX if protocol >= 4 else pickle.EMPTY_TUPLE + pickle.NEWOBJ)
    return {
        # REDUCE of a global callable, the pickler writing the global as the protocol does
        "reduce_exec": Reduce(exec, code),
        "reduce_eval": Reduce(eval, code),
        "reduce_os_system": Reduce(os.system, touch),  # pickled as posix.system
        "reduce_subprocess_run": Reduce(subprocess.run, ["touch", str(marker)]),
        "reduce_subprocess_check_call": Reduce(subprocess.check_call, ["sh", "-c", touch]),
        # the same, hand-written: the names an attacker writes rather than the ones pickle would
        "raw_reduce_os_system": RawOps(g("os", "system") + _text(touch) + pickle.TUPLE1 + pickle.REDUCE),
        "raw_reduce_builtins_eval": RawOps(g("builtins", "eval") + _text(code) + pickle.TUPLE1 + pickle.REDUCE),
        "raw_reduce_getattr_import": RawOps(  # getattr(__import__('os'), 'system')('touch ...')
            g("builtins", "getattr") + pickle.MARK + g("builtins", "__import__") + _text("os") + pickle.TUPLE1
            + pickle.REDUCE + _text("system") + pickle.TUPLE + pickle.REDUCE + _text(touch) + pickle.TUPLE1
            + pickle.REDUCE),
        # torch's own functions are no safer: torch.save writes wherever the pickle says
        "raw_reduce_torch_save": RawOps(g("torch", "save") + pickle.MARK + _text("pwned") + _text(str(marker))
                                        + pickle.TUPLE + pickle.REDUCE),
        # INST: module and name inline, the callable called with the marked arguments
        "inst_exec": RawOps(pickle.MARK + _text(code) + pickle.INST
                            + ("__builtin__\nexec\n" if protocol < 3 else "builtins\nexec\n").encode()),
        "inst_subprocess": RawOps(pickle.MARK + pickle.MARK + _text("sh") + _text("-c") + _text(touch) + pickle.LIST
                                  + pickle.INST + b"subprocess\ncheck_call\n"),
        # OBJ: the callable and its arguments after a mark
        "obj_exec": RawOps(pickle.MARK + g("builtins", "exec") + _text(code) + pickle.OBJ),
        "obj_os_system": RawOps(pickle.MARK + g("os", "system") + _text(touch) + pickle.OBJ),
        # BUILD: a first BUILD sets the new instance's __setstate__ to exec, the second calls exec(code)
        "newobj_build_exec": RawOps(
            new_namespace + pickle.EMPTY_DICT + _text("__setstate__") + g("builtins", "exec") + pickle.SETITEM
            + pickle.BUILD + _text(code) + pickle.BUILD),
        "newobj_build_os_system": RawOps(
            new_namespace + pickle.EMPTY_DICT + _text("__setstate__") + g("os", "system") + pickle.SETITEM
            + pickle.BUILD + _text(touch) + pickle.BUILD),
    }


def hostile_checkpoint(path: Path, payload: object, protocol: int, zipped: bool = True) -> Path:
    """A small Lightning-shaped checkpoint (a tensor under `net.`) with the payload beside it."""
    checkpoint = {"epoch": 1, "state_dict": {"net.head.weight": torch.arange(6.0).view(2, 3)}, "callbacks": payload}
    torch.save(checkpoint, path, pickle_module=RAW_PICKLE, pickle_protocol=protocol,
               _use_new_zipfile_serialization=zipped)
    return path


SHAPES = sorted(payloads(Path("/x"), 4))


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("shape", SHAPES)
def test_hostile_payloads_run_nothing_in_any_protocol(tmp_path, protocol, shape):
    marker = tmp_path / "pwned"
    path = hostile_checkpoint(tmp_path / "evil.ckpt", payloads(marker, protocol)[shape], protocol)
    # the payload is live: an ordinary unpickling runs it
    torch.load(path, weights_only=False)
    assert marker.exists(), f"{shape} (protocol {protocol}) is not a working payload"
    marker.unlink()

    tensors = read_official_state_dict(path)
    assert not marker.exists(), f"{shape} (protocol {protocol}) ran code in the safe loader"
    assert list(tensors) == ["head.weight"] and torch.equal(tensors["head.weight"], torch.arange(6.0).view(2, 3))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_hostile_payloads_in_the_legacy_format_run_nothing_either(tmp_path, protocol):
    for shape in ("reduce_exec", "raw_reduce_builtins_eval", "newobj_build_exec", "obj_exec"):
        marker = tmp_path / f"pwned_{shape}"
        path = hostile_checkpoint(tmp_path / f"{shape}.ckpt", payloads(marker, protocol)[shape], protocol, zipped=False)
        torch.load(path, weights_only=False)
        assert marker.exists(), shape
        marker.unlink()
        read_official_state_dict(path)
        assert not marker.exists(), f"{shape} (legacy format, protocol {protocol}) ran code in the safe loader"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_real_model_with_a_payload_loads_in_every_protocol_and_reproduces_outputs(tiny_model, tmp_path, protocol):
    marker = tmp_path / "pwned"
    checkpoint = {"state_dict": {"net." + k: v for k, v in tiny_model.state_dict().items()},
                  "hyper_parameters": payloads(marker, protocol)["reduce_exec"],
                  "callbacks": {"ModelCheckpoint": payloads(marker, protocol)["newobj_build_exec"]}}
    path = tmp_path / "demo.ckpt"
    torch.save(checkpoint, path, pickle_module=RAW_PICKLE, pickle_protocol=protocol)
    model = load_checkpoint(path)
    assert not marker.exists()
    images = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        text = ["road", "car"]
        assert torch.equal(model(images, model.encode_text(text)), tiny_model(images, tiny_model.encode_text(text)))


def test_the_protocols_name_builtins_as_an_attacker_expects(tmp_path):
    """The test's premise: protocol 2 writes `__builtin__`, 3 and up `builtins` (STACK_GLOBAL from 4),
    so a loader allowing either spelling of the whole module is caught by some protocol above."""
    import zipfile

    spelled = {}
    for protocol in PROTOCOLS:
        path = hostile_checkpoint(tmp_path / f"p{protocol}.ckpt", Reduce(exec, "pass"), protocol)
        with zipfile.ZipFile(path) as archive:
            data = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
        ops = {op.name for op, _, _ in __import__("pickletools").genops(data)}
        spelled[protocol] = (b"__builtin__" in data, b"builtins" in data, "STACK_GLOBAL" in ops)
    assert spelled == {2: (True, False, False), 3: (False, True, False), 4: (False, True, True), 5: (False, True, True)}
