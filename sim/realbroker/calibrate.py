"""Calibrate a broker profile's memory constants against a real broker.

``python -m sim.realbroker.calibrate mosquitto [--quick] [--write] [--csv PATH] [--workers N]``

For each configuration a fresh Mosquitto (:class:`sim.realbroker.Mosquitto`, 127.0.0.1,
``max_queued_messages 0`` so nothing is dropped) is started, warmed up, and its heap
(``$SYS/broker/heap/current``; process RSS only when the heap topic is absent) is read as the
baseline. Then the configuration is built with paho-mqtt v5 clients:

* ``sessions`` consumers connect with Clean Start 0 and Session Expiry Interval UINT_MAX,
  subscribe to ``subs_per_session`` topic filters each (QoS 1), and disconnect;
* a publisher (Session Expiry Interval 0) publishes ``messages`` QoS 1 messages of
  ``payload_bytes`` while they are offline, each to a topic matched by ``fanout`` of the
  sessions, then disconnects (its session ends with it);

and the heap is read again once the broker has published a ``$SYS`` update that is certainly
later than the last change. ``heap_bytes - baseline_bytes`` is what the configuration costs.

The four constants of the model (docs/model.md, "Broker memory") are fitted by least squares
to those differences::

    delta = sessions * (S + id) + subs * (U + filter) + entries * Q + messages * (M + topic + payload)

with ``entries = messages * fanout`` and the byte terms (client-id, filter, topic and payload
bytes) entering with coefficient 1 (a second fit frees that coefficient, as a check). An
intercept ``c0`` absorbs per-run effects that do not scale with the configuration
(``$SYS`` retained values growing by a digit, hash-table bucket arrays, the topic-tree nodes
of the few distinct filters). The fitted sessions share their topic filters, as the clients of
one sim consumer block do; filters unique to each subscription cost more (Mosquitto adds
topic-tree nodes per distinct filter level), which the model's formula has no term for: the
full run measures that as a diagnostic and prints it. Every measurement is
written to ``data/calibration/<broker>.csv``; ``--write`` puts the rounded constants into
the shipped profile ``sim/profiles/<broker>.yaml`` (of the checkout the package is imported from).
"""
from __future__ import annotations

import argparse
import csv
import datetime as _dt
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..protocol import UINT_MAX
from .mosquitto import Mosquitto, find_mosquitto, mosquitto_version

ROOT = Path(__file__).resolve().parent.parent
PUBLISHER_ID = "publisher-0"   # the sim's id for the first publisher of a single block
CONSTANTS = ("session_overhead_bytes", "subscription_overhead_bytes", "queue_entry_overhead_bytes",
             "message_overhead_bytes")
YAML_KEYS = {"session_overhead_bytes": "session overhead bytes",
             "subscription_overhead_bytes": "subscription overhead bytes",
             "queue_entry_overhead_bytes": "queue entry overhead bytes",
             "message_overhead_bytes": "message overhead bytes"}
CSV_COLUMNS = ("config", "kind", "repeat", "sessions", "subscriptions", "messages", "payload_bytes", "fanout",
               "entries", "id_bytes", "filter_bytes", "topic_bytes", "heap_bytes", "baseline_bytes",
               "delta_bytes", "source", "disconnected", "stored_messages", "seconds")


# --------------------------------------------------------------------------- paho helpers
def _paho():
    try:
        import paho.mqtt.client as mqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SystemExit("paho-mqtt is needed for calibration (pip install paho-mqtt)") from exc
    return mqtt, Properties, PacketTypes


