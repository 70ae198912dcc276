"""The attacker ladder (sim.attacks.ladder): hand-built cases with known answers, a slow
reference, the monotonicities the module promises, per-device figures and
relink-then-identify."""
import numpy as np
import pandas as pd
import pytest

from _gridworld import GridWorld, make_population, register_from_points
from sim.attacks import ladder as LD
from sim.attacks import linkage as L
from sim.attacks import run_attacks
from sim.core.errors import ConfigError, InputError

NAN = np.nan
SETS = ("exact", "hierarchical", "home_adults")


def _c(x, y):
    """Centre of the 50 m building of column x, row y."""
    return 25.0 + 50 * x, 25.0 + 50 * y


# ------------------------------------------------------------------ hand-built world
@pytest.fixture(scope="module")
def crafted():
    """800 m world, buildings 50 m.  Row 0 buildings B0..B4 at x = 25, 75, 125, 175, 225.

    B0: person 1 (employer E1); B1: 2 (E1), 3 (E2); B2: 4 (no employer listed), 5 (E1);
    B3: 6 (adult, unlisted), 7 (age 12, unlisted); B4: nobody.
    """
    w = GridWorld(800, 800, (50, 200, 400, 800))
    e1, e2 = _c(15, 15), _c(14, 15)
    homes = [_c(0, 0), _c(1, 0), _c(1, 0), _c(2, 0), _c(2, 0), _c(3, 0), _c(3, 0)]
    works = [e1, e1, e2, (NAN, NAN), e1, (NAN, NAN), (NAN, NAN)]
    reg = register_from_points(w, [1, 2, 3, 4, 5, 6, 7], tuple(np.array(homes).T), tuple(np.array(works).T))
    reg["age"] = [40.0, 40, 40, 40, 40, 40, 12]
    rows = [  # pseudonym, home, work, owner
        ("d1", _c(0, 0), e1, 1),            # single household + right employer: named everywhere
        ("d1b", _c(0, 0), (NAN, NAN), 1),   # no work: exact has nobody, hierarchical names
        ("d2", _c(1, 0), e2, 3),            # two residents, one at the inferred employer
        ("d2b", _c(1, 0), (NAN, NAN), 3),   # two residents, no work: narrowed to 2
        ("d3", _c(2, 0), _c(9, 9), 4),      # employer not listed: unlisted fallback
        ("d4", _c(3, 0), (NAN, NAN), 6),    # adult among a child: home_adults names
        ("d4b", _c(3, 0), (NAN, NAN), 7),   # the child's phone: home_adults drops the owner
        ("d5", _c(4, 0), e1, 6),            # empty building: no candidate, ranked -> neighbours
        ("d6", (NAN, NAN), e1, 1),          # unknown home: no candidate anywhere
        ("d7", (-10.0, 5.0), e1, 1),        # home outside the area: ranked only
    ]
    inf = pd.DataFrame({"pseudonym": [r[0] for r in rows],
                        "home_x_m": [r[1][0] for r in rows], "home_y_m": [r[1][1] for r in rows],
                        "work_x_m": [r[2][0] for r in rows], "work_y_m": [r[2][1] for r in rows]})
    truth = pd.DataFrame({"pseudonym": inf["pseudonym"], "person_id": [r[3] for r in rows],
                          "device_idx": np.arange(len(rows))})
    return w, reg, inf, truth


def _lists(cands):
    out = {}
    for (p, r), g in cands.sort_values(["pseudonym", "rung", "rank"]).groupby(["pseudonym", "rung"]):
        out[(p, r)] = g["person_id"].tolist()
    return out


def test_crafted_candidate_sets(crafted):
    w, reg, inf, _ = crafted
    got = _lists(LD.ladder_candidates(LD.ladder_sets(inf, reg, w, k_max=4)))
    expect = {
        "d1": ([1], [1], [1], [1, 2, 3, 4]),
        "d1b": ([], [1], [1], [1, 2, 3, 4]),
        "d2": ([3], [3], [3], [3, 2, 1, 4]),
        "d2b": ([], [2, 3], [2, 3], [2, 3, 1, 4]),
        "d3": ([], [4], [4], [4, 5, 2, 3]),
        "d4": ([], [6, 7], [6], [6, 7, 4, 5]),
        "d4b": ([], [6, 7], [6], [6, 7, 4, 5]),
        "d5": ([], [], [], [6, 7, 4, 5]),
        "d6": ([], [], [], []),
        "d7": ([], [], [], [1, 2, 3, 4]),
    }
    for p, sets in expect.items():
        for r, e in zip(LD.RUNG_NAMES, sets):
            assert got.get((p, r), []) == e, (p, r)


