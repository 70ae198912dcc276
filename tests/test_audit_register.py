"""`reidsim audit --register`: the data holder's register, grid zones, the ladder on them.

* the register reader (column detection, explicit names, bad rows per reason, errors);
* :class:`GridZones` packing against a plain floor reference;
* hand-built cases with known answers (one resident, an employer filter, nobody listed,
  an owner not listed, a minor filtered out, no inferred home);
* the audit against the simulator's own ladder machinery on the same traces and the same
  register (every share identical), and a defense that renames every pseudonym;
* the command line: exit codes, printed figures, and no name, user id, register
  coordinate or inferred home in any output file.
"""
from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from sim.attacks._common import truth_person
from sim.attacks.ladder import RUNGS, ladder_sets, outcomes, owner_positions
from sim.attacks.register_ladder import (grid_register, owners_from_register, register_ladder, register_outcomes,
                                         register_rungs)
from sim.cli import main
from sim.core.errors import ConfigError, InputError
from sim.infer.staypoints import infer_auto
from sim.pipeline.audit import audit
from sim.release.readers import read_pings
from sim.release.register_file import check_register_frame, normalize_user_ids, read_register, register_columns
from sim.report.audit import AUDIT_MARKER
from sim.world.crs import project_from_latlon
from sim.world.grid import CELL_OFFSET, CELL_RANGE, GridZones

CRS = "EPSG:32650"  # UTM 50N (Beijing)
DEC5 = re.compile(r"-?\d+\.\d{5,}")


# ============================================================================ the reader
def _people(**extra):
    df = pd.DataFrame({
        "Full_Name": ["Ada One", "Bo Two", "Cy Three"],
        "Latitude": [39.90, 39.91, 39.92],
        "Longitude": [116.40, 116.41, 116.42],
        "Work_Lat": [39.95, None, 39.96],
        "Work_Lng": [116.30, None, 116.31],
        "AGE": [34, 12, 70],
    })
    for k, v in extra.items():
        df[k] = v
    return df


def test_reader_detects_columns_and_projects(tmp_path):
    df = _people()
    p = tmp_path / "people.csv"
    df.to_csv(p, index=False)
    reg, c = read_register(p, crs=CRS)
    assert c["columns"] == {"name": "Full_Name", "home_lat": "Latitude", "home_lon": "Longitude",
                            "work_lat": "Work_Lat", "work_lon": "Work_Lng", "age": "AGE", "user": None}
    assert list(reg.columns) == ["person_id", "home_x_m", "home_y_m", "work_x_m", "work_y_m", "age"]
    assert reg["person_id"].tolist() == [0, 1, 2] and c["rows_read"] == c["rows_kept"] == 3
    x, y = project_from_latlon(df["Latitude"], df["Longitude"], CRS)
    np.testing.assert_allclose(reg["home_x_m"], x)
    np.testing.assert_allclose(reg["home_y_m"], y)
    assert reg["work_x_m"].isna().tolist() == [False, True, False] and c["with_work"] == 2
    assert reg["age"].tolist() == [34, 12, 70] and c["format"] == "csv"
    # the same frame in memory and as Parquet give the same register
    reg2, c2 = read_register(df, crs=CRS)
    pd.testing.assert_frame_equal(reg, reg2)
    assert c2["format"] == "frame"
    df.to_parquet(tmp_path / "people.parquet")
    reg3, _ = read_register(tmp_path / "people.parquet", crs=CRS)
    pd.testing.assert_frame_equal(reg, reg3)


