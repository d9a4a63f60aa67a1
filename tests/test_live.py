"""Live mode (AppTest, real job queue): widget changes replace this session's live job, debounced; nothing else."""

import time

from helpers import ROOT, wait_until
from streamlit.testing.v1 import AppTest

from pages import live_mode

SMALL = {"train_epochs": 3, "train_batch_size": 256}  # short runs of the default preset


def _app():
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=60)
    at.run()
    return at


def _queue(at):
    from pages import common

    return common.queue()


def _settle(at):
    """Wait out the debounce, then rerun (the debounce fragment's timer does that in a browser)."""
    time.sleep(live_mode.DEBOUNCE_S + 0.1)
    at.run()
    assert not at.exception, at.exception


def test_two_changes_in_a_row_start_one_job_with_the_last_configuration(env):
    at = _app()
    at.toggle(key=live_mode.TOGGLE).set_value(True)
    for key, value in SMALL.items():
        at.number_input(key=key).set_value(value)
    at.run()
    at.selectbox(key="train_activation").set_value("tanh").run()  # a second change before the pause ends
    _settle(at)
    q = _queue(at)
    [job] = q.jobs()  # exactly one job: the first configuration never started
    assert job.config.activation == "tanh" and job.config.epochs == 3 and job.active
    assert at.session_state["train_job"] == job.job_id


def test_a_change_stops_the_running_live_job_and_leaves_other_sessions_alone(env):
    other = _app()
    other.number_input(key="train_epochs").set_value(200).run()
    other.button(key="train_submit").click().run()
    theirs = other.session_state["train_job"]

    at = _app()
    at.toggle(key=live_mode.TOGGLE).set_value(True)
    at.number_input(key="train_batch_size").set_value(256)
    at.number_input(key="train_epochs").set_value(150).run()
    _settle(at)
    q = _queue(at)
    first = at.session_state["train_job"]
    assert first != theirs
    q.cancel(theirs)  # let the live job reach the worker
    wait_until(lambda: q.progress(first).status == "running", timeout=120)
    at.selectbox(key="train_optimizer").set_value("rmsprop").run()
    _settle(at)
    second = at.session_state["train_job"]
    assert second != first and q.progress(second).config.optimizer == "rmsprop"
    assert wait_until(lambda: q.progress(first).status == "cancelled", timeout=20)
    assert q.progress(theirs).status == "cancelled"  # by its own session, not by live mode
    assert "live" in q.store.get(second).tags
    assert [s.job_id for s in q.active()] == [second]

    at.toggle(key=live_mode.TOGGLE).set_value(False).run()  # off: stops nothing
    assert q.progress(second).active
    at.selectbox(key="train_optimizer").set_value("sgd").run()
    _settle(at)
    assert at.session_state["train_job"] == second  # and replaces nothing any more
    q.cancel(second)


def test_an_invalid_value_queues_nothing_and_a_long_estimate_waits_for_train(env):
    at = _app()
    at.toggle(key=live_mode.TOGGLE).set_value(True)
    at.toggle(key="train_layers_as_text").set_value(True).run()
    at.text_input(key="train_layers_text").set_value("128,,64").run()
    _settle(at)
    assert any("hidden_layers must be" in e.value for e in at.error)
    assert _queue(at).jobs() == []
    at.text_input(key="train_layers_text").set_value("4096, 4096, 4096, 4096, 4096, 4096").run()
    _settle(at)
    assert any("does not start this one by itself" in i.value for i in at.info)
    assert _queue(at).jobs() == []


def test_compare_hides_cancelled_live_runs_unless_asked(env):
    from kmnist_core import service
    from kmnist_core.config import TINY
    from kmnist_core.store import RunStore

    store = RunStore(env)
    live, plain = store.create(TINY, "a"), store.create(TINY.replace(seed=1), "b")
    for run_id in (live, plain):
        store.set_status(run_id, "cancelled")
    store.relabel(live, tags=[service.LIVE_TAG])
    assert [r.run_id for r in service.without_cancelled_live(store.list_runs())] == [plain]
    at = _app()
    at.switch_page("pages/compare.py").run()
    shown = list(at.dataframe[0].value.run)
    assert plain in shown and live not in shown
    at.toggle(key="compare_hide_live").set_value(False).run()
    assert live in list(at.dataframe[0].value.run)
