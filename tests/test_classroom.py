"""The classroom page (``reidsim classroom``): one self-contained HTML file.

Fast checks on a small page: nothing fetched from the network, its size, the embedded
data (a candidate list that only shrinks and ends at one right name), the story device
consistent with the attacker ladder on the whole release, determinism, and that a user's
file is replaced only with --overwrite.  The real-browser check
(``tests/browser/check_classroom.py``) runs when Chromium is installed.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sim.api import infer_by_day, simulate
from sim.attacks.ladder import ladder_sets
from sim.cli import main
from sim.core.errors import ConfigError
from sim.pipeline import classroom as cl
from sim.report.classroom import classroom_html

ROOT = Path(__file__).resolve().parents[1]
BROWSER_CHECK = ROOT / "tests" / "browser" / "check_classroom.py"
DATA_RE = re.compile(r'<script type="application/json" id="lesson-data">(.*?)</script>', re.S)
#: anything that would make a browser fetch from elsewhere
FETCH_RES = [
    re.compile(r"<script[^>]*\bsrc\s*=", re.I),
    re.compile(r"<link\b", re.I),
    re.compile(r"<(?:img|iframe|embed|object|source|video|audio)\b", re.I),
    re.compile(r"""\b(?:src|href|action|data|poster)\s*=\s*["']?\s*(?:https?:)?//""", re.I),
    re.compile(r"""url\(\s*["']?\s*(?:https?:)?//""", re.I),
    re.compile(r"@import", re.I),
    re.compile(r"\b(?:fetch|XMLHttpRequest|WebSocket|EventSource|importScripts|sendBeacon)\b"),
]


def lesson_data(text: str) -> dict:
    m = DATA_RE.search(text)
    assert m, "no embedded lesson data"
    return json.loads(m.group(1))


@pytest.fixture(scope="module")
def city():
    # 7 days include a Saturday (the gathering); a small city simulates in a second
    return simulate(n_devices=400, days=7, seed=5, world__radius_km=3.0)


@pytest.fixture(scope="module")
def page(city, tmp_path_factory):
    out = tmp_path_factory.mktemp("classroom") / "lesson.html"
    info = cl.write_classroom(out, simulation=city)
    return out, info


# ------------------------------------------------------------------ the file
def test_page_is_self_contained_and_small(page):
    out, info = page
    text = out.read_text(encoding="utf-8")
    assert info["bytes"] == out.stat().st_size
    assert out.stat().st_size < cl.TARGET_BYTES
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    for rx in FETCH_RES:
        assert not rx.search(text), f"page would fetch something: {rx.pattern}"
    # the only URLs in the page are the SVG namespace the script creates elements in
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", text))
    assert urls <= {"http://www.w3.org/2000/svg"}, urls
    assert "synthetic" in text.lower() or "invented" in text.lower()


def test_embedded_data_tells_a_shrinking_story(page, city):
    out, info = page
    data = lesson_data(out.read_text(encoding="utf-8"))
    n_days = city.release.n_days
    assert data["scenario"]["days"] == n_days == len(data["weekdays"])
    story = data["variants"]["none"]["days"]
    counts = [r["count"] for r in story]
    assert len(counts) == n_days
    assert all(b <= a for a, b in zip(counts, counts[1:])), counts
    assert max(counts) <= data["scenario"]["register_size"]
    assert data["device"]["story_named"] is True and info["story_named"] is True
    assert counts[-1] == 1 and story[-1]["named"] and not story[-1]["wrong"]
    assert data["device"]["named_day"] == next(r["day"] for r in story if r["named"]) == info["named_day"]
    # every named list is a subset of the day before's (the list only shrinks)
    for a, b in zip(story, story[1:]):
        if a["why"]["case"] != "no_home" and a["count"] <= len(a["names"]):
            assert set(b["names"]) <= set(a["names"])
    # one day of pings per day, and the defense toggle has every variant
    assert set(data["variants"]) == {"none", "grid", "planar_laplace", "rotate"}
    for v in data["variants"].values():
        assert len(v["pings"]) == n_days and len(v["days"]) == n_days
    # rotation gives one code per day with pings
    rot = data["variants"]["rotate"]
    days_with_pings = sum(1 for d in rot["pings"] if d)
    assert len(rot["codes"]) == days_with_pings
    g = data["gathering"]
    assert 0 < len(g["attendees"]) <= cl.ATTENDEES and g["n_seen"] >= len(g["attendees"])
    assert g["n_named"] + g["n_wrong"] <= g["n_home"] <= g["n_seen"]


