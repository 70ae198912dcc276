import numpy as np
import pandas as pd
import pytest

from _gridworld import GridWorld, LEVELS, make_population, register_from_points
from sim.attacks import linkage as L
from sim.core.errors import ConfigError, InputError

NAN = np.nan


@pytest.fixture(scope="module")
def tiny():
    """Hand-built case: 800 m square world, buildings 50 m, blocks 200 m, tracts 400 m, one district."""
    w = GridWorld(800, 800, (50, 200, 400, 800))
    reg = register_from_points(
        w, [1, 2, 3, 4],
        ([25, 75, 75, 425], [25, 25, 25, 425]),
        ([775, 775, 25, NAN], [775, 775, 775, NAN]),
    )
    inf = pd.DataFrame({
        "pseudonym": ["d1", "d2", "d3", "d4", "d5", "d6"],
        "home_x_m": [26, 74, 76, 425, NAN, -10],
        "home_y_m": [24, 26, 25, 425, NAN, 5],
        "work_x_m": [770, 770, NAN, 25, 775, 775],
        "work_y_m": [780, 780, NAN, 25, 775, 775],
    })
    truth = pd.DataFrame({"pseudonym": inf["pseudonym"], "person_id": [1, 2, 3, 9, 4, 4], "device_idx": range(6)})
    return w, reg, inf, truth


def _get(per, pseud, level, key, col):
    r = per[(per.pseudonym == pseud) & (per.level == level) & (per.key == key)]
    assert len(r) == 1
    return r[col].iloc[0]


def test_hand_built_sets_and_statuses(tiny):
    w, reg, inf, truth = tiny
    per = L.score_links(L.link_devices(inf, reg, w), truth)
    expect = {  # (pseudonym, level, key): (status, set_size)
        ("d1", "building", "home"): ("ok", 1),
        ("d2", "building", "home"): ("ok", 2),
        ("d3", "building", "home"): ("ok", 2),
        ("d4", "building", "home"): ("ok", 1),
        ("d5", "building", "home"): ("unknown_home", -1),
        ("d6", "building", "home"): ("outside", -1),
        ("d1", "building", "home_work"): ("ok", 1),
        ("d2", "building", "home_work"): ("ok", 1),
        ("d3", "building", "home_work"): ("unknown_work", -1),
        ("d4", "building", "home_work"): ("ok", 0),
        ("d1", "block", "home"): ("ok", 3),
        ("d1", "block", "home_work"): ("ok", 2),
        ("d2", "block", "home_work"): ("ok", 2),
        ("d1", "district", "home"): ("ok", 4),
        ("d4", "district", "home"): ("ok", 4),
    }
    for (p, lv, k), (st, size) in expect.items():
        assert _get(per, p, lv, k, "status") == st, (p, lv, k)
        assert _get(per, p, lv, k, "set_size") == size, (p, lv, k)
    # identified = unique and right; d4's owner (9) is not in the register: unique but wrong
    assert _get(per, "d1", "building", "home", "identified")
    assert not _get(per, "d4", "building", "home", "identified")
    assert _get(per, "d4", "building", "home", "wrong_unique")
    assert _get(per, "d2", "building", "home_work", "identified")
    assert _get(per, "d4", "building", "home_work", "guess_person_id") == -1


def test_hand_built_metrics_count_unknowns(tiny):
    w, reg, inf, truth = tiny
    _, m = L.linkage_attack(inf, reg, w, truth)
    m = m.set_index(["level", "key", "metric"])
    assert m.loc[("building", "home", "n_devices"), "value"] == 6
    assert m.loc[("building", "home", "n_unknown_home"), "value"] == 1
    assert m.loc[("building", "home", "n_unknown_work"), "value"] == 0
    assert m.loc[("building", "home_work", "n_unknown_work"), "value"] == 1
    assert m.loc[("building", "home", "n_outside"), "value"] == 1
    # identified share over ALL devices (unknowns stay in the denominator): d1 only
    r = m.loc[("building", "home", "identified")]
    assert r["value"] == pytest.approx(1 / 6) and r["n"] == 6 and r["ci_low"] <= r["value"] <= r["ci_high"]
    assert m.loc[("building", "home_work", "identified"), "value"] == pytest.approx(2 / 6)
    assert m.loc[("building", "home", "wrong_unique"), "value"] == pytest.approx(1 / 6)
    assert m.loc[("building", "home", "identified_known"), "n"] == 4
    # building/home sizes of ok devices: 1, 2, 2, 1 -> median 1.5
    assert m.loc[("building", "home", "median_set_size"), "value"] == 1.5
    assert m.loc[("building", "home", "set_size_2_5"), "value"] == pytest.approx(0.5)


