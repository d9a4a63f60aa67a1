"""Sweeps: the space as data, real trials through a real job queue, a real PostgreSQL shared by real processes."""

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time

import optuna
import psutil
import pytest
from helpers import ROOT, SUBSET, wait_until
from optuna.trial import TrialState
from postgres_support import postgres  # noqa: F401 - the fixture

from kmnist_core import cli as kmnist_cli
from kmnist_core.config import TrainConfig
from kmnist_core.errors import KmnistError
from kmnist_core.store import RunStore
from kmnist_core.sweeps import (
    DEFAULT_SPACE,
    Budget,
    SpaceError,
    SweepSettings,
    SweepStorageError,
    best_so_far,
    config_from_params,
    grid_search_space,
    importances,
    join_sweep,
    open_storage,
    quiet_storage_thread_errors,
    run_sweep_tags,
    run_trials,
    start_sweep,
    suggest_config,
    train_command,
    trial_counts,
    trials_table,
    validate_space,
)

optuna.logging.set_verbosity(optuna.logging.ERROR)
HEARTBEAT = 2  # seconds; a trial without one for 3 heartbeats (6 s) is failed and retried

# Tiny trials: one small layer, 1-2 epochs on the subset's 7,200 training images.
TINY_SPACE = """\
epochs = 2
batch_size = 128

learning_rate = { low = 0.001, high = 0.01, log = true }

[hidden_layers]
layers = 1
units = [16, 32, 64]
"""


def cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    code = kmnist_cli.main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def sweep_process(tmp_path, runs, *argv, name="run"):
    """`python -m kmnist_core sweep ...` as a real process, its output in files under tmp_path."""
    env = {**os.environ, "KMNIST_SWEEP_HEARTBEAT": str(HEARTBEAT), "KMNIST_LOG_DIR": str(tmp_path / "logs"),
           "TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0", "PYTHONPATH": str(ROOT)}
    env.pop("KMNIST_WORKERS", None)
    out, err = open(tmp_path / f"{name}.out", "w"), open(tmp_path / f"{name}.err", "w")
    cmd = [sys.executable, "-m", "kmnist_core", "--runs-dir", str(runs), "--data-dir", str(SUBSET),
           "sweep", *argv]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=err)


def read(tmp_path, name):
    return (tmp_path / f"{name}.out").read_text(), (tmp_path / f"{name}.err").read_text()


def finish(process, tmp_path, name, timeout=180):
    try:
        code = process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError(f"{name} did not finish: {read(tmp_path, name)}") from None
    assert code == 0, (name, code, read(tmp_path, name))
    return read(tmp_path, name)


def study_exists(url, name):
    try:
        return name in optuna.get_all_study_names(url)
    except Exception:  # noqa: BLE001 - not created yet
        return False


def assert_each_trial_has_its_run(trials, study):
    """Every completed trial's run is a completed run in the store of the process that ran it, tagged with it."""
    run_ids = []
    for t in trials:
        if t.state != TrialState.COMPLETE:
            continue
        store = RunStore(t.user_attrs["runs_dir"])
        info = store.get(t.user_attrs["run_id"])
        assert info.status == "completed" and info.config == TrainConfig.from_dict(t.user_attrs["config"])
        assert {"study": study, "trial": t.number} in [{k: e[k] for k in ("study", "trial")}
                                                      for e in run_sweep_tags(store, info.run_id)]
        assert t.user_attrs["val_accuracy"] == info.metrics["best_val_accuracy"] == t.value
        assert t.user_attrs["test_accuracy"] == info.metrics["test_accuracy"]
        assert t.user_attrs["val_accuracy_per_epoch"] == [h["val_accuracy"] for h in info.history]
        assert t.user_attrs["status"] == "completed" and t.user_attrs["host"]
        run_ids.append(info.run_id)
    assert len(run_ids) == len(set(run_ids))  # no trial trained twice, none answered another's run


# --- the space, as data --------------------------------------------------------------------


def test_default_space_covers_the_four_axes_and_the_learning_rate():
    space = validate_space(DEFAULT_SPACE)
    assert set(space) == {"hidden_layers", "activation", "optimizer", "weight_decay", "learning_rate"}
    assert space["weight_decay"]["log"] and space["learning_rate"]["log"]
    study = optuna.create_study(direction="maximize")
    configs = [suggest_config(study.ask(), space) for _ in range(20)]
    assert len({c.hidden_layers for c in configs}) > 1 and all(1 <= len(c.hidden_layers) <= 3 for c in configs)
    for trial in study.trials:
        assert config_from_params(space, trial.params) == configs[trial.number]


