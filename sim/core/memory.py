"""Peak resident memory of this process, per stage (Linux ``/proc``; None elsewhere).

``rss_mb()`` is the resident size now (what a stage starts from: its peak includes it);
``reset_peak_rss()`` then ``peak_rss_mb()`` gives the peak of what ran in between: the
kernel's high-water mark (``VmHWM``) is reset by writing 5 to ``/proc/self/clear_refs``.
Where that is not allowed, the reset does nothing and the figure is the process's peak
so far (an upper bound).

``release_free_memory()`` hands memory that freed Python objects, arrays and Arrow
buffers leave in the allocators back to the system (``gc``, Arrow's pool, glibc's
``malloc_trim``), so that what one stage or part freed does not count in the next one's
peak.
"""
from __future__ import annotations

import gc

__all__ = ["peak_rss_mb", "release_free_memory", "reset_peak_rss", "rss_mb"]


def _status_mb(key: str) -> float | None:
    """A ``/proc/self/status`` memory field (kB there) in MiB, or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def peak_rss_mb() -> float | None:
    """The process's peak resident set size (MiB) since start or the last reset."""
    return _status_mb("VmHWM:")


def rss_mb() -> float | None:
    """The process's resident set size now (MiB)."""
    return _status_mb("VmRSS:")


def reset_peak_rss() -> bool:
    """Reset the peak to the current resident size; False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def release_free_memory(collect: bool = True) -> bool:
    """Hand freed memory back to the system: collect garbage (unless ``collect=False``,
    cheap enough to call after every part), release what Arrow's memory pool keeps of
    freed buffers (mimalloc/jemalloc hold it for reuse), and trim glibc's heap
    (``malloc_trim(0)``).  False where there is no glibc (the rest still runs)."""
    import sys

    if collect:
        gc.collect()
    pa = sys.modules.get("pyarrow")
    if pa is not None:
        pa.default_memory_pool().release_unused()
    try:
        import ctypes

        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False