def test_crafted_scores(crafted):
    w, reg, inf, truth = crafted
    pos = LD.owner_positions(LD.ladder_sets(inf, reg, w), truth["person_id"])
    names = inf["pseudonym"].tolist()

    def outcome(r, p):
        size, k = pos[r][0][names.index(p)], pos[r][1][names.index(p)]
        named, wrong, none = LD.outcomes(LD.RUNGS[r].kind, np.array([size]), np.array([k]))
        return bool(named[0]), bool(wrong[0]), bool(none[0]), k

    assert outcome("exact", "d1")[0] and outcome("ranked", "d1")[0]
    assert outcome("exact", "d1b")[2] and outcome("hierarchical", "d1b")[0]
    assert outcome("exact", "d2")[0] and outcome("hierarchical", "d2")[0]
    assert outcome("hierarchical", "d2b")[3] == 2 and not outcome("hierarchical", "d2b")[0]
    assert outcome("ranked", "d2b")[1] and outcome("ranked", "d2b")[3] == 2  # named 2 wrongly; owner 2nd
    assert outcome("exact", "d3")[2] and outcome("hierarchical", "d3")[0]
    assert not outcome("hierarchical", "d4")[0] and outcome("home_adults", "d4")[0]
    # the child's phone: narrowed to 2 by the hierarchical rung, wrongly named by home_adults
    assert outcome("hierarchical", "d4b")[3] == 2
    assert outcome("home_adults", "d4b")[1] and outcome("home_adults", "d4b")[3] == np.inf
    assert outcome("ranked", "d4b")[3] == 2
    assert all(outcome(r, "d5")[2] for r in SETS) and outcome("ranked", "d5")[0]
    assert all(outcome(r, "d6")[2] for r in LD.RUNG_NAMES)
    assert all(outcome(r, "d7")[2] for r in SETS) and outcome("ranked", "d7")[0]


def test_device_named_by_any_pseudonym_and_conflicts_counted(crafted):
    w, reg, _, _ = crafted
    e1, e2 = _c(15, 15), _c(14, 15)
    inf = pd.DataFrame({"pseudonym": ["p", "q", "r"], "home_x_m": [_c(1, 0)[0], _c(0, 0)[0], _c(0, 0)[0]],
                        "home_y_m": 25.0, "work_x_m": [e2[0], e1[0], e1[0]], "work_y_m": [e2[1], e1[1], e1[1]]})
    truth = pd.DataFrame({"pseudonym": ["p", "q", "r"], "person_id": [3, 3, 1], "device_idx": [0, 0, 1]})
    tab, per = LD.ladder_attack({3: inf}, reg, w, truth, rungs=("exact",))
    v = tab.assign(k=tab["k"].fillna(0)).set_index(["unit", "metric", "k"])["value"]
    assert v[("pseudonym", "named", 0)] == pytest.approx(2 / 3) and v[("pseudonym", "wrong", 0)] == pytest.approx(1 / 3)
    assert v[("device", "named", 0)] == 1 and v[("device", "wrong", 0)] == 0.5
    assert v[("device", "named_and_wrong", 0)] == 0.5  # device 0: p names person 3, q names person 1
    assert ("pseudonym", "named_and_wrong", 0) not in v.index
    assert per.set_index("device_idx")["n_pseudonyms"].to_dict() == {0: 2, 1: 1}


def test_exact_rung_is_the_home_work_linkage(crafted):
    w, reg, inf, _ = crafted
    sets = LD.ladder_sets(inf, reg, w, rungs=("exact",))
    lk = L.link_devices(inf, reg, w, levels=("building",), keys=("home_work",))
    np.testing.assert_array_equal(sets.size["exact"], np.maximum(lk["set_size"].to_numpy(), 0))


def test_register_without_employers_or_age(crafted):
    w, reg, inf, _ = crafted
    bare = reg.drop(columns=[c for c in reg.columns if c.startswith("work_")] + ["age"])
    got = _lists(LD.ladder_candidates(LD.ladder_sets(inf, bare, w, rungs=SETS)))
    assert got.get(("d1", "exact"), []) == []  # nobody's employer is listed
    assert got[("d2", "hierarchical")] == [2, 3]  # all unlisted: all residents
    assert got[("d4", "home_adults")] == [6, 7]  # no age column: everyone listed is an adult


