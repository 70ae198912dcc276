"""Shared helpers of the benchmark scripts: machine info, child processes, results."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def machine() -> dict:
    import psutil

    from sim.generate.engine import package_versions

    return {
        "cpu_count": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "processor": platform.processor() or platform.machine(), "versions": package_versions(),
        "when_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def run_child(code: str, env: dict | None = None, timeout: float = 1800) -> dict:
    """Run Python ``code`` in a fresh process; it must print one JSON line last.

    The child's peak RSS (MB) is added as ``peak_rss_mb``.
    """
    wrapper = (
        "import json, resource, sys\n"
        + code
        + "\nres['peak_rss_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "print(json.dumps(res))\n"
    )
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True, env=e, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{p.stderr[-4000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def save(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    os.replace(tmp, path)
    return path
