"""Broker restarts, with and without persistence: hand-computed scripted scenarios.

Every expectation below is derived by hand from the rules in docs/model.md ("Broker
restarts") and sim/protocol.py (restart_restores, session_saved, restored_expiry_deadline,
restored_entry); the comments give the derivation. Each run also passes the ledger's
conservation check (one fate per (message, consumer) pair).
"""
from __future__ import annotations

import numpy as np
import pytest

import sim
from sim import protocol
from sim.run import EngineError


def scenario(consumers, publishers, horizon=40, **broker):
    return sim.load_scenario({"name": "restarts", "horizon": horizon,
                              "broker": {"profile": broker.pop("profile", "mosquitto-2.0.11"), **broker},
                              "mqttConsumer": consumers, "mqttPublisher": publishers})


def consumer(cid="c", **kw):
    d = {"client id": cid, "qos": 1, "session expiry interval": 100, "clean start": False, "topic filter": "t/#"}
    d.update(kw)
    return d


def publisher(schedule, cid="p", **kw):
    d = {"client id": cid, "qos": 1, "topic": "t/{id}", "schedule": schedule}
    d.update(kw)
    return d


def trace(*pairs, **kw):
    return {"trace": [list(p) for p in pairs], **kw}


def fates(res, cid):
    """{publish time: (fate, fate time, duplicates)} of one consumer's pairs."""
    m = res.messages[res.messages.consumer == cid]
    return {float(t): (f, float(at), int(d)) for t, f, at, d in zip(m.published_at, m.fate, m.fate_at, m.duplicates)}


def present(res, cid):
    ev = res.events
    return tuple(bool(x) for x in ev[(ev.client_id == cid) & (ev.event == "connect")].session_present)


def connect_times(res, cid):
    ev = res.events
    return tuple(float(t) for t in ev[(ev.client_id == cid) & (ev.event == "connect")].time)


RESTART = {"trace": [[20, 22]]}


# --------------------------------------------------------------------------- rules (pure)


def test_rules_as_pure_functions():
    assert protocol.restart_restores(False, "graceful") == protocol.RESTORE_NOTHING
    assert protocol.restart_restores(False, "crash") == protocol.RESTORE_NOTHING
    assert protocol.restart_restores(True, "graceful") == protocol.RESTORE_AT_STOP
    assert protocol.restart_restores(True, "crash") == protocol.RESTORE_LAST_SAVE
    with pytest.raises(ValueError, match="reboot"):
        protocol.restart_restores(True, "reboot")
    assert protocol.session_saved(clean_start=False, interval=10)
    assert not protocol.session_saved(clean_start=True, interval=10)
    assert not protocol.session_saved(clean_start=False, interval=0)
    assert protocol.restored_expiry_deadline("on reconnect", 5.0, 10) is None
    assert protocol.restored_expiry_deadline("wall time", 5.0, 10) == 15.0
    assert protocol.restored_expiry_deadline("wall time", 5.0, sim.UINT_MAX) is None
    assert protocol.restored_expiry_deadline("wall time", 5.0, sim.UINT_MAX, uint_max_never_expires=False) == 5.0 + sim.UINT_MAX
    assert protocol.restored_entry(decided=False, received=False) == protocol.ENTRY_HELD
    assert protocol.restored_entry(decided=True, received=True) == protocol.ENTRY_REDELIVERED
    assert protocol.restored_entry(decided=True, received=False) == protocol.ENTRY_REOPENED
    assert "broker_restart" in sim.LOSS_CAUSES
    # a message meant for a departed client lost at a restart is traffic to a departed device, not loss
    assert protocol.departed_fate("broker_restart") == "departed_expired"


# --------------------------------------------------------------------------- without persistence


def test_without_persistence_a_restart_ends_every_session():
    # off: offline 5-30; 10 and 15 queued, lost with the session at the stop (20); 25 finds no
    # session (off is still away); at 30 Session Present 0, it subscribes again and gets 35.
    # on: connected; dropped at 20, back at 22 with Session Present 0, subscribes, gets 25 and 35.
    scn = scenario([consumer("off", outages=trace((5, 30))), consumer("on")],
                   publisher([1, 10, 15, 25, 35]), restarts=RESTART)
    res = sim.run(scn, record_messages=True)
    assert fates(res, "off-0") == {1: ("delivered", 1, 0), 10: ("broker_restart", 20, 0), 15: ("broker_restart", 20, 0),
                                   25: ("no_session", 25, 0), 35: ("delivered", 35, 0)}
    assert present(res, "off-0") == (False, False)
    assert fates(res, "on-0") == {t: ("delivered", t, 0) for t in (1, 10, 15, 25, 35)}
    assert present(res, "on-0") == (False, False) and connect_times(res, "on-0") == (0, 22)
    s = res.summary
    assert s.lost_broker_restart == 2 and s.lost == 3 and s.sessions_final == 3
    ev = res.events
    assert list(ev[ev.event.str.startswith("broker_")].event) == ["broker_stop", "broker_start"]
    assert set(ev[ev.event == "session_lost"].client_id) == {"off-0", "on-0", "p-0"}


