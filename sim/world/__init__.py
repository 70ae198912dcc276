"""World stage: the geography (buildings nested in blocks < tracts < districts), its
CRS helpers and the numba zone lookup.

* :mod:`sim.world.model` — :class:`World`, zone lookup, save/load;
* :mod:`sim.world.synthetic` — the built-in polycentric metro;
* :mod:`sim.world.polygons` — a real polygon file as tracts;
* :mod:`sim.world.crs` — CRS helpers; :mod:`sim.world.build` — :func:`build_world`.
"""
from sim.world.build import build_world
from sim.world.crs import local_crs, project_from_latlon, project_to_latlon
from sim.world.model import World
from sim.world.polygons import world_from_polygons
from sim.world.synthetic import synthetic_world

__all__ = ["World", "build_world", "synthetic_world", "world_from_polygons", "local_crs",
           "project_from_latlon", "project_to_latlon"]
