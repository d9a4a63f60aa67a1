"""Training options on the real subset: each changes training as intended, and each is off by default."""

import numpy as np
import pytest

from kmnist_core.config import PRESETS, REFERENCE_PRESETS, TINY, TrainConfig, count_params
from kmnist_core.data import split_validation
from kmnist_core.model import build_model, make_loss, make_optimizer
from kmnist_core.train import predict_proba, train

OPTION_DEFAULTS = {"dropout": 0.0, "augment": 0.0, "lr_schedule": "constant", "early_stopping": 0,
                   "label_smoothing": 0.0, "batch_norm": False}


def _types(model):
    return [type(layer).__name__ for layer in model.layers]


def _front(model):
    """The model up to the flattened pixels: what the first Dense layer sees."""
    import keras

    flatten = next(layer for layer in model.layers if type(layer).__name__ == "Flatten")
    return keras.Model(model.input, flatten.output)


def _val_accuracy(result, data):
    """Accuracy of the returned model on the run's own validation split."""
    _, val_idx = split_validation(data.y_train, result.config.val_fraction, result.config.seed)
    pred = predict_proba(result.model, data.x_train[val_idx]).argmax(1)
    return float(np.mean(pred == data.y_train[val_idx]))


# --- augmentation ---


def test_augmentation_changes_inputs_when_training_and_never_at_inference(data):
    x = data.x_test[:256]  # (256, 28, 28) uint8, real characters
    plain = x.reshape(len(x), -1) / 255
    assert not any(t.startswith("Random") for t in _types(build_model(TrainConfig((32,)))))
    shifts = {}
    for strength in (0.5, 1.0):
        front = _front(build_model(TrainConfig((32,), augment=strength)))
        assert _types(front)[-4:-1] == ["RandomTranslation", "RandomRotation", "RandomZoom"]
        np.testing.assert_allclose(front(x, training=False), plain, atol=1e-6)
        np.testing.assert_allclose(front(x, training=False), front(x, training=False))
        a, b = np.asarray(front(x, training=True)), np.asarray(front(x, training=True))
        assert not np.allclose(a, b), "each training step must see new random transforms"
        changed = np.abs(a - plain).max(axis=1) > 0.1
        assert changed.mean() > 0.9
        # still the same character: small moves, so most of the ink stays on the canvas
        ink = a.sum(axis=1) / plain.sum(axis=1)
        assert 0.6 < np.median(ink) < 1.6
        shifts[strength] = np.abs(a - plain).mean()
    assert shifts[0.5] < shifts[1.0], "strength scales the transforms"


def test_augmented_training_sees_harder_inputs_but_still_learns(data):
    base = TINY.replace(epochs=3)
    plain, augmented = train(base, data), train(base.replace(augment=1.0), data)
    # the training loss is measured on the transformed images, so it stays higher
    assert augmented.history[-1]["loss"] > plain.history[-1]["loss"]
    assert augmented.history[-1]["accuracy"] < plain.history[-1]["accuracy"]
    assert augmented.best_val_accuracy > 0.5
    # inference is deterministic and uses the untouched image
    p1, p2 = predict_proba(augmented.model, data.x_test), predict_proba(augmented.model, data.x_test)
    assert np.array_equal(p1, p2) and np.array_equal(p1.argmax(1), augmented.test_pred)


# --- dropout ---


def test_dropout_is_random_when_training_and_off_at_inference(data):
    x = data.x_test[:64]
    assert "Dropout" not in _types(build_model(TrainConfig((64, 32))))
    model = build_model(TrainConfig((64, 32), dropout=0.5))
    drops = [layer for layer in model.layers if type(layer).__name__ == "Dropout"]
    assert len(drops) == 2 and all(d.rate == 0.5 for d in drops)
    a, b = np.asarray(model(x, training=True)), np.asarray(model(x, training=True))
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(model(x, training=False), model(x, training=False))


def test_dropout_lowers_training_fit(data):
    base = TINY.replace(hidden_layers=(64,), epochs=3)
    plain, dropped = train(base, data), train(base.replace(dropout=0.6), data)
    # training accuracy is measured with units dropped, so it falls behind
    assert dropped.history[-1]["accuracy"] < plain.history[-1]["accuracy"] - 0.02
    assert dropped.best_val_accuracy > 0.5


# --- learning-rate schedule ---


@pytest.mark.parametrize("schedule, at_half, at_end", [
    ("constant", 1.0, 1.0), ("cosine", 0.5, 0.0), ("step", 1.0, 0.01),
])
def test_schedule_shape(schedule, at_half, at_end):
    config = TrainConfig(optimizer="adam", learning_rate=0.002, epochs=10, lr_schedule=schedule)
    opt = make_optimizer(config, steps_per_epoch=20)  # 200 steps in all
    rates = {}
    for step in (0, 100, 101, 151, 200):
        opt.iterations.assign(step)
        rates[step] = float(opt.learning_rate) / 0.002
    assert rates[0] == pytest.approx(1.0)
    assert rates[100] == pytest.approx(at_half, abs=1e-3)
    assert rates[200] == pytest.approx(at_end, abs=1e-6)
    if schedule == "step":  # x0.1 after half the steps, x0.01 after three quarters
        assert rates[101] == pytest.approx(0.1) and rates[151] == pytest.approx(0.01)