def test_space_files_toml_and_json_give_the_same_space(tmp_path):
    (tmp_path / "s.toml").write_text(TINY_SPACE)
    (tmp_path / "s.json").write_text(json.dumps({"epochs": 2, "batch_size": 128,
                                                 "learning_rate": {"low": 0.001, "high": 0.01, "log": True},
                                                 "hidden_layers": {"layers": 1, "units": [16, 32, 64]}}))
    from kmnist_core.sweeps import load_space

    assert load_space(tmp_path / "s.toml") == load_space(tmp_path / "s.json")


def test_every_field_can_be_searched():
    space = validate_space({
        "hidden_layers": [[128, 64], "256,128,64", 32], "activation": ["relu", "tanh"], "optimizer": ["sgd"],
        "weight_decay": {"low": 1e-5, "high": 1e-2, "log": True}, "learning_rate": {"low": 1e-4, "high": 0.1},
        "epochs": {"low": 1, "high": 3}, "batch_size": [64, 128], "val_fraction": {"low": 0.05, "high": 0.2},
        "seed": {"low": 0, "high": 9}, "dropout": {"low": 0.0, "high": 0.5, "step": 0.1}, "augment": [0.0, 0.5],
        "lr_schedule": ["constant", "cosine"], "early_stopping": [0, 3], "label_smoothing": {"low": 0, "high": 0.2},
        "batch_norm": [True, False],
    })
    study = optuna.create_study(direction="maximize")
    config = suggest_config(study.ask(), space)
    assert isinstance(config, TrainConfig) and config.hidden_layers in {(128, 64), (256, 128, 64), (32,)}
    grid = grid_search_space({name: space[name] for name in ("dropout", "epochs", "batch_norm")})
    assert grid["dropout"] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5] and grid["epochs"] == [1, 2, 3]


def test_grid_turns_layers_and_units_into_one_choice_of_combinations():
    space = validate_space({"hidden_layers": {"layers": {"low": 1, "high": 2}, "units": [16, 32]},
                            "learning_rate": {"low": 1e-3, "high": 1e-1, "log": True, "grid": 3}})
    grid = grid_search_space(space)
    assert grid["hidden_layers"] == ["16", "32", "16,16", "16,32", "32,16", "32,32"]
    assert grid["learning_rate"] == [0.001, 0.01, 0.1]
    assert SweepSettings(space, sampler="grid").grid_size == 18


