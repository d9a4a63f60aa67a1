"""The Data and Inspect pages and the Draw page's evidence through AppTest, and the `inspect` CLI, on a real run."""

import base64
import io
import json
import shutil

import numpy as np
import pytest
from drawing_support import enlarge_to_canvas
from helpers import ROOT, SUBSET, canvas_value, texts
from streamlit.testing.v1 import AppTest

from kmnist_core import charts, insight
from kmnist_core.cli import main as cli_main
from kmnist_core.config import TINY
from kmnist_core.data import CLASSES
from kmnist_core.drawing import preprocess_canvas
from kmnist_core.inference import Network
from kmnist_core.store import WEIGHTS_FILE, RunStore

CONFIG = TINY.replace(hidden_layers=(96, 32))  # 96 first-layer units: the weight view's top 64 is a real choice
VIEWS = ("weights", "embedding", "calibration", "mistakes")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data):
    """(store root, run id) of one real run on the subset, trained in this process, stored as the worker stores it."""
    from kmnist_core.model import export_weights
    from kmnist_core.train import train

    store = RunStore(tmp_path_factory.mktemp("insight-pages") / "runs")
    result = train(CONFIG, data)
    run_id = store.create(CONFIG, CONFIG.key(data.fingerprint), data.source)
    store.save_result(run_id, result, export_weights(result.model))
    assert store.get(run_id).completed
    return store.root, run_id


@pytest.fixture
def with_run(env, trained):
    """The env's runs dir holding a copy of the trained run (so a test may damage or delete it)."""
    root, run_id = trained
    shutil.copytree(root / run_id, env / run_id)
    return run_id


def app(page, run_id=None):
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=60)
    at.run()
    at.switch_page(page)
    if run_id:
        at.query_params["run"] = run_id
    at.run()
    assert not at.exception, at.exception
    return at


def charts_by_key(at):
    """Plotly specs by their Streamlit key (the element id ends with it)."""
    specs = {}
    for chart in at.get("plotly_chart"):
        key = chart.proto.id.rsplit("-", 1)[-1] if chart.proto.id else ""
        specs[key] = json.loads(chart.proto.spec)
    return specs


def array(value):
    """A plotly spec array: a plain list, or numpy's {dtype, bdata, shape} typed array."""
    if isinstance(value, dict) and "bdata" in value:
        a = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        return a.reshape([int(s) for s in str(shape).split(",")]) if shape else a
    return np.asarray(value)


def one_line_problems(at):
    """Every error and warning shown, each asserted to be one line; no exception."""
    assert not at.exception, at.exception
    shown = texts(at.error) + texts(at.warning)
    assert all("\n" not in m and "Traceback" not in m for m in shown), shown
    return shown


# --- with and without runs ---


def test_both_pages_are_in_the_navigation_and_render_without_runs(env, data):
    # AppTest.switch_page finds only the pages st.navigation registered, so reaching them proves both are listed.
    at = app("pages/data.py")
    assert texts(at.main.title) == ["Data"] and not at.error and not at.warning
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {"Train (fitted on)": "7,200", "Validation": "800", "Test": "2,000"}
    at.switch_page("pages/inspect.py").run()
    assert not at.exception, at.exception
    assert texts(at.main.title) == ["Inspect"] and not at.error
    assert "No completed run yet: train a model first." in texts(at.info)


def test_data_page_counts_add_up_to_the_splits_and_samples_reshuffle(env, data):
    at = app("pages/data.py")
    table = at.dataframe[0].value
    assert list(table.columns) == ["index", "hiragana", "romaji", "codepoint", "train", "validation", "test", "total",
                                   "mean ink", "ink histogram"]
    assert list(table.hiragana) == [c.hiragana for c in CLASSES]
    assert table.train.sum() + table.validation.sum() == len(data.y_train)
    assert table.test.sum() == len(data.y_test)
    assert table.total.sum() == len(data.y_train) + len(data.y_test)
    assert list(table.test) == np.bincount(data.y_test, minlength=10).tolist()
    # Each class's ink histogram counts its images of the training split; its mean is theirs.
    assert [sum(h) for h in table["ink histogram"]] == np.bincount(data.y_train, minlength=10).tolist()
    ink = data.x_train.reshape(len(data.x_train), -1).sum(axis=1) / 255
    np.testing.assert_allclose(table["mean ink"], [ink[data.y_train == c].mean() for c in range(10)], rtol=1e-5)
    files = at.dataframe[1].value
    assert sorted(files.file) == sorted(["kmnist-train-imgs.npz", "kmnist-train-labels.npz", "kmnist-test-imgs.npz",
                                         "kmnist-test-labels.npz"])
    assert set(files.md5) == {"not checked: not an official file"}  # the subset's files are not the official ones
    assert any("a subset, not the official 60,000 / 10,000 split" in m for m in texts(at.markdown))

    def sample_urls():
        return [img.proto.imgs[0].url for img in at.image][:10]  # the ten class rows of samples come first

    before = sample_urls()
    assert any("(seed 0)" in c for c in texts(at.caption))
    at.button(key="data_reshuffle").click().run()
    assert not at.exception and any("(seed 1)" in c for c in texts(at.caption))
    assert sample_urls() != before
    assert at.radio(key="data_unusual").options == ["farthest from their class's mean image (training split)"]


