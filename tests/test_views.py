"""What the pages show, as plain data: table rows, run picking, option lists, status lines."""

import numpy as np
import pytest
from helpers import wait_done

from kmnist_core import service, views
from kmnist_core.config import REFERENCE_PRESETS, TINY, TrainConfig
from kmnist_core.data import CLASSES
from kmnist_core.jobs import JobSnapshot
from kmnist_core.store import RunInfo


def _run(run_id, status="completed", val=0.8, test=0.75, created=0.0, config=TINY, **metrics):
    m = {"best_val_accuracy": val, "test_accuracy": test, **metrics} if status == "completed" else {}
    return RunInfo(run_id, None, status, config, created=created, metrics=m)


def test_compare_table_puts_reported_rows_beside_measured_runs():
    runs = [_run("20261127-093000-ab12cd", wall_seconds=12.5, params=25450),
            RunInfo("20261127-093100-ab12ce", None, "broken", None, reason="metrics.json is unreadable"),
            _run("20261127-093200-ab12cf", status="interrupted")]
    runs[2].reason = "the process training it stopped before it finished"
    df = views.compare_table(runs, views.reported_rows())
    assert list(df.columns) == list(views.TABLE_COLUMNS)
    reported = df[df.source == "reported"]
    assert list(reported.run) == list(REFERENCE_PRESETS)
    best = reported.set_index("run").loc["ref-relu-adam"]
    assert best["test accuracy"] == 0.8834 and best["best val accuracy"] == 0.9495
    assert best["hidden layers"] == "128, 64" and best["weight decay"] == 0.0005
    # the study reported its four axes and two accuracies, nothing more: the rest stays empty
    assert best[["learning rate", "epochs", "parameters", "options", "train time (s)"]].isna().all()
    assert "reported by the reference study" in best["note"]
    measured = df[df.source == "measured"].set_index("run")
    row = measured.loc["20261127-093000-ab12cd"]
    assert (row["hidden layers"], row["status"], row["train time (s)"], row["parameters"]) == ("32", "completed", 12.5,
                                                                                               25450)
    assert row["options"] == "batch 256"  # TINY's only non-default option
    broken = measured.loc["20261127-093100-ab12ce"]
    assert broken["status"] == "broken" and broken["note"] == "metrics.json is unreadable"
    assert np.isnan(broken["test accuracy"])
    assert measured.loc["20261127-093200-ab12cf"]["note"].startswith("the process training it stopped")
    assert "source" in df.to_csv(index=False).splitlines()[0]


def test_options_text_lists_only_what_differs_from_the_defaults():
    assert views.options_text(TrainConfig()) == ""
    cfg = TrainConfig(dropout=0.2, lr_schedule="cosine", batch_norm=True, early_stopping=3)
    assert views.options_text(cfg) == "dropout 0.2, lr schedule cosine, early stop 3, batch norm"
    # learning rate and epochs have table columns of their own; a one-line summary names them too
    cfg = cfg.replace(learning_rate=0.002, epochs=20)
    assert views.options_text(cfg) == "dropout 0.2, lr schedule cosine, early stop 3, batch norm"
    assert cfg.summary() == ("[128, 64] relu adam wd=0 · lr 0.002, epochs 20, dropout 0.2, lr schedule cosine,"
                             " early stop 3, batch norm")
    assert TrainConfig().summary() == TrainConfig().describe() == "[128, 64] relu adam wd=0"


def test_run_label_and_durations():
    label = views.run_label(_run("20261127-093000-ab12cd", test=0.88341))
    assert label == "32 relu adam · test 0.8834 · 20261127-093000-ab12cd"
    assert views.run_label(_run("20261127-093000-ab12cd", status="failed")) == "32 relu adam · failed · " \
                                                                                "20261127-093000-ab12cd"
    assert [views.format_duration(s) for s in (None, 0.4, 42, 185, 3725)] == [
        "-", "0 s", "42 s", "3 min 05 s", "1 h 02 min"]


def test_progress_text_and_queue_summary():
    snap = JobSnapshot("j1", TINY, "running", epoch=3, epochs=10, eta_s=12.2)
    assert views.progress_text(snap) == "epoch 3/10 · ETA 12 s"
    starting = JobSnapshot("j2", TINY, "running", epochs=10)
    assert views.progress_text(starting) == "starting: 10 epochs"
    queued = JobSnapshot("j3", TINY, "queued", epochs=10, position=2)
    assert views.progress_text(queued) == "queued, position 2"
    assert views.progress_text(JobSnapshot("j4", TINY, "completed", cached=True)).startswith("completed (cached")
    failed = JobSnapshot("j5", TINY, "failed", epochs=2, history=({"epoch": 1},), error="StoreError: disk full")
    assert views.progress_text(failed) == "failed after 1/2 epochs: StoreError: disk full"
    assert views.queue_summary([snap, queued, JobSnapshot("j6", TINY, "queued")]) == "training 3/10 epochs · 2 queued"
    assert views.queue_summary([]) == "idle: nothing training"


def test_cell_samples_are_the_cells_images_most_confident_first():
    y_true = np.array([1, 1, 1, 2, 1, 1], dtype=np.uint8)
    pred = np.array([6, 1, 6, 6, 6, 6], dtype=np.uint8)
    proba = np.full((6, 10), 0.01, dtype=np.float32)
    proba[[0, 2, 4, 5], 6] = [0.5, 0.9, 0.7, 0.6]
    idx, p, total = views.cell_samples(y_true, pred, proba, 1, 6, limit=3)
    assert list(idx) == [2, 4, 5] and np.allclose(p, [0.9, 0.7, 0.6]) and total == 4
    idx, p, total = views.cell_samples(y_true, pred, proba, 2, 1)
    assert len(idx) == 0 and total == 0


def test_class_metrics_table_and_stored_confusion(queue, store):
    run_id = queue.submit(TINY)
    assert wait_done(queue, run_id).status == "completed"
    info = store.get(run_id)
    subject = service.run_subject(store, info, queue.data)
    table = views.class_metrics_table(subject.per_class)
    assert list(table["class"]) == [c.label for c in CLASSES]
    assert table["support"].sum() == len(queue.data.y_test)
    cm = subject.confusion
    assert cm.shape == (10, 10) and np.trace(cm) / cm.sum() == pytest.approx(info.metrics["test_accuracy"])
    assert np.array_equal(cm.sum(axis=1), table["support"].to_numpy())


def test_class_examples_and_enlarge():
    labels = np.array([3, 0, 3, 3, 1], dtype=np.uint8)
    assert list(views.class_examples(labels, 3, n=2)) == [0, 2]
    img = np.arange(4, dtype=np.uint8).reshape(2, 2)
    big = views.enlarge(img, 3)
    assert big.shape == (6, 6) and big[0, 0] == 0 and big[5, 5] == 3 and big[2, 3] == 1
