"""``mqtt-sim``: run a scenario, or the demo policy comparison.

    mqtt-sim run SCENARIO.yaml [--seed N] [--out DIR] [--messages]
    mqtt-sim sweep SCENARIO.yaml --grid "mqttConsumer.session expiry interval=0,15,uint_max" \
        [--grid ...] [--replications N] [--seed N] [--jobs N] --out RUNS.csv|.parquet
    mqtt-sim sweep STUDY.yaml [--jobs N] [--out RUNS.csv|.parquet]     (data/sweeps/*.yaml)
    mqtt-sim plot RUNS.csv --out FIGURE.png
    mqtt-sim advise SCENARIO.yaml --max-loss 0.1% [--memory 2GiB] [--replications N] [--out DIR]
    mqtt-sim demo [--out DIR] [--replications N] [--jobs N]

A scenario error prints one line, ``error: <field>: <value> <what is allowed>``, and exits 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from .config import available_examples, example_path, load_scenario
from .protocol import DEPARTED_FATES, LOSS_CAUSES, UINT_MAX
from .run import run
from .units import ScenarioError

EXIT_BAD_INPUT = 2


def format_summary(summary: pd.Series) -> str:
    """The summary as an aligned two-column table, counts as integers, bytes with units."""
    lines = []
    for key, value in summary.items():
        if key.startswith("lost_") and value == 0:
            continue
        if key.startswith("departed_") and key != "departed_pairs" and value == 0:
            continue
        if key.startswith(("storm_", "network_outage")) and not summary.get("network_outages", 0):
            continue  # no network outage in this run
        if key in ("loss_ratio", "consumers_with_loss_fraction") or key.startswith("consumer_loss_ratio_"):
            text = f"{value:.6f}" if value == value else "n/a (no returning consumer's pairs)"
        elif value != value:
            text = "n/a"
        elif key.startswith("memory_") or key.startswith("queued_messages_mean") or key in ("horizon", "storm_seconds"):
            text = f"{value:,.1f}"
        else:
            text = f"{int(value):,}"
        lines.append(f"  {key:<30} {text:>20}")
    return "\n".join(lines)


def cmd_run(args: argparse.Namespace) -> int:
    scn = load_scenario(args.scenario)
    res = run(scn, seed=args.seed, record_messages=True if args.messages else None, progress=not args.quiet)
    print(f"scenario {scn.name!r}, seed {args.seed}, horizon {scn.horizon:g} s ({res.wall_seconds:.2f} s wall)")
    print(format_summary(res.summary))
    if scn.not_simulated:
        print("not simulated (connection settings, accepted as given): " + ", ".join(scn.not_simulated))
    if res.events.empty and res.summary["connects"] > 0:
        print(f"event rows not kept (a long run: {int(res.summary['connects'] + res.summary['disconnects']):,} "
              "connects and disconnects, counted in the summary); engine: " + res.engine)
    if res.stream == "counts":
        print(f"publish stream kept as counts between connection changes ({res.summary['published']:,.0f} messages); "
              "byte-seconds and means are their conditional means given the counts (docs/model.md)")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        res.summary.to_frame().T.to_csv(out / "summary.csv", index=False)
        res.fates.to_csv(out / "fates.csv", index=False)
        res.memory.to_csv(out / "memory.csv", index=False)
        res.events.to_csv(out / "events.csv", index=False)
        if res.messages is not None:
            res.messages.to_csv(out / "messages.csv", index=False)
        storms = res.network_outages is not None and len(res.network_outages) > 0
        if storms:
            res.network_outages.to_csv(out / "network_outages.csv", index=False)
        print(f"wrote {out}/summary.csv, fates.csv, memory.csv, events.csv" + (", messages.csv" if res.messages is not None else "")
              + (", network_outages.csv" if storms else ""))
    return 0


def parse_grid(items: list[str]) -> dict[str, list]:
    """``["field=v1,v2", ...]`` -> {field: [v1, v2]}; each value is read as YAML (true, 15, 1h)."""
    import yaml

    grid: dict[str, list] = {}
    for item in items:
        field, sep, values = item.partition("=")
        if not sep or not field.strip() or not values.strip():
            raise ScenarioError("--grid", item, "must look like 'mqttConsumer.session expiry interval=0,15,uint_max'")
        grid[field.strip()] = [yaml.safe_load(v.strip()) for v in values.split(",")]
    return grid


def _read_runs(path: str) -> pd.DataFrame:
    return pd.read_parquet(path) if str(path).endswith(".parquet") else pd.read_csv(path)


def cmd_sweep(args: argparse.Namespace) -> int:
    from .study import is_study_file, load_study
    from .sweep import summarize, sweep

    if is_study_file(args.scenario):  # a study file: scenario, grid, replications, seed, out ...
        if args.grid:
            raise ScenarioError("--grid", args.grid, "is not for a study file: its grid is in the file")
        study = load_study(args.scenario)
        out = args.out if args.out is not None else study.out
        if out is None:
            raise ScenarioError("--out", None, "is missing: give --out, or 'out:' in the study file")
        print(f"study {study.name!r}: {len(study.cells)} policies x {study.replications} replications")
        runs = study.run(progress=not args.quiet, jobs=args.jobs, out=out, scheduler=args.scheduler)
        keys = list(study.axes)
    else:
        if args.out is None:
            raise ScenarioError("--out", None, "is missing: the runs file (.csv or .parquet)")
        scn = load_scenario(args.scenario)
        grid = parse_grid(args.grid or [])
        out = args.out
        runs = sweep(scn, grid, replications=args.replications or 10, seed=args.seed or 0, jobs=args.jobs or 1,
                     out=out, progress=not args.quiet, backend="dask" if args.scheduler else "processes",
                     scheduler=args.scheduler)
        keys = list(grid)
    table = summarize(runs, by=keys or None)
    with pd.option_context("display.width", 250, "display.max_columns", 40, "display.float_format", "{:,.4g}".format):
        print(table[keys + ["n", "loss_ratio", "loss_ratio_ci_low", "loss_ratio_ci_high", "departed_pairs",
                            "memory_peak_bytes", "memory_mean_bytes"]].to_string(index=False))
    print(f"wrote {out} ({len(runs)} runs)")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from . import plots
    from .sweep import summarize

    runs = _read_runs(args.runs)
    metrics = ("loss_ratio", "memory_peak_bytes", "memory_mean_bytes", "routed", "departed_pairs") + tuple(
        f"lost_{c}" for c in LOSS_CAUSES) + DEPARTED_FATES
    table = summarize(runs, metrics=metrics)
    fig = plots.policy_figure(table)
    fig.savefig(args.out, dpi=120, bbox_inches="tight")
    print(f"wrote {args.out} ({len(table)} policies, {len(runs)} runs)")
    return 0


DEMO_EXPIRY = [0, 15, 300, 3600, UINT_MAX]


def cmd_demo(args: argparse.Namespace) -> int:
    """Policy comparison on the transport example: expiry × clean start, with replications."""
    from . import plots
    from .sweep import summarize, sweep

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scn = load_scenario(example_path("transport_example"))
    if args.horizon:
        scn = scn.updated({"horizon": args.horizon})
    grid = {"mqttConsumer.session expiry interval": DEMO_EXPIRY, "mqttConsumer.clean start": [False, True]}
    print(f"policy comparison on {scn.name!r}: {len(DEMO_EXPIRY) * 2} policies x {args.replications} replications")
    runs = sweep(scn, grid, replications=args.replications, seed=args.seed, jobs=args.jobs, progress=not args.quiet)
    metrics = ("loss_ratio", "memory_peak_bytes", "memory_mean_bytes", "memory_mean_stranded_bytes",
               "consumer_loss_ratio_p90", "routed", "departed_pairs") + tuple(
        f"lost_{c}" for c in LOSS_CAUSES) + DEPARTED_FATES
    table = summarize(runs, by=list(grid), metrics=metrics)
    table.insert(0, "policy", [_policy_label(r) for _, r in table.iterrows()])
    runs.to_csv(out / "policy_runs.csv", index=False)
    table.to_csv(out / "policy_comparison.csv", index=False)
    show = demo_table(table)
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.float_format", "{:,.3g}".format):
        print(show.to_string(index=False))
    print("loss: % of the pairs routed to consumers that come back (95 % t-interval over replications, kept "
          "within [0, 100]); departed: % of all routed pairs that were meant for devices that left for good "
          "(not loss); p90: the 90th percentile of per-consumer loss")
    fig = plots.policy_figure(table.set_index("policy"))
    fig.savefig(out / "policy_comparison.png", dpi=120, bbox_inches="tight")
    print(f"wrote {out / 'policy_comparison.csv'}, {out / 'policy_runs.csv'}, {out / 'policy_comparison.png'}")
    for path in map(example_path, available_examples()):
        res = run(load_scenario(path), seed=args.seed, record_messages=False, record_events=False)
        s = res.summary
        print(f"  {path.name:<28} loss ratio {s['loss_ratio']:.4f}  peak memory {s['memory_peak_bytes'] / 1024:,.1f} KiB"
              f"  pending {int(s['pending'])}  to departed devices {int(s['departed_pairs'])}")
    # the headline: loss and memory against the expiry, 0 to never, beside the table it draws
    plots.expiry_figure(table).savefig(out / "expiry_headline.png", dpi=120, bbox_inches="tight")
    print(f"headline figure (loss and memory against the Session Expiry Interval, 0 to never): "
          f"{out / 'expiry_headline.png'}, from {out / 'policy_comparison.csv'}")
    return 0


def demo_table(table: pd.DataFrame) -> pd.DataFrame:
    """The demo's printed table from a :func:`sim.summarize` table with a ``policy`` column:
    loss in % of returning consumers' pairs with its interval, loss by cause in the same unit,
    the per-consumer 90th percentile, traffic to departed devices in % of all routed pairs, and
    memory in KiB. Ratios of means: ``lost_<cause> / (routed - departed_pairs)``."""
    returning = table["routed"] - table["departed_pairs"]
    safe = returning.where(returning > 0)
    show = pd.DataFrame({"policy": table["policy"],
                         "loss %": 100 * table["loss_ratio"],
                         "95% CI": [f"[{100 * lo:.3g}, {100 * hi:.3g}]" for lo, hi in
                                    zip(table["loss_ratio_ci_low"], table["loss_ratio_ci_high"])]})
    for c in LOSS_CAUSES:  # loss ratio by cause, % of returning consumers' pairs
        if table[f"lost_{c}"].sum() > 0:
            show[f"{c} %"] = 100 * table[f"lost_{c}"] / safe
    show["p90 consumer loss %"] = 100 * table["consumer_loss_ratio_p90"]
    show["departed %"] = 100 * table["departed_pairs"] / table["routed"].where(table["routed"] > 0)
    show["peak KiB"] = table["memory_peak_bytes"] / 1024
    show["mean KiB"] = table["memory_mean_bytes"] / 1024
    show["stranded KiB"] = table["memory_mean_stranded_bytes"] / 1024
    return show


def cmd_advise(args: argparse.Namespace) -> int:
    """The least-memory policy meeting a loss target and a memory budget (sim.advise)."""
    from .advise import advise
    from .plots import advice_figure

    scn = load_scenario(args.scenario)
    a = advise(scn, args.max_loss, memory_budget=args.memory, replications=args.replications, seed=args.seed,
               jobs=args.jobs, progress=not args.quiet)
    print(a.explanation)
    cols = [c for c in ("mqttConsumer.session expiry interval", "mqttConsumer.clean start", "loss_ratio",
                        "loss_ratio_ci_high", "memory_mean_bytes", "memory_peak_bytes_ci_high") if c in a.frontier]
    with pd.option_context("display.width", 200, "display.float_format", "{:,.4g}".format):
        print("loss-memory frontier:")
        print(a.frontier[cols].to_string(index=False))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        import pyarrow  # noqa: F401
        ext, write = "parquet", (lambda df, path: df.to_parquet(path, index=False))
    except ImportError:
        ext, write = "csv", (lambda df, path: df.to_csv(path, index=False))
    write(a.frontier, out / f"advice_frontier.{ext}")
    write(a.policies, out / f"advice_policies.{ext}")
    advice_figure(a).savefig(out / "advice.png", dpi=120, bbox_inches="tight")
    (out / "advice.txt").write_text(a.explanation + "\n")
    print(f"wrote {out}/advice_frontier.{ext}, advice_policies.{ext}, advice.png, advice.txt")
    return 0


def _policy_label(row: pd.Series) -> str:
    e = int(row["mqttConsumer.session expiry interval"])
    cs = "true" if row["mqttConsumer.clean start"] else "false"
    return f"expiry {'UINT_MAX' if e == UINT_MAX else e}, clean start {cs}"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mqtt-sim", description="Simulate MQTT v5 session policies: loss by cause, broker memory.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run one scenario and print its summary")
    r.add_argument("scenario", help="scenario YAML file")
    r.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    r.add_argument("--out", help="folder for summary.csv, fates.csv, memory.csv, events.csv")
    r.add_argument("--messages", action="store_true", help="also record one row per (message, consumer) pair")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_run)
    w = sub.add_parser("sweep", help="run a policy grid with replications; one row per run")
    w.add_argument("scenario", help="scenario YAML file (with --grid), or a study file (data/sweeps/*.yaml)")
    w.add_argument("--grid", action="append", metavar="FIELD=V1,V2",
                   help="a field and its values, e.g. 'mqttConsumer.clean start=true,false' (repeatable)")
    w.add_argument("--replications", type=int, default=None, help="default 10")
    w.add_argument("--seed", type=int, default=None, help="default 0")
    w.add_argument("--jobs", type=int, default=None, help="processes (default 1, or the study file's)")
    w.add_argument("--out", default=None, help="runs file (.csv or .parquet); a rerun resumes it")
    w.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                   help="run on this Dask distributed scheduler (pip install 'mqtt-session-sim[dask]')")
    w.add_argument("--quiet", action="store_true", help="no progress bar")
    w.set_defaults(func=cmd_sweep)
    pl = sub.add_parser("plot", help="loss by cause and loss-versus-memory figure from a sweep's runs file")
    pl.add_argument("runs", help="runs file written by 'mqtt-sim sweep' (.csv or .parquet)")
    pl.add_argument("--out", required=True, help="figure file, e.g. policies.png")
    pl.set_defaults(func=cmd_plot)
    a = sub.add_parser("advise", help="recommend the least-memory policy meeting a loss target and a memory budget")
    a.add_argument("scenario", help="scenario YAML file")
    a.add_argument("--max-loss", required=True, help="loss ratio target, e.g. 0.1%% or 0.001")
    a.add_argument("--memory", default=None, help="peak broker memory budget, e.g. 2GiB or 500MiB (kB/MB/GB are decimal)")
    a.add_argument("--replications", type=int, default=10)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--jobs", type=int, default=1)
    a.add_argument("--out", default="data/results", help="folder for the frontier, the policies and the figure")
    a.add_argument("--quiet", action="store_true", help="no progress bar")
    a.set_defaults(func=cmd_advise)
    d = sub.add_parser("demo", help="policy comparison on the shipped example; writes CSV and PNG")
    d.add_argument("--out", default="data/results", help="output folder (default data/results)")
    d.add_argument("--replications", type=int, default=5)
    d.add_argument("--jobs", type=int, default=2)
    d.add_argument("--seed", type=int, default=1)
    d.add_argument("--horizon", help="override the example's horizon, e.g. 1h")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ScenarioError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # output piped into e.g. `head`: stop quietly
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
