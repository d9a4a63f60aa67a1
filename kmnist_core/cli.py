"""Command line: `python -m kmnist_core train|reproduce|runs|cancel|predict|export|...`; errors: one line, exit 2."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from . import service
from .config import BEST_MLP, FIELDS, PRESETS, REFERENCE_PRESETS, Field, TrainConfig
from .errors import ConfigError, KmnistError
from .jobs import JobQueue, JobSnapshot
from .records import Status
from .store import RunStore

if TYPE_CHECKING:
    from .data import Dataset

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
CANCEL_WAIT_S = 30.0  # how long `cancel` waits for the training process to confirm


class UsageError(KmnistError):
    """Bad command-line usage."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, no usage dump
        raise UsageError(f"{message} (see --help)")


# --- the train flags, generated from the field table ---


def add_config_flags(parser: argparse.ArgumentParser, fields: Mapping[str, Field] = FIELDS) -> None:
    """One flag per field of the table: `--name-with-dashes VALUE` (a bool is a switch), help from the table."""
    for name, f in fields.items():
        text = (f"{f.label}: {f.help}" if f.help else f.label).replace("%", "%%")  # argparse formats help with %
        if f.kind == "bool":
            parser.add_argument(f.cli_flag, dest=name, action="store_true", default=None, help=text)
        else:
            parser.add_argument(f.cli_flag, dest=name, metavar="VALUE", help=f"{text}; {f.describe()}")


def _convert(f: Field, text: str) -> Any:
    """Turn a flag's text into the field's type; bad text is a ConfigError naming the field."""
    if f.kind in ("layers", "choice", "bool"):
        return text
    try:
        return int(text) if f.kind == "int" else float(text)
    except ValueError:
        raise ConfigError(f"{f.name} must be {f.describe()}; got {text!r}") from None


def config_changes(args: argparse.Namespace, fields: Mapping[str, Field] = FIELDS) -> dict[str, Any]:
    """The fields given on the command line, converted to their types."""
    return {name: _convert(f, getattr(args, name)) for name, f in fields.items() if getattr(args, name) is not None}


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The preset (or defaults) with every given flag applied on top."""
    base = PRESETS[args.preset].config if args.preset else TrainConfig()
    return base.replace(**config_changes(args))


def train_command(config: TrainConfig, fields: Mapping[str, Field] = FIELDS) -> str:
    """The `train` command line that trains this config: every field that differs from its default."""
    parts = ["python -m kmnist_core train"]
    for name, f in fields.items():
        value = getattr(config, name)
        if value == f.default:
            continue
        parts.append(f.cli_flag if f.kind == "bool" else f"{f.cli_flag} {f.format(value).replace(' ', '')}")
    return " ".join(parts)


def build_parser(fields: Mapping[str, Field] = FIELDS) -> argparse.ArgumentParser:
    """The parser of every subcommand."""
    parser = _Parser(prog="python -m kmnist_core", description="KMNIST Lab: train and compare MLPs on KMNIST.")
    parser.add_argument("--data-dir", help="folder of the official KMNIST files (default: $KMNIST_DATA_DIR)")
    parser.add_argument("--runs-dir", help="run store folder (default: $KMNIST_RUNS_DIR or ./runs)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    train = sub.add_parser("train", help="train one configuration and store the run")
    train.add_argument("--preset", choices=sorted(PRESETS), metavar="NAME",
                       help="start from a preset: " + ", ".join(sorted(PRESETS)))
    add_config_flags(train, fields)
    train.add_argument("--force", action="store_true", help="train again even if a completed run is stored")
    sub.add_parser("reproduce", help="train the reference presets and the best MLP; compare with reported numbers "
                                     "and the classic baselines")
    sub.add_parser("baselines", help="4-NN and PCA(50) + 4-NN test accuracy on the loaded data (cached)")
    runs = sub.add_parser("runs", help="list the stored runs, or delete one")
    runs_sub = runs.add_subparsers(dest="runs_command", parser_class=_Parser)
    delete = runs_sub.add_parser("delete", help="delete a run that is not queued or running")
    delete.add_argument("run_id", metavar="RUN")
    rename = runs_sub.add_parser("rename", help="give a run a name (shown wherever runs are listed)")
    rename.add_argument("run_id", metavar="RUN")
    rename.add_argument("name", metavar="NAME")
    note = runs_sub.add_parser("note", help="give a run a note")
    note.add_argument("run_id", metavar="RUN")
    note.add_argument("note", metavar="TEXT")
    tag = runs_sub.add_parser("tag", help="set a run's tags")
    tag.add_argument("run_id", metavar="RUN")
    tag.add_argument("tags", metavar="TAG", nargs="*")
    cancel = sub.add_parser("cancel", help="stop a run that a dashboard or another command is training")
    cancel.add_argument("run_id", metavar="RUN")
    predict = sub.add_parser("predict", help="classify an image (PNG/JPEG) with a run's model, as the Draw page does")
    predict.add_argument("run_id", metavar="RUN")
    predict.add_argument("image", type=Path, metavar="IMAGE")
    export = sub.add_parser("export", help="write a run's model, weights, config, history and predictions to a folder")
    export.add_argument("run_id", metavar="RUN")
    export.add_argument("--out", type=Path, required=True, metavar="DIR", help="the folder to write into")
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the CLI; returns the exit code."""
    out, err = out or sys.stdout, err or sys.stderr
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    try:
        args = build_parser().parse_args(argv)
        if args.command == "train":
            config = config_from_args(args)  # validate flags before loading anything
        store = RunStore(args.runs_dir)
        if args.command == "runs":
            if args.runs_command == "delete":
                service.delete_run(store, args.run_id)
                print(f"run {args.run_id} deleted", file=out)
                return EXIT_OK
            if args.runs_command in ("rename", "note", "tag"):
                info = store.relabel(args.run_id, name=getattr(args, "name", None), note=getattr(args, "note", None),
                                     tags=getattr(args, "tags", None))
                print(f"run {info.run_id}: {info.name}" + (f" [{', '.join(info.tags)}]" if info.tags else ""), file=out)
                return EXIT_OK
            return _list_runs(store, out)
        if args.command == "cancel":
            return _cancel(store, args.run_id, out, err)
        from .data import load_kmnist

        data = load_kmnist(args.data_dir)
        if args.command == "baselines":
            return _baselines(store, data, out)
        if args.command == "predict":
            return _predict(store, args.run_id, args.image, out)
        if args.command == "export":
            for path in service.export_run(store, args.run_id, data, args.out):
                print(path, file=out)
            return EXIT_OK
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
    """Follow one job to its end: a progress bar on a terminal's err, a line per epoch on out; Ctrl-C cancels."""
    from tqdm import tqdm

    printed = 0
    bar = tqdm(total=queue.progress(job_id).epochs, file=err, unit="epoch", disable=not err.isatty(), leave=False)
    try:
        while True:
            snap = queue.progress(job_id)
            for h in snap.history[printed:]:
                if out is not None:
                    bar.write(f"epoch {h['epoch']:3d}/{snap.epochs}  loss {h['loss']:.4f}  acc {h['accuracy']:.4f}"
                              f"  val_loss {h['val_loss']:.4f}  val_acc {h['val_accuracy']:.4f}", file=out)
            bar.n = snap.fraction * snap.epochs
            bar.refresh()
            printed = len(snap.history)
            if not snap.active:
                return snap
            time.sleep(0.2)
    except KeyboardInterrupt:
        queue.cancel(job_id)
        raise
    finally:
        bar.close()


