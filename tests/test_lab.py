"""`make lab`: JupyterLab starts headless on 127.0.0.1 in notebooks/, with the project's kernel.

The server is started the way the Makefile starts it (``python -m jupyter lab`` from this
interpreter, root directory ``notebooks/``), on a free port with a random token, and asked over
its REST API for the notebooks and the kernel specs; then it is stopped by its PID.
"""
from __future__ import annotations

import importlib.util
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = ROOT / "notebooks"
READY_SECONDS = 60  # a slow, busy machine can take this long to start the server

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("jupyterlab") is None or importlib.util.find_spec("jupyter_server") is None,
    reason="jupyterlab is not installed (the 'lab' extra: make lab, or pip install -c constraints.txt -e '.[lab]')")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, token: str) -> tuple[int, object]:
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status, json.loads(response.read().decode())


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def test_makefile_has_a_lab_target_on_loopback():
    text = (ROOT / "Makefile").read_text()
    assert "\nlab:" in text and "jupyter lab" in text and "--ip 127.0.0.1" in text
    assert "root_dir=notebooks" in text


@pytest.mark.slow
def test_jupyter_lab_serves_the_notebooks_with_the_project_kernel(tmp_path):
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ)
    env.update({"JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))})
    log = (tmp_path / "lab.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip", "127.0.0.1", "--port", str(port),
         "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={NOTEBOOKS_DIR}",
         "--MappingKernelManager.default_kernel_name=python3"]
        + (["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),  # as make lab does
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_SECONDS
        contents = None
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"jupyter lab exited with {proc.returncode}:\n{(tmp_path / 'lab.log').read_text()}"
            try:
                status, contents = _get(f"{base}/api/contents/", token)
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
        assert contents is not None, f"no answer within {READY_SECONDS} s:\n{(tmp_path / 'lab.log').read_text()}"
        assert status == 200
        listed = {item["name"] for item in contents["content"] if item["type"] == "notebook"}
        assert listed == {p.name for p in NOTEBOOKS_DIR.glob("*.ipynb")}

        status, specs = _get(f"{base}/api/kernelspecs", token)
        assert status == 200
        assert specs["default"] == "python3" and "python3" in specs["kernelspecs"]
        argv = specs["kernelspecs"]["python3"]["spec"]["argv"]
        # the project's kernel: this environment's interpreter (installed with --sys-prefix, or the native one)
        assert argv[0] in ("python", sys.executable) or Path(argv[0]).resolve() == Path(sys.executable).resolve()

        with pytest.raises(urllib.error.HTTPError) as refused:  # the token is required
            _get(f"{base}/api/contents/", "wrong-token")
        assert refused.value.code == 403
    finally:
        _stop(proc)
        log.close()
    assert proc.returncode is not None