def test_nearest_guess_hand_built(tiny):
    w, reg, inf, truth = tiny
    per = L.link_devices(inf, reg, w, guess="nearest")
    # block 0 holds persons 1 (25,25), 2 and 3 (both 75,25): d2 at (74,26) -> tie 2/3 -> smallest id
    assert _get(per, "d2", "block", "home", "guess_person_id") == 2
    assert _get(per, "d1", "block", "home", "guess_person_id") == 1
    assert _get(per, "d4", "district", "home", "guess_person_id") == 4


def _brute(inf, reg, w, level, key):
    sizes, members = [], []
    for r in inf.itertuples():
        if not (np.isfinite(r.home_x_m) and np.isfinite(r.home_y_m)):
            sizes.append(-1); members.append([]); continue
        h = w.locate([r.home_x_m], [r.home_y_m], level)[0]
        if key == "home_work":
            if not (np.isfinite(r.work_x_m) and np.isfinite(r.work_y_m)):
                sizes.append(-1); members.append([]); continue
            wz = w.locate([r.work_x_m], [r.work_y_m], level)[0]
            if h < 0 or wz < 0:
                sizes.append(-1); members.append([]); continue
            sel = (reg[f"home_{level}_id"] == h) & (reg[f"work_{level}_id"] == wz)
        else:
            if h < 0:
                sizes.append(-1); members.append([]); continue
            sel = reg[f"home_{level}_id"] == h
        sizes.append(int(sel.sum()))
        members.append(reg[sel])
    return sizes, members


@pytest.mark.parametrize("seed", [0, 1])
def test_against_brute_force(seed, monkeypatch):
    rng = np.random.default_rng(seed)
    w = GridWorld(1600, 1600, (100, 200, 800, 1600))
    n = 150
    hx, hy = rng.uniform(-50, 1650, n), rng.uniform(0, 1600, n)
    wx, wy = rng.uniform(0, 1600, n), rng.uniform(0, 1600, n)
    wx[rng.random(n) < 0.2] = np.nan
    reg = register_from_points(w, rng.permutation(n) + 7, (hx, hy), (wx, wy))
    m = 80
    inf = pd.DataFrame({
        "pseudonym": [f"x{i}" for i in range(m)],
        "home_x_m": np.where(rng.random(m) < 0.1, np.nan, rng.uniform(0, 1600, m)),
        "home_y_m": rng.uniform(0, 1600, m),
        "work_x_m": rng.uniform(0, 1600, m), "work_y_m": rng.uniform(0, 1600, m),
    })
    for guess, tree_min in (("random", 256), ("nearest", 256), ("nearest", 2)):
        monkeypatch.setattr(L, "_TREE_MIN", tree_min)
        per = L.link_devices(inf, reg, w, guess=guess, seed=seed)
        for lv in LEVELS:
            for key in L.KEYS:
                sizes, members = _brute(inf, reg, w, lv, key)
                got = per[(per.level == lv) & (per.key == key)]
                assert got["set_size"].tolist() == sizes
                for g, s, mem, r in zip(got["guess_person_id"], sizes, members, inf.itertuples()):
                    if s <= 0:
                        assert g == -1
                        continue
                    assert g in set(mem["person_id"])
                    if guess == "nearest":
                        d = np.hypot(mem["home_x_m"] - r.home_x_m, mem["home_y_m"] - r.home_y_m).to_numpy()
                        best = mem["person_id"].to_numpy()[d == d.min()].min()
                        assert g == best


