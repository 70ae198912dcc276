"""The sensitivity sweep moves each ledger parameter by its own method."""
import numpy as np
import pandas as pd
import pytest

from sim.core.ledger import Assumption
from sim.pipeline.evaluate import infer_by_day
from sim.pipeline.sensitivity import COLUMNS, sensitivity


def listed_share(release, ibd, register, pseudonyms):
    """A stand-in headline: share of the window's pseudonyms whose owner is listed, and
    the mean pings per pseudonym in the release (so thinning and prefixes show)."""
    ps = pseudonyms.drop_duplicates("pseudonym").set_index("pseudonym")
    inf = ibd[max(ibd)]
    owners = ps.reindex(inf["pseudonym"])["person_id"]
    share = float(owners.isin(register["person_id"]).mean())
    return pd.DataFrame([
        {"metric": "listed", "value": share, "ci_low": share, "ci_high": share, "n": len(inf)},
        {"metric": "pings", "value": release.n_pings / max(release.n_traces, 1), "ci_low": np.nan,
         "ci_high": np.nan, "n": release.n_traces},
    ])


@pytest.fixture(scope="module")
def ibd(small_sim):
    return infer_by_day(small_sim.release, days=(1, 3, 7))


def test_each_method_moves_the_headline_the_way_it_must(small_sim, ibd):
    ledger = (Assumption("register.coverage", 0.3, 1.0, "assumption", "x", "register"),
              Assumption("pings.days", 1, 120, "src", "x", "prefix"),
              Assumption("pings.median_pings_per_day", 3.0, 90.0, "src", "x", "thinning"),
              Assumption("population.device_share", 0.05, 0.3, "src", "x", "none"))
    t = sensitivity(small_sim, ibd, listed_share, ledger=ledger)
    assert list(t.columns) == COLUMNS
    assert "population.device_share" not in set(t["path"])  # method "none" is not swept

    def v(path, setting, metric):
        r = t[(t.path == path) & (t.setting == setting) & (t.metric == metric)]
        return float(r["value"].iloc[0])

    # register coverage: fewer listed at 0.3, everybody the register may list (adults) at 1.0
    assert v("register.coverage", "low", "listed") < v("register.coverage", "value", "listed")
    owners = small_sim.pseudonyms.drop_duplicates("pseudonym").set_index("pseudonym").reindex(
        ibd[max(ibd)]["pseudonym"])["person_id"]
    adult = small_sim.persons.set_index("person_id").loc[owners, "age"].to_numpy() >= 18
    assert v("register.coverage", "high", "listed") == pytest.approx(adult.mean())
    # prefix: 1 day holds fewer pings than 7; 120 days is measured at the 7 the release holds
    assert v("pings.days", "low", "pings") < v("pings.days", "value", "pings")
    hi = t[(t.path == "pings.days") & (t.setting == "high")]
    assert (hi["window_days"] == 7).all() and hi["note"].str.contains("holds 7 days").all()
    # thinning: 3 of 12 pings per day keeps about a quarter; the high end is not computed
    ratio = v("pings.median_pings_per_day", "low", "pings") / v("pings.median_pings_per_day", "value", "pings")
    assert 0.15 < ratio < 0.35
    high = t[(t.path == "pings.median_pings_per_day") & (t.setting == "high")]
    assert high["value"].isna().all() and high["note"].str.contains("only lower").all()


def test_sweep_is_reproducible(small_sim, ibd):
    ledger = (Assumption("pings.median_pings_per_day", 3.0, 90.0, "src", "x", "thinning"),
              Assumption("register.employer_coverage", 0.2, 1.0, "assumption", "x", "register"))
    a = sensitivity(small_sim, ibd, listed_share, ledger=ledger)
    b = sensitivity(small_sim, ibd, listed_share, ledger=ledger)
    pd.testing.assert_frame_equal(a, b)


def test_headline_measure_equals_the_full_ladders_headline(small_sim, ibd):
    """The sweep's measure runs only the set rungs; its rows are the headline of the
    whole ladder (ranked rung included) at the last window."""
    from sim.attacks import run_attacks
    from sim.attacks.ladder import RUNG_NAMES
    from sim.pipeline.main import HEADLINE_K, headline_measure, ladder_headline, strongest_set_rung

    s = small_sim
    settings = {"seed": 3, "ladder_rungs": RUNG_NAMES, "ladder_level": "building"}
    got = headline_measure(s, settings)(s.release, ibd, s.register, s.pseudonyms)
    d = max(ibd)
    full = run_attacks(s.release, {d: ibd[d]}, s.register, s.world, s.pseudonyms, s.persons,
                       config={**settings, "attacks": ("ladder",), "ladder_ks": (HEADLINE_K,)})["ladder"]
    assert "ranked" in set(full["rung"])
    want = ladder_headline(full, strongest_set_rung(full))
    want = want[want["days"] == d].drop(columns="days")
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True))
    assert len(got) == 2 and (got["n"] > 0).all()
