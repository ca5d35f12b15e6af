"""What a device setting may say: the syntax half of the one device rule, without torch.

`lang_seg_ros.model.resolve_device` applies it and then asks torch whether the device exists;
the node checks parameters with it before torch is loaded.
"""
from __future__ import annotations

import re

__all__ = ["DEVICE_CHOICES", "check_device"]

#: What a device setting may say, for help texts and messages.
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"
# ASCII digits only: "cuda:²" passes str.isdigit and "cuda:٣" int(), neither is a device.
_DEVICE = re.compile(r"(auto|cpu|mps|cuda(:[0-9]{1,3})?)")


def check_device(device: object) -> str:
    """`device` when it is a valid device string, else `ValueError` naming it."""
    if not isinstance(device, str) or not _DEVICE.fullmatch(device):
        raise ValueError(f"device must be {DEVICE_CHOICES}, got {device!r}")
    return device
