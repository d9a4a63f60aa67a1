"""Seed repeats: group statistics and Welch comparisons equal numpy's and scipy's, on synthetic and stored runs."""

import io
import math

import numpy as np
import pytest
from helpers import SUBSET
from scipy import stats as sps

from kmnist_core import cli
from kmnist_core.config import PRESETS, TrainConfig
from kmnist_core.stats import (
    StatsError,
    compare,
    difference_labels,
    group_of,
    group_runs,
    seeds_for,
    summarize,
    welch_interval,
)
from kmnist_core.store import RunStore


def scipy_ci(x):
    x = np.asarray(x)
    return sps.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=sps.sem(x))


@pytest.mark.parametrize("values", [[0.86, 0.87, 0.855, 0.862, 0.871], [0.5, 0.7], list(np.linspace(0.1, 0.9, 17))])
def test_summary_equals_numpy_and_scipy(values):
    s = summarize(values)
    x = np.asarray(values)
    assert s.n == len(x) and s.mean == pytest.approx(x.mean()) and s.sd == pytest.approx(x.std(ddof=1))
    assert (s.ci_low, s.ci_high) == pytest.approx(scipy_ci(x))


def test_one_run_has_no_spread():
    s = summarize([0.9])
    assert s.n == 1 and s.mean == 0.9 and math.isnan(s.sd) and math.isnan(s.ci_low)
    assert s.text() == "0.9000 (n = 1)"
    with pytest.raises(StatsError):
        summarize([])


@pytest.mark.parametrize("a, b", [
    ([0.91, 0.92, 0.915, 0.93, 0.925], [0.89, 0.90, 0.895, 0.905, 0.90]),
    ([0.80, 0.85, 0.83], [0.82, 0.90, 0.70, 0.88, 0.75, 0.79]),  # unequal n and spread
])
def test_welch_interval_equals_scipy(a, b):
    diff, low, high, df = welch_interval(a, b)
    ref = sps.ttest_ind(a, b, equal_var=False)
    assert diff == pytest.approx(np.mean(a) - np.mean(b))
    assert (low, high) == pytest.approx(tuple(ref.confidence_interval(0.95)))
    assert df == pytest.approx(ref.df)


def test_sentences_say_who_wins_and_when_noise_cannot_tell():
    from kmnist_core.stats import SeedGroup

    def group(optimizer, values):
        n = len(values)
        return SeedGroup(TrainConfig(optimizer=optimizer), "", tuple(f"r{i}" for i in range(n)), tuple(range(n)),
                         tuple(values), tuple(values))

    adam = group("adam", [0.921, 0.915, 0.93, 0.925, 0.92])
    rmsprop = group("rmsprop", [0.90, 0.905, 0.897, 0.91, 0.903])
    c = compare(adam, rmsprop)
    half = (c.ci_high - c.ci_low) / 2 * 100
    assert c.sentence() == (f"adam beats rmsprop by {c.diff * 100:.1f} ± {half:.1f} points of best validation "
                            "accuracy (n = 5 each)")
    assert compare(rmsprop, adam).sentence().startswith("adam beats rmsprop by ")
    noisy = group("sgd", [0.80, 0.95, 0.85, 0.99])
    text = compare(adam, noisy, "test").sentence()
    assert text.startswith("adam and sgd cannot be told apart on test accuracy: the difference is ")
    assert text.endswith("(n = 5 and 4), and its 95 % interval includes 0")
    with pytest.raises(StatsError, match="at least 2 runs in each group"):
        compare(adam, group("sgd", [0.9]))


def test_labels_name_what_differs():
    assert difference_labels(TrainConfig(optimizer="adam"), TrainConfig(optimizer="rmsprop", seed=3)) == \
        ("adam", "rmsprop")
    a, b = PRESETS["ref-relu-adam"].config, PRESETS["ref-sigmoid-rmsprop"].config
    assert difference_labels(a, b) == ("hidden_layers 128,64, activation relu, optimizer adam",
                                       "hidden_layers 256,128,64, activation sigmoid, optimizer rmsprop")


def test_seeds_follow_the_configs_own():
    assert seeds_for(TrainConfig(seed=4), 3) == [4, 5, 6]
    with pytest.raises(StatsError):
        seeds_for(TrainConfig(), 0)


def test_repeat_trains_seeds_and_its_statistics_equal_numpys_on_the_stored_runs(tmp_path):
    runs = tmp_path / "runs"
    flags = ["--hidden", "32", "--epochs", "2", "--batch-size", "256", "--weight-decay", "0"]
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["--runs-dir", str(runs), "--data-dir", str(SUBSET), "repeat", "--preset", "ref-relu-adam",
                           "--against", "ref-sigmoid-rmsprop", "--seeds", "3", *flags], out=out, err=err)
    assert code == 0, err.getvalue()
    store = RunStore(runs)
    infos = store.list_runs()
    assert len(infos) == 6 and all(i.completed for i in infos)
    groups = group_runs(infos)
    assert [g.n for g in groups] == [3, 3]
    adam = group_of(infos, PRESETS["ref-relu-adam"].config.replace(hidden_layers=(32,), epochs=2, batch_size=256,
                                                                    weight_decay=0.0))
    rms = next(g for g in groups if g is not adam and g.config.optimizer == "rmsprop")
    assert adam is not None and adam.config.optimizer == "adam" and adam.seeds == (0, 1, 2)
    for group in (adam, rms):  # the group's numbers are numpy's on the runs' own metrics.json
        members = [store.get(r) for r in group.run_ids]
        assert len({m.config.replace(seed=0) for m in members}) == 1
        for metric, key in (("val", "best_val_accuracy"), ("test", "test_accuracy")):
            x = np.array([m.metrics[key] for m in members])
            s = group.summary(metric)
            assert s.mean == pytest.approx(x.mean()) and s.sd == pytest.approx(x.std(ddof=1))
            assert (s.ci_low, s.ci_high) == pytest.approx(scipy_ci(x))
    c = compare(adam, rms)
    ref = sps.ttest_ind(adam.val, rms.val, equal_var=False)
    assert (c.ci_low, c.ci_high) == pytest.approx(tuple(ref.confidence_interval(0.95)))
    text = out.getvalue()
    assert f"  best val accuracy {adam.summary('val').text()}" in text
    assert f"  test accuracy     {rms.summary('test').text()}" in text
    assert c.sentence() in text and compare(adam, rms, "test").sentence() in text
    assert text.count("seed ") == 6


def test_reproduce_rows_with_seeds_are_the_mean_and_sd_of_the_stored_runs(queue, store):
    [row] = cli.reference_rows(queue, ["ref-relu-adam"], io.StringIO(), seeds=2)
    runs = [r for r in store.list_runs() if r.config.replace(seed=0) == PRESETS["ref-relu-adam"].config]
    val = [r.metrics["best_val_accuracy"] for r in runs]
    assert len(runs) == 2 and sorted(r.config.seed for r in runs) == [0, 1]
    assert row["val"] == pytest.approx(np.mean(val)) and row["val_sd"] == pytest.approx(np.std(val, ddof=1))
    assert row["reported_val"] == 0.9495 and row["status"] == "completed"
