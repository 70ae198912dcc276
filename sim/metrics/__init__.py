"""Metrics: scoring inference against the truth (:mod:`~sim.metrics.score`), the utility
of a defended release (:mod:`~sim.metrics.utility`) and the generator's calibration
statistics (:mod:`~sim.metrics.calibration`)."""
