"""insight: the data explorer, a real run's inspection and a drawing's evidence, checked against Keras and sklearn."""

import json
import shutil
import time

import numpy as np
import pytest
from helpers import OFFICIAL

from kmnist_core import insight, service
from kmnist_core.config import ACTIVATIONS, TINY, TrainConfig
from kmnist_core.data import CLASSES, Dataset, split_validation
from kmnist_core.errors import RunDataMismatchError, RunNotFoundError
from kmnist_core.inference import Network
from kmnist_core.store import WEIGHTS_FILE, RunStore
from kmnist_core.train import train

CONFIG = TINY.replace(hidden_layers=(128, 32), epochs=3)  # 128 first-layer units: the top 64 are a real choice
ATOL = 1e-5


@pytest.fixture(scope="module")
def run(tmp_path_factory, data):
    """(store, run_id) of one real run on the subset, trained in this process and stored as the worker stores it.

    The worker's path (a spawn'd process importing TensorFlow a second time) is test_worker's and test_jobs'
    subject; here it would only add its start-up to a test process that imports Keras anyway.
    """
    from kmnist_core.model import export_weights

    store = RunStore(tmp_path_factory.mktemp("insight") / "runs")
    result = train(CONFIG, data)
    run_id = store.create(CONFIG, CONFIG.key(data.fingerprint), data.source)
    store.save_result(run_id, result, export_weights(result.model))
    assert store.get(run_id).completed
    return store, run_id


@pytest.fixture(scope="module")
def net(run):
    return service.load_network(*run)


@pytest.fixture(scope="module")
def keras_hidden(run):
    """keras_hidden(images) -> the stored Keras model's own last hidden Activation output."""
    import keras

    from kmnist_core.model import load_model

    store, run_id = run
    model = load_model(store.model_path(run_id))
    acts = [layer.output for layer in model.layers if isinstance(layer, keras.layers.Activation)]
    intermediate = keras.Model(model.input, acts)

    def get(images):
        return np.asarray(intermediate(images, training=False)[-1])

    return get


@pytest.fixture(scope="module")
def other_data(data):
    """The same arrays but half the training split: another fingerprint, as a run of other data would have."""
    return Dataset(data.x_train[:4000], data.y_train[:4000], data.x_test, data.y_test, "half of the subset",
                   data.folder)


# --- data explorer ---


def test_class_table_counts_add_up_to_the_splits_in_classes_order(data):
    table = insight.class_table(data)
    assert [(r.index, r.hiragana, r.romaji, r.codepoint) for r in table] == [
        (c.index, c.hiragana, c.romaji, c.codepoint) for c in CLASSES]
    assert sum(r.train + r.validation for r in table) == len(data.y_train)
    assert sum(r.test for r in table) == len(data.y_test)
    assert sum(r.total for r in table) == len(data.y_train) + len(data.y_test)
    defaults = TrainConfig()
    _, val_idx = split_validation(data.y_train, defaults.val_fraction, defaults.seed)
    assert sum(r.validation for r in table) == len(val_idx)
    assert [r.validation for r in table] == np.bincount(data.y_train[val_idx], minlength=10).tolist()
    assert [r.test for r in table] == np.bincount(data.y_test, minlength=10).tolist()


def test_samples_are_of_their_class_and_a_seed_reshuffles_them(data):
    first = insight.sample_indices(data.y_train, 6, seed=0)
    assert len(first) == 10
    for c, idx in enumerate(first):
        assert len(idx) == 6 and len(set(idx.tolist())) == 6 and (data.y_train[idx] == c).all()
    assert [a.tolist() for a in insight.sample_indices(data.y_train, 6, seed=0)] == [a.tolist() for a in first]
    assert [a.tolist() for a in insight.sample_indices(data.y_train, 6, seed=1)] != [a.tolist() for a in first]


