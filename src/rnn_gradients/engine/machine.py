"""Where a run trained, as far as its numbers depend on it: the CPU, the instruction set torch's kernels use, and
the MKL and oneDNN settings.

MKL and oneDNN choose their kernels by instruction set and cache sizes, so the same spec trained on another CPU
takes another floating-point path, and training amplifies a difference of one rounding into another outcome
(benchmarks/bench_reproducibility.py measures it). ``runtime.json`` records these facts beside each run; on the
same machine and settings every table is bit-reproducible, on another only the verdicts are expected to hold.
"""

from __future__ import annotations

import ctypes
import os
import platform
import re
from functools import cache
from pathlib import Path

import torch

NUMERICS_VARIABLES: tuple[str, ...] = (
    "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY",
)  # fmt: skip
"""Environment variables that change which kernels MKL, oneDNN and ATen run (unset: the library's own choice)."""


@cache
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what the platform module says)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(encoding="utf-8", errors="replace"), re.M)
        if match:
            return match.group(1).strip()
    return platform.processor() or platform.machine() or "unknown"


@cache
def library_versions() -> str:
    """The MKL and oneDNN versions torch was built with, from ``torch.__config__.show()``."""
    shown = torch.__config__.show()
    mkl = re.search(r"Math Kernel Library Version (\S+)", shown)
    onednn = re.search(r"MKL-DNN (v\S+)", shown)
    return f"MKL {mkl.group(1) if mkl else 'none'}, oneDNN {onednn.group(1) if onednn else 'none'}"


def numerics_settings() -> str:
    """The variables of :data:`NUMERICS_VARIABLES` that are set, as ``NAME=value`` joined by spaces ('' if none)."""
    return " ".join(f"{name}={os.environ[name]}" for name in NUMERICS_VARIABLES if name in os.environ)


def cpu_capability() -> str:
    """The instruction set ATen's CPU kernels were dispatched to (e.g. AVX2, AVX512)."""
    return str(torch.backends.cpu.get_cpu_capability())


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's ceiling on 64-bit systems


@cache
def keep_freed_memory() -> bool:
    """Let glibc keep freed memory for reuse instead of handing it back to the kernel; True where it took.

    Every training step allocates and frees a few (T, B, H) buffers of about 1 MB. By default glibc serves such
    blocks by ``mmap`` and unmaps them when freed, so each step touches fresh pages and pays a page fault per
    4 KB. Raising the mmap threshold to glibc's maximum (32 MB) and never trimming the heap keeps them in the
    process: a step of the vanilla cells with a normalization, whose loops fill more such buffers a row at a
    time, became 1.2-1.5× faster, the rest 1.0-1.1× (``benchmarks/bench_levers.py``, lever 4). The peak memory
    is unchanged (the blocks are reused, not added), the arithmetic too (torch aligns every tensor to 64 bytes
    either way). Elsewhere (macOS, musl) it
    does nothing and returns False.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settings = ((_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX), (_M_TRIM_THRESHOLD, 2**31 - 1), (_M_TOP_PAD, 64 << 20))
    return all(mallopt(option, value) == 1 for option, value in settings)
