"""The dashboard through Streamlit's AppTest: every page, real data, real training, real run store."""

import io
import json
import shutil
import time

import numpy as np
import pytest
from drawing_support import enlarge_to_canvas
from helpers import ROOT, SUBSET, canvas_value, texts, wait_done
from PIL import Image
from streamlit.testing.v1 import AppTest

from kmnist_core.config import PRESETS, REFERENCE_PRESETS, TINY, count_params
from kmnist_core.data import ATTRIBUTION, CLASSES
from kmnist_core.drawing import preprocess_canvas
from kmnist_core.jobs import JobQueue
from kmnist_core.model import load_model
from kmnist_core.store import RunStore
from kmnist_core.train import predict_proba
from pages import common

PAGES = tuple(script for script, _, _ in common.PAGE_TABLE)
TITLES = {script: title for script, title, _ in common.PAGE_TABLE}
NO_RUN = "No completed run yet: train a model first."
EMPTY_STATE = {"pages/compare.py": NO_RUN, "pages/confusion.py": NO_RUN, "pages/inspect.py": NO_RUN,
               "pages/draw.py": NO_RUN, "pages/sweep.py": "No sweep yet: define a space and start one."}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data):
    """A run store holding one completed TINY run, trained once for this module through the core."""
    store = RunStore(tmp_path_factory.mktemp("trained") / "runs")
    queue = JobQueue(store, data)
    try:
        run_id = queue.submit(TINY)
        assert wait_done(queue, run_id).status == "completed"
    finally:
        queue.close()
    return store.root, run_id


@pytest.fixture
def with_run(env, trained):
    """The env's runs dir holding a copy of the trained run (so a test may delete it)."""
    root, run_id = trained
    shutil.copytree(root, env)
    return run_id


def app(page=None):
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=60)
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def chart_spec(at, index=0):
    return json.loads(at.get("plotly_chart")[index].proto.spec)


def assert_error_on_every_page(at, message):
    """Each page, opened in turn, shows an error containing message and raises nothing."""
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception, (page, at.exception)
        assert any(message in e for e in texts(at.error)), page


def poll(at, done, timeout=120):
    """Rerun the app (as the fragment's timer would) until done(at) holds."""
    deadline = time.monotonic() + timeout
    while not done(at):
        assert time.monotonic() < deadline, "the page did not get there in time"
        time.sleep(0.5)
        at.run()
        assert not at.exception, at.exception
    return at


# --- every page, with and without runs ---


def test_every_page_renders_without_runs_and_points_to_train(env):
    at = app()
    sidebar = " ".join(texts(at.sidebar.caption) + texts(at.sidebar.markdown))
    assert "8,000 train / 2,000 test" in sidebar and ATTRIBUTION in sidebar and "idle" in sidebar
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception, (page, at.exception)
        assert texts(at.main.title) == [TITLES[page]] and not at.error
        if page in EMPTY_STATE:  # an empty page says what to do first ...
            assert EMPTY_STATE[page] in texts(at.info), page
        if EMPTY_STATE.get(page) == NO_RUN:  # ... and links to Train when that is where to go
            assert at.get("page_link"), page


def test_every_page_renders_with_a_stored_run(with_run):
    at = app()
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception, (page, at.exception)
        assert not at.error and not at.warning, (page, texts(at.error), texts(at.warning))
    at.switch_page("pages/confusion.py").run()
    assert at.selectbox(key="run").value == with_run  # the best (only) completed run
    at.switch_page("pages/draw.py").run()
    assert at.selectbox(key="run").value == with_run
    assert any("Draw a character" in t for t in texts(at.info))


# --- Train ---


