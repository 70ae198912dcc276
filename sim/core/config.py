"""Scenario configuration: dataclasses with defaults, TOML loading and validation.

Every field has a unit in its name or docstring.  ``Scenario.validate()`` checks every
value and raises :class:`~sim.errors.ConfigError` naming the field, the value received,
the allowed range and how to fix it.  Defaults and their sources are documented in
README.md ("Defaults and where they come from").
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path

from sim.core.errors import ConfigError

try:  # Python 3.11+
    import tomllib as _toml
except ModuleNotFoundError:  # pragma: no cover
    import tomli as _toml  # type: ignore


@dataclass
class WorldConfig:
    """The geography.

    residents : people living in the synthetic metro (ignored for a real polygon file
        whose population column is used, unless the column is missing).
    radius_km : radius of the synthetic metro area.
    n_subcentres : sub-centres around the dense core (polycentric density surface).
    residents_per_block, blocks_per_tract, tracts_per_district : target sizes of the
        nested zone levels (block ~ hundreds, tract ~ thousands, district ~ 10^4-10^5).
    jobs_per_resident : jobs in the area per resident.
    anchor_lat_deg, anchor_lon_deg : where the synthetic metro is placed on Earth (its
        centre), so exported lat/lon are valid coordinates.
    utc_offset_h : local time minus UTC in hours (fixed, no daylight saving).
    polygons : optional path of a polygon file (GeoPackage, GeoJSON, shapefile,
        GeoParquet) used as the tract level instead of the synthetic metro.
    population_column, jobs_column : columns of that file (population None = fallback:
        ``residents`` spread over tracts by area).
    assume_crs : CRS to assume when the polygon file has none (e.g. "EPSG:4326").
    """

    residents: int = 200_000
    radius_km: float = 15.0
    n_subcentres: int = 4
    residents_per_block: int = 300
    blocks_per_tract: int = 12
    tracts_per_district: int = 12
    jobs_per_resident: float = 0.5
    anchor_lat_deg: float = 41.88
    anchor_lon_deg: float = -87.63
    utc_offset_h: float = -6.0
    polygons: str | None = None
    population_column: str | None = None
    jobs_column: str | None = None
    assume_crs: str | None = None


@dataclass
class PopulationConfig:
    """Persons, households, work and devices.

    employment_rate : share of persons with a job.
    night_shift_share : share of the employed who work nights (22:00-06:00).
    commute_decay_km : distance-decay scale of the gravity model for workplaces
        (P(work zone) ~ jobs * exp(-distance / commute_decay_km)).
    device_share : share of persons with a device in the broker's panel (broker panels
        cover roughly 5-10 % of a population).
    """

    employment_rate: float = 0.60
    night_shift_share: float = 0.08
    commute_decay_km: float = 6.0
    device_share: float = 0.10


@dataclass
class PingConfig:
    """The ping process and GPS error.

    days : length of the observation window.
    start_date : local date of day 0 (ISO, e.g. "2024-03-04", a Monday).
    median_pings_per_day, rate_sigma : per-device rate ~ lognormal(median, sigma)
        pings per device-day; mean = median * exp(sigma^2/2).
    max_pings_per_day : cap of the per-device rate.
    silent_day_prob : mean probability that a device-day has no ping at all.
    pings_per_session : mean pings per app session (bursts).
    session_gap_s : mean gap between pings within a session, seconds.
    gps_median_accuracy_m, coarse_fix_share, coarse_median_accuracy_m : reported accuracy
        is lognormal around the GPS median, except a share of Wi-Fi/cell fixes around the
        coarse median; positions are perturbed consistently with it.
    travel_speed_kmh, trip_overhead_min : door-to-door travel model for trips.
    """

    days: int = 14
    start_date: str = "2024-03-04"
    median_pings_per_day: float = 12.0
    rate_sigma: float = 1.1
    max_pings_per_day: float = 600.0
    silent_day_prob: float = 0.15
    pings_per_session: float = 3.0
    session_gap_s: float = 90.0
    gps_median_accuracy_m: float = 12.0
    coarse_fix_share: float = 0.10
    coarse_median_accuracy_m: float = 300.0
    travel_speed_kmh: float = 16.0
    trip_overhead_min: float = 5.0


@dataclass
class IdConfig:
    """How the broker publishes device identifiers.

    salt : prepended to the MAID before SHA-256 ("" = unsalted, as sold).
    rotation_days : a new MAID every R days (0 = never).
    daily_reset_prob : probability per device-day that the user resets the MAID.
    """

    salt: str = ""
    rotation_days: int = 0
    daily_reset_prob: float = 0.0


@dataclass
class RegisterConfig:
    """The attacker's auxiliary register (public records anyone can buy).

    coverage : share of residents listed.
    error_rate : share of listed residents whose home address is wrong (another building).
    employer_coverage : share of listed employed residents whose employer is listed.
    """

    coverage: float = 0.90
    error_rate: float = 0.02
    employer_coverage: float = 0.60


@dataclass
class Scenario:
    """A complete, reproducible scenario: one root seed plus all parameters.

    n_devices : devices in the panel; None = ``device_share`` of residents.  When set and
        larger than ``device_share * residents``, the synthetic population grows to
        ``n_devices / device_share`` residents so the panel share stays as configured.
    block_devices : devices generated per block (memory bound; never changes output).
    """

    name: str = "default"
    seed: int = 42
    n_devices: int | None = None
    block_devices: int = 50_000
    world: WorldConfig = field(default_factory=WorldConfig)
    population: PopulationConfig = field(default_factory=PopulationConfig)
    pings: PingConfig = field(default_factory=PingConfig)
    ids: IdConfig = field(default_factory=IdConfig)
    register: RegisterConfig = field(default_factory=RegisterConfig)

    # ------------------------------------------------------------ derived
    @property
    def residents(self) -> int:
        r = int(self.world.residents)
        if self.n_devices is not None:
            r = max(r, int(math.ceil(self.n_devices / self.population.device_share)))
        return r

    @property
    def devices(self) -> int:
        if self.n_devices is not None:
            return int(self.n_devices)
        return int(round(self.residents * self.population.device_share))

    @property
    def utc_offset_s(self) -> int:
        return int(round(self.world.utc_offset_h * 3600))

    @property
    def start_s(self) -> int:
        """UTC seconds of local midnight opening day 0."""
        d = _dt.date.fromisoformat(self.pings.start_date)
        midnight_utc = int(_dt.datetime(d.year, d.month, d.day, tzinfo=_dt.timezone.utc).timestamp())
        return midnight_utc - self.utc_offset_s

    # ------------------------------------------------------------ I/O
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def config_hash(self) -> str:
        """Short SHA-256 of the canonical JSON of the whole config (incl. seed)."""
        s = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(s.encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, d: dict) -> "Scenario":
        d = dict(d)
        sub = {
            "world": WorldConfig, "population": PopulationConfig, "pings": PingConfig,
            "ids": IdConfig, "register": RegisterConfig,
        }
        kwargs = {}
        known = {f.name for f in fields(cls)}
        for k, v in d.items():
            if k not in known:
                raise ConfigError(
                    f"unknown config key {k!r}; allowed top-level keys: {sorted(known)}"
                )
            if k in sub:
                if not isinstance(v, dict):
                    raise ConfigError(f"[{k}] must be a table, got {v!r}")
                allowed = {f.name for f in fields(sub[k])}
                bad = set(v) - allowed
                if bad:
                    raise ConfigError(
                        f"unknown key(s) {sorted(bad)} in [{k}]; allowed: {sorted(allowed)}"
                    )
                kwargs[k] = sub[k](**v)
            else:
                kwargs[k] = v
        return cls(**kwargs).validate()

    @classmethod
    def from_toml(cls, path) -> "Scenario":
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"config file {str(p)!r} does not exist; check the path.")
        try:
            d = _toml.loads(p.read_text())
        except Exception as e:  # tomllib.TOMLDecodeError
            raise ConfigError(f"config file {str(p)!r} is not valid TOML: {e}") from e
        d.pop("sweep", None)
        return cls.from_dict(d.get("scenario", d))

    def replace(self, **changes) -> "Scenario":
        """A copy with top-level fields or ``section__field`` values changed."""
        d = self.to_dict()
        for k, v in changes.items():
            if "__" in k:
                s, f = k.split("__", 1)
                if s not in d or not isinstance(d[s], dict):
                    raise ConfigError(f"unknown config section {s!r} in {k!r}")
                d[s][f] = v
            else:
                d[k] = v
        return Scenario.from_dict(d)

    # ------------------------------------------------------------ validation
    def validate(self) -> "Scenario":
        _str(self, "name", allow_none=False)
        for f in ("polygons", "population_column", "jobs_column", "assume_crs"):
            _str(self.world, f, allow_none=True, sec="world")
        if self.world.assume_crs is not None:
            from pyproj import CRS
            from pyproj.exceptions import CRSError as _PCRSError

            try:
                CRS.from_user_input(self.world.assume_crs)
            except _PCRSError as e:
                raise ConfigError(
                    f"world.assume_crs {self.world.assume_crs!r} is not a CRS pyproj knows ({e}); "
                    "use e.g. 'EPSG:4326'"
                ) from None
        _int(self, "seed", lo=0, hi=2**63 - 1)
        if self.n_devices is not None:
            _int(self, "n_devices", lo=1, hi=10**9)
        _int(self, "block_devices", lo=1, hi=10**8)
        w = self.world
        _int(w, "residents", lo=100, hi=10**9, sec="world")
        _num(w, "radius_km", lo=0.5, hi=500, sec="world")
        _int(w, "n_subcentres", lo=0, hi=50, sec="world")
        _int(w, "residents_per_block", lo=5, hi=10**6, sec="world")
        _int(w, "blocks_per_tract", lo=1, hi=10**4, sec="world")
        _int(w, "tracts_per_district", lo=1, hi=10**4, sec="world")
        _num(w, "jobs_per_resident", lo=0.01, hi=100, sec="world")
        _num(w, "anchor_lat_deg", lo=-80, hi=80, sec="world")
        _num(w, "anchor_lon_deg", lo=-180, hi=180, sec="world")
        _num(w, "utc_offset_h", lo=-12, hi=14, sec="world")
        p = self.population
        _num(p, "employment_rate", lo=0, hi=1, sec="population")
        _num(p, "night_shift_share", lo=0, hi=1, sec="population")
        _num(p, "commute_decay_km", lo=0.1, hi=1000, sec="population")
        _num(p, "device_share", lo=1e-6, hi=1, sec="population", lo_open=True)
        g = self.pings
        _int(g, "days", lo=1, hi=3660, sec="pings")
        try:
            _dt.date.fromisoformat(g.start_date)
        except (TypeError, ValueError):
            raise ConfigError(
                f"pings.start_date must be an ISO date like '2024-03-04', got {g.start_date!r}"
            ) from None
        _num(g, "median_pings_per_day", lo=0.01, hi=10_000, sec="pings")
        _num(g, "rate_sigma", lo=0, hi=5, sec="pings")
        _num(g, "max_pings_per_day", lo=1, hi=20_000, sec="pings")
        _num(g, "silent_day_prob", lo=0, hi=0.99, sec="pings")
        _num(g, "pings_per_session", lo=1, hi=1000, sec="pings")
        _num(g, "session_gap_s", lo=1, hi=3600, sec="pings")
        _num(g, "gps_median_accuracy_m", lo=0.5, hi=10_000, sec="pings")
        _num(g, "coarse_fix_share", lo=0, hi=1, sec="pings")
        _num(g, "coarse_median_accuracy_m", lo=0.5, hi=100_000, sec="pings")
        _num(g, "travel_speed_kmh", lo=1, hi=300, sec="pings")
        _num(g, "trip_overhead_min", lo=0, hi=600, sec="pings")
        i = self.ids
        if not isinstance(i.salt, str):
            raise ConfigError(f"ids.salt must be a string, got {i.salt!r}")
        _int(i, "rotation_days", lo=0, hi=10**5, sec="ids")
        _num(i, "daily_reset_prob", lo=0, hi=1, sec="ids")
        r = self.register
        _num(r, "coverage", lo=0, hi=1, sec="register")
        _num(r, "error_rate", lo=0, hi=1, sec="register")
        _num(r, "employer_coverage", lo=0, hi=1, sec="register")
        if self.n_devices is not None and self.n_devices > self.residents:
            raise ConfigError("n_devices exceeds residents; lower n_devices or raise world.residents")
        if self.devices < 1:
            raise ConfigError(
                f"the scenario has no devices (residents={self.residents}, "
                f"device_share={p.device_share}); raise population.device_share or set n_devices"
            )
        return self


def _name(sec, f):
    return f"{sec}.{f}" if sec else f


def _str(obj, f, allow_none, sec=""):
    v = getattr(obj, f)
    if v is None and allow_none:
        return
    if not isinstance(v, str):
        what = "a string or unset" if allow_none else "a string"
        raise ConfigError(f"{_name(sec, f)} must be {what}, got {v!r}")


def _int(obj, f, lo, hi, sec=""):
    v = getattr(obj, f)
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, float) and v.is_integer():
            setattr(obj, f, int(v))
            v = int(v)
        else:
            raise ConfigError(f"{_name(sec, f)} must be an integer in [{lo}, {hi}], got {v!r}")
    if not lo <= v <= hi:
        raise ConfigError(f"{_name(sec, f)} must be in [{lo}, {hi}], got {v}; choose a value in that range")


def _num(obj, f, lo, hi, sec="", lo_open=False):
    v = getattr(obj, f)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ConfigError(f"{_name(sec, f)} must be a finite number in [{lo}, {hi}], got {v!r}")
    if (v <= lo if lo_open else v < lo) or v > hi:
        b = "(" if lo_open else "["
        raise ConfigError(f"{_name(sec, f)} must be in {b}{lo}, {hi}], got {v}; choose a value in that range")
    setattr(obj, f, float(v))


DEFAULT = Scenario()
