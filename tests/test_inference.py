"""inference.Network, the server's TensorFlow-free forward pass: it must give what the trained Keras model gives."""

import subprocess
import sys
import threading

import numpy as np
import pytest
from helpers import ROOT

from kmnist_core import config as config_module
from kmnist_core.config import TINY
from kmnist_core.errors import StoreError
from kmnist_core.inference import ACTIVATIONS, FORMAT_VERSION, Network
from kmnist_core.model import build_model, export_weights
from kmnist_core.store import WEIGHTS_FILE
from kmnist_core.train import train

ATOL = 1e-5
BASE = TINY.replace(hidden_layers=(32, 16), epochs=1)  # two hidden layers: the chaining is tested too
CASES = {
    **{name: BASE.replace(activation=name) for name in config_module.ACTIVATIONS},
    "batch_norm": BASE.replace(batch_norm=True),
    "dropout": BASE.replace(dropout=0.3),
    "augment": BASE.replace(augment=0.5),
    "all-on": BASE.replace(activation="gelu", batch_norm=True, dropout=0.3, augment=0.5),
}


@pytest.fixture(scope="module")
def trained(data):
    """trained(case) -> the Keras model of a real 1-epoch run on the subset, trained once per case."""
    models = {}

    def get(case):
        if case not in models:
            models[case] = train(CASES[case], data).model
        return models[case]

    return get


@pytest.fixture(scope="module")
def images(data):
    return data.x_test[:256]  # (256, 28, 28) uint8, real test images


def _keras_hidden(model, x):
    """Keras' own outputs of every hidden Activation layer."""
    import keras

    acts = [layer.output for layer in model.layers if isinstance(layer, keras.layers.Activation)]
    return [np.asarray(a) for a in keras.Model(model.input, acts)(x, training=False)]


def test_network_computes_every_configurable_activation():
    assert set(ACTIVATIONS) == set(config_module.ACTIVATIONS)


@pytest.mark.parametrize("case", CASES)
def test_probabilities_match_keras(trained, images, case):
    model = trained(case)
    net = Network(export_weights(model))
    proba = net.proba(images)
    assert proba.shape == (256, 10) and proba.dtype == np.float32
    np.testing.assert_allclose(proba, np.asarray(model(images, training=False)), rtol=0, atol=ATOL)
    np.testing.assert_allclose(proba, model.predict(images, verbose=0), rtol=0, atol=ATOL)


@pytest.mark.parametrize("case", CASES)
def test_hidden_activations_match_keras_intermediate_outputs(trained, images, case):
    model = trained(case)
    hidden = Network(export_weights(model)).hidden(images)
    expected = _keras_hidden(model, images)
    assert [h.shape for h in hidden] == [(256, 32), (256, 16)]
    assert all(h.dtype == np.float32 for h in hidden)
    for got, want in zip(hidden, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)


def test_batch_norm_with_far_from_default_statistics_matches_keras(images):
    # One epoch leaves BN near its initial state (gamma 1, beta 0, mean 0, variance 1); set every
    # statistic far from it so that the order of operations is really exercised.
    model = build_model(BASE.replace(batch_norm=True, activation="selu"))
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if layer.name.startswith("bn_"):
            n = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 2.0, n).astype(np.float32))
            layer.beta.assign(rng.normal(0, 0.5, n).astype(np.float32))
            layer.moving_mean.assign(rng.normal(0, 0.3, n).astype(np.float32))
            layer.moving_variance.assign(rng.uniform(0.01, 3.0, n).astype(np.float32))
    proba, hidden = Network(export_weights(model)).forward(images)
    np.testing.assert_allclose(proba, np.asarray(model(images, training=False)), rtol=0, atol=ATOL)
    for got, want in zip(hidden, _keras_hidden(model, images), strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)


def test_export_uses_the_documented_keys_and_no_object_arrays():
    plain = export_weights(build_model(BASE))
    assert set(plain) == {"format_version", "activation", "batch_norm", "hidden_layers", "dense_1/kernel",
                          "dense_1/bias", "dense_2/kernel", "dense_2/bias", "probs/kernel", "probs/bias"}
    bn = export_weights(build_model(BASE.replace(batch_norm=True)))
    stats = {f"bn_{i}/{k}" for i in (1, 2) for k in ("gamma", "beta", "moving_mean", "moving_variance", "epsilon")}
    assert set(bn) == {"format_version", "activation", "batch_norm", "hidden_layers", "dense_1/kernel",
                       "dense_2/kernel", "probs/kernel", "probs/bias"} | stats
    assert int(bn["format_version"]) == FORMAT_VERSION and bool(bn["batch_norm"]) and str(bn["activation"]) == "relu"
    assert bn["hidden_layers"].tolist() == [32, 16] and bn["dense_1/kernel"].shape == (784, 32)
    assert all(a.dtype != object for a in (*plain.values(), *bn.values()))


