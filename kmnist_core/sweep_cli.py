"""The `sweep run|worker|show|list` and `repeat` commands; kmnist_core.cli adds them with add_parsers() and run()."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any, TextIO

from .config import FIELDS, PRESETS, TrainConfig

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

    from .jobs import JobQueue
    from .sweeps import Budget, Sweep

COMMANDS = ("sweep", "repeat")
REPEAT_FIELDS = {name: f for name, f in FIELDS.items() if name != "seed"}  # repeat chooses the seeds itself
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _positive_int(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1; got {text!r}")
    return int(text)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number above 0; got {text!r}")
    return value


def add_parsers(subparsers: Any) -> None:
    """Add `sweep` (run, worker, show, list) and `repeat` to the CLI's subparsers."""
    from .sweeps import PRUNERS, SAMPLERS

    sweep = subparsers.add_parser("sweep", help="hyperparameter sweeps: Optuna studies whose trials are runs")
    sub = sweep.add_subparsers(dest="sweep_command", required=True, parser_class=type(sweep))
    storage_help = "sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB (default: sweeps.db in the " \
                   "runs folder)"

    run = sub.add_parser("run", help="create (or resume) a sweep and run trials until its budget is met")
    run.add_argument("--space", metavar="FILE", help="search space, TOML or JSON (default: the built-in space: "
                                                      "hidden layers, activation, optimizer, weight decay, lr)")
    budget = run.add_mutually_exclusive_group()
    budget.add_argument("--trials", type=_positive_int, metavar="N",
                        help="finished trials in the whole study, whoever runs them (default 12)")
    budget.add_argument("--minutes", type=_positive_float, metavar="M", help="start no trial after M minutes")
    run.add_argument("--sampler", choices=SAMPLERS, default="tpe", help="default tpe")
    run.add_argument("--pruner", choices=PRUNERS, default="median",
                     help="prune on validation accuracy per epoch (default median)")
    run.add_argument("--study", metavar="NAME", help="study name (default sweep-DATE-TIME); an existing one resumes")
    run.add_argument("--storage", metavar="URL", help=storage_help)
    run.add_argument("--workers", type=_positive_int, default=1, metavar="K",
                     help="training worker processes here, one trial each (default 1)")
    run.add_argument("--sampler-seed", type=int, metavar="N", help="seed this process' sampler (reproducible sweep)")

    worker = sub.add_parser("worker", help="take trials from an existing sweep (on this or another machine)")
    worker.add_argument("--study", metavar="NAME", required=True)
    worker.add_argument("--storage", metavar="URL", help=storage_help)
    worker.add_argument("--workers", type=_positive_int, default=1, metavar="K",
                        help="training worker processes here (default 1)")

    show = sub.add_parser("show", help="a sweep's trials, best configuration and parameter importances")
    show.add_argument("--study", metavar="NAME", help="default: the newest sweep")
    show.add_argument("--storage", metavar="URL", help=storage_help)

    listing = sub.add_parser("list", help="the sweeps in a storage")
    listing.add_argument("--storage", metavar="URL", help=storage_help)

    repeat = subparsers.add_parser("repeat", help="train one configuration with several seeds: mean ± 95 %% CI")
    repeat.add_argument("--preset", choices=sorted(PRESETS), metavar="NAME",
                        help="start from a preset: " + ", ".join(sorted(PRESETS)))
    repeat.add_argument("--seeds", type=_positive_int, default=5, metavar="N",
                        help="how many seeds: the config's seed and the N-1 after it (default 5)")
    repeat.add_argument("--against", choices=sorted(PRESETS), metavar="NAME",
                        help="also repeat this preset (same flags applied) and compare the two (Welch)")
    from .cli import add_config_flags

    add_config_flags(repeat, REPEAT_FIELDS)


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Run a parsed `sweep ...` or `repeat` command; returns the exit code.

    Raises:
        KmnistError: one line for the caller to print as `Error: ...` with exit code 2 (bad space,
            storage unreachable, bad flag value).
    """
    import optuna

    from .sweeps import quiet_storage_thread_errors

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our own line per trial; failures in one line
    quiet_storage_thread_errors()
    if args.command == "repeat":
        return _repeat(args, out, err)
    return {"run": _run, "worker": _worker, "show": _show, "list": _list}[args.sweep_command](args, out, err)


# --- sweep run / worker ----------------------------------------------------------------------


def _store(args: argparse.Namespace):
    from .store import RunStore

    return RunStore(args.runs_dir)


def _run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .sweeps import (
        DEFAULT_SPACE,
        Budget,
        SweepSettings,
        load_space,
        open_storage,
        start_sweep,
        validate_space,
    )

    space = load_space(args.space) if args.space else validate_space(DEFAULT_SPACE)  # before anything starts
    settings = SweepSettings(space, args.sampler, args.pruner)
    given = args.trials is not None or args.minutes is not None
    budget = Budget.make(args.trials, args.minutes) if given else None  # None: a resumed study keeps its own
    store = _store(args)
    storage = open_storage(args.storage, store.root)
    from .data import load_kmnist

    data = load_kmnist(args.data_dir)
    # Resuming a study with no --space keeps its own space.
    sweep = start_sweep(storage, args.study, settings, budget, data, sampler_seed=args.sampler_seed,
                        same_space=bool(args.space))
    _describe(sweep, sweep.budget(), err)
    print(f"more workers: python -m kmnist_core sweep worker --study {sweep.name} --storage {_shown_url(sweep)}",
          file=err, flush=True)
    return _take_trials(sweep, store, data, args.workers, out, err, final=True)


def _worker(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .sweeps import join_sweep, open_storage

    store = _store(args)
    storage = open_storage(args.storage, store.root)
    from .data import load_kmnist

    data = load_kmnist(args.data_dir)
    sweep = join_sweep(storage, args.study, data)
    _describe(sweep, sweep.budget(), err)
    return _take_trials(sweep, store, data, args.workers, out, err, final=False)


def _shown_url(sweep: Sweep) -> str:
    from .sweeps import redact

    return redact(sweep.url)


def _describe(sweep: Sweep, budget: Budget, err: TextIO) -> None:
    s = sweep.settings
    if budget.deadline is not None:
        left = max(0.0, budget.deadline - time.time()) / 60
        what = f"until {time.strftime('%H:%M:%S', time.localtime(budget.deadline))} ({left:.1f} min)"
    else:
        what = f"{sweep.target(budget)} finished trials" + (" (the whole grid)" if sweep.target(budget) ==
                                                            sweep.settings.grid_size else "")
    print(f"study {sweep.name} in {_shown_url(sweep)}: {s.sampler} sampler, {s.pruner} pruner, budget {what}",
          file=err, flush=True)


def _take_trials(sweep: Sweep, store: Any, data: Any, workers: int, out: TextIO, err: TextIO, final: bool) -> int:
    from .jobs import JobQueue
    from .sweeps import run_trials

    queue = JobQueue(store, data, workers=workers)
    ran = []

    def on_trial(trial: FrozenTrial) -> None:
        ran.append(trial.number)
        print(_trial_line(trial), file=out, flush=True)

    try:
        reason = run_trials(sweep, queue, parallel=workers, on_trial=on_trial)
    finally:
        queue.close()
    print(f"{reason}; {len(ran)} trials ran in this process", file=err, flush=True)
    return _print_result(sweep, out, err) if final else _print_counts(sweep, out)


def _trial_line(trial: FrozenTrial) -> str:
    from .sweeps import trial_status

    a = trial.user_attrs
    status = trial_status(trial)
    val, test = a.get("val_accuracy"), a.get("test_accuracy")
    cfg = TrainConfig.from_dict(a["config"]).summary() if "config" in a else ""
    cached = " (cached)" if a.get("cached") else ""
    parts = [f"trial {trial.number:3d} {status:<9}", f"val {_num(val)}", f"test {_num(test)}",
             f"epochs {len(a.get('val_accuracy_per_epoch', []))}", cfg, f"run {a.get('run_id', '-')}{cached}"]
    if a.get("error"):
        parts.append(a["error"])
    return "  ".join(parts)


def _num(x: float | None) -> str:
    return f"{x:.4f}" if isinstance(x, (int, float)) else "-"


def _print_counts(sweep: Sweep, out: TextIO) -> int:
    from .sweeps import trial_counts

    c = trial_counts(sweep)
    print(f"trials: {c['completed']} completed, {c['pruned']} pruned, {c['failed']} failed", file=out)
    return EXIT_OK


def _print_result(sweep: Sweep, out: TextIO, err: TextIO) -> int:
    """The three closing lines: counts, best val accuracy, the best config as a train command."""
    from .sweeps import best_trial, train_command, trial_config

    _print_counts(sweep, out)
    best = best_trial(sweep)
    if best is None:
        print("Error: no trial completed; see `sweep show` for the trials' errors", file=err)
        return EXIT_FAILED
    print(f"best val accuracy: {best.value:.4f}", file=out)
    print(train_command(trial_config(sweep, best)), file=out)
    return EXIT_OK


# --- sweep show / list -----------------------------------------------------------------------


def _show(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .sweeps import (
        best_so_far,
        describe_space,
        importances,
        join_sweep,
        latest_sweep_name,
        open_storage,
        trials_table,
    )

    storage = open_storage(args.storage, _store(args).root)
    sweep = join_sweep(storage, args.study or latest_sweep_name(storage))
    s = sweep.settings
    print(f"study {sweep.name} in {_shown_url(sweep)}: {s.sampler} sampler, {s.pruner} pruner", file=out)
    for line in describe_space(s.space):
        print(f"  {line}", file=out)
    rows = trials_table(sweep)
    head = f"{'trial':>5}  {'status':<9} {'val':>6}  {'test':>6}  {'seconds':>7}  {'epochs':>6}  {'host':<12} " \
           f"{'run':<22} params"
    print(head, file=out)
    for r in rows:
        seconds = f"{r['duration_s']:.1f}" if r["duration_s"] is not None else "-"
        params = ", ".join(f"{k}={_param(v)}" for k, v in r["params"].items())
        retry = f" (retry of {r['retry_of']})" if r["retry_of"] is not None else ""
        print(f"{r['trial']:>5}  {r['status']:<9} {_num(r['val_accuracy']):>6}  {_num(r['test_accuracy']):>6}  "
              f"{seconds:>7}  {r['epochs']:>6}  {str(r['host'] or '-'):<12} {str(r['run_id'] or '-'):<22} "
              f"{params}{retry}", file=out)
    curve = best_so_far(sweep)
    if curve:
        print("best so far: " + " ".join(f"{p['best']:.4f}" for p in curve), file=out)
    imp = importances(sweep)
    if imp.values:
        print(f"importances ({imp.evaluator}): " + ", ".join(f"{k} {v:.2f}" for k, v in imp.values.items()),
              file=out)
    else:
        print(f"importances ({imp.evaluator}): {imp.note}", file=out)
    return _print_result(sweep, out, err)


def _param(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _list(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .sweeps import list_sweeps, open_storage, redact

    storage = open_storage(args.storage, _store(args).root)
    rows = list_sweeps(storage)
    if not rows:
        print(f"no sweeps in {redact(storage.url)}", file=out)
        return EXIT_OK
    for r in rows:
        c = r["counts"]
        created = r["created"].strftime("%Y-%m-%d %H:%M") if r["created"] else "-"
        print(f"{r['study']:<28} {created}  {c['completed']} completed, {c['pruned']} pruned, {c['failed']} failed"
              f", {c['running']} running  best val {_num(r['best_val_accuracy'])}", file=out)
    return EXIT_OK


# --- repeat ----------------------------------------------------------------------------------


def _repeat_config(args: argparse.Namespace, preset: str | None) -> TrainConfig:
    from .cli import config_changes

    base = PRESETS[preset].config if preset else TrainConfig()
    return base.replace(**config_changes(args, REPEAT_FIELDS))


def _repeat(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .stats import compare, group_runs, submit_seeds

    configs = [_repeat_config(args, args.preset)]
    if args.against:
        configs.append(_repeat_config(args, args.against))
    store = _store(args)
    from .data import load_kmnist
    from .jobs import JobQueue

    data = load_kmnist(args.data_dir)
    queue = JobQueue(store, data)
    try:
        groups = []
        for config in configs:
            print(f"{config.summary()}: {args.seeds} seeds", file=err, flush=True)
            ids = submit_seeds(queue, config, args.seeds)
            _wait_all(queue, ids)
            infos = [store.get(i) for i in ids]
            for info in infos:
                m = info.metrics
                print(f"seed {info.config.seed:3d}  {info.status:<9} val {_num(m.get('best_val_accuracy'))}  "
                      f"test {_num(m.get('test_accuracy'))}  run {info.run_id}", file=out, flush=True)
            found = group_runs([i for i in infos if i.completed])
            if not found:
                print(f"Error: no run of {config.summary()} completed", file=err)
                return EXIT_FAILED
            groups.append(found[0])
    finally:
        queue.close()
    for group in groups:
        print(f"{group.config.summary()} (n = {group.n}):", file=out)
        print(f"  best val accuracy {group.summary('val').text()}", file=out)
        print(f"  test accuracy     {group.summary('test').text()}", file=out)
    if len(groups) == 2:
        if min(g.n for g in groups) < 2:
            print("comparison: needs at least 2 completed seeds in each group", file=out)
        else:
            print(compare(groups[0], groups[1], "val").sentence(), file=out)
            print(compare(groups[0], groups[1], "test").sentence(), file=out)
    return EXIT_OK if all(g.n == args.seeds for g in groups) else EXIT_FAILED


def _wait_all(queue: JobQueue, ids: list[str]) -> None:
    try:
        while any(queue.progress(i).active for i in ids):
            time.sleep(0.2)
    except KeyboardInterrupt:
        for i in ids:
            queue.cancel(i)
        raise
