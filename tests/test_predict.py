"""Predictor, the Draw page's fast path: model.predict's probabilities for one image, without its overhead."""

import statistics
import threading
import time

import numpy as np
import pytest

from kmnist_core.config import TINY
from kmnist_core.model import load_model
from kmnist_core.predict import Predictor
from kmnist_core.train import train


@pytest.fixture(scope="module")
def model(data):
    return train(TINY, data).model


def test_probabilities_match_model_predict_for_one_image_and_a_batch(model, data):
    predictor = Predictor(model)
    expected = model.predict(data.x_test[:64], verbose=0)
    batch = predictor.proba(data.x_test[:64])
    one = predictor.proba(data.x_test[0])
    assert batch.shape == (64, 10) and one.shape == (10,)
    assert batch.dtype == one.dtype == np.float32
    np.testing.assert_allclose(batch, expected, atol=1e-6)
    np.testing.assert_allclose(one, expected[0], atol=1e-6)
    assert one.sum() == pytest.approx(1.0, abs=1e-5)


def test_a_stored_model_predicts_the_same(model, data, tmp_path):
    path = tmp_path / "model.keras"
    model.save(path)
    stored = Predictor(load_model(path)).warm_up()
    np.testing.assert_allclose(stored.proba(data.x_test[:8]), Predictor(model).proba(data.x_test[:8]), atol=1e-6)


def test_other_image_dtypes_are_clipped_to_uint8(model, data):
    predictor = Predictor(model)
    img = data.x_test[3]
    np.testing.assert_allclose(predictor.proba(img.astype(np.float64) + 0.2), predictor.proba(img), atol=1e-6)
    np.testing.assert_allclose(predictor.proba(np.full((28, 28), 400.0)),
                               predictor.proba(np.full((28, 28), 255, np.uint8)), atol=1e-6)


@pytest.mark.parametrize("shape", [(28, 27), (1, 28), (2, 2, 28, 28), (28, 28, 1)])
def test_wrong_shapes_are_rejected(model, shape):
    with pytest.raises(ValueError, match="must be"):
        Predictor(model).proba(np.zeros(shape, np.uint8))


def test_threads_share_one_predictor(model, data):
    predictor = Predictor(model)
    expected = predictor.proba(data.x_test[:16])
    results, errors = {}, []

    def work(i):
        try:
            results[i] = predictor.proba(data.x_test[i])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i in range(16):
        np.testing.assert_allclose(results[i], expected[i], atol=1e-6)


def test_a_warm_call_is_far_faster_than_model_predict(model, data):
    predictor = Predictor(model).warm_up()
    img = data.x_test[0]
    times = []
    for _ in range(50):
        t = time.perf_counter()
        predictor.proba(img)
        times.append(time.perf_counter() - t)
    # about 1 ms here even on a loaded CPU; model.predict takes tens of milliseconds
    assert statistics.median(times) < 0.02


def test_predict_proba_takes_the_fast_path_for_small_batches(model, data):
    from kmnist_core.predict import predictor_for
    from kmnist_core.train import FAST_PATH_MAX, predict_proba

    small, large = data.x_test[:FAST_PATH_MAX], data.x_test[: FAST_PATH_MAX + 1]
    np.testing.assert_allclose(predict_proba(model, small), model.predict(small, verbose=0), atol=1e-6)
    np.testing.assert_allclose(predict_proba(model, large), model.predict(large, verbose=0), atol=1e-6)
    assert predictor_for(model) is predictor_for(model)
    assert predict_proba(model, data.x_test[:0]).shape == (0, 10)


def test_the_predictor_cache_does_not_keep_models_alive(data):
    import gc
    import weakref

    from kmnist_core.model import build_model
    from kmnist_core.predict import predictor_for

    temp = build_model(TINY)
    predictor_for(temp).proba(data.x_test[0])
    ref = weakref.ref(temp)
    del temp
    gc.collect()
    assert ref() is None