def test_reader_explicit_names_and_user_ids():
    df = pd.DataFrame({"who": ["a", "b", "c", "d"], "y": [39.9, 39.9, 39.9, 39.9], "x": [116.4] * 4,
                       "phone": [7.0, np.nan, 12.0, 7.0], "lat": [1.0, 2.0, 3.0, 4.0]})
    # "lat" would be detected as the home latitude: the explicit name wins
    reg, c = read_register(df, crs=CRS, name="WHO", home_lat="y", home_lon="x", user="phone")
    assert c["columns"]["home_lat"] == "y" and c["columns"]["name"] == "who"
    # integer ids stored as floats lose their ".0"; the second owner of phone 7 is removed
    assert reg["user"].tolist()[:1] == ["7"] and reg["user"].iloc[2] == "12"
    assert reg["user"].isna().tolist() == [False, True, False, True]
    assert c["duplicate_user"] == 1 and c["users_given"] == 2
    assert "work_x_m" in reg and reg["work_x_m"].isna().all() and c["with_work"] == 0
    assert normalize_user_ids(pd.Series([" u1 ", "", None])).tolist()[0] == "u1"
    assert normalize_user_ids(pd.Series([" u1 ", "", None])).isna().tolist() == [False, True, True]


def test_reader_counts_bad_rows_per_reason():
    df = pd.DataFrame({
        "name": ["ok", "", None, "no lat", "bad lat", "text lat", "half work", "far work", "bad age", "inf"],
        "home_lat": ["39.9", "39.9", "39.9", "", "95", "north", "39.9", "39.9", "39.9", "inf"],
        "home_lon": ["116.4"] * 10,
        "work_lat": ["39.95", "", "", "", "", "", "39.95", "99", "", ""],
        "work_lon": ["116.3", "", "", "", "", "", "", "116.3", "", ""],
        "age": ["40", "40", "40", "40", "40", "40", "40", "40", "-3", "40"],
    })
    reg, c = read_register(df, crs=CRS)
    assert c["dropped"] == {"missing_name": 2, "missing_home": 1, "bad_home": 3}
    assert c["rows_read"] == 10 and c["rows_kept"] == 4 and c["rows_dropped"] == 6
    assert c["rows_read"] == c["rows_kept"] + c["rows_dropped"]
    assert c["bad_work"] == 2 and c["with_work"] == 1 and c["bad_age"] == 1
    assert reg["work_x_m"].notna().tolist() == [True, False, False, False]
    assert np.isnan(reg["age"].iloc[3]) and reg["person_id"].tolist() == [0, 1, 2, 3]
    with pytest.raises(InputError, match="no usable register rows"):
        read_register(df.iloc[1:3], crs=CRS)


def test_reader_errors_name_the_fix(tmp_path):
    with pytest.raises(InputError, match=r"--register-home-lat COLUMN.*--register-home-lon COLUMN") as e:
        read_register(pd.DataFrame({"name": ["a"], "street": ["x"]}), crs=CRS)
    assert "'street'" in str(e.value)  # the columns present
    with pytest.raises(InputError, match="--register-name 'nom' is not a column"):
        read_register(_people(), crs=CRS, name="nom")
    with pytest.raises(InputError, match="no work_lon column"):
        read_register(_people().drop(columns=["Work_Lng"]), crs=CRS)
    with pytest.raises(InputError, match="no such register file"):
        read_register(tmp_path / "nobody.csv", crs=CRS)
    bad = tmp_path / "people.parquet"
    bad.write_text("name,lat,lon\nx,1,2\n")
    with pytest.raises(InputError, match="cannot read the register file .*people.parquet"):
        read_register(bad, crs=CRS)
    (tmp_path / "people.xlsx").write_text("x")
    with pytest.raises(InputError, match="cannot tell the format"):
        read_register(tmp_path / "people.xlsx", crs=CRS)
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("name,lat,lon\nx,39.9,116.4\ny,39.9,116.4,extra\n")
    with pytest.raises(InputError, match="cannot read the register file"):
        read_register(ragged, crs=CRS)
    with pytest.raises(Exception, match="geographic"):
        read_register(_people(), crs="EPSG:4326")
    with pytest.raises(InputError, match="must be a CSV or Parquet path or a pandas DataFrame"):
        read_register(42, crs=CRS)
    # a frame given to the audit
    with pytest.raises(InputError, match="lacks column"):
        check_register_frame(pd.DataFrame({"home_x_m": [1.0], "home_y_m": [2.0]}))
    with pytest.raises(InputError, match="twice"):
        check_register_frame(pd.DataFrame({"person_id": [1, 1], "home_x_m": [1.0, 2], "home_y_m": [2.0, 3]}))