def test_registry_and_config_errors(crafted):
    w, reg, inf, truth = crafted
    t = LD.rung_table()
    assert t["name"].tolist() == list(LD.RUNG_NAMES) == ["exact", "hierarchical", "home_adults", "ranked"]
    assert t["description"].str.len().min() > 20 and t["needs"].str.len().min() > 5
    assert LD.check_rungs(("ranked", "exact")) == ("exact", "ranked")  # ladder order
    for bad in ((), ("magic",)):
        with pytest.raises(ConfigError):
            LD.check_rungs(bad)
    for bad in ((), (0,), (2.5,)):
        with pytest.raises(ConfigError):
            LD.check_ks(bad)
    with pytest.raises(ConfigError):
        LD.ladder_sets(inf, reg, w, level="county")
    with pytest.raises(InputError, match="home_block_id"):
        LD.ladder_sets(inf, reg.drop(columns="home_block_id"), w, level="block")
    with pytest.raises(InputError, match="twice"):
        LD.ladder_sets(inf, pd.concat([reg, reg.iloc[:1]]), w)
    with pytest.raises(InputError, match="twice"):  # sorted ids with a repeat: not strictly increasing
        LD.ladder_sets(inf, pd.concat([reg.iloc[:1], reg]), w)
    with pytest.raises(InputError, match="duplicate"):
        LD.ladder_sets(pd.concat([inf, inf.iloc[:1]]), reg, w)
    with pytest.raises(InputError, match="unknown to the truth"):
        LD.ladder_attack({1: inf}, reg, w, truth.iloc[1:])


# ------------------------------------------------------------------ slow reference
def _reference(inf, reg, w, level, k_max, cumulative):
    """Obviously-correct candidate lists, one Python loop per device and person."""
    hc, wc = f"home_{level}_id", f"work_{level}_id"
    people = [dict(pid=p.person_id, home=getattr(p, hc), emp=getattr(p, wc), x=p.home_x_m, y=p.home_y_m,
                   adult=not (p.age == p.age and p.age < 18)) for p in reg.itertuples(index=False)]
    out = {}

    def zone(x, y):
        return int(w.locate([x], [y], level)[0]) if np.isfinite(x) and np.isfinite(y) else -2

    for r in inf.itertuples(index=False):
        h, wz = zone(r.home_x_m, r.home_y_m), zone(r.work_x_m, r.work_y_m)
        res = [p for p in people if h >= 0 and p["home"] == h]
        at_emp = {p["pid"] for p in res if wz >= 0 and p["emp"] == wz}
        unlisted = {p["pid"] for p in res if p["emp"] < 0}
        own = {"exact": at_emp, "hierarchical": at_emp or unlisted or {p["pid"] for p in res},
               "home_adults": {p["pid"] for p in res if p["adult"]}}
        prev, depth = None, {}
        for rung in SETS:
            s = own[rung]
            if cumulative and prev is not None:
                s = (prev & s) or prev or s
            out[(r.pseudonym, rung)] = sorted(s)
            if cumulative:
                for q in s:
                    depth[q] = depth.get(q, 0) + 1
                prev = s
        if not (np.isfinite(r.home_x_m) and np.isfinite(r.home_y_m)):
            out[(r.pseudonym, "ranked")] = []
            continue

        def dist(p):
            v = np.hypot(p["x"] - r.home_x_m, p["y"] - r.home_y_m)
            return np.inf if np.isnan(v) else v

        def tier(p):
            return 0 if (wz >= 0 and p["emp"] == wz) else (1 if p["emp"] < 0 else 2)

        first = sorted(res, key=lambda p: (-depth.get(p["pid"], 0), tier(p), dist(p), p["pid"]))
        rest = sorted([p for p in people if p["home"] >= 0 and p["home"] != h and np.isfinite(p["x"])],
                      key=lambda p: (dist(p), p["pid"]))
        out[(r.pseudonym, "ranked")] = [p["pid"] for p in (first + rest)[:k_max]]
    return out


