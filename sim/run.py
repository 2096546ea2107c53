"""``sim.run(scenario, seed)``: one simulation run and its :class:`Result`.

Randomness: one ``numpy.random.SeedSequence`` per run, spawned into one child per block and
one per client slot, and each slot's into one stream per source of randomness (up-times and
down-times, back-off jitter, publish times). The same seed therefore gives the same run, and
two policies run with the same seed see the same outages and publishes (common random numbers).
"""
from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import simpy

from .broker import Broker
from .clients import Fleet, Publisher
from .config import Scenario, client_id_prefixes
from .eventlog import EventLog
from .ledger import FateLedger
from .memory import MemoryMonitor, thin
from .network import STORM_FIELDS, NetworkPlan, storm_frame, storm_summary
from .protocol import DEPARTED_FATES, LOSS_CAUSES


@dataclass
class Result:
    """What one run produced: tidy pandas objects (see docs/api-contract.md)."""

    scenario: Scenario
    seed: int
    summary: pd.Series
    fates: pd.DataFrame
    memory: pd.DataFrame
    events: pd.DataFrame
    messages: pd.DataFrame | None
    wall_seconds: float
    engine: str = "exact"  #: "exact" (message by message) or "interval" (see sim.run's ``engine``)
    #: one row per network outage (sim.network.COLUMNS): when, who dropped, the reconnect storm and its peaks
    network_outages: pd.DataFrame | None = None
    #: "times" (every publish time drawn) or "counts" (the stream kept as counts between the
    #: fleet's connection changes, sim.counts: time integrals are their conditional means)
    stream: str = "times"

    @property
    def not_simulated(self) -> list[str]:
        """Transport attributes of the scenario the model accepts but does not simulate."""
        return self.scenario.not_simulated

    def __repr__(self) -> str:
        s = self.summary
        return (f"<Result {self.scenario.name!r} seed={self.seed}: routed={int(s['routed'])} "
                f"lost={int(s['lost'])} loss_ratio={s['loss_ratio']:.4g} peak={s['memory_peak_bytes']:.0f} B>")


#: ``engine="auto"`` uses the interval engine when it can compute the scenario and the
#: message-by-message engine would visit more (message, consumer) pairs than this.
AUTO_INTERVAL_PAIRS = 2_000_000

#: ... and, where queues are kept message by message (message expiry, drop-oldest), the
#: interval engine would hold at most about this many queued messages' records.
AUTO_INTERVAL_HELD = 3_000_000

ENGINES = ("auto", "exact", "interval", "fast")  # "fast": another name for "interval"
STREAMS = ("auto", "times", "counts")


class EngineError(ValueError):
    """The chosen engine cannot compute this scenario (names what it does not support)."""


#: Most (message, consumer) rows ``record_messages=True`` may keep (about 2 GiB as a DataFrame).
MAX_MESSAGE_ROWS = 20_000_000

#: ``record_events=None`` keeps the event rows when a run makes at most about this many
#: connection changes (a row each), and only counts them past it.
AUTO_EVENT_ROWS = 1_000_000

#: Most messages a run may publish with every publish time drawn (the interval engine keeps
#: each, about 30 bytes while it runs; the exact engine visits each one). Past it,
#: ``stream="auto"`` keeps the stream as counts (:mod:`sim.counts`) where it can.
MAX_MESSAGES = 250_000_000