class _Client:
    """A paho v5 client driven synchronously (its network loop in a background thread)."""

    def __init__(self, host: str, port: int, client_id: str, clean_start: bool, expiry: int,
                 timeout: float = 10.0):
        mqtt, Properties, PacketTypes = _paho()
        self.timeout = timeout
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.c.max_queued_messages_set(0)
        self.c.max_inflight_messages_set(1000)
        self._connected = threading.Event()
        self._acks: set[int] = set()
        self._cv = threading.Condition()
        self.reason = None
        self.c.on_connect = self._on_connect
        self.c.on_subscribe = self._on_ack
        self.c.on_publish = self._on_ack
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = expiry
        self.c.connect(host, port, keepalive=60, clean_start=clean_start, properties=props)
        self.c.loop_start()
        if not self._connected.wait(timeout):
            self.c.loop_stop()
            raise TimeoutError(f"{client_id}: no CONNACK")
        if self.reason is not None and getattr(self.reason, "is_failure", False):
            raise RuntimeError(f"{client_id}: CONNACK {self.reason}")

    def _on_connect(self, _c, _u, _flags, reason, _props):
        self.reason = reason
        self._connected.set()

    def _on_ack(self, _c, _u, mid, *_rest):
        with self._cv:
            self._acks.add(mid)
            self._cv.notify_all()

    def _wait(self, mids: list[int]) -> None:
        deadline = time.monotonic() + self.timeout
        with self._cv:
            while not set(mids) <= self._acks:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(set(mids) - self._acks)} acknowledgements missing")
                self._cv.wait(left)

    def subscribe(self, filters: list[str], qos: int = 1) -> None:
        mids = []
        for i in range(0, len(filters), 50):  # several filters per SUBSCRIBE packet
            rc, mid = self.c.subscribe([(f, qos) for f in filters[i:i + 50]])
            mids.append(mid)
        self._wait(mids)

    def publish(self, topic: str, payload: bytes, count: int, qos: int = 1) -> None:
        mids = [self.c.publish(topic, payload, qos=qos).mid for _ in range(count)]
        self._wait(mids)

    def disconnect(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


class _Monitor:
    """Subscribes to the ``$SYS`` values needed to read a fresh heap figure."""

    TOPICS = ("$SYS/broker/heap/current", "$SYS/broker/uptime", "$SYS/broker/clients/disconnected",
              "$SYS/broker/store/messages/count")

    def __init__(self, broker: Mosquitto):
        mqtt, _, _ = _paho()
        self.values: dict[str, str] = {}
        self.ticks = 0
        self._cv = threading.Condition()
        self._ready = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="calib-monitor", protocol=mqtt.MQTTv5)
        self.c.on_connect = lambda c, u, f, r, p: (c.subscribe([(t, 0) for t in self.TOPICS]), self._ready.set())
        self.c.on_message = self._on_message
        self.c.connect(broker.host, broker.port, keepalive=60)
        self.c.loop_start()
        if not self._ready.wait(10):
            raise TimeoutError("monitor: no CONNACK")

    def _on_message(self, _c, _u, msg):
        with self._cv:
            self.values[msg.topic] = msg.payload.decode()
            if msg.topic == "$SYS/broker/uptime":
                self.ticks += 1
            self._cv.notify_all()

    def wait_ticks(self, n: int, timeout: float = 15.0) -> None:
        with self._cv:
            target = self.ticks + n
            deadline = time.monotonic() + timeout
            while self.ticks < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no $SYS/broker/uptime update")
                self._cv.wait(left)

    def read(self, pid: int, disconnected: int | None = None) -> tuple[int, str, int, int]:
        """A heap figure certainly computed after every change made before the call.

        Two ``$SYS`` updates are awaited (the first may have been computed while the broker was
        still processing the last packets); the heap value is published in the same pass right
        after ``uptime``, and only when it changed, so the latest value received is current.
        With ``disconnected`` given, waits until the broker reports that many offline sessions.
        """
        self.wait_ticks(2)
        for _ in range(10):
            time.sleep(0.15)
            with self._cv:
                got = self.values.get("$SYS/broker/clients/disconnected", "0")
            if disconnected is None or int(got) == disconnected:
                break
            self.wait_ticks(1)
        with self._cv:
            heap = self.values.get("$SYS/broker/heap/current")
            disc = int(self.values.get("$SYS/broker/clients/disconnected", "0"))
            stored = int(self.values.get("$SYS/broker/store/messages/count", "0"))
        if heap is not None:
            return int(heap), "heap", disc, stored
        return _rss_bytes(pid), "rss", disc, stored

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def _rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


