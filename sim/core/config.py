"""Scenario configuration: dataclasses with defaults, TOML loading and validation.

Every field has a unit in its name or docstring.  ``Scenario.validate()`` checks every
value and raises :class:`~sim.core.errors.ConfigError` naming the field, the value received,
the allowed range and how to fix it.  Defaults and their sources are documented in
README.md ("Defaults and where they come from").
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import difflib
import hashlib
import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path

from sim.core.errors import ConfigError

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    import tomli as tomllib  # type: ignore


def load_toml(path, what: str = "config file") -> dict:
    """Parse a TOML file; every failure is a :class:`ConfigError` naming the file.

    ``what`` names the file in messages ("config file", "sweep file", ...).
    """
    p = Path(path)
    if str(path) == "":
        raise ConfigError(f"the {what} path is empty; give the path of a TOML file.")
    if not p.exists():
        raise ConfigError(f"{what} {str(p)!r} does not exist; check the path.")
    if p.is_dir():
        raise ConfigError(f"{what} {str(p)!r} is a folder, not a TOML file; check the path.")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{what} {str(p)!r} is not UTF-8 text ({e}); give a TOML file.") from None
    except OSError as e:
        raise ConfigError(f"{what} {str(p)!r} cannot be read ({e.strerror or e}); check its permissions.") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{what} {str(p)!r} is not valid TOML: {e}") from None


def check_keys(d: dict, allowed, where: str, hints: dict | None = None) -> None:
    """Raise :class:`ConfigError` if ``d`` has keys outside ``allowed``.

    The message names every unknown key, ``where`` it was (e.g. ``"[scenario.pings]"``),
    the closest valid key (difflib) or a hint from ``hints`` (key -> text, e.g. where a
    misplaced key belongs), and the list of valid keys.
    """
    allowed = [str(a) for a in allowed]
    bad = [k for k in d if k not in allowed]
    if not bad:
        return
    parts = []
    for k in bad:
        hint = (hints or {}).get(k)
        close = difflib.get_close_matches(str(k), allowed, n=1, cutoff=0.6)
        if hint:
            parts.append(f"{k!r} ({hint})")
        elif close:
            parts.append(f"{k!r} (did you mean {close[0]!r}?)")
        else:
            parts.append(repr(k))
    noun = "key" if len(bad) == 1 else "keys"
    raise ConfigError(f"unknown {noun} {', '.join(parts)} in {where}; valid keys there: "
                      f"{', '.join(sorted(allowed))}.")


def validate_workers(n) -> int:
    """Number of Dask worker processes: an integer >= 1 (0 workers would wait forever)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"workers must be an integer >= 1, got {n!r}; use e.g. 2 (or the local backend).")
    return n


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

    Housing stock of the synthetic metro (each residential building is an address point
    holding a number of housing units; one household per occupied unit, so a
    single-unit building is a single-household dwelling and the households of a
    multi-unit building share its address point):

    single_unit_share : share of all housing units that are single-household dwellings:
        1-unit structures, detached or attached (ACS 2019 1-year, table DP04 "units in
        structure": 61.7 + 5.9 %), and mobile homes (6.0 %); approximate, about 73.7 % of
        the units DP04 counts.  The other units are in multi-unit buildings of 2-4, 5-19
        and 20+ units in DP04's proportions 7.8 : 9.2 : 9.2.  Within each band the number
        of units per building follows P(n) ~ n^-2 (reproduces DP04's split 2 vs 3-4 and
        5-9 vs 10-19; 20+ capped at 300 units: assumption).
    multi_unit_density_exponent : how fast the multi-unit share rises with local
        residential density (assumption): the odds of a unit being in a band-b structure
        grow as (density)^(k * e_b) with e = 0.5, 1, 1.5 for 2-4, 5-19, 20+, calibrated so
        that the metro-wide shares are the ones above; 0 = independent of density.
    vacancy_rate : share of housing units with no household (approximate, ACS 2019 DP04:
        12.1 % of units vacant, seasonal homes included).  Sets how many units are built
        for the expected number of households.  Polygon worlds derive units from their
        buildings' residents instead (no housing-stock model yet).
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
    single_unit_share: float = 0.737
    multi_unit_density_exponent: float = 1.0
    vacancy_rate: float = 0.12


#: Household sizes 1..7 (7 = 7 or more) and their shares: approximate, ACS 2019 1-year
#: (households by size: 28.0, 34.1, 15.3, 12.8, 5.9, 2.4, 1.5 %).  Shared by the world
#: (how many housing units to build) and the population (households drawn).
HOUSEHOLD_SIZES = (1, 2, 3, 4, 5, 6, 7)
HOUSEHOLD_SIZE_SHARES = (0.280, 0.341, 0.153, 0.128, 0.059, 0.024, 0.015)


def mean_household_size() -> float:
    """Mean of :data:`HOUSEHOLD_SIZE_SHARES` (persons per household, about 2.48)."""
    return float(sum(k * p for k, p in zip(HOUSEHOLD_SIZES, HOUSEHOLD_SIZE_SHARES)) / sum(HOUSEHOLD_SIZE_SHARES))


@dataclass
class PopulationConfig:
    """Persons, households, work and devices.

    Ages come from ACS 2019 age bands (approximate, ACS 2019 1-year, table DP05; see
    ``sim.population.AGE_BANDS``), rescaled so that the under-18 and 65+ shares are:

    share_under_18 : share of persons aged 0-17 (ACS 2019: about 22.3 %).
    share_65_plus : share of persons aged 65 or more (ACS 2019: about 16.5 %).

    Every household has at least one adult (18+); children live only in households with
    an adult.

    employment_rate : share employed among persons aged 16-64 (approximate: BLS CPS 2019
        annual averages, employment-population ratio about 71 % at 16-64 and 60.8 % for all
        16+).  Within 16-64 the rate follows BLS's age profile (16-19: about 31 %, 20-24:
        66 %, 25-54: 80.0 %, 55-64: 64 %; approximate), rescaled to this value.
        Nobody under 16 has a job.
    employment_rate_65_plus : share employed among persons aged 65+ (approximate, BLS CPS
        2019: about 19-20 %).
    night_shift_share : share of the employed who work nights (22:00-06:00).
    commute_decay_km : distance-decay scale of the gravity model for workplaces
        (P(work zone) ~ jobs * exp(-distance / commute_decay_km)).
    device_share : share of persons with a device in the broker's panel (broker panels
        cover roughly 5-10 % of a population).  The panel is drawn from smartphone
        owners only.
    min_device_age : youngest age (years) that can own a device in the panel.  Default
        13: advertising IDs of apps directed to children under 13 may not be collected
        for advertising without parental consent (COPPA, 15 U.S.C. 6501-6506), so
        broker panels are taken to start at 13.
    smartphone_share_13_17, smartphone_share_18_29, smartphone_share_30_49,
    smartphone_share_50_64, smartphone_share_65_plus : share of each age band owning a
        smartphone with an advertising ID (Pew Research Center 2021 Mobile Fact Sheet: 96,
        95, 83, 61 % for 18-29, 30-49, 50-64, 65+; teens: 95 % have access to a
        smartphone, Pew 2018 "Teens, Social Media & Technology").  Ages from
        ``min_device_age`` to 17 use the 13-17 share.
    """

    share_under_18: float = 0.223
    share_65_plus: float = 0.165
    employment_rate: float = 0.715
    employment_rate_65_plus: float = 0.19
    night_shift_share: float = 0.08
    commute_decay_km: float = 6.0
    device_share: float = 0.10
    min_device_age: int = 13
    smartphone_share_13_17: float = 0.95
    smartphone_share_18_29: float = 0.96
    smartphone_share_30_49: float = 0.95
    smartphone_share_50_64: float = 0.83
    smartphone_share_65_plus: float = 0.61


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
    indoor_bias_median_m, indoor_bias_sigma : building-level bias of fixes at home and
        at work.  Indoors and between buildings, fixes are off by tens of metres in a
        direction that persists for a given building (Zandbergen 2009, "Accuracy of
        iPhone locations": median errors about 8 m for GPS, 74 m for Wi-Fi, 600 m for
        cell fixes).  Each building gets one bias vector (uniform direction, lognormal
        length with this median and log-sd); the person's home/work as the generator
        sees it is shifted by it, the truth keeps the address point.  The exact values
        are an assumption; 0 = no bias.
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
    indoor_bias_median_m: float = 15.0
    indoor_bias_sigma: float = 0.6


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


#: Register profiles (``RegisterConfig.profile``): who a kind of record lists and the
#: defaults it supplies.  ``eligible``: "adults" (18+) or "employed_adults" (18+ with a
#: job); nobody under 18 is listed by any profile.  ``coverage``: share of the eligible
#: listed; ``error_rate``: share of listed home addresses that are wrong (another
#: residential building); ``employer_coverage``: share of listed persons with a job whose
#: employer (work address) is listed; ``home_coverage``: share of listed persons whose
#: home address is listed.
REGISTER_PROFILES = {
    "people_search": {
        "eligible": "adults", "coverage": 0.90, "error_rate": 0.02, "employer_coverage": 0.60,
        "home_coverage": 1.0,
        "source": "data brokers / people-search sites: adults with their home address and, for "
                  "some, an employer; coverage 0.9, error rate 0.02 and employer coverage 0.6 are "
                  "assumptions (brokers advertise records on most US adults; no audited figure)",
    },
    "voter_file": {
        "eligible": "adults", "coverage": 0.70, "error_rate": 0.05, "employer_coverage": 0.0,
        "home_coverage": 1.0,
        "source": "voter registration lists: registered adults, home address, no employer; "
                  "coverage approximate: Census CPS Voting and Registration supplements, about "
                  "2/3 to 3/4 of voting-age citizens registered in 2016-2020 (citizenship not "
                  "modelled); error rate 0.05 an assumption (Pew Center on the States 2012: "
                  "about 1 in 8 registrations inaccurate or significantly out of date)",
    },
    "professional_network": {
        "eligible": "employed_adults", "coverage": 0.50, "error_rate": 0.02, "employer_coverage": 0.90,
        "home_coverage": 0.30,
        "source": "professional networking profiles: employed adults with their employer; a home "
                  "address only for some (e.g. enriched by a broker); every value an assumption",
    },
}

#: the overridable numeric fields of :class:`RegisterConfig` (profile supplies defaults)
REGISTER_FIELDS = ("coverage", "error_rate", "employer_coverage", "home_coverage")


def register_profiles(profile: str) -> list[str]:
    """Component profile names of ``profile`` ("a" or "a+b+..."), in order.

    Raises :class:`ConfigError` for an unknown or repeated name."""
    if not isinstance(profile, str):
        raise ConfigError(f"register.profile must be a string, got {profile!r}; use e.g. 'people_search'.")
    names = [p.strip() for p in profile.split("+")]
    for n in names:
        if n not in REGISTER_PROFILES:
            close = difflib.get_close_matches(n, list(REGISTER_PROFILES), n=1, cutoff=0.6)
            raise ConfigError(
                f"register.profile {profile!r}: unknown profile {n!r}"
                + (f" (did you mean {close[0]!r}?)" if close else "")
                + f"; known profiles: {', '.join(REGISTER_PROFILES)} (combine them with '+', "
                  "e.g. 'people_search+voter_file')."
            )
    if len(set(names)) != len(names):
        raise ConfigError(f"register.profile {profile!r} names a profile twice; name each once.")
    return names


@dataclass
class RegisterConfig:
    """The attacker's auxiliary register (public records anyone can buy).

    profile : which records the attacker holds, a name of :data:`REGISTER_PROFILES`
        ("people_search", "voter_file", "professional_network") or several joined by
        "+" (e.g. "people_search+voter_file"): a person is listed if any of them lists
        them; the home address comes from the first profile (in the order written)
        that lists one, the employer from the first that lists one.  Only adults (18+)
        are listed, whatever the profile.
    coverage : share of the profile's eligible persons listed.
    error_rate : share of listed persons whose home address is wrong (another building).
    employer_coverage : share of listed employed persons whose employer is listed.
    home_coverage : share of listed persons whose home address is listed.

    The four numbers default to None, meaning "the profile's value"; a number set here
    wins over the profile and applies to every profile of a combination.
    :meth:`resolved` gives the values in force; ``Scenario.to_dict`` records them.
    """

    profile: str = "people_search"
    coverage: float | None = None
    error_rate: float | None = None
    employer_coverage: float | None = None
    home_coverage: float | None = None

    def components(self) -> list[tuple[str, dict]]:
        """(profile name, {eligible, coverage, error_rate, employer_coverage,
        home_coverage}) of every component profile, explicit values applied."""
        out = []
        for name in register_profiles(self.profile):
            d = {k: v for k, v in REGISTER_PROFILES[name].items() if k != "source"}
            for f in REGISTER_FIELDS:
                if getattr(self, f) is not None:
                    d[f] = float(getattr(self, f))
            out.append((name, d))
        return out

    def resolved(self) -> dict:
        """The values in force: profile plus each numeric field (the explicit value, else
        the profile's; None when the profiles of a combination disagree)."""
        comps = self.components()
        out = {"profile": self.profile}
        for f in REGISTER_FIELDS:
            vals = {c[f] for _, c in comps}
            out[f] = vals.pop() if len(vals) == 1 else None
        return out


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
        """The scenario as plain data, with the register values in force (a register field
        left to its profile is written as the profile's value; None only when the
        profiles of a combination disagree), so ``Scenario.from_dict(s.to_dict())`` is the
        same scenario with the same :meth:`config_hash`."""
        d = dataclasses.asdict(self)
        try:
            d["register"].update(self.register.resolved())
        except ConfigError:  # an unknown profile: validate() names it
            pass
        return d

    def config_hash(self) -> str:
        """Short SHA-256 of the canonical JSON of the whole config (incl. seed)."""
        s = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(s.encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, d: dict, *, where: str = "") -> "Scenario":
        """A validated Scenario from a dict of top-level fields and section tables.

        Unknown or misplaced keys (at the top level, in a section or nested deeper) are
        a :class:`ConfigError` naming the key, where it was and the valid keys.  ``where``
        is the table the dict came from (e.g. ``"scenario"`` for a ``[scenario]`` table);
        it only changes the messages.
        """
        top = f"[{where}]" if where else "the top level of the scenario"
        if not isinstance(d, dict):
            raise ConfigError(f"{top} must be a table (dict) of scenario fields, got {d!r}.")
        kwargs = {}
        known = [f.name for f in fields(cls)]
        check_keys(d, known, top, hints=_misplaced_hints(None, where))
        for k, v in d.items():
            name = f"{where}.{k}" if where else k
            if k in SECTIONS:
                if not isinstance(v, dict):
                    raise ConfigError(f"[{name}] must be a table of {k} settings, got {v!r}; "
                                      f"write it as a [{name}] table.")
                allowed = [f.name for f in fields(SECTIONS[k])]
                check_keys(v, allowed, f"[{name}]", hints=_misplaced_hints(k, where))
                for kk, vv in v.items():
                    if isinstance(vv, dict):
                        raise ConfigError(f"{name}.{kk} must be a single value, got the table {vv!r}; "
                                          f"write it as {kk} = <value> inside [{name}].")
                kwargs[k] = SECTIONS[k](**v)
            else:
                if isinstance(v, dict):
                    raise ConfigError(f"{name} must be a single value, got the table {v!r}; "
                                      f"{k} is not a section (sections: {', '.join(SECTIONS)}).")
                kwargs[k] = v
        return cls(**kwargs).validate()

    @classmethod
    def from_any(cls, config=None) -> "Scenario":
        """A Scenario from ``None`` (the built-in default), a Scenario, a dict
        (:meth:`from_dict`) or a TOML path (:meth:`from_toml`)."""
        if config is None:
            return cls().validate()
        if isinstance(config, cls):
            return config.validate()
        if isinstance(config, dict):
            return cls.from_dict(config)
        return cls.from_toml(config)

    @classmethod
    def from_toml(cls, path) -> "Scenario":
        """Read a scenario TOML file: either flat (fields and section tables at the top
        level) or everything inside one ``[scenario]`` table (a sweep file's layout).

        With a ``[scenario]`` table, any other top-level key except a sweep file's
        ``name`` label and ``[sweep]`` table is refused (it would be silently ignored).
        """
        d = load_toml(path, "config file")
        src = str(Path(path))
        is_sweep = "sweep" in d
        d.pop("sweep", None)
        if "scenario" not in d:
            return cls.from_dict(d)
        outside = [k for k in d if k != "scenario" and not (is_sweep and k == "name")]
        if outside:
            known = [f.name for f in fields(cls)]
            parts = []
            for k in outside:
                if k in SECTIONS:
                    parts.append(f"[{k}] (write it as [scenario.{k}])")
                elif k in known:
                    parts.append(f"{k!r} (move it under [scenario])")
                else:
                    close = difflib.get_close_matches(str(k), known, n=1, cutoff=0.6)
                    hint = _misplaced_hints(None, "scenario").get(k)
                    parts.append(f"{k!r} (unknown; " + (f"did you mean {close[0]!r}? " if close else "")
                                 + (f"{hint}; " if hint else "") + "scenario keys go under [scenario])")
            noun = "key" if len(outside) == 1 else "keys"
            raise ConfigError(
                f"config file {src!r} has a [scenario] table, so top-level {noun} {', '.join(parts)} "
                f"would be ignored; put every setting inside [scenario] (or drop the [scenario] "
                f"table and write everything at the top level). Valid scenario keys: {', '.join(known)}."
            )
        return cls.from_dict(d["scenario"], where="scenario")

    def replace(self, **changes) -> "Scenario":
        """A copy with top-level fields or ``section__field`` values changed."""
        d = dataclasses.asdict(self)  # unresolved: a new register profile brings its own defaults
        for k, v in changes.items():
            if "__" in k:
                s, f = k.split("__", 1)
                if s not in SECTIONS:
                    close = difflib.get_close_matches(s, list(SECTIONS), n=1, cutoff=0.6)
                    raise ConfigError(
                        f"unknown config section {s!r} in {k!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                        + f"; sections: {', '.join(SECTIONS)}."
                    )
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
        _num(w, "single_unit_share", lo=0, hi=1, sec="world")
        _num(w, "multi_unit_density_exponent", lo=0, hi=5, sec="world")
        _num(w, "vacancy_rate", lo=0, hi=0.9, sec="world")
        p = self.population
        _num(p, "share_under_18", lo=0, hi=0.5, sec="population")
        _num(p, "share_65_plus", lo=0, hi=0.5, sec="population")
        _num(p, "employment_rate", lo=0, hi=1, sec="population")
        _num(p, "employment_rate_65_plus", lo=0, hi=1, sec="population")
        _num(p, "night_shift_share", lo=0, hi=1, sec="population")
        _num(p, "commute_decay_km", lo=0.1, hi=1000, sec="population")
        _num(p, "device_share", lo=1e-6, hi=1, sec="population", lo_open=True)
        _int(p, "min_device_age", lo=0, hi=99, sec="population")
        for f in ("smartphone_share_13_17", "smartphone_share_18_29", "smartphone_share_30_49",
                  "smartphone_share_50_64", "smartphone_share_65_plus"):
            _num(p, f, lo=0, hi=1, sec="population")
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
        _num(g, "indoor_bias_median_m", lo=0, hi=1000, sec="pings")
        _num(g, "indoor_bias_sigma", lo=0, hi=3, sec="pings")
        i = self.ids
        if not isinstance(i.salt, str):
            raise ConfigError(f"ids.salt must be a string, got {i.salt!r}")
        _int(i, "rotation_days", lo=0, hi=10**5, sec="ids")
        _num(i, "daily_reset_prob", lo=0, hi=1, sec="ids")
        r = self.register
        _str(r, "profile", allow_none=False, sec="register")
        register_profiles(r.profile)
        for f in REGISTER_FIELDS:
            if getattr(r, f) is not None:
                _num(r, f, lo=0, hi=1, sec="register")
        if self.n_devices is not None and self.n_devices > self.residents:
            raise ConfigError("n_devices exceeds residents; lower n_devices or raise world.residents")
        if self.devices < 1:
            raise ConfigError(
                f"the scenario has no devices (residents={self.residents}, "
                f"device_share={p.device_share}); raise population.device_share or set n_devices"
            )
        return self


#: section name -> dataclass of the section's fields
SECTIONS = {
    "world": WorldConfig, "population": PopulationConfig, "pings": PingConfig,
    "ids": IdConfig, "register": RegisterConfig,
}


def _misplaced_hints(section: str | None, where: str = "") -> dict:
    """key -> where it belongs, for keys valid somewhere else than ``section``
    (None = the top level); ``where`` is the enclosing table (e.g. "scenario")."""
    homes: dict = {}
    for sec, dc in SECTIONS.items():
        if sec != section:
            for f in fields(dc):
                homes.setdefault(f.name, []).append(f"[{where}.{sec}]" if where else f"[{sec}]")
    if section is not None:
        for f in fields(Scenario):
            if f.name not in SECTIONS:
                homes.setdefault(f.name, []).append(f"[{where}]" if where else "the top level")
    return {k: f"it belongs in {' or '.join(v)}" for k, v in homes.items()}


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


# ------------------------------------------------------------------ memory model
#: bytes of the process before any data: imported libraries, numba-compiled kernels
MEM_FIXED_BYTES = 350 * 2**20
#: bytes per resident: world buildings and zones, the persons table, the register and
#: the temporaries of ``sim.population.make_persons`` (measured: 400-460 B)
MEM_RESIDENT_BYTES = 480
#: bytes per panel device: kernel inputs (5 x 8 B), devices table, pings per device
MEM_DEVICE_BYTES = 300
#: bytes per pseudonym (device x MAID epoch) kept for the truth table: the 64-character
#: pseudonym and the MAID as Python strings, five int64 columns, and the final concat
MEM_PSEUDONYM_BYTES = 300
#: bytes per ping while a block is generated: time, x, y, accuracy (28 B) and their
#: sorted copies, the per-ping index arrays, lat/lon and the Arrow table (measured: 113-120 B)
MEM_PING_BYTES = 120
#: bytes per device-day of a block: the MAID epoch matrix and its index copies
MEM_DEVICE_DAY_BYTES = 32


def expected_pings_per_device_day(scenario: "Scenario") -> float:
    """Mean pings per device-day of the ping model, on the high side: the lognormal mean
    ``median * exp(sigma^2 / 2)`` capped at ``max_pings_per_day``, times the share of
    non-silent days (the lower weekend rate is ignored)."""
    g = scenario.pings
    rate = min(g.median_pings_per_day * math.exp(g.rate_sigma ** 2 / 2), g.max_pings_per_day)
    return rate * (1.0 - min(g.silent_day_prob, 0.95))


def memory_estimate(scenario: "Scenario", *, workers: int = 0) -> dict:
    """Estimated peak memory (bytes) of generating ``scenario``, by part.

    Model (linear in residents, devices and block pings; calibrated on the peak RSS of
    ``sim.generate.generate`` from 200,000 to 10,000,000 residents and 2,000 to
    1,000,000 devices, where it is 0-15 % above the measured peak):

    * ``fixed``: :data:`MEM_FIXED_BYTES` for libraries and compiled kernels;
    * ``residents``: :data:`MEM_RESIDENT_BYTES` per resident (``scenario.residents``):
      world, persons, register and their construction temporaries;
    * ``devices``: per device :data:`MEM_DEVICE_BYTES` plus :data:`MEM_PSEUDONYM_BYTES`
      per expected pseudonym (1 + rotations + expected resets over the window);
    * ``block``: one generation block of ``min(block_devices, devices)`` devices:
      ``days x (MEM_DEVICE_DAY_BYTES + MEM_PING_BYTES x expected pings per device-day)``
      per device (:func:`expected_pings_per_device_day`);
    * with ``workers`` > 0 (Dask LocalCluster processes), each worker adds ``fixed``
      and one block.

    Returns ``{"fixed", "residents", "devices", "block", "total"}``.  It does not cover
    what runs after generation (``reidsim run`` loads the whole release), so for those
    it is a lower bound.
    """
    n_dev = scenario.devices
    days = int(scenario.pings.days)
    ids = scenario.ids
    epochs = 1.0 + (days - 1) * ids.daily_reset_prob
    if ids.rotation_days > 0:
        epochs += (days - 1) // ids.rotation_days
    block_dev = min(int(scenario.block_devices), n_dev)
    per_dev_day = MEM_DEVICE_DAY_BYTES + MEM_PING_BYTES * expected_pings_per_device_day(scenario)
    block = block_dev * days * per_dev_day
    parts = {
        "fixed": MEM_FIXED_BYTES,
        "residents": scenario.residents * MEM_RESIDENT_BYTES,
        "devices": n_dev * (MEM_DEVICE_BYTES + MEM_PSEUDONYM_BYTES * epochs),
        "block": block * max(1, workers),
    }
    if workers > 0:
        parts["fixed"] += workers * MEM_FIXED_BYTES
    parts = {k: int(math.ceil(v)) for k, v in parts.items()}
    parts["total"] = sum(parts.values())
    return parts


def estimate_memory_bytes(scenario: "Scenario", *, workers: int = 0) -> int:
    """Estimated peak memory in bytes of generating ``scenario``: the persons and devices
    tables (with world and register) plus one generation block; see
    :func:`memory_estimate` for the model and its constants."""
    return memory_estimate(scenario, workers=workers)["total"]


def largest_fitting(scenario: "Scenario", field_name: str, budget_bytes: int, *, workers: int = 0) -> int:
    """Largest value of the top-level integer ``field_name`` ("n_devices" or
    "block_devices") at most its current value whose :func:`estimate_memory_bytes` fits in
    ``budget_bytes``; 0 when even 1 does not fit."""
    cur = scenario.devices if field_name == "n_devices" else int(getattr(scenario, field_name))

    def fits(v):
        s = dataclasses.replace(scenario, **{field_name: v})
        return estimate_memory_bytes(s, workers=workers) <= budget_bytes

    if not fits(1):
        return 0
    lo, hi = 1, max(1, cur)
    if fits(hi):
        return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo


DEFAULT = Scenario()
