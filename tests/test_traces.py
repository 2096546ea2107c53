"""sim.realbroker.traces: Mosquitto 2.0 logs -> outage traces, and the replay of a log recorded from a real broker.

(a) each connection line kind Mosquitto 2.0 writes (src/loop.c do_disconnect, src/handle_connect.c),
    in both timestamp formats, with inline fixtures;
(b) to_trace_csv writes a trace the scenario loader accepts;
(c) data/traces/mosquitto_sample.log (recorded from mosquitto 2.0.11, see data/traces/README.md)
    parses to the expected trace, and replaying it gives per (message, consumer) exactly what the
    broker delivered (data/traces/mosquitto_sample_observed.csv);
(d) the wording of the installed broker's lines (a short live session; skipped without mosquitto).
"""
from __future__ import annotations

import math
import threading
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import yaml
import pytest

import sim
from sim.realbroker.traces import TraceWarning, from_mosquitto_log, to_trace_csv

ROOT = Path(__file__).resolve().parent.parent
TRACES = ROOT / "data" / "traces"


def log(*lines: str, epoch: bool = False) -> str:
    """Lines given as (seconds, message) text '12: msg' -> a log with real timestamps."""
    out = []
    for line in lines:
        sec, msg = line.split(": ", 1)
        s = int(sec)
        ts = str(1732480000 + s) if epoch else f"2024-11-24T20:{26 + s // 60:02d}:{s % 60:02d}"
        out.append(f"{ts}: {msg}")
    return "\n".join(out) + "\n"


def connect(cid: str, c: int = 0) -> str:
    return f"New client connected from 127.0.0.1:50000 as {cid} (p5, c{c}, k60)."


def rows(df: pd.DataFrame) -> list[tuple]:
    return [(r.client, r.disconnect, None if math.isnan(r.reconnect) else r.reconnect,
             None if pd.isna(r.clean_start) else bool(r.clean_start), r.reason) for r in df.itertuples()]


# --------------------------------------------------------------------------- (a) line kinds

DISCONNECT_LINES = [
    ("Client a disconnected.", "clean"),
    ("Client a closed its connection.", "network"),
    ("Client a has exceeded timeout, disconnecting.", "timeout"),
    ("Client a disconnected due to protocol error.", "protocol_error"),
    ("Client a disconnected due to malformed packet.", "error"),
    ("Client a disconnected due to oversize packet.", "error"),
    ("Client a disconnected, not authorised.", "not_authorised"),
    ("Client a disconnected: Connection reset by peer.", "error"),
    ("Client a been disconnected by administrative action.", "administrative"),
    ("Bad socket read/write on client a: Connection reset by peer", "socket_error"),
    ("Socket error on client a, disconnecting.", "socket_error"),   # Mosquitto 1.x wording
]


@pytest.mark.parametrize("epoch", [False, True], ids=["iso", "epoch"])
@pytest.mark.parametrize("line,reason", DISCONNECT_LINES)
def test_each_disconnect_line(line, reason, epoch):
    df = from_mosquitto_log(log("0: " + connect("a"), "5: " + line, "9: " + connect("a", 1), epoch=epoch))
    assert rows(df) == [("a", 5.0, 9.0, True, reason)]


def test_clean_start_flag_and_never_returning_client():
    df = from_mosquitto_log(log("0: " + connect("a", 1), "0: " + connect("b", 0),
                                "3: Client a closed its connection.", "4: " + connect("a", 0),
                                "6: Client b disconnected.", "7: " + connect("b", 1),
                                "8: Client a closed its connection."))
    assert rows(df) == [("a", 3.0, 4.0, False, "network"), ("b", 6.0, 7.0, True, "clean"),
                        ("a", 8.0, None, None, "network")]
    assert df.attrs["clients"] == ["a", "b"]
    assert df.attrs["first_connect"] == {"a": 0.0, "b": 0.0}
    assert list(df.columns) == ["client", "disconnect", "reconnect", "clean_start", "reason"]


def test_takeover_is_a_zero_length_outage_and_no_extra_rows():
    # real 2.0 order: the takeover line, then the new connection's line; the old one logs nothing else
    df = from_mosquitto_log(log("0: " + connect("a"), "5: Client a already connected, closing old connection.",
                                "5: " + connect("a", 1), "7: Client a closed its connection."))
    assert rows(df) == [("a", 5.0, 5.0, True, "takeover"), ("a", 7.0, None, None, "network")]


