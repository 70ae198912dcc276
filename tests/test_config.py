"""sim.core.config: defaults, TOML loading, validation of every field, derived values, and
hypothesis properties (random valid configs validate and generate)."""
from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sim.core.config import IdConfig, PingConfig, PopulationConfig, RegisterConfig, Scenario, WorldConfig
from sim.core.errors import ConfigError

SECTIONS = {"world": WorldConfig, "population": PopulationConfig, "pings": PingConfig,
            "ids": IdConfig, "register": RegisterConfig}
NUMERIC_TYPES = {"int", "float", "int | None", "float | None"}
STRING_TYPES = {"str", "str | None"}


def _all_fields():
    """(section or "", field name, annotation) of every config field."""
    out = []
    for f in dataclasses.fields(Scenario):
        if f.name not in SECTIONS:
            out.append(("", f.name, str(f.type)))
    for sec, cls in SECTIONS.items():
        out.extend((sec, f.name, str(f.type)) for f in dataclasses.fields(cls))
    return out


ALL_FIELDS = _all_fields()
NUMERIC = [(s, n, t) for s, n, t in ALL_FIELDS if t in NUMERIC_TYPES]
STRINGS = [(s, n, t) for s, n, t in ALL_FIELDS if t in STRING_TYPES]
# fields where 0 / a negative value is legal (everything else must reject it)
ZERO_OK = {"seed", "n_subcentres", "anchor_lat_deg", "anchor_lon_deg", "utc_offset_h",
           "employment_rate", "night_shift_share", "rate_sigma", "silent_day_prob",
           "coarse_fix_share", "trip_overhead_min", "rotation_days", "daily_reset_prob",
           "coverage", "error_rate", "employer_coverage", "home_coverage",
           "single_unit_share", "multi_unit_density_exponent", "vacancy_rate",
           "share_under_18", "share_65_plus", "employment_rate_65_plus", "min_device_age",
           "smartphone_share_13_17", "smartphone_share_18_29", "smartphone_share_30_49",
           "smartphone_share_50_64", "smartphone_share_65_plus",
           "indoor_bias_median_m", "indoor_bias_sigma"}
NEGATIVE_OK = {"anchor_lat_deg", "anchor_lon_deg", "utc_offset_h"}


def _key(sec, name):
    return f"{sec}__{name}" if sec else name


def _label(sec, name):
    return f"{sec}.{name}" if sec else name


def _set(sec, name, value, **more):
    return Scenario().replace(**{_key(sec, name): value}, **more)


def test_every_field_is_numeric_or_string():
    """Guard for the programmatic tests below: a new field type needs a new rule."""
    assert {t for _, _, t in ALL_FIELDS} <= NUMERIC_TYPES | STRING_TYPES
    assert len(NUMERIC) > 30


# ------------------------------------------------------------------ defaults, round trip
def test_defaults_validate_and_round_trip():
    s = Scenario().validate()
    d = s.to_dict()
    assert Scenario.from_dict(d).to_dict() == d
    assert Scenario.from_dict(d).config_hash() == s.config_hash()
    assert s.devices == round(s.world.residents * s.population.device_share)


def _another_valid(v):
    if v is None or isinstance(v, int):
        return 1 if v is None else v + 1
    if v == 0.0:
        return 0.5
    return v / 2 if 0 < v <= 1 else v * 1.01


def test_config_hash_changes_with_every_field():
    base = Scenario()
    h = base.config_hash()
    for sec, name, _ in NUMERIC:
        v = getattr(getattr(base, sec) if sec else base, name)
        if v is None and sec == "register":  # left to the profile: change the value in force
            v = base.register.resolved()[name]
        assert _set(sec, name, _another_valid(v)).config_hash() != h, name
    for sec, name in [("", "name"), ("ids", "salt"), ("pings", "start_date")]:
        new = "2024-03-05" if name == "start_date" else "other"
        assert _set(sec, name, new).config_hash() != h, name


def test_replace_does_not_mutate_and_accepts_section_fields():
    s = Scenario()
    t = s.replace(seed=7, pings__days=3, ids__salt="x")
    assert (s.seed, s.pings.days, s.ids.salt) == (42, 14, "")
    assert (t.seed, t.pings.days, t.ids.salt) == (7, 3, "x")


