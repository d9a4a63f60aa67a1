"""Training speed on synthetic KMNIST-shaped data: our loop against model.fit (tuned and plain), the bound, Stop."""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from kmnist_core.config import TINY, TrainConfig, train_flops_per_epoch
from kmnist_core.data import Dataset, split_validation

from .context import Context
from .stats import median, series, steady

REFERENCE = TrainConfig((128, 64), "relu", "adam")  # the model the training targets are about
SAME_ORDER_TOLERANCE = 1e-3  # relative: float rounding (x/255 in numpy vs Rescaling in the model) over one epoch
# kmnist_core/loop.py's measured figure for this loop: 60,000 synthetic samples, batch 128.
LOOP_DOC_EPOCH_S = 0.57


def synthetic_dataset(n_train: int, n_test: int = 1_000, seed: int = 0) -> Dataset:
    """KMNIST-shaped uint8 data that a model can learn: noisy copies of 10 smooth random glyphs.

    Holds enough samples that the default 10 % validation hold-out leaves about n_train to train on.
    """
    rng = np.random.default_rng(seed)
    per_class = int(round(n_train / 10 / 0.9))
    coarse = rng.random((10, 7, 7)).astype(np.float32)
    protos = np.kron(coarse, np.ones((4, 4), np.float32)) * 255  # (10, 28, 28) blocky glyphs

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.permutation(np.repeat(np.arange(10, dtype=np.uint8), n))
        x = 0.35 * protos[y] + rng.normal(90, 70, (len(y), 28, 28)).astype(np.float32)
        return np.clip(x, 0, 255).astype(np.uint8), y

    x_train, y_train = draw(per_class)
    x_test, y_test = draw(max(1, n_test // 10))
    return Dataset(x_train, y_train, x_test, y_test, source=f"synthetic ({len(y_train):,} samples)")


def matmul_gflops(n: int = 2048, repeats: int = 7) -> float:
    """This machine's float32 matrix-multiply speed, GFLOP/s (median of repeats, all cores)."""
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), np.float32), rng.random((n, n), np.float32)
    a @ b  # warm up the BLAS threads
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times) / 1e9


# --- the setups compared ---

Trainer = Callable[[Dataset, TrainConfig], tuple[list[float], float]]


def _ignore_progress(progress: dict[str, Any]) -> None:
    """The progress sink of every timed setup: each gets the product's callback, reporting to nowhere."""


def ours(data: Dataset, config: TrainConfig) -> tuple[list[float], float]:
    """The product's trainer, `kmnist_core.train.train` (its EpochLoop); returns (s per epoch, loss after the first)."""
    from kmnist_core.train import train

    result = train(config, data, on_progress=_ignore_progress)
    return [h["epoch_seconds"] for h in result.history], result.history[0]["loss"]


def fit_tuned(data: Dataset, config: TrainConfig, steps_per_execution: int, jit: bool) -> tuple[list[float], float]:
    """`model.fit` at its best: the same build_model network on uint8 input, the same optimizer, loss and
    progress callback as ours, validation every epoch in batches of loop.VAL_BATCH, and
    compile(steps_per_execution=N, jit_compile=jit).

    Returns:
        (seconds of each epoch, validation included, as our history records them; loss after the first).
    """
    import keras

    from kmnist_core.loop import VAL_BATCH
    from kmnist_core.model import build_model, make_loss, make_optimizer
    from kmnist_core.train import progress_callback_class, targets

    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # its retracing notice: each variant is a new model
    keras.utils.set_random_seed(config.seed)
    train_idx, val_idx = split_validation(data.y_train, config.val_fraction, config.seed)
    x_tr, y_tr = data.x_train[train_idx], targets(config, data.y_train[train_idx])  # (N, 28, 28) uint8
    x_val, y_val = data.x_train[val_idx], targets(config, data.y_train[val_idx])
    steps = -(-len(x_tr) // config.batch_size)
    model = build_model(config)
    model.compile(optimizer=make_optimizer(config, steps), loss=make_loss(config), metrics=["accuracy"],
                  steps_per_execution=steps_per_execution, jit_compile=jit)
    callback = progress_callback_class()(config.epochs, steps, _ignore_progress, None)
    model.fit(x_tr, y_tr, batch_size=config.batch_size, epochs=config.epochs, validation_data=(x_val, y_val),
              validation_batch_size=VAL_BATCH, callbacks=[callback], verbose=0)
    return [h["epoch_seconds"] for h in callback.history], callback.history[0]["loss"]


def _plain_model(config: TrainConfig) -> Any:
    """The plain baseline: the same MLP for float32 input, nothing in it but Dense layers."""
    import keras

    layers = [keras.Input((28, 28)), keras.layers.Flatten()]
    layers += [keras.layers.Dense(u, activation=config.activation) for u in config.hidden_layers]
    layers.append(keras.layers.Dense(10, activation="softmax"))
    return keras.Sequential(layers)


def _epoch_timer() -> Any:
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.seconds, self.losses = [], []

        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.t)
            self.losses.append(float(logs["loss"]))

    return EpochTimer()