def test_round_trip_through_an_npz_file_gives_identical_results(trained, images, tmp_path):
    model = trained("all-on")
    path = tmp_path / WEIGHTS_FILE
    np.savez_compressed(path, **export_weights(model))
    in_memory, loaded = Network(export_weights(model)), Network.load(path)
    assert (loaded.activation, loaded.batch_norm, loaded.hidden_layers) == ("gelu", True, (32, 16))
    p1, h1 = in_memory.forward(images)
    p2, h2 = loaded.forward(images)
    np.testing.assert_array_equal(p1, p2)
    for a, b in zip(h1, h2, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.fixture(scope="module")
def net(trained):
    return Network(export_weights(trained("relu")))


def test_one_image_and_a_batch(net, images):
    batch, hidden = net.forward(images[:5])
    one, one_hidden = net.forward(images[2])
    assert one.shape == (10,) and batch.shape == (5, 10) and one.dtype == np.float32
    np.testing.assert_allclose(one, batch[2], atol=1e-6)
    assert [h.shape for h in one_hidden] == [(32,), (16,)]
    np.testing.assert_allclose(one_hidden[1], hidden[1][2], atol=1e-6)
    assert one.sum() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_array_equal(net.proba(images[:5]), batch)
    assert net.proba(np.zeros((0, 28, 28), np.uint8)).shape == (0, 10)


def test_other_image_dtypes_are_clipped_to_uint8_like_predictor(net, images):
    img = images[3]
    np.testing.assert_array_equal(net.proba(img.astype(np.float64) + 0.2), net.proba(img))
    np.testing.assert_array_equal(net.proba(np.full((28, 28), 400.0)), net.proba(np.full((28, 28), 255, np.uint8)))
    np.testing.assert_array_equal(net.proba(np.full((28, 28), np.nan)), net.proba(np.zeros((28, 28), np.uint8)))


@pytest.mark.parametrize("shape", [(28, 27), (1, 28), (2, 2, 28, 28), (28, 28, 1), (784,)])
def test_wrong_shapes_are_rejected(net, shape):
    with pytest.raises(ValueError, match=r"images must be \(28, 28\) or \(N, 28, 28\); got shape"):
        net.proba(np.zeros(shape, np.uint8))


def test_threads_share_one_network(net, images):
    expected = [net.proba(images[i : i + 8]) for i in range(0, 64, 8)]
    results, errors = {}, []

    def work(i):
        try:
            for _ in range(50):
                results[i] = net.proba(images[8 * i : 8 * i + 8])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for i in range(8):
        np.testing.assert_array_equal(results[i], expected[i])


def test_changing_the_exported_arrays_later_does_not_change_the_network(images):
    weights = export_weights(build_model(BASE))
    net = Network(weights)
    before = net.proba(images[:4])
    for a in weights.values():
        if a.dtype == np.float32 and a.ndim:
            a[...] = 0
    np.testing.assert_array_equal(net.proba(images[:4]), before)


def _assert_one_line_naming(exc_info, path, words):
    message = str(exc_info.value)
    assert "\n" not in message and str(path) in message and words in message


def test_missing_file_is_a_store_error_naming_it(tmp_path):
    path = tmp_path / "run" / WEIGHTS_FILE
    with pytest.raises(StoreError) as exc_info:
        Network.load(path)
    _assert_one_line_naming(exc_info, path, "not found")


@pytest.mark.parametrize("damage", ["truncated", "flipped bytes", "junk", "empty", "bare npy"])
def test_damaged_file_is_a_store_error_naming_it(tmp_path, damage):
    path = tmp_path / WEIGHTS_FILE
    np.savez_compressed(path, **export_weights(build_model(BASE)))
    good = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif damage == "flipped bytes":
        path.write_bytes(good[:3000] + bytes(200) + good[3200:])
    elif damage == "junk":
        path.write_bytes(b"not an archive at all\n")
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        with path.open("wb") as f:
            np.save(f, np.zeros(3, np.float32))
    with pytest.raises(StoreError) as exc_info:
        Network.load(path)
    _assert_one_line_naming(exc_info, path, "damaged")


def test_unknown_format_version_is_a_store_error_naming_the_file(tmp_path):
    path = tmp_path / WEIGHTS_FILE
    weights = export_weights(build_model(BASE))
    np.savez_compressed(path, **{**weights, "format_version": np.array(FORMAT_VERSION + 1)})
    with pytest.raises(StoreError) as exc_info:
        Network.load(path)
    _assert_one_line_naming(exc_info, path, f"format_version {FORMAT_VERSION + 1}")


@pytest.mark.parametrize("change", ["missing key", "wrong shape", "unknown activation"])
def test_inconsistent_contents_are_a_store_error_naming_the_file(tmp_path, change):
    path = tmp_path / WEIGHTS_FILE
    weights = export_weights(build_model(BASE))
    if change == "missing key":
        del weights["dense_2/bias"]
    elif change == "wrong shape":
        weights["dense_2/kernel"] = weights["dense_2/kernel"][:, :8]
    else:
        weights["activation"] = np.array("swish")
    np.savez_compressed(path, **weights)
    with pytest.raises(StoreError) as exc_info:
        Network.load(path)
    _assert_one_line_naming(exc_info, path, {"missing key": "dense_2/bias", "wrong shape": "dense_2/kernel",
                                              "unknown activation": "swish"}[change])


def test_importing_inference_does_not_load_tensorflow_or_keras():
    code = (
        "import sys; import kmnist_core.inference;"
        "loaded = {'tensorflow', 'keras'} & set(sys.modules); assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
