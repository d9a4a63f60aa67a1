"""The service layer: what the pages decide, on a real store with real runs; and its CLI twins."""

import csv
import io
import json

import numpy as np
import pytest
from drawing_support import enlarge_to_canvas
from helpers import SUBSET, wait_done, wait_until
from PIL import Image

from kmnist_core import service
from kmnist_core.cli import main
from kmnist_core.config import REFERENCE_PRESETS, TINY
from kmnist_core.errors import RunNotFoundError, StoreError
from kmnist_core.model import load_model
from kmnist_core.records import EPOCH_KEYS
from kmnist_core.store import RunInfo


def _run(run_id, status="completed", val=0.8, created=0.0):
    metrics = {"best_val_accuracy": val, "test_accuracy": 0.5} if status == "completed" else {}
    return RunInfo(run_id, None, status, TINY, created=created, metrics=metrics, reason="why" * (status != "completed"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data):
    """A store with one completed TINY run, trained through a real queue."""
    from kmnist_core.jobs import JobQueue
    from kmnist_core.store import RunStore

    store = RunStore(tmp_path_factory.mktemp("service") / "runs")
    queue = JobQueue(store, data)
    try:
        run_id = queue.submit(TINY)
        assert wait_done(queue, run_id).status == "completed"
    finally:
        queue.close()
    return store, run_id


def test_best_and_default_runs_are_chosen_on_validation_never_test():
    a, b = _run("20261127-090000-aaaaaa", val=0.80, created=1), _run("20261127-090100-bbbbbb", val=0.85, created=2)
    c = _run("20261127-090200-cccccc", val=0.85, created=3)  # tie on val: the newest wins
    d = _run("20261127-090300-dddddd", status="failed", created=4)
    assert service.best_run([a, b, c, d]) is c and service.best_run([d]) is None
    assert service.completed_runs([a, d, b]) == [a, b]
    assert service.default_run([a, b, c, d], [None, d.run_id, a.run_id]) is a  # the first wanted that can be shown
    assert service.default_run([a, b, c, d], ["20990101-000000-ffffff"]) is c
    assert service.unavailable_reason([a, d], d.run_id) == f"run {d.run_id} is failed: why; only completed runs " \
                                                            "can be shown here"
    assert service.unavailable_reason([a], d.run_id) == f"run {d.run_id} no longer exists"
    assert service.unavailable_reason([a], a.run_id) is None


def test_cached_run_and_same_data(trained, data):
    store, run_id = trained
    assert service.cached_run(store, TINY, data) == run_id
    assert service.cached_run(store, TINY.replace(seed=5), data) is None
    info = store.get(run_id)
    assert service.same_data(info, data)
    other = type(data)(data.x_train[:100], data.y_train[:100], data.x_test, data.y_test, source="part")
    assert not service.same_data(info, other)
    assert "was tested on other data" in service.run_subject(store, info, other).warning


def test_submit_presets_answers_trained_ones_from_the_store(queue):
    first = queue.submit(TINY)
    wait_done(queue, first)
    ids, cached = service.submit_presets(queue, REFERENCE_PRESETS[:1])
    assert cached == 0 and queue.progress(ids[0]).active
    queue.cancel(ids[0])


def test_a_prediction_of_a_drawing_matches_the_stored_keras_model(trained, data):
    store, run_id = trained
    network = service.load_network(store, run_id)
    canvas = enlarge_to_canvas(data.x_test[0])  # a real test image, drawn on the canvas
    prediction = service.predict_image(network, canvas)
    model = load_model(store.model_path(run_id))
    expected = np.asarray(model(prediction.image[None], training=False))[0]
    np.testing.assert_allclose(prediction.proba, expected, atol=1e-5)
    ranked = prediction.ranked(3)
    assert ranked[0] == prediction.top and [p for _, p in ranked] == sorted((p for _, p in ranked), reverse=True)
    assert service.predict_image(network, np.zeros((280, 280, 4), np.uint8)) is None  # nothing drawn


def test_exports_are_whole_and_parse(trained, data, tmp_path):
    store, run_id = trained
    written = service.export_run(store, run_id, data, tmp_path / "out")
    names = sorted(p.name for p in written)
    assert names == ["config.json", "history.csv", "model.keras", "predictions.csv", "weights.npz"]
    load_model(tmp_path / "out" / "model.keras")  # Keras, in safe mode
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / "predictions.csv").read_text())))
    assert len(rows) == len(data.y_test) and [int(r["true"]) for r in rows[:5]] == data.y_test[:5].tolist()
    assert len(rows[0]) == 3 + 10
    history = list(csv.DictReader(io.StringIO((tmp_path / "out" / "history.csv").read_text())))
    assert len(history) == TINY.epochs and tuple(history[0]) == EPOCH_KEYS
    assert json.loads((tmp_path / "out" / "config.json").read_text())["config"]["hidden_layers"] == [32]
    with np.load(tmp_path / "out" / "weights.npz", allow_pickle=False) as npz:
        assert npz["dense_1/kernel"].shape == (784, 32)


