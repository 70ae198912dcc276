from collections import Counter
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sim.attacks import skmob as S
from sim.core.errors import ConfigError, InputError

# the 7-user, 23-record toy dataset of scikit-mobility's privacy documentation
TOY = Path(__file__).resolve().parent / "data" / "skmob_privacy_toy.csv"


@pytest.fixture(scope="module")
def toy():
    return pd.read_csv(TOY)


# Values printed in scikit-mobility 1.3.1's docstrings for this data (users 1..7).
DOCS = [
    ("location", dict(knowledge_length=2), [1 / 3, 1 / 2, 1 / 3, 1 / 3, 1 / 4, 1 / 4, 1 / 2]),
    ("location", dict(knowledge_length=3), [1 / 2, 1, 1 / 2, 1 / 3, 1 / 3, 1 / 4, 1]),
    ("location_sequence", dict(knowledge_length=2), [1 / 2, 1 / 2, 1, 1 / 2, 1, 1 / 3, 1 / 2]),
    ("location_sequence", dict(knowledge_length=3), [1, 1, 1, 1, 1, 1 / 3, 1]),
    ("location_time", dict(knowledge_length=2), [1, 1, 1, 1, 1, 1 / 2, 1]),
    ("location_time", dict(knowledge_length=2, time_precision="Month"), [1 / 3, 1 / 2, 1 / 3, 1 / 3, 1 / 4, 1 / 4, 1 / 2]),
    ("location_time", dict(knowledge_length=3, time_precision="Month"), [1 / 2, 1, 1 / 2, 1 / 3, 1 / 3, 1 / 4, 1]),
    ("unique_location", dict(knowledge_length=2), [1 / 3, 1 / 4, 1 / 3, 1 / 3, 1 / 4, 1 / 4, 1 / 4]),
    ("unique_location", dict(knowledge_length=3), [1 / 2, 1 / 3, 1 / 2, 1 / 3, 1 / 3, 1 / 4, 1 / 4]),
    ("frequency", dict(knowledge_length=2), [1 / 3, 1, 1 / 3, 1 / 3, 1 / 3, 1 / 3, 1]),
    ("frequency", dict(knowledge_length=2, tolerance=0.5), [1 / 3, 1, 1 / 3, 1 / 3, 1 / 4, 1 / 4, 1]),
    ("frequency", dict(knowledge_length=3, tolerance=0.5), [1 / 2, 1, 1 / 2, 1 / 3, 1 / 3, 1 / 4, 1]),
    # skmob's own HomeWorkAttack output (its code uses the two LEAST frequent places)
    ("home_work", dict(compat="skmob-1.3.1"), [1 / 4, 1 / 4, 1 / 4, 1 / 4, 1, 1, 1]),
]


@pytest.mark.parametrize("attack,kw,expected", DOCS)
def test_toy_matches_documented_values(toy, attack, kw, expected):
    r = S.privacy_risk(toy, attack, **kw)
    assert r["uid"].tolist() == list(range(1, 8))
    np.testing.assert_allclose(r["risk"], expected, rtol=0, atol=1e-12)


def test_toy_home_work_documented_semantics(toy):
    # Hand check.  Places (sorted by lat): B < C < D < A.  Two most frequent (ties by lat, lng):
    # u1 {B,C} u2 {A,B} u3 {B,C} u4 {B,C} u5 {C,D} u6 {A,B} u7 {A,D}
    # -> u1: 1/3 (u1,u3,u4), u2: 1/2 (u2,u6), u5: 1, u6: 1/2, u7: 1
    r = S.home_work_risk(toy)
    np.testing.assert_allclose(r["risk"], [1 / 3, 1 / 2, 1 / 3, 1 / 3, 1, 1 / 2, 1], atol=1e-12)


def test_toy_targets(toy):
    r = S.location_risk(toy, 3, targets=[2, 1])
    assert r["uid"].tolist() == [1, 2] and r["risk"].tolist() == [0.5, 1.0]
    with pytest.raises(InputError):
        S.location_risk(toy, 2, targets=[99])


def test_hour_precision_defect_switch():
    df = pd.DataFrame({"uid": [1, 2], "datetime": ["2011-02-03 08:10:00", "2011-02-03 15:10:00"],
                       "lat": [1.0, 1.0], "lng": [2.0, 2.0]})
    docs = S.location_time_risk(df, 1, "Hour")
    bug = S.location_time_risk(df, 1, "Hour", compat="skmob-1.3.1")
    assert docs["risk"].tolist() == [1.0, 1.0]   # different hours: each unique
    assert bug["risk"].tolist() == [0.5, 0.5]    # skmob 1.3.1 drops the hour
    # its keys are not zero-padded: 2011-1-11 and 2011-11-1 collide at "Day"
    df2 = pd.DataFrame({"uid": [1, 2], "datetime": ["2011-01-11 08:00:00", "2011-11-01 08:00:00"],
                        "lat": [1.0, 1.0], "lng": [2.0, 2.0]})
    assert S.location_time_risk(df2, 1, "Day")["risk"].tolist() == [1.0, 1.0]
    assert S.location_time_risk(df2, 1, "Day", compat="skmob-1.3.1")["risk"].tolist() == [0.5, 0.5]


