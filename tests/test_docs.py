"""The docs as tests: every Python block in README.md and docs/*.md runs, every YAML example
loads as a scenario, and the README's command lines run as written.

Python blocks of one document run in order in one namespace, in a scratch folder holding a
copy of the project's ``data/`` (so relative paths work as in the docs and nothing in the
checkout is overwritten). A top-level ``x == y`` line in a block is checked as an assertion:
the API contract states facts that way.
"""
from __future__ import annotations

import ast
import os
import re
import shlex
import shutil
from pathlib import Path

import pytest
import yaml

import sim

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "data" / "traces" / "README.md"]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def blocks(path: Path, lang: str) -> list[str]:
    return [body for kind, body in FENCE.findall(path.read_text()) if kind == lang]


#: The horizon of the scratch copy of data/scenarios/transport_example.yaml (shipped: 6 h). The
#: docs' runs, sweeps and advice on that example (README Python blocks and command lines, the
#: API contract) then run at a small size, as the demo line does (--horizon 1h): what they
#: prove (the code and the command lines run as written, their files are written, the stated
#: facts hold) does not depend on the horizon, and none of the facts concerns this example.
SMALL_HORIZON = "1h"


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    shutil.copytree(ROOT / "data", tmp_path / "data", ignore=shutil.ignore_patterns("results"))
    (tmp_path / "data" / "results").mkdir()
    example = tmp_path / "data" / "scenarios" / "transport_example.yaml"
    text, n = re.subn(r"^horizon: .*$", f"horizon: {SMALL_HORIZON}", example.read_text(), count=1, flags=re.M)
    assert n == 1, f"{example.name}: no top-level 'horizon:' line to shorten"
    example.write_text(text)
    shipped = sim.load_scenario(ROOT / "data" / "scenarios" / "transport_example.yaml")
    assert sim.load_scenario(example) == shipped.updated({"horizon": SMALL_HORIZON})  # the horizon alone differs
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _with_asserts(source: str) -> ast.Module:
    """The block's code, with top-level ``a == b`` expressions turned into assertions."""
    tree = ast.parse(source)
    for i, node in enumerate(tree.body):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Compare) and \
                all(isinstance(op, ast.Eq) for op in node.value.ops):
            tree.body[i] = ast.copy_location(ast.Assert(test=node.value, msg=None), node)
    return ast.fix_missing_locations(tree)


PY_DOCS = [p for p in DOCS if blocks(p, "python")]


@pytest.mark.parametrize("path", PY_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_run(path, scratch):
    namespace: dict = {"__name__": "__doc_example__"}
    for i, source in enumerate(blocks(path, "python")):
        try:
            exec(compile(_with_asserts(source), f"{path.name}[python block {i + 1}]", "exec"), namespace)
        except Exception as exc:  # name the block in the failure
            raise AssertionError(f"{path.relative_to(ROOT)}, Python block {i + 1} fails: {exc!r}\n{source}") from exc


YAML_BLOCKS = [(p, i, b) for p in DOCS for i, b in enumerate(blocks(p, "yaml"))]


@pytest.mark.parametrize("path, index, source", YAML_BLOCKS,
                         ids=[f"{p.relative_to(ROOT)}[{i + 1}]" for p, i, _ in YAML_BLOCKS])
def test_yaml_examples_load_and_run(path, index, source, scratch):
    scn = sim.load_scenario(yaml.safe_load(source))
    short = scn.updated({"horizon": min(scn.horizon, 600)})
    sim.run(short, seed=1, record_events=False)


def test_readme_scenario_is_the_shipped_transport_example():
    (readme_yaml,) = blocks(ROOT / "README.md", "yaml")
    shown = sim.load_scenario(yaml.safe_load(readme_yaml))
    shipped = sim.load_scenario(ROOT / "data" / "scenarios" / "transport_example.yaml")
    assert shown.updated({"description": shipped.description}) == shipped


def _readme_commands() -> list[list[str]]:
    text = "\n".join(b for b in blocks(ROOT / "README.md", "") if "mqtt-sim " in b)
    joined = re.sub(r"\\\n\s*", " ", text)
    return [shlex.split(line, comments=True)[1:] for line in joined.splitlines() if line.startswith("mqtt-sim ")]


def test_readme_command_lines_run(scratch, capsys):
    from sim.cli import main

    commands = _readme_commands()
    assert [c[0] for c in commands] == ["run", "sweep", "plot", "demo", "sweep", "advise"]
    for argv in commands:
        if argv[0] == "demo":
            argv = argv + ["--quiet", "--replications", "2", "--horizon", "1h"]  # at a small size: the full demo is `make demo`
        assert main(argv) == 0, argv
    for f in ("run1/summary.csv", "runs.csv", "policies.png", "policy_comparison.csv", "policy_comparison.png",
              "expiry_headline.png",
              "expiry_policy.parquet", "advice_frontier.parquet", "advice.png"):
        assert (scratch / "data" / "results" / f).exists(), f


def test_readme_error_line_is_what_the_cli_prints(scratch, capsys):
    from sim.cli import main

    (line,) = [b.strip() for b in blocks(ROOT / "README.md", "") if b.startswith("error:")]
    d = yaml.safe_load((ROOT / "data" / "scenarios" / "transport_example.yaml").read_text())
    d["mqttConsumer"]["session expiry interval"] = 4294967296
    bad = scratch / "bad.yaml"
    bad.write_text(yaml.safe_dump(d))
    assert main(["run", str(bad)]) == 2
    assert capsys.readouterr().err.strip() == line


def test_every_doc_block_was_seen():
    """Guard against the fence pattern silently matching nothing."""
    assert len(PY_DOCS) >= 3 and len(YAML_BLOCKS) >= 2 and len(_readme_commands()) == 6
    assert os.path.basename(PY_DOCS[0]) == "README.md"