# --------------------------------------------------------------------------- configurations
@dataclass(frozen=True)
class Config:
    """One broker state: offline sessions, their subscriptions, messages queued for them."""
    name: str
    kind: str                 # sessions | subscriptions | messages | fanout | mixed
    sessions: int
    subs_per_session: int = 1
    messages: int = 0
    payload_bytes: int = 0
    fanout: int = 0           # sessions whose filter matches the published topic (<= sessions)
    id_len: int = 12          # client-id bytes
    filter_len: int = 12      # bytes of each topic filter
    topic_len: int = 12       # bytes of the published topic
    filters_mode: str = "shared"  # shared: every session has the same filters (as a sim block);
                                  # leaf: unique last level under a shared prefix ("f/<i>-<j>");
                                  # tree: unique levels "f/<i>/<j>/..." (nodes with children tables)

    @property
    def subscriptions(self) -> int:
        return self.sessions * self.subs_per_session

    @property
    def entries(self) -> int:
        return self.messages * self.fanout

    def client_ids(self) -> list[str]:
        return [_pad(f"c{i}-", self.id_len, "x") for i in range(self.sessions)]

    def filters(self, i: int) -> list[str]:
        """Topic filters of session ``i``; the first one of the first ``fanout`` sessions matches
        the publish topic. Same for every session unless ``filters_mode`` says otherwise."""
        out = []
        for j in range(self.subs_per_session):
            if j == 0 and i < self.fanout:
                out.append(self.topic())
            else:
                key = {"shared": f"f/{j}-", "leaf": f"f/{i}-{j}-", "tree": f"f/{i}/{j}/"}[self.filters_mode]
                out.append(_pad(key, self.filter_len, "y"))
        return out

    def topic(self) -> str:
        return _pad("t/", self.topic_len, "z")

    def filter_bytes(self) -> int:
        return sum(len(f.encode()) for i in range(self.sessions) for f in self.filters(i))


def _pad(prefix: str, n: int, ch: str) -> str:
    return prefix + ch * max(0, n - len(prefix))


def build_state(broker: Mosquitto, sessions: list[tuple[str, list[str]]], topic: str = "", payload_bytes: int = 0,
                messages: int = 0, publisher_id: str = PUBLISHER_ID) -> None:
    """Offline sessions ``(client id, topic filters)`` (Clean Start 0, expiry UINT_MAX, QoS 1
    subscriptions, then DISCONNECT), then ``messages`` QoS 1 publishes to ``topic`` by a
    publisher with expiry 0 that disconnects afterwards (so its session is gone)."""
    for cid, filters in sessions:
        c = _Client(broker.host, broker.port, cid, clean_start=False, expiry=UINT_MAX)
        c.subscribe(filters)
        c.disconnect()
    if messages:
        pub = _Client(broker.host, broker.port, publisher_id, clean_start=True, expiry=0)
        pub.publish(topic, b"p" * payload_bytes, messages)
        pub.disconnect()


def build(broker: Mosquitto, cfg: Config, publisher_id: str = PUBLISHER_ID) -> None:
    """Create ``cfg`` on a running broker: offline sessions, then the queued messages."""
    build_state(broker, [(cid, cfg.filters(i)) for i, cid in enumerate(cfg.client_ids())], cfg.topic(),
                cfg.payload_bytes, cfg.messages, publisher_id)


def warm_up(broker: Mosquitto) -> None:
    """Touch every code path once (a session, a subscription, a queued and a delivered message),
    then remove it, so that lazily created ``$SYS`` topics, retained-tree nodes and hash tables
    exist in the baseline too."""
    c = _Client(broker.host, broker.port, "warm", clean_start=False, expiry=UINT_MAX)
    c.subscribe(["warm/x"])
    c.disconnect()
    pub = _Client(broker.host, broker.port, "warm-pub", clean_start=True, expiry=0)
    pub.publish("warm/x", b"w", 1)
    pub.disconnect()
    c = _Client(broker.host, broker.port, "warm", clean_start=True, expiry=0)  # discards the session
    c.disconnect()


def heap_increase(builder, offline_sessions: int, settings: dict | None = None) -> dict:
    """On a fresh broker (``max_queued_messages 0`` plus ``settings``): warm up, read the baseline
    heap, call ``builder(broker)``, read the heap again once ``offline_sessions`` are reported.
    Returns heap, baseline, delta, source ("heap" or "rss"), disconnected, stored_messages."""
    conf = {"max_queued_messages": 0}
    conf.update(settings or {})
    with Mosquitto(conf) as broker:
        mon = _Monitor(broker)
        try:
            warm_up(broker)
            base, source, _, _ = mon.read(broker.pid, disconnected=0)
            builder(broker)
            heap, source2, disc, stored = mon.read(broker.pid, disconnected=offline_sessions)
        finally:
            mon.close()
    if disc != offline_sessions:
        raise RuntimeError(f"broker reports {disc} offline sessions, expected {offline_sessions}")
    return dict(heap=heap, baseline=base, delta=heap - base, source=source if source == source2 else f"{source}/{source2}",
                disconnected=disc, stored_messages=stored)