def test_explorer_means_ink_and_unusual_samples(data):
    explorer = insight.explore(data)
    assert explorer.mean_images.shape == (10, 28, 28) and explorer.mean_images.dtype == np.float32
    for c in range(10):
        np.testing.assert_allclose(explorer.mean_images[c], data.x_train[data.y_train == c].mean(axis=0), atol=1e-3)
    ink = explorer.ink
    np.testing.assert_allclose(ink.ink, data.x_train.reshape(len(data.x_train), -1).sum(axis=1) / 255, rtol=1e-6)
    assert ink.counts.shape == (10, len(ink.edges) - 1)
    assert ink.counts.sum(axis=1).tolist() == np.bincount(data.y_train, minlength=10).tolist()
    for c in range(10):
        idx, dist = explorer.unusual.indices[c], explorer.unusual.distances[c]
        assert len(idx) == 8 and (data.y_train[idx] == c).all() and (np.diff(dist) <= 0).all()
        members = np.flatnonzero(data.y_train == c)
        all_dist = np.linalg.norm((data.x_train[members] / 255 - explorer.mean_images[c] / 255).reshape(len(members),
                                                                                                     -1), axis=1)
        np.testing.assert_allclose(dist, np.sort(all_dist)[::-1][:8], rtol=1e-4)
    assert explorer.knn_mistakes is None


def test_knn_mistakes(data):
    # A real 4-NN, as baselines.py fits it (its cache would hand these over as test_pred and test_proba).
    from sklearn.neighbors import KNeighborsClassifier

    knn = KNeighborsClassifier(n_neighbors=4, algorithm="brute").fit(data.x_train.reshape(8000, -1) / 255,
                                                                      data.y_train)
    proba = knn.predict_proba(data.x_test.reshape(2000, -1) / 255).astype(np.float32)
    pred = proba.argmax(axis=1).astype(np.uint8)
    mistakes = insight.explore(data, pred, proba).knn_mistakes
    wrong = np.flatnonzero(pred != data.y_test)
    assert sorted(mistakes.indices.tolist()) == wrong.tolist() and 100 < len(wrong) < 300  # README: 0.9055
    assert (mistakes.pred != mistakes.true).all() and (np.diff(mistakes.probability) <= 0).all()
    np.testing.assert_array_equal(mistakes.probability, proba[mistakes.indices, mistakes.pred])
    assert sum(len(mistakes.of_class(c)) for c in range(10)) == len(mistakes)
    assert (mistakes.of_class(3).true == 3).all()
    assert insight.knn_mistakes(data.y_test, pred).indices.tolist() == wrong.tolist()  # no votes: index order
    with pytest.raises(ValueError, match="one per test image"):
        insight.knn_mistakes(data.y_test, pred[:10])


def test_provenance_of_the_subset_and_of_official_files(data):
    prov = insight.provenance(data)
    assert (prov.origin, prov.split, prov.n_train, prov.n_test) == ("files", "subset", 8000, 2000)
    assert prov.folder == data.folder and prov.fingerprint == data.fingerprint
    assert [f.role for f in prov.files] == ["train images", "train labels", "test images", "test labels"]
    assert all(f.format == "npz" and f.size == f.path.stat().st_size for f in prov.files)
    assert not any(f.md5_verified for f in prov.files)  # official names, but not the official sizes
    # A folder of official files (without the train images here), at the official split's sizes.
    official = Dataset(np.zeros((60_000, 28, 28), np.uint8), np.zeros(60_000, np.uint8),
                       np.zeros((10_000, 28, 28), np.uint8), np.zeros(10_000, np.uint8), str(OFFICIAL), OFFICIAL)
    prov = insight.provenance(official)
    assert prov.split == "official"
    assert {f.name: (f.format, f.md5_verified) for f in prov.files} == {
        "kmnist-train-labels.npz": ("npz", True), "kmnist-test-imgs.npz": ("npz", True),
        "kmnist-test-labels.npz": ("npz", True)}


# --- inspect a run ---


def test_weight_images_are_the_stored_first_dense_kernel(run, net):
    store, run_id = run
    with np.load(store.weights_path(run_id), allow_pickle=False) as npz:
        kernel = npz["dense_1/kernel"]  # (784, 128) float32
    weights = insight.first_layer_weights(net)
    assert weights.images.shape == (64, 28, 28) and weights.images.dtype == np.float32
    for image, unit in zip(weights.images, weights.units, strict=True):
        np.testing.assert_array_equal(image, kernel[:, unit].reshape(28, 28))
    norms = np.linalg.norm(kernel.astype(np.float64), axis=0)
    assert set(weights.units.tolist()) == set(np.argsort(-norms)[:64].tolist())
    np.testing.assert_allclose(weights.norms, norms[weights.units], rtol=1e-5)
    assert (np.diff(weights.norms) <= 0).all()
    assert weights.limit == np.abs(kernel[:, weights.units]).max()


