"""One entry point: the world of a scenario's :class:`~sim.core.config.WorldConfig`."""
from __future__ import annotations

from sim.core.config import WorldConfig
from sim.world.model import World
from sim.world.polygons import world_from_polygons
from sim.world.synthetic import synthetic_world

def build_world(cfg: WorldConfig, seed: int, residents: int | None = None) -> World:
    """The scenario's world: the polygon file if configured, else the synthetic metro."""
    if cfg.polygons:
        return world_from_polygons(cfg.polygons, cfg, seed=seed, residents=residents)
    return synthetic_world(cfg, seed=seed, residents=residents)