def test_train_a_tiny_config_from_the_page_then_find_it_in_compare(env):
    at = app()
    at.slider(key="train_n_layers").set_value(1)
    at.select_slider(key="train_units_0").set_value(32)
    at.select_slider(key="train_weight_decay").set_value(0.0)
    at.number_input(key="train_epochs").set_value(2)
    at.number_input(key="train_batch_size").set_value(256).run()
    assert at.selectbox(key="train_preset").value == "custom"
    assert f"**{count_params(TINY):,} parameters**" in " ".join(texts(at.caption))
    at.button(key="train_submit").click().run()
    assert not at.exception, at.exception
    run_id = at.session_state["train_job"]
    poll(at, lambda a: a.metric)  # the result's metrics appear when the job completes
    metrics = {m.label: m.value for m in at.metric}
    store = RunStore(env)
    info = store.get(run_id)
    assert info.completed and info.config == TINY
    assert metrics["Test accuracy"] == f"{info.metrics['test_accuracy']:.4f}"
    assert metrics["Best val accuracy"] == f"{info.metrics['best_val_accuracy']:.4f}"
    curves = chart_spec(at)
    train_loss = next(t for t in curves["data"] if t["name"] == "train loss")
    assert train_loss["y"] == [h["loss"] for h in info.history]

    at.switch_page("pages/compare.py").run()
    table = at.dataframe[0].value
    row = table[table.run == run_id].iloc[0]
    assert (row["source"], row["status"], row["hidden layers"]) == ("measured", "completed", "32")
    assert row["test accuracy"] == pytest.approx(info.metrics["test_accuracy"])
    assert list(table[table.source == "reported"].run) == list(REFERENCE_PRESETS)

    at.switch_page("pages/train.py").run()  # back again: the widgets and the job are still there
    assert at.number_input(key="train_epochs").value == 2 and at.slider(key="train_n_layers").value == 1
    assert at.session_state["train_job"] == run_id and at.metric
    at.button(key="train_submit").click().run()  # the same config again: answered from the store
    assert at.session_state["train_job"] == run_id
    assert any(t.startswith("cached") for t in texts(at.success))
    assert len(store.list_runs()) == 1


def test_a_cached_config_shows_its_result_at_once_and_can_be_trained_again_and_stopped(with_run):
    at = app()
    at.selectbox(key="train_preset").set_value("custom").run()
    at.slider(key="train_n_layers").set_value(1)
    at.select_slider(key="train_units_0").set_value(32)
    at.select_slider(key="train_weight_decay").set_value(0.0)
    at.number_input(key="train_epochs").set_value(2)
    at.number_input(key="train_batch_size").set_value(256).run()
    assert any(f"completed run {with_run}" in t for t in texts(at.success))  # before anyone clicks Train
    assert at.metric and at.get("plotly_chart")
    at.button(key="train_again").click().run()
    new_id = at.session_state["train_job"]
    assert new_id != with_run
    at.button(key="train_stop").click().run()
    poll(at, lambda a: any("cancelled" in p.proto.text for p in a.get("progress")))
    assert RunStore().get(new_id).status == "cancelled"
    assert RunStore().get(with_run).completed  # the stored run is untouched


def test_presets_fill_the_widgets_and_any_change_makes_the_config_custom(env):
    at = app()
    assert at.selectbox(key="train_preset").value == "ref-relu-adam"  # the study's best, to start from
    at.selectbox(key="train_preset").set_value("ref-sigmoid-rmsprop").run()
    assert at.slider(key="train_n_layers").value == 3
    assert [at.select_slider(key=f"train_units_{i}").value for i in range(3)] == [256, 128, 64]
    assert at.selectbox(key="train_activation").value == "sigmoid"
    assert at.selectbox(key="train_optimizer").value == "rmsprop"
    assert at.select_slider(key="train_weight_decay").value == 0.0005
    params = count_params(PRESETS["ref-sigmoid-rmsprop"].config)
    assert f"**{params:,} parameters**" in " ".join(texts(at.caption))
    at.selectbox(key="train_activation").set_value("tanh").run()
    assert at.selectbox(key="train_preset").value == "custom"


@pytest.mark.parametrize(("key", "value", "message"), [
    ("train_layers_text", "abc", "hidden_layers must be 1 to 6"),
    ("train_layers_text", "128,,64", "hidden_layers must be"),
    ("train_layers_text", "1, 2, 3, 4, 5, 6, 7", "hidden_layers must be"),
    ("train_layers_text", "100000", "hidden_layers must be"),
    # An open bound cannot be a widget minimum; closed ranges are the widgets' own (tests/test_fields.py).
    ("train_learning_rate", 0.0, "learning_rate must be a number in the range (0, 1]"),
])
def test_invalid_widgets_show_the_error_inline_and_disable_train(env, key, value, message):
    at = app()
    if key == "train_layers_text":
        at.toggle(key="train_layers_as_text").set_value(True).run()
        assert at.text_input(key="train_layers_text").value == "128, 64"  # carried over from the sliders
        at.text_input(key=key).set_value(value).run()
    else:
        at.number_input(key=key).set_value(value).run()
    assert not at.exception
    assert any(message in e for e in texts(at.error)), texts(at.error)
    assert at.button(key="train_submit").disabled
    if key == "train_layers_text":
        at.text_input(key=key).set_value("256, 128").run()
    else:
        at.number_input(key=key).set_value(None if key == "train_learning_rate" else 10).run()
    assert not at.error and not at.button(key="train_submit").disabled


# --- Compare ---