def test_register_columns_detection_order():
    m = register_columns(["lat", "lon", "home_lat", "home_lon", "name", "person"])
    assert (m["home_lat"], m["home_lon"], m["name"]) == ("home_lat", "home_lon", "name")
    assert m["work_lat"] is None and m["user"] is None
    with pytest.raises(InputError, match="serves two roles"):
        register_columns(["n", "lat", "lon"], name="n", age="n")


# ============================================================================ grid zones
def test_grid_packing_round_trip_and_distinct_cells():
    rng = np.random.default_rng(3)
    ix = rng.integers(-CELL_OFFSET, CELL_RANGE - CELL_OFFSET, 5000)
    iy = rng.integers(-CELL_OFFSET, CELL_RANGE - CELL_OFFSET, 5000)
    ix[:4], iy[:4] = [-CELL_OFFSET, CELL_RANGE - CELL_OFFSET - 1, 0, -1], [0, -1, -CELL_OFFSET, 5]
    code = GridZones.pack(ix, iy)
    assert (code >= 0).all() and code.max() < 2 ** 62
    bx, by = GridZones.unpack(code)
    assert (bx == ix).all() and (by == iy).all()
    # distinct cells <-> distinct codes
    assert len(np.unique(code)) == len(set(zip(ix.tolist(), iy.tolist())))
    with pytest.raises(InputError, match="cell indices"):
        GridZones.pack([CELL_RANGE - CELL_OFFSET], [0])


def test_grid_locate_is_floor_of_metres():
    g = GridZones(250.0)
    x = np.array([0.0, 249.999, 250.0, -0.001, -250.0, -250.001, 1e6, -3.2e6])
    y = np.array([0.0, -0.001, 500.0, 10.0, -1e-9, 7.0, -1e6, 4.1e6])
    code = g.locate(x, y, "building")
    assert (code >= 0).all()
    ix, iy = g.unpack(code)
    assert ix.tolist() == [int(np.floor(v / 250.0)) for v in x]
    assert iy.tolist() == [int(np.floor(v / 250.0)) for v in y]
    assert ix.tolist()[:6] == [0, 0, 1, -1, -1, -2]
    assert g.locate([np.nan, 1.0], [1.0, np.inf], "block").tolist() == [-1, -1]
    cx, cy = g.centre(code[:1])
    assert (cx[0], cy[0]) == (125.0, 125.0)
    with pytest.raises(InputError):
        g.locate([2.0 ** 30 * 250.0], [0.0])
    for bad in (0, -5.0, float("nan"), True, "250"):
        with pytest.raises(ConfigError):
            GridZones(bad)
    with pytest.raises(ConfigError):
        g.locate([1.0], [1.0], "county")


# ============================================================================ known answers
def _inferred(rows):
    return pd.DataFrame(rows, columns=["pseudonym", "home_x_m", "home_y_m", "work_x_m", "work_y_m"])


def _register(rows, age=None, user=None):
    df = pd.DataFrame(rows, columns=["person_id", "home_x_m", "home_y_m", "work_x_m", "work_y_m"])
    if age is not None:
        df["age"] = age
    if user is not None:
        df["user"] = pd.array(user, dtype="string")
    return check_register_frame(df)[0]


NAN = np.nan


