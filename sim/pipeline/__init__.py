"""Pipeline: drives the stages.  The main job (:mod:`~sim.pipeline.main`), defense
evaluation (:mod:`~sim.pipeline.evaluate`), sweeps (:mod:`~sim.pipeline.sweep`) and the
in-memory simulation for notebooks (:mod:`~sim.pipeline.api`)."""