def test_without_persistence_in_flight_messages_are_lost():
    # latency 1: 19.5 is sent at 19.5 and would arrive at 20.5, after the stop: lost with the session
    scn = scenario(consumer(**{"network latency": 1}), publisher([18.5, 19.5]), restarts=RESTART)
    res = sim.run(scn, record_messages=True)
    assert fates(res, "c-0") == {18.5: ("delivered", 19.5, 0), 19.5: ("broker_restart", 20, 0)}
    assert present(res, "c-0") == (False, False)


def test_broker_memory_is_empty_while_down():
    scn = scenario(consumer(outages=trace((5, 30))), publisher([1, 10, 15, 25]), restarts=RESTART, persistence=True)
    mem = sim.run(scn).memory
    down = mem[(mem.time >= 20) & (mem.time < 22)]
    assert len(down) and (down.bytes == 0).all() and (down.sessions == 0).all()
    before = mem[mem.time < 20].iloc[-1]
    after = mem[mem.time >= 22].iloc[0]
    assert before.bytes > 0 and after.queued == before.queued == 2  # the two queued messages are back


# --------------------------------------------------------------------------- graceful, with persistence


def test_graceful_restart_keeps_queues_in_order_qos0_included():
    # queued for c (offline 5-30): 10 (QoS 1), 12 (QoS 0, queue qos0 messages), 15; kept over the
    # restart, 25 and 26 join the same queue behind them. Receive Maximum 1 and latency 1 make the
    # order visible: resumed at 30, 10 arrives 31 (ack 32); 12 (QoS 0, no window) and 15 arrive
    # 33 (ack 34); 25 arrives 35 (ack 36); 26 arrives 37.
    scn = scenario(consumer(outages=trace((5, 30)), **{"network latency": 1, "receive maximum": 1}),
                   [publisher([1, 10, 15, 25], cid="q1"), publisher([12, 26], cid="q0", qos=0, topic="t/zero")],
                   restarts=RESTART, persistence=True, **{"queue qos0 messages": True})
    res = sim.run(scn, record_messages=True)
    assert fates(res, "c-0") == {1: ("delivered", 2, 0), 10: ("delivered", 31, 0), 12: ("delivered", 33, 0),
                                 15: ("delivered", 33, 0), 25: ("delivered", 35, 0), 26: ("delivered", 37, 0)}
    assert present(res, "c-0") == (False, True)
    assert res.summary.lost == 0
    ev = res.events
    assert ev[ev.event == "session_restored"].detail.tolist() == ["0 in flight, 3 queued"]


def test_graceful_restart_re_sends_in_flight_messages():
    # latency 1: 18.5 arrives 19.5, its PUBACK (due 20.5) is lost with the stop: re-sent after the
    # reconnect at 22, a duplicate at 23. 19.5 is unacknowledged and unreceived: re-sent, first
    # received at 23.
    scn = scenario(consumer(**{"network latency": 1}), publisher([18.5, 19.5]), restarts=RESTART, persistence=True)
    res = sim.run(scn, record_messages=True)
    assert fates(res, "c-0") == {18.5: ("delivered", 19.5, 1), 19.5: ("delivered", 23, 0)}
    assert present(res, "c-0") == (False, True)
    assert res.summary.duplicates == 1 and res.summary.lost == 0


def test_only_clean_start_0_sessions_are_saved():
    # both connect with Clean Start 1 and a 100 s interval and reconnect with Clean Start 0.
    # once: its last CONNECT before the restart (0) had Clean Start 1: not saved; 10 lost at the
    # stop, 25 finds no session, Session Present 0 at 30.
    # twice: reconnected at 4 with Clean Start 0 (Session Present 1: the session outlived the
    # 3-4 outage): saved; gets everything at 30.
    again = {"clean start": True}
    scn = scenario([consumer("once", outages=trace((5, 30), **{"reconnect clean start": False}), **again),
                    consumer("twice", outages=trace((3, 4), (5, 30), **{"reconnect clean start": False}), **again)],
                   publisher([1, 10, 25, 35]), restarts=RESTART, persistence=True)
    res = sim.run(scn, record_messages=True)
    assert fates(res, "once-0") == {1: ("delivered", 1, 0), 10: ("broker_restart", 20, 0), 25: ("no_session", 25, 0),
                                    35: ("delivered", 35, 0)}
    assert present(res, "once-0") == (False, False)
    assert fates(res, "twice-0") == {1: ("delivered", 1, 0), 10: ("delivered", 30, 0), 25: ("delivered", 30, 0),
                                     35: ("delivered", 35, 0)}
    assert present(res, "twice-0") == (False, True, True)
    # without the restart the Clean Start 1 session survives while the broker runs
    calm = sim.run(scn.updated({"broker.restarts": None}), record_messages=True)
    assert present(calm, "once-0") == (False, True) and calm.summary.lost == 0