def test_story_matches_the_attacker_ladder_on_the_whole_release(page, city):
    """The page's counts for the device (computed on its trace alone) are the candidate
    sets of the hierarchical rung at building level on the whole release."""
    out, _ = page
    data = lesson_data(out.read_text(encoding="utf-8"))
    story = data["variants"]["none"]["days"]
    rel = city.release
    k = [i for i, p in enumerate(rel.pseudonym) if cl.short_code(p) == data["device"]["code"]]
    assert len(k) == 1
    pseud = rel.pseudonym[k[0]]
    ibd = infer_by_day(rel, days=range(1, rel.n_days + 1))
    for d, rec in zip(range(1, rel.n_days + 1), story):
        row = ibd[d][ibd[d]["pseudonym"] == pseud]
        sets = ladder_sets(row.reset_index(drop=True), city.register, city.world, rungs=("hierarchical",))
        if np.isfinite(row["home_x_m"].iloc[0]):
            assert rec["count"] == int(sets.size["hierarchical"][0])
        else:
            assert rec["count"] == len(city.register) and rec["home"] is None


def test_same_seed_same_page(city, page):
    out, _ = page
    assert classroom_html(cl.classroom_data(city)) == out.read_text(encoding="utf-8")


def test_pick_demo_device_is_seeded_among_named_nested_stories():
    a, b, c, d = (np.array(x) for x in ([1, 2, 3], [2, 3], [2], [5]))
    per_day = [
        {"p1": None, "p2": a, "p3": a, "p4": None},
        {"p1": b, "p2": b, "p3": d, "p4": None},
        {"p1": c, "p2": c, "p3": c, "p4": c},
    ]
    owner = {"p1": 2, "p2": 2, "p3": 2, "p4": 3}
    # p3 is not nested (5 is not in {1, 2, 3}), p4 is named wrongly
    picks = {cl.pick_demo_device(per_day, owner, seed) for seed in range(20)}
    assert picks == {"p1", "p2"}
    assert cl.pick_demo_device(per_day, owner, 7) == cl.pick_demo_device(per_day, owner, 7)
    assert cl.pick_demo_device(per_day, owner, 7, prefer=({"p1"},)) == "p1"
    assert cl.pick_demo_device(per_day, {"p1": 9, "p2": 9, "p3": 9, "p4": 9}, 1) is None


def test_json_cannot_break_out_of_its_script(page):
    out, _ = page
    data = lesson_data(out.read_text(encoding="utf-8"))
    evil = "</script><script>alert(1)</script><!--"
    data["variants"]["none"]["days"][0]["names"] = [evil]
    text = classroom_html(data)
    assert text.count("</script>") == 2  # the data block and the page's script
    assert lesson_data(text)["variants"]["none"]["days"][0]["names"] == [evil]


def test_classroom_scenario_defaults():
    scn = cl.classroom_scenario()
    assert scn.devices == cl.CLASSROOM_DEVICES and scn.world.radius_km == cl.CLASSROOM_RADIUS_KM
    scn = cl.classroom_scenario(devices=300, seed=9)
    assert scn.devices == 300 and scn.seed == 9
    with pytest.raises(ConfigError):
        cl.classroom_scenario(devices=0)


