"""Package data: broker profiles and example scenarios ship inside the package.

(a) profiles and examples are read with importlib.resources from ``sim/profiles/`` and
    ``sim/examples/``; the examples equal the user-facing copies in ``data/scenarios/``;
(b) the wheel built from this checkout, installed alone into a fresh virtual environment and
    imported from outside the repository, loads a scenario with a named profile, runs it, and
    finds the shipped examples. The build is offline (``--no-build-isolation``: the dev extra
    installs the build-system's setuptools); it skips only when that setuptools is missing,
    and fails instead under CI=true.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
import yaml

import sim
from sim.config import PROFILES_DIR, EXAMPLES_DIR, available_examples, available_profiles, example_path

ROOT = Path(__file__).resolve().parent.parent
SETUPTOOLS_MIN = (77,)  # pyproject.toml [build-system] requires


# =============================================================================== (a) in the package


def test_profiles_and_examples_live_in_the_package():
    assert {"mosquitto", "emqx", "hivemq", "vernemq"} <= set(available_profiles())
    assert (PROFILES_DIR / "mosquitto.yaml").is_file()
    assert not (ROOT / "data" / "profiles").exists(), "profiles moved to sim/profiles/"
    assert {"transport_example", "scripted"} <= set(available_examples())
    assert (EXAMPLES_DIR / "transport_example.yaml").is_file()


def test_the_shipped_examples_equal_the_user_facing_copies():
    """sim/examples/ (what the CLI runs) and data/scenarios/ (what users open) must not drift.
    data/scenarios/ may hold more (joule_scenario.yaml, with the platform file it points to)."""
    shipped = {p.name: p.read_text() for p in EXAMPLES_DIR.iterdir() if p.name.endswith(".yaml")}
    users = {p.name: p.read_text() for p in (ROOT / "data" / "scenarios").glob("*.yaml")}
    assert set(shipped) <= set(users) and len(shipped) >= 4
    for name in shipped:
        assert shipped[name] == users[name], f"sim/examples/{name} differs from data/scenarios/{name}: copy one over the other"


def test_example_path():
    path = example_path("transport_example")
    assert path == example_path("transport_example.yaml")
    assert path.is_file() and path.parent.parent == Path(sim.__file__).parent
    assert sim.load_scenario(path) == sim.load_scenario(ROOT / "data" / "scenarios" / "transport_example.yaml")
    with pytest.raises(sim.ScenarioError) as info:
        example_path("nosuch")
    assert info.value.field == "example" and "transport_example" in str(info.value)


@pytest.mark.parametrize("name", available_examples())
def test_every_shipped_example_loads(name):
    scn = sim.load_scenario(example_path(name))
    assert scn.horizon > 0


# =============================================================================== (b) the wheel alone

SCRIPT = textwrap.dedent("""
    import json, sys
    import sim
    from sim.config import available_examples, available_profiles, example_path
    scn = sim.load_scenario({"name": "wheel", "horizon": "1m", "broker": {"profile": "mosquitto"},
                             "mqttConsumer": {"session expiry interval": 15, "clean start": False, "qos": 1,
                                              "outages": {"trace": [[10, 14]]}},
                             "mqttPublisher": {"qos": 1, "schedule": [5, 11, 12, 20]}})
    res = sim.run(scn, seed=1)
    example = sim.load_scenario(example_path("scripted"))
    print(json.dumps({"file": sim.__file__, "profiles": available_profiles(), "examples": available_examples(),
                      "broker": {k: getattr(scn.broker, k) for k in ("session_overhead_bytes", "message_expiry_check")},
                      "routed": int(res.summary["routed"]), "delivered": int(res.summary["delivered"]),
                      "example": example.name, "sys_path": sys.path}))
""")


def _environment_problem(message: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (CI=true: the environment must be able to build the wheel)")
    pytest.skip(message)


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=120, **kw)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.mark.slow
def test_the_wheel_alone_ships_profiles_and_examples(tmp_path):
    try:
        version = tuple(int(x) for x in metadata.version("setuptools").split(".")[:1])
    except metadata.PackageNotFoundError:
        version = (0,)
    if version < SETUPTOOLS_MIN:
        _environment_problem(f"setuptools >= {SETUPTOOLS_MIN[0]} is not installed beside pytest "
                             "(pip install -e '.[dev]' installs it); the offline build needs it")

    # the packaging inputs only, so that the build leaves no build/ or egg-info in the checkout
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for lic in ROOT.glob("LICEN[CS]E*"):
        shutil.copy2(lic, src / lic.name)
    shutil.copytree(ROOT / "sim", src / "sim", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))

    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "--quiet",
          "-w", wheels, src])
    (wheel,) = wheels.glob("mqtt_session_sim-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for profile in ("mosquitto", "emqx", "hivemq", "vernemq"):
        assert f"sim/profiles/{profile}.yaml" in names
    for example in available_examples():
        assert f"sim/examples/{example}.yaml" in names
    assert not [n for n in names if n.startswith(("data/", "tests/"))]

    # a fresh environment holding the wheel alone; the dependencies (numpy, simpy, ...) are
    # this environment's, appended to sys.path after the new site-packages by a .pth line (the
    # .pth files there, e.g. an editable install's finder, are not run that way)
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "--quiet", wheel])
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    deps = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site / "zz_test_dependencies.pth").write_text("\n".join(deps) + "\n")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env["MPLBACKEND"] = "Agg"
    out = json.loads(_run([python, "-c", SCRIPT], cwd=elsewhere, env=env).stdout)

    assert Path(out["file"]).resolve().is_relative_to(venv.resolve()), out["file"]
    assert not any(Path(p).resolve() == ROOT for p in out["sys_path"] if p)
    assert out["profiles"] == available_profiles() and out["examples"] == available_examples()
    shipped = yaml.safe_load((PROFILES_DIR / "mosquitto.yaml").read_text())["settings"]
    assert out["broker"] == {"session_overhead_bytes": shipped["session overhead bytes"],
                             "message_expiry_check": shipped["message expiry check"]}
    assert out["routed"] == 4 and 0 < out["delivered"] <= 4
    assert out["example"] == "scripted"
