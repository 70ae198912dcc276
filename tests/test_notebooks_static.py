"""Fast static checks of the notebooks in notebooks/ (no kernel, no execution).

CI executes them with ``pytest --nbmake notebooks/``; these checks catch, in a second,
what would make that slow, flaky or unsafe: a missing or full-scale ``parameters`` cell,
committed outputs or images, network access, file writes, unfixed seeds, syntax errors.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
EXPECTED = (
    "01_quickstart.ipynb",
    "02_unicity_de_montjoye.ipynb",
    "03_anonymity_sets_golle_partridge.ipynb",
    "04_defenses_tradeoff.ipynb",
    "05_classroom_demo.ipynb",
)
NOTEBOOKS = sorted(NB_DIR.glob("*.ipynb"))

#: upper bounds (inclusive) of a "small-scale" parameters cell
SMALL_LIMITS = {"N_DEVICES": 10_000, "RESIDENTS": 100_000, "DAYS": 28}
#: a committed notebook larger than this carries outputs or blobs
MAX_BYTES = 100_000
URL = re.compile(r"\b(?:https?|ftp)://", re.IGNORECASE)
NETWORK_CALLS = re.compile(
    r"\b(?:urllib|requests|httpx|urlopen|wget|curl|socket|load_example|read_remote|fsspec)\b"
    r"|pd\.read_\w+\(\s*['\"](?:https?|s3|gs)://"
)
WRITE_CALLS = re.compile(r"\.(?:savefig|to_parquet|to_csv|to_json|to_file|write_text|write_bytes)\(|\bopen\(")


def _code(cell) -> str:
    """Cell source with IPython magics and shell escapes commented out (for ast)."""
    return "\n".join("# " + ln if ln.lstrip().startswith(("%", "!")) else ln
                     for ln in cell.source.splitlines())


def _params_cells(nb):
    return [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]


def _assigned(src: str) -> dict:
    """Top-level ``NAME = <literal>`` assignments of a cell."""
    out = {}
    for node in ast.parse(src).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                out[node.targets[0].id] = None
    return out


@pytest.fixture(params=NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def nb_path(request):
    return request.param


def _read(path):
    return nbformat.read(path, as_version=4)


def test_expected_notebooks_present():
    names = {p.name for p in NOTEBOOKS}
    missing = [n for n in EXPECTED if n not in names]
    assert not missing, f"missing notebooks: {missing}"
    assert (NB_DIR / "README.md").is_file()


def test_parses_and_validates(nb_path):
    nb = _read(nb_path)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    ids = [c.get("id") for c in nb.cells]
    assert len(set(ids)) == len(ids), "duplicate cell ids"


def test_first_cell_states_purpose_and_runtime(nb_path):
    first = _read(nb_path).cells[0]
    assert first.cell_type == "markdown"
    assert first.source.lstrip().startswith("# "), "first cell should open with a title"
    assert re.search(r"runtime|how long it takes", first.source, re.IGNORECASE), \
        "first cell should say how long the notebook takes"


def test_one_small_scale_parameters_cell(nb_path):
    nb = _read(nb_path)
    cells = _params_cells(nb)
    assert len(cells) == 1, f"expected one cell tagged 'parameters', found {len(cells)}"
    cell = cells[0]
    assert cell.cell_type == "code"
    # it comes before any other code cell, so papermill-style injection overrides everything
    first_code = next(c for c in nb.cells if c.cell_type == "code")
    assert first_code is cell, "the parameters cell must be the first code cell"
    values = _assigned(cell.source)
    for name in ("N_DEVICES", "DAYS", "SEED"):
        assert name in values, f"parameters cell does not set {name}"
    assert isinstance(values["SEED"], int) and not isinstance(values["SEED"], bool), "SEED must be a fixed int"
    for name, limit in SMALL_LIMITS.items():
        if name in values:
            assert isinstance(values[name], (int, float)) and 0 < values[name] <= limit, \
                f"{name} = {values[name]!r} is not a small-scale default (<= {limit})"
    assert re.search(r"full scale", cell.source, re.IGNORECASE), \
        "parameters cell should say which values to use at full scale"


def test_seed_is_used(nb_path):
    src = "\n".join(c.source for c in _read(nb_path).cells if c.cell_type == "code")
    assert re.search(r"seed\s*=\s*SEED", src), "simulate(...) should receive seed=SEED"
    assert "np.random.seed" not in src and "default_rng()" not in src, "unseeded randomness"


def test_no_outputs_or_blobs(nb_path):
    nb = _read(nb_path)
    assert nb_path.stat().st_size <= MAX_BYTES, f"{nb_path.name} is {nb_path.stat().st_size} bytes"
    for c in nb.cells:
        assert not c.get("attachments"), "cell attachments are not allowed"
        if c.cell_type == "code":
            assert c.outputs == [], "clear outputs before committing"
            assert c.execution_count is None, "clear execution counts before committing"
    assert "image/png" not in nb_path.read_text(encoding="utf-8")


def test_no_network_and_no_file_writes(nb_path):
    for c in _read(nb_path).cells:
        if c.cell_type != "code":
            continue
        assert not URL.search(c.source), f"URL in code cell:\n{c.source}"
        assert not NETWORK_CALLS.search(c.source), f"network access in code cell:\n{c.source}"
        assert not WRITE_CALLS.search(c.source), f"file write in code cell:\n{c.source}"


def test_code_cells_compile(nb_path):
    n = 0
    for i, c in enumerate(_read(nb_path).cells):
        if c.cell_type == "code":
            code = compile(_code(c), f"{nb_path.name}[cell {i}]", "exec")  # SyntaxError fails the test
            assert code.co_filename.startswith(nb_path.name)
            n += 1
    assert n > 0, f"{nb_path.name} has no code cell"


# --------------------------------------------------------- the checks themselves can fail
def test_checks_reject_bad_notebooks(tmp_path):
    """A notebook with outputs, a URL, a large-scale parameters cell and no seed fails."""
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

    p = new_code_cell("N_DEVICES = 1_000_000\nDAYS = 90\nSEED = None")
    p.metadata["tags"] = ["parameters"]
    bad = new_code_cell("import pandas as pd\ndf = pd.read_csv('https://example.org/x.csv')\ndf.to_csv('x.csv')")
    bad.outputs = [new_output("stream", name="stdout", text="hi")]
    nb = new_notebook(cells=[new_markdown_cell("no title"), p, bad])
    vals = _assigned(p.source)
    assert vals["N_DEVICES"] > SMALL_LIMITS["N_DEVICES"]
    assert not isinstance(vals["SEED"], int)
    assert URL.search(bad.source) and NETWORK_CALLS.search(bad.source) and WRITE_CALLS.search(bad.source)
    assert bad.outputs
    assert not nb.cells[0].source.startswith("# ")
    # magics are neutralised before compiling
    assert _code(new_code_cell("%matplotlib inline\nx = 1")).startswith("# %matplotlib")
