"""sim.population and the housing stock of sim.world.synthetic: ages, households with an
adult, employment by age, smartphone owners and the panel, the register profiles and
their combination, single-household buildings, the per-building GPS bias of indoor
fixes, reproducibility, and the fast paths of the synthesis (housing-type calibration,
bounded rejection sampling, gravity kernels, register names) against the plain versions
in tests/naive_generate.py."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import naive_generate as NG
from sim.core.config import REGISTER_PROFILES, PopulationConfig, RegisterConfig, Scenario, WorldConfig
from sim.core.errors import ConfigError
from sim.core.rng import seed_sequence
from sim.population import (
    AGE_BANDS,
    age_band_shares,
    building_gps_bias,
    choose_devices,
    draw_ages,
    make_persons,
    make_register,
    single_household_share,
)
from sim.world.synthetic import STRUCTURE_TYPES, synthetic_world, unit_type_shares

N_RES = 30_000


@pytest.fixture(scope="module")
def world():
    return synthetic_world(WorldConfig(residents=N_RES), seed=3)


@pytest.fixture(scope="module")
def persons(world):
    return make_persons(world, N_RES, PopulationConfig(), seed=3)


def _tol(p, n, z=5.0):
    return z * np.sqrt(max(p * (1 - p), 1e-9) / max(n, 1))


# ====================================================================== ages
def test_age_shares_match_the_configured_shares():
    cfg = PopulationConfig()
    n = 400_000
    ages = draw_ages(seed_sequence(1, 99), n, cfg)
    assert ages.min() >= 0 and ages.max() <= 99 and ages.dtype == np.int64
    assert abs((ages < 18).mean() - cfg.share_under_18) < _tol(cfg.share_under_18, n)
    assert abs((ages >= 65).mean() - cfg.share_65_plus) < _tol(cfg.share_65_plus, n)
    shares = age_band_shares(cfg)
    assert shares.sum() == pytest.approx(1.0)
    for (lo, hi, _), s in zip(AGE_BANDS, shares):
        got = ((ages >= lo) & (ages <= hi)).mean()
        assert abs(got - s) < _tol(s, n), (lo, hi)
    # the defaults are the ACS 2019 figures (22.3 % under 18, 16.5 % aged 65+)
    assert (cfg.share_under_18, cfg.share_65_plus) == (0.223, 0.165)


def test_rescaled_age_shares():
    cfg = PopulationConfig(share_under_18=0.3, share_65_plus=0.1)
    ages = draw_ages(seed_sequence(2, 99), 200_000, cfg)
    assert abs((ages < 18).mean() - 0.3) < 0.01 and abs((ages >= 65).mean() - 0.1) < 0.01


def test_persons_table_columns_and_ages(persons):
    assert list(persons.columns[:3]) == ["person_id", "household_id", "age"]
    assert {"smartphone", "schedule", "home_building_id", "work_building_id"} <= set(persons.columns)
    assert persons["person_id"].tolist() == list(range(len(persons))) and len(persons) == N_RES
    assert abs((persons["age"] < 18).mean() - 0.223) < _tol(0.223, N_RES)


# ====================================================================== households
def test_every_household_has_an_adult_and_children_live_with_adults(persons):
    adult = persons["age"].to_numpy() >= 18
    per_hh = pd.Series(adult).groupby(persons["household_id"].to_numpy()).sum()
    assert (per_hh >= 1).all()
    # household members are contiguous and the first one (the householder) is an adult
    hid = persons["household_id"].to_numpy()
    assert (np.diff(hid) >= 0).all()
    first = np.r_[True, hid[1:] != hid[:-1]]
    assert adult[first].all()
    # most children live in households of 3 or more
    size = persons.groupby("household_id")["person_id"].transform("size").to_numpy()
    kids = ~adult
    assert (size[kids] >= 2).all() and (size[kids] >= 3).mean() > 0.8


def test_household_sizes_follow_the_distribution(persons):
    from sim.core.config import HOUSEHOLD_SIZE_SHARES, HOUSEHOLD_SIZES

    sizes = persons.groupby("household_id").size().to_numpy()
    n = len(sizes)
    for k, p in zip(HOUSEHOLD_SIZES, HOUSEHOLD_SIZE_SHARES):
        assert abs((sizes == k).mean() - p) < _tol(p, n) + 1 / n, k


def test_one_household_per_housing_unit(world, persons):
    hh = persons.drop_duplicates("household_id")
    per_b = hh.groupby("home_building_id").size()
    units = world.buildings["units"].to_numpy()
    assert (per_b.to_numpy() <= units[per_b.index.to_numpy()]).all()
    assert (units[persons["home_building_id"].to_numpy()] >= 1).all()


# ====================================================================== housing stock
def test_unit_shares_by_structure_type_match_the_parameters(world):
    cfg = WorldConfig(residents=N_RES)
    u = world.buildings["units"].to_numpy()
    u = u[u > 0]
    bands = [(1, 1), (2, 4), (5, 19), (20, 300)]
    got = np.array([u[(u >= lo) & (u <= hi)].sum() for lo, hi in bands]) / u.sum()
    want = unit_type_shares(cfg)
    assert len(want) == len(STRUCTURE_TYPES) and want.sum() == pytest.approx(1.0)
    assert abs(got[0] - cfg.single_unit_share) < 0.03
    np.testing.assert_allclose(got[1:], want[1:], atol=0.03)
    # total units: the expected households plus the vacancy rate
    from sim.core.config import mean_household_size

    assert u.sum() == pytest.approx(N_RES / mean_household_size() / (1 - cfg.vacancy_rate), abs=1.0)


def test_multi_unit_share_rises_with_density():
    def multi_share(k):
        w = synthetic_world(WorldConfig(residents=N_RES, multi_unit_density_exponent=k), seed=4)
        b = w.buildings[w.buildings["units"] > 0]
        r = np.hypot(b["x_m"], b["y_m"]).to_numpy()
        u = b["units"].to_numpy()
        R = w.meta["radius_m"]
        inner, outer = r < R / 4, r > R / 2
        # share of multi-unit buildings (buildings: less noisy than units, whose 20+ tail is heavy)
        return [(u[m] > 1).mean() for m in (inner, outer)]

    inner, outer = multi_share(1.0)
    assert inner > 2 * outer
    inner0, outer0 = multi_share(0.0)
    assert abs(inner0 - outer0) < 0.02


def test_single_household_share_is_what_the_parameters_imply(world, persons):
    units = world.buildings["units"].to_numpy()
    n_hh = persons["household_id"].nunique()
    q = n_hh / units.sum()  # occupancy of a unit
    u = units[units > 0].astype(float)
    # a person's building has no other household when the building's other units are vacant
    implied = float((u * (1 - q) ** (u - 1)).sum() / u.sum())
    got = single_household_share(persons)
    assert abs(got - implied) < 0.02
    assert abs(got - WorldConfig().single_unit_share) < 0.04  # vacancy adds a little


# ====================================================================== employment
def test_employment_by_age(persons):
    cfg = PopulationConfig()
    age = persons["age"].to_numpy()
    emp = persons["schedule"].astype(str).isin(["day", "night"]).to_numpy()
    assert not emp[age < 16].any()
    wa = (age >= 16) & (age <= 64)
    assert abs(emp[wa].mean() - cfg.employment_rate) < _tol(cfg.employment_rate, wa.sum())
    old = age >= 65
    assert abs(emp[old].mean() - cfg.employment_rate_65_plus) < _tol(cfg.employment_rate_65_plus, old.sum())
    # prime ages work more than teens (BLS age profile)
    assert emp[(age >= 25) & (age <= 54)].mean() > emp[(age >= 16) & (age <= 19)].mean() + 0.3
    # overall 16+: about the BLS 2019 employment-population ratio (60.8 %)
    assert 0.55 < emp[age >= 16].mean() < 0.66
    night = persons["schedule"].astype(str).to_numpy() == "night"
    assert abs(night[emp].mean() - cfg.night_shift_share) < _tol(cfg.night_shift_share, emp.sum())


# ====================================================================== phones and panel
def test_smartphone_owners_by_age(persons):
    cfg = PopulationConfig()
    age = persons["age"].to_numpy()
    own = persons["smartphone"].to_numpy()
    assert not own[age < cfg.min_device_age].any()
    for lo, hi, share in [(13, 17, cfg.smartphone_share_13_17), (18, 29, cfg.smartphone_share_18_29),
                          (30, 49, cfg.smartphone_share_30_49), (50, 64, cfg.smartphone_share_50_64),
                          (65, 120, cfg.smartphone_share_65_plus)]:
        m = (age >= lo) & (age <= hi)
        assert abs(own[m].mean() - share) < _tol(share, m.sum()), (lo, hi)


def test_min_device_age_is_a_parameter(world):
    p = make_persons(world, 5000, PopulationConfig(min_device_age=18), seed=8)
    assert not p.loc[p["age"] < 18, "smartphone"].any()
    assert p.loc[p["age"] >= 18, "smartphone"].mean() > 0.8


def test_panel_is_drawn_from_owners_in_random_order(persons):
    d = choose_devices(persons, 2000, seed=3)
    owner = persons.set_index("person_id").loc[d["person_id"]]
    assert owner["smartphone"].all() and (owner["age"] >= 13).all()
    assert d["person_id"].is_unique and d["device_idx"].tolist() == list(range(2000))
    assert not (np.diff(d["person_id"].to_numpy()) > 0).all()  # not in person order
    pd.testing.assert_frame_equal(d, choose_devices(persons, 2000, seed=3))
    with pytest.raises(ConfigError, match="smartphone owners"):
        choose_devices(persons, int(persons["smartphone"].sum()) + 1, seed=3)


def test_the_simulated_panel_holds_no_child(small_sim):
    p = small_sim.persons.set_index("person_id").loc[small_sim.devices["person_id"]]
    assert (p["age"] >= small_sim.scenario.population.min_device_age).all() and p["smartphone"].all()


# ====================================================================== register
def _reg(persons, world, **kw):
    return make_register(persons, world, RegisterConfig(**kw), seed=3)


def test_register_lists_no_minor_and_has_an_age_column(world, persons):
    for prof in [*REGISTER_PROFILES, "people_search+voter_file+professional_network"]:
        r = _reg(persons, world, profile=prof, coverage=1.0)
        assert "age" in r.columns and (r["age"] >= 18).all(), prof
        truth_age = persons.set_index("person_id").loc[r["person_id"], "age"].to_numpy()
        assert np.array_equal(r["age"].to_numpy(), truth_age)
        assert (np.diff(r["person_id"].to_numpy()) > 0).all()


def test_people_search_profile(world, persons):
    r = _reg(persons, world, profile="people_search")
    d = REGISTER_PROFILES["people_search"]
    adults = int((persons["age"] >= 18).sum())
    assert abs(len(r) / adults - d["coverage"]) < _tol(d["coverage"], adults)
    assert (r["home_building_id"] >= 0).all() and r["home_x_m"].notna().all()
    truth = persons.set_index("person_id").loc[r["person_id"]]
    wrong = (r["home_building_id"].to_numpy() != truth["home_building_id"].to_numpy()).mean()
    assert abs(wrong - d["error_rate"]) < _tol(d["error_rate"], len(r))
    employed = truth["work_building_id"].to_numpy() >= 0
    shown = r["work_building_id"].to_numpy() >= 0
    assert not (shown & ~employed).any()
    assert abs(shown[employed].mean() - d["employer_coverage"]) < _tol(d["employer_coverage"], employed.sum())
    assert (r["work_building_id"].to_numpy()[shown] == truth["work_building_id"].to_numpy()[shown]).all()
    assert set(r["sources"].astype(str)) == {"people_search"}


def test_voter_file_profile(world, persons):
    r = _reg(persons, world, profile="voter_file")
    d = REGISTER_PROFILES["voter_file"]
    adults = int((persons["age"] >= 18).sum())
    assert abs(len(r) / adults - d["coverage"]) < _tol(d["coverage"], adults)
    assert (r["work_building_id"] == -1).all() and r["work_x_m"].isna().all()
    assert (r[["work_block_id", "work_tract_id", "work_district_id"]] == -1).all().all()
    assert (r["home_building_id"] >= 0).all()


def test_professional_network_profile(world, persons):
    r = _reg(persons, world, profile="professional_network")
    d = REGISTER_PROFILES["professional_network"]
    truth = persons.set_index("person_id").loc[r["person_id"]]
    assert (truth["work_building_id"] >= 0).all()  # employed adults only
    eligible = int(((persons["age"] >= 18) & (persons["work_building_id"] >= 0)).sum())
    assert abs(len(r) / eligible - d["coverage"]) < _tol(d["coverage"], eligible)
    home = r["home_building_id"].to_numpy() >= 0
    assert abs(home.mean() - d["home_coverage"]) < _tol(d["home_coverage"], len(r))
    assert r.loc[~home, ["home_x_m", "home_y_m"]].isna().all().all()
    assert (r.loc[~home, ["home_block_id", "home_tract_id", "home_district_id"]] == -1).all().all()
    emp = r["work_building_id"].to_numpy() >= 0
    assert abs(emp.mean() - d["employer_coverage"]) < _tol(d["employer_coverage"], len(r))


def test_explicit_values_win_over_the_profile(world, persons):
    r = _reg(persons, world, profile="voter_file", coverage=0.3, employer_coverage=1.0)
    adults = int((persons["age"] >= 18).sum())
    assert abs(len(r) / adults - 0.3) < _tol(0.3, adults)
    truth = persons.set_index("person_id").loc[r["person_id"]]
    employed = truth["work_building_id"].to_numpy() >= 0
    assert (r["work_building_id"].to_numpy()[employed] >= 0).all()
    # a higher coverage lists a superset (per-person draws do not depend on the value)
    r2 = _reg(persons, world, profile="voter_file", coverage=0.6)
    assert set(r["person_id"]) <= set(r2["person_id"])


def test_combined_profiles_are_the_union(world, persons):
    a = _reg(persons, world, profile="professional_network")
    b = _reg(persons, world, profile="people_search")
    c = _reg(persons, world, profile="voter_file")
    u = _reg(persons, world, profile="professional_network+people_search+voter_file")
    assert set(u["person_id"]) == set(a["person_id"]) | set(b["person_id"]) | set(c["person_id"])
    ui = u.set_index("person_id")
    # home from the first profile that shows one, employer likewise
    want_home = pd.Series(-1, index=ui.index)
    want_work = pd.Series(-1, index=ui.index)
    for t in (a, b, c):
        t = t.set_index("person_id")
        h = t["home_building_id"].reindex(ui.index).fillna(-1).astype(int)
        w = t["work_building_id"].reindex(ui.index).fillna(-1).astype(int)
        want_home = want_home.where(want_home >= 0, h)
        want_work = want_work.where(want_work >= 0, w)
    assert (ui["home_building_id"] == want_home).all()
    assert (ui["work_building_id"] == want_work).all()
    # sources name every profile that lists the person, in the order written
    src = ui["sources"].astype(str)
    in_b = ui.index.isin(b["person_id"])
    assert src[in_b].str.contains("people_search").all()
    assert not src[~ui.index.isin(c["person_id"])].str.contains("voter_file").any()
    assert set(src) <= {"+".join(x for x, m in zip(("professional_network", "people_search", "voter_file"), bits)
                                 if m) for bits in np.ndindex(2, 2, 2) if any(bits)}
    # the order matters only for the home (first listing wins)
    u2 = _reg(persons, world, profile="voter_file+professional_network+people_search")
    assert set(u2["person_id"]) == set(u["person_id"])


def test_register_profile_config():
    s = Scenario()
    assert s.register.profile == "people_search" and s.register.coverage is None
    assert s.register.resolved()["coverage"] == REGISTER_PROFILES["people_search"]["coverage"]
    assert s.to_dict()["register"]["coverage"] == 0.90  # to_dict records the values in force
    v = s.replace(register__profile="voter_file")
    assert v.register.resolved()["coverage"] == 0.70 and v.register.resolved()["employer_coverage"] == 0.0
    assert v.config_hash() != s.config_hash()
    e = s.replace(register__profile="voter_file", register__coverage=0.5)
    assert e.register.resolved()["coverage"] == 0.5
    # an explicit value equal to the profile's is the same scenario
    assert s.replace(register__coverage=0.9).config_hash() == s.config_hash()
    both = s.replace(register__profile="people_search+voter_file")
    assert [n for n, _ in both.register.components()] == ["people_search", "voter_file"]
    assert both.register.resolved()["coverage"] is None  # the profiles disagree
    assert both.replace(register__coverage=0.8).register.resolved()["coverage"] == 0.8
    with pytest.raises(ConfigError, match="people_serch"):
        s.replace(register__profile="people_serch")
    with pytest.raises(ConfigError, match="twice"):
        s.replace(register__profile="voter_file+voter_file")
    with pytest.raises(ConfigError, match="register.coverage"):
        s.replace(register__coverage=1.5)
    every = s.replace(register__profile="+".join(REGISTER_PROFILES))
    assert Scenario.from_dict(every.to_dict()).config_hash() == every.config_hash()


def test_register_in_the_simulation_is_adults_only(small_sim):
    reg = small_sim.register
    assert (reg["age"] >= 18).all()
    adults = int((small_sim.persons["age"] >= 18).sum())
    cov = small_sim.scenario.register.resolved()["coverage"]
    assert abs(len(reg) / adults - cov) < _tol(cov, adults)


# ====================================================================== GPS bias
def test_building_bias_distribution_and_stability():
    b = building_gps_bias(50_000, 15.0, 0.6, seed=7)
    length = np.hypot(b[:, 0], b[:, 1])
    assert abs(np.median(length) - 15.0) < 0.5
    assert abs(np.log(length).std() - 0.6) < 0.02
    assert np.abs(b.mean(axis=0)).max() < 0.5  # uniform direction
    # row b depends only on (seed, b): the same for any number of buildings
    np.testing.assert_array_equal(building_gps_bias(1000, 15.0, 0.6, seed=7), b[:1000])
    assert not np.array_equal(building_gps_bias(1000, 15.0, 0.6, seed=8), b[:1000])
    assert (building_gps_bias(10, 0.0, 0.6, seed=7) == 0).all()


@pytest.fixture(scope="module")
def biased():
    from sim.generate.engine import synthesize

    scn = Scenario().replace(n_devices=300, world__residents=3000, pings__days=7, seed=11,
                             pings__indoor_bias_median_m=40.0, pings__indoor_bias_sigma=0.2)
    return scn, synthesize(scn)


def test_kernel_inputs_are_shifted_by_the_building_bias(biased):
    from sim.generate.engine import synthesize

    scn, syn = biased
    p = syn.persons.set_index("person_id").loc[syn.devices["person_id"]]
    bias = building_gps_bias(syn.world.n_buildings, 40.0, 0.2, scn.seed)
    hb = p["home_building_id"].to_numpy()
    np.testing.assert_allclose(syn.inputs.hx - p["home_x_m"].to_numpy(), bias[hb, 0], atol=1e-9)
    np.testing.assert_allclose(syn.inputs.hy - p["home_y_m"].to_numpy(), bias[hb, 1], atol=1e-9)
    wb = p["work_building_id"].to_numpy()
    has = wb >= 0
    np.testing.assert_allclose(syn.inputs.wx[has] - p["work_x_m"].to_numpy()[has], bias[wb[has], 0], atol=1e-9)
    assert np.isnan(syn.inputs.wx[~has]).all()
    # the truth keeps the address point
    b = syn.world.buildings
    np.testing.assert_array_equal(p["home_x_m"].to_numpy(), b["x_m"].to_numpy()[hb])
    # identical whatever the block size
    other = synthesize(scn.replace(block_devices=7))
    np.testing.assert_array_equal(other.inputs.hx, syn.inputs.hx)
    np.testing.assert_array_equal(other.inputs.wy, syn.inputs.wy)


def test_home_pings_centre_on_address_plus_bias(biased):
    from sim.generate.engine import generate_block, kernel_params

    scn, syn = biased
    n = len(syn.devices)
    blocks = [generate_block(scn, syn.world, syn.inputs, a, min(n, a + 50), kernel_params(scn, syn.world))
              for a in range(0, n, 50)]
    hist = pd.concat([b.history for b in blocks], ignore_index=True)
    t = pd.concat([b.pings.to_pandas() for b in blocks], ignore_index=True)
    t["pseudonym"] = t["pseudonym"].astype(str)
    t = t.merge(hist[["pseudonym", "device_idx"]], on="pseudonym")
    x, y = syn.world.from_latlon(t["lat_deg"].to_numpy(), t["lon_deg"].to_numpy())
    hour = ((t["t_s"] - scn.start_s) % 86400) / 3600
    night = ((hour < 5) & (t["accuracy_m"] < 60)).to_numpy()
    dev = t["device_idx"].to_numpy()[night]
    cx = pd.Series(x[night]).groupby(dev).median()
    cy = pd.Series(y[night]).groupby(dev).median()
    cnt = pd.Series(dev).value_counts().reindex(cx.index)
    keep = cnt.to_numpy() >= 8
    d = syn.devices.set_index("device_idx").loc[cx.index]
    p = syn.persons.set_index("person_id").loc[d["person_id"]]
    ax, ay = p["home_x_m"].to_numpy(), p["home_y_m"].to_numpy()
    i = cx.index.to_numpy()
    to_biased = np.hypot(cx.to_numpy() - syn.inputs.hx[i], cy.to_numpy() - syn.inputs.hy[i])[keep]
    to_address = np.hypot(cx.to_numpy() - ax, cy.to_numpy() - ay)[keep]
    assert keep.sum() > 40
    assert np.median(to_biased) < 8.0
    assert np.median(to_address) > 25.0


# ====================================================================== reproducibility
def test_same_seed_same_tables(world, persons):
    again = make_persons(world, N_RES, PopulationConfig(), seed=3)
    pd.testing.assert_frame_equal(persons, again)
    r1 = _reg(persons, world, profile="people_search+voter_file")
    r2 = _reg(persons, world, profile="people_search+voter_file")
    pd.testing.assert_frame_equal(r1, r2)
    other = make_persons(world, N_RES, PopulationConfig(), seed=4)
    assert not other["age"].equals(persons["age"])


def test_same_seed_same_world_and_simulation():
    from sim.generate.engine import synthesize

    scn = Scenario().replace(n_devices=40, world__residents=800, pings__days=1, seed=9)
    a, b = synthesize(scn), synthesize(scn)
    pd.testing.assert_frame_equal(a.world.buildings, b.world.buildings)
    pd.testing.assert_frame_equal(a.persons, b.persons)
    pd.testing.assert_frame_equal(a.devices, b.devices)
    pd.testing.assert_frame_equal(a.register, b.register)


# ====================================================================== fast paths vs references
# Each fast path of the world and population synthesis against the plain version it
# replaced (tests/naive_generate.py): the same draws and bit-identical results.
def test_mean_type_probs_matches_numpy():
    from sim.world.synthetic import _type_probs, mean_type_probs

    rng = np.random.default_rng(0)
    cases = [rng.random((n, 4)) * 10.0 ** rng.uniform(-8, 8, (1, 4)) for n in (1, 2, 7, 8, 9, 1000, 40_001)]
    cases.append(np.ones((5, 4)))
    cases.append(np.exp(-207.0) * np.ones((3, 4)))  # the smallest powers the floors allow
    for powers in cases:
        for coef in (np.array([0.19, 0.06, 0.21, 0.54]), np.array([1.0, 0.0, 0.0, 0.0]),
                     np.array([0.0, 0.3, 0.3, 0.4]), rng.dirichlet(np.ones(4))):
            want = _type_probs(None, coef, 1.0, powers).mean(axis=0)
            assert np.array_equal(mean_type_probs(powers, coef), want)
    with np.errstate(invalid="ignore"):  # a row summing to 0 gives NaN, as 0 / 0 in NumPy
        z = np.zeros((2, 4))
        assert np.isnan(mean_type_probs(z, np.ones(4))).all()
        assert np.isnan(mean_type_probs(np.zeros((0, 4)), np.ones(4))).all()  # as the mean of no rows


@pytest.mark.parametrize("iters", [1, 2, 5, 17, 200, 333])
def test_calibration_read_off_its_cycle_equals_every_step(iters):
    from sim.world.synthetic import _calibrate, _density_powers

    rng = np.random.default_rng(iters)
    for trial in range(12):
        f = rng.random(int(rng.integers(1, 3000))) ** rng.uniform(0.2, 3)
        if trial % 3 == 0:
            f[: len(f) // 3] = 0.0  # floored at 1e-12
        shares = rng.dirichlet(np.ones(4))
        if trial % 4 == 0:
            shares[rng.integers(4)] = 0.0
            shares /= shares.sum()
        k = float(rng.uniform(0, 5))
        want = NG.calibrate(_density_powers(f, k), shares, iters)
        assert np.array_equal(_calibrate(f, shares, k, iters), want)


def _surface(seed, n_sub):
    rng = np.random.default_rng(seed)
    R = float(rng.uniform(500, 20_000))
    centres = [(0.0, 0.0)] + [tuple(rng.uniform(-0.7 * R, 0.7 * R, 2)) for _ in range(n_sub)]
    scales = [R / 4.0] + list(R / 9.0 * (0.8 + 0.4 * rng.random(n_sub)))
    weights = [1.0] + list(0.25 + 0.25 * rng.random(n_sub))
    return R, centres, scales, weights


@pytest.mark.parametrize("power", [1.0, 1.6])
@pytest.mark.parametrize("seed,n_sub,n", [(0, 4, 1), (1, 0, 500), (2, 4, 5000), (3, 9, 20_000), (4, 1, 2049)])
def test_bounded_rejection_sampler_equals_evaluating_every_candidate(power, seed, n_sub, n):
    from sim.world.synthetic import _sample_density

    R, centres, scales, weights = _surface(seed, n_sub)
    xy, f = _sample_density(seed_sequence(seed, 1), n, R, centres, scales, weights, power)
    want_xy, want_f = NG.sample_density(seed_sequence(seed, 1), n, R, centres, scales, weights, power)
    assert xy.shape == (n, 2)
    assert np.array_equal(xy, want_xy) and np.array_equal(f, want_f)
    # the generator is left where the plain sampler leaves it (the next draws agree)
    a, b = seed_sequence(seed, 1), seed_sequence(seed, 1)
    _sample_density(a, n, R, centres, scales, weights, power)
    NG.sample_density(b, n, R, centres, scales, weights, power)
    assert a.random() == b.random()


@pytest.mark.parametrize("power", [1.0, 1.6])
def test_density_bound_covers_every_point_of_its_cell(power):
    from sim.world.synthetic import BOUND_RINGS, BOUND_SECTORS, _density, _density_bound

    for seed in range(5):
        R, centres, scales, weights = _surface(seed, 4)
        bound = _density_bound(R, centres, scales, weights, power)
        rng = np.random.default_rng(seed)
        # points spread over every cell, including its edges and corners
        u_r = np.concatenate([rng.random(200_000), np.linspace(0, 1, 4001) ** 2, [0.0, 1.0 - 1e-16]])
        u_a = np.concatenate([rng.random(200_000), rng.random(4001), [0.0, 1.0 - 1e-16]])
        r, a = R * np.sqrt(u_r), 2 * np.pi * u_a
        xy = np.column_stack([r * np.cos(a), r * np.sin(a)])
        f = _density(xy, centres, scales, weights) ** power
        ring = np.minimum((np.sqrt(u_r) * BOUND_RINGS).astype(np.int64), BOUND_RINGS - 1)
        sector = np.minimum((u_a * BOUND_SECTORS).astype(np.int64), BOUND_SECTORS - 1)
        assert (f <= bound[ring, sector]).all()
        # and it is a useful bound: most cells within 30 % of their density
        assert np.median(bound[ring, sector] / f) < 1.3


@pytest.mark.parametrize("m", [0, 1, 1000, 100_003])
def test_candidates_below_their_cell_bound_match_numpy(m):
    from sim.world.synthetic import below_cell_bound

    rng = np.random.default_rng(m)
    u_r, u_a = rng.random(m), rng.random(m)
    if m > 1:
        u_r[:2], u_a[:2] = [0.0, 1.0 - 2**-53], [1.0 - 2**-53, 0.0]  # the ends of [0, 1)
    bound = rng.random((7, 13)) * 2.0
    u_keep = rng.random(m) * 2.0
    ring = np.minimum((np.sqrt(u_r) * 7).astype(np.int64), 6)
    sector = np.minimum((u_a * 13).astype(np.int64), 12)
    want = np.flatnonzero(u_keep < bound[ring, sector])
    assert np.array_equal(below_cell_bound(u_r, u_a, u_keep, bound.ravel(), 7, 13), want)


def test_register_names_match_the_plain_format():
    from sim.population import _FIRST, _LAST, register_names

    pid = np.array([0, 1, 2, 7, 31, 32, 104_729, 10**7 - 1, 123_456_789], dtype=np.int64)
    got = register_names(pid)
    assert list(got) == [NG.register_name(i, _FIRST, _LAST) for i in pid]
    assert pd.Series(got).dtype == pd.Series([NG.register_name(0, _FIRST, _LAST)]).dtype
    assert register_names(np.zeros(0, dtype=np.int64)) == []


def test_register_sources_are_the_categorical_of_their_labels(world, persons):
    reg = _reg(persons, world, profile="voter_file+people_search+professional_network")
    assert reg["sources"].nunique() > 3
    want = pd.Categorical(reg["sources"].astype(str).tolist())
    assert reg["sources"].cat.categories.tolist() == want.categories.tolist()
    assert reg["sources"].cat.codes.tolist() == want.codes.tolist()
    assert reg["sources"].cat.categories.dtype == want.categories.dtype


def test_building_zone_ids_are_the_zone_columns(world):
    b = np.array([0, -1, world.n_buildings - 1, 5, -1])
    z = world.building_zones(b)
    ids = world.building_zone_ids(b)
    for lvl in ("block", "tract", "district"):
        assert np.array_equal(ids[f"{lvl}_id"], z[f"{lvl}_id"].to_numpy())
        assert (ids[f"{lvl}_id"][b < 0] == -1).all()


@pytest.mark.parametrize("decay_m", [6000.0, 250.0, 1e-3])
def test_gravity_workplaces_match_the_block_by_block_version(world, persons, decay_m):
    from sim.population import _gravity_workplaces

    home = persons["home_building_id"].to_numpy()
    employed = persons["schedule"].astype(str).to_numpy() != "none"
    got = _gravity_workplaces(world, home, employed, decay_m, seed_sequence(1, 2))
    want = NG.gravity_workplaces(world, home, employed, decay_m, seed_sequence(1, 2))
    assert np.array_equal(got, want)
    assert (got[~employed] == -1).all() and (got[employed] >= 0).mean() > 0.5


def test_gravity_workplaces_without_jobs_draw_nothing(world, persons):
    """No block with jobs: every weight is 0, nobody gets a workplace and no draw is made."""
    from sim.population import _gravity_workplaces

    w = synthetic_world(WorldConfig(residents=2000), seed=3)
    w.buildings["jobs"] = 0.0
    home = np.arange(0, w.n_buildings, 3)
    employed = np.ones(len(home), dtype=bool)
    a, b = seed_sequence(1, 2), seed_sequence(1, 2)
    got = _gravity_workplaces(w, home, employed, 6000.0, a)
    assert np.array_equal(got, NG.gravity_workplaces(w, home, employed, 6000.0, b))
    assert (got == -1).all() and a.random() == b.random()


@pytest.mark.parametrize("chunk", [1, 7, 1 << 21])
def test_gravity_workplaces_do_not_depend_on_the_chunk(world, persons, monkeypatch, chunk):
    import sim.population as P

    home = persons["home_building_id"].to_numpy()
    employed = persons["schedule"].astype(str).to_numpy() != "none"
    ref = P._gravity_workplaces(world, home, employed, 6000.0, seed_sequence(1, 2))
    monkeypatch.setattr(P, "GRAVITY_CHUNK", chunk)
    assert np.array_equal(P._gravity_workplaces(world, home, employed, 6000.0, seed_sequence(1, 2)), ref)
