"""The package's shape: imports point one way, and the core never needs the real-broker tooling.

Layers (a module imports only from layers below its own):

0. ``protocol``                                  MQTT rules as pure functions
1. ``units``                                     value parsing and errors
2. ``outages``, ``entities``                     outage settings and runtime; broker state objects
3. ``restarts``                                  broker restart settings
4. ``config``                                    the scenario types
5. ``timing``, ``outage_plan``, ``ledger``, ``memory``, ``eventlog``, ``streams``   scheduling and outages at
   run time; measurement
6. ``ramps``, ``kernels``                        broker memory of queues held as ranges, in closed form;
   the counts engine's compiled loops (optional numba)
7. ``groups``, ``network``                       who a message is routed to; bulk booking; network
   outages at run time (windows, who drops, reconnect storms)
8. ``renewal``                                   drawn connection histories a whole life at a time
9. ``broker``                                    packet and timer handlers (restarts included)
10. ``clients``, ``interval``, ``downtime``      SimPy processes (the broker's restarts too); the
    interval engine
11. ``counts``                                   the interval engine over a stream kept as counts
12. ``run``, ``analytic``                        one run and its Result; closed forms
13. ``sweep``                                    experiments
14. ``compare``, ``study``, ``advise``           comparisons; study files; the advisor
15. ``plots``                                    figures
16. ``cli``                                      the command line

``sim.realbroker`` (a real Mosquitto, the paho driver, calibration, log import) sits on top
and is optional: nothing in the core imports it.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SIM = Path(__file__).resolve().parent.parent / "sim"

LAYERS = [
    {"protocol"},
    {"units"},
    {"outages", "entities"},
    {"restarts"},
    {"config"},
    {"timing", "outage_plan", "ledger", "memory", "eventlog", "streams"},
    {"ramps", "kernels"},
    {"groups", "network"},
    {"renewal"},
    {"broker"},
    {"clients", "interval", "downtime"},
    {"counts"},
    {"run", "analytic"},
    {"sweep"},
    {"compare", "study", "advise"},
    {"plots"},
    {"cli"},
]
LAYER_OF = {m: i for i, layer in enumerate(LAYERS) for m in layer}


def _sim_imports(path: Path) -> set[str]:
    """Names of the sim modules a core module imports (relative ``from .x`` imports, and ``sim.x``)."""
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                out.add(node.module.split(".")[0])
            elif node.level == 1:
                out.update(a.name for a in node.names)
            elif node.module and node.module.startswith("sim."):
                out.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            out.update(a.name.split(".")[1] for a in node.names if a.name.startswith("sim."))
    return out


CORE = sorted(p for p in SIM.glob("*.py") if p.name != "__init__.py")


def test_every_core_module_has_a_layer():
    assert {p.stem for p in CORE} == set(LAYER_OF), "add the new module to LAYERS (and to README's layout)"


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.stem)
def test_imports_point_down(path):
    mine = LAYER_OF[path.stem]
    for name in _sim_imports(path):
        assert name != "realbroker", f"sim/{path.name} imports the real-broker tooling"
        if name in LAYER_OF:
            assert LAYER_OF[name] < mine, (
                f"sim/{path.name} (layer {mine}) imports sim.{name} (layer {LAYER_OF[name]}): imports must point down")


def test_importing_the_core_loads_no_real_broker_tooling():
    code = ("import sys, sim, sim.plots, sim.cli, sim.analytic, sim.sweep; "
            "bad = sorted(m for m in sys.modules if m.startswith(('sim.realbroker', 'paho'))); "
            "print(','.join(bad)); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"the core loaded {out.stdout.strip()} {out.stderr[-500:]}"