def test_one_resident_is_a_single_candidate_and_named():
    reg = _register([(0, 120.0, 130.0, NAN, NAN), (1, 420.0, 130.0, NAN, NAN)], user=["u0", "u1"])
    inf = _inferred([("u0", 150.0, 150.0, NAN, NAN), ("u1", 150.0, 160.0, NAN, NAN)])
    owner = owners_from_register(reg, inf["pseudonym"])
    assert owner.tolist() == [0, 1]
    out = register_outcomes(inf, reg, 100.0, owner=owner)
    assert list(out) == ["exact", "hierarchical", "ranked"]  # no ages: no home_adults rung
    h = out["hierarchical"]
    assert h["single_candidate"].tolist() == [True, True] and h["at_most_5"].tolist() == [True, True]
    # u0 sleeps in person 0's cell: named; u1 sleeps there too but is person 1: wrongly named
    assert h["named"].tolist() == [True, False] and h["wrong"].tolist() == [False, True]
    assert h["narrowed_5"].tolist() == [True, False]
    # no inferred work: the exact join has no candidate
    assert out["exact"]["no_candidate"].all() and not out["exact"]["named"].any()
    # ranked: the cell's resident first, then the nearest other persons
    assert out["ranked"]["named"].tolist() == [True, False] and out["ranked"]["narrowed_5"].all()
    # without truth only the attacker's view
    assert set(register_outcomes(inf, reg, 100.0)["hierarchical"]) == {"single_candidate", "at_most_5",
                                                                        "no_candidate"}


def test_employer_narrows_two_residents_to_one():
    reg = _register([(0, 110.0, 110.0, 1050.0, 1050.0), (1, 190.0, 190.0, 2050.0, 2050.0)], user=["a", "b"])
    inf = _inferred([("a", 150.0, 150.0, 1020.0, 1080.0),   # works at person 0's employer
                     ("b", 150.0, 150.0, NAN, NAN),         # no inferred work
                     ("c", 150.0, 150.0, 5000.0, 5000.0)])  # works where nobody listed works
    out = register_outcomes(inf, reg, 100.0, owner=owners_from_register(reg, inf["pseudonym"]))
    h, e = out["hierarchical"], out["exact"]
    assert e["single_candidate"].tolist() == [True, False, False] and e["named"].tolist() == [True, False, False]
    assert h["single_candidate"].tolist() == [True, False, False]
    assert h["at_most_5"].tolist() == [True, True, True]  # both residents are left
    assert h["named"].tolist() == [True, False, False] and h["narrowed_5"].tolist() == [True, True, False]
    # "c" is not in the register's user column: never named
    assert owners_from_register(reg, ["c"]).tolist() == [-1]
    assert not any(m["named"][2] for m in out.values())


def test_nobody_listed_and_no_home():
    reg = _register([(5, 120.0, 130.0, NAN, NAN)], age=[40], user=["far"])
    inf = _inferred([("far", 5150.0, 5150.0, NAN, NAN), ("nohome", NAN, NAN, 100.0, 100.0)])
    out = register_outcomes(inf, reg, 100.0, owner=owners_from_register(reg, inf["pseudonym"]))
    for r in ("exact", "hierarchical", "home_adults"):
        assert out[r]["no_candidate"].tolist() == [True, True], r
        assert not out[r]["named"].any()
    # the ranked list still names the nearest person (far away, but the right one) ...
    assert out["ranked"]["no_candidate"].tolist() == [False, True]
    assert out["ranked"]["named"].tolist() == [True, False]
    # ... and the table counts every user in n
    t = register_ladder(inf, reg, (100.0, 250.0), owner=owners_from_register(reg, inf["pseudonym"]))
    assert (t["n"] == 2).all() and set(t["cell_m"]) == {100.0, 250.0}
    nc = t[(t["rung"] == "hierarchical") & (t["metric"] == "no_candidate")]
    assert nc["value"].tolist() == [1.0, 1.0]


def test_home_adults_drops_a_listed_minor():
    reg = _register([(0, 110.0, 110.0, NAN, NAN), (1, 150.0, 150.0, NAN, NAN)], age=[45, 9], user=["p", "kid"])
    inf = _inferred([("p", 150.0, 150.0, NAN, NAN)])
    out = register_outcomes(inf, reg, 100.0, owner=owners_from_register(reg, inf["pseudonym"]))
    assert register_rungs(reg) == ("exact", "hierarchical", "home_adults", "ranked")
    assert out["hierarchical"]["at_most_5"][0] and not out["hierarchical"]["single_candidate"][0]
    assert out["home_adults"]["single_candidate"][0] and out["home_adults"]["named"][0]
    # the cell edge: a home 1 m across the edge is compared with the other cell's residents
    edge = register_outcomes(_inferred([("p", 99.0, 150.0, NAN, NAN)]), reg, 100.0)
    assert edge["hierarchical"]["no_candidate"][0] and not edge["ranked"]["no_candidate"][0]