def test_noise_is_ignored_and_ids_with_spaces_parse():
    text = log("0: mosquitto version 2.0.11 starting", "0: New connection from 127.0.0.1:4 on port 1883.",
               "0: Client <unknown> closed its connection.", "1: " + connect("odd id (p5, c1)"),
               "1: Sending CONNACK to odd id (p5, c1) (0, 0)", "2: Received DISCONNECT from odd id (p5, c1)",
               "2: Client odd id (p5, c1) disconnected.", "2: Client odd id (p5, c1) disconnected.",  # repeated
               "3: New client connected from 10.0.0.1:9 as u1 (p2, c1, k30, u'alice').")
    text += "a line without a timestamp\n"
    df = from_mosquitto_log(text)
    assert rows(df) == [("odd id (p5, c1)", 2.0, None, None, "clean")]
    assert df.attrs["clients"] == ["odd id (p5, c1)", "u1"]
    assert df.attrs["first_connect"] == {"odd id (p5, c1)": 1.0, "u1": 3.0}


def test_client_first_seen_disconnecting_was_connected_at_start():
    df = from_mosquitto_log(log("0: mosquitto version 2.0.11 running", "4: Client z closed its connection."))
    assert rows(df) == [("z", 4.0, None, None, "network")]
    assert "z" not in df.attrs["first_connect"]


def test_start_argument_and_formats(tmp_path):
    text = log("0: " + connect("a"), "10: Client a closed its connection.", "15: " + connect("a"), epoch=True)
    assert rows(from_mosquitto_log(text, start=1732479990))[0][1:3] == (20.0, 25.0)
    assert rows(from_mosquitto_log(text, start="1732479995"))[0][1:3] == (15.0, 20.0)
    iso = log("0: " + connect("a"), "10: Client a closed its connection.", "15: " + connect("a"))
    assert rows(from_mosquitto_log(iso, start="2024-11-24T20:25:58"))[0][1:3] == (12.0, 17.0)
    assert rows(from_mosquitto_log(iso, start=datetime(2024, 11, 24, 20, 26, 5)))[0][1:3] == (5.0, 10.0)
    spaced = iso.replace("T20:", " 20:")
    assert rows(from_mosquitto_log(spaced))[0][1:3] == (10.0, 15.0)
    custom = "\n".join(f"24/11/2024 20:26:{s:02d}: {m}" for s, m in
                       [(0, connect("a")), (10, "Client a closed its connection."), (15, connect("a"))])
    assert rows(from_mosquitto_log(custom, timestamp_format="%d/%m/%Y %H:%M:%S"))[0][1:3] == (10.0, 15.0)
    p = tmp_path / "m.log"
    p.write_text(text)
    assert rows(from_mosquitto_log(p)) == rows(from_mosquitto_log(str(p))) == rows(from_mosquitto_log(text))
    with pytest.raises(ValueError, match="no timestamped log lines"):
        from_mosquitto_log("Client a disconnected.\n")


# --------------------------------------------------------------------------- (b) to_trace_csv


def test_to_trace_csv_is_a_loadable_trace(tmp_path):
    df = from_mosquitto_log(log("0: " + connect("b"), "0: " + connect("a"), "0: " + connect("p"),
                                "3: Client a closed its connection.", "5: " + connect("a", 1),
                                "4: Client b disconnected.", "8: Client a has exceeded timeout, disconnecting."))
    path = tmp_path / "t.csv"
    mapping = to_trace_csv(df, path)
    assert mapping == {"b": 0, "a": 1, "p": 2}
    assert path.read_text().splitlines() == ["client,disconnect,reconnect,disconnect_kind,clean_start,reason",
                                             "1,3,5,network,1,network", "0,4,,clean,,clean", "1,8,,network,,timeout"]
    scn = sim.load_scenario({"horizon": 20, "mqttConsumer": {"clients": 3, "outages": {"trace": str(path)}},
                             "mqttPublisher": {"schedule": [1]}})
    assert scn.consumers[0].outages.traces == (((4.0, None),), ((3.0, 5.0), (8.0, None)), ())
    assert to_trace_csv(df, tmp_path / "a.csv", clients=["a"]) == {"a": 0}
    assert (tmp_path / "a.csv").read_text().splitlines()[1:] == ["0,3,5,network,1,network", "0,8,,network,,timeout"]