@pytest.mark.parametrize("space, needle", [
    ({"activation": []}, "space: activation: choices is empty"),
    ({"hidden_layers": {"choices": []}}, "space: hidden_layers: choices is empty"),
    ({"weight_decay": {"low": 0.01, "high": 0.0001, "log": True}}, "space: weight_decay: the range is inverted"),
    ({"epochs": {"low": 5, "high": 2}}, "space: epochs: the range is inverted"),
    ({"weight_decay": {"low": 0, "high": 0.01, "log": True}}, "space: weight_decay: a log range needs low > 0"),
    ({"learning_rate": {"low": -1, "high": 0.01, "log": True}}, "space: learning_rate: a log range needs low > 0"),
    ({"hidden_layers": {"layers": 2, "units": {"low": 0, "high": 64, "log": True}}},
     "space: hidden_layers units: a log range needs low > 0"),
    ({"epoch": [1, 2]}, "space: unknown field 'epoch'; allowed fields: activation"),
    ({"epochs": {"low": 1, "high": 500}}, "space: epochs high: epochs must be an integer in the range [1, 200]"),
    ({"activation": ["relu", "swish"]}, "space: activation choice: activation must be one of"),
    ({"dropout": {"low": 0, "high": 0.95}}, "space: dropout high: dropout must be a number in the range [0, 0.9]"),
    ({"learning_rate": {"low": 0, "high": 0.1}}, "space: learning_rate low: learning_rate must be a number"),
    ({"hidden_layers": {"layers": {"low": 1, "high": 9}, "units": [32]}}, "space: hidden_layers layers high:"),
    ({"hidden_layers": {"layers": 2, "units": [32, 5000]}}, "space: hidden_layers units choice:"),
    ({"hidden_layers": [[128, 0]]}, "space: hidden_layers choice:"),
    ({"epochs": 0, "activation": ["relu", "tanh"]}, "space: epochs value: epochs must be"),
    ({"batch_norm": {"low": 0, "high": 1}}, "space: batch_norm: a range needs a numeric field"),
    ({"epochs": {"low": 1.5, "high": 3}}, "space: epochs: low must be a whole number"),
    ({"dropout": {"lo": 0.1, "high": 0.2}}, "space: dropout: unknown key 'lo'"),
    ({"weight_decay": {"low": 1e-4, "high": 1e-2, "log": True, "step": 1e-3}}, "a log range cannot have a step"),
    ({"epochs": 3}, "space: nothing to search"),
    ([1, 2], "space: expected a table of fields"),
])
def test_every_bad_space_gives_one_line(space, needle, tmp_path):
    with pytest.raises(SpaceError) as e:
        validate_space(space)
    assert needle in str(e.value) and "\n" not in str(e.value)
    # and through the command line: exit 2, one line, before anything starts (no data, no storage)
    path = tmp_path / "space.json"
    path.write_text(json.dumps(space))
    code, out, err = cli("--runs-dir", str(tmp_path / "runs"), "--data-dir", str(tmp_path / "none"),
                         "sweep", "run", "--space", str(path))
    assert code == 2 and err == f"Error: {e.value}\n" and out == ""
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("argv, needle", [
    (["sweep", "run", "--trials", "0"], "argument --trials: must be a whole number of at least 1"),
    (["sweep", "run", "--trials", "3", "--minutes", "1"], "not allowed with argument --trials"),
    (["sweep", "run", "--minutes", "-2"], "argument --minutes: must be a number above 0"),
    (["sweep", "run", "--sampler", "cmaes"], "argument --sampler: invalid choice"),
    (["sweep", "run", "--pruner", "sha"], "argument --pruner: invalid choice"),
    (["sweep", "worker"], "the following arguments are required: --study"),
    (["sweep", "fly"], "invalid choice: 'fly'"),
    (["sweep", "run", "--space", "/nonexistent/space.toml"], "space file /nonexistent/space.toml: cannot be read"),
    (["repeat", "--seeds", "0"], "argument --seeds: must be a whole number of at least 1"),
    (["repeat", "--epochs", "x"], "epochs must be an integer in the range [1, 200]; got 'x'"),
])
def test_bad_flags_exit_2_with_one_line(argv, needle, tmp_path):
    code, out, err = cli("--runs-dir", str(tmp_path), *argv)
    assert code == 2 and needle in err and err.startswith("Error: ")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_a_bad_space_file_is_one_line(tmp_path):
    path = tmp_path / "space.toml"
    path.write_text("epochs = [1, 2\n")
    code, _, err = cli("--runs-dir", str(tmp_path), "sweep", "run", "--space", str(path))
    assert code == 2 and err.startswith(f"Error: space file {path}: not valid TOML") and err.count("\n") == 1


def test_the_best_config_command_line_trains_that_config():
    from kmnist_core.cli import build_parser, config_from_args

    config = TrainConfig((256, 128), "tanh", "rmsprop", 3.0517578125e-05, learning_rate=0.0012345678901234,
                         epochs=3, batch_size=64, dropout=0.1, augment=0.25, lr_schedule="cosine",
                         early_stopping=2, label_smoothing=0.05, batch_norm=True, val_fraction=0.2, seed=7)
    line = train_command(config)
    assert line.startswith("python -m kmnist_core train --hidden 256,128 --activation tanh --optimizer rmsprop "
                           "--weight-decay 3.0517578125e-05 --learning-rate 0.0012345678901234 ")
    argv = line.split()[3:]
    assert config_from_args(build_parser().parse_args(argv)) == config
    assert train_command(TrainConfig()) == ("python -m kmnist_core train --hidden 128,64 --activation relu "
                                            "--optimizer adam --weight-decay 0.0")


def test_an_unreachable_database_at_start_is_one_line_without_the_password(tmp_path):
    url = "postgresql+psycopg://kmnist:s3cret@127.0.0.1:1/sweeps"
    with pytest.raises(SweepStorageError) as e:
        open_storage(url, tmp_path)
    assert str(e.value).startswith("sweep storage postgresql+psycopg://kmnist:***@127.0.0.1:1/sweeps: "
                                   "connecting failed: ")
    assert "s3cret" not in str(e.value) and "\n" not in str(e.value)
    for argv in (["sweep", "run", "--trials", "1"], ["sweep", "list"], ["sweep", "show", "--study", "x"]):
        code, _, err = cli("--runs-dir", str(tmp_path), "--data-dir", str(SUBSET), *argv, "--storage", url)
        assert code == 2 and err.count("\n") == 1 and "127.0.0.1:1" in err and "s3cret" not in err, err