def test_compare_lists_reported_beside_measured_deletes_with_confirmation_and_exports_csv(with_run):
    at = app("pages/compare.py")
    table = at.dataframe[0].value
    assert list(table[table.source == "reported"].run) == list(REFERENCE_PRESETS)
    assert list(table[table.source == "measured"].run) == [with_run]
    assert at.download_button(key="compare_csv").proto.label == "Download CSV"
    assert at.multiselect(key="compare_overlay").value == [with_run]
    assert len(chart_spec(at, 0)["data"]) == 1  # the overlay: one line per selected run
    assert len(at.get("plotly_chart")) == 1  # parallel coordinates (WebGL, ~3 s) wait for their expander
    at.session_state["compare_parcoords_open"] = True  # what opening it, or a link with it open, sets
    at.run()
    [parcoords] = chart_spec(at, 1)["data"]
    assert parcoords["type"] == "parcoords" and len(parcoords["dimensions"][0]["values"]) == 1  # a line per run

    at.selectbox(key="compare_run").set_value(with_run).run()
    at.button(key="compare_delete").click().run()
    assert any(f"Delete run {with_run}?" in w for w in texts(at.warning))
    assert (RunStore().root / with_run).is_dir()  # nothing is deleted before the confirmation
    at.button(key="compare_delete_no").click().run()
    assert not at.warning and (RunStore().root / with_run).is_dir()
    at.selectbox(key="compare_run").set_value(with_run).run()
    at.button(key="compare_delete").click().run()
    at.button(key="compare_delete_yes").click().run()
    assert not at.exception
    assert not (RunStore().root / with_run).is_dir()
    assert f"run {with_run} deleted" in texts(at.info)
    assert with_run not in set(at.dataframe[0].value.run)


def test_compare_queues_the_four_reference_configurations(env):
    at = app("pages/compare.py")
    at.button(key="compare_run_references").click().run()
    assert not at.exception
    assert "4 queued, 0 already in the store; the table updates as they finish." in texts(at.success)
    runs = RunStore().list_runs()
    assert sorted(r.config.describe() for r in runs) == sorted(PRESETS[n].config.describe() for n in REFERENCE_PRESETS)
    assert any(c.startswith("In progress:") for c in texts(at.caption))
    # the env fixture's teardown closes the queue, which cancels them


# --- Confusion ---


def test_confusion_cell_selection_shows_that_cells_test_images(with_run, data):
    at = app("pages/confusion.py")
    store = RunStore()
    info = store.get(with_run)
    cm = np.array(info.metrics["confusion"])
    heat = chart_spec(at)["data"][0]
    assert heat["z"] == cm.tolist() and heat["x"][0] == "お (o)"
    assert at.metric[0].value == f"{info.metrics['test_accuracy']:.4f}"
    off = np.where(np.eye(10, dtype=bool), -1, cm)
    true, pred = np.unravel_index(np.argmax(off), cm.shape)  # the most frequent confusion
    at.selectbox(key="confusion_true").set_value(int(true))
    at.selectbox(key="confusion_pred").set_value(int(pred)).run()
    assert not at.exception
    title = f"True {CLASSES[true].label}, predicted as {CLASSES[pred].label}: {cm[true, pred]} test images"
    assert title in texts(at.subheader)
    (gallery,) = at.image
    captions = gallery.captions
    assert len(captions) == min(36, cm[true, pred])
    pred_all, proba = store.load_predictions(with_run)
    idx = np.flatnonzero((data.y_test == true) & (pred_all == pred))
    assert captions[0] == f"p={proba[idx, pred].max():.2f}"  # most confident first
    per_class = at.dataframe[0].value
    assert list(per_class["class"]) == [c.label for c in CLASSES] and per_class["support"].sum() == cm.sum()
    # the outline follows the chosen cell; row-normalised rows sum to 1
    assert chart_spec(at)["layout"]["shapes"][0]["x0"] == pred - 0.5
    at.radio(key="confusion_mode").set_value("row-normalised").run()
    z = np.array(chart_spec(at)["data"][0]["z"])
    assert np.allclose(z.sum(axis=1), 1.0)