def test_expiry_0_sessions_do_not_survive_a_restart():
    # Clean Start 0 but interval 0: the session ends when its connection closes at the stop (21 is
    # produced while the broker is down: the publisher has no offline buffer)
    scn = scenario(consumer(**{"session expiry interval": 0}), publisher([1, 21, 25]), restarts=RESTART,
                   persistence=True)
    res = sim.run(scn, record_messages=True)
    assert present(res, "c-0") == (False, False)
    assert fates(res, "c-0") == {1: ("delivered", 1, 0), 21: ("publisher_offline", 21, 0), 25: ("delivered", 25, 0)}
    assert res.events[res.events.event == "session_restored"].empty


# --------------------------------------------------------------------------- restored sessions' expiry


def expiry_scenario(setting, restarts, outages=((5, 50),), publishes=(1, 6, 55), horizon=60):
    return scenario(consumer(**{"session expiry interval": 10, "outages": trace(*outages)}), publisher(list(publishes)),
                    horizon=horizon, restarts={"trace": restarts}, persistence=True,
                    **({} if setting is None else {"restored session expiry": setting}))


def test_restored_session_never_expires_until_reconnect_on_2_0_11():
    # interval 10, offline from 5: it would end at 15, but restored at 10 it is never scheduled
    # for expiry again (mosquitto-2.0.11: on reconnect): resumed 45 s later, at 50
    res = sim.run(expiry_scenario(None, [[8, 10]]), record_messages=True)
    assert res.scenario.broker.restored_session_expiry == "on reconnect"
    assert present(res, "c-0") == (False, True)
    assert fates(res, "c-0") == {1: ("delivered", 1, 0), 6: ("delivered", 50, 0), 55: ("delivered", 55, 0)}


def test_after_the_reconnect_normal_expiry_applies_again():
    # restored at 10, resumed at 50; dropped again at 60: ends at 70; 65 lost with it, 85 finds none
    res = sim.run(expiry_scenario(None, [[8, 10]], outages=((5, 50), (60, 80)), publishes=(1, 6, 65, 75, 85),
                                  horizon=90), record_messages=True)
    assert present(res, "c-0") == (False, True, False)
    assert fates(res, "c-0") == {1: ("delivered", 1, 0), 6: ("delivered", 50, 0), 65: ("session_expired", 70, 0),
                                 75: ("no_session", 75, 0), 85: ("delivered", 85, 0)}


@pytest.mark.parametrize("how", ["override", "profile"])
def test_wall_time_expiry_counts_across_the_restart(how):
    # wall time (the mosquitto profile, i.e. 2.0.15 on): closed at 5, interval 10: ends at 15
    scn = expiry_scenario("wall time", [[8, 10]]) if how == "override" else \
        expiry_scenario(None, [[8, 10]]).updated({"broker.profile": "mosquitto"})
    res = sim.run(scn, record_messages=True)
    assert res.scenario.broker.restored_session_expiry == "wall time"
    assert present(res, "c-0") == (False, False)
    assert fates(res, "c-0") == {1: ("delivered", 1, 0), 6: ("session_expired", 15, 0), 55: ("delivered", 55, 0)}


def test_wall_time_deadline_passed_while_down_ends_the_session_at_the_start():
    res = sim.run(expiry_scenario("wall time", [[8, 20]]), record_messages=True)
    assert fates(res, "c-0")[6] == ("session_expired", 20, 0)
    ev = res.events
    assert ev[(ev.event == "session_expired")].time.tolist() == [20]


def test_a_client_connected_at_the_stop_counts_from_the_stop():
    # connected until the stop at 20 (no own outage): wall time counts its 10 s from 20; down
    # until 35, so it has expired when the broker starts; on reconnect it survives
    base = dict(outages=((50, 51),), publishes=(1,), horizon=60)
    wall = sim.run(expiry_scenario("wall time", [[20, 35]], **base), record_messages=True)
    assert present(wall, "c-0")[1] is False and connect_times(wall, "c-0")[1] == 35
    kept = sim.run(expiry_scenario("on reconnect", [[20, 35]], **base), record_messages=True)
    assert present(kept, "c-0")[1] is True
    near = sim.run(expiry_scenario("wall time", [[20, 29]], **base), record_messages=True)  # 30 > 29: resumed
    assert present(near, "c-0")[1] is True


# --------------------------------------------------------------------------- crash