# --------------------------------------------------------------- slow reference
def _ref_risk(df, attack, k, precision="Hour", tol=0.0):
    df = df.copy()
    df["datetime"] = pd.to_datetime(df["datetime"])
    df = df.sort_values(["uid", "datetime"], kind="stable")
    df["loc"] = list(zip(df["lat"], df["lng"]))
    unit = {"Year": "Y", "Month": "M", "Day": "D", "Hour": "h", "Minute": "min", "Second": "s"}[precision]
    df["tk"] = [ts.to_period(unit).start_time for ts in df["datetime"]]
    users = sorted(df["uid"].unique())
    seq = {u: list(g["loc"]) for u, g in df.groupby("uid")}
    lt = {u: list(zip(g["loc"], g["tk"])) for u, g in df.groupby("uid")}
    freq = {u: Counter(seq[u]) for u in users}

    def top2(u):
        return set(sorted(freq[u], key=lambda l: (-freq[u][l], l))[:2])

    def is_subseq(inst, s):
        it = iter(s)
        return all(any(x == y for y in it) for x in inst)

    out = []
    for u in users:
        if attack == "home_work":
            inst = top2(u)
            out.append(1.0 / sum(inst <= top2(v) for v in users))
            continue
        recs = {"location": seq, "location_sequence": seq, "location_time": lt}.get(attack)
        recs = recs[u] if recs is not None else sorted(freq[u].items())
        best = 0.0
        for inst in combinations(recs, min(k, len(recs))):
            n = 0
            for v in users:
                if attack in ("location", "location_time"):
                    have = Counter(seq[v] if attack == "location" else lt[v])
                    ok = all(have[x] >= c for x, c in Counter(inst).items())
                elif attack == "location_sequence":
                    ok = is_subseq(inst, seq[v])
                elif attack == "unique_location":
                    ok = all(l in freq[v] for l, _ in inst)
                else:
                    ok = all(l in freq[v] and freq[v][l] * (1 - tol) <= f <= freq[v][l] * (1 + tol) for l, f in inst)
                n += ok
            best = max(best, 1.0 / n)
        out.append(best)
    return np.array(out)


def _random_df(seed, n_users=12, n_places=5):
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        for _ in range(rng.integers(1, 7)):
            p = rng.integers(0, n_places)
            t = pd.Timestamp("2011-02-01") + pd.Timedelta(hours=int(rng.integers(0, 72)))
            rows.append((u * 7 + 3, t, 43.0 + 0.01 * p, 10.0 + 0.02 * (p % 2)))
    return pd.DataFrame(rows, columns=["uid", "datetime", "lat", "lng"])


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("attack,k,kw", [
    ("location", 1, {}), ("location", 2, {}), ("location", 3, {}),
    ("location_sequence", 2, {}), ("location_sequence", 3, {}),
    ("location_time", 2, {"time_precision": "Day"}), ("location_time", 2, {"time_precision": "Hour"}),
    ("unique_location", 2, {}), ("unique_location", 3, {}),
    ("frequency", 2, {"tolerance": 0.0}), ("frequency", 2, {"tolerance": 0.5}),
    ("home_work", 1, {}),
])
def test_against_reference(seed, attack, k, kw):
    df = _random_df(seed)
    got = S.privacy_risk(df, attack, knowledge_length=k, **kw)["risk"].to_numpy()
    ref = _ref_risk(df, attack, k, kw.get("time_precision", "Hour"), kw.get("tolerance", 0.0))
    np.testing.assert_allclose(got, ref, atol=1e-12)


def test_more_knowledge_never_lowers_location_risk():
    df = _random_df(4, n_users=20)
    r = [S.location_risk(df, k)["risk"].to_numpy() for k in (1, 2, 3, 4)]
    for a, b in zip(r[:-1], r[1:]):
        assert np.all(b >= a - 1e-12)


def test_errors(toy):
    with pytest.raises(ConfigError):
        S.privacy_risk(toy, "probability")
    with pytest.raises(ConfigError):
        S.location_risk(toy, 0)
    with pytest.raises(ConfigError):
        S.location_time_risk(toy, 2, "Week")
    with pytest.raises(ConfigError):
        S.frequency_risk(toy, 2, tolerance=1.5)
    with pytest.raises(ConfigError):
        S.location_risk(toy, 2, compat="skmob-2")
    with pytest.raises(InputError, match="lng"):
        S.location_risk(toy.rename(columns={"lng": "lon"}), 2)
    empty = S.location_risk(toy.iloc[:0], 2)
    assert len(empty) == 0


def test_serial_and_parallel_kernels_agree(monkeypatch):
    df = _random_df(9, n_users=30)
    a = S.privacy_risk(df, "location", knowledge_length=2)
    monkeypatch.setattr(S, "_SERIAL_BELOW", 0)
    b = S.privacy_risk(df, "location", knowledge_length=2)
    pd.testing.assert_frame_equal(a, b)