def test_hidden_activations_equal_keras_intermediate_outputs(run, net, data, keras_hidden):
    train = insight.train_activations(*run, data, net)
    np.testing.assert_allclose(train.hidden, keras_hidden(data.x_train), rtol=0, atol=ATOL)
    np.testing.assert_allclose(insight.last_hidden(net, data.x_test), keras_hidden(data.x_test), rtol=0, atol=ATOL)
    assert train.hidden.shape == (8000, 32) and train.layer == 2
    cached = insight.train_activations(*run, data)  # from train-hidden.npz
    np.testing.assert_array_equal(cached.hidden, train.hidden)


def test_pca_embedding_matches_sklearn_on_the_stored_models_activations(run, data, keras_hidden):
    from sklearn.decomposition import PCA

    store, run_id = run
    emb = insight.embedding(store, run_id, data, "pca")
    expected = PCA(n_components=2).fit_transform(keras_hidden(data.x_test))
    assert emb.coords.shape == (2000, 2) and emb.indices.tolist() == list(range(2000))
    for axis in range(2):
        sign = np.sign(expected[:, axis] @ emb.coords[:, axis])
        np.testing.assert_allclose(emb.coords[:, axis] * sign, expected[:, axis], atol=1e-3)
    pred, _ = store.load_predictions(run_id)
    assert (emb.labels == data.y_test).all() and (emb.pred == pred).all()
    assert (emb.misclassified == (pred != data.y_test)).all()
    assert emb.explained_variance.shape == (2,) and emb.explained_variance[0] >= emb.explained_variance[1]
    assert (store.root / run_id / "embedding-pca.npz").is_file()
    again = insight.embedding(store, run_id, data, "pca")
    np.testing.assert_array_equal(again.coords, emb.coords)
    assert again.seconds == emb.seconds  # the first computation's time, read back from the cache


def test_a_stale_or_damaged_cache_is_recomputed(run, data):
    store, run_id = run
    path = store.root / run_id / insight.TRAIN_HIDDEN_FILE
    good = insight.train_activations(store, run_id, data).hidden.copy()
    np.savez(path, key=np.array("v0|another-key|"), hidden=np.zeros((8000, 32), np.float32), seconds=np.array(0.0),
             layer=np.array(2))
    np.testing.assert_array_equal(insight.train_activations(store, run_id, data).hidden, good)
    path.write_bytes(b"not an npz")
    np.testing.assert_array_equal(insight.train_activations(store, run_id, data).hidden, good)


def test_tsne_embedding_is_cached_with_its_settings(run, data):
    store, run_id = run
    assert insight.cached_embedding(store, run_id, data, "tsne", max_points=200) is None
    emb = insight.embedding(store, run_id, data, "tsne", max_points=200)
    assert emb.coords.shape == (200, 2) and np.isfinite(emb.coords).all() and emb.explained_variance is None
    assert (np.diff(emb.indices) > 0).all() and (emb.labels == data.y_test[emb.indices]).all()
    cached = insight.cached_embedding(store, run_id, data, "tsne", max_points=200)
    np.testing.assert_array_equal(cached.coords, emb.coords)
    assert insight.cached_embedding(store, run_id, data, "tsne") is None  # other settings: another embedding
    with pytest.raises(ValueError, match="method must be one of"):
        insight.embedding(store, run_id, data, "umap")


