"""Number formatting shared by the report, the figures, the headline and the scores.

Shares are fractions (0.155 for 15.5 %) and are printed as percentages.  Every
function takes anything ``float()`` accepts (numpy scalars, ints, strings of numbers)
and prints ``"n/a"`` for what is missing, not a number or infinite, so a table cell or
a sentence never shows ``nan``.

The small-value rule
--------------------
A percentage is printed with ``nd`` decimals, except a non-zero one so small that it
would print as zero: that one keeps two significant digits instead (``0.0004`` ->
``"0.04"``, not ``"0.0"``), so "none" and "almost none" never look the same.  "So
small" means ``0 < |x| < small`` with ``x`` in percent; ``small`` defaults to half a
unit of the last decimal shown (``0.05`` for ``nd=1``), the largest value that would
round to zero.

>>> pct(0.155), pct_number(0.155), pct_range(0.118, 0.2), pct_ci(0.155, 0.118, 0.2)
('15.5%', '15.5', '11.8–20.0%', '15.5% (11.8–20.0%)')
>>> pct_ci(0.155, 0.118, 0.2, label="95% CI")
'15.5% (95% CI 11.8–20.0%)'
>>> num(1234.5), num_range(2, 30), count(1234), num_auto(0.012345), pct(0.0004), pct(float("nan"))
('1,234', '2–30', '1,234', '0.0123', '0.04%', 'n/a')
"""
from __future__ import annotations

import math

__all__ = ["NA", "is_finite", "to_float", "pct_number", "pct", "pct_range", "pct_ci", "num", "num_range",
           "count", "num_auto", "value_interval"]

#: what every formatter prints for a missing or non-finite value
NA = "n/a"


def is_finite(v) -> bool:
    """True if ``v`` converts to a finite float (False for None, NaN, inf, text)."""
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def to_float(v) -> float:
    """``float(v)``, or NaN when ``v`` does not convert (None, text, ...)."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _pct_digits(v, nd: int, small) -> str:
    x = 100 * float(v)
    lim = 0.5 * 10 ** -nd if small is None else float(small)
    if x != 0 and abs(x) < lim:  # would print as 0: keep two significant digits
        return f"{x:.2g}"
    return f"{x:.{nd}f}"


def pct_number(v, nd: int = 1, *, small=None) -> str:
    """A share as a bare percentage number: ``0.155 -> "15.5"`` (no ``%`` sign).

    ``nd`` decimals with the module's small-value rule (``0.0004 -> "0.04"``;
    ``small``, in percent, overrides its threshold); ``"n/a"`` if not finite.
    """
    return _pct_digits(v, nd, small) if is_finite(v) else NA


def pct(v, nd: int = 1, *, small=None) -> str:
    """A share as a percentage with its sign: ``0.155 -> "15.5%"``; ``"n/a"`` if not finite."""
    return f"{_pct_digits(v, nd, small)}%" if is_finite(v) else NA


def pct_range(lo, hi, nd: int = 1, *, small=None) -> str:
    """An interval of shares: ``(0.118, 0.2) -> "11.8–20.0%"`` (en dash, one ``%``);
    ``"n/a"`` unless both ends are finite."""
    if not (is_finite(lo) and is_finite(hi)):
        return NA
    return f"{_pct_digits(lo, nd, small)}–{_pct_digits(hi, nd, small)}%"


def pct_ci(v, lo, hi, nd: int = 1, *, label: str = "", small=None) -> str:
    """A share and its interval: ``"15.5% (11.8–20.0%)"``.

    ``label`` goes before the interval inside the brackets: ``label="95% CI"`` gives
    ``"15.5% (95% CI 11.8–20.0%)"``.  Missing parts print as ``"n/a"``
    (``"15.5% (n/a)"``; the label is dropped when the interval is missing).
    """
    rng = pct_range(lo, hi, nd, small=small)
    inner = f"{label} {rng}" if label and rng != NA else rng
    return f"{pct(v, nd, small=small)} ({inner})"


def num(v, nd: int = 0) -> str:
    """A number with thousands separators and ``nd`` decimals: ``1234.5 -> "1,234"``
    (``nd=0``; rounds half to even like ``format``); ``"n/a"`` if not finite."""
    return f"{float(v):,.{nd}f}" if is_finite(v) else NA


def num_range(lo, hi, nd: int = 0) -> str:
    """An interval of numbers: ``(2, 30) -> "2–30"``; ``"n/a"`` unless both ends are finite."""
    if not (is_finite(lo) and is_finite(hi)):
        return NA
    return f"{float(lo):,.{nd}f}–{float(hi):,.{nd}f}"


def count(v) -> str:
    """A count with thousands separators: ``1234 -> "1,234"`` (truncated to an int);
    ``"n/a"`` if not finite."""
    return f"{int(float(v)):,}" if is_finite(v) else NA


def num_auto(v) -> str:
    """A number with digits chosen by its size: ``>= 100``: no decimals and thousands
    separators (``"1,234"``); ``>= 10``: one decimal (``"12.3"``); smaller: three
    significant digits (``"1.23"``, ``"0.0123"``); ``"n/a"`` if not finite."""
    if not is_finite(v):
        return NA
    v = float(v)
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"


def value_interval(v, lo, hi, nd: int = 3, unit: str = "") -> str:
    """A value and its interval in square brackets, all with ``nd`` decimals and no
    thousands separators: ``(0.5, 0.4, 0.6) -> "0.500 [0.400, 0.600]"``; with
    ``nd=0, unit="m"``: ``"250 m [200, 300]"``.  A missing value gives ``"n/a"``;
    a missing bound prints as ``"n/a"`` inside the brackets."""
    if not is_finite(v):
        return NA

    def f(x):
        return f"{float(x):.{nd}f}" if is_finite(x) else NA

    return f"{f(v)}{' ' + unit if unit else ''} [{f(lo)}, {f(hi)}]"
