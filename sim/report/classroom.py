"""The classroom page: one self-contained HTML file from prepared data.

:func:`classroom_html` is a pure function: the dict of
``sim.pipeline.classroom.classroom_data`` in, an HTML string out.  The page holds its data
(a ``<script type="application/json" id="lesson-data">`` block), its style and its script
inline; it loads nothing (no network, no fonts, no libraries) and works from a file opened
in any browser.  It draws with inline SVG and only *displays* what Python computed: the
day slider picks the precomputed day, the protection toggle the precomputed variant.

DOM hooks the browser test reads: ``#day`` (the day slider), ``#count`` (``data-count``:
the candidates left on the shown day), ``body[data-ready]`` (set once drawn),
``body[data-story-named]`` ("true" when the story ends with one right name),
``input[name=variant]`` (the protection toggle), ``#tab-fence`` / ``#tab-phone``.
"""
from __future__ import annotations

import html
import json

TITLE = "Can “anonymous” phone location data name you?"


def _json_for_script(data) -> str:
    """JSON safe inside a <script> element: every ``<`` (only ever inside a string) is
    written ``\\u003c``, so no ``</script>`` or ``<!--`` can end the block; no NaN."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    return text.replace("<", "\\u003c")


def classroom_html(data: dict) -> str:
    """The page (a complete HTML document) for ``data`` from ``classroom_data``."""
    sc = data["scenario"]
    dev = data["device"]
    footer = (f"Made with reidsim {html.escape(str(data.get('reidsim_version', '')))} "
              f"(<code>reidsim classroom</code>, seed {int(sc['seed'])}, scenario {html.escape(sc['config_hash'][:12])}): "
              f"an invented city of {int(sc['residents']):,} people, {int(sc['devices']):,} phones, "
              f"{int(sc['days'])} days. The same seed gives the same page.")
    return (_PAGE
            .replace("%TITLE%", html.escape(TITLE))
            .replace("%STORY_NAMED%", "true" if dev["story_named"] else "false")
            .replace("%FOOTER%", footer)
            .replace("%DATA%", _json_for_script(data)))


_PAGE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>%TITLE%</title>
<style>
:root { --ink:#1d2733; --muted:#5b6773; --line:#d8dde3; --bg:#f6f7f9; --accent:#c0392b;
        --night:#23407a; --day:#e08a1e; --home:#1f7a4d; --work:#7b3fa0; }
* { box-sizing: border-box; }
body { margin:0; font-family: system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif;
       color:var(--ink); background:var(--bg); font-size:16px; line-height:1.4; }
header { background:#fff; border-bottom:1px solid var(--line); padding:10px 18px 8px; }
h1 { font-size:22px; margin:0 0 4px; }
.synthetic { font-size:14px; color:#7a4b00; background:#fff4d6; border:1px solid #f0d58a;
             border-radius:6px; padding:4px 8px; display:inline-block; }
nav { margin-top:8px; display:flex; gap:6px; }
nav button { font:inherit; font-size:15px; padding:5px 12px; border:1px solid var(--line);
             background:#eef1f4; border-radius:6px 6px 0 0; cursor:pointer; }
nav button[aria-selected="true"] { background:#fff; border-bottom-color:#fff; font-weight:600; }
main { padding:12px 18px; }
.view { display:grid; grid-template-columns: minmax(360px, 1fr) 440px; gap:16px; align-items:start; }
.view[hidden] { display:none; }
.mapbox { background:#fff; border:1px solid var(--line); border-radius:8px; padding:6px; }
svg.map { width:100%; height:auto; display:block; aspect-ratio:1/1; background:#eef2f0; }
.legend { font-size:13px; color:var(--muted); display:flex; flex-wrap:wrap; gap:4px 14px; padding:4px 4px 0; }
.legend i { display:inline-block; width:11px; height:11px; border-radius:50%; vertical-align:-1px; margin-right:4px; }
.panel { background:#fff; border:1px solid var(--line); border-radius:8px; padding:12px 14px; }
.panel h2 { font-size:17px; margin:10px 0 4px; }
.panel h2:first-child { margin-top:0; }
.panel p { margin:4px 0; }
.slider { display:flex; align-items:center; gap:10px; }
.slider input { flex:1; accent-color: var(--accent); }
.slider button { font:inherit; font-size:14px; padding:3px 10px; border-radius:6px; border:1px solid var(--line); background:#eef1f4; cursor:pointer; }
.daylabel { font-weight:600; font-size:18px; }
.muted { color:var(--muted); font-size:14px; }
.found { display:grid; grid-template-columns: 22px 1fr; gap:2px 6px; margin:4px 0; }
.mark { display:inline-block; width:16px; height:16px; border-radius:3px; text-align:center; font-weight:700;
        color:var(--muted); margin-top:2px; }
.mark.home { background:var(--home); } .mark.work { background:var(--work); }
.count { display:flex; align-items:baseline; gap:8px; margin:4px 0; }
#count { font-size:44px; font-weight:700; color:var(--accent); font-variant-numeric: tabular-nums; }
.names { display:flex; flex-wrap:wrap; gap:4px; max-height:118px; overflow:auto; margin-top:4px; }
.names span { font-size:13px; background:#eef1f4; border-radius:10px; padding:1px 8px; }
.names span.gone { text-decoration: line-through; color:#9aa3ab; background:#f6f7f9; }
.names span.one { background:#fde2df; color:#8e1c10; font-weight:700; font-size:15px; }
.verdict { margin-top:6px; padding:6px 8px; border-radius:6px; background:#fde2df; display:none; }
.verdict.show { display:block; }
.verdict.ok { background:#fde2df; }
.verdict.safe { background:#dff3e6; }
fieldset { border:1px solid var(--line); border-radius:8px; margin:10px 0 0; padding:6px 10px 8px; }
legend { font-weight:600; font-size:15px; padding:0 4px; }
fieldset label { display:block; font-size:14px; margin:3px 0; cursor:pointer; }
.spark { width:100%; height:80px; display:block; margin-top:6px; }
table.stats { border-collapse:collapse; width:100%; font-size:15px; margin:6px 0; }
table.stats td { padding:3px 4px; border-bottom:1px solid var(--line); }
table.stats td.n { text-align:right; font-weight:700; font-variant-numeric: tabular-nums; }
footer { font-size:12px; color:var(--muted); padding:4px 18px 14px; }
code { font-size:90%; }
@media (max-width: 900px) { .view { grid-template-columns: 1fr; } }
</style>
</head>
<body data-story-named="%STORY_NAMED%">
<header>
  <h1>%TITLE%</h1>
  <div class="synthetic">Everything on this page is invented: the city, its people, their names and the phone
  are made up by a computer program. No real person's data is used.</div>
  <nav role="tablist">
    <button id="tab-phone" role="tab" aria-selected="true" aria-controls="view-phone">1. Follow one phone</button>
    <button id="tab-fence" role="tab" aria-selected="false" aria-controls="view-fence">2. A fence around a gathering</button>
  </nav>
</header>
<noscript><p style="padding:12px 18px">This page needs JavaScript switched on (it loads nothing from the internet).</p></noscript>
<main>
<section id="view-phone" class="view" role="tabpanel">
  <div class="mapbox">
    <svg id="map-phone" class="map" role="img" aria-label="Map of the invented city with the phone's pings"></svg>
    <div class="legend">
      <span><i style="background:var(--night)"></i>ping at night</span>
      <span><i style="background:var(--day)"></i>ping in the daytime</span>
      <span><i style="background:#9aa3ab"></i>earlier days</span>
      <span><i style="background:var(--home);border-radius:2px"></i>home (worked out)</span>
      <span><i style="background:var(--work);border-radius:2px"></i>work (worked out)</span>
      <span><i style="background:#c9ccd1;border-radius:1px"></i>buildings</span>
    </div>
  </div>
  <div class="panel">
    <h2>A phone with a secret code</h2>
    <p class="muted">Apps on this phone send its position to a data broker, who sells it with a code
    instead of a name. We play the buyer. Move the slider to add one day of data at a time.</p>
    <div class="slider">
      <button id="play" type="button">▶ Play</button>
      <input id="day" type="range" min="1" max="1" step="1" value="1" aria-label="Days of data the buyer has">
    </div>
    <div><span class="daylabel" id="daylabel"></span> <span class="muted" id="todaypings"></span></div>
    <h2>What the buyer works out</h2>
    <div class="found"><span id="home-mark">?</span><span id="home-text"></span>
                       <span id="work-mark">?</span><span id="work-text"></span></div>
    <h2>Who could it be?</h2>
    <div class="count"><span id="count" data-count="0">0</span><span id="count-unit" class="muted"></span></div>
    <p id="why"></p>
    <div class="names" id="names"></div>
    <div class="verdict" id="verdict"></div>
    <svg id="spark" class="spark" role="img" aria-label="People who could own the phone, day by day"></svg>
    <fieldset id="variants"><legend>What if the broker protected the data?</legend></fieldset>
    <p class="muted" id="variant-note"></p>
  </div>
</section>
<section id="view-fence" class="view" role="tabpanel" hidden>
  <div class="mapbox">
    <svg id="map-fence" class="map" role="img" aria-label="Map of the gathering and the trails of phones seen there"></svg>
    <div class="legend">
      <span><i style="background:none;border:2px dashed var(--accent)"></i>the fence</span>
      <span><i style="background:#3a7bd5"></i>a phone's trail (one colour each)</span>
      <span><i style="background:var(--home);border-radius:2px"></i>where it sleeps (worked out)</span>
    </div>
  </div>
  <div class="panel">
    <h2>A fence around a gathering</h2>
    <p id="fence-intro"></p>
    <div class="slider">
      <button id="play-fence" type="button">▶ Play</button>
      <input id="hour" type="range" min="0" max="1" step="15" value="0" aria-label="Time after the gathering started">
    </div>
    <div class="daylabel" id="hourlabel"></div>
    <table class="stats" id="fence-stats"></table>
    <p id="fence-names"></p>
    <p class="muted">Why it matters: the gathering could be a protest, a clinic or a place of worship.
    The buyer learns who was there without asking anyone.</p>
  </div>
</section>
</main>
<footer>%FOOTER%</footer>
<script type="application/json" id="lesson-data">%DATA%</script>
<script>
"use strict";
(function () {
const D = JSON.parse(document.getElementById("lesson-data").textContent);
const NS = "http://www.w3.org/2000/svg";
const WEEKDAY = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
const fmt = n => Number(n).toLocaleString("en-GB");
const el = id => document.getElementById(id);
function svgEl(tag, attrs, parent) {
  const e = document.createElementNS(NS, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (parent) parent.appendChild(e);
  return e;
}
function ringPath(ring) {
  let s = "";
  for (let i = 0; i < ring.length; i++) s += (i ? "L" : "M") + ring[i][0] + " " + (-ring[i][1]);
  return s + "Z";
}
function hhmm(min) {
  min = ((Math.round(min) % 1440) + 1440) % 1440;
  return String(Math.floor(min / 60)).padStart(2, "0") + ":" + String(min % 60).padStart(2, "0");
}
function isNight(min) {
  const h = min / 60, a = D.inference.night_start_h, b = D.inference.night_end_h;
  return a > b ? (h >= a || h < b) : (h >= a && h < b);
}

// ---------------------------------------------------------------- the city
function drawCity(svg, box) {
  const [x0, y0, x1, y1] = box, span = x1 - x0;
  svg.setAttribute("viewBox", x0 + " " + (-y1) + " " + span + " " + (y1 - y0));
  const g = svgEl("g", {}, svg);
  let maxd = 1;
  for (const b of D.city.blocks) maxd = Math.max(maxd, b.density);
  for (const b of D.city.blocks) {
    const t = Math.sqrt(b.density / maxd);
    const light = Math.round(96 - 14 * t);
    svgEl("path", {d: ringPath(b.ring), fill: "hsl(40, 22%, " + light + "%)", stroke: "#ffffff",
                   "stroke-width": 1.2, "vector-effect": "non-scaling-stroke"}, g);
  }
  for (const r of D.city.districts)
    svgEl("path", {d: ringPath(r), fill: "none", stroke: "#9aa3ab", "stroke-width": 1.5,
                   "stroke-dasharray": "6 4", "vector-effect": "non-scaling-stroke"}, g);
  for (const r of D.city.boundary)
    svgEl("path", {d: ringPath(r), fill: "none", stroke: "#6b7680", "stroke-width": 1.5,
                   "vector-effect": "non-scaling-stroke"}, g);
  const s = Math.max(6, span / 260);
  let homes = "", jobs = "";
  for (const b of D.city.buildings) {
    if (b[0] < x0 || b[0] > x1 || b[1] < y0 || b[1] > y1) continue;
    const p = "M" + (b[0] - s / 2) + " " + (-b[1] - s / 2) + "h" + s + "v" + s + "h" + (-s) + "z";
    if (b[2]) homes += p; else jobs += p;
  }
  svgEl("path", {d: homes, fill: "#d3d6da"}, g);
  svgEl("path", {d: jobs, fill: "#c4cedb"}, g);
  // scale bar
  const bar = span > 6000 ? 2000 : (span > 2500 ? 1000 : 500);
  const bx = x0 + span * 0.04, by = -y0 - span * 0.04;
  svgEl("path", {d: "M" + bx + " " + by + "h" + bar, stroke: "#1d2733", "stroke-width": 3,
                 "vector-effect": "non-scaling-stroke"}, svg);
  const t = svgEl("text", {x: bx, y: by - span * 0.012, "font-size": span / 40, fill: "#1d2733"}, svg);
  t.textContent = bar >= 1000 ? (bar / 1000) + " km" : bar + " m";
  return span;
}
function marker(parent, kind, x, y, size, label, ring) {
  // a ring around the place (the pings inside stay visible) and a small icon beside it;
  // without the ring, the icon sits on the place
  const col = kind === "home" ? "var(--home)" : "var(--work)";
  const g = svgEl("g", {transform: "translate(" + x + " " + (-y) + ")", "class": "marker " + kind}, parent);
  const s = size;
  if (ring !== false) {
    svgEl("circle", {r: s * 1.25, fill: "none", stroke: "#fff", "stroke-width": 5, "vector-effect": "non-scaling-stroke"}, g);
    svgEl("circle", {r: s * 1.25, fill: "none", stroke: col, "stroke-width": 2.5, "vector-effect": "non-scaling-stroke"}, g);
  }
  // labels near the right edge of the map go to the left
  const vb = parent.ownerSVGElement.viewBox.baseVal;
  const left = x > vb.x + vb.width * 0.72;
  const ix = ring === false ? 0 : (left ? -s * 1.9 : s * 1.9), iy = ring === false ? s * 0.3 : -s * 1.1, h = s * 0.75;
  if (kind === "home")
    svgEl("path", {d: "M" + ix + " " + (iy - h) + "l" + h + " " + (h * 0.9) + "h" + (-h * 0.3) + "v" + h + "h" + (-h * 1.4) +
                   "v" + (-h) + "h" + (-h * 0.3) + "Z", fill: col, stroke: "#fff", "stroke-width": 1.5,
                   "vector-effect": "non-scaling-stroke"}, g);
  else
    svgEl("rect", {x: ix - h * 0.8, y: iy - h * 0.8, width: h * 1.6, height: h * 1.6, rx: h * 0.25, fill: col,
                   stroke: "#fff", "stroke-width": 1.5, "vector-effect": "non-scaling-stroke"}, g);
  if (label) {
    const fsz = ring === false ? s * 0.8 : s * 1.4;
    const t = svgEl("text", {x: left ? ix - h * 1.2 : ix + h * 1.2, y: iy + h * 0.5, "font-size": fsz, fill: "#1d2733",
                             "text-anchor": left ? "end" : "start", "paint-order": "stroke", stroke: "#fff",
                             "stroke-width": fsz * 0.22, "font-weight": 600}, g);
    t.textContent = label;
  }
  return g;
}

// ---------------------------------------------------------------- view 1: one phone
const V = D.variants, nDays = D.scenario.days, regSize = D.scenario.register_size;
let variant = "none", day = 1;
const map1 = el("map-phone");
const span1 = drawCity(map1, D.device.view);
const layer1 = svgEl("g", {}, map1);
const daySlider = el("day");
daySlider.max = String(nDays);

function drawPhone() {
  const v = V[variant], rec = v.days[day - 1];
  layer1.textContent = "";
  const r = span1 / 130;
  // earlier days, faded
  let past = "";
  for (let d = 0; d < day - 1; d++)
    for (const p of v.pings[d]) past += "M" + p[0] + " " + (-p[1]) + "h0.01";
  svgEl("path", {d: past, stroke: "#7d8790", "stroke-width": r * 1.4, "stroke-linecap": "round", opacity: 0.45}, layer1);
  // today: the trail in time order, then the pings
  const today = v.pings[day - 1];
  if (today.length > 1) {
    let path = "";
    today.forEach((p, i) => { path += (i ? "L" : "M") + p[0] + " " + (-p[1]); });
    svgEl("path", {d: path, fill: "none", stroke: "#41505e", "stroke-width": 1, opacity: 0.5,
                   "vector-effect": "non-scaling-stroke"}, layer1);
  }
  for (const p of today)
    svgEl("circle", {cx: p[0], cy: -p[1], r: r, fill: isNight(p[2]) ? "var(--night)" : "var(--day)",
                     stroke: "#fff", "stroke-width": 0.8, "vector-effect": "non-scaling-stroke"}, layer1);
  if (rec.work) marker(layer1, "work", rec.work[0], rec.work[1], span1 / 55, "work?");
  if (rec.home) marker(layer1, "home", rec.home[0], rec.home[1], span1 / 55, "home?");
  return today;
}

function whyText(rec) {
  const w = rec.why, n = fmt(rec.count);
  if (w.case === "no_home")
    return "The computer cannot tell yet where the phone sleeps, so the owner could be anyone: all " +
           fmt(regSize) + " people in the register.";
  if (w.case === "nobody")
    return "Nobody in the register lives in the building where the phone sleeps, so the buyer has no name for now.";
  const home = "The register (a list of people and addresses anyone can buy) has " + fmt(w.n_home) +
               (w.n_home === 1 ? " person" : " people") + " living in the building where the phone sleeps";
  if (w.case === "works_there")
    return home + ". Of them, " + (rec.count === 1 ? "only one is" : n + " are") +
           " listed as working in the building where the phone spends weekdays.";
  if (w.case === "lives_there")
    return home + (rec.work ? ". None of them is listed as working where the phone spends weekdays, so all stay on the list."
                            : ". Any of them could own the phone.");
  return home + ". " + (rec.work ? "None of them is listed as working where the phone spends weekdays; "
                                 : "No workplace is known yet; ") +
         n + (rec.count === 1 ? " of them has" : " of them have") + " no job listed, so the buyer keeps " +
         (rec.count === 1 ? "that one." : "those.");
}

function renderPhone() {
  const v = V[variant], rec = v.days[day - 1];
  const today = drawPhone();
  el("daylabel").textContent = "Day " + day + " of " + nDays + " · " + WEEKDAY[D.weekdays[day - 1]];
  const codes = [...new Set(today.map(p => p[3]))].map(c => v.codes[c]);
  el("todaypings").textContent = today.length
    ? "today: " + today.length + " pings under the code " + codes.join(", ")
    : "today: no pings (the phone was quiet)";
  el("home-mark").className = rec.home ? "mark home" : "mark";
  el("home-mark").textContent = rec.home ? "" : "?";
  el("home-text").textContent = rec.home
    ? "Home: where the phone is at night (seen there " + rec.home[2] + (rec.home[2] === 1 ? " night" : " nights") + ")."
    : "Home: not known yet (needs pings at night).";
  el("work-mark").className = rec.work ? "mark work" : "mark";
  el("work-mark").textContent = rec.work ? "" : "?";
  el("work-text").textContent = rec.work
    ? "Work: where the phone is on weekdays in working hours (" + rec.work[2] + " days)."
    : "Work: not known yet (needs at least two weekdays).";
  const c = el("count");
  c.textContent = fmt(rec.count);
  c.dataset.count = String(rec.count);
  el("count-unit").textContent = rec.count === 1 ? "person fits" : "people could own this phone";
  el("why").textContent = whyText(rec);
  // names: today's list, with the ones dropped since yesterday struck through
  const box = el("names");
  box.textContent = "";
  const prev = day > 1 ? v.days[day - 2] : null;
  const now = new Set(rec.names);
  if (rec.count > 0 && rec.why.case !== "no_home") {
    for (const nm of rec.names) {
      const s = document.createElement("span");
      s.textContent = nm;
      if (rec.count === 1) s.className = "one";
      box.appendChild(s);
    }
    if (rec.count > rec.names.length) {
      const s = document.createElement("span");
      s.textContent = "… and " + fmt(rec.count - rec.names.length) + " more";
      box.appendChild(s);
    }
  }
  if (prev && prev.why.case !== "no_home" && prev.count <= prev.names.length)
    for (const nm of prev.names) if (!now.has(nm)) {
      const s = document.createElement("span");
      s.textContent = nm;
      s.className = "gone";
      box.appendChild(s);
    }
  const verdict = el("verdict");
  verdict.className = "verdict";
  if (rec.named) {
    verdict.className = "verdict show ok";
    verdict.textContent = "One name is left after " + day + (day === 1 ? " day" : " days") +
      ". The computer checks it against the truth (it knows, because it invented the city): it is the right person. " +
      "The code did not hide who owns the phone.";
  } else if (rec.wrong) {
    verdict.className = "verdict show safe";
    verdict.textContent = "One name is left, but it is the wrong person: the buyer now blames someone innocent.";
  } else if (!rec.owner_in && rec.count > 0) {
    verdict.className = "verdict show safe";
    verdict.textContent = "The real owner is not on this list any more: the buyer is on the wrong track.";
  }
  drawSpark();
}

function drawSpark() {
  const svg = el("spark"), v = V[variant];
  svg.textContent = "";
  const W = 400, H = 80, pad = 16, bw = (W - 2 * pad) / nDays;
  svg.setAttribute("viewBox", "0 0 " + W + " " + H);
  const lmax = Math.log10(Math.max(regSize, 10));
  v.days.forEach((r, i) => {
    const h = r.count > 0 ? Math.max(3, (Math.log10(r.count) / lmax) * (H - 40) + 3) : 1;
    svgEl("rect", {x: pad + i * bw + 1, y: H - 14 - h, width: Math.max(1, bw - 2), height: h,
                   fill: i === day - 1 ? "var(--accent)" : (i < day ? "#e6a29a" : "#dde1e5")}, svg);
    if (i < day) {
      const n = r.count >= 10000 ? Math.round(r.count / 1000) + "k" : (r.count >= 1000 ? (r.count / 1000).toFixed(1) + "k" : String(r.count));
      const lab = svgEl("text", {x: pad + (i + 0.5) * bw, y: H - 17 - h, "font-size": 10, "text-anchor": "middle",
                                 fill: i === day - 1 ? "#8e1c10" : "#5b6773"}, svg);
      lab.textContent = n;
    }
  });
  const t = svgEl("text", {x: pad, y: 10, "font-size": 11, fill: "#5b6773"}, svg);
  t.textContent = "people who could own the phone, day by day";
  const a = svgEl("text", {x: pad, y: H - 2, "font-size": 10, fill: "#5b6773"}, svg);
  a.textContent = "day 1";
  const b = svgEl("text", {x: W - pad, y: H - 2, "font-size": 10, fill: "#5b6773", "text-anchor": "end"}, svg);
  b.textContent = "day " + nDays;
}

const fs = el("variants");
for (const key of Object.keys(V)) {
  const lab = document.createElement("label");
  const inp = document.createElement("input");
  inp.type = "radio"; inp.name = "variant"; inp.value = key; inp.checked = key === "none";
  inp.addEventListener("change", () => { variant = key; noteVariant(); renderPhone(); });
  lab.appendChild(inp);
  lab.appendChild(document.createTextNode(" " + V[key].label));
  fs.appendChild(lab);
}
const COST = {
  grid: "The price: everyone who uses the data (for example to plan bus routes) now only knows which 1 km square a phone was in.",
  planar_laplace: "The price: every position is now wrong by about 500 m for everyone who uses the data. " +
                  "A cleverer buyer could average many noisy nights; the buyer here does not try.",
  rotate: "Each day looks like a new phone, so the buyer only ever has one day at a time. " +
          "A cleverer buyer can still join the days together by matching where the codes sleep.",
};
function noteVariant() {
  const v = V[variant], last = v.days[nDays - 1];
  let msg;
  if (variant === "none") msg = "This is the data as brokers sell it today.";
  else msg = "Same phone, same days, protected data. ";
  if (variant !== "none") {
    if (last.named) msg += "Still named in the end (after " + (v.days.findIndex(r => r.named) + 1) + " days).";
    else if (last.wrong) msg += "In the end one name is left, but the wrong one.";
    else if (last.why.case === "no_home") msg += "The buyer never finds where the phone sleeps.";
    else msg += "In the end " + fmt(last.count) + " people still fit" + (last.owner_in ? " (the owner is one of them)." : ", and the owner is not among them.");
    msg += " " + COST[variant];
  }
  el("variant-note").textContent = msg;
}
daySlider.addEventListener("input", () => { day = Number(daySlider.value); renderPhone(); });
let timer = null;
el("play").addEventListener("click", () => {
  if (timer) { clearInterval(timer); timer = null; el("play").textContent = "▶ Play"; return; }
  if (day >= nDays) { day = 1; daySlider.value = "1"; renderPhone(); }
  el("play").textContent = "❚❚ Pause";
  timer = setInterval(() => {
    if (day >= nDays) { clearInterval(timer); timer = null; el("play").textContent = "▶ Play"; return; }
    day += 1; daySlider.value = String(day); renderPhone();
  }, 900);
});

// ---------------------------------------------------------------- view 2: the gathering
const G = D.gathering;
const map2 = el("map-fence");
const span2 = drawCity(map2, G.view);
svgEl("path", {d: ringPath(G.fence.ring), fill: "rgba(192,57,43,0.10)", stroke: "var(--accent)", "stroke-width": 2.5,
               "stroke-dasharray": "8 5", "vector-effect": "non-scaling-stroke"}, map2);
const layer2 = svgEl("g", {}, map2);
const hourSlider = el("hour");
hourSlider.max = String(G.trail_end_min);
const gday = WEEKDAY[G.weekday];
el("fence-intro").textContent = "There are no real events in this invented city, so we take its busiest spot on " + gday +
  " afternoon. The buyer asks the broker for every phone inside the red circle between " + hhmm(G.start_min) + " and " +
  hhmm(G.start_min + G.end_min) + ", then follows each phone home. Many phones there simply belong to people who live nearby; the map shows " +
  G.attendees.length + " of the " + G.n_seen + " phones, picked at random, mostly of people who came from elsewhere (" +
  G.n_shown_visitors + "), each in its own colour. Move the slider to watch them leave.";
const rows = [["Phones seen inside the fence", G.n_seen], ["… where the computer found the home", G.n_home],
              ["… who live inside the circle", G.n_lives_inside], ["… who came from elsewhere", G.n_visitors],
              ["… named: one person fits, the right one", G.n_named], ["… named, but the wrong person", G.n_wrong]];
const tbl = el("fence-stats");
for (const [label, n] of rows) {
  const tr = document.createElement("tr");
  const a = document.createElement("td"); a.textContent = label;
  const b = document.createElement("td"); b.className = "n"; b.textContent = fmt(n);
  tr.appendChild(a); tr.appendChild(b); tbl.appendChild(tr);
}
const named = G.attendees.filter(a => a.named).map(a => a.name);
el("fence-names").textContent = named.length
  ? "Named among the phones on the map (invented names): " + named.join(", ") + "."
  : "None of the phones on the map was named, but for most of them the buyer knows the building where they sleep.";
let tmin = 0;
function renderFence() {
  layer2.textContent = "";
  const r = span2 / 220;
  G.attendees.forEach((a, i) => {
    const col = "hsl(" + Math.round((i * 137.5) % 360) + ", 65%, 42%)";
    const pts = a.trail.filter(p => p[2] <= tmin);
    if (pts.length > 1) {
      let d = "";
      pts.forEach((p, j) => { d += (j ? "L" : "M") + p[0] + " " + (-p[1]); });
      svgEl("path", {d: d, fill: "none", stroke: col, "stroke-width": 1.8, opacity: 0.8,
                     "stroke-linejoin": "round", "vector-effect": "non-scaling-stroke"}, layer2);
    }
    if (pts.length) {
      const p = pts[pts.length - 1];
      svgEl("circle", {cx: p[0], cy: -p[1], r: r * 1.6, fill: col, stroke: "#fff", "stroke-width": 1,
                       "vector-effect": "non-scaling-stroke"}, layer2);
    }
    const done = !a.trail.length || a.trail[a.trail.length - 1][2] <= tmin || tmin >= G.trail_end_min;
    if (a.home && done) marker(layer2, "home", a.home[0], a.home[1], span2 / 45, a.named ? a.name : "", false);
  });
  const abs = G.start_min + tmin;
  el("hourlabel").textContent = (abs >= 1440 ? WEEKDAY[(G.weekday + 1) % 7] : gday) + " " + hhmm(abs) +
    (tmin <= G.end_min ? " · the gathering" : " · after the gathering");
}
hourSlider.addEventListener("input", () => { tmin = Number(hourSlider.value); renderFence(); });
let timer2 = null;
el("play-fence").addEventListener("click", () => {
  if (timer2) { clearInterval(timer2); timer2 = null; el("play-fence").textContent = "▶ Play"; return; }
  if (tmin >= G.trail_end_min) { tmin = 0; hourSlider.value = "0"; }
  el("play-fence").textContent = "❚❚ Pause";
  timer2 = setInterval(() => {
    if (tmin >= G.trail_end_min) { clearInterval(timer2); timer2 = null; el("play-fence").textContent = "▶ Play"; return; }
    tmin = Math.min(G.trail_end_min, tmin + 30); hourSlider.value = String(tmin); renderFence();
  }, 250);
});

// ---------------------------------------------------------------- tabs
function show(which) {
  const phone = which === "phone";
  el("view-phone").hidden = !phone;
  el("view-fence").hidden = phone;
  el("tab-phone").setAttribute("aria-selected", String(phone));
  el("tab-fence").setAttribute("aria-selected", String(!phone));
}
el("tab-phone").addEventListener("click", () => show("phone"));
el("tab-fence").addEventListener("click", () => show("fence"));

noteVariant();
renderPhone();
renderFence();
document.body.dataset.ready = "1";
})();
</script>
</body>
</html>
"""
