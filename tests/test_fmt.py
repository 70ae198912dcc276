"""sim.core.fmt: the number formatters of the report, the figures and the headline."""
from __future__ import annotations

import math

import numpy as np
import pytest

from sim.core import fmt

NAN = float("nan")


def test_is_finite_and_to_float():
    for v in (0, 0.0, 1, -2.5, np.float32(3), np.int64(4), "5.5"):
        assert fmt.is_finite(v)
    for v in (None, NAN, math.inf, -math.inf, "text", [1]):
        assert not fmt.is_finite(v)
    assert fmt.to_float("2.5") == 2.5 and fmt.to_float(np.int64(3)) == 3.0
    assert math.isnan(fmt.to_float(None)) and math.isnan(fmt.to_float("text"))
    assert math.isinf(fmt.to_float(math.inf))  # convertible: kept (is_finite tells them apart)


@pytest.mark.parametrize("v, nd, want", [
    (0, 1, "0.0"), (0.0, 0, "0"), (1.0, 1, "100.0"), (1, 0, "100"), (0.155, 1, "15.5"), (0.1234, 2, "12.34"),
    (0.0004, 1, "0.04"),      # would print as 0.0: two significant digits instead
    (0.00049, 1, "0.049"), (0.0005, 1, "0.1"),  # 0.05 % is the threshold for nd=1 (rounds to 0.1)
    (0.004, 0, "0.4"), (0.005, 0, "0"),  # nd=0: threshold 0.5 %; 0.5 % itself rounds half to even
    (1e-9, 1, "1e-07"), (-0.0004, 1, "-0.04"), (-0.2, 1, "-20.0"),
    (np.float64(0.5), 1, "50.0"), (np.int64(1), 1, "100.0"),
])
def test_pct_number_and_pct(v, nd, want):
    assert fmt.pct_number(v, nd) == want
    assert fmt.pct(v, nd) == want + "%"


@pytest.mark.parametrize("v", [None, NAN, math.inf, -math.inf, "text"])
def test_missing_values_print_na(v):
    assert fmt.pct_number(v) == fmt.pct(v) == fmt.num(v) == fmt.count(v) == fmt.num_auto(v) == "n/a"
    assert fmt.pct_range(v, 0.5) == fmt.pct_range(0.5, v) == "n/a"
    assert fmt.num_range(v, 1) == fmt.num_range(1, v) == "n/a"
    assert fmt.value_interval(v, 1, 2) == "n/a"
    assert fmt.NA == "n/a"


def test_pct_small_threshold_override():
    # the headline's rule: two significant digits below 0.1 % (not 0.05 %)
    assert fmt.pct_number(0.0008) == "0.1" and fmt.pct_number(0.0008, small=0.1) == "0.08"
    assert fmt.pct_number(0.001, small=0.1) == "0.1" and fmt.pct_number(0, small=0.1) == "0.0"
    assert fmt.pct_ci(0.0008, 0, 0.0012, small=0.1) == "0.08% (0.0–0.1%)"


def _headline_p(v):  # the inner formatter of sim.pipeline.main.headline_sentence (today)
    v = 100 * float(v)
    return f"{v:.1f}" if v == 0 or v >= 0.1 else f"{v:.2g}"


def test_headline_rule_is_reproduced_exactly():
    vals = [0, 1e-7, 1e-5, 0.0001, 0.0004, 0.0005, 0.00067, 0.00099, 0.000999, 0.001, 0.0013, 0.0127, 0.155,
            0.5, 0.99951, 1.0] + list(np.random.default_rng(0).uniform(0, 0.002, 200))
    for v in vals:
        assert fmt.pct_number(v, small=0.1) == _headline_p(v), v
    r = dict(value=0.155, ci_low=0.118, ci_high=0.2)
    want = f"{_headline_p(r['value'])}% (95% CI {_headline_p(r['ci_low'])}–{_headline_p(r['ci_high'])}%)"
    assert fmt.pct_ci(r["value"], r["ci_low"], r["ci_high"], label="95% CI", small=0.1) == want


def test_pct_range_and_ci():
    assert fmt.pct_range(0.118, 0.2) == "11.8–20.0%"
    assert fmt.pct_range(0, 0.0127) == "0.0–1.3%"
    assert fmt.pct_range(0.0, 1.0, 0) == "0–100%"
    assert fmt.pct_range(0.00001, 0.0004) == "0.001–0.04%"
    assert fmt.pct_ci(0.155, 0.118, 0.2) == "15.5% (11.8–20.0%)"
    assert fmt.pct_ci(0.155, 0.118, 0.2, label="95% CI") == "15.5% (95% CI 11.8–20.0%)"
    assert fmt.pct_ci(0.375, 0.137, 0.694, 0) == "38% (14–69%)"
    assert fmt.pct_ci(0.155, NAN, NAN) == "15.5% (n/a)"
    assert fmt.pct_ci(0.155, None, 0.2, label="95% CI") == "15.5% (n/a)"
    assert fmt.pct_ci(NAN, NAN, NAN) == "n/a (n/a)"
    assert fmt.pct_ci(1.0, 1.0, 1.0) == "100.0% (100.0–100.0%)"


def test_numbers():
    assert fmt.num(1234.5) == "1,234" and fmt.num(1235.5) == "1,236"  # round half to even
    assert fmt.num(0) == "0" and fmt.num(2.345, 2) == "2.35" and fmt.num(-1500) == "-1,500"
    assert fmt.num_range(2, 30) == "2–30" and fmt.num_range(1200, 34980.4) == "1,200–34,980"
    assert fmt.num_range(0.5, 1.25, 1) == "0.5–1.2"
    assert fmt.count(1234) == "1,234" and fmt.count(0) == "0" and fmt.count(np.int64(297)) == "297"
    assert fmt.count(3.9) == "3"  # truncated like int()
    assert fmt.count("12") == "12"


@pytest.mark.parametrize("v, want", [
    (0, "0"), (1.0, "1"), (0.012345, "0.0123"), (1.2345, "1.23"), (9.999, "10"), (10, "10.0"),
    (12.345, "12.3"), (99.94, "99.9"), (100, "100"), (1234.5, "1,234"), (-0.5, "-0.5"), (-250, "-250"),
    (1e-9, "1e-09"),
])
def test_num_auto(v, want):
    assert fmt.num_auto(v) == want


def test_value_interval():
    assert fmt.value_interval(0.5, 0.4, 0.6) == "0.500 [0.400, 0.600]"
    assert fmt.value_interval(250.4, 199.6, 300, nd=0, unit="m") == "250 m [200, 300]"
    assert fmt.value_interval(0, 0, 0) == "0.000 [0.000, 0.000]"
    assert fmt.value_interval(1.0, NAN, None) == "1.000 [n/a, n/a]"
    assert fmt.value_interval(1234.5, 1000, 2000, nd=0, unit="m") == "1234 m [1000, 2000]"  # no separators


def test_report_and_figures_use_the_shared_formatters():
    """No private copy of a formatter is left in the report stage."""
    from sim.report import document, plots

    for name in ("_pct_str", "_pct", "_ci_pct", "_pct_ci", "_ci_num", "_num", "_gen", "_fin", "_n"):
        assert not hasattr(document, name), name
    assert not hasattr(plots, "_f")
    assert document.pct is fmt.pct and plots.to_float is fmt.to_float