def test_knn_baselines_are_computed_once_then_listed_in_compare_and_shown_in_confusion(with_run, data):
    from kmnist_core.baselines import load_baselines

    at = app("pages/compare.py")
    table = at.dataframe[0].value
    assert "baseline" not in set(table["source"])
    at.button(key="compare_baselines").click().run()
    assert not at.exception, at.exception
    cached = load_baselines(RunStore(), data)
    assert cached is not None  # computed by the button and cached in the run store
    table = at.dataframe[0].value
    rows = table[table["source"] == "baseline"]
    assert sorted(rows["test accuracy"].round(4)) == sorted(round(b.test_accuracy, 4) for b in cached.values())
    assert "compare_baselines" not in [b.key for b in at.button]  # once cached, no button
    at.switch_page("pages/confusion.py").run()
    at.radio(key="confusion_source").set_value("knn4").run()
    assert not at.exception, at.exception
    knn = cached["knn4"]
    assert chart_spec(at)["data"][0]["z"] == knn.confusion.tolist()
    assert at.metric[0].value == f"{knn.test_accuracy:.4f}"
    at.selectbox(key="confusion_true").set_value(2)
    at.selectbox(key="confusion_pred").set_value(2).run()
    assert f"True {CLASSES[2].label}, correctly classified: {knn.confusion[2, 2]} test images" in texts(at.subheader)


def test_a_run_deleted_elsewhere_shows_no_longer_exists(with_run):
    at = app("pages/confusion.py")
    assert at.selectbox(key="run").value == with_run
    RunStore().delete(with_run)  # as another tab would
    at.run()
    assert not at.exception
    assert f"run {with_run} no longer exists" in texts(at.warning)
    assert "No completed run yet: train a model first." in texts(at.info)


@pytest.mark.parametrize(("param", "kind", "message"), [
    ("../../etc/passwd", "error", "is not valid"),
    ("/etc/passwd", "error", "is not valid"),
    ("20200101-000000-abcdef", "warning", "run 20200101-000000-abcdef no longer exists"),
])
def test_run_ids_from_the_query_string_are_validated(with_run, param, kind, message):
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=60)
    at.run()
    at.switch_page("pages/confusion.py")
    at.query_params["run"] = param
    at.run()
    assert not at.exception
    assert any(message in t for t in texts(getattr(at, kind)))
    assert at.selectbox(key="run").value == with_run  # falls back to the best run


# --- Draw ---


def test_draw_classifies_the_canvas_and_an_empty_canvas_gives_the_prompt(with_run, data):
    at = app("pages/draw.py")
    sample = data.x_test[0]
    rgba = enlarge_to_canvas(sample)
    at.session_state["canvas"] = canvas_value(rgba)
    at.run()
    assert not at.exception, at.exception
    model = load_model(RunStore().model_path(with_run))
    expected = predict_proba(model, preprocess_canvas(rgba)[None])[0]
    top = CLASSES[int(np.argmax(expected))]
    assert any(top.hiragana in m for m in texts(at.markdown))
    assert f"### {top.romaji} · {expected.max():.1%}" in texts(at.markdown)
    bars = chart_spec(at)["data"][0]
    assert np.allclose(bars["y"], expected, atol=1e-6) and sum(bars["y"]) == pytest.approx(1.0, abs=1e-4)
    assert len(at.image) >= 2  # the 28x28 input and training examples of the predicted class

    at.session_state["canvas"] = canvas_value(np.zeros((280, 280, 4), np.uint8))  # cleared canvas
    at.run()
    assert any("Draw a character" in t for t in texts(at.info))
    assert not at.get("plotly_chart")


def test_draw_takes_uploads_and_explains_bad_ones(with_run, data):
    at = app("pages/draw.py")
    buf = io.BytesIO()
    Image.fromarray(data.x_test[1]).save(buf, format="PNG")
    at.file_uploader(key="draw_upload").upload("glyph.png", buf.getvalue(), "image/png").run()
    assert not at.exception, at.exception
    assert at.image[0].captions == ["from the upload"]
    assert at.get("plotly_chart")  # the probability bars
    at.file_uploader(key="draw_upload").set_value(("notes.png", b"hello, not a picture", "image/png")).run()
    assert not at.exception
    assert any("not a PNG or JPEG" in e for e in texts(at.error))
    assert not at.get("plotly_chart")


# --- errors every page shows ---


def test_a_data_error_shows_on_every_page_and_recovers_once_the_folder_is_fixed(env, tmp_path, monkeypatch):
    folder = tmp_path / "kmnist"
    folder.mkdir()
    monkeypatch.setenv("KMNIST_DATA_DIR", str(folder))
    at = app()
    assert_error_on_every_page(at, "is missing kmnist-train-imgs.npz")
    for f in SUBSET.glob("kmnist-*.npz"):  # fix the folder; same process, same caches
        (folder / f.name).symlink_to(f)
    at.run()
    assert not at.exception and not at.error
    assert "**Data:** 8,000 train / 2,000 test from" in " ".join(texts(at.sidebar.caption))


def test_a_runs_dir_that_is_a_file_is_reported_not_raised(env, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("KMNIST_RUNS_DIR", str(blocker))
    at = app()
    assert_error_on_every_page(at, "is a file, not a folder")