def run(scenario: Scenario, seed: int = 0, *, record_messages: bool | None = None, record_events: bool | None = None,
        record_memory: bool = True, engine: str = "auto", memory_points: int | None = 100_000,
        warmup: float = 0.0, progress: bool = False, stream: str = "auto") -> Result:
    """Simulate ``scenario`` from time 0 to its horizon with random seed ``seed``.

    ``record_messages`` keeps one row per (message, consumer) pair in ``Result.messages``;
    None records them when every publisher block publishes on a schedule (with the exact
    engine). Events at or after
    the horizon are not simulated. Raises :class:`~sim.ledger.ConservationError` if a pair
    ends with no fate or with two.

    ``engine``: ``"exact"`` simulates message by message (:mod:`sim.broker` on SimPy);
    ``"interval"`` computes per connection interval (:mod:`sim.interval`): the same fates,
    counters and memory statistics for the same seed, at a cost that grows with connection
    changes rather than messages, for the scenarios it supports (it raises
    :class:`EngineError` naming what it does not, and keeps no per-message records);
    ``"fast"`` is another name for ``"interval"`` (the fast path);
    ``"auto"`` (default) takes the interval engine when it can and the run is large
    (about :data:`AUTO_INTERVAL_PAIRS` pairs or more), else the exact one.
    ``Result.engine`` says which ran (``"exact"`` or ``"interval"``).

    ``warmup`` (seconds, 0 <= warmup < horizon): only messages produced at or after it count
    (published, routed, fates, loss ratio), and the time-persistent statistics (memory peak
    and means, byte-seconds, queued messages) cover [warmup, horizon). A warning says when it
    is shorter than the longest finite Session Expiry Interval plus the mean outage: sessions
    started before it still hold what they queued then (docs/model.md, "Warm-up").

    ``record_events``: keep one row per lifecycle event in ``Result.events`` (the summary
    counts them either way); None keeps them unless the run makes more than about
    :data:`AUTO_EVENT_ROWS` connection changes (the interval engine then settles whole
    lives in arrays, :mod:`sim.renewal`).

    ``stream``: ``"times"`` draws every publish time; ``"counts"`` (interval engine, consumers
    with drawn outages, publishers with a rate) keeps the publish stream as Poisson counts
    between the fleet's connection changes, in epochs of time (:mod:`sim.counts`): memory
    and time no longer grow with messages, so horizons of UINT_MAX seconds and past it run
    at one message per second. Its fates, peaks and final values are those of a Poisson
    stream; its time integrals (byte-seconds, means) are their exact conditional means given
    the counts (docs/model.md, "A stream kept as counts"). ``"auto"`` (default) keeps the
    counts when the run would publish more than :data:`MAX_MESSAGES` messages, else the
    times; runs that exceed it and cannot keep counts are refused before they start, with
    the reasons. ``Result.stream`` says which.

    ``progress``: show a progress bar (tqdm, on stderr) over simulated time (exact engine,
    counts stream) or client slots (interval engine); it changes nothing in the results.

    ``memory_points``: ``Result.memory`` is thinned to about this many rows for plotting
    (:func:`sim.memory.thin`; None keeps every row); the summary's memory statistics always
    come from the whole step function. ``record_messages=True`` is refused for runs that
    would route more than :data:`MAX_MESSAGE_ROWS` pairs.
    """
    if not isinstance(scenario, Scenario):
        raise TypeError(f"run() needs a sim.Scenario (from sim.load_scenario), not {type(scenario).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: {seed!r} must be an integer >= 0")
    if engine not in ENGINES:
        raise ValueError(f"engine: {engine!r} is not one of {', '.join(ENGINES)}")
    if engine == "fast":
        engine = "interval"
    if isinstance(warmup, bool) or not isinstance(warmup, (int, float, np.integer, np.floating)) \
            or not 0 <= warmup < scenario.horizon:
        raise ValueError(f"warmup: {warmup!r} must be a number of seconds >= 0 and below the horizon "
                         f"({scenario.horizon:g} s)")
    warmup = float(warmup)
    if warmup > 0:
        _warn_short_warmup(scenario, warmup)
    if record_messages is True and (pairs := _expected_pairs(scenario)) > MAX_MESSAGE_ROWS:
        raise ValueError(f"record_messages: this run would route about {pairs:,.0f} (message, "
                         f"consumer) pairs, more rows than can be kept ({MAX_MESSAGE_ROWS:,}); use the summary and "
                         "res.fates, or a shorter horizon")
    if stream not in STREAMS:
        raise ValueError(f"stream: {stream!r} is not one of {', '.join(STREAMS)}")
    msgs = _expected_messages(scenario)
    chosen_stream = ("counts" if msgs > MAX_MESSAGES else "times") if stream == "auto" else stream
    if chosen_stream == "counts":
        refused = _counts_refusals(scenario, engine, record_messages, record_events, warmup)
        if refused and stream == "auto":
            raise ValueError(f"horizon: this run would publish about {msgs:,.0f} messages (rate x horizon), more than "
                             f"one run can hold with every publish time ({MAX_MESSAGES:,}); the stream could be kept as "
                             "counts, but not here: " + "; ".join(refused) + "; lower mqttPublisher.rate or the horizon")
        if refused:
            why = (f"this run would publish about {msgs:,.0f} messages, more than can be held with every publish "
                   f"time ({MAX_MESSAGES:,}), and " if msgs > MAX_MESSAGES else "")
            raise EngineError(f"stream 'counts': {why}it cannot keep the stream as counts here: " + "; ".join(refused))
        return _run_counts(scenario, int(seed), record_memory, memory_points, progress)
    if msgs > MAX_MESSAGES:
        raise ValueError(f"horizon: this run would publish about {msgs:,.0f} messages (rate x horizon), more than one "
                         f"run can hold with every publish time ({MAX_MESSAGES:,}): use stream='counts' or 'auto'")
    if record_events is None:
        record_events = _expected_connection_changes(scenario) <= AUTO_EVENT_ROWS
    chosen = _choose_engine(scenario, engine, record_messages is True, warmup)
    if record_messages is None:
        record_messages = chosen == "exact" and bool(scenario.publishers) and all(
            p.schedule is not None for p in scenario.publishers)
    started = time.perf_counter()
    if chosen == "interval":
        from .interval import IntervalEngine

        eng = IntervalEngine(scenario, int(seed), record_events, record_memory, memory_points).run(progress=progress)
        return _interval_result(scenario, int(seed), eng, memory_points, started, "times")
    env = simpy.Environment()
    # the storm's peaks come from the whole step function: kept whenever there are network outages
    fates, log = FateLedger(record_messages, warmup), EventLog(record_events)
    memory = MemoryMonitor(record_memory or scenario.network_outages is not None)
    broker = Broker(env, scenario.broker, scenario.horizon, fates, memory, log)
    _schedule_measurement(env, broker, warmup, scenario.horizon)
    bar = _time_progress(env, scenario.horizon) if progress else None
    root = np.random.SeedSequence(int(seed))
    consumer_seed, publisher_seed = root.spawn(2)
    network = _network_plan(scenario, root)
    counter = itertools.count()
    nc = len(scenario.consumers)
    fleets = [Fleet(env, broker, b, i, p, s, network=network, position=i) for (i, b), p, s in
              zip(enumerate(scenario.consumers), client_id_prefixes(scenario.consumers),
                  consumer_seed.spawn(len(scenario.consumers)))]
    fleets += [Fleet(env, broker, b, i, p, s, next_id=lambda: next(counter), network=network, position=nc + i)
               for (i, b), p, s in zip(enumerate(scenario.publishers), client_id_prefixes(scenario.publishers),
                                       publisher_seed.spawn(len(scenario.publishers)))]
    for f in fleets:  # consumers first: at t = 0 they connect before anything is published
        f.start()
    if scenario.broker.restarts is not None:  # the third seed child: restarts draw from their own stream
        from .downtime import Downtime

        Downtime(env, broker, scenario.broker.restarts, fleets, np.random.SeedSequence(int(seed)).spawn(3)[2]).start()
    env.run(until=scenario.horizon)
    if bar is not None:
        bar.update(bar.total - bar.n)
        bar.close()
    _finish(broker, fleets)
    memory.close(scenario.horizon)
    fates.check_conservation()
    per_consumer = fates.fates_frame()
    steps = memory.frame()
    storms = storm_frame(network, steps, scenario.horizon)
    summary = _summary(scenario, seed, fates, memory.stats(scenario.horizon), log, len(broker.sessions), per_consumer,
                       storms)
    kept = thin(steps, memory_points, keep=list(zip(storms["start"], storms["storm_end"]))) if record_memory else steps.iloc[:0]
    return Result(scenario, int(seed), summary, per_consumer, kept, log.frame(),
                  fates.messages_frame() if record_messages else None, time.perf_counter() - started, "exact", storms)