# --- real trials in this process: pruning and the cache ----------------------------------------


@pytest.fixture(scope="module")
def local(tmp_path_factory, data):
    """A run store, its default (SQLite) sweep storage and a real job queue with one worker process."""
    from kmnist_core.jobs import JobQueue

    store = RunStore(tmp_path_factory.mktemp("sweeps") / "runs")
    queue = JobQueue(store, data, workers=1)
    yield store, open_storage(None, store.root, heartbeat=HEARTBEAT), queue
    queue.close()


def test_pruning_stops_a_bad_trial_early(local, data):
    store, storage, queue = local
    space = validate_space({"epochs": 8, "batch_size": 32, "hidden_layers": 32, "learning_rate": [0.003, 1e-6]})
    settings = SweepSettings(space, sampler="random", pruner="median", startup_trials=2, warmup_epochs=0)
    sweep = start_sweep(storage, "prune", settings, Budget(trials=3), data)
    for lr in (0.003, 0.003, 1e-6):  # two good trials (the second from the cache), then a hopeless one
        sweep.study.enqueue_trial({"learning_rate": lr})
    assert run_trials(sweep, queue) == "trial budget reached"
    trials = sweep.study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED]
    pruned = trials[2]
    info = store.get(pruned.user_attrs["run_id"])
    assert info.status == "pruned" and pruned.user_attrs["status"] == "pruned"
    assert 1 <= len(info.history) < 8  # it stopped early: fewer epochs than it was configured for
    assert len(store.get(trials[0].user_attrs["run_id"]).history) == 8
    assert pruned.user_attrs["val_accuracy_per_epoch"] == [h["val_accuracy"] for h in info.history]
    reported = {h["epoch"]: h["val_accuracy"] for h in info.history}
    assert pruned.intermediate_values.items() <= reported.items()  # epochs done while the stop travelled: kept
    assert trials[1].user_attrs["cached"] and trials[1].user_attrs["run_id"] == trials[0].user_attrs["run_id"]
    assert trial_counts(sweep) == {"completed": 2, "pruned": 1, "failed": 0, "running": 0, "waiting": 0,
                                   "surplus": 0}


def test_a_second_identical_sweep_trains_nothing(local, data):
    store, storage, queue = local
    space = validate_space({"epochs": 1, "batch_size": 256, "hidden_layers": [16, 32],
                            "learning_rate": {"low": 1e-3, "high": 1e-2, "log": True}})
    settings = SweepSettings(space, sampler="random", pruner="none")
    first = start_sweep(storage, "cache-a", settings, Budget(trials=3), data, sampler_seed=11)
    run_trials(first, queue)
    folders = sorted(p.name for p in store.root.iterdir())
    started = time.monotonic()
    second = start_sweep(storage, "cache-b", settings, Budget(trials=3), data, sampler_seed=11)
    assert run_trials(second, queue) == "trial budget reached"
    assert sorted(p.name for p in store.root.iterdir()) == folders  # no new run folder
    a, b = first.study.get_trials(), second.study.get_trials()
    assert [t.params for t in a] == [t.params for t in b] and [t.value for t in a] == [t.value for t in b]
    assert all(t.user_attrs["cached"] for t in b) and not any(t.user_attrs["cached"] for t in a)
    assert time.monotonic() - started < 20  # told to Optuna from the store, nothing trained
    for ta, tb in zip(a, b, strict=True):
        assert ta.user_attrs["run_id"] == tb.user_attrs["run_id"]
        tags = run_sweep_tags(store, ta.user_attrs["run_id"])
        assert [(t["study"], t["trial"]) for t in tags] == [("cache-a", ta.number), ("cache-b", tb.number)]
    # the summaries the Sweep page will show
    table = trials_table(second)
    assert [r["trial"] for r in table] == [0, 1, 2] and all(r["status"] == "completed" for r in table)
    assert {"learning_rate", "hidden_layers"} == set(table[0]["params"])
    curve = best_so_far(second)
    assert [p["best"] for p in curve] == sorted(p["best"] for p in curve) and len(curve) == 3
    imp = importances(second)
    assert "PedAnovaImportanceEvaluator" in imp.evaluator and (imp.values or imp.note)


