"""sim.core.memory: the per-stage peak RSS that `reidsim run` records."""
import sys

import numpy as np
import pytest

from sim.core.memory import peak_rss_mb, reset_peak_rss, rss_mb


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_peak_follows_an_allocation_and_resets():
    if not reset_peak_rss():
        pytest.skip("this kernel does not allow resetting the peak (clear_refs)")
    base = peak_rss_mb()
    a = np.ones(40_000_000)  # 305 MiB, touched
    a[::512] += 1
    high = peak_rss_mb()
    now = rss_mb()
    assert now <= high and now - base > 250  # resident now, and within the peak
    del a
    assert high - base > 250
    assert rss_mb() < now - 250
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


def _task_freeing_small_blocks(n: int = 200_000) -> bytes:
    """Allocates ~200 MiB of small objects, then a small one above them that it returns:
    the blocks are freed as the task returns, below a live block."""
    blocks = [bytes(1000) + bytes([i % 256]) for i in range(n)]
    live = bytes(2000) + b"y"
    assert len(blocks) == n
    return live


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; glibc's malloc_trim")
def test_call_released_hands_back_what_the_task_freed_on_return():
    """The per-part runner's wrapper: what a task freed as it returned (its locals) stops
    being resident; a plain call keeps it (the premise, checked first); the result and
    the task's exceptions pass through unchanged."""
    from sim.core.memory import release_free_memory
    from sim.pipeline.stream import call_released

    def rss_mb():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS"))

    release_free_memory()
    before = rss_mb()
    kept = _task_freeing_small_blocks()
    assert rss_mb() > before + 100  # freed, but still resident under the live block
    release_free_memory()
    before = rss_mb()
    kept2 = call_released(_task_freeing_small_blocks, n=200_000)
    assert rss_mb() < before + 50
    assert kept2 == bytes(2000) + b"y" and kept

    def fails(x):
        raise ValueError(f"bad {x}")

    with pytest.raises(ValueError, match="bad 3"):
        call_released(fails, x=3)
