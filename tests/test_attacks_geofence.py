import numpy as np
import pandas as pd
import pytest
from shapely.geometry import box

from _gridworld import GridWorld, make_population, register_from_points
from sim.attacks import geofence as G
from sim.core.errors import InputError
from sim.core.traces import Traces

T0 = 1_700_006_400
W = GridWorld(800, 800, (50, 200, 400, 800))
FENCE = box(300, 300, 500, 500)
START, END = T0 + 3600, T0 + 7200


@pytest.fixture(scope="module")
def case():
    rows = [
        ("g1", START + 10, 400.0, 400.0), ("g1", T0 + 20000, 25.0, 25.0),
        ("g2", END, 400.0, 400.0),            # end of the window is exclusive
        ("g3", START + 50, 300.0, 400.0),     # on the boundary: not inside
        ("g4", START + 60, 350.0, 450.0),
        ("g5", START + 70, 450.0, 350.0),
        ("g6", START, 401.0, 401.0),          # start of the window is inclusive
        ("g6", START + 5, 402.0, 401.0),
        ("g7", START + 80, 700.0, 700.0),     # elsewhere
    ]
    tr = Traces.from_frame(pd.DataFrame(rows, columns=["pseudonym", "t_s", "x_m", "y_m"]), crs="EPSG:32631", start_s=T0)
    reg = register_from_points(W, [1, 2, 3, 4, 6, 7, 5],
                               ([25, 125, 175, 75, 625, 625, 775], [25, 25, 25, 25, 625, 625, 775]))
    inferred = pd.DataFrame({
        "pseudonym": ["g1", "g2", "g3", "g4", "g6", "g7"],
        "home_x_m": [26.0, 125, 175, 74, 624, 10], "home_y_m": [24.0, 25, 25, 26, 626, 10],
        "work_x_m": np.nan, "work_y_m": np.nan,
    })
    truth = pd.DataFrame({"pseudonym": [f"g{i}" for i in range(1, 8)], "person_id": [1, 2, 3, 9, 5, 6, 7],
                          "device_idx": range(7)})
    persons = register_from_points(W, [1, 2, 3, 9, 5, 6, 7],
                                   ([25, 125, 175, 775, 775, 625, 625], [25, 25, 25, 25, 775, 625, 625]))
    return tr, reg, inferred, truth, persons


def test_seen_in_fence(case):
    tr = case[0]
    seen = G.seen_in_fence(tr, FENCE, START, END)
    assert seen["pseudonym"].tolist() == ["g1", "g4", "g5", "g6"]
    assert seen.set_index("pseudonym").loc["g6", "n_pings_in_fence"] == 2
    assert seen.set_index("pseudonym").loc["g6", "first_t_s"] == START
    # a buffered polygon takes the boundary ping in
    assert "g3" in set(G.seen_in_fence(tr, FENCE.buffer(1.0), START, END)["pseudonym"])


def test_hand_built_attack(case):
    tr, reg, inferred, truth, persons = case
    per, m = G.geofence_attack(tr, FENCE, START, END, inferred, reg, W, truth, persons, level="building")
    per = per.set_index("pseudonym")
    assert per.loc["g1", "linked_correct"] and per.loc["g4", "wrong_link"]
    assert per.loc["g6", "set_size"] == 2 and not per.loc["g6", "linked"]
    assert per.loc["g5", "status"] == "unknown_home"
    m = m.set_index("metric")
    assert m.loc["n_seen", "value"] == 4
    assert m.loc["home_known", "value"] == pytest.approx(3 / 4)
    assert m.loc["linked", "value"] == pytest.approx(2 / 4)
    assert m.loc["linked_correct", "value"] == pytest.approx(1 / 4)
    assert m.loc["wrong_link", "value"] == pytest.approx(1 / 4)
    assert m.loc["home_zone_correct", "value"] == pytest.approx(2 / 4)
    assert (m.loc[["linked", "linked_correct"], "n"] == 4).all()


def test_on_a_population():
    w = GridWorld()
    pop = make_population(w, n_persons=80, n_days=2, seed=1)
    fence = box(0, 0, 3200, 3200)
    per, m = G.geofence_attack(pop["release"], fence, pop["release"].start_s, pop["release"].start_s + 86400,
                               pop["inferred"], pop["register"], w, pop["pseudonyms"], pop["persons"])
    # brute force: who pinged inside during day 0
    f = pop["release"].to_frame()
    inside = (f.x_m > 0) & (f.x_m < 3200) & (f.y_m > 0) & (f.y_m < 3200) & (f.t_s < pop["release"].start_s + 86400)
    assert set(per["pseudonym"]) == set(f.loc[inside, "pseudonym"].astype(str))
    # perfect inference: every linked pseudonym is linked to its owner
    assert not per["wrong_link"].any()
    assert per["home_zone_correct"].all()


def test_errors(case):
    tr, reg, inferred, truth, persons = case
    with pytest.raises(InputError):
        G.seen_in_fence(tr, FENCE, END, START)
    with pytest.raises(InputError):
        G.seen_in_fence(tr, "not a polygon", START, END)
    with pytest.raises(InputError, match="unknown to the truth"):
        G.geofence_attack(tr, FENCE, START, END, inferred, reg, W, truth.iloc[:2])
    with pytest.raises(InputError, match="home_building_id"):
        G.geofence_attack(tr, FENCE, START, END, inferred, reg.drop(columns="home_building_id"), W, truth)
