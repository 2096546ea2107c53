"""Every notebook in notebooks/ is stored clean and runs end to end at a small size.

Notebooks are executed with papermill from the notebooks/ folder (as a user would open them),
with the small parameters below injected into their ``parameters`` cell. Only the parameters
a notebook declares in that cell are passed.
"""
from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))

#: Small values for the usual parameter names; a notebook gets those it declares.
SMALL_PARAMETERS = {
    "seed": 1,
    "horizon": "1h",
    "clients": 5,
    "replications": 2,
    "jobs": 1,
}

#: Per-notebook overrides of SMALL_PARAMETERS (file name -> values).
NOTEBOOK_PARAMETERS = {
    "02_policy_sweep.ipynb": {"horizon": "30m", "replications": 3},
    # decades up to UINT_MAX at 1 msg/s stay the point (the stream kept as counts, forced): a smaller
    # fleet and scaled-down case studies
    "03_memory_to_uint_max.ipynb": {"horizon": "uint_max", "clients": 3, "sweep_clients": 3, "stream": "counts",
                                    "case_a_connected": 10, "case_b_clients": 10, "case_b_horizon": "15m"},
    "04_policy_advisor.ipynb": {"refine": 1},
}


#: Notebooks whose last code cell writes the answer (Markdown computed from the numbers).
CLOSING_ANSWER = {"03_memory_to_uint_max.ipynb", "04_policy_advisor.ipynb", "05_real_broker.ipynb"}


def _read(path: Path):
    return nbformat.read(path, as_version=4)


def _parameters_cell(nb):
    for cell in nb.cells:
        if cell.cell_type == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            return cell
    return None


def _declared_names(cell) -> set[str]:
    names = set()
    for node in ast.parse(cell.source).body:
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, ast.AnnAssign) else []
        for target in targets:
            if isinstance(target, ast.Name):
                names.add(target.id)
    return names


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks found in {NOTEBOOKS_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_clean(path):
    nb = _read(path)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        assert cell.get("outputs") == [], f"{path.name}: code cell {i} has stored outputs"
        assert cell.get("execution_count") is None, f"{path.name}: code cell {i} has an execution count"
    cell = _parameters_cell(nb)
    assert cell is not None, f"{path.name}: no code cell tagged 'parameters'"
    assert _declared_names(cell), f"{path.name}: the parameters cell assigns no variables"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_at_small_size(path, tmp_path, monkeypatch):
    papermill = pytest.importorskip("papermill")
    # The kernel must import this checkout's `sim` even when the package is not installed.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("MPLBACKEND", "Agg")

    declared = _declared_names(_parameters_cell(_read(path)))
    small = {**SMALL_PARAMETERS, **NOTEBOOK_PARAMETERS.get(path.name, {})}
    parameters = {k: v for k, v in small.items() if k in declared}
    out = tmp_path / path.name
    papermill.execute_notebook(
        str(path), str(out), parameters=parameters, cwd=str(NOTEBOOKS_DIR),
        kernel_name="python3", progress_bar=False, execution_timeout=600,
    )

    executed = _read(out)
    errors = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors, errors
    printed = "".join("".join(o.get("text", "")) for c in executed.cells if c.cell_type == "code"
                      for o in c.get("outputs", []) if o.get("output_type") == "stream")
    for line in printed.splitlines():  # the kernel imported this checkout's sim, not another copy
        if line.startswith("sim from "):
            assert Path(line.removeprefix("sim from ")).resolve().is_relative_to(ROOT), line
    if path.name in CLOSING_ANSWER:
        # the closing answer is text computed in the last code cell (Markdown of f-strings)
        last = [c for c in executed.cells if c.cell_type == "code"][-1]
        answer = "".join("".join(o["data"]["text/markdown"]) for o in last.get("outputs", [])
                         if "text/markdown" in o.get("data", {}))
        assert answer.strip() and any(ch.isdigit() for ch in answer), f"{path.name}: no computed closing answer"
    if path.name == "01_quickstart.ipynb":
        images = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", [])
                  if "image/png" in o.get("data", {})]
        # loss by cause, memory over time, loss by cause per policy, policy trade-off
        assert len(images) >= 4, f"expected 4 figures, got {len(images)}"