def test_crash_returns_to_the_last_autosave():
    # autosave every 10 s: saves at 10 and 20; crash at 25, back at 27.
    # a (offline 5-22): 7, 12 queued, in the save at 20; 21 queued after it; all delivered at 22,
    #   23 online. The crash restores the save at 20: 7 and 12 queued again (their acknowledgements
    #   are lost), re-sent at the reconnect at 27: two duplicates. Nothing lost.
    # b (offline 15-30): saved at 20 with an empty queue; 21 and 23 arrived after the save: lost.
    #   Its session is restored: Session Present 1 at 30, and 30 is delivered.
    # n (joins at 22, away 23-29): its session was created after the last save: lost with 23;
    #   Session Present 0 at 29.
    scn = scenario([consumer("a", outages=trace((5, 22))), consumer("b", outages=trace((15, 30))),
                    consumer("n", outages=trace((None, 22), (23, 29)))],
                   publisher([1, 7, 12, 21, 23, 30]), restarts={"trace": [[25, 27]], "kind": "crash"},
                   persistence=True, **{"autosave interval": 10})
    res = sim.run(scn, record_messages=True)
    assert fates(res, "a-0") == {1: ("delivered", 1, 0), 7: ("delivered", 22, 1), 12: ("delivered", 22, 1),
                                 21: ("delivered", 22, 0), 23: ("delivered", 23, 0), 30: ("delivered", 30, 0)}
    assert present(res, "a-0") == (False, True, True) and connect_times(res, "a-0") == (0, 22, 27)
    assert fates(res, "b-0") == {1: ("delivered", 1, 0), 7: ("delivered", 7, 0), 12: ("delivered", 12, 0),
                                 21: ("broker_restart", 25, 0), 23: ("broker_restart", 25, 0), 30: ("delivered", 30, 0)}
    assert present(res, "b-0") == (False, True)
    assert fates(res, "n-0") == {23: ("broker_restart", 25, 0), 30: ("delivered", 30, 0)}
    assert present(res, "n-0") == (False, False)
    s = res.summary
    assert s.duplicates == 2 and s.lost_broker_restart == 3 and s.lost == 3
    assert res.events[res.events.event == "autosave"].time.tolist() == [10, 20, 37]  # and every 10 s from the start


def test_graceful_stop_instead_keeps_everything():
    # the same fleet with a graceful stop: the state at 25 is saved, so nothing is lost or repeated
    scn = scenario([consumer("a", outages=trace((5, 22))), consumer("b", outages=trace((15, 30))),
                    consumer("n", outages=trace((None, 22), (23, 29)))],
                   publisher([1, 7, 12, 21, 23, 30]), restarts={"trace": [[25, 27]], "kind": "graceful"},
                   persistence=True, **{"autosave interval": 10})
    res = sim.run(scn, record_messages=True)
    assert res.summary.lost == 0 and res.summary.duplicates == 0
    assert present(res, "n-0") == (False, True)


def test_crash_with_autosave_0_returns_to_the_state_at_the_last_start():
    # autosave 0: nothing is saved while running, and a crash saves nothing either. The consumer
    # is away 3-14 and 22-30. The first crash (10) finds no saved state: its session and 5 are
    # lost; it connects at 14 (its own network is back; the broker since 12) with Session Present
    # 0. The second crash (25) again finds nothing saved: 23, queued since 22, is lost with the
    # session created at 14.
    scn = scenario(consumer(outages=trace((3, 14), (22, 30))), publisher([1, 5, 20, 23, 35]),
                   restarts={"trace": [[10, 12], [25, 27]], "kind": "crash"}, persistence=True,
                   **{"autosave interval": 0})
    res = sim.run(scn, record_messages=True)
    assert connect_times(res, "c-0") == (0, 14, 30) and present(res, "c-0") == (False, False, False)
    assert fates(res, "c-0") == {1: ("delivered", 1, 0), 5: ("broker_restart", 10, 0), 20: ("delivered", 20, 0),
                                 23: ("broker_restart", 25, 0), 35: ("delivered", 35, 0)}
    assert res.events[res.events.event == "autosave"].empty


def test_crash_undoes_a_loss_booked_after_the_save():
    # wall time off (2.0.11): b is offline from 5 with interval 10; the save at 10 holds 7;
    # the session expires at 15 (7 lost), but the crash at 20 restores the save of 10, where the
    # session and 7 still exist, and the restored session does not expire until b reconnects at 30:
    # 7 is delivered after all (its loss is undone, one fate per pair).
    scn = scenario(consumer(**{"session expiry interval": 10, "outages": trace((5, 30))}), publisher([1, 7, 35]),
                   restarts={"trace": [[20, 22]], "kind": "crash"}, persistence=True, **{"autosave interval": 10})
    res = sim.run(scn, record_messages=True)
    assert fates(res, "c-0") == {1: ("delivered", 1, 0), 7: ("delivered", 30, 0), 35: ("delivered", 35, 0)}
    assert present(res, "c-0") == (False, True)
    assert res.summary.sessions_expired == 1 and res.summary.lost == 0


# --------------------------------------------------------------------------- clients around a restart


def test_publishers_buffer_while_the_broker_is_down():
    # offline buffer 1: 20.5 is buffered, 21 and 21.5 are lost on the publisher's side; at 22 the
    # consumer reconnects first (Session Present 0, subscribes), then the publisher sends 20.5
    scn = scenario(consumer(), publisher([1, 20.5, 21, 21.5, 23], **{"offline buffer": 1}), restarts=RESTART)
    res = sim.run(scn, record_messages=True)
    assert fates(res, "c-0") == {1: ("delivered", 1, 0), 20.5: ("delivered", 22, 0), 21: ("publisher_offline", 21, 0),
                                 21.5: ("publisher_offline", 21.5, 0), 23: ("delivered", 23, 0)}