def test_to_trace_csv_warns_about_what_it_cannot_replay(tmp_path):
    df = from_mosquitto_log(log("0: " + connect("a"), "4: Client a already connected, closing old connection.",
                                "4: " + connect("a"), "6: " + connect("late")))
    with pytest.warns(TraceWarning) as caught:
        assert to_trace_csv(df, tmp_path / "t.csv") == {"a": 0, "late": 1}
    text = " ".join(str(w.message) for w in caught)
    assert "zero-length outage" in text and "late" not in text
    # a client first connecting at 6 s gets a leading row with an empty disconnect: it joins then
    assert (tmp_path / "t.csv").read_text().splitlines() == [
        "client,disconnect,reconnect,disconnect_kind,clean_start,reason", "1,,6,,,first_connect"]
    scn = sim.load_scenario({"horizon": 20, "mqttConsumer": {"clients": 2, "outages": {"trace": str(tmp_path / "t.csv")}},
                             "mqttPublisher": {"schedule": [1, 7]}})
    assert scn.consumers[0].outages.first_connect == (None, 6.0)
    m = sim.run(scn, seed=0).messages
    assert sorted(zip(m["consumer"], m["published_at"])) == [("consumer-0", 1), ("consumer-0", 7), ("consumer-1", 7)]


# --------------------------------------------------------------------------- (c) the recorded sample

SAMPLE_TRACE = [("keep-0", 4.0, 10.0, False, "network"), ("fresh-0", 6.0, 12.0, True, "network"),
                ("bye-0", 8.0, 14.0, False, "clean"), ("keep-0", 18.0, None, None, "network")]


def test_sample_log_parses_to_the_recorded_timeline():
    df = from_mosquitto_log(TRACES / "mosquitto_sample.log")
    assert rows(df) == SAMPLE_TRACE
    assert df.attrs["clients"] == ["keep-0", "fresh-0", "bye-0", "pub-0", "pubz-0"]
    assert set(df.attrs["first_connect"].values()) == {0.0}  # everyone connected at t = 0, as the model assumes


def test_sample_trace_csvs_are_what_to_trace_csv_writes(tmp_path):
    df = from_mosquitto_log(TRACES / "mosquitto_sample.log")
    for block in ("keep", "fresh", "bye"):
        out = tmp_path / f"{block}.csv"
        assert to_trace_csv(df, out, clients=[f"{block}-0"]) == {f"{block}-0": 0}
        assert out.read_text() == (TRACES / f"mosquitto_sample_{block}.csv").read_text()


def test_sample_replay_matches_what_the_broker_delivered():
    scn = sim.load_scenario(TRACES / "mosquitto_sample_scenario.yaml")
    res = sim.run(scn, seed=0)
    observed = pd.read_csv(TRACES / "mosquitto_sample_observed.csv")
    assert len(observed) == 120 and observed["received"].sum() == 90 and observed["copies"].max() == 1
    merged = res.messages.merge(observed, on=["published_at", "consumer"], how="outer", indicator=True,
                                suffixes=("", "_real"))
    assert (merged["_merge"] == "both").all(), "the simulated and recorded (message, consumer) pairs differ"
    assert (merged["publisher"] == merged["publisher_real"]).all() and (merged["qos"] == merged["qos_real"]).all()
    assert ((merged["fate"] == "delivered") == (merged["received"] == 1)).all()
    assert (merged["duplicates"] == merged["copies"].clip(lower=1) - 1).all()
    lost = merged[merged["received"] == 0].groupby(["consumer", "fate"]).size().to_dict()
    # keep-0 leaves for good at the end of the log: what it had not received by then is traffic
    # to a departed device (QoS 0 not queued, QoS 1 held at the horizon), not loss
    assert lost == {("keep-0", "qos0_offline"): 6, ("keep-0", "departed_not_queued"): 3,
                    ("keep-0", "departed_held"): 3, ("fresh-0", "qos0_offline"): 6,
                    ("fresh-0", "clean_start"): 6, ("bye-0", "qos0_offline"): 6}
    # QoS 1 queued while keep-0 and bye-0 were away arrived at the reconnect, in the broker and in the model
    back = merged[(merged["qos"] == 1) & (merged["consumer"] == "keep-0") & merged["published_at"].between(4, 10)]
    assert len(back) == 6 and back["received_at"].between(10, 10.5).all()