def test_random_guess_is_order_independent_and_spread():
    w = GridWorld(800, 800, (50, 200, 400, 800))
    n = 40
    reg = register_from_points(w, np.arange(n), (np.full(n, 25.0), np.full(n, 25.0)))  # one building, 40 persons
    inf = pd.DataFrame({"pseudonym": [f"q{i}" for i in range(200)], "home_x_m": 30.0, "home_y_m": 30.0,
                        "work_x_m": np.nan, "work_y_m": np.nan})
    a = L.link_devices(inf, reg, w, keys=("home",), levels=("building",), seed=5)
    b = L.link_devices(inf.iloc[::-1].reset_index(drop=True), reg, w, keys=("home",), levels=("building",), seed=5)
    pa = a.set_index("pseudonym")["guess_person_id"]
    pb = b.set_index("pseudonym")["guess_person_id"]
    assert (pa == pb.loc[pa.index]).all()
    assert pa.nunique() > 20  # uniform over 40 persons: 200 draws hit most of them
    c = L.link_devices(inf, reg, w, keys=("home",), levels=("building",), seed=6)
    assert (c["guess_person_id"].to_numpy() != a["guess_person_id"].to_numpy()).any()


def test_coarser_levels_never_shrink_sets():
    w = GridWorld()
    pop = make_population(w, n_persons=120, n_days=2, seed=3)
    inf = pop["inferred"].copy()
    rng = np.random.default_rng(0)
    inf["home_x_m"] += rng.normal(0, 300, len(inf))
    inf["home_x_m"] = inf["home_x_m"].clip(0, 6399)
    per = L.link_devices(inf, pop["register"], w)
    for key in L.KEYS:
        wide = per[per.key == key].pivot(index="pseudonym", columns="level", values="set_size")[list(LEVELS)]
        ok = (wide >= 0).all(axis=1)
        assert ok.sum() > 50
        v = wide[ok].to_numpy()
        assert np.all(np.diff(v, axis=1) >= 0)
    # home_work sets are subsets of home sets
    wide = per.pivot_table(index=["pseudonym", "level"], columns="key", values="set_size")
    ok = wide["home_work"] >= 0
    assert (wide.loc[ok, "home_work"] <= wide.loc[ok, "home"]).all()


def test_all_levels_and_keys_equal_each_alone():
    """link_devices over every level and key is the concatenation of its runs for one
    level and key at a time (same rows, order, values and dtypes; the guess draws are
    numbered by level and key, so they do not depend on what else is asked for)."""
    w = GridWorld()
    pop = make_population(w, n_persons=90, n_days=2, seed=5)
    inf = pop["inferred"].copy()
    inf.loc[inf.index[:4], ["work_x_m", "work_y_m"]] = np.nan
    inf.loc[inf.index[4:6], ["home_x_m", "home_y_m"]] = np.nan
    for guess in L.GUESSES:
        got = L.link_devices(inf, pop["register"], w, guess=guess, seed=3)
        ref = pd.concat([L.link_devices(inf, pop["register"], w, levels=(lv,), keys=(key,), guess=guess, seed=3)
                         for lv in LEVELS for key in L.KEYS], ignore_index=True)
        pd.testing.assert_frame_equal(got, ref)
        assert set(got["status"]) >= {"ok", "unknown_home", "unknown_work"} and len(got) == len(inf) * 8


def test_given_pseudonym_uids_give_the_same_links():
    """link_devices with the pseudonyms' stable ids passed in (as time_to_identification
    does, hashing once for every window) equals link_devices hashing them itself; ids of
    the wrong length are a clear error."""
    from sim.core.rng import stable_uid64

    w = GridWorld()
    pop = make_population(w, n_persons=90, n_days=2, seed=5)
    inf = pop["inferred"]
    uid = stable_uid64(inf["pseudonym"].to_numpy())
    ref = L.link_devices(inf, pop["register"], w, seed=3)
    pd.testing.assert_frame_equal(L.link_devices(inf, pop["register"], w, seed=3, pseudonym_uid=uid), ref)
    other = L.link_devices(inf, pop["register"], w, seed=3, pseudonym_uid=uid[::-1].copy())
    assert not other["guess_person_id"].equals(ref["guess_person_id"])  # the ids are what the draws use
    with pytest.raises(InputError, match="pseudonym_uid"):
        L.link_devices(inf, pop["register"], w, seed=3, pseudonym_uid=uid[:-1])


