"""`reidsim audit`: real pings in, an aggregate-only report out.

The GeoLife sample (../shared/data/geolife_sample, beside the repository) is audited
end to end through the command line; a synthetic release written as CSV with
distinctive ids covers the CSV path, defenses and sparse data.  Every file written is
scanned: no input id, no input coordinate (>= 5 decimals) and no inferred home may
appear in any of them.
"""
from __future__ import annotations

import json
import math
import re
from collections import Counter
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sim.attacks import skmob as S
from sim.attacks.topn import signature_set_sizes
from sim.cli import main
from sim.core.errors import ConfigError, InputError
from sim.infer.staypoints import infer_auto
from sim.pipeline.audit import audit, grid_top_cells, parse_defense
from sim.release.readers import read_pings
from sim.report.audit import AUDIT_MARKER, claim_audit_dir, is_audit_folder

REPO = Path(__file__).resolve().parents[1]
GEOLIFE = REPO.parent / "shared" / "data" / "geolife_sample"
TOY = Path(__file__).resolve().parent / "data" / "skmob_privacy_toy.csv"
needs_geolife = pytest.mark.skipif(not GEOLIFE.is_dir(), reason=f"GeoLife sample not found at {GEOLIFE} "
                                   "(CI clones the repo with ../shared beside it)")
DEC5 = re.compile(r"-?\d+\.\d{5,}")


def files_of(d: Path):
    return sorted(p for p in d.rglob("*") if p.is_file())


def text_of(p: Path) -> str:
    return p.read_bytes().decode("latin-1")


def is_text(p: Path) -> bool:
    return p.suffix in (".md", ".html", ".csv", ".json")


# ============================================================================ GeoLife
@pytest.fixture(scope="module")
def geolife_audit(tmp_path_factory):
    if not GEOLIFE.is_dir():
        pytest.skip(f"GeoLife sample not found at {GEOLIFE}")
    out = tmp_path_factory.mktemp("audit") / "geolife"
    rc = main(["audit", str(GEOLIFE), "--format", "geolife", "--tz", "Asia/Shanghai", "--out", str(out), "-q"])
    assert rc == 0
    return out


@needs_geolife
def test_geolife_command_end_to_end(geolife_audit, capsys):
    out = geolife_audit
    names = {p.relative_to(out).as_posix() for p in files_of(out)}
    for need in ("audit.html", "audit.md", AUDIT_MARKER, "figures/uniqueness.png", "figures/density.png",
                 "figures/risk_by_days.png", "tables/uniqueness.csv", "tables/uniqueness.parquet",
                 "tables/risk_by_days.csv", "tables/data.csv", "tables/density.csv"):
        assert need in names, need
    html = (out / "audit.html").read_text()
    assert "data:image/png;base64," in html and "<script" not in html
    assert not re.search(r"""(src|href)=["'](https?:|//|figures/)""", html)  # self-contained
    marker = json.loads((out / AUDIT_MARKER).read_text())
    assert is_audit_folder(out) and marker["counts"]["rows_read"] == 164_531
    assert marker["counts"]["dropped"]["duplicate"] == 213 and marker["info"]["method"] == "staypoints"
    u = pd.read_csv(out / "tables" / "uniqueness.csv")
    assert {"unicity", "top_n_cells", "known_points", "home_cell", "home_work_pair"} <= set(u["attack"])
    assert {f"skmob_{a}" for a in S.ATTACKS} <= set(u["attack"])
    assert ((u["value"].isna()) | u["value"].between(0, 1) | (u["metric"] == "mean_risk")).all()
    assert (u["n"] <= 11).all() and (u.loc[u["attack"] == "unicity", "n"] == 11).all()
    d = pd.read_csv(out / "tables" / "density.csv")
    assert (d["n_users"] >= 5).all()
    days = pd.read_csv(out / "tables" / "risk_by_days.csv")
    assert days["days"].min() == 1 and days["days"].is_monotonic_increasing
    md = (out / "audit.md").read_text()
    assert "Of 11 users" in md and "duplicate (same id and second) | 213" in md
    # a second run into the same folder needs --overwrite
    assert main(["audit", str(GEOLIFE), "--format", "geolife", "--out", str(out), "-q"]) == 2
    assert "already holds a reidsim audit" in capsys.readouterr().err


