import json

import numpy as np
import pandas as pd
import pytest
from shapely.geometry import box

from _gridworld import GridWorld, make_population
from sim.attacks import AttackConfig, run_attacks, summary, write_attack_outputs
from sim.core.errors import ConfigError, InputError


@pytest.fixture(scope="module")
def pop():
    w = GridWorld()
    p = make_population(w, n_persons=60, n_days=4, seed=11, rotation_days=2)
    full = p["inferred"]
    by_day = {1: full.assign(work_x_m=np.nan, work_y_m=np.nan), 2: full, 4: full}
    return w, p, by_day


CFG = dict(unicity_p=(1, 2, 4), unicity_v_m=(500.0, 2000.0), unicity_h_h=(1.0, 6.0), unicity_n_sample=None,
           known_m=(1, 3), known_sigma_m=(0.0, 100.0), known_n_targets=None,
           geofence_polygon=box(0, 0, 3200, 3200), relink_period_days=2)


def test_run_all(pop, tmp_path):
    w, p, by_day = pop
    cfg = dict(CFG, geofence_window_s=(p["release"].start_s, p["release"].start_s + 86400))
    tables = run_attacks(p["release"], by_day, p["register"], w, p["pseudonyms"], p["persons"], cfg)
    expected = {"linkage", "linkage_per_device", "time_to_identification", "time_to_identification_device",
                "time_to_identification_per_device", "ladder", "ladder_per_device", "ladder_relink",
                "unicity", "unicity_power_law", "topn", "known_points", "geofence", "geofence_per_pseudonym", "relink"}
    assert set(tables) == expected
    for name in ("linkage", "time_to_identification", "time_to_identification_device", "ladder", "ladder_relink",
                 "unicity", "topn", "known_points", "geofence", "relink"):
        t = tables[name]
        assert {"value", "ci_low", "ci_high", "n"} <= set(t.columns), name
        assert len(t) > 0
    # with work unknown on day 1 nobody is identified by home+work; perfect inference later identifies many
    c = tables["time_to_identification"].set_index("days")
    assert c.loc[1, "value"] == 0 and c.loc[4, "value"] > 0.5
    # only pseudonyms with a ping in the window count: epoch 1 starts on day 2
    assert c["n"].to_dict() == {1: 60, 2: 60, 4: 120} and set(c["unit"]) == {"pseudonym"}
    cd = tables["time_to_identification_device"].set_index("days")
    assert cd["n"].to_dict() == {1: 60, 2: 60, 4: 60} and set(cd["unit"]) == {"device"}
    assert (cd["value"] >= c["value"]).all()
    lad = tables["ladder"]
    assert list(lad.columns) == ["rung", "level", "days", "k", "metric", "value", "ci_low", "ci_high", "n", "unit"]
    assert set(lad["rung"]) == {"exact", "hierarchical", "home_adults", "ranked"}
    s = summary(tables)
    json.dumps(s, allow_nan=False)
    assert s["n_devices"] == p["release"].n_traces
    assert {"linkage_identified", "linkage_no_candidate", "time_to_identification", "time_to_identification_device",
            "ladder", "ladder_relink", "unicity", "unicity_exponent", "topn_unique", "known_points_success",
            "geofence", "relink"} <= set(s)
    assert {r["days"] for r in s["ladder"]} == {4} and {r["unit"] for r in s["ladder"]} == {"device", "pseudonym"}
    d = write_attack_outputs(tmp_path, tables, s)
    for name in tables:
        back = pd.read_parquet(d / f"{name}.parquet")
        assert len(back) == len(tables[name])
        assert (d / f"{name}.csv").exists()
    assert json.loads((d / "summary.json").read_text()) == json.loads(json.dumps(s))
    assert not [f for f in d.iterdir() if f.name.endswith(".tmp")]
    # same seed, same figures
    again = run_attacks(p["release"], by_day, p["register"], w, p["pseudonyms"], p["persons"], cfg)
    for name in tables:
        pd.testing.assert_frame_equal(tables[name], again[name])


def test_register_without_employers_falls_back_to_home(pop):
    w, p, by_day = pop
    reg = p["register"][[c for c in p["register"].columns if not c.startswith("work_")]]
    tables = run_attacks(p["release"], by_day, reg, w, p["pseudonyms"], None,
                         {"attacks": ("linkage", "time_to_identification")})
    assert set(tables["linkage"]["key"]) == {"home"}
    assert set(tables["time_to_identification"]["key"]) == {"home"}


def test_config_errors(pop):
    w, p, by_day = pop
    with pytest.raises(ConfigError):
        AttackConfig.from_any({"unicity_q": 3})
    with pytest.raises(ConfigError):
        AttackConfig.from_any({"attacks": ("linkage", "magic")})
    with pytest.raises(ConfigError):
        AttackConfig.from_any(42)
    with pytest.raises(InputError):
        run_attacks(p["release"], {}, p["register"], w, p["pseudonyms"])
    with pytest.raises(InputError):
        run_attacks(p["release"].to_frame(), by_day, p["register"], w, p["pseudonyms"])