def _random_case(seed, n_reg=120, n_dev=60):
    """Few buildings (many residents, exact-distance ties), ages, unlisted employers,
    homes in empty buildings, unknown and outside homes."""
    rng = np.random.default_rng(seed)
    w = GridWorld(800, 800, (100, 200, 400, 800))
    bx, by = (rng.integers(0, 8, (2, n_reg)) + 0.5) * 100
    wx, wy = (rng.integers(0, 8, (2, n_reg)) + 0.5) * 100
    wx[rng.random(n_reg) < 0.3] = NAN
    reg = register_from_points(w, rng.permutation(n_reg) * 3 + 5, (bx, by), (wx, wy))
    reg.loc[rng.random(n_reg) < 0.05, ["home_building_id", "home_block_id"]] = -1
    reg["age"] = np.where(rng.random(n_reg) < 0.2, 10.0, 40.0)
    reg.loc[rng.random(n_reg) < 0.1, "age"] = NAN
    pick = rng.integers(0, n_reg, n_dev)
    hx = np.where(rng.random(n_dev) < 0.7, bx[pick], rng.uniform(-50, 850, n_dev))
    hy = np.where(rng.random(n_dev) < 0.7, by[pick], rng.uniform(0, 800, n_dev))
    hx[rng.random(n_dev) < 0.1] = NAN
    iwx = np.where(rng.random(n_dev) < 0.6, wx[pick], (rng.integers(0, 8, n_dev) + 0.5) * 100)
    iwy = np.where(rng.random(n_dev) < 0.6, wy[pick], (rng.integers(0, 8, n_dev) + 0.5) * 100)
    iwx[rng.random(n_dev) < 0.2] = NAN
    inf = pd.DataFrame({"pseudonym": [f"d{i}" for i in range(n_dev)], "home_x_m": hx, "home_y_m": hy,
                        "work_x_m": iwx, "work_y_m": iwy})
    owner = np.where(rng.random(n_dev) < 0.9, reg["person_id"].to_numpy()[pick], 10_000 + np.arange(n_dev))
    return w, reg, inf, owner


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_equals_slow_reference(seed):
    w, reg, inf, _ = _random_case(seed)
    for level in ("building", "block"):
        for cumulative in (True, False):
            for k_max in (3, 10):
                ref = _reference(inf, reg, w, level, k_max, cumulative)
                got = _lists(LD.ladder_candidates(LD.ladder_sets(inf, reg, w, level=level, k_max=k_max,
                                                                 cumulative=cumulative)))
                bad = [(k, v, got.get(k, [])) for k, v in ref.items() if v != got.get(k, [])]
                assert not bad, (level, cumulative, k_max, bad[:3])