def test_population_set_sizes_equal_a_direct_count():
    """set_size_population is, for every status-"ok" row, the number of truth persons
    whose (home zone[, work zone]) equals the row's, counted person by person (-1 other
    rows); persons living outside the area (zone -1) and the unemployed (work -1) are
    in the truth table too."""
    w = GridWorld()
    pop = make_population(w, n_persons=150, n_days=2, seed=8)
    work = pop["register"][["person_id"] + [f"work_{lv}_id" for lv in LEVELS]]
    persons = pop["persons"].merge(work, on="person_id", how="left").fillna(-1)
    persons = persons.astype({f"work_{lv}_id": np.int32 for lv in LEVELS})  # int32 as generated
    rng = np.random.default_rng(1)
    outside = rng.random(len(persons)) < 0.1
    for lv in LEVELS:
        persons.loc[outside, f"home_{lv}_id"] = -1
    inf = pop["inferred"].copy()
    inf.loc[inf.index[:5], ["work_x_m", "work_y_m"]] = np.nan
    scored = L.score_links(L.link_devices(inf, pop["register"], w), pop["pseudonyms"], persons)
    want = []
    for r in scored.itertuples():
        if r.status != "ok":
            want.append(-1)
            continue
        same = persons[f"home_{r.level}_id"].to_numpy() == r.home_zone
        if r.key == "home_work":
            same &= persons[f"work_{r.level}_id"].to_numpy() == r.work_zone
        want.append(int(same.sum()))
    assert scored["set_size_population"].tolist() == want
    assert (scored["set_size_population"] > 1).any() and (scored["set_size_population"] == -1).any()


def test_errors(tiny):
    w, reg, inf, truth = tiny
    with pytest.raises(InputError, match="home_block_id"):
        L.link_devices(inf, reg.drop(columns="home_block_id"), w)
    with pytest.raises(InputError, match="work_tract_id"):
        L.link_devices(inf, reg.drop(columns="work_tract_id"), w)
    L.link_devices(inf, reg.drop(columns=[c for c in reg if c.startswith("work_")]), w, keys=("home",))
    with pytest.raises(InputError, match="unknown to the truth"):
        L.score_links(L.link_devices(inf, reg, w), truth.iloc[1:])
    with pytest.raises(InputError, match="home_x_m"):
        L.link_devices(inf.drop(columns="home_x_m"), reg, w)
    with pytest.raises(InputError, match="duplicate"):
        L.link_devices(pd.concat([inf, inf.iloc[:1]]), reg, w)
    with pytest.raises(ConfigError):
        L.link_devices(inf, reg, w, guess="best")
    with pytest.raises(ConfigError):
        L.link_devices(inf, reg, w, keys=("work",))
    with pytest.raises(ConfigError):
        L.link_devices(inf, reg, w, levels=("county",))


def test_empty_inferred(tiny):
    w, reg, inf, truth = tiny
    per, m = L.linkage_attack(inf.iloc[:0], reg, w, truth)
    assert len(per) == 0
    r = m[(m.metric == "identified")]
    assert (r["n"] == 0).all()