# --- several processes on one study ------------------------------------------------------------


def test_local_default_storage_two_processes_lose_and_duplicate_nothing(local, tmp_path):
    """`sweep run` in a process of its own, and this test process as the second worker, on the default storage."""
    _, _, queue = local
    runs = tmp_path / "runs"
    space = tmp_path / "space.toml"
    space.write_text(TINY_SPACE.replace("epochs = 2", "epochs = 1"))
    url = f"sqlite:///{runs.absolute() / 'sweeps.db'}"
    started = time.monotonic()
    run = sweep_process(tmp_path, runs, "run", "--space", str(space), "--trials", "6", "--sampler", "random",
                        "--pruner", "none", "--study", "local")
    wait_until(lambda: study_exists(url, "local"), timeout=120)
    here = join_sweep(open_storage(url, runs, heartbeat=HEARTBEAT), "local")
    assert run_trials(here, queue) == "trial budget reached"
    out, _ = finish(run, tmp_path, "run")
    print(f"local sweep of 6 trials by 2 processes: {time.monotonic() - started:.1f} s")
    lines = out.strip().splitlines()
    trials = optuna.load_study(study_name="local", storage=url).get_trials()
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(done) == 6 and len({t.number for t in trials}) == len(trials)
    assert lines[-3] == f"trials: 6 completed, 0 pruned, {trial_counts(here)['failed']} failed"
    assert lines[-2].startswith("best val accuracy: 0.") and lines[-1].startswith("python -m kmnist_core train ")
    assert float(lines[-2].split()[-1]) == pytest.approx(max(t.value for t in done), abs=5e-5)
    assert {t.user_attrs["pid"] for t in done} <= {run.pid, os.getpid()}
    assert_each_trial_has_its_run(trials, "local")
    # every run folder a trial made belongs to exactly one trial: nothing trained twice, nothing lost
    tags = [(tag["study"], tag["trial"]) for root in {t.user_attrs["runs_dir"] for t in done}
            for p in RunStore(root).list_runs() for tag in run_sweep_tags(RunStore(root), p.run_id)
            if tag["study"] == "local"]
    assert sorted(tags) == sorted(("local", t.number) for t in trials if "run_id" in t.user_attrs)


def test_postgres_workers_share_a_study_and_a_killed_workers_trial_is_retried(postgres, tmp_path):  # noqa: F811
    url = postgres.url
    space = tmp_path / "space.toml"
    space.write_text(TINY_SPACE)
    started = time.monotonic()
    run = sweep_process(tmp_path, tmp_path / "runs-a", "run", "--space", str(space), "--trials", "6",
                        "--sampler", "random", "--pruner", "none", "--study", "pg", "--storage", url)
    wait_until(lambda: study_exists(url, "pg"), timeout=120)
    victim = sweep_process(tmp_path, tmp_path / "runs-b", "worker", "--study", "pg", "--storage", url, name="w1")
    worker = sweep_process(tmp_path, tmp_path / "runs-c", "worker", "--study", "pg", "--storage", url, name="w2")
    study = optuna.load_study(study_name="pg", storage=url)

    def victim_training():
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.user_attrs.get("pid") == victim.pid and "run_id" in t.user_attrs:
                if RunStore(tmp_path / "runs-b").get(t.user_attrs["run_id"]).status == "running":
                    return t
        return None

    killed = wait_until(victim_training, timeout=150, interval=0.1)  # mid-trial: its run is training
    children = psutil.Process(victim.pid).children(recursive=True)
    victim.send_signal(signal.SIGKILL)
    killed_at = time.time()
    assert victim.wait(10) == -signal.SIGKILL
    out, _ = finish(run, tmp_path, "run")
    finish(worker, tmp_path, "w2")
    print(f"postgres sweep ({postgres.network}) of 6 trials by 3 processes, one killed: "
          f"{time.monotonic() - started:.1f} s")
    wait_until(lambda: not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children), 15)

    trials = study.get_trials()
    for t in trials:  # the timeline, printed with pytest -s
        print(f"  trial {t.number} {t.state.name:<8} pid {t.user_attrs.get('pid')} "
              f"start {t.datetime_start.timestamp() - killed_at:+7.1f} s, end "
              f"{t.datetime_complete.timestamp() - killed_at:+7.1f} s from the kill, "
              f"training {t.user_attrs.get('train_seconds') or 0:.1f} s")
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    failed = [t for t in trials if t.state == TrialState.FAIL and not t.user_attrs.get("surplus")]
    assert len(done) == 6 and len({t.number for t in trials}) == len(trials)
    # the killed trial failed through the heartbeat (grace 3 heartbeats) and was retried once, by a live process
    [dead] = [t for t in failed if t.number == killed.number]
    assert dead.datetime_complete.timestamp() - killed_at < 3 * HEARTBEAT + 15
    for t in failed:  # on a machine this loaded a live process' heartbeats may come late: it is retried too
        retries = [r for r in trials if r.system_attrs.get("failed_trial") == t.number]
        assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE and retries[0].params == t.params
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert retries[0].user_attrs["pid"] in {run.pid, worker.pid}
    assert {t.user_attrs["pid"] for t in done} <= {run.pid, worker.pid}
    assert RunStore(tmp_path / "runs-b").get(killed.user_attrs["run_id"]).status == "interrupted"
    assert_each_trial_has_its_run(trials, "pg")
    lines = out.strip().splitlines()
    assert lines[-3] == f"trials: 6 completed, 0 pruned, {len(failed)} failed"

    code, shown, err = cli("--runs-dir", str(tmp_path / "runs-a"), "sweep", "show", "--study", "pg",
                           "--storage", url)
    assert code == 0, err
    rows = {int(line.split()[0]): line for line in shown.splitlines() if line.split() and line.split()[0].isdigit()}
    assert set(rows) == {t.number for t in trials}
    assert f"(retry of {killed.number})" in rows[retries[0].number] and "failed" in rows[killed.number]
    assert shown.strip().splitlines()[-3:] == lines[-3:]
    code, listed, _ = cli("--runs-dir", str(tmp_path), "sweep", "list", "--storage", url)
    assert code == 0 and "pg " in listed and f"6 completed, 0 pruned, {len(failed)} failed" in listed


