#!/usr/bin/env python3
"""Check the classroom page in a real browser: headless Chromium driven through the
Chrome DevTools Protocol over ``--remote-debugging-pipe`` (standard library only: no
CDP client, no websocket, no port).

    python tests/browser/check_classroom.py                 # build a small page, check it
    python tests/browser/check_classroom.py --page lesson.html --screenshot build/classroom.png

Without ``--page`` it builds one with ``reidsim classroom`` (the command a teacher
types, at its small default scale, ``--seed 1``) into a temporary folder.  Then:

1. opens the file with the network domain recording every request, the console and
   every uncaught exception;
2. moves the day slider with the keyboard (Home, then ArrowRight) from day 1 to the last
   day, reading the candidate count (``#count[data-count]``) from the DOM each day;
3. checks: one step per day; the count never increases; it ends at 1 when the page
   says the story ends with a name (``body[data-story-named="true"]``); the count shown
   each day is the one embedded in the page's data;
4. switches through every protection of the toggle (each day again, no error), opens
   the gathering view and plays its time slider to the end;
5. checks that the page made no network request other than the file itself and logged
   no console error or exception; saves screenshots (``--screenshot``, default
   build/classroom.png, the CI artefact, and ``*_fence.png`` beside it).

Exit status 0 when every check passes, 1 otherwise (each failure printed).
"""
from __future__ import annotations

import argparse
import base64
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
VIEWPORT = (1200, 900)
#: runs in the child: make the pipe ends fds 3 (Chromium reads) and 4 (it writes), exec it
_TRAMPOLINE = ("import os, sys\n"
               "r, w = int(sys.argv[1]), int(sys.argv[2])\n"
               "os.dup2(r, 3); os.dup2(w, 4); os.close(r); os.close(w)\n"
               "os.execv(sys.argv[3], sys.argv[3:])\n")


def find_browser(explicit: str | None = None) -> str | None:
    """The Chromium executable (``--chromium``, $CHROMIUM, or the first on PATH)."""
    for name in (explicit, os.environ.get("CHROMIUM"), *BROWSERS):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


class CDP:
    """A minimal Chrome DevTools Protocol client over ``--remote-debugging-pipe``:
    Chromium reads NUL-terminated JSON messages on its fd 3 and writes them on fd 4."""

    def __init__(self, browser: str, timeout: float = 60.0):
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="reidsim-chromium-")
        to_child_r, self._w = os.pipe()
        self._r, from_child_w = os.pipe()
        # the child's ends, moved to fds >= 10, become Chromium's fds 3 and 4 in a small
        # Python trampoline that then execs the browser (no preexec_fn, nothing clobbered)
        cr = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10)
        cw = fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
        os.close(to_child_r)
        os.close(from_child_w)
        args = ["--headless", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
                f"--user-data-dir={self.profile}", f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}", "about:blank"]
        self.log = Path(self.profile) / "chromium-stderr.log"
        with self.log.open("wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-c", _TRAMPOLINE, str(cr), str(cw), browser, *args],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                         pass_fds=(cr, cw))
        os.close(cr)
        os.close(cw)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []

    # -- transport
    def _send(self, msg: dict) -> None:
        data = json.dumps(msg).encode() + b"\0"
        while data:
            n = os.write(self._w, data)
            data = data[n:]

    def _recv(self, deadline: float) -> dict:
        import select

        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from Chromium")
            ready, _, _ = select.select([self._r], [], [], left)
            if ready:
                chunk = os.read(self._r, 1 << 20)
                if not chunk:
                    tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
                    raise RuntimeError(f"Chromium closed the DevTools pipe (did it crash?); its stderr:\n{tail}")
                self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method: str, session: str | None = None, **params) -> dict:
        self._id += 1
        mid = self._id
        msg = {"id": mid, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        self._send(msg)
        deadline = time.monotonic() + self.timeout
        while True:
            m = self._recv(deadline)
            if m.get("id") == mid:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            if "method" in m:
                self.events.append(m)

    def wait_event(self, method: str, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        for e in self.events:
            if e["method"] == method:
                return e
        while True:
            m = self._recv(deadline)
            if "method" in m:
                self.events.append(m)
                if m["method"] == method:
                    return m

    def close(self) -> None:
        try:
            self._send({"id": 0, "method": "Browser.close", "params": {}})
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._r, self._w):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)


class Page:
    """One tab, attached with a flat session."""

    def __init__(self, cdp: CDP):
        self.cdp = cdp
        target = cdp.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = cdp.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Network", "Log"):
            self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=VIEWPORT[0], height=VIEWPORT[1],
                  deviceScaleFactor=1, mobile=False)

    def call(self, method, **params):
        return self.cdp.call(method, self.session, **params)

    def js(self, expression: str):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"script failed: {expression!r}: {r['exceptionDetails'].get('text')}")
        return r["result"].get("value")

    def key(self, key: str, code: int) -> None:
        for kind in ("rawKeyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", type=kind, key=key, code=key, windowsVirtualKeyCode=code,
                      nativeVirtualKeyCode=code)

    def screenshot(self, path: Path, full: bool = True) -> None:
        params = {"format": "png"}
        if full:
            h = int(self.js("Math.ceil(document.documentElement.scrollHeight)"))
            params.update(captureBeyondViewport=True,
                          clip={"x": 0, "y": 0, "width": VIEWPORT[0], "height": max(h, VIEWPORT[1]), "scale": 1})
        data = self.call("Page.captureScreenshot", **params)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))


