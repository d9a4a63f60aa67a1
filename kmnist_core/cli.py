"""Command line: `python -m kmnist_core train|reproduce|runs|cancel|predict|export|...`; errors: one line, exit 2."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from . import service, sweep_cli
from .config import BEST_MLP, FIELDS, PRESETS, REFERENCE_PRESETS, Field, TrainConfig
from .errors import KmnistError, UsageError
from .jobs import JobQueue, JobSnapshot
from .records import Status
from .store import RunStore

if TYPE_CHECKING:
    from .data import Dataset

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
CANCEL_WAIT_S = 30.0  # how long `cancel` waits for the training process to confirm


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


def config_changes(args: argparse.Namespace, fields: Mapping[str, Field] = FIELDS) -> dict[str, Any]:
    """The fields given on the command line, converted to their types."""
    return {name: True if f.kind == "bool" else f.parse(getattr(args, name))
            for name, f in fields.items() if getattr(args, name) is not None}


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The preset (or defaults) with every given flag applied on top."""
    base = PRESETS[args.preset].config if args.preset else TrainConfig()
    return base.replace(**config_changes(args))


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
    reproduce = sub.add_parser("reproduce", help="train the reference presets and the best MLP; compare with "
                                                 "reported numbers and the classic baselines")
    reproduce.add_argument("--seeds", type=int, default=1, metavar="N",
                           help="train each preset with N seeds and show mean ± sd (default 1: one run each)")
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
    inspect = sub.add_parser("inspect", help="write a run's Inspect page figures (inspect.html, offline) and their "
                                             "numbers (inspect.json) to a folder")
    inspect.add_argument("run_id", metavar="RUN")
    inspect.add_argument("--out", type=Path, required=True, metavar="DIR", help="the folder to write into")
    scheduler = sub.add_parser("scheduler", help="run the Dask scheduler that dashboards and workers connect to")
    scheduler.add_argument("--host", metavar="ADDRESS", help="the address to listen on (default: every interface)")
    scheduler.add_argument("--port", type=int, default=8786, metavar="PORT", help="default 8786")
    worker = sub.add_parser("worker", help="join a Dask cluster as a training worker (on a machine of its own)")
    worker.add_argument("--scheduler", required=True, metavar="ADDRESS", help="the scheduler, e.g. tcp://host:8786")
    worker.add_argument("--host", metavar="ADDRESS", help="the address to listen on (default: Dask's choice)")
    worker.add_argument("--threads", type=int, metavar="N", help="TensorFlow threads (default: this machine's cores)")
    worker.add_argument("--name", metavar="NAME", help="the worker's name in the Workers panel")
    sweep_cli.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the CLI; returns the exit code."""
    out, err = out or sys.stdout, err or sys.stderr
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("distributed").setLevel(logging.CRITICAL)  # the CLI says what failed in its own one line
    try:
        args = build_parser().parse_args(argv)
        if args.command in sweep_cli.COMMANDS:
            return sweep_cli.run(args, out, err)
        if args.command == "scheduler":
            from .engine import run_scheduler

            return run_scheduler(host=args.host, port=args.port)
        if args.command == "worker":
            from .engine import run_worker

            return run_worker(args.scheduler, host=args.host, threads=args.threads, name=args.name,
                              data_dir=args.data_dir)
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
        if args.command == "inspect":
            for path in _inspect(store, args.run_id, data, args.out):
                print(path, file=out)
            return EXIT_OK
        queue = JobQueue(store, data)
        try:
            if args.command == "train":
                return _train(queue, config, args.force, out, err)
            return _reproduce(queue, out, err, args.seeds)
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


def _inspect(store: RunStore, run_id: str, data: Dataset, folder: Path) -> list[Path]:
    """The Inspect page's figures as one offline HTML file and its numbers as JSON; returns the two paths."""
    from . import charts, insight
    from .data import CLASSES
    from .errors import StoreError
    from .store import write_atomic

    insight.checked_run(store, run_id, data, "report")  # before anything is written
    net = service.load_network(store, run_id)
    html_path, json_path = folder / "inspect.html", folder / "inspect.json"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(f"cannot create {folder} ({e.strerror or e})") from e
    report = insight.write_inspect_report(store, run_id, data, json_path, net)
    weights = insight.first_layer_weights(net)
    _, proba = insight.load_run_predictions(store, run_id, data)
    cal = insight.calibration(proba, data.y_test)
    top = insight.confident_mistakes(proba, data.y_test)
    sections: list[tuple[str, Any]] = [
        (f"First-layer weights: the {len(weights.units)} strongest units",
         charts.weight_grid(weights.images, weights.units, weights.limit))]
    for emb in (insight.embedding(store, run_id, data, "pca", net), insight.cached_embedding(store, run_id, data)):
        if emb is not None:
            titles = (("PC 1", "PC 2") if emb.method == "pca" else ("t-SNE 1", "t-SNE 2"))
            sections.append((f"Embedding map ({emb.method.upper()}) of the last hidden layer",
                             charts.embedding_map(emb.coords, emb.indices, emb.labels, emb.pred, titles)))
    sections += [
        ("Calibration", charts.reliability_diagram(cal.edges, cal.confidence, cal.accuracy, cal.count, cal.ece)),
        ("How confident it is", charts.confidence_histogram(cal.hist_edges, cal.hist_correct, cal.hist_wrong)),
        ("The most confident mistakes (true → predicted, probability)",
         [(charts.gray_image(data.x_test[i], 3), f"{CLASSES[t].hiragana} → {CLASSES[p].hiragana} {q:.2f}")
          for i, t, p, q in zip(top.indices, top.true, top.pred, top.probability, strict=True)]),
    ]
    font = Path(__file__).resolve().parents[1] / "static" / "kmnist-hiragana.woff2"
    page = charts.report_html(f"Run {run_id}", sections, font_file=str(font),
                              intro=f"{data.describe()} · test accuracy {report['test_accuracy']:.4f} · "
                                    f"ECE {cal.ece:.4f}")
    try:
        write_atomic(html_path, page.encode())
    except OSError as e:
        raise StoreError(f"cannot write {html_path} ({e.strerror or e})") from e
    return [html_path, json_path]