def test_data_page_shows_the_images_4nn_gets_wrong_once_the_baselines_are_cached(env, data):
    from kmnist_core.baselines import load_or_compute_baselines

    knn = load_or_compute_baselines(RunStore(env), data)["knn4"]  # real 4-NN, as the Compare page's button does
    at = app("pages/data.py")
    at.radio(key="data_unusual").set_value("knn").run()
    assert not at.exception, at.exception
    wrong = knn.test_pred != data.y_test
    shown = [img for img in at.image if img.captions and "4-NN said" in img.captions[0]]
    assert len(shown) == 10
    for c, img in enumerate(shown):
        assert img.captions[0].startswith(f"{int((wrong & (data.y_test == c)).sum())} mistakes; 4-NN said ")


def test_every_inspect_view_renders_the_runs_own_numbers(with_run, data):
    store = RunStore()
    at = app("pages/inspect.py")
    assert at.selectbox(key="run").value == with_run
    assert at.radio(key="inspect_view").value == "weights"

    # Weights: the stored first Dense kernel's columns, read from weights.npz, not recomputed by insight.
    kernel = np.load(store.folder(with_run) / WEIGHTS_FILE)["dense_1/kernel"]  # (784, 96)
    spec = charts_by_key(at)["inspect_weights"]
    assert len(spec["data"]) == 64
    norms = np.linalg.norm(kernel, axis=0)
    units = [int(t["name"].removeprefix("unit ")) for t in spec["data"]]
    assert sorted(norms[units]) == sorted(np.sort(norms)[-64:])  # the 64 strongest, strongest first
    assert norms[units[0]] == norms.max()
    for trace, unit in zip(spec["data"], units, strict=True):
        np.testing.assert_array_equal(array(trace["z"]), kernel[:, unit].reshape(28, 28))
    axis = spec["layout"]["coloraxis"]
    assert axis["cmid"] == 0 and axis["cmin"] == -axis["cmax"] == -np.abs(kernel[:, units]).max()

    # Embedding: every test image once; a point's customdata names its test image.
    at.radio(key="inspect_view").set_value("embedding").run()
    assert not at.exception, at.exception
    traces = charts_by_key(at)["inspect_embedding"]["data"]
    by_class = traces[:10]
    assert sum(len(t["x"]) for t in by_class) == len(data.y_test)
    indices = sorted(int(p[0]) for t in by_class for p in t["customdata"])
    assert indices == list(range(len(data.y_test)))
    pred, proba = store.load_predictions(with_run)
    ringed = next(t for t in traces if t["name"] == "misclassified")
    assert len(ringed["x"]) == int((pred != data.y_test).sum())
    i = int(np.flatnonzero(pred != data.y_test)[0])
    at.session_state["inspect_point"] = i  # what clicking its point sets (charts.point_from_selection)
    at.run()
    assert not at.exception, at.exception
    assert f"Test image #{i}" in texts(at.subheader)
    assert f"**Predicted {CLASSES[pred[i]].label}** (wrong), p = {proba[i, pred[i]]:.3f}" in texts(at.markdown)
    np.testing.assert_allclose(charts_by_key(at)["inspect_point_proba"]["data"][0]["y"], proba[i], atol=1e-6)
    star = next(t for t in charts_by_key(at)["inspect_embedding"]["data"] if t["name"] == "selected")
    assert [p[0] for p in star["customdata"]] == [i]

    # Calibration: the ECE of the stored probabilities; every test image in one bin.
    at.radio(key="inspect_view").set_value("calibration").run()
    assert not at.exception, at.exception
    cal = insight.calibration(proba, data.y_test)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["ECE"] == f"{cal.ece:.4f}" and metrics["Test accuracy"] == f"{(pred == data.y_test).mean():.4f}"
    specs = charts_by_key(at)
    assert sum(specs["inspect_reliability"]["data"][0]["customdata"]) == len(data.y_test)
    hist = {t["name"]: sum(t["y"]) for t in specs["inspect_confidence"]["data"]}
    assert hist == {"correct": int((pred == data.y_test).sum()), "mistakes": int((pred != data.y_test).sum())}

    # Confident mistakes: the wrong predictions with the highest probability, first the highest.
    at.radio(key="inspect_view").set_value("mistakes").run()
    assert not at.exception, at.exception
    (gallery,) = at.image
    wrong = np.flatnonzero(pred != data.y_test)
    assert len(gallery.captions) == min(24, len(wrong))
    first = wrong[np.argmax(proba[wrong].max(axis=1))]
    top = CLASSES[pred[first]]
    assert gallery.captions[0] == f"{CLASSES[data.y_test[first]].hiragana} → {top.hiragana} {proba[first].max():.2f}"
    assert not at.error and not at.warning