def test_ece_of_a_hand_made_example():
    # Bins of 1/15: 0.95 -> (14/15, 1], 0.65 -> (9/15, 10/15], 0.25 -> (3/15, 4/15].
    # ECE = 2/6 * |0.5 - 0.95| + 3/6 * |2/3 - 0.65| + 1/6 * |0 - 0.25| = (0.9 + 0.05 + 0.25) / 6 = 0.2
    confidence = np.array([0.95, 0.95, 0.65, 0.65, 0.65, 0.25])
    correct = np.array([True, False, True, True, False, False])
    cal = insight.calibration_of(confidence, correct)
    assert cal.ece == pytest.approx(0.2, abs=1e-12)
    assert cal.mce == pytest.approx(0.45, abs=1e-12)
    assert cal.count.sum() == 6 and cal.count[[3, 9, 14]].tolist() == [1, 3, 2]
    assert cal.accuracy[14] == 0.5 and np.isnan(cal.accuracy[0]) and np.isnan(cal.confidence[0])
    assert cal.hist_correct.sum() == 3 and cal.hist_wrong.sum() == 3
    # The same through probabilities: class 0 gets the confidence, the rest share what is left.
    proba = np.tile(((1 - confidence) / 9)[:, None], (1, 10))
    proba[:, 0] = confidence
    labels = np.where(correct, 0, 1)
    assert insight.calibration(proba, labels).ece == pytest.approx(0.2, abs=1e-6)
    # Bins are (low, high]: a confidence on an edge belongs to the bin below it.
    edge = insight.calibration_of(np.array([cal.edges[9], 1.0]), np.array([True, True]))
    assert edge.count[8] == 1 and edge.count[14] == 1


def test_perfectly_calibrated_probabilities_have_ece_near_zero():
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.1, 1.0, 200_000)
    cal = insight.calibration_of(confidence, rng.random(200_000) < confidence)
    assert cal.ece < 0.006  # sampling noise: about 0.003 for 15 bins of ~13,000 images
    over = insight.calibration_of(confidence, rng.random(200_000) < confidence - 0.1)  # 10 points overconfident
    assert over.ece == pytest.approx(0.1, abs=0.01)


def test_confident_mistakes_are_the_most_probable_wrong_predictions(run, data):
    pred, proba = insight.load_run_predictions(*run, data)
    top = insight.confident_mistakes(proba, data.y_test, 24)
    assert len(top) == 24 and (top.true != top.pred).all() and (np.diff(top.probability) <= 0).all()
    assert (top.true == data.y_test[top.indices]).all() and (top.pred == pred[top.indices]).all()
    np.testing.assert_array_equal(top.probability, proba[top.indices, top.pred])
    wrong = pred != data.y_test
    assert top.probability[-1] >= proba[wrong].max(axis=1)[~np.isin(np.flatnonzero(wrong), top.indices)].max()
    counts = insight.confident_mistake_counts(proba, data.y_test, 0.5)
    assert counts.tolist() == np.bincount(data.y_test[wrong & (proba.max(axis=1) >= 0.5)], minlength=10).tolist()


def test_a_run_of_other_data_is_refused_in_one_line(run, other_data):
    store, run_id = run
    with pytest.raises(RunDataMismatchError) as e:
        insight.embedding(store, run_id, other_data)
    message = str(e.value)
    assert "\n" not in message and run_id in message
    assert "its embedding cannot be matched to this dataset's test images" in message
    for call in (insight.load_run_predictions, insight.train_activations, insight.inspect_report):
        with pytest.raises(RunDataMismatchError):
            call(store, run_id, other_data)


def test_a_run_stored_before_weights_existed_gets_them_from_a_worker(run, data, tmp_path):
    store, run_id = run
    copy = RunStore(tmp_path / "runs")
    shutil.copytree(store.root / run_id, copy.root / run_id,
                    ignore=shutil.ignore_patterns(WEIGHTS_FILE, "embedding-*", insight.TRAIN_HIDDEN_FILE))
    emb = insight.embedding(copy, run_id, data)  # exports weights.npz from model.keras in a worker process first
    assert (copy.root / run_id / WEIGHTS_FILE).is_file() and len(emb.coords) == len(data.y_test)
    np.testing.assert_array_equal(np.load(copy.root / run_id / WEIGHTS_FILE)["dense_1/kernel"],
                                  np.load(store.root / run_id / WEIGHTS_FILE)["dense_1/kernel"])
    (copy.root / run_id / "model.keras").unlink()
    (copy.root / run_id / WEIGHTS_FILE).unlink()
    with pytest.raises(RunNotFoundError) as e:  # nothing to export from: one line
        service.load_network(copy, run_id)
    assert "\n" not in str(e.value) and run_id in str(e.value)