def measure(cfg: Config, repeat: int = 0, settings: dict | None = None) -> dict:
    """One fresh broker: baseline heap, build ``cfg``, heap again; returns a CSV row."""
    t0 = time.monotonic()
    m = heap_increase(lambda b: build(b, cfg), cfg.sessions, settings)
    heap, base, source, disc, stored = m["heap"], m["baseline"], m["source"], m["disconnected"], m["stored_messages"]
    ids = cfg.client_ids()
    row = dict(config=cfg.name, kind=cfg.kind, repeat=repeat, sessions=cfg.sessions,
               subscriptions=cfg.subscriptions, messages=cfg.messages, payload_bytes=cfg.payload_bytes,
               fanout=cfg.fanout, entries=cfg.entries, id_bytes=sum(len(i.encode()) for i in ids),
               filter_bytes=cfg.filter_bytes(), topic_bytes=len(cfg.topic().encode()) * (cfg.messages > 0),
               heap_bytes=heap, baseline_bytes=base, delta_bytes=heap - base,
               source=source, disconnected=disc,
               stored_messages=stored, seconds=round(time.monotonic() - t0, 2))
    return row


def plan(quick: bool = False) -> list[tuple[Config, int]]:
    """Configurations and how many times each is repeated.

    Fitted configurations subscribe as a sim consumer block does: sessions share their topic
    filters (``filters_mode="shared"``). Mosquitto keeps a copy of the filter per subscription
    (so filter bytes do scale per subscription) but one topic-tree node per distinct filter
    level; the ``diagnostic`` configurations (full run only, not fitted) measure what unique
    filters cost on top.
    """
    C = Config
    fitted = [
        C("s40", "sessions", 40),
        C("s120", "sessions", 120),
        C("s240", "sessions", 240),
        C("s120-long", "sessions", 120, id_len=60, filter_len=60),
        C("sub20x8", "subscriptions", 20, subs_per_session=8),
        C("sub20x24", "subscriptions", 20, subs_per_session=24),
        C("sub20x24-long", "subscriptions", 20, subs_per_session=24, filter_len=70),
        C("m300p16", "messages", 1, messages=300, payload_bytes=16, fanout=1),
        C("m300p256", "messages", 1, messages=300, payload_bytes=256, fanout=1),
        C("m600p1024", "messages", 1, messages=600, payload_bytes=1024, fanout=1),
        C("m200p4000", "messages", 1, messages=200, payload_bytes=4000, fanout=1, topic_len=50),
        C("f10m200", "fanout", 10, messages=200, payload_bytes=64, fanout=10),
        C("f40m150", "fanout", 40, messages=150, payload_bytes=64, fanout=40),
        C("f40m150p2k", "fanout", 40, messages=150, payload_bytes=2000, fanout=20),
    ]
    diagnostic = [
        C("leaf20x9", "diagnostic", 20, subs_per_session=9, filters_mode="leaf"),
        C("tree20x9", "diagnostic", 20, subs_per_session=9, filters_mode="tree"),
        C("shared20x9", "diagnostic", 20, subs_per_session=9),
    ]
    if quick:
        names = ("s40", "s240", "sub20x24", "m300p16", "m600p1024", "m200p4000", "f10m200", "f40m150")
        return [(c, 1) for c in fitted if c.name in names]
    return [(c, 3) for c in fitted] + [(c, 1) for c in diagnostic]


# --------------------------------------------------------------------------- fitting
@dataclass
class Fit:
    constants: dict[str, float]
    stderr: dict[str, float]
    intercept: float
    intercept_stderr: float
    byte_coefficient: float
    byte_coefficient_stderr: float
    residuals: list[float]
    predicted: list[float]
    rows: list[dict] = field(repr=False, default_factory=list)

    def rounded(self) -> dict[str, int]:
        return {k: int(round(v)) for k, v in self.constants.items()}