@needs_geolife
def test_geolife_outputs_hold_no_id_coordinate_or_home(geolife_audit):
    out = geolife_audit
    # every lat/lon value of the input as written (>= 5 decimals)
    coords = set()
    for f in GEOLIFE.rglob("*.plt"):
        for line in f.read_text().splitlines()[6:]:
            parts = line.split(",")
            if len(parts) >= 2:
                coords.update(v for v in parts[:2] if DEC5.fullmatch(v))
    assert len(coords) > 10_000
    coord_floats = {round(float(v), 5) for v in coords}
    # inferred homes and works, in degrees and metres
    traces, _ = read_pings(GEOLIFE, format="geolife", tz="Asia/Shanghai")
    inf, _ = infer_auto(traces)
    assert inf["home_lat_deg"].notna().sum() >= 5
    secret = set()
    for c in ("home_lat_deg", "home_lon_deg", "work_lat_deg", "work_lon_deg"):
        for v in inf[c].dropna():
            secret |= {f"{v:.{nd}f}" for nd in (3, 4, 5, 6)}
    for c in ("home_x_m", "home_y_m", "work_x_m", "work_y_m"):
        for v in inf[c].dropna():
            secret |= {f"{v:.0f}", f"{v:.1f}"}
    ids = [f"{i:03d}" for i in range(11)]
    for p in files_of(out):
        txt = text_of(p)
        found = [v for v in DEC5.findall(txt) if v in coords or round(float(v), 5) in coord_floats]
        assert not found, f"{p.name} holds input coordinates {found[:3]}"
        assert not [s for s in secret if s in txt], f"{p.name} holds an inferred home/work"
        if is_text(p):
            for i in ids:
                assert not re.search(rf"(?<![\w.\-]){i}(?![\w.])", txt), f"{p.name} holds the user id {i!r}"


