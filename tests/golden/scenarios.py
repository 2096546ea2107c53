"""The golden back-test's scenarios: three random scenarios whose full output frames are
stored beside this file (``<name>/<frame>.csv``) and compared by tests/test_golden.py.

Regenerate the stored frames only on purpose, when a change of behaviour is intended,
with ``python tests/golden/scenarios.py`` from the project root, and give the reason in
the commit message.
"""
from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
FRAMES = ("summary", "fates", "memory", "events", "messages")

# every broker key set, so that retuning a shipped profile does not move the golden frames
BROKER = {
    "profile": "mosquitto", "max queued messages": 0, "max queued bytes": 0, "queue full policy": "drop-new",
    "queue bytes check": "fits", "queue limits count qos0": True, "queue limits count inflight": False,
    "queue qos0 messages": False, "max session expiry interval": "uint_max", "uint max never expires": True,
    "message expiry check": "eager", "shared message store": True, "session overhead bytes": 1000,
    "subscription overhead bytes": 100, "queue entry overhead bytes": 56, "message overhead bytes": 200,
}

EXP = "exponential"

GOLDEN = {
    # back-off with jitter, departures with replacement, latency, QoS 0 in transit at the horizon
    "backoff_departures": (11, {
        "name": "golden-backoff-departures", "horizon": 150,
        "broker": {**BROKER, "max queued messages": 20},
        "mqttConsumer": [
            {"clients": 4, "client id": "dev", "session expiry interval": 8, "clean start": False, "qos": 1,
             "topic filter": "g/#", "network latency": 0.2,
             "outages": {"up": {"distribution": EXP, "mean": 15}, "down": {"distribution": "lognormal", "median": 4, "sigma": 1},
                         "leave probability": 0.15, "replace departed": True,
                         "reconnect": {"initial delay": 0.5, "max delay": 8, "multiplier": 2, "jitter": 0.5}}},
            {"clients": 2, "client id": "mon", "qos": 0, "topic filter": "g/+/zero", "network latency": 0.9},
        ],
        "mqttPublisher": [
            {"clients": 2, "client id": "pub", "qos": 1, "topic": "g/{id}/one", "rate": 2, "network latency": 0.1,
             "outages": {"up": {"distribution": EXP, "mean": 40}, "down": {"distribution": "fixed", "value": 3}},
             "offline buffer": 2, "session expiry interval": 30, "clean start": False},
            {"clients": 1, "client id": "zero", "qos": 0, "topic": "g/{id}/zero", "rate": 6, "network latency": 1.2},
        ],
    }),
    # lazy message expiry at CONNECT, QoS 0 queued, DISCONNECT with an expiry interval
    "lazy_expiry": (12, {
        "name": "golden-lazy-expiry", "horizon": 120,
        "broker": {**BROKER, "message expiry check": "lazy", "queue qos0 messages": True, "max queued messages": 50},
        "mqttConsumer": {"clients": 3, "client id": "c", "session expiry interval": 12, "clean start": False, "qos": 2,
                         "outages": {"up": {"distribution": EXP, "mean": 10}, "down": {"distribution": EXP, "mean": 6},
                                     "disconnect": "clean", "disconnect session expiry interval": 20}},
        "mqttPublisher": [
            {"clients": 1, "client id": "p", "qos": 1, "topic": "s/a", "rate": 3, "message expiry interval": 3},
            {"clients": 1, "client id": "q", "qos": 0, "topic": "s/b", "rate": 1, "message expiry interval": 8},
        ],
    }),
    # drop-oldest with message expiry, byte limits, Receive Maximum, departures without replacement
    "drop_oldest_expiry": (13, {
        "name": "golden-drop-oldest", "horizon": 300,
        "broker": {**BROKER, "max queued messages": 4, "max queued bytes": 1000, "queue full policy": "drop-oldest"},
        "mqttConsumer": {"clients": 5, "client id": "d", "session expiry interval": "uint_max", "clean start": False,
                         "qos": 1, "receive maximum": 2, "network latency": 0.5,
                         "outages": {"up": {"distribution": "weibull", "shape": 1.5, "scale": 12},
                                     "down": {"distribution": EXP, "mean": 9}, "leave probability": 0.05}},
        "mqttPublisher": {"clients": 2, "client id": "p", "qos": 1, "topic": "x/{id}", "rate": 0.35,
                          "payload bytes": 300, "message expiry interval": 5},
    }),
}


def frames(name: str) -> dict[str, str]:
    """The CSV text of every output frame of golden scenario ``name``, as run now."""
    import sim

    seed, d = GOLDEN[name]
    res = sim.run(sim.load_scenario(d), seed=seed, record_messages=True, record_events=True)
    out = {"summary": res.summary.to_frame().to_csv()}
    for f in FRAMES[1:]:
        out[f] = getattr(res, f).to_csv(index=False)
    return out


def main() -> None:
    for name in GOLDEN:
        folder = HERE / name
        folder.mkdir(exist_ok=True)
        for frame, text in frames(name).items():
            (folder / f"{frame}.csv").write_text(text)
        print(f"wrote {folder}")


if __name__ == "__main__":
    main()