def _design(rows: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    X = np.array([[r["sessions"], r["subscriptions"], r["entries"], r["messages"]] for r in rows], float)
    b = np.array([r["id_bytes"] + r["filter_bytes"] + r["messages"] * (r["topic_bytes"] + r["payload_bytes"])
                  for r in rows], float)
    y = np.array([r["delta_bytes"] for r in rows], float)
    return X, b, y


def _lstsq(A: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    res = y - A @ coef
    dof = max(1, len(y) - A.shape[1])
    s2 = float(res @ res) / dof
    cov = s2 * np.linalg.pinv(A.T @ A)
    return coef, np.sqrt(np.diag(cov)), res


def fit(rows: list[dict]) -> Fit:
    """Least squares: delta - bytes = X @ constants + c0; and a check with the byte coefficient free.

    Rows of kind ``diagnostic`` are left out."""
    rows = [r for r in rows if r["kind"] != "diagnostic"]
    X, b, y = _design(rows)
    ones = np.ones((len(rows), 1))
    A = np.hstack([X, ones])
    coef, se, res = _lstsq(A, y - b)
    A2 = np.hstack([X, b[:, None], ones])
    coef2, se2, _ = _lstsq(A2, y)
    return Fit(constants=dict(zip(CONSTANTS, map(float, coef[:4]))), stderr=dict(zip(CONSTANTS, map(float, se[:4]))),
               intercept=float(coef[4]), intercept_stderr=float(se[4]),
               byte_coefficient=float(coef2[4]), byte_coefficient_stderr=float(se2[4]),
               residuals=[float(r) for r in res], predicted=[float(v) for v in (A @ coef + b)], rows=rows)


def model_bytes(constants: dict[str, float], sessions: int, subscriptions: int, entries: int, messages: int,
                id_bytes: int, filter_bytes: int, topic_bytes: int, payload_bytes: int) -> float:
    """docs/model.md "Broker memory" with a shared message store (topic/payload bytes per message)."""
    c = constants
    return (sessions * c["session_overhead_bytes"] + id_bytes + subscriptions * c["subscription_overhead_bytes"]
            + filter_bytes + entries * c["queue_entry_overhead_bytes"]
            + messages * (c["message_overhead_bytes"] + topic_bytes + payload_bytes))


def report(f: Fit, out=sys.stdout) -> None:
    p = lambda *a: print(*a, file=out)  # noqa: E731
    p("fitted constants (bytes, ± standard error):")
    for k in CONSTANTS:
        p(f"  {YAML_KEYS[k]:<28} {f.constants[k]:9.1f} ± {f.stderr[k]:.1f}")
    p(f"  {'intercept (not in the model)':<28} {f.intercept:9.1f} ± {f.intercept_stderr:.1f}")
    p(f"check: coefficient of the byte terms (id + filter + topic + payload) fitted freely: "
      f"{f.byte_coefficient:.3f} ± {f.byte_coefficient_stderr:.3f} (model: 1)")
    p(f"{'config':<16}{'rep':>4}{'measured':>11}{'predicted':>11}{'residual':>10}{'rel':>8}")
    for r, pred, res in zip(f.rows, f.predicted, f.residuals):
        rel = res / r["delta_bytes"] if r["delta_bytes"] else float("nan")
        p(f"{r['config']:<16}{r['repeat']:>4}{r['delta_bytes']:>11}{pred:>11.0f}{res:>10.0f}{rel:>8.2%}")
    rel = [abs(res) / r["delta_bytes"] for r, res in zip(f.rows, f.residuals) if r["delta_bytes"]]
    p(f"residuals: rms {np.sqrt(np.mean(np.square(f.residuals))):.0f} B, max |relative| {max(rel):.2%}")


def diagnostics(rows: list[dict], out=sys.stdout) -> dict[str, float]:
    """Extra bytes per subscription when filters are unique instead of shared (same shape)."""
    by = {r["config"]: r for r in rows}
    got = {}
    base = by.get("shared20x9")
    if base:
        for name in ("leaf20x9", "tree20x9"):
            if name in by:
                extra = (by[name]["delta_bytes"] - base["delta_bytes"]) / base["subscriptions"]
                got[name] = extra
                print(f"diagnostic: unique filters ({name}) cost {extra:.0f} B more per subscription than shared ones "
                      f"(not in the model's formula)", file=out)
    return got


def noise(rows: list[dict]) -> dict[str, float]:
    """Standard deviation of the repeats of each configuration (bytes)."""
    by: dict[str, list[int]] = {}
    for r in rows:
        by.setdefault(r["config"], []).append(r["delta_bytes"])
    return {k: float(np.std(v, ddof=1)) for k, v in by.items() if len(v) > 1}


# --------------------------------------------------------------------------- files
def write_csv(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k) for k in CSV_COLUMNS})