def test_clients_reconnect_with_their_back_off():
    # back-off 1, 2, 4 s from the stop at 20: attempts at 21 and 23; the broker is back at 22.5,
    # so the consumer reconnects at 23 (22.7 finds no session, 23.5 is delivered)
    scn = scenario(consumer(outages={"reconnect": {"initial delay": 1, "max delay": 8}}), publisher([1, 22.7, 23.5]),
                   restarts={"trace": [[20, 22.5]]})
    res = sim.run(scn, record_messages=True)
    assert connect_times(res, "c-0") == (0, 23)
    assert fates(res, "c-0") == {1: ("delivered", 1, 0), 22.7: ("no_session", 22.7, 0), 23.5: ("delivered", 23.5, 0)}


def test_departed_clients_traffic_lost_at_a_restart_is_departed():
    # d leaves for good at 5; its session (interval 100) holds 10, which the restart destroys:
    # departed_expired, not loss
    scn = scenario([consumer("d", outages=trace((5, None))), consumer("k")], publisher([1, 10, 25]), restarts=RESTART)
    res = sim.run(scn, record_messages=True)
    assert fates(res, "d-0") == {1: ("delivered", 1, 0), 10: ("departed_expired", 20, 0)}
    assert res.summary.lost == 0 and res.summary.departed_expired == 1


def test_a_client_that_does_not_reconnect_by_itself_departs_at_the_stop():
    # auto reconnect false: the drop at 20 is its departure (it never connects again); 15 and 19.5
    # were delivered before it, and 25 is not routed to it (a departed client without a session)
    scn = scenario([consumer("once", **{"auto reconnect": False}), consumer("k")], publisher([15, 19.5, 25]),
                   restarts=RESTART)
    res = sim.run(scn, record_messages=True)
    assert connect_times(res, "once-0") == (0,)
    assert fates(res, "once-0") == {15: ("delivered", 15, 0), 19.5: ("delivered", 19.5, 0)}
    assert res.summary.departures == 1 and res.summary.lost == 0
    assert fates(res, "k-0")[25] == ("delivered", 25, 0)


def test_departed_clients_session_restored_is_routed_to_again():
    scn = scenario([consumer("d", outages=trace((5, None)))], publisher([1, 10, 25]), restarts=RESTART,
                   persistence=True)
    res = sim.run(scn, record_messages=True)
    assert fates(res, "d-0") == {1: ("delivered", 1, 0), 10: ("departed_held", 40, 0), 25: ("departed_held", 40, 0)}
    mem = res.memory
    assert mem[mem.time >= 22].iloc[0].stranded_bytes > 0


def test_horizon_while_the_broker_is_down():
    # down from 20 to beyond the horizon: the saved queue is pending (it will be restored)
    scn = scenario(consumer(outages=trace((5, 30))), publisher([1, 10, 15]), restarts={"trace": [[20, 100]]},
                   persistence=True)
    res = sim.run(scn, record_messages=True)
    assert fates(res, "c-0") == {1: ("delivered", 1, 0), 10: ("pending", 40, 0), 15: ("pending", 40, 0)}
    assert res.summary.sessions_final == 0


# --------------------------------------------------------------------------- random restarts, determinism


RANDOM = {"up": {"distribution": "exponential", "mean": "2m"}, "down": {"distribution": "fixed", "value": 5},
          "kind": "crash"}


def random_scenario(**broker):
    return sim.load_scenario({"name": "random-restarts", "horizon": "1h",
                              "broker": {"profile": "mosquitto-2.0.11", "persistence": True, "autosave interval": 30,
                                         "restarts": RANDOM, **broker},
                              "mqttConsumer": {"clients": 5, "qos": 1, "session expiry interval": 300,
                                               "clean start": False,
                                               "outages": {"up": {"distribution": "exponential", "mean": "5m"},
                                                           "down": {"distribution": "exponential", "mean": "1m"},
                                                           "reconnect": {"initial delay": 1, "jitter": 0.5}}},
                              "mqttPublisher": {"clients": 2, "qos": 1, "rate": "1/s", "offline buffer": 3}})


def test_random_restarts_are_deterministic_and_conserve_pairs():
    a, b = sim.run(random_scenario(), seed=3), sim.run(random_scenario(), seed=3)
    assert a.summary.equals(b.summary) and a.events.equals(b.events)
    stops = a.events[a.events.event == "broker_stop"].time.to_numpy()
    assert len(stops) >= 10  # about one every 2 min 5 s over an hour
    starts = a.events[a.events.event == "broker_start"].time.to_numpy()
    assert np.allclose(starts[:len(stops)] - stops[:len(starts)], 5)
    assert a.summary.lost_broker_restart > 0 and a.summary.duplicates > 0
    assert a.summary.routed == a.summary.delivered + a.summary.lost + a.summary.pending + a.summary.departed_pairs
    c = sim.run(random_scenario(), seed=4)
    assert not c.events.equals(a.events)