def _counts_refusals(scenario: Scenario, engine: str, record_messages, record_events, warmup: float) -> list[str]:
    """Why a run cannot keep its publish stream as counts (empty: it can)."""
    from .counts import unsupported

    reasons = []
    if engine == "exact":
        reasons.append("engine='exact' (the message-by-message engine draws every publish time)")
    reasons += unsupported(scenario)
    if warmup > 0:
        reasons.append("warmup > 0 (the interval engine measures from t = 0)")
    if record_messages:
        reasons.append("record_messages=True (per-message records)")
    if record_events:
        reasons.append("record_events=True (event rows: the counts stream only counts events)")
    return reasons


def _run_counts(scenario: Scenario, seed: int, record_memory: bool, memory_points, progress: bool) -> Result:
    """A run over a stream kept as counts (sim.counts); the caller has checked it can be."""
    from .counts import CountsEngine

    started = time.perf_counter()
    eng = CountsEngine(scenario, seed, record_memory, memory_points).run(progress=progress)
    return _interval_result(scenario, seed, eng, memory_points, started, "counts")


def _interval_result(scenario: Scenario, seed: int, eng, memory_points, started: float, stream: str) -> Result:
    """The Result of an interval-engine run (every publish time, or counts): conservation
    checked, fates per consumer, memory, the summary."""
    eng.fates.check_conservation()
    per_consumer = eng.fates.fates_frame()
    stats, memory_frame = eng.memory_result()
    storms = storm_frame(None, memory_frame, scenario.horizon)  # the interval engine takes no network outages
    summary = _summary(scenario, seed, eng.fates, stats, eng.log, eng.sessions_final, per_consumer, storms)
    return Result(scenario, seed, summary, per_consumer, thin(memory_frame, memory_points), eng.log.frame(), None,
                  time.perf_counter() - started, "interval", storms, stream=stream)