def read_csv(path: Path) -> list[dict]:
    with open(path) as fh:
        return [{k: (int(v) if re.fullmatch(r"-?\d+", v or "") else v) for k, v in r.items()}
                for r in csv.DictReader(fh)]


def write_profile(path: Path, f: Fit, version: str, when: str, nrows: int) -> None:
    """Replace the four constants and the ``calibrated:`` line (with its comment) only."""
    text = path.read_text()
    c = f.rounded()
    for k, key in YAML_KEYS.items():
        pat = re.compile(rf"^(\s*{re.escape(key)}:)[^\n]*$", re.M)
        line = f"{key}: {c[k]}"
        note = f"# measured: {f.constants[k]:.1f} ± {f.stderr[k]:.1f} (least squares, sim.realbroker.calibrate)"
        if k == "subscription_overhead_bytes":
            note += "; filters shared as in a sim block (a unique filter adds topic-tree nodes)"
        text, n = pat.subn(lambda m: f"{m.group(1)[:-len(key) - 1]}{line:<33}{note}", text, count=1)
        if n != 1:
            raise ValueError(f"{path}: no line '{key}: <int>'")
    cal = (f"calibrated: true   # {when}: `python -m sim.realbroker.calibrate mosquitto --write`, mosquitto {version} on "
           f"127.0.0.1, $SYS/broker/heap/current minus a fresh-broker baseline, {nrows} runs (offline sessions "
           f"sharing their filters, queued QoS 1 messages, fan-out); data/calibration/mosquitto.csv")
    text, n = re.subn(r"^calibrated:.*$", cal, text, count=1, flags=re.M)
    if n != 1:
        raise ValueError(f"{path}: no 'calibrated:' line")
    path.write_text(text)


def version_text() -> str:
    """The installed mosquitto's version as text (``2.0.11``), or ``unknown``."""
    v = mosquitto_version(find_mosquitto())
    return ".".join(map(str, v)) if v else "unknown"


# --------------------------------------------------------------------------- CLI
def run(quick: bool = False, workers: int | None = None, progress=None) -> list[dict]:
    jobs = [(cfg, rep) for cfg, reps in plan(quick) for rep in range(reps)]
    workers = workers or (4 if quick else 5)
    rows: list[dict] = []
    with ThreadPoolExecutor(max_workers=workers) as ex:
        for row in ex.map(lambda j: measure(*j), jobs):
            rows.append(row)
            if progress:
                progress(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sim.realbroker.calibrate", description=__doc__.split("\n\n")[0])
    ap.add_argument("broker", choices=["mosquitto"])
    ap.add_argument("--quick", action="store_true", help="fewer configurations, no repeats (~40 s)")
    ap.add_argument("--write", action="store_true", help="write the fitted constants into sim/profiles/<broker>.yaml")
    ap.add_argument("--csv", type=Path, default=None,
                    help="measurements file (default data/calibration/<broker>.csv; a --quick run without "
                         "--write leaves that file alone and writes to a temporary file)")
    ap.add_argument("--workers", type=int, default=None, help="brokers measured in parallel")
    a = ap.parse_args(argv)
    t0 = time.monotonic()
    rows = run(a.quick, a.workers, progress=lambda r: print(
        f"  {r['config']:<16} rep {r['repeat']}  +{r['delta_bytes']:>9} B  ({r['source']}, {r['seconds']} s)",
        flush=True))
    csv_path = a.csv
    if csv_path is None:
        if a.quick and not a.write:  # keep the measurements the shipped constants come from
            import tempfile
            csv_path = Path(tempfile.gettempdir()) / f"{a.broker}-calibration-quick.csv"
        else:
            csv_path = ROOT / "data" / "calibration" / f"{a.broker}.csv"
    write_csv(rows, csv_path)
    f = fit(rows)
    report(f)
    diagnostics(rows)
    nz = noise(rows)
    if nz:
        print("repeat noise (std of the heap increase): "
              + ", ".join(f"{k} {v:.0f} B" for k, v in sorted(nz.items())))
    print(f"wrote {csv_path}  ({len(rows)} rows, {time.monotonic() - t0:.1f} s)")
    if a.write:
        from ..config import profile_path
        prof = Path(str(profile_path(a.broker)))  # the package's own profile file (a checkout's sim/profiles/)
        write_profile(prof, f, version_text(), _dt.date.today().isoformat(), len(rows))
        print(f"wrote {prof}: " + ", ".join(f"{YAML_KEYS[k]} {v}" for k, v in f.rounded().items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
