"""`hil baseline`: pin, show and clear the baselines the gate compares against."""

from __future__ import annotations

from datetime import UTC, datetime

from harness.commands import common
from harness.errors import ConfigError
from harness.gate import baselines
from harness.report.run_markdown import markdown_table, run_label


def register(sub) -> None:
    p = sub.add_parser("baseline", help="pin / show / clear gate baselines")
    bsub = p.add_subparsers(dest="baseline_command", metavar="ACTION", required=True)
    s = bsub.add_parser("set", help="pin the successful results of RUN as baselines")
    s.add_argument("run", help=f"run id ('latest': {common.LATEST})")
    s.add_argument(
        "--scope",
        choices=["device", "profile"],
        default="device",
        help="pin per device (default) or per device profile (serves every board of that type)",
    )
    _filters(s)
    s.set_defaults(func=cmd_set)
    a = bsub.add_parser("accept", help="make RUN's improved, level-off (or failed) keys the reference of last-pass")
    a.add_argument("run", help=f"run id ('latest': {common.LATEST})")
    a.add_argument("--model", help="only this model's results")
    a.add_argument("--variant", help="only this variant's results")
    a.add_argument("--device", help="only this device's results")
    a.set_defaults(func=cmd_accept)
    sh = bsub.add_parser("show", help="list pinned baselines and the last passing run per key")
    sh.set_defaults(func=cmd_show)
    c = bsub.add_parser("clear", help="remove pins (all, or those matching the filters)")
    _filters(c)
    c.set_defaults(func=cmd_clear)


def _filters(p) -> None:
    p.add_argument("--model", help="only this model")
    p.add_argument("--variant", help="only this variant")
    p.add_argument("--device", help="only this device")
    p.add_argument("--profile", help="only pins of this device profile")


def _run(store, arg: str) -> tuple[str, str]:
    """The run named on the command line ('latest': `ResultStore.latest_run_id`, said in a line of its
    own) and when it started. A confirmation run mixes the reference's and the candidate's processes
    under one key: it can be no reference."""
    run = store.run_row(None if arg == "latest" else arg)
    started = datetime.fromtimestamp(float(run["started_at"]), UTC).strftime("%Y-%m-%d %H:%M UTC")
    if arg == "latest":
        print(f"latest run: {run['run_id']} (started {started}, label {run_label(run) or '-'}, {run['status']})")
    if run.get("kind") == "confirm":
        raise ConfigError(f"run {run['run_id']}: a confirmation run of the gate, not a measurement to be a reference")
    if run.get("kind") == "bisect":
        raise ConfigError(f"run {run['run_id']}: a step of `hil bisect`, not a measurement to be a reference")
    if run.get("kind") == "profile":
        raise ConfigError(
            f"run {run['run_id']}: a `hil profile` run (a short look), not a measurement to be a reference"
        )
    return str(run["run_id"]), started


def cmd_set(args) -> int:
    store = common.store(args, create=False)
    run, started = _run(store, args.run)
    pinned = baselines.pin(store, run, args.model, args.variant, args.device, args.profile, args.scope)
    for model, variant, scope, rid in pinned:
        print(f"pinned {model}/{variant} for {scope}: run {run} (started {started}), result {rid}")
    return 0


def cmd_accept(args) -> int:
    """An improvement never replaces the reference silently; this is the explicit step that does."""
    store = common.store(args, create=False)
    run, _ = _run(store, args.run)
    n = baselines.accept(store, run, args.model, args.variant, args.device)
    print(f"accepted {n} key(s) of run {run} as reference")
    return 0


def cmd_show(args) -> int:
    store = common.store(args, read_only=True)
    pins = baselines.pins(store)
    print("## Pinned baselines\n")
    if pins.empty:
        print("none\n")
    else:
        rows = [
            [str(r.model), str(r.variant), str(r.scope), str(r.run_id), str(r.result_id), _minute(r.pinned_at)]
            for r in pins.itertuples()
        ]
        print(markdown_table(["model", "variant", "scope", "run", "result", "pinned"], rows) + "\n")
    last = baselines.last_passing(store)
    print("## Last passing run (the default `last-pass` baseline)\n")
    if last.empty:
        print("none (no run has passed the gate yet)")
    else:
        rows = [[str(r.key), str(r.run_id), str(r.result_id)] for r in last.itertuples()]
        print(markdown_table(["key", "run", "result"], rows))
    return 0


def _minute(stamp: object) -> str:
    """A pin's time (a pandas Timestamp, which is a datetime) to the minute."""
    if not isinstance(stamp, datetime):
        raise TypeError(f"pinned_at {stamp!r} is not a timestamp")
    return stamp.strftime("%Y-%m-%d %H:%M")


def cmd_clear(args) -> int:
    n = baselines.clear(common.store(args, create=False), args.model, args.variant, args.device, args.profile)
    print(f"cleared {n} pinned baseline(s)")
    return 0