def test_time_to_identification():
    w = GridWorld()
    pop = make_population(w, n_persons=60, n_days=3, seed=4)
    full = pop["inferred"]
    known = {1: 10, 2: 30, 5: 60}
    by_day = {}
    for d, k in known.items():
        t = full.copy()
        t.loc[k:, ["home_x_m", "home_y_m", "work_x_m", "work_y_m"]] = np.nan
        by_day[d] = t
    by_day[1] = by_day[1].iloc[:40]  # a device absent from a table still counts (as not identified)
    curve, per = L.time_to_identification(by_day, pop["register"], w, pop["pseudonyms"], level="block")
    ident_full = L.score_links(L.link_devices(full, pop["register"], w, levels=("block",), keys=("home_work",)),
                               pop["pseudonyms"])["identified"].to_numpy()
    idx = np.arange(len(full))
    for d, k in known.items():
        row = curve[curve.days == d].iloc[0]
        assert row["n"] == 60
        assert row["value"] == pytest.approx((ident_full & (idx < k)).sum() / 60)
    exp_first = np.where(ident_full, np.where(idx < 10, 1, np.where(idx < 30, 2, 5)), np.nan)
    got = per.set_index("pseudonym").loc[full["pseudonym"], "first_day"].to_numpy()
    np.testing.assert_array_equal(got, exp_first)
    assert curve["value"].is_monotonic_increasing
    with pytest.raises(InputError):
        L.time_to_identification({}, pop["register"], w, pop["pseudonyms"])
    with pytest.raises(InputError):
        L.time_to_identification({0: full}, pop["register"], w, pop["pseudonyms"])


def test_pair_keys_do_not_collide_when_device_work_zone_exceeds_register():
    # register work zones are all small ids; a device working in a high-id zone must not
    # alias onto another (home, work) pair of the register
    w = GridWorld(800, 800, (50, 200, 400, 800))
    reg = register_from_points(w, [1, 2], ([25, 75], [25, 25]), ([25, 25], [25, 25]))  # work building 0
    # device: home building 0, work building 17 (row 1, col 1).  A key base computed from the
    # register alone (max work id 0 -> base 2) would map it to (1)*2 + 18 = 20, the key of
    # person 3 (home building 9, no work: 10*2 + 0).
    reg2 = register_from_points(w, [3], ([475], [25]), ([np.nan], [np.nan]))
    reg = pd.concat([reg, reg2], ignore_index=True)
    inf = pd.DataFrame({"pseudonym": ["z"], "home_x_m": [25.0], "home_y_m": [25.0], "work_x_m": [75.0],
                        "work_y_m": [75.0]})
    per = L.link_devices(inf, reg, w, levels=("building",), keys=("home_work",))
    assert per["set_size"].tolist() == [0]


def test_time_to_identification_counts_only_existing_pseudonyms_and_devices():
    """Rotation every 2 days over 4 days: the epoch-1 pseudonyms exist only from day 2 on.
    Denominators count what exists in the window; a device is identified when any of
    its pseudonyms is."""
    w = GridWorld()
    pop = make_population(w, n_persons=60, n_days=4, seed=4, rotation_days=2)
    full = pop["inferred"].copy()
    ep1 = full["pseudonym"].str.endswith("_1").to_numpy()
    lose = ep1 & (np.random.default_rng(0).random(len(full)) < 0.4)
    full.loc[lose, ["home_x_m", "home_y_m"]] = np.nan
    by_day = {1: full, 2: full, 4: full}
    curve, per = L.time_to_identification(by_day, pop["register"], w, pop["pseudonyms"], level="building",
                                          release=pop["release"])
    ident = L.score_links(L.link_devices(full, pop["register"], w, levels=("building",), keys=("home_work",)),
                          pop["pseudonyms"])["identified"].to_numpy()
    ps = curve[curve.unit == "pseudonym"].set_index("days")
    dv = curve[curve.unit == "device"].set_index("days")
    assert ps["n"].to_dict() == {1: 60, 2: 60, 4: 120} and dv["n"].to_dict() == {1: 60, 2: 60, 4: 60}
    assert ps.loc[1, "value"] == pytest.approx(ident[~ep1].sum() / 60)  # not / 120
    assert ps.loc[4, "value"] == pytest.approx(ident.sum() / 120)
    dev = pop["pseudonyms"].set_index("pseudonym").loc[full["pseudonym"], "device_idx"].to_numpy()
    dev_ident = pd.Series(ident).groupby(dev).any()
    assert dv.loc[4, "value"] == pytest.approx(dev_ident.mean())
    assert (dv["value"] >= ps["value"]).all() and dv.loc[4, "value"] > ps.loc[4, "value"]
    # an epoch-1 pseudonym is never identified in a window it has no ping in
    p1 = per.set_index("pseudonym").loc[full["pseudonym"][ep1]]
    assert (p1["first_day"].dropna() == 4).all()
    assert (per["device_idx"].to_numpy() == pop["pseudonyms"].set_index("pseudonym").loc[per["pseudonym"],
                                                                                         "device_idx"].to_numpy()).all()
    # without the release, the truth first_day says the same
    curve2, _ = L.time_to_identification(by_day, pop["register"], w, pop["pseudonyms"], level="building")
    pd.testing.assert_frame_equal(curve, curve2)


