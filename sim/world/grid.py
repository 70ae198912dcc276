"""A square grid as a zone geography: what the attacker ladder needs when real data have
no census zones (``reidsim audit --register``).

:class:`GridZones` answers ``locate(x_m, y_m, level)`` as a :class:`~sim.world.model.World`
does, with one zone per grid cell of ``cell_m`` metres anchored at the CRS origin:
cell ``(ix, iy) = (floor(x_m / cell_m), floor(y_m / cell_m))``.  Every level name maps to
the same cells (a grid has one level).

Packing
-------
A cell is one non-negative int64 code::

    code = (ix + 2**30) * 2**31 + (iy + 2**30)

for ``-2**30 <= ix, iy < 2**30``, so ``0 <= code < 2**62``; :meth:`GridZones.unpack`
inverts it.  The range covers ``|x_m|, |y_m| < 2**30 * cell_m`` (about 1.07e9 cells
each way: ±1,073,741 km with 1 m cells), far beyond any projected CRS; a finite point
outside it raises :class:`~sim.core.errors.InputError`.  A finite point never gets -1
(which the ladder reads as "outside the area"); a NaN or infinite one does.

Limits: a cell is not a neighbourhood.  Two points a metre apart on either side of a cell
edge fall in different cells, so a home near an edge is matched to the neighbour cell's
residents.
"""
from __future__ import annotations

import math

import numpy as np

from sim.core.constants import LEVELS
from sim.core.errors import ConfigError, InputError

__all__ = ["GridZones", "CELL_OFFSET", "CELL_RANGE"]

#: added to each cell index so that it is non-negative
CELL_OFFSET = 2 ** 30
#: number of cell indices per axis: -CELL_OFFSET <= ix, iy < CELL_RANGE - CELL_OFFSET
CELL_RANGE = 2 ** 31


class GridZones:
    """Square grid cells of ``cell_m`` metres as zones (see the module docstring).

    >>> g = GridZones(250.0)
    >>> codes = g.locate([10.0, -10.0], [260.0, 260.0], "building")
    >>> g.unpack(codes)
    (array([ 0, -1]), array([1, 1]))
    """

    def __init__(self, cell_m: float):
        ok = isinstance(cell_m, (int, float, np.integer, np.floating)) and not isinstance(cell_m, bool)
        if not ok or not math.isfinite(float(cell_m)) or float(cell_m) <= 0:
            raise ConfigError(f"cell_m must be a finite cell size in metres > 0, got {cell_m!r}; e.g. 250.")
        self.cell_m = float(cell_m)

    def __repr__(self) -> str:
        return f"GridZones(cell_m={self.cell_m:g})"

    def cells(self, x_m, y_m) -> tuple[np.ndarray, np.ndarray]:
        """``(ix, iy)`` int64 cell indices of finite points (floor of x/cell_m, y/cell_m)."""
        x = np.asarray(x_m, dtype=np.float64).ravel()
        y = np.asarray(y_m, dtype=np.float64).ravel()
        if x.shape != y.shape:
            raise InputError(f"x_m has {x.shape} values but y_m has {y.shape}.")
        return np.floor(x / self.cell_m).astype(np.int64), np.floor(y / self.cell_m).astype(np.int64)

    @staticmethod
    def pack(ix, iy) -> np.ndarray:
        """Codes of cells ``(ix, iy)``; InputError outside the packable range."""
        ix = np.asarray(ix, dtype=np.int64)
        iy = np.asarray(iy, dtype=np.int64)
        lo, hi = -CELL_OFFSET, CELL_RANGE - CELL_OFFSET
        if ix.size and (ix.min() < lo or ix.max() >= hi or iy.min() < lo or iy.max() >= hi):
            raise InputError(f"cell indices must lie in [{lo}, {hi}); got x from {ix.min()} to {ix.max()} and y "
                             f"from {iy.min()} to {iy.max()}. Are the coordinates projected metres?")
        return (ix + CELL_OFFSET) * np.int64(CELL_RANGE) + (iy + CELL_OFFSET)

    @staticmethod
    def unpack(code) -> tuple[np.ndarray, np.ndarray]:
        """``(ix, iy)`` of codes made by :meth:`pack` (inverse)."""
        code = np.asarray(code, dtype=np.int64)
        return code // CELL_RANGE - CELL_OFFSET, code % CELL_RANGE - CELL_OFFSET

    def locate(self, x_m, y_m, level: str = "building") -> np.ndarray:
        """Cell code (int64, >= 0) of each point; -1 for a NaN or infinite point.

        ``level`` is checked against :data:`sim.core.constants.LEVELS` and otherwise
        ignored: the grid has one level.
        """
        if level not in LEVELS:
            raise ConfigError(f"level must be one of {LEVELS}, got {level!r}.")
        x = np.asarray(x_m, dtype=np.float64).ravel()
        y = np.asarray(y_m, dtype=np.float64).ravel()
        if x.shape != y.shape:
            raise InputError(f"x_m has {x.shape} values but y_m has {y.shape}.")
        out = np.full(len(x), -1, dtype=np.int64)
        ok = np.isfinite(x) & np.isfinite(y)
        if ok.any():
            ix, iy = self.cells(x[ok], y[ok])
            out[ok] = self.pack(ix, iy)
        return out

    def centre(self, code) -> tuple[np.ndarray, np.ndarray]:
        """``(x_m, y_m)`` of the centres of cells ``code``."""
        ix, iy = self.unpack(code)
        return (ix + 0.5) * self.cell_m, (iy + 0.5) * self.cell_m
