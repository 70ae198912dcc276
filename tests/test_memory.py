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
