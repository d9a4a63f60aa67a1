"""The Keras APIs EpochLoop relies on, one test each, so that a Keras upgrade that changes one fails here first."""

import keras
import numpy as np
import pytest

from kmnist_core.config import TINY
from kmnist_core.loop import EpochLoop, epoch_orders, use_xla
from kmnist_core.model import build_model, make_loss, make_optimizer


@pytest.fixture
def model():
    keras.utils.set_random_seed(0)
    m = build_model(TINY)
    m.compile(optimizer=make_optimizer(TINY, 10), loss=make_loss(TINY), metrics=["accuracy"], jit_compile=False)
    return m


@pytest.fixture(scope="module")
def batch(data):
    return data.x_train[:256], data.y_train[:256]  # (256, 28, 28) uint8, (256,) uint8


def test_train_step_takes_an_x_y_tuple_and_returns_loss_and_accuracy_logs(model, batch):
    model.optimizer.build(model.trainable_variables)
    before = [w.copy() for w in model.get_weights()]
    logs = model.train_step(batch)
    assert {"loss", "accuracy"} <= set(logs)
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))


def test_test_step_returns_logs_without_changing_weights(model, batch):
    before = [w.copy() for w in model.get_weights()]
    logs = model.test_step(batch)
    assert {"loss", "accuracy"} <= set(logs)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))


def test_get_metrics_result_has_the_log_keys_the_while_loop_carries(model, batch):
    model.optimizer.build(model.trainable_variables)
    model.test_step(batch)
    assert set(model.get_metrics_result()) == set(model.train_step(batch))  # same structure: a valid loop state


def test_reset_metrics_restarts_the_running_means(model, data):
    model.test_step((data.x_train[:64], data.y_train[:64]))
    model.reset_metrics()
    fresh = model.test_step((data.x_train[64:128], data.y_train[64:128]))
    model.reset_metrics()
    alone = model.test_step((data.x_train[64:128], data.y_train[64:128]))
    assert float(fresh["loss"]) == pytest.approx(float(alone["loss"]))


def test_optimizer_build_creates_its_state_before_tracing(model):
    assert not model.optimizer.built
    model.optimizer.build(model.trainable_variables)
    assert model.optimizer.built and len(model.optimizer.variables) > len(model.trainable_variables)


def test_stop_training_set_by_a_callback_ends_the_loop_and_callbacklist_calls_every_hook(model, data):
    calls = []

    class Recorder(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            calls.append("train_begin")

        def on_epoch_begin(self, epoch, logs=None):
            calls.append(f"epoch_begin {epoch}")

        def on_train_batch_end(self, batch, logs=None):
            calls.append("batch")

        def on_epoch_end(self, epoch, logs=None):
            calls.append(f"epoch_end {epoch} {'val_accuracy' in logs}")
            self.model.stop_training = epoch == 1

        def on_train_end(self, logs=None):
            calls.append("train_end")

    x, y = data.x_train[:1000], data.y_train[:1000]
    loop = EpochLoop(model, x, y, data.x_train[1000:1200], data.y_train[1000:1200], batch_size=128, jit=False)
    loop.fit(5, keras.callbacks.CallbackList([Recorder()], model=model), seed=0)
    epochs = [c for c in calls if c.startswith("epoch_end")]
    assert epochs == ["epoch_end 0 True", "epoch_end 1 True"]  # stopped after the second of five
    assert calls[0] == "train_begin" and calls[-1] == "train_end" and "batch" in calls


def test_epoch_orders_are_seeded_permutations():
    a, b = epoch_orders(3, 50), epoch_orders(3, 50)
    first = next(a)
    assert np.array_equal(first, next(b)) and sorted(first) == list(range(50))
    assert not np.array_equal(first, next(a))  # each epoch has its own order


def test_xla_only_pays_off_for_long_runs_without_augmentation():
    assert not use_xla(100, augment=False) and use_xla(100_000, augment=False)
    assert not use_xla(100_000, augment=True)
