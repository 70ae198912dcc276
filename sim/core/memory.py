"""Peak resident memory of this process, per stage (Linux ``/proc``; None elsewhere).

``reset_peak_rss()`` then ``peak_rss_mb()`` gives the peak of what ran in between: the
kernel's high-water mark (``VmHWM``) is reset by writing 5 to ``/proc/self/clear_refs``.
Where that is not allowed, the reset does nothing and the figure is the process's peak
so far (an upper bound).
"""
from __future__ import annotations

__all__ = ["peak_rss_mb", "reset_peak_rss"]


def peak_rss_mb() -> float | None:
    """The process's peak resident set size (MiB) since start or the last reset."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset the peak to the current resident size; False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