def test_delete_refuses_an_active_run_and_removes_a_finished_one(trained, tmp_path):
    store, run_id = trained
    other = store.create(TINY.replace(seed=9), "k")
    with pytest.raises(StoreError, match="is queued: stop it first"):
        service.delete_run(store, other)
    store.set_status(other, "cancelled")
    service.delete_run(store, other)
    with pytest.raises(RunNotFoundError):
        store.get(other)


def _cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    return main(list(argv), out=out, err=err), out.getvalue(), err.getvalue()


def test_cli_predict_export_delete_and_cancel(trained, data, tmp_path):
    store, run_id = trained
    image = tmp_path / "glyph.png"
    Image.fromarray(enlarge_to_canvas(data.x_test[1])).save(image)
    code, out, _ = _cli("--data-dir", str(SUBSET), "--runs-dir", str(store.root), "predict", run_id, str(image))
    lines = out.splitlines()
    assert code == 0 and len(lines) == 3 and all(" 0." in line or " 1." in line for line in lines)
    code, _, err = _cli("--data-dir", str(SUBSET), "--runs-dir", str(store.root), "predict", run_id,
                        str(tmp_path / "none.png"))
    assert code == 2 and "none.png: cannot be read" in err and err.count("\n") == 1
    code, out, _ = _cli("--data-dir", str(SUBSET), "--runs-dir", str(store.root), "export", run_id,
                        "--out", str(tmp_path / "x"))
    assert code == 0 and len(out.splitlines()) == 5
    done = store.create(TINY.replace(seed=8), "k")
    store.set_status(done, "cancelled")
    code, out, _ = _cli("--runs-dir", str(store.root), "cancel", done)
    assert code == 0 and "nothing to cancel" in out
    code, out, _ = _cli("--runs-dir", str(store.root), "runs", "delete", done)
    assert code == 0 and out.strip() == f"run {done} deleted"
    code, _, err = _cli("--runs-dir", str(store.root), "runs", "delete", "../etc")
    assert code == 2 and "is not valid" in err


def test_cli_cancel_stops_a_run_that_a_live_queue_trains(queue, store):
    job = queue.submit(TINY.replace(epochs=200, batch_size=16))
    wait_until(lambda: queue.progress(job).epoch >= 1)
    code, out, _ = _cli("--runs-dir", str(store.root), "cancel", job)
    assert code == 0 and out.strip() == f"run {job}: cancelled"
    assert wait_done(queue, job, timeout=10).status == "cancelled"


def test_names_notes_and_tags_survive_a_new_store_and_show_in_labels(trained):
    store, run_id = trained
    assert store.get(run_id).name == "32 relu adam"  # the default, made from the config
    code, out, _ = _cli("--runs-dir", str(store.root), "runs", "rename", run_id, "small baseline")
    assert code == 0 and out.strip() == f"run {run_id}: small baseline"
    _cli("--runs-dir", str(store.root), "runs", "note", run_id, "first try")
    _cli("--runs-dir", str(store.root), "runs", "tag", run_id, "demo", "tiny")
    info = type(store)(store.root).get(run_id)  # as a restarted server reads it
    assert (info.name, info.note, info.tags) == ("small baseline", "first try", ["demo", "tiny"])
    from kmnist_core import views

    assert views.run_label(info).startswith("small baseline · test 0.")
    row = views.compare_table([info]).iloc[0]
    assert row["name"] == "small baseline" and row["note"].startswith("first try")
    code, _, err = _cli("--runs-dir", str(store.root), "runs", "rename", run_id, "x" * 200)
    assert code == 2 and "at most 80 characters" in err
    store.relabel(run_id, name="")  # back to the default
    assert store.get(run_id).name == "32 relu adam"
