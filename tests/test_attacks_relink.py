import numpy as np
import pandas as pd
import pytest

from _gridworld import GridWorld, make_population
from sim.attacks import relink as R
from sim.core.errors import ConfigError, InputError


def _hand():
    inf = pd.DataFrame({
        "pseudonym": ["A0", "B0", "A1", "B1", "C1"],
        "home_x_m": [0.0, 5000, 10, 5000, np.nan], "home_y_m": [0.0, 0, 0, 20, np.nan],
        "work_x_m": [1000.0, 6000, 1000, np.nan, 0], "work_y_m": [0.0, 0, 10, np.nan, 0],
    })
    ep = pd.DataFrame({"pseudonym": ["A0", "B0", "A1", "B1", "C1"], "epoch": [0, 0, 1, 1, 1]})
    truth = pd.DataFrame({"pseudonym": ["A0", "B0", "A1", "B1", "C1"], "device_idx": [0, 1, 0, 1, 2],
                          "person_id": [10, 11, 10, 11, 12]})
    return inf, ep, truth


def test_hand_built_nearest():
    inf, ep, truth = _hand()
    links = R.propose_links(inf, ep)
    got = dict(zip(links.pseudonym_from, links.pseudonym_to))
    assert got == {"A0": "A1", "B0": "B1"}  # B1's unknown work is replaced by its home; C1 has no home
    # A0 -> A1 distance: sqrt(10^2 + 0 + 0 + 10^2)
    d = links.set_index("pseudonym_from").loc["A0", "distance_m"]
    assert d == pytest.approx(np.sqrt(200.0))
    # max_dist_m is inclusive
    assert len(R.propose_links(inf, ep, max_dist_m=float(d))) == 1
    assert len(R.propose_links(inf, ep, max_dist_m=float(d) - 1e-9)) == 0
    scored, m = R.score_relinks(links, ep, truth, method="nearest")
    assert scored["correct"].all()
    m = m.set_index("metric")
    assert m.loc["n_true_pairs", "value"] == 2 and m.loc["precision", "value"] == 1.0
    assert m.loc["recall", "value"] == 1.0


def test_wrong_links_are_scored():
    inf, ep, truth = _hand()
    truth = truth.assign(device_idx=[0, 1, 1, 0, 2])  # swap the epoch-1 owners
    scored, m = R.score_relinks(R.propose_links(inf, ep), ep, truth)
    m = m.set_index("metric")
    assert not scored["correct"].any()
    assert m.loc["precision", "value"] == 0.0 and m.loc["recall", "value"] == 0.0 and m.loc["recall", "n"] == 2


def test_population_rotation():
    w = GridWorld()
    pop = make_population(w, n_persons=50, n_days=6, seed=2, rotation_days=2)
    ep = R.pseudonym_epochs(pop["release"], 2)
    exp = pop["pseudonyms"].set_index("pseudonym")["epoch"]
    assert (ep.set_index("pseudonym")["epoch"] == exp.loc[ep.pseudonym].to_numpy()).all()
    for method in ("nearest", "zone"):
        links, m = R.relink_attack(pop["release"], pop["inferred"], pop["pseudonyms"], period_days=2, method=method,
                                   world=w, level="building")
        m = m.set_index("metric")
        assert m.loc["n_true_pairs", "value"] == 100  # 50 devices x 2 transitions
        assert m.loc["precision", "value"] == 1.0
        assert m.loc["recall", "value"] > 0.9
    # noisy inference: still mostly right, never more links than true pairs
    inf = pop["inferred"].copy()
    rng = np.random.default_rng(0)
    for c in ("home_x_m", "home_y_m"):
        inf[c] += rng.normal(0, 400, len(inf))
    _, m = R.relink_attack(pop["release"], inf, pop["pseudonyms"], period_days=2)
    m = m.set_index("metric")
    assert m.loc["n_links", "value"] <= 100 and 0 < m.loc["precision", "value"] <= 1


def test_relink_vs_period():
    w = GridWorld()
    cases = {}
    truths = {}
    for period in (1, 3):
        pop = make_population(w, n_persons=30, n_days=6, seed=5, rotation_days=period)
        cases[period] = (pop["release"], pop["inferred"])
        truths[period] = pop["pseudonyms"]
    t = R.relink_vs_period(cases, truths)
    tp = t[t.metric == "n_true_pairs"].set_index("period_days")["value"]
    assert tp.loc[1.0] == 150 and tp.loc[3.0] == 30


def test_errors():
    inf, ep, truth = _hand()
    with pytest.raises(ConfigError):
        R.propose_links(inf, ep, method="hungarian")
    with pytest.raises(ConfigError):
        R.propose_links(inf, ep, method="zone")  # needs the world
    with pytest.raises(InputError, match="unknown to the truth"):
        R.score_relinks(R.propose_links(inf, ep), ep, truth.iloc[:3])
    with pytest.raises(InputError):
        R.propose_links(inf.drop(columns="work_x_m"), ep)
    w = GridWorld()
    pop = make_population(w, n_persons=5, n_days=2, seed=0)
    with pytest.raises(ConfigError):
        R.pseudonym_epochs(pop["release"], 0)
