"""sim.core.memory: the per-stage peak RSS that `reidsim run` records."""
import sys

import numpy as np
import pytest

from sim.core.memory import peak_rss_mb, reset_peak_rss


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_peak_follows_an_allocation_and_resets():
    if not reset_peak_rss():
        pytest.skip("this kernel does not allow resetting the peak (clear_refs)")
    base = peak_rss_mb()
    a = np.ones(40_000_000)  # 305 MiB, touched
    a[::512] += 1
    high = peak_rss_mb()
    del a
    assert high - base > 250
    assert reset_peak_rss()
    assert peak_rss_mb() < high - 250  # the freed block no longer counts


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; glibc's malloc_trim")
def test_release_free_memory_returns_the_freed_heap():
    """Many freed small blocks below a live one stay in glibc's heap (resident) until
    release_free_memory trims it: what one stage freed stops counting in the next."""
    from sim.core.memory import release_free_memory

    def rss_mb():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS"))

    blocks = [bytes(1000) + bytes([i % 256]) for i in range(200_000)]  # ~200 MiB of malloc'd objects
    live = bytes(2000) + b"x"  # allocated above them: the heap cannot simply shrink from the top
    del blocks
    held = rss_mb()
    assert release_free_memory()
    assert rss_mb() < held - 100
    assert live