def test_integral_floats_are_accepted_as_ints():
    s = Scenario().replace(pings__days=3.0, world__residents=1000.0)
    assert s.pings.days == 3 and isinstance(s.pings.days, int)
    assert isinstance(s.world.residents, int)


# ------------------------------------------------------------------ bad values, every field
BAD_ANY = [float("nan"), float("inf"), float("-inf"), "1", [1], True, -1e30, 1e30]


@pytest.mark.parametrize("sec,name,typ", NUMERIC, ids=[_label(s, n) for s, n, _ in NUMERIC])
def test_bad_numeric_values_name_the_field(sec, name, typ):
    bad = list(BAD_ANY)
    if typ.startswith("int"):
        bad.append(2.5)
    if name not in NEGATIVE_OK:
        bad.append(-1)
    if name not in ZERO_OK:
        bad.append(0)
    for v in bad:
        with pytest.raises(ConfigError, match=re.escape(_label(sec, name))):
            _set(sec, name, v)


@pytest.mark.parametrize("sec,name,typ", NUMERIC, ids=[_label(s, n) for s, n, _ in NUMERIC])
def test_documented_bounds_are_the_real_bounds(sec, name, typ):
    """Parse the allowed range from the error message and pin its end points:
    inclusive ends are accepted, values just outside are rejected."""
    with pytest.raises(ConfigError) as ei:
        _set(sec, name, 1e30)
    m = re.search(r"in ([\[(])([-0-9.e+]+), ([-0-9.e+]+)\]", str(ei.value))
    assert m, str(ei.value)
    is_int = typ.startswith("int")
    num = (lambda x: int(x) if re.fullmatch(r"-?\d+", x) else int(float(x))) if is_int else float  # noqa: E731
    lo_open, lo, hi = m.group(1) == "(", num(m.group(2)), num(m.group(3))
    conv = int if is_int else float
    _set(sec, name, conv(hi))  # inclusive upper end
    with pytest.raises(ConfigError, match=re.escape(_label(sec, name))):
        _set(sec, name, conv(hi) + 1 if is_int else hi + max(abs(hi), 1.0) * 1e-9)
    if lo_open:
        with pytest.raises(ConfigError):
            _set(sec, name, conv(lo))
        _set(sec, name, lo * (1 + 1e-6) + 1e-12, n_devices=10)  # (n_devices: keep >= 1 device)
    else:
        _set(sec, name, conv(lo))
        with pytest.raises(ConfigError, match=re.escape(_label(sec, name))):
            _set(sec, name, conv(lo) - 1 if is_int else lo - max(abs(lo), 1.0) * 1e-9)


@pytest.mark.parametrize("name", sorted(ZERO_OK - {"seed"}))
def test_zero_is_legal_where_documented(name):
    sec = next(s for s, n, _ in NUMERIC if n == name)
    assert getattr(getattr(_set(sec, name, 0), sec), name) == 0


@pytest.mark.parametrize("sec,name,typ", STRINGS, ids=[_label(s, n) for s, n, _ in STRINGS])
@pytest.mark.parametrize("bad", [5, ["a"]])
def test_wrong_type_for_string_fields_names_the_field(sec, name, typ, bad):
    with pytest.raises(ConfigError, match=re.escape(_label(sec, name))):
        _set(sec, name, bad)


@pytest.mark.parametrize("bad", ["2024-13-01", "2024-02-30", "March 4", "", None, 20240304, "04/03/2024"])
def test_bad_start_date(bad):
    with pytest.raises(ConfigError, match="pings.start_date"):
        _set("pings", "start_date", bad)


def test_unknown_keys_and_sections():
    with pytest.raises(ConfigError, match="wrld"):
        Scenario.from_dict({"wrld": {"residents": 1000}})
    with pytest.raises(ConfigError, match="residnets"):
        Scenario.from_dict({"world": {"residnets": 1000}})
    with pytest.raises(ConfigError, match="world"):
        Scenario.from_dict({"world": 5})
    with pytest.raises(ConfigError, match="wrld"):
        Scenario().replace(wrld__residents=1000)
    with pytest.raises(ConfigError, match="colour"):
        Scenario().replace(colour=1)
    with pytest.raises(ConfigError, match="bogus"):
        Scenario().replace(pings__bogus=1)