def test_whole_log_replays_as_one_consumer_block(tmp_path):
    """One block for all clients: each outage keeps its own disconnect kind and reconnect Clean Start."""
    df = from_mosquitto_log(TRACES / "mosquitto_sample.log")
    ids = ["keep-0", "fresh-0", "bye-0"]
    mapping = to_trace_csv(df, tmp_path / "all.csv", clients=ids)
    d = yaml.safe_load((TRACES / "mosquitto_sample_scenario.yaml").read_text())
    block = dict(d["mqttConsumer"][0])
    block.update({"clients": 3, "client id": "c", "outages": {"trace": str(tmp_path / "all.csv")}})
    d["mqttConsumer"] = block
    scn = sim.load_scenario(d)
    res = sim.run(scn, seed=0)
    events = res.events
    assert events.loc[(events.event == "disconnect"), "detail"].tolist() == ["network", "network", "clean", "network"]
    assert events.loc[events.event == "session_discarded", "client_id"].tolist() == [f"c-{mapping['fresh-0']}"]
    observed = pd.read_csv(TRACES / "mosquitto_sample_observed.csv")
    observed["consumer"] = observed["consumer"].map(lambda cid: f"c-{mapping[cid]}")
    merged = res.messages.merge(observed, on=["published_at", "consumer"], how="inner")
    assert len(merged) == 120
    assert ((merged["fate"] == "delivered") == (merged["received"] == 1)).all()


# --------------------------------------------------------------------------- (d) the installed broker's wording


def test_live_broker_lines_parse(mosquitto_broker):
    paho = pytest.importorskip("paho.mqtt.client")
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    broker = mosquitto_broker()

    def client(cid, clean, sei=300, keepalive=60):
        c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=cid, protocol=paho.MQTTv5)
        done = threading.Event()
        c.on_connect = lambda *a: done.set()
        props = Properties(PacketTypes.CONNECT)
        if sei:
            props.SessionExpiryInterval = sei
        c.connect(broker.host, broker.port, keepalive=keepalive, clean_start=clean, properties=props)
        for _ in range(100):
            c.loop(timeout=0.02)
            if done.is_set():
                return c
        raise AssertionError(f"{cid}: no CONNACK")

    def pump(c, seconds=0.2):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            c.loop(timeout=0.02)

    def wait_for(text, seconds=6.0):
        deadline = time.monotonic() + seconds
        while text not in broker.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert text in broker.log(), f"broker log lacks {text!r}"

    a = client("net", False)
    a.socket().close()                       # network drop
    wait_for("Client net closed its connection.")
    a = client("net", True)                  # back with Clean Start 1
    b = client("bye", False)
    b.disconnect()                           # clean DISCONNECT
    pump(b)
    t1 = client("tk", False)
    t2 = client("tk", False)                 # takeover of t1's connection
    pe = client("pe", True, sei=0)
    dp = Properties(PacketTypes.DISCONNECT)
    dp.SessionExpiryInterval = 30            # 0 -> non-zero at DISCONNECT: protocol error
    pe.disconnect(properties=dp)
    pump(pe)
    k = client("ka", False, keepalive=1)     # goes silent: keep-alive timeout after 1.5 s
    wait_for("Client ka has exceeded timeout, disconnecting.")
    df = from_mosquitto_log(broker.log())
    got = [(r.client, r.reason, None if pd.isna(r.clean_start) else bool(r.clean_start)) for r in df.itertuples()]
    assert got == [("net", "network", True), ("bye", "clean", None), ("tk", "takeover", False),
                   ("pe", "protocol_error", None), ("ka", "timeout", None)]
    for c in (a, t1, t2, k):
        try:
            c.socket().close()
        except (AttributeError, OSError):
            pass