def test_a_selection_event_names_the_clicked_test_image():
    # The shape Streamlit hands to on_select for a clicked scatter point.
    event = {"points": [{"curve_number": 3, "point_number": 7, "point_index": 7, "x": 0.5, "y": -1.2,
                         "customdata": [1234, "き (ki)"]}], "point_indices": [7], "box": [], "lasso": []}
    assert charts.point_from_selection(event) == 1234
    assert charts.point_from_selection({"points": []}) is None and charts.point_from_selection(None) is None


@pytest.mark.slow
def test_tsne_is_offered_behind_a_button_then_shown_from_the_cache(with_run, data):
    at = app("pages/inspect.py")
    at.radio(key="inspect_view").set_value("embedding").run()
    at.radio(key="inspect_method").set_value("tsne").run()
    assert not at.exception and not at.get("plotly_chart")
    assert "10-25 s" in at.button(key="inspect_tsne").label  # the cost is said before it is paid
    at.button(key="inspect_tsne").click().run(timeout=240)
    assert not at.exception, at.exception
    spec = charts_by_key(at)["inspect_embedding"]
    assert spec["layout"]["xaxis"]["title"]["text"] == "t-SNE 1"
    assert sum(len(t["x"]) for t in spec["data"][:10]) == min(insight.TSNE_MAX_POINTS, len(data.y_test))
    assert insight.cached_embedding(RunStore(), with_run, data, "tsne") is not None


# --- the Draw page's evidence ---


def test_a_drawing_shows_its_top_3_its_saliency_and_its_five_nearest_training_images(with_run, data):
    at = app("pages/draw.py")
    rgba = enlarge_to_canvas(data.x_test[3])
    at.session_state["canvas"] = canvas_value(rgba)
    at.run()
    assert not at.exception, at.exception
    net = Network.load(RunStore().folder(with_run) / WEIGHTS_FILE)
    img = preprocess_canvas(rgba)
    proba, hidden = net.forward(img)
    order = np.argsort(-proba, kind="stable")[:3]
    for rank, c in enumerate(order, start=1):
        assert any(m.startswith(f"{rank}. ") and CLASSES[c].hiragana in m and f"{proba[c]:.1%}" in m
                   for m in texts(at.markdown)), (rank, texts(at.markdown))
    (neighbours,) = [i for i in at.image if i.captions and all(" · d=" in c for c in i.captions)]
    train_hidden = net.hidden(data.x_train)[-1]  # brute force, independent of TrainActivations.nearest
    dist = np.linalg.norm(train_hidden - hidden[-1], axis=1)
    nearest = np.argsort(dist, kind="stable")[:5]
    assert neighbours.captions == [f"{CLASSES[data.y_train[j]].label} · d={dist[j]:.2f}" for j in nearest]
    assert any(i.captions and i.captions[0].startswith("red: ink that raised") for i in at.image)
    assert not at.error and not at.warning


# --- bad input: one line each, never a traceback ---


def test_a_run_without_weights_or_model_gives_one_line(with_run):
    folder = RunStore().folder(with_run)
    (folder / WEIGHTS_FILE).unlink()
    (folder / "model.keras").unlink()
    for page in ("pages/inspect.py", "pages/draw.py"):
        at = app(page, with_run)
        shown = one_line_problems(at)
        assert any(with_run in m and "model.keras is missing" in m for m in shown), shown