@pytest.mark.parametrize("n", [0, 1, 2, 50, 5000])
def test_groups_equal_the_lexsort_and_unique_reference(n):
    """Register groups by (key, person_id): the same order, keys, starts and sizes as the
    slow reference (lexsort then np.unique), for a register ordered by person_id (the
    radix-sort path) and for a shuffled one."""
    from sim.attacks._common import groups_by_key as _groups

    rng = np.random.default_rng(n)
    narrow = rng.integers(-1, 30, n)  # counting sort (a few keys)
    wide = rng.integers(-1, 2**40, n) // rng.integers(1, 3, n)  # a stable argsort (keys spread far)
    for key in (narrow.astype(np.int64), narrow.astype(np.int32), wide.astype(np.int64)):
        for pid in (np.arange(n) * 3, rng.permutation(n)):
            order = np.lexsort((pid, key))
            uk, start, size = np.unique(key[order], return_index=True, return_counts=True)
            got = _groups(key, pid)
            for g, r in zip(got, (order, uk, start, size)):
                np.testing.assert_array_equal(g, r)
            assert got[1].dtype == key.dtype


def test_truth_index_answers_as_the_table():
    """A TruthIndex built once answers as the truth table does (first row of a repeated
    pseudonym; the same error for an unknown one)."""
    from sim.attacks._common import TruthIndex, truth_device, truth_person
    from sim.core.errors import InputError as Err

    t = pd.DataFrame({"pseudonym": ["b", "a", "c", "a"], "person_id": [20, 10, 30, 99],
                      "device_idx": [2, 1, 3, 9]})
    ix = TruthIndex(t)
    q = np.array(["a", "c", "b", "a"], dtype=object)
    np.testing.assert_array_equal(truth_person(ix, q), [10, 30, 20, 10])
    np.testing.assert_array_equal(truth_device(ix, q), [1, 3, 2, 1])
    np.testing.assert_array_equal(truth_person(ix, q), truth_person(t, q))
    for src in (t, ix):
        with pytest.raises(Err, match="1 pseudonym"):
            truth_person(src, ["a", "zz"])
    unique = t.iloc[:3]  # no repeated pseudonym: the table itself is indexed, not a copy
    assert TruthIndex(unique).table is unique
    np.testing.assert_array_equal(truth_person(TruthIndex(unique), q), [10, 30, 20, 10])
    with pytest.raises(Err, match="1 pseudonym"):
        truth_person(unique, ["a", "zz"])


def test_object_index_positions_equal_the_str_index():
    """object_index (the per-window lookups' Index) gives the positions pandas' own
    string Index gives — hits, misses, repeated queries, an empty query — and keeps
    object dtype, so a lookup does not convert the Index to new Python strings."""
    from sim.attacks._common import TruthIndex, object_index

    rng = np.random.default_rng(3)
    keys = np.array([f"p{i:05d}" for i in rng.permutation(5000)], dtype=object)
    query = np.concatenate([keys[rng.integers(0, 5000, 3000)], np.array(["nope", "p99999"], dtype=object)])
    rng.shuffle(query)
    ix = object_index(keys)
    assert ix.dtype == object and object_index(query).dtype == object
    ref = pd.Index(keys).get_indexer(pd.Index(query))
    np.testing.assert_array_equal(ix.get_indexer(object_index(query)), ref)
    assert (ref == -1).sum() == 2
    assert len(ix.get_indexer(object_index(np.zeros(0, dtype=object)))) == 0
    t = pd.DataFrame({"pseudonym": keys, "person_id": np.arange(5000), "device_idx": np.arange(5000)})
    assert TruthIndex(t).index.dtype == object