def test_postgres_outage_mid_sweep_is_one_line_and_the_sweep_resumes(postgres, local, data):  # noqa: F811
    _, _, queue = local
    storage = open_storage(postgres.url, "/unused", heartbeat=HEARTBEAT)
    space = validate_space({"epochs": 3, "batch_size": 128, "hidden_layers": [16, 32],
                            "learning_rate": {"low": 1e-3, "high": 1e-2, "log": True}})
    settings = SweepSettings(space, sampler="random", pruner="none")
    sweep = start_sweep(storage, "outage", settings, Budget(trials=4), data)
    result = {}

    def go():
        try:
            result["reason"] = run_trials(sweep, queue)
        except KmnistError as e:
            result["error"] = e

    hook = threading.excepthook
    quiet_storage_thread_errors()  # as the CLI does: Optuna's heartbeat thread fails too, quietly
    try:
        thread = threading.Thread(target=go)
        thread.start()
        wait_until(lambda: sweep.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), 150, 0.2)
        postgres.stop("immediate")  # the database goes away mid-sweep
        try:
            thread.join(60)
            assert not thread.is_alive()
            error = result["error"]
            assert isinstance(error, SweepStorageError) and "\n" not in str(error)
            assert str(error).startswith(f"sweep storage postgresql+psycopg://kmnist:***@{postgres.host}:"
                                         f"{postgres.port}/sweeps: ")
            assert postgres.password not in str(error)
            assert not queue.active()  # the trial in flight had its job cancelled
        finally:
            postgres.start()
    finally:
        threading.excepthook = hook
    # resumed with what is stored: the trial cut off by the outage is failed (heartbeat) and retried
    resumed = join_sweep(open_storage(postgres.url, "/unused", heartbeat=HEARTBEAT), "outage", data)
    assert run_trials(resumed, queue) == "trial budget reached"
    trials = resumed.study.get_trials()
    assert len([t for t in trials if t.state == TrialState.COMPLETE]) == 4
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert_each_trial_has_its_run(trials, "outage")


def test_join_sweep_refuses_a_missing_study_and_other_data(local, data, tmp_path):
    _, storage, _ = local
    with pytest.raises(KmnistError, match="no study 'nope' in sqlite:///.*; start it with `sweep run --study nope`"):
        join_sweep(storage, "nope", data)
    code, _, err = cli("--runs-dir", str(tmp_path), "--data-dir", str(SUBSET), "sweep", "worker", "--study", "nope",
                       "--storage", storage.url)
    assert code == 2 and err.count("\n") == 1 and "no study 'nope'" in err