def test_grid_register_columns():
    reg = _register([(0, -10.0, 10.0, 300.0, 300.0), (1, 10.0, 10.0, NAN, NAN)])
    g = grid_register(reg, 100.0)
    assert g["home_building_id"].tolist() == GridZones(100.0).locate([-10.0, 10.0], [10.0, 10.0]).tolist()
    assert g["work_building_id"].iloc[1] == -1 and g["work_building_id"].iloc[0] >= 0
    assert (g["home_building_id"] >= 0).all()


# ============================================================================ against the simulator
def _audit_register(sim):
    """The simulator's register in the audit's form, with each person's pseudonym as truth."""
    own = sim.pseudonyms.drop_duplicates("person_id").set_index("person_id")["pseudonym"]
    reg = sim.register.sort_values("person_id")
    return pd.DataFrame({"person_id": reg["person_id"].to_numpy(), "home_x_m": reg["home_x_m"].to_numpy(),
                         "home_y_m": reg["home_y_m"].to_numpy(), "work_x_m": reg["work_x_m"].to_numpy(),
                         "work_y_m": reg["work_y_m"].to_numpy(), "age": reg["age"].to_numpy(),
                         "user": reg["person_id"].map(own).to_numpy(dtype=object)})


AUDIT_FAST = dict(days=(1, 7), n_sample=50, skmob_k=1, unicity_p=(2,), known_m=(1,), topn_n=(1,))


@pytest.fixture(scope="module")
def sim_audit(small_sim):
    return audit(small_sim.release, register=_audit_register(small_sim), **AUDIT_FAST)


def test_audit_equals_the_ladder_run_directly(small_sim, sim_audit):
    """The audit's register rows are the ladder of sim.attacks.ladder run by hand on the
    same inferred table, with the simulator's register relocated to grid cells and the
    simulator's truth table as the owners: every share and n identical."""
    rel = small_sim.release
    inferred, _ = infer_auto(rel)
    assert len(inferred) == int((rel.lengths > 0).sum())  # every user, so the denominators agree
    owner = truth_person(small_sim.pseudonyms, inferred["pseudonym"])
    u = sim_audit["uniqueness"]
    checked = 0
    for cell in (100.0, 250.0, 500.0):
        g = GridZones(cell)
        reg = small_sim.register.copy()
        reg["home_building_id"] = g.locate(reg["home_x_m"], reg["home_y_m"])
        reg["work_building_id"] = np.where(reg["work_x_m"].notna(), g.locate(reg["work_x_m"], reg["work_y_m"]), -1)
        sets = ladder_sets(inferred, reg, g, level="building")  # the ladder's defaults: k_max 10, cumulative
        pos = owner_positions(sets, owner)
        for rung in sets.rungs:
            size, owner_k = pos[rung]
            named, wrong, none = outcomes(RUNGS[rung].kind, size, owner_k)
            want = {"named": named, "wrong": wrong, "no_candidate": none, "narrowed_5": owner_k <= 5}
            if RUNGS[rung].kind == "set":
                want.update(single_candidate=size == 1, at_most_5=(size >= 1) & (size <= 5))
            got = u[(u["attack"] == f"register_{rung}") & (u["cell_m"] == cell)].set_index("metric")
            assert set(got.index) == set(want), (rung, cell)
            for metric, v in want.items():
                assert got.loc[metric, "n"] == len(v)
                assert round(got.loc[metric, "value"] * len(v)) == int(v.sum()), (rung, cell, metric)
                checked += 1
    assert checked == 3 * (4 * 6 - 2)
    # a non-trivial comparison: the ladder names people at every cell size
    named = u[(u["metric"] == "named") & u["attack"].str.startswith("register_")]
    assert (named["value"] > 0.05).all()
    reg_info = sim_audit["info"]["register"]
    assert reg_info["listed"] == int(np.isin(owner, small_sim.register["person_id"]).sum())
    assert reg_info["truth"] and reg_info["users"] == len(inferred)