def _network_plan(scenario: Scenario, root: np.random.SeedSequence) -> NetworkPlan | None:
    """The run's network outages, drawn from the root's third child (spawned only for a
    scenario that has them, so other scenarios' streams do not change)."""
    if scenario.network_outages is None:
        return None
    slots = [b.clients for b in scenario.consumers] + [b.clients for b in scenario.publishers]
    return NetworkPlan(scenario.network_outages, slots, scenario.horizon, root.spawn(1)[0])


def _schedule_measurement(env: simpy.Environment, broker: Broker, warmup: float, horizon: float) -> None:
    """The warm-up's end and the measured period's midpoint, on the simulation clock."""
    from .timing import PRIORITY_EXPIRY, Alarm

    if warmup > 0:
        def book_warmup():  # the warm-up's pairs booked in bulk (up to now) are not counted
            broker.members.flush_all()
            broker.fates.suspended = False

        Alarm(env, warmup, PRIORITY_EXPIRY, lambda _e: book_warmup())  # before messages at that instant
        Alarm(env, warmup, PRIORITY_LAST, lambda _e: broker.memory.reset(env.now))  # after everything then
    Alarm(env, warmup + (horizon - warmup) / 2, PRIORITY_LAST, lambda _e: broker.memory.mark(env.now))


def _time_progress(env: simpy.Environment, horizon: float):
    """A progress bar over simulated time, advanced by 200 timers that change nothing else."""
    from tqdm import tqdm

    from .timing import Alarm

    bar = tqdm(total=200, desc="simulated time", unit="%", bar_format="{l_bar}{bar}| {n:.0f}/200 [{elapsed}<{remaining}]")
    for i in range(1, 200):
        Alarm(env, horizon * i / 200, PRIORITY_LAST, lambda _e: bar.update(1))
    return bar


#: Same-instant priority of measurement events: after every model event at that instant.
PRIORITY_LAST = 3


class WarmupWarning(UserWarning):
    """The warm-up is shorter than the sessions it should let settle (see docs/model.md)."""


def _warn_short_warmup(scenario: Scenario, warmup: float) -> None:
    import warnings

    from .protocol import UINT_MAX

    longest = 0.0
    for c in scenario.consumers:
        e = min(c.session_expiry_interval, scenario.broker.max_session_expiry_interval)
        if e == UINT_MAX and scenario.broker.uint_max_never_expires:
            continue
        outage = c.outages.down.mean if c.outages.up is not None else 0.0
        longest = max(longest, e + (outage if math.isfinite(outage) else 0.0))
    if warmup < longest:
        warnings.warn(f"warmup {warmup:g} s is shorter than the longest finite session expiry interval plus the "
                      f"mean outage ({longest:g} s): sessions opened during the warm-up may still hold messages "
                      "queued before it, so the first measured stretch is not yet in steady state", WarmupWarning,
                      stacklevel=3)