def _train(queue: JobQueue, config: TrainConfig, force: bool, out: TextIO, err: TextIO) -> int:
    job_id = queue.submit(config, force=force)
    snap = _wait(queue, job_id, err, out)
    info = queue.store.get(job_id)
    print(f"run {job_id}: {info.status}{' (cached)' if snap.cached else ''}", file=out)
    if info.status != Status.COMPLETED:
        print(f"Error: run {job_id} {info.status}: {snap.error or info.reason}", file=err)
        return EXIT_FAILED
    print(f"best val accuracy: {info.metrics['best_val_accuracy']:.4f}", file=out)
    print(f"test accuracy: {info.metrics['test_accuracy']:.4f}", file=out)
    return EXIT_OK


def _cancel(store: RunStore, run_id: str, out: TextIO, err: TextIO) -> int:
    """Ask the process training a run to stop it (through the run folder), and wait until it has."""
    info = store.get(run_id)
    if info.status not in (Status.QUEUED, Status.RUNNING):
        print(f"run {run_id} is {info.status}: nothing to cancel", file=out)
        return EXIT_OK
    store.request_stop(run_id)
    deadline = time.monotonic() + CANCEL_WAIT_S
    while (status := store.get(run_id).status) in (Status.QUEUED, Status.RUNNING):
        if time.monotonic() > deadline:
            print(f"Error: run {run_id} is still {status}; its process has not answered within "
                  f"{CANCEL_WAIT_S:.0f} s", file=err)
            return EXIT_FAILED
        time.sleep(0.2)
    print(f"run {run_id}: {status}", file=out)
    return EXIT_OK


def _predict(store: RunStore, run_id: str, image: Path, out: TextIO) -> int:
    """The top-3 classes of an image file, through the Draw page's preprocessing."""
    from .drawing import decode_upload
    from .errors import InputError

    try:
        data = image.read_bytes()
    except OSError as e:
        raise InputError(f"{image}: cannot be read ({e.strerror or e}); give the path of a PNG or JPEG") from e
    prediction = service.predict_image(service.load_network(store, run_id), decode_upload(data))
    if prediction is None:
        raise InputError(f"{image}: the image is blank (no ink on its background); draw a character")
    for cls, p in prediction.ranked(3):
        print(f"{cls.label}  {p:.4f}", file=out)
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
             "val": None, "test": b.test_accuracy, "status": Status.COMPLETED}
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
    head = (f"{'preset':<22} {'config':<40} {'rep val':>8} {'our val':>8} {'diff':>8} {'rep test':>8} "
            f"{'our test':>8} {'diff':>8}")
    print(head, file=out)
    print("-" * len(head), file=out)
    for r in rows:
        dv = None if r["val"] is None or r["reported_val"] is None else r["val"] - r["reported_val"]
        dt = None if r["test"] is None or r["reported_test"] is None else r["test"] - r["reported_test"]
        print(f"{r['preset']:<22} {r['config']:<40} {_fmt(r['reported_val']):>8} {_fmt(r['val']):>8} "
              f"{_fmt(dv, True):>8} {_fmt(r['reported_test']):>8} {_fmt(r['test']):>8} {_fmt(dt, True):>8}", file=out)
    return EXIT_OK if all(r["status"] == Status.COMPLETED for r in rows) else EXIT_FAILED


def _list_runs(store: RunStore, out: TextIO) -> int:
    runs = store.list_runs()
    if not runs:
        print(f"no runs in {store.root}", file=out)
        return EXIT_OK
    for info in runs:
        cfg = info.config.summary() if info.config else "?"
        test = info.metrics.get("test_accuracy")
        extra = f"test {test:.4f}" if isinstance(test, float) else info.reason
        print(f"{info.run_id}  {info.status:<11} {extra:<12} {info.name:<28} {cfg}", file=out)
    return EXIT_OK