def test_headline_days_and_attacker_view(small_sim, sim_audit):
    bd = sim_audit["risk_by_days"]
    h = bd[bd["attack"] == "register_hierarchical"]
    assert h["days"].tolist() == [1, 7] and (h["metric"] == "named").all() and (h["setting"] == "250 m cells").all()
    full = sim_audit["uniqueness"]
    row = full[(full["attack"] == "register_hierarchical") & (full["setting"] == "250 m cells")
               & (full["metric"] == "named")]
    assert h[h["days"] == 7]["value"].iloc[0] == pytest.approx(row["value"].iloc[0])  # 7 days = the whole week
    # without the truth column: the same candidate sets, attacker-view metrics only
    res = audit(small_sim.release, register=_audit_register(small_sim).drop(columns=["user"]), **AUDIT_FAST)
    u = res["uniqueness"]
    r = u[u["attack"].str.startswith("register_")]
    assert set(r["metric"]) == {"single_candidate", "at_most_5", "no_candidate"}
    same = full[full["attack"].str.startswith("register_") & full["metric"].isin(set(r["metric"]))]
    np.testing.assert_allclose(r["value"].to_numpy(), same["value"].to_numpy())
    assert "listed" not in res["info"]["register"] and not res["info"]["register"]["truth"]
    bdh = res["risk_by_days"]
    assert (bdh[bdh["attack"] == "register_hierarchical"]["metric"] == "single_candidate").all()
    with pytest.raises(ConfigError, match="register_cells_m"):
        audit(small_sim.release, register=_audit_register(small_sim), register_cells_m=(0,))


def test_renamed_pseudonyms_are_scored_through_the_defense_mapping(small_sim, sim_audit):
    """salt renames every pseudonym and changes no ping: the linkage, scored through the
    defense's mapping to the input ids, is the same as without it."""
    res = audit(small_sim.release, register=_audit_register(small_sim), defenses=["salt:salt=pepper"],
                **AUDIT_FAST)
    a = res["uniqueness"]
    b = sim_audit["uniqueness"]
    a, b = (t[t["attack"].str.startswith("register_")].reset_index(drop=True) for t in (a, b))
    pd.testing.assert_frame_equal(a, b)
    assert res["info"]["unit"] == "pseudonym" and "per pseudonym" in res["info"]["register"]["scoring"]
    d = res["defenses"]
    hd = d[d["attack"] == "register_hierarchical"].set_index("stage")["value"]
    assert hd["before"] == pytest.approx(hd["after"]) and hd["before"] > 0