def _choose_engine(scenario: Scenario, engine: str, record_messages: bool, warmup: float = 0.0) -> str:
    if engine == "exact":
        return "exact"
    from .interval import unsupported

    reasons = unsupported(scenario)
    if warmup > 0:
        reasons = reasons + ["warmup > 0 (the interval engine measures from t = 0)"]
    if record_messages:
        reasons = reasons + ["record_messages=True (per-message records are kept by the exact engine only)"]
    if engine == "interval":
        if reasons:
            raise EngineError("engine 'interval' cannot compute this scenario: " + "; ".join(reasons)
                              + " (use engine='exact' or 'auto')")
        return "interval"
    if reasons:
        return "exact"
    if _expected_pairs(scenario) < AUTO_INTERVAL_PAIRS:
        return "exact"
    # queues whose messages leave one by one (message expiry, drop-oldest evictions) are kept
    # message by message by the interval engine (about 400 bytes each while it runs): past
    # AUTO_INTERVAL_HELD of them the exact engine, slower but small, is chosen. Other queues
    # are ranges of the publish stream, whatever their length (sim.ramps).
    b = scenario.broker
    one_by_one = any(p.message_expiry_interval is not None for p in scenario.publishers) or (
        b.queue_full_policy == "drop-oldest" and bool(b.max_queued_messages or b.max_queued_bytes))
    return "exact" if one_by_one and _expected_held(scenario) > AUTO_INTERVAL_HELD else "interval"


def _cycles(outages, horizon: float) -> float:
    """About how many up/down cycles drawn outages make over the horizon (1 if a mean is infinite)."""
    cycle = outages.up.mean + outages.down.mean
    return horizon / cycle if math.isfinite(cycle) and cycle > 0 else 1.0


def _expected_connection_changes(scenario: Scenario) -> float:
    """About how many connects and disconnects a run makes (its event rows)."""
    n = 0.0
    for c in [*scenario.consumers, *scenario.publishers]:
        o = c.outages
        if o.up is not None:
            n += c.clients * 2 * _cycles(o, scenario.horizon)
        elif o.traces is not None:
            n += 2 * sum(len(t) for t in o.traces) + c.clients
        else:
            n += c.clients
    return n


def _expected_held(scenario: Scenario) -> float:
    """About how many queued (message, session) entries a run books: the pairs routed while
    consumers are offline (from their mean up- and down-times), plus up to a full queue for
    each departure of a client whose session outlives it."""
    msgs = _expected_messages(scenario)
    held = 0.0
    for c in scenario.consumers:
        o = c.outages
        if o.up is not None:
            up, down = o.up.mean, o.down.mean
            offline = down / (up + down) if math.isfinite(up + down) and up + down > 0 else 1.0
            departures = c.clients * _cycles(o, scenario.horizon) * (o.leave_probability or 0.0)
        else:
            offline, departures = 1.0, c.clients
        cap = scenario.broker.max_queued_messages or msgs
        held += c.clients * msgs * offline + departures * min(cap, msgs)
    return held


def _expected_pairs(scenario: Scenario) -> float:
    """About how many (message, consumer) pairs a run routes: messages published x consumers."""
    return _expected_messages(scenario) * sum(c.clients for c in scenario.consumers)


def _expected_messages(scenario: Scenario) -> float:
    """About how many messages the publishers produce over the horizon."""
    return sum(p.clients * (p.rate * scenario.horizon if p.rate is not None else len(p.schedule))
               for p in scenario.publishers)


def _finish(broker: Broker, fleets: list[Fleet]) -> None:
    """At the horizon, give every undecided pair ``pending`` (``departed_held`` for a client that left)."""
    broker.finish()
    broker.members.flush_all()  # book the pairs of members in a bulk mode
    for f in fleets:
        for c in f.clients:
            if isinstance(c, Publisher) and not c.departed:
                for msg in c.unrouted():
                    broker.settle_unrouted(msg, None)