def test_restarts_draw_from_their_own_stream():
    # the publishers' draws do not depend on the restarts: the same messages are produced
    base = sim.run(random_scenario().updated({"broker.restarts": None}), seed=3)
    with_restarts = sim.run(random_scenario(), seed=3)
    assert base.summary.published == with_restarts.summary.published


# --------------------------------------------------------------------------- engines


def test_interval_engine_refuses_restarts_and_auto_falls_back():
    scn = random_scenario()
    with pytest.raises(EngineError, match=r"broker\.restarts \(broker restarts\)"):
        sim.run(scn, engine="interval")
    from sim.interval import unsupported

    assert "broker.restarts (broker restarts)" in unsupported(scn)
    assert unsupported(scn.updated({"broker.restarts": None})) == []
    assert sim.run(scn, engine="auto").engine == "exact"


# --------------------------------------------------------------------------- settings


def test_yaml_and_python_objects_agree(tmp_path):
    text = """
name: restarts
horizon: 40
broker:
  profile: mosquitto-2.0.11
  persistence: true
  autosave interval: 10
  restored session expiry: wall time
  restarts:
    trace: [[25, 27]]
    kind: crash
mqttConsumer: {client id: c, qos: 1, session expiry interval: 100, clean start: false, outages: {trace: [[5, 22]]}}
mqttPublisher: {qos: 1, topic: t/x, schedule: [1, 7, 12, 21, 23, 30]}
"""
    path = tmp_path / "r.yaml"
    path.write_text(text)
    from_yaml = sim.load_scenario(path)
    broker = sim.BrokerConfig(profile="mosquitto-2.0.11", persistence=True, autosave_interval="10s",
                              restored_session_expiry="wall_time", restarts=sim.Restarts(trace=[[25, 27]], kind="crash"))
    in_python = sim.Scenario(name="restarts", horizon=40, broker=broker,
                             consumers=[sim.ConsumerBlock(client_id="c", qos=1, session_expiry_interval=100,
                                                          clean_start=False, outages={"trace": [[5, 22]]})],
                             publishers=[sim.PublisherBlock(qos=1, topic="t/x", schedule=[1, 7, 12, 21, 23, 30])])
    assert from_yaml.broker == broker
    assert from_yaml == in_python
    snake = sim.load_scenario({**from_yaml.to_dict(), "broker": {"profile": "mosquitto-2.0.11", "persistence": True,
                                                                  "autosave_interval": 10,
                                                                  "restored_session_expiry": "wall time",
                                                                  "restarts": {"trace": [[25, 27]], "kind": "crash"}}})
    assert snake == from_yaml
    assert sim.Scenario.from_dict(in_python.to_dict()) == in_python  # round trip of a Python-built scenario
    a, b = sim.run(from_yaml, record_messages=True), sim.run(in_python, record_messages=True)
    assert a.summary.drop("seed").equals(b.summary.drop("seed")) and a.messages.equals(b.messages)
    assert a.summary.duplicates == 2  # 7 and 12 were delivered after the save at 20


@pytest.mark.parametrize("broker, field, value, allowed", [
    ({"restarts": {"trace": [[20, 22]], "kind": "reboot"}}, "broker.restarts.kind", "reboot", "graceful, crash"),
    ({"restarts": {"trace": [[20, 20]]}}, "broker.restarts.trace[0]", "[20, 20]", "back at must be > stop at"),
    ({"restarts": {"trace": [[22, 20]]}}, "broker.restarts.trace[0]", "[22, 20]", "back at must be > stop at"),
    ({"restarts": {"trace": [[20, 30], [25, 40]]}}, "broker.restarts.trace[1]", "[25, 40]", "in time order"),
    ({"restarts": {"trace": [[0, 5]]}}, "broker.restarts.trace[0][0]", "0", "> 0 seconds"),
    ({"restarts": {"trace": [[20, None]]}}, "broker.restarts.trace[0][1]", "None", "the broker comes back"),
    ({"restarts": {"trace": []}}, "broker.restarts.trace", "[]", "[stop at, back at]"),
    ({"restarts": {"kind": "crash"}}, "broker.restarts.trace", "None", "or up and down distributions"),
    ({"restarts": {"up": {"distribution": "fixed", "value": 5}}}, "broker.restarts.down", "None", "give both up and down"),
    ({"restarts": {"trace": [[1, 2]], "up": {"distribution": "fixed", "value": 5}}}, "broker.restarts.up", "",
     "cannot be combined with a trace"),
    ({"restarts": {"trace": [[1, 2]], "when": 3}}, "broker.restarts.when", "3", "allowed keys: down, kind, trace, up"),
    ({"autosave interval": -5}, "broker.autosave interval", "-5", ">= 0 seconds"),
    ({"persistence": "yes"}, "broker.persistence", "'yes'", "true or false"),
    ({"restored session expiry": "never"}, "broker.restored session expiry", "never", "on reconnect, wall time"),
])
def test_bad_values_name_field_value_and_what_is_allowed(broker, field, value, allowed):
    with pytest.raises(sim.ScenarioError) as err:
        scenario(consumer(), publisher([1]), **broker)
    msg = str(err.value)
    assert msg.startswith(f"{field}: "), msg
    assert value in msg and allowed in msg, msg


