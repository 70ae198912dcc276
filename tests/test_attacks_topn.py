from collections import Counter

import numpy as np
import pandas as pd
import pytest

from _gridworld import GridWorld, LEVELS
from sim.attacks import topn as T
from sim.core.errors import ConfigError, InputError
from sim.core.traces import Traces

T0 = 1_700_006_400
W = GridWorld(800, 800, (50, 200, 400, 800))
# building centres: zone id = row * 16 + col
Z1, Z2, Z3 = (25, 25), (75, 25), (125, 25)  # building zones 0, 1, 2


def _tr(rows):
    df = pd.DataFrame(rows, columns=["pseudonym", "t_s", "x_m", "y_m"])
    return Traces.from_frame(df, crs="EPSG:32631", start_s=T0, n_days=3)


def _pings(name, place, n, day=0):
    return [(name, T0 + day * 86400 + 60 * k, place[0], place[1]) for k in range(n)]


def test_hand_built_by_pings():
    rows = (_pings("A", Z1, 3) + _pings("A", Z2, 2) + _pings("A", Z3, 1)
            + _pings("B", Z1, 3) + _pings("B", Z2, 2) + _pings("C", Z1, 1) + [("C", T0 + 5, -30.0, 5.0)])
    tr = _tr(rows)
    top, n_places = T.top_locations(tr, W, "building", n_max=3)
    np.testing.assert_array_equal(top, [[0, 1, 2], [0, 1, -1], [0, -1, -1]])
    np.testing.assert_array_equal(n_places, [3, 2, 1])  # C's outside ping is ignored
    t, per = T.topn_uniqueness(tr, W, levels=["building"], return_per_trace=True)
    per = per.set_index(["pseudonym", "N"])["set_size"]
    assert per[("A", 1)] == 3 and per[("A", 2)] == 2 and per[("A", 3)] == 1
    assert per[("C", 2)] == 0 and per[("B", 3)] == 0
    u = t[t.metric == "unique"].set_index("N")
    assert u.loc[1, "value"] == 0 and u.loc[1, "n"] == 3
    assert u.loc[3, "value"] == 1 and u.loc[3, "n"] == 1 and u.loc[3, "n_short"] == 2
    assert (t["n_panel"] == 3).all()
    # at block level all three buildings fall in block 0: one place each
    t = T.topn_uniqueness(tr, W, levels=["block"], n_values=[1, 2])
    u = t[t.metric == "unique"].set_index("N")
    assert u.loc[1, "value"] == 0 and u.loc[2, "n"] == 0


def test_by_days_and_ties():
    # A: 3 pings at Z1 on day 0; Z2 on days 0 and 1 (2 pings) -> by pings Z1 first, by days Z2 first
    rows = _pings("A", Z1, 3) + _pings("A", Z2, 1, day=0) + _pings("A", Z2, 1, day=1)
    rows += _pings("B", Z3, 2) + _pings("B", Z2, 2)  # tie 2-2: smaller zone id (Z2 = 1) first
    tr = _tr(rows)
    top, _ = T.top_locations(tr, W, "building", n_max=2, by="pings")
    np.testing.assert_array_equal(top, [[0, 1], [1, 2]])
    top, _ = T.top_locations(tr, W, "building", n_max=2, by="days")
    np.testing.assert_array_equal(top, [[1, 0], [1, 2]])


def test_ordered_signature():
    # A ranks (Z1, Z2); B ranks (Z2, Z1): the same set, different order
    rows = _pings("A", Z1, 3) + _pings("A", Z2, 2) + _pings("B", Z2, 3) + _pings("B", Z1, 2)
    tr = _tr(rows)
    t = T.topn_uniqueness(tr, W, levels=["building"], n_values=[2])
    assert t[t.metric == "unique"]["value"].iloc[0] == 0
    t = T.topn_uniqueness(tr, W, levels=["building"], n_values=[2], ordered=True)
    assert t[t.metric == "unique"]["value"].iloc[0] == 1


@pytest.mark.parametrize("by", ["pings", "days"])
def test_against_reference(by):
    rng = np.random.default_rng(3)
    n = 300
    dev = rng.integers(0, 50, 3000)
    df = pd.DataFrame({"pseudonym": [f"d{i:02d}" for i in dev], "t_s": T0 + rng.integers(0, 3 * 86400, len(dev)),
                       "x_m": rng.choice([25, 75, 125, 425, 775, 900], len(dev)) + rng.uniform(-5, 5, len(dev)),
                       "y_m": rng.choice([25, 75, 425], len(dev))})
    tr = Traces.from_frame(df, crs="EPSG:32631", start_s=T0, n_days=3)
    f = tr.to_frame()
    f["day"] = tr.day()
    for lv in LEVELS:
        f["zone"] = W.locate(f.x_m, f.y_m, lv)
        g = f[f.zone >= 0]
        if by == "pings":
            cnt = g.groupby(["pseudonym", "zone"], observed=True).size().rename("c").reset_index()
        else:
            cnt = g.groupby(["pseudonym", "zone"], observed=True)["day"].nunique().rename("c").reset_index()
        cnt = cnt.sort_values(["pseudonym", "c", "zone"], ascending=[True, False, True])
        ref = {p: list(s["zone"]) for p, s in cnt.groupby("pseudonym", observed=True)}
        top, n_places = T.top_locations(tr, W, lv, n_max=3, by=by)
        for i, p in enumerate(tr.pseudonym):
            r = ref.get(p, [])
            assert n_places[i] == len(r)
            assert list(top[i][: min(3, len(r))]) == r[:3]
        for N in (1, 2, 3):
            sig = {p: tuple(sorted(r[:N])) for p, r in ref.items() if len(r) >= N}
            c = Counter(sig.values())
            size = T.signature_set_sizes(top, n_places, N)
            for i, p in enumerate(tr.pseudonym):
                assert size[i] == (c[sig[p]] if p in sig else 0)


def test_errors_and_empty():
    tr = _tr(_pings("A", Z1, 2))
    with pytest.raises(ConfigError):
        T.topn_uniqueness(tr, W, by="dwell")
    with pytest.raises(ConfigError):
        T.topn_uniqueness(tr, W, n_values=[0])
    with pytest.raises(ConfigError):
        T.topn_uniqueness(tr, W, levels=["county"])
    with pytest.raises(InputError):
        T.topn_uniqueness(tr.to_frame(), W)
    empty = tr.select_pings(np.zeros(tr.n_pings, bool))
    t = T.topn_uniqueness(empty, W, levels=["building"], n_values=[1])
    assert t[t.metric == "unique"]["n"].iloc[0] == 0 and (t["n_panel"] == 0).all()