def _summary(scenario: Scenario, seed: int, fates: FateLedger, memory_stats: dict, log: EventLog, sessions_final: int,
             per_consumer: pd.DataFrame, storms: pd.DataFrame) -> pd.Series:
    by_fate = fates.totals()
    routed = by_fate["routed"]
    lost = sum(by_fate[c] for c in LOSS_CAUSES)
    departed = sum(by_fate[f] for f in DEPARTED_FATES)
    returning = routed - departed
    data: dict[str, float] = {
        "published": fates.published,
        "routed": routed,
        "delivered": by_fate["delivered"],
        "duplicates": by_fate["duplicates"],
        "lost": lost,
        **{f"lost_{c}": by_fate[c] for c in LOSS_CAUSES},
        "pending": by_fate["pending"],
        "departed_pairs": departed,
        **{f: by_fate[f] for f in DEPARTED_FATES},
        "loss_ratio": lost / returning if returning else math.nan,
        **consumer_loss_spread(per_consumer),
        **memory_stats,
        "sessions_expired": log.counters["sessions_expired"],
        "sessions_discarded": log.counters["sessions_discarded"],
        "sessions_ended": log.counters["sessions_ended"],
        "sessions_final": sessions_final,
        "connects": log.counters["connects"],
        "disconnects": log.counters["disconnects"],
        "departures": log.counters["departures"],
        "protocol_errors": log.counters["protocol_errors"],
        **storm_summary(storms),
        "horizon": scenario.horizon,
        "seed": int(seed),
    }
    if list(data) != list(SUMMARY_FIELDS):  # one list of fields: catches a field added in one place only
        raise AssertionError(f"summary fields differ from SUMMARY_FIELDS: {sorted(set(data) ^ set(SUMMARY_FIELDS))}")
    return pd.Series(data, name=scenario.name)


#: Percentiles of per-consumer loss ratio reported in the summary.
SPREAD_PERCENTILES = (50, 90, 99)

_RATIO = (0.0, 1.0)
_COUNT = (0.0, math.inf)
#: Every field of ``Result.summary``, in order, with the range of values it can take (used by
#: :func:`sim.summarize` to keep confidence intervals inside what the metric can be).
SUMMARY_FIELDS: dict[str, tuple[float, float]] = {
    "published": _COUNT, "routed": _COUNT, "delivered": _COUNT, "duplicates": _COUNT, "lost": _COUNT,
    **{f"lost_{c}": _COUNT for c in LOSS_CAUSES},
    "pending": _COUNT, "departed_pairs": _COUNT, **{f: _COUNT for f in DEPARTED_FATES},
    "loss_ratio": _RATIO, "consumers_counted": _COUNT, "consumers_with_loss_fraction": _RATIO,
    **{f"consumer_loss_ratio_p{p}": _RATIO for p in SPREAD_PERCENTILES},
    "memory_peak_bytes": _COUNT, "memory_growth_bytes_per_day": (-math.inf, math.inf),
    **{k: _COUNT for k in ("memory_mean_bytes", "memory_final_bytes", "memory_byte_seconds",
                           "memory_mean_connected_bytes", "memory_mean_offline_bytes", "memory_mean_stranded_bytes",
                           "memory_mean_store_bytes", "queued_messages_mean", "queued_messages_peak",
                           "sessions_expired", "sessions_discarded", "sessions_ended", "sessions_final", "connects",
                           "disconnects", "departures", "protocol_errors")},
    **{k: _COUNT for k in STORM_FIELDS},
    "horizon": _COUNT, "seed": _COUNT,
}


def consumer_loss_spread(fates: pd.DataFrame) -> dict[str, float]:
    """How loss is spread over the consumers, from :attr:`Result.fates`.

    Counted over every consumer with at least one pair in the loss ratio's denominator
    (``routed - departed_pairs > 0``): consumers present at the horizon, and departed ones
    for the traffic routed while they still came back. Returns ``consumers_counted``,
    ``consumers_with_loss_fraction`` (share that lost at least one message) and
    ``consumer_loss_ratio_p50``/``_p90``/``_p99`` (percentiles of the per-consumer
    ``loss_ratio``, linear interpolation between order statistics as ``numpy.percentile``).
    NaN where no consumer counts.
    """
    ratio = fates["loss_ratio"].to_numpy(dtype=float) if len(fates) else np.zeros(0)
    counted = ~np.isnan(ratio)
    n = int(counted.sum())
    out: dict[str, float] = {"consumers_counted": n}
    lost = fates["lost"].to_numpy()[counted] if n else np.zeros(0)
    out["consumers_with_loss_fraction"] = float((lost > 0).mean()) if n else math.nan
    pct = np.percentile(ratio[counted], SPREAD_PERCENTILES) if n else [math.nan] * len(SPREAD_PERCENTILES)
    for p, v in zip(SPREAD_PERCENTILES, pct):
        out[f"consumer_loss_ratio_p{p}"] = float(v)
    return out