# ------------------------------------------------------------------ files are safe
def test_existing_file_needs_overwrite(tmp_path, capsys, monkeypatch):
    mine = tmp_path / "lesson.html"
    mine.write_text("my own lesson")

    def boom(*a, **k):  # the refusal comes before any simulation
        raise AssertionError("simulated although the file exists")

    monkeypatch.setattr(cl, "simulate", boom)
    assert main(["classroom", "--out", str(mine), "--devices", "200"]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" in err
    assert mine.read_text() == "my own lesson"
    with pytest.raises(ConfigError, match="already exists"):
        cl.write_classroom(mine)
    assert mine.read_text() == "my own lesson"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lesson.html"]


def test_folder_or_empty_out_is_refused(tmp_path, capsys):
    assert main(["classroom", "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main(["classroom", "--out", " "]) == 2
    assert "--out is empty" in capsys.readouterr().err


def test_cli_writes_and_overwrites(tmp_path, capsys):
    out = tmp_path / "sub" / "lesson.html"
    args = ["classroom", "--out", str(out), "--devices", "300", "--seed", "2"]
    assert main(args) == 0
    first = out.read_text(encoding="utf-8")
    msg = capsys.readouterr().out
    assert "wrote" in msg and "kB" in msg
    out.write_text("edited by the teacher")
    assert main(args) == 2
    assert out.read_text() == "edited by the teacher"
    assert main(args + ["--overwrite"]) == 0
    assert out.read_text(encoding="utf-8") == first  # same seed, same page
    assert [p.name for p in out.parent.iterdir()] == ["lesson.html"]  # no temporary left


def test_too_large_page_is_refused(city, tmp_path, monkeypatch):
    monkeypatch.setattr(cl, "MAX_BYTES", 10_000)
    out = tmp_path / "lesson.html"
    with pytest.raises(ConfigError, match="MB limit"):
        cl.write_classroom(out, simulation=city)
    assert not out.exists() and list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ a real browser
def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.skipif(_chromium() is None, reason="Chromium is not installed (apt-get install -y chromium); "
                                                "CI installs it and runs tests/browser/check_classroom.py")
def test_page_in_a_real_browser(page, tmp_path):
    """Headless Chromium: the slider steps day 1..last, the count never grows and ends at
    1, no network request, no console error (a few seconds on a built page)."""
    out, _ = page
    shot = tmp_path / "classroom.png"
    t = time.perf_counter()
    r = subprocess.run([sys.executable, str(BROWSER_CHECK), "--page", str(out), "--screenshot", str(shot)],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    assert shot.stat().st_size > 10_000 and shot.with_name("classroom_fence.png").exists()
    assert time.perf_counter() - t < 60


@pytest.mark.skipif(_chromium() is None, reason="Chromium is not installed (apt-get install -y chromium)")
def test_browser_check_catches_a_broken_page(page, tmp_path):
    """The checker itself can fail: a page that fetches an image, logs an error and
    shows a growing candidate list is rejected on all three counts."""
    out, _ = page
    text = out.read_text(encoding="utf-8")
    data = lesson_data(text)
    data["variants"]["none"]["days"][-1]["count"] = data["variants"]["none"]["days"][0]["count"] + 5
    text = DATA_RE.sub(lambda m: m.group(0).replace(m.group(1), json.dumps(data)), text)
    text = text.replace("</main>", '<img src="http://127.0.0.1:9/x.png" alt=""></main>', 1)
    text = text.replace('document.body.dataset.ready = "1";', 'console.error("boom"); document.body.dataset.ready = "1";')
    bad = tmp_path / "broken.html"
    bad.write_text(text, encoding="utf-8")
    r = subprocess.run([sys.executable, str(BROWSER_CHECK), "--page", str(bad), "--screenshot",
                        str(tmp_path / "b.png")], capture_output=True, text=True, timeout=180)
    assert r.returncode == 1, r.stdout + r.stderr
    for needle in ("network requests besides the file", "console errors", "boom", "count increases"):
        assert needle in r.stderr, r.stderr