def test_existing_pseudonyms_from_first_days_are_slices_of_one_array():
    """first_days once, then every window: the same pseudonyms as from the span table
    each time, and the same string objects in every window (not a new copy per window)."""
    from sim.attacks._common import existing_pseudonyms, first_days

    span = pd.DataFrame({"pseudonym": pd.array(["p0", "p1", "p2", "p3"], dtype="str"),
                         "first_day": [0, 2, 1, 5], "last_day": [3, 4, 2, 6]})
    first = first_days(span)
    for d in (1, 2, 3, 6, 10):
        assert list(existing_pseudonyms(d, first=first)) == list(existing_pseudonyms(d, span))
    assert list(existing_pseudonyms(2, first=first)) == ["p0", "p2"]
    assert existing_pseudonyms(3, first=first)[0] is existing_pseudonyms(10, first=first)[0]
    truth = pd.DataFrame({"pseudonym": ["p0", "p0", "p1"], "first_day": [1, 1, 0]})
    assert list(existing_pseudonyms(1, first=first_days(None, truth))) == ["p1"]
    assert first_days(None, truth.drop(columns="first_day")) is None
    assert list(existing_pseudonyms(1, fallback=["b", "a", "b"], first=None)) == ["b", "a"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sets_from_the_wanted_rows_equal_the_sets_from_every_row(seed):
    """Keying and sorting only the register rows whose home zone some device has
    (wanted_home_rows) gives every device the same set members in the same order as a
    scan of the whole register, row by row (members ordered by person_id); rows outside
    the area and devices not "ok" too."""
    rng = np.random.default_rng(seed)
    n, m = 500, 60
    rh = rng.integers(-1, 40, n)
    rw = rng.integers(-1, 6, n)
    pid = np.sort(rng.choice(10 * n, size=n, replace=False)) if seed != 2 else rng.permutation(n)
    dh = rng.integers(-2, 45, m)
    dw = rng.integers(-2, 6, m)
    reg = pd.DataFrame({"home_block_id": rh, "work_block_id": rw})
    for key in L.KEYS:
        status, dkey, members, rkey = L._zone_keys(key, dh, dw, rh, reg, "block")
        ok = status == 0
        every = [np.zeros(0, np.int64), np.zeros(m, np.int64), np.zeros(m, np.int64)]
        for i in np.flatnonzero(ok):  # the reference: every row of the register, one by one
            same = (rh >= 0) & (rh == dh[i]) & ((rw == dw[i]) if key == "home_work" else True)
            rows_i = np.flatnonzero(same)[np.argsort(pid[same], kind="stable")]
            every[1][i], every[2][i] = len(every[0]), len(rows_i)
            every[0] = np.concatenate([every[0], rows_i])
        assert len(members) < n  # the test filters something
        got = L._anonymity_sets(dkey, rkey, members, pid)
        np.testing.assert_array_equal(got[2], every[2])  # set sizes
        assert (got[2] > 0).any() and (got[2] == 0).any()
        for i in range(m):
            np.testing.assert_array_equal(got[0][got[1][i]:got[1][i] + got[2][i]],
                                          every[0][every[1][i]:every[1][i] + every[2][i]])


def test_truth_index_repeated_and_changed_queries():
    """A TruthIndex answers a repeated query from its last lookup and a changed one
    (even the same array changed in place) afresh."""
    from sim.attacks._common import TruthIndex

    t = pd.DataFrame({"pseudonym": ["a", "b", "c"], "person_id": [10, 11, 12], "device_idx": [0, 1, 1]})
    ti = TruthIndex(t)
    q = np.array(["c", "a"], dtype=object)
    assert ti.column(q, "person_id", "q").tolist() == [12, 10]
    assert ti.column(q.copy(), "person_id", "q").tolist() == [12, 10]
    q[0] = "b"
    assert ti.column(q, "person_id", "q").tolist() == [11, 10]
    assert ti.column(q, "device_idx", "q").tolist() == [1, 0]
    with pytest.raises(InputError, match="unknown"):
        ti.column(np.array(["z"], dtype=object), "person_id", "q")
