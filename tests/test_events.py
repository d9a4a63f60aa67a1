"""TensorBoard event files: every run writes them while it trains; TensorBoard's own reader finds them."""

import pytest
from helpers import wait_done
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2
from tensorboard.util.tensor_util import make_ndarray

from kmnist_core.config import TINY
from kmnist_core.events import EPOCH_SCALARS


def test_a_run_writes_epoch_scalars_hparams_and_its_final_metrics(queue, store):
    config = TINY.replace(epochs=3, dropout=0.1)
    run_id = queue.submit(config)
    assert wait_done(queue, run_id).status == "completed"
    info = store.get(run_id)
    events = EventAccumulator(str(info.path), size_guidance={"tensors": 0})
    events.Reload()
    tags = set(events.Tags()["tensors"])
    assert {f"epoch_{k}" for k in EPOCH_SCALARS} | {"best_val_accuracy", "test_accuracy"} <= tags
    loss = events.Tensors("epoch_loss")
    assert [e.step for e in loss] == [1, 2, 3]
    assert [float(make_ndarray(e.tensor_proto)) for e in loss] == pytest.approx([h["loss"] for h in info.history])
    [test] = events.Tensors("test_accuracy")
    assert float(make_ndarray(test.tensor_proto)) == pytest.approx(info.metrics["test_accuracy"])

    content = events.PluginTagToContent("hparams")
    session = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = session.session_start_info.hparams
    assert hparams["hidden_layers"].string_value == "32" and hparams["dropout"].number_value == pytest.approx(0.1)
    assert hparams["optimizer"].string_value == "adam" and hparams["learning_rate"].number_value == 0.001
    assert session.session_start_info.group_name == run_id
