"""The identification waterfall on a hand-built world where every step's count is known,
and the assumption ledger's invariants."""
import numpy as np
import pandas as pd
import pytest

from _gridworld import GridWorld
from sim.core.config import Scenario
from sim.core.errors import ConfigError
from sim.core.ledger import LEDGER, METHODS, Assumption, ledger_rows
from sim.metrics.waterfall import STEPS, identification_waterfall


def centre(world, b):
    r = world.buildings.set_index("building_id").loc[b]
    return float(r.x_m), float(r.y_m)


@pytest.fixture
def case():
    """Eight devices, each failing at a different step (device i fails step i+1)."""
    w = GridWorld()
    # persons 0..7: home building 10+i, work building 100+i; person 7 has a unique pair
    persons = pd.DataFrame({
        "person_id": np.arange(8),
        "schedule": ["none", "day", "day", "day", "day", "day", "day", "day"],
        "home_building_id": 10 + np.arange(8),
        "work_building_id": np.where(np.arange(8) == 0, -1, 100 + np.arange(8)),
    })
    # register: 0 listed; 1 not listed; 2 wrong home; 3 no employer; others right;
    # person 99 (not a device owner) shares person 6's home and work (set of 2 for 6)
    reg = pd.DataFrame({
        "person_id": [0, 2, 3, 4, 5, 6, 7, 99],
        "home_building_id": [10, 500, 13, 14, 15, 16, 17, 16],
        "work_building_id": [-1, 102, -1, 104, 105, 106, 107, 106],
    })
    # inference: 4 wrong home; 5 right home, no work; 6 and 7 right home and work
    inferred = []
    for i in range(8):
        hx, hy = centre(w, 10 + i if i != 4 else 300)
        wx, wy = centre(w, 100 + i) if i >= 6 or i < 5 else (np.nan, np.nan)
        inferred.append({"pseudonym": f"p{i}", "home_x_m": hx, "home_y_m": hy, "work_x_m": wx, "work_y_m": wy})
    inferred = pd.DataFrame(inferred)
    ps = pd.DataFrame({"pseudonym": [f"p{i}" for i in range(8)], "device_idx": np.arange(8),
                       "person_id": np.arange(8)})
    return inferred, ps, persons, reg, w


def test_each_step_loses_exactly_the_device_built_to_fail_it(case):
    table, ceilings = identification_waterfall(*case)
    got = dict(zip(table["step"], table["n_devices"]))
    # 8 devices; 0 has no job; 1 unlisted; 2 wrong listed home; 3 no employer listed;
    # 4 wrong inferred home; 5 no inferred work; 6 set of 2; 7 named
    assert got == {"all_devices": 8, "day_job": 7, "listed": 6, "home_listed_right": 5,
                   "employer_listed": 4, "home_inferred_right": 3, "work_inferred_right": 2,
                   "named_exact": 1}
    assert list(table["step"]) == list(STEPS)
    assert np.all(np.diff(table["value"]) <= 0)  # a waterfall never rises
    assert (table["ci_low"] <= table["value"]).all() and (table["value"] <= table["ci_high"]).all()
    assert ceilings["ceiling_exact"]["n_devices"] == 4
    # listed with the right home: 0, 3, 4, 5, 6, 7 (the unemployed person 0 counts too)
    assert ceilings["ceiling_home"]["n_devices"] == 6


def test_a_device_counts_when_any_of_its_pseudonyms_does(case):
    inferred, ps, persons, reg, w = case
    # device 7 gets a second pseudonym with a wrong home: still named through the first
    extra = inferred.iloc[[7]].assign(pseudonym="p7b", home_x_m=centre(w, 400)[0], home_y_m=centre(w, 400)[1])
    ps2 = pd.concat([ps, pd.DataFrame({"pseudonym": ["p7b"], "device_idx": [7], "person_id": [7]})])
    table, _ = identification_waterfall(pd.concat([inferred, extra]), ps2, persons, reg, w)
    assert dict(zip(table["step"], table["n_devices"]))["named_exact"] == 1
    assert table["n"].iloc[0] == 8


def test_missing_columns_are_named(case):
    inferred, ps, persons, reg, w = case
    from sim.core.errors import InputError

    with pytest.raises(InputError, match="schedule"):
        identification_waterfall(inferred, ps, persons.drop(columns="schedule"), reg, w)


def test_ledger_rows_read_the_run_values_and_every_row_is_complete():
    scn = Scenario().replace(register__employer_coverage=0.8, pings__days=21)
    rows = {r["path"]: r for r in ledger_rows(scn)}
    assert rows["register.employer_coverage"]["value"] == 0.8
    assert rows["pings.days"]["value"] == 21
    for a in LEDGER:
        assert a.low <= a.high and a.method in METHODS and a.source and a.drives
        assert a.sourced == (not a.source.lower().startswith("assumption"))
    assert rows["register.employer_coverage"]["sourced"] is False  # no source: said so


def test_ledger_refuses_an_unknown_method_or_empty_range():
    with pytest.raises(ConfigError, match="method"):
        Assumption("pings.days", 1, 2, "x", "y", method="magic")
    with pytest.raises(ConfigError, match="empty"):
        Assumption("pings.days", 3, 2, "x", "y")


def test_table_order_and_repeated_register_rows_do_not_change_the_waterfall(case):
    """Rows are found by id: shuffled persons and register give the same waterfall, and a
    person listed twice counts with their first row (a second row elsewhere adds to no
    anonymity set), as a drop_duplicates would."""
    inferred, ps, persons, reg, w = case
    want, want_c = identification_waterfall(*case)
    rng = np.random.default_rng(0)
    dup = pd.DataFrame({"person_id": [7], "home_building_id": [900], "work_building_id": [901]})
    reg2 = pd.concat([reg, dup]).iloc[rng.permutation(len(reg) + 1)]
    reg2 = pd.concat([reg2[reg2["home_building_id"] != 900], reg2[reg2["home_building_id"] == 900]])
    got, got_c = identification_waterfall(inferred, ps, persons.iloc[rng.permutation(len(persons))], reg2, w)
    pd.testing.assert_frame_equal(got, want)
    assert got_c == want_c
    # the repeated row first: person 7's listed home is now wrong, and 7 is not named
    reg3 = pd.concat([dup, reg])
    got3, _ = identification_waterfall(inferred, ps, persons, reg3, w)
    assert dict(zip(got3["step"], got3["n_devices"]))["home_listed_right"] == 4
