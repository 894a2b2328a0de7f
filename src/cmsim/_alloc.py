"""Optional allocator policy for large numeric temporaries (glibc only).

On the KVM guests cmsim is developed on, glibc returns large FFT temporaries to the OS after each
call and faults them in again on the next one; keeping them in the heap makes ``oaconvolve``
1.25-3.1x faster (``docs/benchmarks.md``). :func:`tune_allocator` raises glibc's mmap and trim
thresholds through ``mallopt``. It is a no-op (returning False) on other C libraries and
platforms. The environment equivalent is
``GLIBC_TUNABLES=glibc.malloc.mmap_threshold=1073741824:glibc.malloc.trim_threshold=1073741824``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["tune_allocator"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_DEFAULT_THRESHOLD = 1 << 30  # 1 GiB; glibc caps the mmap threshold at 32 MiB on 64-bit


def tune_allocator(threshold_bytes: int = _DEFAULT_THRESHOLD) -> bool:
    """Keep large freed blocks in the heap instead of returning them to the OS (glibc only).

    Parameters
    ----------
    threshold_bytes : int
        Requested mmap and trim thresholds [bytes]; glibc clamps the mmap threshold to its
        maximum (32 MiB on 64-bit).

    Returns
    -------
    bool
        True if both ``mallopt`` calls succeeded, False if not on glibc (nothing changed).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    value = int(min(max(threshold_bytes, 0), 2**31 - 1))
    ok_mmap = mallopt(_M_MMAP_THRESHOLD, min(value, 32 * 1024 * 1024)) == 1
    ok_trim = mallopt(_M_TRIM_THRESHOLD, value) == 1
    return bool(ok_mmap and ok_trim)
