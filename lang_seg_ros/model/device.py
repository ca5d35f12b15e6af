"""Device strings -> `torch.device`, and the precision a device runs: the one rule every command,
trainer and node uses."""
from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterator

import torch

from ..device_spec import DEVICE_CHOICES, check_device, cpu_has_native_bf16

__all__ = ["DEVICE_CHOICES", "PRECISION_CHOICES", "cpu_cores", "resolve_device", "resolve_precision"]

_LOG = logging.getLogger(__name__)


def resolve_device(device: str | torch.device) -> torch.device:
    """"auto" -> CUDA when available, else the CPU; "cpu", "cuda", "cuda:N", "mps" -> that device.

    A `torch.device` is returned as it is. `ValueError`, naming the value, for any other string and
    for a CUDA or MPS device this machine does not have (rather than a failure deep inside torch).
    """
    if isinstance(device, torch.device):
        return device
    check_device(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: CUDA is not available on this machine (use 'cpu' or 'auto')")
        index = int(device[5:]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                             f"numbered from 0")
    if device == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError("device 'mps': Apple MPS is not available on this machine (use 'cpu' or 'auto')")
    return torch.device(device)


#: What `precision` may say; "auto" is resolved by `resolve_precision`.
PRECISION_CHOICES = ("auto", "fp32", "fp16", "bf16")


def resolve_precision(precision: str, device: torch.device, backend: str = "torch") -> str:
    """The image branch's precision: "auto" -> what the device runs natively, else as asked.

    auto: on CUDA, fp16 from compute capability 7.0 (tensor cores), else fp32; on MPS fp16; on a
    CPU bf16 where it is native (AVX-512 BF16 / AMX, Arm BF16: `cpu_has_native_bf16`) for the
    torch and OpenVINO backends (onnxruntime has no bf16 CPU kernels), else fp32. A precision the
    device only emulates is kept when asked for, with a warning that says what it costs.
    """
    if precision not in PRECISION_CHOICES:
        raise ValueError(f"precision must be one of {', '.join(PRECISION_CHOICES)}, got {precision!r}")
    native = _native_precisions(device, backend)
    if precision == "auto":
        return next((p for p in ("fp16", "bf16") if p in native), "fp32")
    if precision not in native:
        _LOG.warning(_EMULATED.get((device.type, precision), "%s on %s is not native here: expect it to be slower "
                                   "than fp32 (precision auto picks what this device runs natively)"),
                     precision, device)
    return precision


def _native_precisions(device: torch.device, backend: str) -> set[str]:
    if device.type == "cuda":
        major, _ = torch.cuda.get_device_capability(device)
        return {"fp32"} | ({"fp16"} if major >= 7 else set()) | ({"bf16"} if major >= 8 else set())
    if device.type == "mps":
        return {"fp32", "fp16"}
    if backend != "onnxruntime" and cpu_has_native_bf16():
        return {"fp32", "bf16"}
    return {"fp32"}


_EMULATED = {
    ("cpu", "bf16"): "%s on this %s has no native bf16 (no AVX-512 BF16 / AMX, or a backend without bf16 CPU "
                     "kernels): it is emulated, measured 33x slower than fp32 on an AVX2 CPU; use fp32 or auto",
    ("cpu", "fp16"): "%s on %s is emulated and partly unsupported, much slower than fp32; use fp32 or auto",
}


def cpu_cores() -> int:
    """The cores this process may run on: its CPU affinity (a container's or `taskset`'s limit),
    `os.cpu_count()` where the platform has no affinity call."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@contextlib.contextmanager
def single_cpu_thread(device: torch.device) -> Iterator[None]:
    """On a CPU, run the enclosed torch ops on one intra-op thread, then restore the count.

    For the small element-wise work around the forward pass (the input's normalisation, the
    per-pixel decision), for which waking the other OpenMP threads costs more than they save
    (480x360, 20 labels, 2 cores, passive waits: decision 7.4 ms on two threads, 4.9 ms on one);
    in the node, where DDS and the executor hold a core at times, a woken thread may wait for
    it. The caller's thread owns the model, so nothing else runs torch ops meanwhile. A no-op on
    accelerators."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