def test_python_object_errors_name_their_own_key():
    with pytest.raises(sim.ScenarioError, match=r"^restarts\.kind: 'reboot' is not one of: graceful, crash"):
        sim.Restarts(trace=[[1, 2]], kind="reboot")
    with pytest.raises(sim.ScenarioError, match=r"^broker\.autosave interval: -1 must be >= 0 seconds"):
        sim.BrokerConfig(autosave_interval=-1)


def test_profiles_say_which_restored_session_expiry_they_use():
    assert sim.BrokerConfig(profile="mosquitto-2.0.11").restored_session_expiry == "on reconnect"
    assert sim.BrokerConfig(profile="mosquitto").restored_session_expiry == "wall time"
    for name in ("emqx", "hivemq", "vernemq"):  # not known for these: the spec-like default
        assert sim.BrokerConfig(profile=name).restored_session_expiry == "wall time"
    b = sim.BrokerConfig(profile="mosquitto")
    assert b.persistence is False and b.autosave_interval == 1800 and b.restarts is None


# --------------------------------------------------------------------------- a busy fleet


FLEET = {"name": "fleet", "horizon": "20m",
         "mqttConsumer": [{"client id": "a", "clients": 4, "qos": 1, "session expiry interval": 60, "clean start": False,
                           "network latency": 0.3, "receive maximum": 2,
                           "outages": {"up": {"distribution": "exponential", "mean": "2m"},
                                       "down": {"distribution": "exponential", "mean": 40}, "leave probability": 0.1,
                                       "replace departed": True, "reconnect": {"initial delay": 1, "jitter": 0.5}}},
                          {"client id": "b", "clients": 3, "qos": 0, "session expiry interval": 20, "clean start": True,
                           "outages": {"up": {"distribution": "exponential", "mean": "3m"},
                                       "down": {"distribution": "exponential", "mean": 30},
                                       "reconnect clean start": False}}],
         "mqttPublisher": [{"clients": 2, "qos": 1, "rate": "2/s", "network latency": 0.2, "offline buffer": 5,
                            "session expiry interval": 30, "clean start": False, "message expiry interval": 50,
                            "outages": {"up": {"distribution": "exponential", "mean": "5m"},
                                        "down": {"distribution": "fixed", "value": 10}}},
                           {"clients": 1, "qos": 0, "rate": "1/s", "topic": "x/{id}"}]}


@pytest.mark.parametrize("persistence, kind, shared", [(False, "graceful", True), (True, "graceful", True),
                                                       (True, "crash", True), (True, "crash", False)])
def test_a_busy_fleet_conserves_pairs_and_holds_nothing_while_down(persistence, kind, shared):
    """Latency, Receive Maximum, departures with replacements, publisher outages and buffers,
    message expiry, queue limits: every pair still gets one fate (the run checks it, per pair
    too), and the broker's memory is 0 from each stop to the next start."""
    broker = {"profile": "mosquitto-2.0.11", "persistence": persistence, "autosave interval": 45,
              "shared message store": shared, "max queued messages": 5, "queue qos0 messages": True,
              "restarts": {"up": {"distribution": "exponential", "mean": "3m"},
                           "down": {"distribution": "exponential", "mean": 20}, "kind": kind}}
    res = sim.run(sim.load_scenario({**FLEET, "broker": broker}), seed=5, record_messages=True, memory_points=None)
    mem, ev, s = res.memory, res.events, res.summary
    stops = ev[ev.event == "broker_stop"].time.to_numpy()
    starts = ev[ev.event == "broker_start"].time.to_numpy()
    assert len(stops) >= 3
    for stop, start in zip(stops, list(starts) + [res.scenario.horizon]):
        down = mem[(mem.time >= stop) & (mem.time < start)]
        assert len(down) and (down[["bytes", "sessions", "queued"]] == 0).all().all(), (stop, start)
    assert (mem.drop(columns="time") >= 0).all().all()
    assert res.messages.fate.notna().all()
    assert s.routed == s.delivered + s.lost + s.pending + s.departed_pairs
    if persistence and kind == "graceful":
        assert s.lost_broker_restart < sim.run(res.scenario.updated({"broker.persistence": False}), seed=5).summary.lost_broker_restart


def test_a_profile_cannot_schedule_restarts(tmp_path):
    prof = tmp_path / "restarting.yaml"
    prof.write_text("name: restarting\nsettings:\n  restarts: {trace: [[1, 2]]}\n")
    with pytest.raises(sim.ScenarioError, match=r"^profile .*restarting\.yaml\.settings\.restarts: .* is an unknown key"):
        sim.BrokerConfig(profile=str(prof))


