"""Report: figures (:mod:`~sim.report.plots`) and the report document
(:mod:`~sim.report.document`), which reads only a run folder's ``run.json`` and tables."""
from sim.report.document import write_report

__all__ = ["write_report"]