def test_fast_equals_reference_when_neighbours_need_several_rounds():
    # every block holds 9 residents on 9 distinct buildings: with k_max = 10 a device needs
    # one neighbour, and the nearest addresses are mostly its own block's (excluded)
    rng = np.random.default_rng(0)
    w = GridWorld(800, 800, (50, 200, 400, 800))
    xs, ys = [], []
    for bx in range(4):
        for by in range(4):
            cells = rng.choice(16, 9, replace=False)
            xs += list(bx * 200 + (cells % 4) * 50 + 25.0)
            ys += list(by * 200 + (cells // 4) * 50 + 25.0)
    reg = register_from_points(w, rng.permutation(len(xs)) + 1, (np.array(xs), np.array(ys)),
                               (np.full(len(xs), NAN), np.full(len(xs), NAN)))
    reg["age"] = 40.0
    inf = pd.DataFrame({"pseudonym": [f"d{i}" for i in range(30)],
                        "home_x_m": (rng.integers(0, 16, 30) + 0.5) * 50,
                        "home_y_m": (rng.integers(0, 16, 30) + 0.5) * 50, "work_x_m": NAN, "work_y_m": NAN})
    ref = _reference(inf, reg, w, "block", 10, True)
    got = _lists(LD.ladder_candidates(LD.ladder_sets(inf, reg, w, level="block", k_max=10)))
    assert all(v == got.get(k, []) for k, v in ref.items())


# ------------------------------------------------------------------ monotonicity
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_monotone_in_rung_and_k(seed):
    w, reg, inf, owner = _random_case(seed, n_reg=200, n_dev=150)
    for level in ("building", "block"):
        pos = LD.owner_positions(LD.ladder_sets(inf, reg, w, level=level), owner)
        named = {r: pos[r][1] == 1 for r in LD.RUNG_NAMES}
        none = {r: pos[r][0] == 0 for r in LD.RUNG_NAMES}
        for a, b in zip(LD.RUNG_NAMES[:-1], LD.RUNG_NAMES[1:]):
            assert not (named[a] & ~named[b]).any(), (a, b)  # a stronger rung never names fewer
            assert not (none[b] & ~none[a]).any(), (a, b)  # nor has "no candidate" more often
        # narrowed_k: exact -> hierarchical, and ranked >= every earlier rung
        assert (pos["hierarchical"][1] <= pos["exact"][1]).all()
        for r in SETS:
            assert (pos["ranked"][1] <= pos[r][1]).all(), r
    tab, _ = LD.ladder_attack({1: inf}, reg, w, pd.DataFrame({"pseudonym": inf["pseudonym"], "person_id": owner,
                                                              "device_idx": np.arange(len(inf))}))
    for (rung, unit), g in tab[tab["metric"] == "narrowed_k"].groupby(["rung", "unit"]):
        assert g.sort_values("k")["value"].is_monotonic_increasing  # larger k never fewer
    named = tab[tab["metric"] == "named"].set_index(["unit", "rung"])["value"]
    for unit in LD.UNITS:
        assert named.loc[unit].loc[list(LD.RUNG_NAMES)].is_monotonic_increasing


def test_home_adults_can_lose_narrowed_k(crafted):
    # documented: narrowed_k is not monotone at home_adults (the child's phone d4b)
    w, reg, inf, truth = crafted
    pos = LD.owner_positions(LD.ladder_sets(inf, reg, w), truth["person_id"])
    i = inf["pseudonym"].tolist().index("d4b")
    assert pos["hierarchical"][1][i] == 2 and pos["home_adults"][1][i] == np.inf


@pytest.mark.parametrize("seed", range(6))
def test_more_days_never_fewer_when_the_added_work_is_the_listed_employer(seed):
    """Not monotone in days in general (a longer window can move the home or add a work
    place that filters the owner out).  What holds: the home stays and the work place
    added is the owner's listed employer -> no rung names or narrows fewer."""
    rng = np.random.default_rng(seed)
    w = GridWorld(800, 800, (100, 200, 400, 800))
    n_reg, n_dev = 150, 80
    bx, by = (rng.integers(0, 8, (2, n_reg)) + 0.5) * 100
    wx, wy = (rng.integers(0, 8, (2, n_reg)) + 0.5) * 100
    wx[rng.random(n_reg) < 0.3] = NAN
    pid = rng.permutation(n_reg) + 1
    reg = register_from_points(w, pid, (bx, by), (wx, wy))
    reg["age"] = np.where(rng.random(n_reg) < 0.2, 10.0, 40.0)
    o = rng.choice(np.flatnonzero(np.isfinite(wx)), n_dev)
    jit = rng.uniform(-40, 40, (2, n_dev))
    early = pd.DataFrame({"pseudonym": np.arange(n_dev), "home_x_m": bx[o] + jit[0], "home_y_m": by[o] + jit[1],
                          "work_x_m": np.where(rng.random(n_dev) < 0.5, wx[o], NAN), "work_y_m": wy[o]})
    early.loc[early["work_x_m"].isna(), "work_y_m"] = NAN
    late = early.assign(work_x_m=wx[o], work_y_m=wy[o])
    for level in ("building", "block"):
        p1 = LD.owner_positions(LD.ladder_sets(early, reg, w, level=level), pid[o])
        p2 = LD.owner_positions(LD.ladder_sets(late, reg, w, level=level), pid[o])
        for r in LD.RUNG_NAMES:
            assert (p2[r][1] <= p1[r][1]).all(), (level, r)


# ------------------------------------------------------------------ per device, windows
@pytest.fixture(scope="module")
def rotated():
    """60 persons, 4 days, a new pseudonym every 2 days (two per device), perfect
    inference except that a third of the epoch-1 pseudonyms lose their home."""
    w = GridWorld()
    p = make_population(w, n_persons=60, n_days=4, seed=7, rotation_days=2)
    inf = p["inferred"].copy()
    ep1 = inf["pseudonym"].str.endswith("_1").to_numpy()
    lose = ep1 & (np.random.default_rng(1).random(len(inf)) < 0.35)
    inf.loc[lose, ["home_x_m", "home_y_m"]] = NAN
    return w, p, inf


def test_per_device_at_least_per_pseudonym_and_denominators(rotated):
    w, p, inf = rotated
    tab, per = LD.ladder_attack({1: inf, 2: inf, 4: inf}, p["register"], w, p["pseudonyms"], release=p["release"])
    assert list(tab.columns) == LD.LADDER_COLUMNS
    assert set(tab["unit"]) == {"device", "pseudonym"}
    assert set(tab.loc[tab["unit"] == "pseudonym", "metric"]) == set(LD.METRICS)
    assert set(tab.loc[tab["unit"] == "device", "metric"]) == set(LD.DEVICE_METRICS)
    n = tab.groupby(["days", "unit"])["n"].agg(["min", "max"])
    # window 1 and 2: only the epoch-0 pseudonyms exist (epoch 1 starts on day 2)
    assert (n.loc[(1, "pseudonym")] == 60).all() and (n.loc[(2, "pseudonym")] == 60).all()
    assert (n.loc[(4, "pseudonym")] == 120).all() and (n.loc[(4, "device")] == 60).all()
    assert ((tab["ci_low"] <= tab["value"]) & (tab["value"] <= tab["ci_high"])).all()
    assert tab.loc[tab["metric"] != "narrowed_k", "k"].isna().all()
    assert sorted(tab["k"].dropna().unique()) == list(LD.KS)
    good = tab.assign(k=tab["k"].fillna(0)).pivot(index=["rung", "days", "metric", "k"], columns="unit",
                                                  values="value").reset_index()
    good = good[good["metric"].isin(["named", "narrowed_k"])]
    assert (good["device"] >= good["pseudonym"] - 1e-12).all()  # every device has the same 2 pseudonyms
    at4 = good[(good["days"] == 4) & (good["metric"] == "named")]
    assert (at4["device"] > at4["pseudonym"]).all()  # and strictly more where epoch 1 lost its home
    # per-device table
    assert list(per.columns) == LD.PER_DEVICE_COLUMNS
    assert len(per) == 60 * len(LD.RUNG_NAMES) and (per["n_pseudonyms"] == 2).all()
    named = tab.query("days == 4 and unit == 'device' and metric == 'named'").set_index("rung")["value"]
    np.testing.assert_allclose(per.groupby("rung")["named"].mean().sort_index(), named.sort_index())
    assert (per.loc[per["named"], "first_day_named"] == 1).all()  # epoch 0 named from day 1 on
    assert (per.loc[per["named"], "best_k"] == 1).all()


def test_existence_from_truth_when_no_release(rotated):
    w, p, inf = rotated
    a, _ = LD.ladder_attack({1: inf, 4: inf}, p["register"], w, p["pseudonyms"], release=p["release"])
    b, _ = LD.ladder_attack({1: inf, 4: inf}, p["register"], w, p["pseudonyms"])
    pd.testing.assert_frame_equal(a, b)


def test_relink_then_identify_beats_plain():
    """Device 0 (person 11) rotates: its week-0 pseudonym knows the home (5 nights) but
    no work, its week-1 pseudonym knows the work but puts the home one building off.
    Alone neither is named; merged (home of the most nights, work of the most work days)
    the exact join names person 11.  Device 1 is far away and named either way."""
    w = GridWorld(800, 800, (50, 200, 400, 800))
    emp, far_h, far_w = _c(6, 0), _c(12, 12), _c(13, 13)
    reg = register_from_points(w, [2, 11, 3, 5], tuple(np.array([_c(0, 0), _c(0, 0), _c(1, 0), far_h]).T),
                               tuple(np.array([_c(8, 8), emp, emp, far_w]).T))
    inf = pd.DataFrame({
        "pseudonym": ["a0", "a1", "b0", "b1"],
        "home_x_m": [_c(0, 0)[0], _c(1, 0)[0], far_h[0], far_h[0]],
        "home_y_m": [_c(0, 0)[1], _c(1, 0)[1], far_h[1], far_h[1]],
        "work_x_m": [NAN, emp[0], far_w[0], far_w[0]], "work_y_m": [NAN, emp[1], far_w[1], far_w[1]],
        "home_nights": [5, 1, 5, 5], "work_days": [0, 2, 3, 3],
    })
    truth = pd.DataFrame({"pseudonym": ["a0", "a1", "b0", "b1"], "person_id": [11, 11, 5, 5],
                          "device_idx": [0, 0, 1, 1], "first_day": [0, 2, 0, 2]})
    epochs = truth.assign(epoch=truth["first_day"] // 2)
    groups, gof = LD.relink_groups(inf, epochs)
    assert gof[0] == gof[1] and gof[2] == gof[3] and gof[0] != gof[2]
    g = groups.iloc[gof[0]]
    assert (g["home_x_m"], g["work_x_m"], g["n_members"]) == (_c(0, 0)[0], emp[0], 2)
    by_day = {2: inf, 4: inf}
    plain, _ = LD.ladder_attack(by_day, reg, w, truth)
    merged, per = LD.ladder_attack(by_day, reg, w, truth, relink_period_days=2)
    key = ["rung", "days", "k", "metric", "unit"]
    both = plain.merge(merged, on=key, suffixes=("_plain", "_relink"))
    named = both[both["metric"].isin(["named", "narrowed_k"])]
    assert (named["value_relink"] >= named["value_plain"]).all()
    at4 = both[(both["days"] == 4) & (both["metric"] == "named")].set_index(["rung", "unit"])
    assert at4.loc[("exact", "device"), "value_plain"] == 0.5 and at4.loc[("exact", "device"), "value_relink"] == 1
    assert at4.loc[("exact", "pseudonym"), "value_relink"] == 1
    # window 2: only epoch 0 exists, nothing to merge
    at2 = both[both["days"] == 2]
    assert (at2["value_plain"] == at2["value_relink"]).all()
    with pytest.raises(ConfigError):
        LD.ladder_attack(by_day, reg, w, truth, relink_period_days=2, relink_method="magic")


# ------------------------------------------------------------------ anonymity sets
def test_empty_sets_are_no_candidate_and_never_in_a_median():
    w = GridWorld(800, 800, (50, 200, 400, 800))
    # persons 1, 2 in building 0 (employer E); 3 in building 1; building 2 empty in the register
    reg = register_from_points(w, [1, 2, 3], ([25, 25, 75], [25, 25, 25]), ([775, 775, 775], [775, 775, 775]))
    persons = reg.copy()
    persons = pd.concat([persons, register_from_points(w, [4, 5], ([125, 125], [25, 25]),
                                                       ([775, 775], [775, 775]))], ignore_index=True)
    inf = pd.DataFrame({"pseudonym": ["a", "b", "c", "d", "e"],
                        "home_x_m": [25, 75, 125, 125, 125], "home_y_m": [25, 25, 25, 25, 25],
                        "work_x_m": [775] * 5, "work_y_m": [775] * 5})
    truth = pd.DataFrame({"pseudonym": inf["pseudonym"], "person_id": [1, 3, 4, 5, 4], "device_idx": range(5)})
    per, m = L.linkage_attack(inf, reg, w, truth, levels=("building",), keys=("home",), persons=persons)
    assert per["set_size"].tolist() == [2, 1, 0, 0, 0]
    assert per["set_size_population"].tolist() == [2, 1, 2, 2, 2]
    m = m.set_index("metric")
    # register sizes 2, 1, 0, 0, 0: the three empties are "no candidate", the median is over {2, 1}
    assert m.loc["no_candidate", "value"] == pytest.approx(3 / 5) and m.loc["no_candidate", "n"] == 5
    assert m.loc["median_set_size", "value"] == 1.5 and m.loc["median_set_size", "n"] == 2
    assert m.loc["median_set_size_population", "value"] == 2 and m.loc["median_set_size_population", "n"] == 5
    assert m.loc["no_candidate_population", "value"] == 0
    assert m.loc["unique_population", "value"] == pytest.approx(1 / 5)


# ------------------------------------------------------------------ run_attacks wiring
def test_run_attacks_ladder_tables(rotated):
    w, p, inf = rotated
    by_day = {1: inf, 2: inf, 4: inf}
    cfg = {"attacks": ("ladder",), "relink_period_days": 2, "ladder_ks": (1, 3)}
    t = run_attacks(p["release"], by_day, p["register"], w, p["pseudonyms"], p["persons"], cfg)
    assert set(t) == {"ladder", "ladder_per_device", "ladder_relink"}
    for name in ("ladder", "ladder_relink"):
        assert list(t[name].columns) == LD.LADDER_COLUMNS
        assert set(t[name]["level"]) == {"building"} and set(t[name]["k"].dropna()) == {1.0, 3.0}
    t2 = run_attacks(p["release"], by_day, p["register"], w, p["pseudonyms"], p["persons"],
                     {"attacks": ("ladder",), "ladder_rungs": ("ranked", "exact"), "ladder_level": "block"})
    assert set(t2) == {"ladder", "ladder_per_device"}
    assert list(pd.unique(t2["ladder"]["rung"])) == ["exact", "ranked"]
    assert set(t2["ladder"]["level"]) == {"block"}
    for bad in ({"ladder_rungs": ("magic",)}, {"ladder_ks": (0,)}, {"ladder_level": "county"},
                {"ladder_relink_max_dist_m": -1.0}):
        with pytest.raises(ConfigError):
            run_attacks(p["release"], by_day, p["register"], w, p["pseudonyms"], None, {"attacks": ("ladder",), **bad})


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nearest_persons_are_the_brute_force_nearest(seed):
    """The ranked rung's neighbour fill: for each device, its ``need`` nearest listed
    persons outside its own zone by (distance, person_id), as a sort of every person
    gives them — on a lattice (many equal distances), with several persons per address,
    unlisted homes, devices outside the addresses' extent and more need than persons."""
    rng = np.random.default_rng(seed)
    n_reg = 600
    rx = rng.integers(0, 15, n_reg) * 10.0  # shared addresses and equal distances
    ry = rng.integers(0, 15, n_reg) * 10.0
    rx[:20] = np.nan  # no listed position
    rh = rng.integers(-1, 6, n_reg)  # -1: no listed home zone
    pid = rng.permutation(n_reg) * 3 + 7
    n_dev = 250
    hx = rng.integers(-30, 180, n_dev) * 5.0
    hy = rng.integers(-30, 180, n_dev) * 5.0
    hx[:3], hy[:3] = [1e6, -1e6, 70.0], [1e6, 5.0, -1e6]
    h = rng.integers(-1, 6, n_dev)
    need = rng.integers(0, 12, n_dev)
    need[:5] = n_reg  # more than there are
    fill_from = rng.integers(0, 3, n_dev)
    width = int((fill_from + need).max())
    ranked = np.full((n_dev, width), -1, dtype=np.int64)
    todo = np.flatnonzero(need > 0)
    LD._neighbours(todo, need, h, hx, hy, rh, rx, ry, pid, ranked, fill_from, LD._address_index(rh, rx, ry, pid))
    pool = np.flatnonzero((rh >= 0) & np.isfinite(rx) & np.isfinite(ry))
    want = np.full_like(ranked, -1)
    for i in todo:
        rows = pool[rh[pool] != h[i]]
        d = np.hypot(rx[rows] - hx[i], ry[rows] - hy[i])
        rows = rows[np.lexsort((pid[rows], d))][:need[i]]
        want[i, fill_from[i]:fill_from[i] + len(rows)] = rows
    np.testing.assert_array_equal(ranked, want)


@pytest.mark.parametrize("relink", [None, 2])
def test_blocked_candidate_sets_equal_one_block(rotated, relink):
    """The candidate sets are built block_rows rows at a time; every table is the same
    whatever the block (queries of a relinked group scored in the group's block)."""
    w, p, inf = rotated
    by_day = {1: inf.iloc[::2], 2: inf, 4: inf}
    kw = dict(release=p["release"], relink_period_days=relink)
    ref = LD.ladder_attack(by_day, p["register"], w, p["pseudonyms"], block_rows=10**9, **kw)
    for block in (1, 3, 7):
        got = LD.ladder_attack(by_day, p["register"], w, p["pseudonyms"], block_rows=block, **kw)
        pd.testing.assert_frame_equal(got[0], ref[0])
        pd.testing.assert_frame_equal(got[1], ref[1])
    with pytest.raises(ConfigError):
        LD.ladder_attack(by_day, p["register"], w, p["pseudonyms"], block_rows=0)


@pytest.mark.parametrize("n", [0, 1, 7, 5000])
def test_unique_points_equals_numpy_unique_rows(n):
    """The ranked rung's distinct listed addresses: the same points and inverse as
    ``np.unique(..., axis=0, return_inverse=True)``, the slow reference."""
    from sim.attacks.ladder import unique_points

    rng = np.random.default_rng(n)
    x = rng.integers(-20, 20, n) * 12.5
    y = rng.integers(-20, 20, n) * 0.1
    got, inv = unique_points(x, y)
    ref, rinv = np.unique(np.column_stack([x, y]), axis=0, return_inverse=True)
    np.testing.assert_array_equal(got, ref.reshape(-1, 2))
    np.testing.assert_array_equal(inv, np.ravel(rinv))
    np.testing.assert_array_equal(got[inv], np.column_stack([x, y]).reshape(-1, 2))