def test_a_sweep_compares_persistence_and_restart_kinds():
    """The restart settings are grid keys like any other: the crash fleet of
    test_crash_returns_to_the_last_autosave under each (persistence, kind)."""
    scn = scenario([consumer("a", outages=trace((5, 22))), consumer("b", outages=trace((15, 30))),
                    consumer("n", outages=trace((None, 22), (23, 29)))],
                   publisher([1, 7, 12, 21, 23, 30]), restarts={"trace": [[25, 27]], "kind": "crash"},
                   persistence=True, **{"autosave interval": 10})
    runs = sim.sweep(scn, grid={"broker.persistence": [False, True], "broker.restarts.kind": ["graceful", "crash"]},
                     replications=1, seed=0, progress=False)
    got = {(bool(p), k): (int(lost), int(dup)) for p, k, lost, dup in
           zip(runs["broker.persistence"], runs["broker.restarts.kind"], runs["lost_broker_restart"], runs["duplicates"])}
    # without persistence: b loses 21 and 23 with its session, n loses 23 (a held nothing at 25)
    assert got == {(False, "graceful"): (3, 0), (False, "crash"): (3, 0), (True, "graceful"): (0, 0), (True, "crash"): (3, 2)}


def test_a_loss_undone_before_the_warm_up_ends_is_not_counted():
    # as test_crash_undoes_a_loss_booked_after_the_save, measured from 8: 7 (produced before the
    # warm-up's end) is lost at 15 and restored at 22 without being counted; only 35 is
    scn = scenario(consumer(**{"session expiry interval": 10, "outages": trace((5, 30))}), publisher([1, 7, 35]),
                   restarts={"trace": [[20, 22]], "kind": "crash"}, persistence=True, **{"autosave interval": 10})
    with pytest.warns(UserWarning, match="warmup"):
        res = sim.run(scn, record_messages=True, warmup=8)
    s = res.summary
    assert (s.published, s.routed, s.delivered, s.lost) == (1, 1, 1, 0)
    assert res.messages.published_at.tolist() == [35]


def test_on_2_0_11_a_departed_devices_restored_session_is_held_for_good():
    # d leaves at 5 with interval 10: without a restart its session (and 7) ends at 15; restored
    # at 12 (on reconnect) it never expires: 7 and 20 are held to the horizon, stranded memory
    scn = scenario(consumer("d", **{"session expiry interval": 10, "outages": trace((5, None))}), publisher([1, 7, 20]),
                   restarts={"trace": [[10, 12]]}, persistence=True)
    kept = sim.run(scn, record_messages=True)
    assert fates(kept, "d-0") == {1: ("delivered", 1, 0), 7: ("departed_held", 40, 0), 20: ("departed_held", 40, 0)}
    assert kept.memory.stranded_bytes.iloc[-1] > 0
    wall = sim.run(scn.updated({"broker.restored session expiry": "wall time"}), record_messages=True)
    assert fates(wall, "d-0") == {1: ("delivered", 1, 0), 7: ("departed_expired", 15, 0)}
    assert wall.memory.stranded_bytes.iloc[-1] == 0


@pytest.mark.parametrize("persistence", [False, True])
@pytest.mark.parametrize("kind", ["graceful", "crash"])
def test_restarts_during_network_outages(persistence, kind):
    """Both faults at once (a broker restart inside a fleet-wide network outage, back-off with
    jitter, departures): every pair keeps exactly one fate (the run checks it), nobody is
    connected while the broker is down, and a graceful restart with persistence loses
    nothing to the restart (without persistence it ends every session; a crash loses what
    changed since the last autosave)."""
    d = {"name": "both", "horizon": 200,
         "broker": {"profile": "mosquitto-2.0.11", "persistence": persistence, "autosave interval": 5,
                    "restarts": {"trace": [[50, 60], [120, 121]], "kind": kind}},
         "network outages": {"trace": [[55, 80], [118, 130]], "fraction": 0.5},
         "mqttConsumer": {"clients": 6, "session expiry interval": 30, "clean start": False, "qos": 1,
                          "outages": {"up": {"distribution": "exponential", "mean": 20},
                                      "down": {"distribution": "exponential", "mean": 5},
                                      "leave probability": 0.1, "replace departed": True,
                                      "reconnect": {"initial delay": 0.5, "max delay": 4, "multiplier": 2,
                                                    "jitter": 0.5}}},
         "mqttPublisher": {"qos": 1, "rate": 2}}
    scn = sim.load_scenario(d)
    restart_losses = 0
    for seed in range(4):
        res = sim.run(scn, seed=seed)
        ev = res.events
        connects = ev[(ev["event"] == "connect") & (ev["time"] > 50) & (ev["time"] < 60)]
        assert connects.empty  # the broker is down
        assert res.summary["network_outages"] == 2
        restart_losses += int(res.summary["lost_broker_restart"])
    if persistence and kind == "graceful":
        assert restart_losses == 0
    elif not persistence:
        assert restart_losses > 0
