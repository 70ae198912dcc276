"""The assumption ledger: every parameter that moves a headline figure, with its value,
a plausible range and its source (or the word "assumption").

Declared once here, read by the main job (``run.json["ledger"]``), the sensitivity
sweep (:mod:`sim.pipeline.sensitivity`, which moves the headline across each range
whose ``method`` it knows) and the report (a table beside the headline), so nobody
quotes one number without seeing what it rests on.

Each entry names a scenario field by its dotted path (``section.field``); its value in
a run is read from that run's scenario (:func:`ledger_rows`), never from the defaults.
"""
from __future__ import annotations

from dataclasses import dataclass

from sim.core.errors import ConfigError

#: how the sensitivity sweep moves a parameter (see :mod:`sim.pipeline.sensitivity`)
METHODS = {
    "register": "the register is rebuilt with the value (same persons); inference is reused and "
                "only the linkage re-runs",
    "prefix": "the first d days of the same release (inference per window, already computed)",
    "thinning": "pings are thinned to the lower rate (seeded subsample); only lower values can be "
                "reached this way",
    "none": "not swept (changing it needs a new population or release)",
}


@dataclass(frozen=True)
class Assumption:
    """One ledger row.

    path : dotted scenario field, e.g. ``"register.employer_coverage"``.
    low, high : plausible range (same unit as the field).
    source : citation, or text starting with "assumption" when there is none.
    drives : what the parameter moves, in words.
    method : how the sensitivity sweep varies it (a key of :data:`METHODS`).
    """

    path: str
    low: float
    high: float
    source: str
    drives: str
    method: str = "none"

    def __post_init__(self):
        if self.method not in METHODS:
            raise ConfigError(f"ledger method {self.method!r} of {self.path} is not one of {sorted(METHODS)}.")
        if not self.low <= self.high:
            raise ConfigError(f"ledger range of {self.path} is empty: low {self.low} > high {self.high}.")

    @property
    def sourced(self) -> bool:
        return not self.source.lower().startswith("assumption")


LEDGER: tuple[Assumption, ...] = (
    Assumption("register.coverage", 0.5, 1.0,
               "assumption: people-search brokers advertise records on most US adults; no audited figure",
               "who can be named at all (the ceiling)", "register"),
    Assumption("register.employer_coverage", 0.2, 1.0,
               "assumption: share of listed workers whose employer a broker's record carries",
               "the exact (home, work) join; less the hierarchical rung", "register"),
    Assumption("register.error_rate", 0.0, 0.1,
               "assumption: share of listed home addresses that are wrong or stale",
               "the ceiling", "register"),
    Assumption("pings.median_pings_per_day", 3.0, 90.0,
               "DESIGN §9: Gravy/Venntel ~17 signals per device-day; Kochava claimed > 90 daily "
               "transactions per device",
               "how fast home and work are found", "thinning"),
    Assumption("pings.days", 1.0, 120.0,
               "NYT 2019: pings over several months; the headline is given per day observed",
               "how much evidence the attacker has", "prefix"),
    Assumption("population.device_share", 0.05, 0.3,
               "DESIGN §9: SafeGraph ~10 % of US devices; sampling ~7.5 %",
               "panel size: unicity and top-N (see their panel-size curves); not the linkage, "
               "which is per device", "none"),
    Assumption("pings.silent_day_prob", 0.0, 0.5,
               "assumption: share of device-days with no ping (apps not opened, location off)",
               "how fast home and work are found", "none"),
    Assumption("register.home_coverage", 0.3, 1.0,
               "assumption: share of listed persons whose home address the records carry (1 for "
               "people-search and voter files)",
               "home-based rungs", "register"),
    Assumption("world.single_unit_share", 0.5, 0.85,
               "approximate, ACS 2019 DP04: 1-unit detached 61.7 % + attached 5.9 % + mobile homes "
               "6.0 % of housing units",
               "how many people share a home address", "none"),
    Assumption("pings.indoor_bias_median_m", 5.0, 40.0,
               "assumption; context: Zandbergen 2009 median errors GPS ~8 m, Wi-Fi ~74 m, cell ~600 m",
               "whether the inferred home is the right building", "none"),
    Assumption("population.smartphone_share_65_plus", 0.5, 0.8,
               "Pew Research 2021: 61 % of US adults 65+ own a smartphone",
               "who is in the panel", "none"),
    Assumption("population.employment_rate", 0.65, 0.78,
               "approximate, BLS CPS 2019: about 71 % of people aged 16-64 employed",
               "who has a workplace to be found", "none"),
    Assumption("population.night_shift_share", 0.03, 0.16,
               "BLS, Job Flexibilities and Work Schedules 2017-2018: roughly 4 % of wage and salary "
               "workers usually work night shifts and 16 % any non-daytime shift (approximate)",
               "workers whose home looks like work", "none"),
)


def ledger_entry(path: str) -> Assumption:
    for a in LEDGER:
        if a.path == path:
            return a
    raise ConfigError(f"no ledger entry {path!r}; known: {[a.path for a in LEDGER]}.")


def scenario_value(scenario, path: str):
    """The value in force of the dotted field ``path`` in ``scenario`` (a Scenario or its
    ``to_dict()``): a register field left to its profile reads the profile's value."""
    obj = scenario if isinstance(scenario, dict) else scenario.to_dict()
    for part in path.split("."):
        obj = obj[part]
    return obj


def ledger_rows(scenario, extra: tuple = ()) -> list[dict]:
    """The ledger as JSON-ready rows with the run's values: path, value, low, high,
    source, sourced, drives, method (``extra``: more :class:`Assumption` rows)."""
    rows = []
    for a in LEDGER + tuple(extra):
        try:
            v = scenario_value(scenario, a.path)
        except (KeyError, AttributeError):
            v = None
        rows.append({"path": a.path, "value": v, "low": a.low, "high": a.high, "source": a.source,
                     "sourced": a.sourced, "drives": a.drives, "method": a.method})
    return rows