def test_inspect_report_is_written_as_json(run, data, tmp_path):
    store, run_id = run
    report = insight.write_inspect_report(store, run_id, data, tmp_path / "inspect.json")
    loaded = json.loads((tmp_path / "inspect.json").read_text())
    assert loaded == json.loads(json.dumps(report))
    _, proba = store.load_predictions(run_id)
    assert loaded["calibration"]["ece"] == pytest.approx(insight.calibration(proba, data.y_test).ece)
    assert sum(loaded["calibration"]["count"]) == 2000 and len(loaded["calibration"]["count"]) == 15
    assert len(loaded["confident_mistakes"]["per_class"]) == 10 and len(loaded["confident_mistakes"]["top"]) == 24
    assert len(loaded["weights"]["units"]) == 64 and len(loaded["embedding"]["coords"]) == 2000
    assert loaded["tsne"] is None  # only the 200-point t-SNE is cached, not the default one


# --- evidence for a drawing ---


def test_saliency_ranks_ink_that_matters_above_random_ink(net, data):
    images = data.x_test[:100]
    rng = np.random.default_rng(0)
    wins = 0
    for image in images:
        top = int(net.proba(image).argmax())
        sal = insight.saliency(net, image)
        assert sal.shape == (28, 28) and sal.dtype == np.float32 and (sal[image == 0] == 0).all()
        ink = np.flatnonzero(image)
        k = max(1, len(ink) // 10)
        chosen = ink[np.argsort(-sal.ravel()[ink], kind="stable")[:k]]
        blanked, random = image.copy().ravel(), image.copy().ravel()
        blanked[chosen] = 0
        random[rng.choice(ink, k, replace=False)] = 0
        wins += net.proba(blanked.reshape(28, 28))[top] < net.proba(random.reshape(28, 28))[top]
    assert wins >= 80


@pytest.mark.parametrize("case", [*ACTIVATIONS, "batch_norm"])
def test_input_gradient_equals_keras_autodiff(case, data):
    """The analytic gradient behind the saliency, for every activation and batch norm, against TensorFlow's."""
    import keras
    import tensorflow as tf

    from kmnist_core.model import build_model, export_weights

    config = TINY.replace(hidden_layers=(24, 12), **({"batch_norm": True} if case == "batch_norm" else
                                                     {"activation": case}))
    keras.utils.set_random_seed(0)
    model = build_model(config)
    images = data.x_test[:16]
    classes = np.arange(16) % 10
    rescaling = next(i for i, layer in enumerate(model.layers) if isinstance(layer, keras.layers.Rescaling))
    x = tf.constant(images.astype(np.float32) * np.float32(1 / 255))
    with tf.GradientTape() as tape:
        tape.watch(x)
        h = x
        for layer in model.layers[rescaling + 1:]:
            h = layer(h, training=False)
        picked = tf.gather(h, classes, batch_dims=1)  # (16,): each row depends on its own image only
    expected = tape.gradient(picked, x).numpy()
    got = Network(export_weights(model)).input_gradient(images, classes)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-7)


def test_evidence_finds_a_training_image_at_distance_zero(run, net, data):
    train = insight.train_activations(*run, data, net)
    for i in (0, 1234, 7999):
        ev = insight.evidence(net, data.x_train[i], train)
        assert ev.neighbours[0] == i and ev.neighbour_distances[0] < 1e-4
        assert ev.neighbour_labels[0] == data.y_train[i]
        brute = np.linalg.norm(train.hidden.astype(np.float64) - net.hidden(data.x_train[i])[-1], axis=1)
        assert ev.neighbours.tolist() == np.argsort(brute, kind="stable")[:5].tolist()
        np.testing.assert_allclose(ev.neighbour_distances, np.sort(brute)[:5], atol=1e-4)
        proba = net.proba(data.x_train[i])
        assert ev.top_classes.tolist() == np.argsort(-proba, kind="stable")[:3].tolist()
        np.testing.assert_array_equal(ev.top_proba, proba[ev.top_classes])
        assert ev.limit == np.abs(ev.saliency).max() > 0


def test_evidence_is_fast(run, net, data):
    train = insight.train_activations(*run, data, net)
    seconds = []
    for image in data.x_test[:30]:
        started = time.perf_counter()
        insight.evidence(net, image, train)
        seconds.append(time.perf_counter() - started)
    assert np.median(seconds) < 0.05