def plain_fit(data: Dataset, config: TrainConfig) -> tuple[list[float], float]:
    """Plain `model.fit` as the Keras docs show it: float32 arrays, default compile.

    It gets no validation data (fit's per-epoch evaluate() costs it ~1-2 s here), while our epochs
    include their validation: the comparison leans towards the baseline.

    Returns:
        (seconds of each epoch, training loss after the first epoch).
    """
    import keras

    keras.utils.set_random_seed(config.seed)
    train_idx, _ = split_validation(data.y_train, config.val_fraction, config.seed)
    x_tr = data.x_train[train_idx].astype(np.float32) / 255
    model = _plain_model(config)
    model.compile(optimizer=keras.optimizers.Adam(), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    timer = _epoch_timer()
    model.fit(x_tr, data.y_train[train_idx], batch_size=config.batch_size, epochs=config.epochs,
              callbacks=[timer], verbose=0)
    return timer.seconds, timer.losses[0]


def plain_fit_in_order(data: Dataset, config: TrainConfig) -> float:
    """One epoch of plain fit visiting the samples in the very order the product's first epoch does.

    Returns:
        The training loss after that epoch: the product's must match it up to float rounding.
    """
    import keras

    from kmnist_core.loop import epoch_orders

    keras.utils.set_random_seed(config.seed)
    train_idx, _ = split_validation(data.y_train, config.val_fraction, config.seed)
    order = train_idx[next(epoch_orders(config.seed, len(train_idx)))]
    model = _plain_model(config)
    model.compile(optimizer=keras.optimizers.Adam(), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    timer = _epoch_timer()
    model.fit(data.x_train[order].astype(np.float32) / 255, data.y_train[order], batch_size=config.batch_size,
              epochs=1, shuffle=False, callbacks=[timer], verbose=0)
    return timer.losses[0]


def variant_name(steps_per_execution: int, jit: bool) -> str:
    """'spe16_jit': the key part of one tuned fit variant."""
    return f"spe{steps_per_execution}_{'jit' if jit else 'nojit'}"


# --- sections ---


def _compare(ctx: Context, data: Dataset, batch_size: int, setups: dict[str, tuple[Trainer, int]],
             gflops: list[float]) -> dict[str, list[tuple[list[float], float]]]:
    """Every setup once per repeat, the order reversed on odd repeats; a matmul measurement after each repeat."""
    runs: dict[str, list[tuple[list[float], float]]] = {name: [] for name in setups}
    names = list(setups)
    for rep in range(ctx.sizes.repeats):
        config = REFERENCE.replace(batch_size=batch_size, seed=rep)
        for name in names if rep % 2 == 0 else names[::-1]:
            trainer, epochs = setups[name]
            seconds, loss = trainer(data, config.replace(epochs=epochs))
            runs[name].append((seconds, loss))
            ctx.log(f"  b{batch_size} {name:18s} seed {rep}: epochs {series(seconds)} s, loss after epoch 1 {loss:.4f}")
        gflops.append(matmul_gflops())
    return runs


def _figures(runs: list[tuple[list[float], float]]) -> tuple[float, float]:
    """(median steady epoch, median first epoch) over repeats."""
    return median([steady(s) for s, _ in runs]), median([s[0] for s, _ in runs])


def _against_plain(ctx: Context, data: Dataset, batch_size: int, runs: dict) -> dict[str, float]:
    """Ours against plain fit at one batch size: speed, a whole run, and the loss after one epoch."""
    from kmnist_core.loop import use_xla

    n_train = len(split_validation(data.y_train, REFERENCE.val_fraction, 0)[0])
    epochs = ctx.sizes.epochs
    ours_epoch, ours_first = _figures(runs["ours"])
    base_epoch, base_first = _figures(runs["plain fit"])
    ours_loss, base_loss = median([loss for _, loss in runs["ours"]]), median([loss for _, loss in runs["plain fit"]])
    base_spread = max(loss for _, loss in runs["plain fit"]) - min(loss for _, loss in runs["plain fit"])
    same_order = plain_fit_in_order(data, REFERENCE.replace(batch_size=batch_size, seed=0))
    ours_seed0 = runs["ours"][0][1]
    ctx.log(f"  b{batch_size} plain fit, one epoch in ours' order (seed 0): loss {same_order:.5f}"
            f" (ours {ours_seed0:.5f})")
    b = f"train_b{batch_size}"
    return {
        f"{b}_epoch_s": ours_epoch,
        f"{b}_first_epoch_s": ours_first,
        f"{b}_plain_epoch_s": base_epoch,
        f"{b}_plain_first_epoch_s": base_first,
        f"{b}_speedup": base_epoch / ours_epoch,
        # a whole run of `epochs` epochs, first epoch (tracing, compiling) included
        f"{b}_run_speedup": (base_first + (epochs - 1) * base_epoch) / (ours_first + (epochs - 1) * ours_epoch),
        f"{b}_xla": float(use_xla(-(-n_train // batch_size) * epochs, augment=False)),
        f"{b}_loss1": ours_loss,
        f"{b}_plain_loss1": base_loss,
        # seed-to-seed spread of the baseline, and never less than 5 % of the loss
        f"{b}_loss_tolerance": max(2 * base_spread, 0.05 * base_loss),
        # the same samples in the same order from the same initial weights: float rounding apart, equal
        f"{b}_same_order_loss_rel_diff": abs(ours_seed0 - same_order) / same_order,
    }


def section_training(ctx: Context) -> None:
    """Batch 128: ours, model.fit tuned (4 variants) and plain fit; batch 32: ours and plain fit; the matmul bound."""
    sizes = ctx.sizes
    data = ctx.synthetic(sizes.n_train)
    n_train = len(split_validation(data.y_train, REFERENCE.val_fraction, 0)[0])
    label = f"synthetic ({n_train:,} samples)"
    ctx.log(f"training throughput ({label}, KMNIST-shaped uint8, [128, 64] relu Adam)")
    ctx.record({"train_n": n_train, "train_epochs": sizes.epochs}, label)
    gflops = [matmul_gflops()]

    setups: dict[str, tuple[Trainer, int]] = {"ours": (ours, sizes.epochs)}
    for spe, jit in sizes.fit_variants:  # model.fit with Keras' own speed settings
        def tuned(d: Dataset, c: TrainConfig, spe: int = spe, jit: bool = jit) -> tuple[list[float], float]:
            return fit_tuned(d, c, spe, jit)

        setups[f"fit {variant_name(spe, jit)}"] = (tuned, sizes.fit_epochs)
    setups["plain fit"] = (plain_fit, sizes.plain_epochs)
    runs = _compare(ctx, data, 128, setups, gflops)
    figures = _against_plain(ctx, data, 128, runs)
    names = [variant_name(spe, jit) for spe, jit in sizes.fit_variants]
    variants = {name: _figures(runs[f"fit {name}"]) for name in names}
    for name, (epoch, _) in variants.items():
        figures[f"train_b128_fit_{name}_epoch_s"] = epoch
    best = min(variants, key=lambda n: variants[n][0])
    tuned_epoch, tuned_first = variants[best]
    ours_epoch, ours_first = figures["train_b128_epoch_s"], figures["train_b128_first_epoch_s"]
    epochs = sizes.epochs
    figures.update({
        "train_b128_fit_tuned_epoch_s": tuned_epoch,
        "train_b128_fit_tuned_first_epoch_s": tuned_first,
        "train_b128_fit_tuned_variant": best,
        "train_b128_fit_tuned_speedup": tuned_epoch / ours_epoch,
        "train_b128_fit_tuned_run_speedup": (tuned_first + (epochs - 1) * tuned_epoch)
                                            / (ours_first + (epochs - 1) * ours_epoch),
    })
    ctx.record(figures, label)

    runs32 = _compare(ctx, data, 32, {"ours": (ours, sizes.epochs), "plain fit": (plain_fit, sizes.plain_epochs)},
                      gflops)
    ctx.record(_against_plain(ctx, data, 32, runs32), label)

    # The bound is a best case: the best matmul speed seen in this run (the CPU is shared).
    flops = train_flops_per_epoch(REFERENCE, n_train)
    bound = flops / (max(gflops) * 1e9)
    ctx.record({"matmul_gflops": max(gflops), "matmul_gflops_median": median(gflops), "matmul_samples": len(gflops),
                "train_flops_per_epoch": flops, "train_bound_epoch_s": bound,
                "train_b128_bound_ratio": figures["train_b128_epoch_s"] / bound}, label)


def section_stop(ctx: Context) -> None:
    """How soon Stop (set from another thread, as the worker's listener does) ends a run in its second epoch,
    and the longest gap between progress records within that epoch."""
    from kmnist_core.train import train

    data = ctx.synthetic(ctx.sizes.n_train)
    ctx.log("Stop latency (synthetic data)")
    stop, records, when = threading.Event(), [], {}

    def on_progress(p: dict[str, Any]) -> None:
        records.append((time.perf_counter(), p))
        if p["epoch"] == 2 and p["record"] is None and "timer" not in when:
            when["timer"] = threading.Timer(0.15, lambda: (when.setdefault("set", time.perf_counter()), stop.set()))
            when["timer"].start()

    result = train(REFERENCE.replace(epochs=50), data, on_progress, stop)
    if "set" not in when:
        raise RuntimeError(f"the run ended ({result.status}) before Stop was pressed in its second epoch")
    latency = time.perf_counter() - when["set"]
    inner = [t for t, p in records if p["epoch"] == 2 and p["record"] is None]
    gap = max(np.diff(inner), default=0.0)
    ctx.log(f"  Stop in epoch 2 -> train() returned {result.status} after {latency * 1e3:.0f} ms;"
            f" progress within the epoch every <= {gap * 1e3:.0f} ms")
    n = len(split_validation(data.y_train, REFERENCE.val_fraction, 0)[0])
    ctx.record({"stop_latency_s": latency, "progress_max_gap_s": float(gap)}, f"synthetic ({n:,} samples)")


def section_short(ctx: Context) -> None:
    """What users do most: the reference model for 5 epochs on the data folder; wall time per run."""
    from kmnist_core.train import train

    data, label = ctx.folder(), ctx.describe_folder()
    ctx.log(f"short runs on {label}")
    config = REFERENCE.replace(epochs=5)
    train(TINY, data)  # untimed: TensorFlow's import and first traces, which a warm worker has behind it
    walls, laters = [], []
    for rep in range(ctx.sizes.short_runs):
        t = time.perf_counter()
        result = train(config.replace(seed=rep), data)
        walls.append(time.perf_counter() - t)
        seconds = [h["epoch_seconds"] for h in result.history]
        laters.append(steady(seconds))
        ctx.log(f"  short run seed {rep}: wall {walls[-1]:.2f} s, epochs {series(seconds)} s")
    later = median(laters)
    ctx.record({"short_run_s": median(walls), "short_run_epoch_s": later,
                "short_run_fixed_s": median(walls) - config.epochs * later,
                "short_run_n": len(split_validation(data.y_train, REFERENCE.val_fraction, 0)[0])}, label)
