"""Command line: `python -m kmnist_core train|reproduce|baselines|runs`; errors print one line and exit 2."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from .config import BEST_MLP, CONSTRAINTS, PRESETS, REFERENCE_PRESETS, TrainConfig
from .errors import ConfigError, KmnistError
from .jobs import JobQueue, JobSnapshot
from .store import RunStore

if TYPE_CHECKING:
    from .data import Dataset

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

# CLI flag -> TrainConfig field; values are parsed by the config so messages name the field.
FLAGS = {
    "--hidden": "hidden_layers",
    "--activation": "activation",
    "--optimizer": "optimizer",
    "--weight-decay": "weight_decay",
    "--learning-rate": "learning_rate",
    "--epochs": "epochs",
    "--batch-size": "batch_size",
    "--val-fraction": "val_fraction",
    "--seed": "seed",
    "--dropout": "dropout",
    "--augment": "augment",
    "--lr-schedule": "lr_schedule",
    "--early-stopping": "early_stopping",
    "--label-smoothing": "label_smoothing",
}


class UsageError(KmnistError):
    """Bad command-line usage."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, no usage dump
        raise UsageError(f"{message} (see --help)")


def _convert(name: str, text: str):
    """Turn a flag's text into the field's type; bad text is a ConfigError naming the field."""
    kind = CONSTRAINTS[name].kind
    if kind in ("layers", "choice"):
        return text
    try:
        return int(text) if kind == "int" else float(text)
    except ValueError:
        raise ConfigError(f"{name} must be {CONSTRAINTS[name].describe()}; got {text!r}") from None


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The preset (or defaults) with every given flag applied on top."""
    base = PRESETS[args.preset].config if args.preset else TrainConfig()
    changes = {}
    for flag, name in FLAGS.items():
        text = getattr(args, flag[2:].replace("-", "_"))
        if text is not None:
            changes[name] = _convert(name, text)
    if args.batch_norm:
        changes["batch_norm"] = True
    return base.replace(**changes)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand."""
    parser = _Parser(prog="python -m kmnist_core", description="KMNIST Lab: train and compare MLPs on KMNIST.")
    parser.add_argument("--data-dir", help="folder of the official KMNIST files (default: $KMNIST_DATA_DIR)")
    parser.add_argument("--runs-dir", help="run store folder (default: $KMNIST_RUNS_DIR or ./runs)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    train = sub.add_parser("train", help="train one configuration and store the run")
    train.add_argument("--preset", choices=sorted(PRESETS), metavar="NAME",
                       help="start from a preset: " + ", ".join(sorted(PRESETS)))
    for flag, name in FLAGS.items():
        train.add_argument(flag, metavar="VALUE", help=f"{name}: {CONSTRAINTS[name].describe()}")
    train.add_argument("--batch-norm", action="store_true", help="BatchNormalization in each hidden layer")
    train.add_argument("--force", action="store_true", help="train again even if a completed run is stored")
    sub.add_parser("reproduce", help="train the reference presets and the best MLP; compare with reported numbers "
                                     "and the classic baselines")
    sub.add_parser("baselines", help="4-NN and PCA(50) + 4-NN test accuracy on the loaded data (cached)")
    sub.add_parser("runs", help="list the stored runs")
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the CLI; returns the exit code."""
    out, err = out or sys.stdout, err or sys.stderr
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        args = build_parser().parse_args(argv)
        if args.command == "train":
            config = config_from_args(args)  # validate flags before loading anything
        store = RunStore(args.runs_dir)
        if args.command == "runs":
            return _list_runs(store, out)
        from .data import load_kmnist

        data = load_kmnist(args.data_dir)
        if args.command == "baselines":
            return _baselines(store, data, out)
        queue = JobQueue(store, data)
        try:
            if args.command == "train":
                return _train(queue, config, args.force, out, err)
            return _reproduce(queue, out, err)
        finally:
            queue.close()
    except KmnistError as e:
        print(f"Error: {e}", file=err)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("Error: interrupted", file=err)
        return EXIT_INTERRUPTED


def _wait(queue: JobQueue, job_id: str, err: TextIO, out: TextIO | None = None) -> JobSnapshot:
    """Follow one job to its end: a progress bar on err, a line per epoch on out; Ctrl-C cancels."""
    printed = 0
    try:
        while True:
            snap = queue.progress(job_id)
            if out is not None:
                for h in snap.history[printed:]:
                    print(f"epoch {h['epoch']:3d}/{snap.epochs}  loss {h['loss']:.4f}  acc {h['accuracy']:.4f}"
                          f"  val_loss {h['val_loss']:.4f}  val_acc {h['val_accuracy']:.4f}", file=out, flush=True)
                printed = len(snap.history)
            if not snap.active:
                if err.isatty():
                    print(file=err)
                return snap
            if err.isatty():
                bar = "#" * int(snap.fraction * 30)
                eta = f"ETA {snap.eta_s:4.0f}s" if snap.eta_s is not None else ""
                print(f"\r[{bar:<30}] epoch {snap.epoch}/{snap.epochs} {eta}", end="", file=err, flush=True)
            time.sleep(0.2)
    except KeyboardInterrupt:
        queue.cancel(job_id)
        raise


def _train(queue: JobQueue, config: TrainConfig, force: bool, out: TextIO, err: TextIO) -> int:
    job_id = queue.submit(config, force=force)
    snap = _wait(queue, job_id, err, out)
    info = queue.store.get(job_id)
    print(f"run {job_id}: {info.status}{' (cached)' if snap.cached else ''}", file=out)
    if info.status != "completed":
        print(f"Error: run {job_id} {info.status}: {info.reason or snap.error}", file=err)
        return EXIT_FAILED
    print(f"best val accuracy: {info.metrics['best_val_accuracy']:.4f}", file=out)
    print(f"test accuracy: {info.metrics['test_accuracy']:.4f}", file=out)
    return EXIT_OK


def reference_rows(queue: JobQueue, names: Sequence[str], err: TextIO) -> list[dict]:
    """Train (or fetch from cache) each preset; one row per preset with reported and measured numbers."""
    rows = []
    for name in names:
        preset = PRESETS[name]
        print(f"{name}: {preset.config.summary()}", file=err, flush=True)
        job_id = queue.submit(preset.config)
        _wait(queue, job_id, err)
        info = queue.store.get(job_id)
        rows.append({"preset": name, "config": preset.config.describe(),
                     "reported_val": preset.reported_val_accuracy, "reported_test": preset.reported_test_accuracy,
                     "val": info.metrics.get("best_val_accuracy"), "test": info.metrics.get("test_accuracy"),
                     "status": info.status})
    return rows


def _fmt(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "-"
    return f"{round(x, 4) + 0.0:+.4f}" if signed else f"{x:.4f}"  # + 0.0: no "-0.0000" for float32 noise


def baseline_rows(store: RunStore, data: Dataset, err: TextIO) -> list[dict]:
    """One row per classic baseline, shaped like reference_rows' rows (no validation, nothing reported)."""
    from .baselines import load_or_compute_baselines

    print("baselines: 4-NN, PCA(50) + 4-NN (computed once per dataset, then cached)", file=err, flush=True)
    return [{"preset": b.label, "config": "baseline (scikit-learn)", "reported_val": None, "reported_test": None,
             "val": None, "test": b.test_accuracy, "status": "completed"}
            for b in load_or_compute_baselines(store, data).values()]


def _baselines(store: RunStore, data: Dataset, out: TextIO) -> int:
    """Print both baselines' test accuracy and exact method."""
    from .baselines import load_or_compute_baselines

    print(f"data: {data.describe()}", file=out)
    for b in load_or_compute_baselines(store, data).values():
        print(f"{b.label:<22} test accuracy {b.test_accuracy:.4f}   {b.method}", file=out)
    return EXIT_OK


def _reproduce(queue: JobQueue, out: TextIO, err: TextIO) -> int:
    rows = reference_rows(queue, REFERENCE_PRESETS, err)
    rows += reference_rows(queue, [BEST_MLP], err)
    rows += baseline_rows(queue.store, queue.data, err)
    print(f"data: {queue.data.describe()}", file=out)
    head = f"{'preset':<22} {'config':<40} {'rep val':>8} {'our val':>8} {'diff':>8} {'rep test':>8} {'our test':>8} {'diff':>8}"
    print(head, file=out)
    print("-" * len(head), file=out)
    for r in rows:
        dv = None if r["val"] is None or r["reported_val"] is None else r["val"] - r["reported_val"]
        dt = None if r["test"] is None or r["reported_test"] is None else r["test"] - r["reported_test"]
        print(f"{r['preset']:<22} {r['config']:<40} {_fmt(r['reported_val']):>8} {_fmt(r['val']):>8} "
              f"{_fmt(dv, True):>8} {_fmt(r['reported_test']):>8} {_fmt(r['test']):>8} {_fmt(dt, True):>8}", file=out)
    return EXIT_OK if all(r["status"] == "completed" for r in rows) else EXIT_FAILED


def _list_runs(store: RunStore, out: TextIO) -> int:
    runs = store.list_runs()
    if not runs:
        print(f"no runs in {store.root}", file=out)
        return EXIT_OK
    for info in runs:
        cfg = info.config.summary() if info.config else "?"
        test = info.metrics.get("test_accuracy")
        extra = f"test {test:.4f}" if isinstance(test, float) else info.reason
        print(f"{info.run_id}  {info.status:<11} {extra:<12} {cfg}", file=out)
    return EXIT_OK