def reference_rows(queue: JobQueue, names: Sequence[str], err: TextIO, seeds: int = 1) -> list[dict]:
    """Train (or fetch from cache) each preset with `seeds` seeds; one row per preset, reported beside measured.

    With several seeds, "val" and "test" are the means and "val_sd" and "test_sd" the standard deviations.
    """
    from .stats import group_runs, submit_seeds

    rows = []
    for name in names:
        preset = PRESETS[name]
        print(f"{name}: {preset.config.summary()}" + (f" × {seeds} seeds" if seeds > 1 else ""), file=err, flush=True)
        ids = submit_seeds(queue, preset.config, seeds)
        for job_id in ids:
            _wait(queue, job_id, err)
        infos = [queue.store.get(job_id) for job_id in ids]
        row = {"preset": name, "config": preset.config.describe(), "reported_val": preset.reported_val_accuracy,
               "reported_test": preset.reported_test_accuracy, "val_sd": None, "test_sd": None,
               "status": Status.COMPLETED if all(i.completed for i in infos) else infos[0].status}
        [group] = group_runs(infos) or [None]
        if group is None:
            row.update(val=None, test=None)
        else:
            val, test = group.summary("val"), group.summary("test")
            row.update(val=val.mean, test=test.mean, val_sd=val.sd if val.n > 1 else None,
                       test_sd=test.sd if test.n > 1 else None)
        rows.append(row)
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


def _reproduce(queue: JobQueue, out: TextIO, err: TextIO, seeds: int = 1) -> int:
    if seeds < 1:
        raise UsageError(f"--seeds must be at least 1; got {seeds} (see --help)")
    rows = reference_rows(queue, REFERENCE_PRESETS, err, seeds)
    rows += reference_rows(queue, [BEST_MLP], err, seeds)
    rows += baseline_rows(queue.store, queue.data, err)
    print(f"data: {queue.data.describe()}" + (f"; ours: mean ± sd over {seeds} seeds" if seeds > 1 else ""),
          file=out)
    w = 15 if seeds > 1 else 8  # "0.8650 ± 0.0034"
    head = (f"{'preset':<22} {'config':<40} {'rep val':>8} {'our val':>{w}} {'diff':>8} {'rep test':>8} "
            f"{'our test':>{w}} {'diff':>8}")
    print(head, file=out)
    print("-" * len(head), file=out)
    for r in rows:
        dv = None if r["val"] is None or r["reported_val"] is None else r["val"] - r["reported_val"]
        dt = None if r["test"] is None or r["reported_test"] is None else r["test"] - r["reported_test"]
        ours_val = _fmt(r["val"]) + (f" ± {r['val_sd']:.4f}" if r.get("val_sd") is not None else "")
        ours_test = _fmt(r["test"]) + (f" ± {r['test_sd']:.4f}" if r.get("test_sd") is not None else "")
        print(f"{r['preset']:<22} {r['config']:<40} {_fmt(r['reported_val']):>8} {ours_val:>{w}} "
              f"{_fmt(dv, True):>8} {_fmt(r['reported_test']):>8} {ours_test:>{w}} {_fmt(dt, True):>8}", file=out)
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
