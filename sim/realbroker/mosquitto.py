"""Start and stop a real Mosquitto broker on 127.0.0.1 for conformance tests and calibration.

Only loopback is used. The broker runs with a temporary configuration (free port, anonymous
access, no persistence unless ``settings`` has ``persistence: true``, the limits a scenario
needs), is waited for until it accepts TCP connections, and is stopped by its PID. A broker
can be stopped (SIGTERM: graceful, its database saved; SIGKILL: a crash) and started again on
the same port, configuration and persistence directory (:meth:`Mosquitto.kill`,
:meth:`Mosquitto.relaunch`).
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

CANDIDATES = ("mosquitto", "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


def find_mosquitto() -> str | None:
    """Path of the mosquitto executable, or None when it is not installed."""
    for name in CANDIDATES:
        found = shutil.which(name) or (name if os.path.isfile(name) and os.access(name, os.X_OK) else None)
        if found:
            return found
    return None


def mosquitto_version(executable: str | None) -> tuple[int, ...] | None:
    """The version of a mosquitto executable (from ``mosquitto -h``), or None."""
    import re

    if executable is None:
        return None
    out = subprocess.run([executable, "-h"], capture_output=True, text=True, timeout=10)
    m = re.search(r"mosquitto version (\d+)\.(\d+)\.(\d+)", out.stdout + out.stderr)
    return tuple(int(x) for x in m.groups()) if m else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mosquitto:
    """A mosquitto process on 127.0.0.1; use as a context manager.

    ``settings`` are extra ``mosquitto.conf`` lines as a mapping, e.g.
    ``{"max_queued_messages": 3, "queue_qos0_messages": "true"}``.
    """

    def __init__(self, settings: dict | None = None, executable: str | None = None, sys_interval: int = 1):
        self.executable = executable or find_mosquitto()
        if self.executable is None:
            raise FileNotFoundError("mosquitto is not installed (Debian: apt-get install -y mosquitto)")
        self.settings = dict(settings or {})
        self.sys_interval = sys_interval
        self.host, self.port = "127.0.0.1", 0
        self.proc: subprocess.Popen | None = None
        self._dir: tempfile.TemporaryDirectory | None = None
        self.log_path: Path | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def persistent(self) -> bool:
        """``persistence true`` is among the settings (the database is kept in the temporary directory)."""
        return str(self.settings.get("persistence", "false")).lower() == "true"

    def config_text(self) -> str:
        settings = dict(self.settings)
        persistence = settings.pop("persistence", "false")
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true", f"persistence {persistence}",
                 f"sys_interval {self.sys_interval}", "log_type all", "log_timestamp true",
                 "log_timestamp_format %Y-%m-%dT%H:%M:%S", f"log_dest file {self.log_path}"]
        if self.persistent:
            lines.append(f"persistence_location {self._dir.name}/")
        lines += [f"{k} {v}" for k, v in settings.items()]
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 10.0, attempts: int = 3) -> "Mosquitto":
        """Starts the broker on a free loopback port. The port is free when picked but another
        process (or another broker started at the same moment) can take it before mosquitto
        binds it: a broker that exits because its address is in use is started again on another
        port, up to ``attempts`` times."""
        self._dir = tempfile.TemporaryDirectory(prefix="mosquitto-")
        self.log_path = Path(self._dir.name) / "mosquitto.log"
        os.chmod(self._dir.name, 0o777)  # run as root, mosquitto drops to its own user to write the log
        conf = Path(self._dir.name) / "mosquitto.conf"
        for attempt in range(attempts):
            self.port = free_port()
            conf.write_text(self.config_text())
            try:
                return self._launch(timeout)
            except RuntimeError as exc:
                if attempt == attempts - 1 or "Address already in use" not in str(exc):
                    raise
                self.log_path.unlink(missing_ok=True)  # the next attempt's log starts afresh
        raise AssertionError("unreachable")

    def kill(self, graceful: bool = True, timeout: float = 10.0) -> None:
        """Stop the broker process: SIGTERM (``graceful``: it saves its database when
        persistent) or SIGKILL (a crash: nothing saved since the last autosave); waits for it."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM if graceful else signal.SIGKILL)
        self.proc.wait(timeout=timeout)
        if self.proc.stderr:
            self.proc.stderr.close()

    def relaunch(self, timeout: float = 10.0) -> "Mosquitto":
        """Start the broker again after :meth:`kill`: same port, configuration and persistence directory."""
        if self._dir is None:
            raise RuntimeError("relaunch() needs a broker that was started")
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("the broker is still running: kill() it first")
        return self._launch(timeout)

    def _launch(self, timeout: float) -> "Mosquitto":
        conf = Path(self._dir.name) / "mosquitto.conf"
        self.proc = subprocess.Popen([self.executable, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}: {err.strip()}"
                                   f"{self._log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"mosquitto did not accept connections on {self.host}:{self.port} within {timeout} s")

    def _log_tail(self, lines: int = 5) -> str:
        """The end of the broker's log (where mosquitto reports why it stopped), for error messages."""
        try:
            tail = self.log_path.read_text(errors="replace").strip().splitlines()[-lines:]
        except (OSError, AttributeError):
            return ""
        return ("; log: " + " | ".join(tail)) if tail else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        if self.proc is not None and self.proc.stderr:
            self.proc.stderr.close()

    def log(self) -> str:
        """The broker's log so far (read it before :meth:`close`)."""
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""

    def close(self) -> None:
        self.stop()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> "Mosquitto":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