def test_a_run_with_damaged_weights_gives_one_line(with_run):
    (RunStore().folder(with_run) / WEIGHTS_FILE).write_bytes(b"not an npz")
    at = app("pages/inspect.py", with_run)
    shown = one_line_problems(at)
    assert any("is damaged or not an .npz archive" in m for m in shown), shown


def test_a_run_trained_on_other_data_gives_one_line_per_view(with_run, data):
    path = RunStore().folder(with_run) / "config.json"
    meta = json.loads(path.read_text())
    meta["key"] = CONFIG.key("0123456789abcdef")  # as if trained on data of another fingerprint
    path.write_text(json.dumps(meta))
    at = app("pages/inspect.py", with_run)
    assert one_line_problems(at) == [] and at.get("plotly_chart")  # its weights do not depend on the data
    for view in VIEWS[1:]:
        at.radio(key="inspect_view").set_value(view).run()
        shown = one_line_problems(at)
        assert len(shown) == 1 and "was trained on other data" in shown[0], (view, shown)
    at.switch_page("pages/draw.py").run()
    at.session_state["canvas"] = canvas_value(enlarge_to_canvas(data.x_test[0]))
    at.run()
    shown = one_line_problems(at)
    assert len(shown) == 1 and "its training activations cannot be matched" in shown[0], shown
    assert at.get("plotly_chart")  # the prediction itself still shows, and so does the saliency
    assert any(i.captions and i.captions[0].startswith("red: ink that raised") for i in at.image)


def test_a_run_deleted_while_inspected_says_so(with_run):
    at = app("pages/inspect.py")
    at.radio(key="inspect_view").set_value("embedding").run()
    assert at.selectbox(key="run").value == with_run
    RunStore().delete(with_run)  # as another tab would
    at.run()
    shown = one_line_problems(at)
    assert f"run {with_run} no longer exists" in shown
    assert "No completed run yet: train a model first." in texts(at.info)


# --- the CLI twin ---


def run_cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    code = cli_main(["--data-dir", str(SUBSET), *argv], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_the_inspect_cli_writes_the_pages_figures_and_numbers(trained, data, tmp_path):
    root, run_id = trained
    out_dir = tmp_path / "report"
    code, out, err = run_cli("--runs-dir", str(root), "inspect", run_id, "--out", str(out_dir))
    assert code == 0, err
    html_path, json_path = out_dir / "inspect.html", out_dir / "inspect.json"
    assert out.splitlines() == [str(html_path), str(json_path)]
    report = json.loads(json_path.read_text())
    _, proba = RunStore(root).load_predictions(run_id)
    assert report["run_id"] == run_id and report["calibration"]["ece"] == pytest.approx(
        insight.calibration(proba, data.y_test).ece)
    assert sum(report["confident_mistakes"]["per_class"]) == int(
        ((proba.argmax(1) != data.y_test) & (proba.max(1) >= insight.CONFIDENT)).sum())
    page = html_path.read_text()
    assert page.count("Plotly.newPlot(") == 4  # weights, PCA map, reliability, confidence (no t-SNE cached)
    assert page.count("plotly.js v") == 1  # the library, once, inline: the file works offline
    assert "@font-face{font-family:kmnist-hiragana" in page  # hiragana render without Japanese fonts
    assert page.count("<img src='data:image/png;base64,") == 24  # the confident mistakes gallery


def test_the_inspect_cli_refuses_bad_input_in_one_line(trained, data, tmp_path):
    root, run_id = trained
    code, _, err = run_cli("--runs-dir", str(root), "inspect", "20200101-000000-abcdef", "--out", str(tmp_path / "x"))
    assert code == 2 and err == "Error: run 20200101-000000-abcdef no longer exists\n"
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, _, err = run_cli("--runs-dir", str(root), "inspect", run_id, "--out", str(blocker))
    assert code == 2 and err.startswith(f"Error: cannot create {blocker}") and err.count("\n") == 1
    other = tmp_path / "other-runs"
    shutil.copytree(root / run_id, other / run_id)
    meta = json.loads((other / run_id / "config.json").read_text())
    meta["key"] = CONFIG.key("0123456789abcdef")
    (other / run_id / "config.json").write_text(json.dumps(meta))
    code, _, err = run_cli("--runs-dir", str(other), "inspect", run_id, "--out", str(tmp_path / "y"))
    assert code == 2 and "was trained on other data" in err and err.count("\n") == 1
    assert not (tmp_path / "y").exists()  # refused before anything was written
