"""Device strings -> `torch.device`: the one resolver every command, trainer and node uses."""
from __future__ import annotations

import torch

from ..device_spec import DEVICE_CHOICES, check_device

__all__ = ["DEVICE_CHOICES", "resolve_device"]


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