@pytest.mark.parametrize("schedule, end_factor", [("constant", 1.0), ("cosine", 0.0), ("step", 0.01)])
def test_training_follows_the_schedule(data, schedule, end_factor):
    config = TINY.replace(lr_schedule=schedule, learning_rate=0.003)
    result = train(config, data)
    opt = result.model.optimizer
    steps = -(-len(data.y_train) * 9 // 10 // config.batch_size)
    assert int(opt.iterations.numpy()) == config.epochs * steps
    assert float(opt.learning_rate) == pytest.approx(0.003 * end_factor, abs=1e-7)


# --- early stopping ---


def test_early_stopping_stops_on_a_plateau_and_restores_the_best_weights(data):
    config = TINY.replace(epochs=100, early_stopping=2, learning_rate=0.003)
    result = train(config, data)
    vals = [h["val_accuracy"] for h in result.history]
    assert len(vals) < config.epochs, "a 100-epoch run of this tiny model plateaus long before the end"
    assert result.best_val_accuracy == max(vals) and result.best_epoch == vals.index(max(vals)) + 1
    # patience 2: training stopped after two epochs without a new best
    assert len(vals) == result.best_epoch + 2
    assert max(vals[-2:]) <= result.best_val_accuracy
    # the returned (and stored) model is the best epoch's, not the last epoch's
    assert _val_accuracy(result, data) == pytest.approx(result.best_val_accuracy, abs=1.5 / 800)


# --- label smoothing ---


def test_label_smoothing_raises_the_minimum_loss():
    onehot = np.eye(10, dtype=np.float32)[[0, 3, 7]]
    perfect = np.clip(onehot, 1e-7, 1.0)
    assert float(make_loss(TrainConfig())(np.array([0, 3, 7]), perfect)) < 1e-3
    smoothed = float(make_loss(TrainConfig(label_smoothing=0.1))(onehot, perfect))
    # the best a model can do is to predict the smoothed targets: 0.91 on the class, 0.01 elsewhere
    assert smoothed > 0.4


def test_label_smoothing_lowers_confidence(data):
    base = TINY.replace(epochs=4)
    plain, smooth = train(base, data), train(base.replace(label_smoothing=0.2), data)
    assert smooth.test_proba.max(axis=1).mean() < plain.test_proba.max(axis=1).mean() - 0.03
    # accuracy is still reported right with the one-hot targets smoothing needs
    assert smooth.best_val_accuracy > 0.6
    assert _val_accuracy(smooth, data) == pytest.approx(smooth.best_val_accuracy, abs=1.5 / 800)


# --- batch normalisation ---


def test_batch_norm_adds_layers_and_count_params_matches():
    for config in (TrainConfig((64, 32), batch_norm=True), TrainConfig((16,), batch_norm=True, dropout=0.2),
                   TrainConfig((32, 16, 8), augment=0.5, dropout=0.3), TrainConfig((20,), batch_norm=False)):
        model = build_model(config)
        bns = [layer for layer in model.layers if type(layer).__name__ == "BatchNormalization"]
        assert len(bns) == (len(config.hidden_layers) if config.batch_norm else 0)
        hidden = [model.get_layer(f"dense_{i}") for i in range(1, len(config.hidden_layers) + 1)]
        assert all(d.use_bias is not config.batch_norm for d in hidden)
        assert count_params(config) == model.count_params()


def test_batch_norm_learns_statistics_and_is_deterministic_at_inference(data):
    result = train(TINY.replace(epochs=1, batch_norm=True), data)
    bn = result.model.get_layer("bn_1")
    assert np.abs(bn.moving_mean.numpy()).max() > 0.01
    x = data.x_test[:128]
    np.testing.assert_array_equal(result.model(x, training=False), result.model(x, training=False))
    # training mode normalises with the batch's own statistics instead
    assert not np.allclose(result.model(x, training=True), result.model(x, training=False), atol=1e-4)


# --- the reference presets stay as they were ---


def test_reference_presets_have_every_option_off():
    assert REFERENCE_PRESETS == ("ref-relu-adam", "ref-relu-sgd", "ref-sigmoid-rmsprop", "ref-relu-nesterov")
    assert {f: getattr(TrainConfig(), f) for f in OPTION_DEFAULTS} == OPTION_DEFAULTS
    expected_params = {"ref-relu-adam": 109_386, "ref-relu-sgd": 125_898, "ref-sigmoid-rmsprop": 242_762,
                       "ref-relu-nesterov": 111_146}
    for name in REFERENCE_PRESETS:
        config = PRESETS[name].config
        assert {f: getattr(config, f) for f in OPTION_DEFAULTS} == OPTION_DEFAULTS
        assert (config.epochs, config.batch_size, config.learning_rate, config.val_fraction, config.seed) == (
            10, 128, None, 0.1, 0)
        model = build_model(config)
        assert set(_types(model)) == {"InputLayer", "Rescaling", "Flatten", "Dense", "Activation"}
        assert model.count_params() == count_params(config) == expected_params[name]


def test_best_mlp_is_an_mlp_with_options():
    preset = PRESETS["best-mlp"]
    assert "best-mlp" not in REFERENCE_PRESETS
    kinds = set(_types(build_model(preset.config)))
    assert not any("Conv" in k or "Pool" in k for k in kinds)
    assert "Dense" in kinds and preset.config != TrainConfig(preset.config.hidden_layers)


def test_int_and_float_spellings_are_one_config():
    a, b = TrainConfig(dropout=0, weight_decay=0, label_smoothing=0), TrainConfig()
    assert a == b and a.key("d") == b.key("d") and isinstance(a.dropout, float)