# ============================================================================ synthetic CSV
@pytest.fixture(scope="module")
def synthetic_csv(tmp_path_factory, small_sim):
    rel = small_sim.release
    f = rel.to_frame()
    lat, lon = small_sim.world.to_latlon(f["x_m"].to_numpy(), f["y_m"].to_numpy())
    ids = {p: f"dev-{p[:6]}-{p[-6:]}" for p in rel.pseudonym}
    df = pd.DataFrame({
        "device_id": f["pseudonym"].astype(str).map(ids),
        "timestamp": pd.to_datetime(f["t_s"], unit="s", utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "latitude": np.round(lat, 7), "longitude": np.round(lon, 7),
        "horizontal_accuracy": f["accuracy_m"].round(1),
    })
    d = tmp_path_factory.mktemp("synthetic")
    p = d / "pings.csv"
    df.to_csv(p, index=False)
    return p, df, sorted(ids.values())


@pytest.fixture(scope="module")
def synthetic_audit(synthetic_csv, tmp_path_factory):
    p, _, _ = synthetic_csv
    out = tmp_path_factory.mktemp("synthetic_out") / "audit"
    rc = main(["audit", str(p), "--out", str(out), "--tz", "America/Chicago", "--defense", "grid:cell_m=250",
               "--defense", "subsample:fraction=0.5", "--k", "3", "-q"])
    assert rc == 0
    return out


def test_synthetic_csv_audit_detects_columns_and_method(synthetic_audit, synthetic_csv):
    _, df, _ = synthetic_csv
    m = json.loads((synthetic_audit / AUDIT_MARKER).read_text())
    assert m["counts"]["columns"] == {"id": "device_id", "time": "timestamp", "lat": "latitude",
                                      "lon": "longitude", "accuracy": "horizontal_accuracy"}
    assert m["counts"]["rows_read"] == len(df) and m["info"]["method"] == "dbscan"
    assert [d["name"] for d in m["info"]["defenses"]] == ["grid", "subsample"] and m["k"] == 3
    t = pd.read_csv(synthetic_audit / "tables" / "defenses.csv")
    kept = t[(t["attack"] == "data") & (t["setting"] == "fixes")].set_index("stage")["value"]
    assert 0.4 < kept["after"] / kept["before"] < 0.6
    assert {"before", "after"} == set(t["stage"])
    assert (pd.read_csv(synthetic_audit / "tables" / "density.csv")["n_users"] >= 3).all()
    assert "What the defenses changed" in (synthetic_audit / "audit.md").read_text()


def test_synthetic_outputs_hold_no_id_or_coordinate(synthetic_audit, synthetic_csv):
    _, df, ids = synthetic_csv
    coords = {f"{v:.5f}" for v in np.concatenate([df["latitude"], df["longitude"]])}
    raw = {str(v) for v in np.concatenate([df["latitude"], df["longitude"]])}
    for p in files_of(synthetic_audit):
        txt = text_of(p)
        for i in ids:
            assert i not in txt and i[4:10] not in txt, f"{p.name} holds an input id"
        nums = DEC5.findall(txt)
        bad = [v for v in nums if v in raw or f"{float(v):.5f}" in coords]
        assert not bad, f"{p.name} holds input coordinates {bad[:3]}"


# ============================================================================ bad rows, errors
def test_bad_rows_counted_in_report(tmp_path, capsys):
    rows = [("u1", f"2008-10-2{d} 0{h}:00:00", 39.9 + 0.001 * h, 116.4) for d in range(3, 6) for h in range(9)]
    rows += [("u2", f"2008-10-2{d} 0{h}:30:00", 39.95, 116.3 + 0.001 * h) for d in range(3, 6) for h in range(9)]
    rows += [("u1", "not a time", 39.9, 116.4), ("u2", "2008-10-23 01:00:00", 123.0, 116.4),
             ("", "2008-10-23 01:00:00", 39.9, 116.4), ("u1", "2008-10-23 00:00:00", 39.9, 116.4)]
    p = tmp_path / "p.csv"
    pd.DataFrame(rows, columns=["user", "time", "lat", "lon"]).to_csv(p, index=False)
    out = tmp_path / "out"
    assert main(["audit", str(p), "--out", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "1 bad time" in printed and "1 bad coordinates" in printed and "1 missing" in printed
    assert "1 duplicate" in printed
    c = json.loads((out / AUDIT_MARKER).read_text())["counts"]
    assert c["dropped"] == {"malformed": 0, "missing": 1, "bad_coordinates": 1, "bad_time": 1, "duplicate": 1}
    assert c["rows_read"] == len(rows) and c["rows_kept"] == len(rows) - 4
    data = pd.read_csv(out / "tables" / "data.csv").set_index("item")["value"]
    assert data["dropped_bad_time"] == 1 and data["users"] == 2


@pytest.mark.parametrize("argv,needle", [
    (["--tz", "Nowhere/Land"], "not a known IANA time zone"),
    (["--defense", "home_suppression:radius_m=200"], "true home"),
    (["--defense", "zone_centroid:level=block"], "zone geography"),
    (["--defense", "grid:size=5"], "unknown parameter"),
    (["--defense", "teleport:x=1"], "unknown defense"),
    (["--register", "people.csv"], "no such register file: 'people.csv'; check the --register path"),
    (["--register-name", "who"], "no register was given"),
    (["--crs", "EPSG:4326"], "geographic"),
    (["--id", "nope"], "--id 'nope' is not a column"),
])
def test_bad_input_exits_2_with_a_message(argv, needle, tmp_path, capsys):
    p = tmp_path / "p.csv"
    pd.DataFrame({"uid": ["a", "a"], "datetime": ["2008-10-23 01:00:00", "2008-10-23 02:00:00"],
                  "lat": [39.9, 39.9], "lng": [116.4, 116.4]}).to_csv(p, index=False)
    out = tmp_path / "out"
    assert main(["audit", str(p), "--out", str(out), "-q", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("reidsim: error:") and needle in err, err
    assert not out.exists() or not any(out.iterdir())


def test_output_folder_rules(tmp_path, capsys):
    foreign = tmp_path / "thesis"
    foreign.mkdir()
    (foreign / "chapter.tex").write_text("mine")
    with pytest.raises(InputError, match="not a reidsim audit folder"):
        claim_audit_dir(foreign)
    assert [p.name for p in foreign.iterdir()] == ["chapter.tex"]
    p = tmp_path / "p.csv"
    pd.DataFrame({"uid": ["a"] * 30 + ["b"] * 30,
                  "datetime": [f"2008-10-23 {h:02d}:{m:02d}:00" for h in range(2) for m in range(0, 60, 4)] * 2,
                  "lat": np.r_[np.full(30, 39.9), np.full(30, 39.95)], "lng": 116.4}).to_csv(p, index=False)
    out = tmp_path / "audit"
    assert main(["audit", str(p), "--out", str(out), "-q"]) == 0
    (out / "my_notes.txt").write_text("keep me")
    assert main(["audit", str(p), "--out", str(out), "--overwrite", "-q", "--k", "2"]) == 0
    assert (out / "my_notes.txt").read_text() == "keep me"
    assert json.loads((out / AUDIT_MARKER).read_text())["k"] == 2
    assert not [e for e in out.iterdir() if e.name.startswith(".reidsim-staging-")]
    capsys.readouterr()
    assert main(["audit", str(p), "--out", str(foreign), "-q"]) == 2
    assert "not a reidsim audit folder" in capsys.readouterr().err


def test_parse_defense():
    assert parse_defense("grid:cell_m=500") == ("grid", {"cell_m": 500})
    assert parse_defense("night_suppression:duration_h=8,end_h=6.5") == (
        "night_suppression", {"duration_h": 8, "end_h": 6.5})
    assert parse_defense("rotate:period_days=inf") == ("rotate", {"period_days": math.inf})
    for bad in ("", "grid:cell_m", "grid:=5", "home_suppression:radius_m=1", "aggregate_k:k=5"):
        with pytest.raises(ConfigError):
            parse_defense(bad)


# ============================================================================ pieces
def _traces(rows):
    from sim.core.traces import Traces

    return Traces.from_frame(pd.DataFrame(rows, columns=["pseudonym", "t_s", "x_m", "y_m"]), crs="EPSG:32650")


def test_grid_top_cells_against_pandas():
    rng = np.random.default_rng(4)
    rows = [(f"u{rng.integers(0, 12)}", int(1_224_720_000 + rng.integers(0, 6 * 86400)),
             float(rng.uniform(0, 3000)), float(rng.uniform(0, 3000))) for _ in range(1500)]
    tr = _traces(rows)
    top, n_places = grid_top_cells(tr, 500.0, 3)
    ix, iy = np.floor(tr.x_m / 500).astype(int), np.floor(tr.y_m / 500).astype(int)
    code = pd.factorize(pd.MultiIndex.from_arrays([ix, iy]))[0]  # cell numbers, as the function numbers them
    f = pd.DataFrame({"tr": tr.trace_index(), "cell": code, "day": tr.day()})
    for i in range(tr.n_traces):
        g = f[f["tr"] == i].groupby("cell").agg(days=("day", "nunique"), fixes=("day", "size")).reset_index()
        assert n_places[i] == len(g)
        # rank: most days, then most fixes, then the smaller cell number
        want = g.sort_values(["days", "fixes", "cell"], ascending=[False, False, True])["cell"].head(3).tolist()
        assert top[i, :len(want)].tolist() == want and (top[i, len(want):] == -1).all()
    sizes = signature_set_sizes(top, n_places, 2)
    assert ((sizes >= 1) | (n_places < 2)).all()


def test_density_is_k_thresholded_and_settings_checked(small_sim):
    res = audit(small_sim.release, k=10, days=(1, 3), skmob_k=1, n_sample=100)
    d = res["density"]
    assert (d["n_users"] >= 10).all() and set(d.columns) == {"cell_m", "ix", "iy", "n_users"}
    res2 = audit(small_sim.release, k=10**6, days=(1,), skmob_k=1, n_sample=100, unicity_p=(2,))
    assert res2["density"].empty
    assert res2["data"].set_index("item")["value"]["density_cells_suppressed"] > 0
    assert sorted(res["risk_by_days"]["days"].unique()) == [1, 3]
    with pytest.raises(ConfigError):
        audit(small_sim.release, k=0)
    with pytest.raises(ConfigError):
        audit(small_sim.release, colour="red")


# ============================================================================ the two new skmob attacks
# scikit-mobility's documented outputs on its toy data (LocationProbabilityAttack and
# LocationProportionAttack docstrings), users 1..7
NEW_DOCS = [
    ("location_probability", dict(knowledge_length=2), [1 / 2, 1, 1 / 2, 1, 1, 1, 1]),
    ("location_probability", dict(knowledge_length=2, tolerance=0.5), [1 / 3, 1 / 2, 1 / 3, 1 / 3, 1 / 4, 1, 1]),
    ("location_probability", dict(knowledge_length=3, tolerance=0.5), [1 / 2, 1, 1 / 2, 1 / 3, 1 / 3, 1, 1]),
    ("location_proportion", dict(knowledge_length=2), [1 / 3, 1, 1 / 3, 1 / 3, 1 / 3, 1 / 3, 1]),
    ("location_proportion", dict(knowledge_length=2, tolerance=0.5), [1 / 3, 1 / 4, 1 / 3, 1 / 3, 1 / 3, 1 / 3, 1 / 4]),
    ("location_proportion", dict(knowledge_length=3, tolerance=0.5), [1 / 2, 1 / 3, 1 / 2, 1 / 3, 1 / 3, 1 / 3, 1 / 4]),
]


@pytest.mark.parametrize("attack,kw,expected", NEW_DOCS)
def test_new_skmob_attacks_match_documented_values(attack, kw, expected):
    toy = pd.read_csv(TOY)
    r = S.privacy_risk(toy, attack, **kw)
    assert r["uid"].tolist() == list(range(1, 8))
    np.testing.assert_allclose(r["risk"], expected, rtol=0, atol=1e-12)


def test_new_skmob_attacks_by_hand():
    # Toy frequency vectors (A..D the four places):
    #   u1 A1 B1 C1 D1 | u2 A2 B1 C1 | u3 A1 B1 C1 D1 | u4 B1 C1 D1 | u5 A1 C1 D1 | u6 A1 B1 | u7 A2 D1
    # probability, k=2, exact: u2's instance {A: 2/4, B: 1/4} matches u2 only -> 1;
    # u1's best instance {A: 1/4, D: 1/4} matches u1 and u3 -> 1/2.
    # proportion, k=2, exact: u1's {A, D} with proportions (1, 1) matches u1, u3, u5 (u7 has 1 : 0.5) -> 1/3.
    toy = pd.read_csv(TOY)
    pr = S.location_probability_risk(toy, 2).set_index("uid")["risk"]
    assert pr[2] == 1.0 and pr[1] == 0.5
    pp = S.location_proportion_risk(toy, 2).set_index("uid")["risk"]
    assert pp[1] == pytest.approx(1 / 3) and pp[7] == 1.0
    assert S.location_proportion_risk(toy, 3, tolerance=0.5, targets=[1, 2])["risk"].round(6).tolist() == [0.5, 0.333333]


def _ref_vector_risk(df, attack, k, tol):
    """scikit-mobility's _match on probability / frequency vectors, literally."""
    df = df.sort_values(["uid", "datetime"], kind="stable")
    freq = {u: Counter(zip(g["lat"], g["lng"])) for u, g in df.groupby("uid")}
    n_rec = df.groupby("uid").size().to_dict()
    users = sorted(freq)

    def vec(u):
        if attack == "location_probability":
            return {l: f / n_rec[u] for l, f in freq[u].items()}
        return dict(freq[u])

    out = []
    for u in users:
        items = sorted(vec(u).items())
        best = 0.0
        for inst in combinations(items, min(k, len(items))):
            n = 0
            for c in users:
                vc = vec(c)
                if any(l not in vc for l, _ in inst):
                    continue
                if attack == "location_probability":
                    pairs = [(v, vc[l]) for l, v in inst]
                else:
                    mi = max(v for _, v in inst)
                    mc = max(vc[l] for l, _ in inst)
                    pairs = [(v / mi, vc[l] / mc) for l, v in inst]
                n += all(vc_ - vc_ * tol <= vi <= vc_ + vc_ * tol for vi, vc_ in pairs)
            best = max(best, 1.0 / n)
        out.append(best)
    return np.array(out)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("attack", ["location_probability", "location_proportion"])
@pytest.mark.parametrize("k,tol", [(1, 0.0), (2, 0.0), (2, 0.5), (3, 0.25)])
def test_new_skmob_attacks_against_reference(seed, attack, k, tol):
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(10):
        for _ in range(rng.integers(1, 8)):
            p = int(rng.integers(0, 4))
            rows.append((u, pd.Timestamp("2011-02-01") + pd.Timedelta(hours=int(rng.integers(0, 48))),
                         43.0 + 0.01 * p, 10.0))
    df = pd.DataFrame(rows, columns=["uid", "datetime", "lat", "lng"])
    got = S.privacy_risk(df, attack, knowledge_length=k, tolerance=tol)["risk"].to_numpy()
    np.testing.assert_allclose(got, _ref_vector_risk(df, attack, k, tol), atol=1e-12)
