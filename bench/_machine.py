"""What the benchmarks print about the machine, so figures are never quoted without it: the CPU's
name and the features that decide its speed (a bf16 speed-up on AVX-512 BF16 is a 33x slow-down
on an AVX2-only CPU)."""
from __future__ import annotations

import platform
from pathlib import Path

from lang_seg_ros.device_spec import cpu_flags, cpu_has_native_bf16

#: The flags a speed figure depends on, in the order printed.
SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_fp16", "bf16", "asimd")


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one) and its speed-relevant flags."""
    name = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = cpu_flags()
    shown = [f for f in SPEED_FLAGS if f in flags] or ["flags unknown"]
    native = "native bf16" if cpu_has_native_bf16(flags) else "no native bf16"
    return f"{name} [{' '.join(shown)}; {native}]"