def test_scenario_without_devices_is_rejected():
    with pytest.raises(ConfigError, match="device"):
        Scenario().replace(world__residents=100, population__device_share=0.001)


# ------------------------------------------------------------------ TOML
def test_from_toml_reads_scenario_table_and_ignores_sweep(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text(
        '[scenario]\nname = "t"\nseed = 9\nn_devices = 50\n'
        '[scenario.pings]\ndays = 3\nstart_date = "2024-03-09"\n'
        '[scenario.ids]\nsalt = "pepper"\nrotation_days = 2\n'
        '[sweep]\n"pings.days" = [1, 2]\n'
    )
    s = Scenario.from_toml(p)
    assert (s.name, s.seed, s.n_devices, s.pings.days, s.pings.start_date, s.ids.salt,
            s.ids.rotation_days) == ("t", 9, 50, 3, "2024-03-09", "pepper", 2)
    flat = tmp_path / "flat.toml"
    flat.write_text("seed = 3\n[world]\nresidents = 5000\n")
    s = Scenario.from_toml(flat)
    assert (s.seed, s.world.residents) == (3, 5000)


def test_from_toml_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        Scenario.from_toml(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[scenario\nseed = ")
    with pytest.raises(ConfigError, match="TOML"):
        Scenario.from_toml(bad)
    unk = tmp_path / "unk.toml"
    unk.write_text("[scenario.pings]\ndayz = 3\n")
    with pytest.raises(ConfigError, match="dayz"):
        Scenario.from_toml(unk)
    neg = tmp_path / "neg.toml"
    neg.write_text("[scenario.pings]\ndays = -3\n")
    with pytest.raises(ConfigError, match="pings.days"):
        Scenario.from_toml(neg)


# ------------------------------------------------------------------ derived values
@pytest.mark.parametrize("date,offset_h", [("2024-03-04", -6.0), ("2023-12-31", 5.5), ("2024-02-29", 0.0),
                                           ("2024-06-01", 14.0), ("2024-06-01", -12.0)])
def test_start_s_is_local_midnight(date, offset_h):
    s = Scenario().replace(pings__start_date=date, world__utc_offset_h=offset_h)
    tz = dt.timezone(dt.timedelta(hours=offset_h))
    y, m, d = map(int, date.split("-"))
    assert s.start_s == int(dt.datetime(y, m, d, tzinfo=tz).timestamp())
    assert s.utc_offset_s == round(offset_h * 3600)
    local = dt.datetime.fromtimestamp(s.start_s, tz)
    assert (local.hour, local.minute, local.second) == (0, 0, 0)


@pytest.mark.parametrize("date,offset_h", [("2024-03-04", -6.0), ("2024-03-09", 9.0), ("2024-03-10", 14.0),
                                           ("2024-03-10", -12.0), ("2000-01-01", 0.0)])
def test_weekday_of_day_zero_is_the_start_dates_weekday(date, offset_h):
    """The generator takes weekdays from start_date; analyses from start_s: they agree."""
    from sim.core.traces import weekday_of_day

    s = Scenario().replace(pings__start_date=date, world__utc_offset_h=offset_h)
    wd = dt.date.fromisoformat(date).weekday()
    assert weekday_of_day(s.start_s, s.utc_offset_s, np.arange(8)).tolist() == [(wd + d) % 7 for d in range(8)]


def test_population_grows_with_n_devices():
    s = Scenario().replace(world__residents=1000, n_devices=500)
    assert s.devices == 500
    assert s.residents == math.ceil(500 / s.population.device_share)
    s = Scenario().replace(world__residents=100_000, n_devices=50)
    assert (s.devices, s.residents) == (50, 100_000)


# ------------------------------------------------------------------ hypothesis
@st.composite
def small_configs(draw):
    fl = lambda lo, hi: st.floats(lo, hi, allow_nan=False, allow_infinity=False)  # noqa: E731
    return {
        "seed": draw(st.integers(0, 2**63 - 1)),
        "n_devices": draw(st.integers(1, 25)),
        "block_devices": draw(st.integers(1, 30)),
        "world": {
            "residents": draw(st.integers(100, 1500)),
            "radius_km": draw(fl(0.5, 20.0)),
            "n_subcentres": draw(st.integers(0, 5)),
            "residents_per_block": draw(st.integers(5, 2000)),
            "blocks_per_tract": draw(st.integers(1, 20)),
            "tracts_per_district": draw(st.integers(1, 20)),
            "jobs_per_resident": draw(fl(0.01, 2.0)),
            "anchor_lat_deg": draw(fl(-80, 80)),
            "anchor_lon_deg": draw(fl(-180, 180)),
            "utc_offset_h": draw(st.sampled_from([-12.0, -6.0, 0.0, 5.5, 14.0])),
        },
        "population": {
            "employment_rate": draw(fl(0, 1)),
            "night_shift_share": draw(fl(0, 1)),
            "commute_decay_km": draw(fl(0.1, 50)),
            "device_share": draw(fl(0.05, 1.0)),
        },
        "pings": {
            "days": draw(st.integers(1, 4)),
            "start_date": draw(st.dates(dt.date(2000, 1, 1), dt.date(2040, 12, 31))).isoformat(),
            "median_pings_per_day": draw(fl(0.01, 40)),
            "rate_sigma": draw(fl(0, 2)),
            "max_pings_per_day": draw(fl(1, 300)),
            "silent_day_prob": draw(fl(0, 0.99)),
            "pings_per_session": draw(fl(1, 20)),
            "session_gap_s": draw(fl(1, 3600)),
            "gps_median_accuracy_m": draw(fl(0.5, 100)),
            "coarse_fix_share": draw(fl(0, 1)),
            "coarse_median_accuracy_m": draw(fl(0.5, 3000)),
            "travel_speed_kmh": draw(fl(1, 300)),
            "trip_overhead_min": draw(fl(0, 60)),
        },
        "ids": {
            "salt": draw(st.text(max_size=8)),
            "rotation_days": draw(st.integers(0, 5)),
            "daily_reset_prob": draw(fl(0, 1)),
        },
        "register": {"coverage": draw(fl(0, 1)), "error_rate": draw(fl(0, 1)),
                     "employer_coverage": draw(fl(0, 1))},
    }


# found by hypothesis: a metro on the antimeridian exports lon > 180 (then rejected on read)
ANTIMERIDIAN = {"seed": 0, "n_devices": 1, "block_devices": 1,
                "world": {"residents": 100, "radius_km": 1.0, "anchor_lat_deg": 0.0, "anchor_lon_deg": 180.0},
                "pings": {"days": 1, "median_pings_per_day": 5.0, "rate_sigma": 0.0, "silent_day_prob": 0.0},
                "population": {"device_share": 1.0}}


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=small_configs())
@example(cfg=ANTIMERIDIAN)
def test_random_valid_configs_validate_and_generate(cfg):
    from sim.api import simulate

    scn = Scenario.from_dict(cfg)
    assert Scenario.from_dict(scn.to_dict()).config_hash() == scn.config_hash()
    s = simulate(config=scn)
    tr = s.release
    assert len(s.devices) == scn.devices == cfg["n_devices"]
    assert len(s.persons) == scn.residents
    assert tr.n_pings == int(s.pseudonyms["n_pings"].sum())
    if tr.n_pings:
        assert tr.t_s.min() >= scn.start_s
        assert tr.t_s.max() < scn.start_s + 86400 * scn.pings.days
        assert np.isfinite(tr.x_m).all() and np.isfinite(tr.y_m).all()
        assert (tr.accuracy_m >= 2.0).all() and (tr.accuracy_m <= 5000.0).all()
        # strictly increasing times within each pseudonym
        same = np.repeat(np.arange(tr.n_traces), np.diff(tr.offsets))
        d = np.diff(tr.t_s)
        assert (d[same[1:] == same[:-1]] > 0).all()