def build_page(out: Path, seed: int = 1) -> None:
    """The page as a teacher makes it: ``reidsim classroom`` at its default scale."""
    cmd = [sys.executable, "-m", "sim.cli", "classroom", "--out", str(out), "--seed", str(seed), "--overwrite"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"reidsim classroom failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    print(r.stdout.strip())


def check(page_path: Path, browser: str, screenshot: Path, *, verbose: bool = True) -> list[str]:
    """Run every check on ``page_path``; returns the failures (empty = pass)."""
    problems: list[str] = []
    url = page_path.resolve().as_uri()
    cdp = CDP(browser)
    try:
        page = Page(cdp)
        page.call("Page.navigate", url=url)
        cdp.wait_event("Page.loadEventFired")
        for _ in range(200):
            if page.js("document.body && document.body.dataset.ready === '1'"):
                break
            time.sleep(0.05)
        else:
            problems.append("the page never finished drawing (body[data-ready] not set)")
            return problems
        data = page.js("JSON.parse(document.getElementById('lesson-data').textContent)")
        n_days = int(data["scenario"]["days"])
        story_named = page.js("document.body.dataset.storyNamed") == "true"

        def walk(variant: str) -> list[tuple[int, int]]:
            page.js(f"document.querySelector('input[name=variant][value={variant}]').click()")
            page.js("document.getElementById('day').focus()")
            page.key("Home", 36)
            seen = []
            for step in range(n_days):
                if step:
                    page.key("ArrowRight", 39)
                day = int(page.js("Number(document.getElementById('day').value)"))
                count = int(page.js("Number(document.getElementById('count').dataset.count)"))
                seen.append((day, count))
            return seen

        seen = walk("none")
        days = [d for d, _ in seen]
        counts = [c for _, c in seen]
        if verbose:
            print("day:   " + " ".join(f"{d:>5}" for d in days))
            print("count: " + " ".join(f"{c:>5}" for c in counts))
        if days != list(range(1, n_days + 1)):
            problems.append(f"the slider did not step through days 1..{n_days} one at a time: {days}")
        if any(b > a for a, b in zip(counts, counts[1:])):
            problems.append(f"the candidate count increases somewhere: {counts}")
        if story_named and counts[-1] != 1:
            problems.append(f"the story says the phone is named, but the last count is {counts[-1]}")
        embedded = [int(r["count"]) for r in data["variants"]["none"]["days"]]
        if counts != embedded:
            problems.append(f"the counts shown {counts} differ from the page's data {embedded}")
        for v in data["variants"]:
            if v != "none":
                shown = [c for _, c in walk(v)]
                want = [int(r["count"]) for r in data["variants"][v]["days"]]
                if shown != want:
                    problems.append(f"protection {v!r}: counts shown {shown} differ from its data {want}")
        # the story's screenshot: no protection, at the day the phone is named (or the last)
        walk("none")
        named_day = data["device"].get("named_day") or n_days
        page.js(f"(() => {{ const s = document.getElementById('day'); s.value = '{named_day}';"
                "s.dispatchEvent(new Event('input', {bubbles: true})); })()")
        page.screenshot(screenshot)
        # the gathering: open its tab, play the time slider to the end
        page.js("document.getElementById('tab-fence').click()")
        if page.js("document.getElementById('view-fence').hidden"):
            problems.append("the gathering tab did not open")
        page.js("document.getElementById('hour').focus()")
        page.key("End", 35)
        end = page.js("Number(document.getElementById('hour').value) === Number(document.getElementById('hour').max)")
        if not end:
            problems.append("the gathering's time slider did not reach its end")
        homes = int(page.js("document.querySelectorAll('#map-fence g.marker.home').length"))
        if verbose:
            print(f"gathering: {homes} homes drawn for {len(data['gathering']['attendees'])} attendees on the map")
        page.screenshot(screenshot.with_name(screenshot.stem + "_fence.png"))
        page.js("document.getElementById('tab-phone').click()")
        time.sleep(0.2)
        page.js("1")  # drain pending events
        # network and console
        requests = [e["params"]["request"]["url"] for e in cdp.events if e["method"] == "Network.requestWillBeSent"]
        other = [u for u in requests if u != url]
        if other:
            problems.append(f"the page made network requests besides the file itself: {other[:10]}")
        if url not in requests:
            problems.append(f"the network log did not see the page itself ({url}); is the recording working?")
        errors = []
        for e in cdp.events:
            m, p = e["method"], e.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                errors.append("console." + p["type"] + ": " + " ".join(str(a.get("value", a.get("description")))
                                                                     for a in p.get("args", [])))
            elif m == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                errors.append("exception: " + str(d.get("exception", {}).get("description") or d.get("text")))
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                errors.append("log: " + p["entry"].get("text", ""))
        if errors:
            problems.append("console errors: " + " | ".join(errors[:10]))
        if verbose:
            print(f"requests: {requests}; console errors: {len(errors)}")
    finally:
        cdp.close()
    return problems


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--page", help="the page to check (default: build one with `reidsim classroom`)")
    ap.add_argument("--screenshot", default=str(ROOT / "build" / "classroom.png"), help="PNG to save")
    ap.add_argument("--chromium", help="browser executable (default: chromium on PATH)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the page built without --page")
    a = ap.parse_args(argv)
    browser = find_browser(a.chromium)
    if browser is None:
        print("check_classroom: no Chromium found (install it: apt-get install -y chromium)", file=sys.stderr)
        return 1
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="reidsim-classroom-") as tmp:
        page = Path(a.page) if a.page else Path(tmp) / "lesson.html"
        if not a.page:
            build_page(page, a.seed)
        t1 = time.perf_counter()
        size = page.stat().st_size
        problems = check(page, browser, Path(a.screenshot))
    t2 = time.perf_counter()
    print(f"page {size / 1024:.0f} kB; built in {t1 - t0:.1f} s, checked in {t2 - t1:.1f} s; screenshot {a.screenshot}")
    if problems:
        print("FAILED:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    print("classroom page OK in", Path(browser).name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
