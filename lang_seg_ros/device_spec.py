"""What a device setting may say: the syntax half of the one device rule, without torch.

`lang_seg_ros.model.resolve_device` applies it and then asks torch whether the device exists;
the node checks parameters with it before torch is loaded.
"""
from __future__ import annotations

import os
import re

__all__ = ["DEVICE_CHOICES", "check_device", "cpu_flags", "cpu_has_native_bf16", "quiet_openmp"]

#: What a device setting may say, for help texts and messages.
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"
# ASCII digits only: "cuda:²" passes str.isdigit and "cuda:٣" int(), neither is a device.
_DEVICE = re.compile(r"(auto|cpu|mps|cuda(:[0-9]{1,3})?)")


def check_device(device: object) -> str:
    """`device` when it is a valid device string, else `ValueError` naming it."""
    if not isinstance(device, str) or not _DEVICE.fullmatch(device):
        raise ValueError(f"device must be {DEVICE_CHOICES}, got {device!r}")
    return device


def quiet_openmp() -> None:
    """OpenMP threads that spin while they wait (libgomp's default) slow torch down many-fold when
    the CPU is shared with other busy processes (measured: a 236 ms forward took 1,041 ms on a busy
    2-core machine). Every entry point (node, CLI) calls this before torch loads; a value the user
    set is kept."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


#: /proc/cpuinfo flags of CPUs that compute bf16 natively: x86 AVX-512 BF16 or AMX, Arm's BF16.
_NATIVE_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}
#: ATEN_CPU_CAPABILITY / ONEDNN_MAX_CPU_ISA values that keep torch / oneDNN below their bf16 kernels.
_BELOW_AVX512 = re.compile(r"(default|sse\w*|avx|avx2\w*|avx512_core(_vnni)?)", re.IGNORECASE)


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU's feature flags (x86 `flags`, Arm `Features`) from /proc/cpuinfo; empty when unknown."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read(1 << 20)
        except OSError:
            return set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def cpu_has_native_bf16(flags: set[str] | None = None, env: dict[str, str] | None = None) -> bool:
    """True when the CPU runs bf16 in hardware (AVX-512 BF16 / AMX, Arm BF16) and torch / oneDNN
    are not held below those kernels (ATEN_CPU_CAPABILITY / ONEDNN_MAX_CPU_ISA): elsewhere bf16 is
    emulated, measured 33x slower than fp32 on an AVX2-only CPU. Read from the CPU, never guessed."""
    env = os.environ if env is None else env
    flags = cpu_flags() if flags is None else flags
    if any(_BELOW_AVX512.fullmatch(env.get(name, "") or "-") for name in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")):
        return False
    return bool(flags & _NATIVE_BF16_FLAGS)