# ============================================================================ the command line
@pytest.fixture(scope="module")
def cli_files(tmp_path_factory, small_sim):
    """Pings and a register of the small simulation as CSV, with distinctive ids and names."""
    rel = small_sim.release
    f = rel.to_frame()
    lat, lon = small_sim.world.to_latlon(f["x_m"].to_numpy(), f["y_m"].to_numpy())
    ids = {p: f"phone-{i:04d}-qx" for i, p in enumerate(sorted(rel.pseudonym))}
    d = tmp_path_factory.mktemp("register_cli")
    pd.DataFrame({"device_id": f["pseudonym"].map(ids),
                  "timestamp": pd.to_datetime(f["t_s"], unit="s", utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
                  "latitude": np.round(lat, 7), "longitude": np.round(lon, 7)}).to_csv(d / "pings.csv", index=False)
    r = small_sim.register
    hl, ho = small_sim.world.to_latlon(r["home_x_m"].to_numpy(), r["home_y_m"].to_numpy())
    wl, wo = small_sim.world.to_latlon(r["work_x_m"].to_numpy(), r["work_y_m"].to_numpy())
    own = small_sim.pseudonyms.drop_duplicates("person_id").set_index("person_id")["pseudonym"].map(ids)
    names = [f"Zebulon Quartermaine-{i}" for i in range(len(r))]
    reg = pd.DataFrame({"person": names, "home_lat": np.round(hl, 7), "home_lon": np.round(ho, 7),
                        "work_lat": np.round(wl, 7), "work_lon": np.round(wo, 7), "age": r["age"].to_numpy(),
                        "phone_owner": r["person_id"].map(own).to_numpy(dtype=object)})
    reg.to_csv(d / "register.csv", index=False)
    return d, reg, sorted(ids.values())


def test_cli_register_success_and_nothing_personal_in_the_outputs(cli_files, capsys):
    d, reg, ids = cli_files
    out = d / "audit"
    rc = main(["audit", str(d / "pings.csv"), "--out", str(out), "--tz", "America/Chicago", "--register",
               str(d / "register.csv"), "--register-user", "phone_owner", "-q"])
    printed = capsys.readouterr().out
    assert rc == 0
    assert f"register: read {len(reg):,} rows, kept {len(reg):,} persons" in printed
    assert "linked to the register on 250 m cells, named correctly: exact" in printed
    m = json.loads((out / AUDIT_MARKER).read_text())
    ri = m["info"]["register"]
    assert ri["truth"] and ri["persons"] == len(reg) and ri["reader"]["columns"]["name"] == "person"
    u = pd.read_csv(out / "tables" / "uniqueness.csv")
    assert {f"register_{r}" for r in ("exact", "hierarchical", "home_adults", "ranked")} <= set(u["attack"])
    data = pd.read_csv(out / "tables" / "data.csv").set_index("item")["value"]
    assert data["register_rows_kept"] == len(reg) and data["register_users_listed"] == ri["listed"]
    md = (out / "audit.md").read_text()
    assert "## Linking to your register" in md and (out / "figures" / "register.png").is_file()
    assert "--register REGISTER --register-user phone_owner" in md

    # nothing personal anywhere: no name, no user id, no register coordinate, no inferred home
    coords = set()
    for c in ("home_lat", "home_lon", "work_lat", "work_lon"):
        coords |= {f"{v:.5f}" for v in reg[c].dropna()}
    traces_inf, _ = infer_auto(_read(d / "pings.csv"))
    secret = set()
    for c in ("home_x_m", "home_y_m", "work_x_m", "work_y_m"):
        secret |= {f"{v:.2f}" for v in traces_inf[c].dropna() if abs(v) >= 1000}
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) >= 15
    for p in files:
        txt = p.read_bytes().decode("latin-1")
        assert "Zebulon" not in txt and "Quartermaine" not in txt, f"{p.name} holds a name"
        assert "phone-" not in txt and "-qx" not in txt, f"{p.name} holds a user id"
        bad = [v for v in DEC5.findall(txt) if f"{float(v):.5f}" in coords]
        assert not bad, f"{p.name} holds register coordinates {bad[:3]}"
        assert not [s for s in secret if s in txt], f"{p.name} holds an inferred home/work"


def _read(path):
    return read_pings(path, tz="America/Chicago")[0]


@pytest.mark.parametrize("extra,needle", [
    (["--register", "{d}/nobody.csv"], "no such register file"),
    (["--register", "{d}/pings.csv"], "cannot find the register's name column"),
    (["--register", "{d}/register.csv", "--register-home-lat", "latitude"],
     "--register-home-lat 'latitude' is not a column of the register"),
    (["--register", "{d}/register.csv", "--register-user", "owner"], "--register-user 'owner' is not a column"),
    (["--register", "{d}/broken.parquet"], "cannot read the register file"),
    (["--register-user", "phone_owner"], "no register was given"),
])
def test_cli_bad_register_exits_2(cli_files, tmp_path, capsys, extra, needle):
    d, _, _ = cli_files
    (d / "broken.parquet").write_text("not parquet")
    out = tmp_path / "out"
    rc = main(["audit", str(d / "pings.csv"), "--out", str(out), "-q", *[e.format(d=d) for e in extra]])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("reidsim: error:") and needle in err, err
    assert not out.exists() or not any(out.iterdir())
