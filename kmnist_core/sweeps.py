"""Sweeps: Optuna studies whose trials are ordinary jobs; the space as data, storage local or PostgreSQL.

A sweep is an Optuna study. Every process taking part (the one that ran `sweep run`, and any
`sweep worker` on this or another machine) opens the same storage, loads the study and asks it
for trials; the database is the only thing they share. Each trial is one run submitted to the
process' JobQueue, so it is trained by a worker process, stored in the run store and listed in
Compare like any other run. No TensorFlow here: this module runs in the server process.

Storage: `sqlite:///<runs folder>/sweeps.db` by default, or `postgresql+psycopg://...` for several
machines. Both are Optuna RDB storages, the only kind that implements Optuna's heartbeat: a trial
whose process died (even by SIGKILL) is marked failed after `grace` seconds without a heartbeat
and retried once by a live process.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import json
import logging
import math
import os
import socket
import threading
import time
import tomllib
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
import sqlalchemy.exc
from optuna.trial import FrozenTrial, TrialState

from .config import TrainConfig, train_command  # noqa: F401 - train_command: part of this module's API
from .errors import ConfigError, KmnistError, StoreError
from .records import Status
from .store import RunStore, check_run_id, write_atomic

if TYPE_CHECKING:
    from .data import Dataset
    from .jobs import JobQueue, JobSnapshot

log = logging.getLogger(__name__)

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("none", "median", "hyperband")
DEFAULT_TRIALS = 12  # `sweep run` with neither --trials nor --minutes
STORAGE_FILE = "sweeps.db"  # the local default storage, inside the runs folder
SWEEP_FILE = "sweep.json"  # beside a run's config.json: the sweeps and trials it answered
ENV_HEARTBEAT = "KMNIST_SWEEP_HEARTBEAT"  # seconds between heartbeats; every process of a sweep should agree
DEFAULT_HEARTBEAT_S = 10
GRACE_FACTOR = 3  # a trial is stale after GRACE_FACTOR heartbeats without one: 30 s by default
SQLITE_TIMEOUT_S = 60  # how long a SQLite writer waits for another's lock before "database is locked"
PG_CONNECT_TIMEOUT_S = 10
POLL_S = 0.2  # how often a trial looks at its job's progress
GRID_POINTS = 3  # points of a range under the grid sampler, unless the range says "grid"
MAX_GRID = 100_000  # points of a grid (the budget may run only some of them)
MAX_CHOICES = 10_000  # hidden-layer combinations the grid sampler may enumerate

# Study user attributes: what every process needs to take part in a sweep.
ATTR_SETTINGS = "kmnist.settings"
ATTR_BUDGET = "kmnist.budget"
ATTR_DATA = "kmnist.data"
ATTR_CREATED = "kmnist.created"

# The reference study's four axes plus the learning rate: `sweep run --trials 12` with no file.
DEFAULT_SPACE: dict[str, Any] = {
    "hidden_layers": {"layers": {"low": 1, "high": 3}, "units": [32, 64, 128, 256, 512]},
    "activation": ["relu", "sigmoid", "tanh", "elu", "gelu"],
    "optimizer": ["adam", "sgd", "rmsprop", "nesterov"],
    "weight_decay": {"low": 1e-6, "high": 1e-2, "log": True},
    "learning_rate": {"low": 1e-4, "high": 3e-2, "log": True},
}

HOST = socket.gethostname()
STATE_WORDS = {TrialState.COMPLETE: "completed", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed",
               TrialState.RUNNING: "running", TrialState.WAITING: "waiting"}
IMPORTANCE_EVALUATOR = "PED-ANOVA (optuna.importance.PedAnovaImportanceEvaluator, Optuna's default)"


class SweepError(KmnistError):
    """A sweep cannot start or go on; one line."""


class SpaceError(SweepError, ValueError):
    """A search space is invalid; the message names the field and the problem."""


class SweepStorageError(SweepError):
    """The study's storage cannot be reached or used; the message names the URL (no password) and what failed."""


class TrialFailed(Exception):
    """A trial's run did not complete (failed, interrupted, cancelled elsewhere); Optuna records FAIL."""


class SweepStopped(Exception):
    """The sweep was stopped while this trial ran; its job was cancelled."""


class TrialTakenOver(Exception):
    """Another process failed this trial as stale (late heartbeats) while it ran here; its retry takes over."""


# --- the search space, as data ---------------------------------------------------------------


def _field_kinds() -> dict[str, str]:
    """TrainConfig field -> layers | bool | str | int | float, from the dataclass itself."""
    kinds = {}
    for f in dataclasses.fields(TrainConfig):
        t = str(f.type)
        if f.name == "hidden_layers":
            kinds[f.name] = "layers"
        elif t == "bool":
            kinds[f.name] = "bool"
        elif t.startswith("str"):
            kinds[f.name] = "str"
        elif "float" in t:
            kinds[f.name] = "float"
        else:
            kinds[f.name] = "int"
    return kinds


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _check(name: str, value: Any, what: str) -> None:
    """Raise SpaceError if TrainConfig rejects this value of this field."""
    try:
        TrainConfig().replace(**{name: value})
    except ConfigError as e:
        raise SpaceError(f"space: {name} {what}: {e}") from None
    except TypeError as e:  # e.g. a table where a number belongs
        raise SpaceError(f"space: {name} {what}: {value!r} is not a valid value ({e})") from None


def _layers_value(value: Any) -> tuple[int, ...] | Any:
    """A hidden-layers value as written in a space (128, [128, 64] or "128,64") -> a tuple TrainConfig accepts."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,)
    if isinstance(value, list):
        return tuple(value)
    return value


def _layers_text(layers: tuple[int, ...]) -> str:
    return ",".join(str(u) for u in layers)


Check = Callable[[Any, str], None]  # check(value, "low" | "high" | "choice" | "value"): raise SpaceError if bad


def _normalize_choices(name: str, choices: Any, check: Check, layers: bool = False) -> dict[str, Any]:
    if not isinstance(choices, list):
        raise SpaceError(f"space: {name}: choices must be a list; got {choices!r}")
    if not choices:
        raise SpaceError(f"space: {name}: choices is empty; give at least one value")
    out = []
    for value in choices:
        if layers:  # whole layer lists, kept as "128,64" strings: Optuna's categorical values are scalars
            value = _layers_value(value)
            check(value, "choice")
            out.append(_layers_text(TrainConfig(hidden_layers=value).hidden_layers))
            continue
        if isinstance(value, (list, dict)):
            raise SpaceError(f"space: {name}: each choice must be a single value; got {value!r}")
        check(value, "choice")
        out.append(value)
    return {"kind": "choices", "choices": out}


RANGE_KEYS = {"low", "high", "log", "step", "grid"}


def _normalize_range(name: str, kind: str, spec: dict[str, Any], check: Check) -> dict[str, Any]:
    unknown = sorted(set(spec) - RANGE_KEYS)
    if unknown:
        raise SpaceError(f"space: {name}: unknown key {unknown[0]!r}; a range has {', '.join(sorted(RANGE_KEYS))}")
    if "low" not in spec or "high" not in spec:
        raise SpaceError(f"space: {name}: a range needs both low and high; got {spec!r}")
    if kind not in ("int", "float"):
        raise SpaceError(f"space: {name}: a range needs a numeric field; give choices instead")
    low, high, log = spec["low"], spec["high"], spec.get("log", False)
    step, grid = spec.get("step"), spec.get("grid")
    for key, value in (("low", low), ("high", high)):
        if not _is_number(value):
            raise SpaceError(f"space: {name}: {key} must be a number; got {value!r}")
        if kind == "int" and not float(value).is_integer():
            raise SpaceError(f"space: {name}: {key} must be a whole number for an integer field; got {value!r}")
    if not isinstance(log, bool):
        raise SpaceError(f"space: {name}: log must be true or false; got {log!r}")
    if low > high:
        raise SpaceError(f"space: {name}: the range is inverted: low {low!r} is above high {high!r}")
    if log and low <= 0:
        raise SpaceError(f"space: {name}: a log range needs low > 0; got low {low!r}")
    if step is not None:
        if log:
            raise SpaceError(f"space: {name}: a log range cannot have a step")
        if not _is_number(step) or step <= 0 or (kind == "int" and not float(step).is_integer()):
            raise SpaceError(f"space: {name}: step must be a positive {'whole ' if kind == 'int' else ''}number; "
                             f"got {step!r}")
    if grid is not None and (not isinstance(grid, int) or isinstance(grid, bool) or not 1 <= grid <= 1000):
        raise SpaceError(f"space: {name}: grid must be a whole number of points from 1 to 1000; got {grid!r}")
    if kind == "int":
        low, high = int(low), int(high)
        step = int(step) if step is not None else None
    else:
        low, high = float(low), float(high)
    check(low, "low")
    check(high, "high")
    out: dict[str, Any] = {"kind": kind, "low": low, "high": high, "log": log}
    if step is not None:
        out["step"] = step
    if grid is not None:
        out["grid"] = grid
    return out


def _normalize_scalar(name: str, kind: str, spec: Any, check: Check) -> dict[str, Any]:
    """One field's spec (not hidden_layers): a value, a list of choices, {choices}, {value} or a range."""
    if isinstance(spec, list):
        return _normalize_choices(name, spec, check)
    if isinstance(spec, dict):
        if set(spec) == {"choices"}:
            return _normalize_choices(name, spec["choices"], check)
        if set(spec) == {"value"}:
            return _normalize_scalar(name, kind, spec["value"], check)
        if "choices" in spec or "value" in spec:
            raise SpaceError(f"space: {name}: choices and value stand alone; got keys {sorted(spec)}")
        return _normalize_range(name, kind, spec, check)
    check(spec, "value")
    return {"kind": "fixed", "value": spec}


def _whole(name: str, value: Any, what: str) -> int:
    if not (_is_number(value) and float(value).is_integer()):
        raise SpaceError(f"space: {name} {what}: must be a whole number; got {value!r}")
    return int(value)


def _normalize_layers(spec: Any) -> dict[str, Any]:
    """hidden_layers: a fixed value, choices of whole layer lists, or {layers: count spec, units: units spec}."""
    name = "hidden_layers"

    def check_layers(value: Any, what: str) -> None:
        _check(name, value, what)

    if isinstance(spec, dict) and ("layers" in spec or "units" in spec):
        if set(spec) != {"layers", "units"}:
            raise SpaceError(f"space: hidden_layers: give both layers (how many) and units (per layer), "
                             f"nothing else; got keys {sorted(spec)}")

        def check_units(value: Any, what: str) -> None:
            _check(name, (_whole(f"{name} units", value, what),), f"units {what}")

        units = _normalize_scalar(f"{name} units", "int", spec["units"], check_units)
        if units["kind"] == "choices":
            units["choices"] = [int(u) for u in units["choices"]]
        smallest = min(_spec_values(units))

        def check_count(value: Any, what: str) -> None:
            count = _whole(f"{name} layers", value, what)
            if count < 1:
                raise SpaceError(f"space: hidden_layers layers {what}: must be at least 1; got {value!r}")
            _check(name, (int(smallest),) * count, f"layers {what}")

        layers = _normalize_scalar(f"{name} layers", "int", spec["layers"], check_count)
        if layers["kind"] == "choices":
            layers["choices"] = [int(n) for n in layers["choices"]]
        return {"kind": "layers", "layers": layers, "units": units}
    if isinstance(spec, list):
        return _normalize_choices(name, spec, check_layers, layers=True)
    if isinstance(spec, dict):
        if set(spec) == {"choices"}:
            return _normalize_choices(name, spec["choices"], check_layers, layers=True)
        if set(spec) != {"value"}:
            raise SpaceError(f"space: hidden_layers: expected a value, a list of choices, or layers and units; "
                             f"got keys {sorted(spec)}")
        spec = spec["value"]
    value = _layers_value(spec)
    _check(name, value, "value")
    return {"kind": "fixed", "value": list(TrainConfig(hidden_layers=value).hidden_layers)}


def validate_space(space: Any) -> dict[str, dict[str, Any]]:
    """Check a search space and return it normalized, before anything starts.

    A space maps TrainConfig field names to one of:
        a plain value                      fixed, not searched (e.g. "epochs": 2)
        a list, or {"choices": [...]}      categorical
        {"low": a, "high": b}              a range; int fields give int ranges; optional
                                           "log": true, "step": s, "grid": points (grid sampler)
    hidden_layers also takes {"layers": <count spec>, "units": <units spec>}: the number of layers,
    then the units of each layer from a list or a (log) range; and whole layer lists as choices
    ([[128, 64], [256, 128, 64]] or ["128,64", ...]).

    Args:
        space: the parsed TOML/JSON dict.

    Returns:
        {field: {"kind": fixed|choices|int|float|layers, ...}}, JSON-ready.

    Raises:
        SpaceError: one line naming the field and the problem: empty choices, an inverted or
            non-positive log range, an unknown field, a value TrainConfig does not allow.
    """
    if not isinstance(space, dict):
        raise SpaceError(f"space: expected a table of fields; got {type(space).__name__}")
    kinds = _field_kinds()
    out: dict[str, dict[str, Any]] = {}
    for name, spec in space.items():
        if name not in kinds:
            raise SpaceError(f"space: unknown field {name!r}; allowed fields: {', '.join(sorted(kinds))}")
        if kinds[name] == "layers":
            out[name] = _normalize_layers(spec)
        else:
            out[name] = _normalize_scalar(name, kinds[name], spec,
                                          lambda v, w, n=name: _check(n, v, w))
    if not any(spec["kind"] != "fixed" and not (spec["kind"] == "choices" and len(spec["choices"]) == 1)
               for spec in out.values()):
        raise SpaceError("space: nothing to search: give at least one field choices or a range")
    fixed = {name: _fixed_value(name, spec) for name, spec in out.items() if spec["kind"] == "fixed"}
    try:
        TrainConfig(**fixed)
    except ConfigError as e:
        raise SpaceError(f"space: {e}") from None
    return out


def _fixed_value(name: str, spec: dict[str, Any]) -> Any:
    return tuple(spec["value"]) if name == "hidden_layers" else spec["value"]


def load_space(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Read and validate a space file: TOML (.toml) or JSON (anything else).

    Raises:
        SpaceError: the file cannot be read or parsed (one line naming it), or the space is invalid.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise SpaceError(f"space file {path}: cannot be read ({e.strerror or e})") from None
    return parse_space(text, f"space file {path}", toml=path.suffix.lower() == ".toml")


def parse_space(text: str, source: str = "space", toml: bool | None = None) -> dict[str, dict[str, Any]]:
    """Parse and validate a space given as TOML or JSON text (a pasted or uploaded file).

    Args:
        text: the file's text.
        source: what to call it in messages.
        toml: True for TOML, False for JSON, None to tell by the first character ({ or [ is JSON).

    Raises:
        SpaceError: one line naming `source` and what is wrong.
    """
    if toml is None:
        toml = not text.lstrip().startswith(("{", "["))
    try:
        data = tomllib.loads(text) if toml else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise SpaceError(f"{source}: not valid {'TOML' if toml else 'JSON'} ({e})") from None
    return validate_space(data)


def space_of(layers: tuple[int, int], units: Sequence[int], activations: Sequence[str], optimizers: Sequence[str],
             weight_decay: tuple[float, float], learning_rate: tuple[float, float], epochs: int) -> dict[str, Any]:
    """The space the Sweep page's widgets describe, in the space-file structure (validate it with validate_space).

    A range whose ends are equal is that fixed value.
    """
    def log_range(low: float, high: float) -> Any:
        return low if low == high else {"low": low, "high": high, "log": True}

    return {
        "hidden_layers": {"layers": {"low": layers[0], "high": layers[1]}, "units": list(units)},
        "activation": list(activations), "optimizer": list(optimizers),
        "weight_decay": log_range(*weight_decay), "learning_rate": log_range(*learning_rate), "epochs": epochs,
    }


def _spec_values(spec: dict[str, Any], points: int | None = None) -> list[Any]:
    """Every value a spec can take under the grid sampler (ranges give `grid` points, log-spaced if log)."""
    kind = spec["kind"]
    if kind == "fixed":
        return [spec["value"]]
    if kind == "choices":
        return list(spec["choices"])
    low, high = spec["low"], spec["high"]
    if spec.get("step") is not None:
        count = int(math.floor((high - low) / spec["step"] + 1e-9)) + 1
        if count > MAX_GRID:
            raise SpaceError(f"space: a range from {low} to {high} by {spec['step']} has over {MAX_GRID} points")
        values = [low + i * spec["step"] for i in range(count)]
    else:
        n = spec.get("grid", points or GRID_POINTS)
        values = list(np.geomspace(low, high, n) if spec["log"] else np.linspace(low, high, n))
    if kind == "int":
        return sorted({int(round(v)) for v in values})
    return sorted({float(f"{v:.6g}") for v in values})


def _layer_combinations(spec: dict[str, Any]) -> list[str]:
    counts, units = _spec_values(spec["layers"]), _spec_values(spec["units"])
    total = sum(len(units) ** n for n in counts)
    if total > MAX_CHOICES:
        raise SpaceError(f"space: hidden_layers: the grid sampler would need {total} layer combinations "
                         f"(at most {MAX_CHOICES}); give fewer units or layers")
    return [_layers_text(combo) for n in counts for combo in itertools.product(units, repeat=n)]


def grid_search_space(space: dict[str, dict[str, Any]]) -> dict[str, list[Any]]:
    """The grid sampler's {param: values}; hidden layers (count x units) become one categorical of combinations.

    Raises:
        SpaceError: the grid would have more than MAX_GRID points.
    """
    grid: dict[str, list[Any]] = {}
    for name, spec in space.items():
        if spec["kind"] == "fixed":
            continue
        grid[name] = _layer_combinations(spec) if spec["kind"] == "layers" else _spec_values(spec)
    size = math.prod(len(v) for v in grid.values())
    if size > MAX_GRID:
        raise SpaceError(f"space: the grid has {size} points (at most {MAX_GRID}); give fewer choices or grid points")
    return grid


def max_epochs(space: dict[str, dict[str, Any]]) -> int:
    """The most epochs any trial of this space trains (Hyperband's max resource)."""
    spec = space.get("epochs")
    if spec is None:
        return TrainConfig().epochs
    return int(max(_spec_values(spec, 2)))


def _pick_value(pick: Callable[[str, dict[str, Any]], Any], name: str, spec: dict[str, Any]) -> Any:
    return spec["value"] if spec["kind"] == "fixed" else pick(name, spec)


def _build_config(space: dict[str, dict[str, Any]], pick: Callable[[str, dict[str, Any]], Any],
                  grid: bool, base: TrainConfig | None = None) -> TrainConfig:
    """The config of one trial: each searched field's value comes from pick(param name, spec)."""
    changes: dict[str, Any] = {}
    for name, spec in space.items():
        if name == "hidden_layers" and spec["kind"] == "layers":
            if grid:
                changes[name] = pick(name, {"kind": "choices", "choices": _layer_combinations(spec)})
                continue
            count = _pick_value(pick, "n_layers", spec["layers"])
            changes[name] = tuple(int(_pick_value(pick, f"units_{i + 1}", spec["units"])) for i in range(int(count)))
        else:
            changes[name] = _pick_value(pick, name, spec)
    if isinstance(changes.get("hidden_layers"), (str, list)):
        changes["hidden_layers"] = tuple(changes["hidden_layers"]) if isinstance(changes["hidden_layers"], list) \
            else changes["hidden_layers"]
    return (base or TrainConfig()).replace(**changes)


def suggest_config(trial: optuna.Trial, space: dict[str, dict[str, Any]], grid: bool = False) -> TrainConfig:
    """Ask the trial for a value of every searched field; returns the trial's TrainConfig.

    Params are named after the fields; hidden layers from layers x units are `n_layers` and
    `units_1`, `units_2`, ... (one categorical `hidden_layers` under the grid sampler).
    """
    def pick(name: str, spec: dict[str, Any]) -> Any:
        if spec["kind"] == "choices":
            return trial.suggest_categorical(name, spec["choices"])
        if spec["kind"] == "int":
            return trial.suggest_int(name, spec["low"], spec["high"], step=spec.get("step") or 1, log=spec["log"])
        return trial.suggest_float(name, spec["low"], spec["high"], step=spec.get("step"), log=spec["log"])

    return _build_config(space, pick, grid)


def config_from_params(space: dict[str, dict[str, Any]], params: dict[str, Any], grid: bool = False) -> TrainConfig:
    """The TrainConfig a trial with these params trained (the inverse of suggest_config)."""
    return _build_config(space, lambda name, spec: params[name], grid)


def describe_space(space: dict[str, dict[str, Any]]) -> list[str]:
    """One line per field of a normalized space, e.g. 'weight_decay: log range 1e-06 .. 0.01'."""
    def text(spec: dict[str, Any]) -> str:
        if spec["kind"] == "fixed":
            return f"{spec['value']}"
        if spec["kind"] == "choices":
            return "one of " + ", ".join(str(c) for c in spec["choices"])
        if spec["kind"] == "layers":
            return f"layers {text(spec['layers'])}; units per layer {text(spec['units'])}"
        return f"{'log ' if spec['log'] else ''}range {spec['low']:g} .. {spec['high']:g}" + (
            f" step {spec['step']:g}" if spec.get("step") else "")

    return [f"{name}: {text(spec)}" for name, spec in space.items()]


# --- storage ---------------------------------------------------------------------------------


def storage_url(url: str | None, runs_root: str | os.PathLike) -> str:
    """The storage URL to use: the given one, else SQLite in the runs folder; postgresql:// means psycopg 3."""
    if not url:
        return f"sqlite:///{Path(runs_root).absolute() / STORAGE_FILE}"
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def redact(url: str) -> str:
    """A storage URL without its password, for messages."""
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return url.split("@")[-1] if "@" in url else url


def _short(e: BaseException) -> str:
    """The first line of the underlying database error."""
    inner = e
    while (deeper := getattr(inner, "orig", None) or inner.__cause__) is not None and deeper is not inner:
        inner = deeper
    text = str(inner).strip().splitlines()[0] if str(inner).strip() else type(inner).__name__
    return text.removeprefix("connection failed: ")[:200]


STORAGE_ERRORS = (optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError)


def storage_cause(e: BaseException) -> BaseException | None:
    """The storage failure behind an exception, if any: itself, or one in its __cause__/__context__ chain.

    Optuna sometimes fails on its own while handling a storage error (optuna/study/_optimize.py,
    _run_trial: when both the tell and the read after it fail, `updated_state` is unbound and an
    UnboundLocalError escapes); the database being gone is still what happened.
    """
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, STORAGE_ERRORS):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def storage_error(url: str, e: BaseException, doing: str) -> SweepStorageError:
    """The one-line error of a storage failure: the URL without its password, and what failed."""
    return SweepStorageError(f"sweep storage {redact(url)}: {doing} failed: {_short(e)}")


def heartbeat_seconds(value: str | None = None) -> int:
    """Seconds between a running trial's heartbeats: $KMNIST_SWEEP_HEARTBEAT, default 10.

    Raises:
        SweepError: not a whole number from 1 to 3600.
    """
    text = os.environ.get(ENV_HEARTBEAT, "") if value is None else value
    if not text.strip():
        return DEFAULT_HEARTBEAT_S
    if not text.strip().isdigit() or not 1 <= int(text) <= 3600:
        raise SweepError(f"{ENV_HEARTBEAT} must be a whole number of seconds from 1 to 3600; got {text!r}")
    return int(text)


def open_storage(url: str | None, runs_root: str | os.PathLike, heartbeat: int | None = None
                 ) -> optuna.storages.RDBStorage:
    """Connect to a sweep storage, with the heartbeat on and one retry of a dead process' trial.

    Args:
        url: sqlite:///path or postgresql+psycopg://user:password@host:port/db; None for the local
            default, runs_root/sweeps.db (created on first use, no set-up).
        runs_root: the run store's folder.
        heartbeat: seconds between heartbeats (default heartbeat_seconds()); a trial with none for
            GRACE_FACTOR times that is failed and retried once (RetryHeartbeatStaleTrialCallback).

    Raises:
        SweepStorageError: one line naming the URL (without its password) and what failed.
    """
    url = storage_url(url, runs_root)
    interval = heartbeat or heartbeat_seconds()
    scheme = url.split(":", 1)[0]
    if scheme.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SweepStorageError(f"sweep storage {url}: cannot create its folder ({e.strerror or e})") from None
        # SQLite's writers take turns on one lock; a long busy timeout keeps parallel writers from
        # failing with "database is locked" (optuna#4002).
        engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
    elif scheme.startswith("postgresql"):
        # pool_pre_ping: a connection the server dropped (restart, network blip) is replaced, not used.
        engine_kwargs = {"pool_pre_ping": True, "connect_args": {"connect_timeout": PG_CONNECT_TIMEOUT_S}}
    else:
        raise SweepStorageError(f"sweep storage {redact(url)}: unsupported; use sqlite:///PATH or "
                                "postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url, engine_kwargs=engine_kwargs, heartbeat_interval=interval,
                grace_period=GRACE_FACTOR * interval,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1),
            )
    except STORAGE_ERRORS as e:
        raise storage_error(url, e, "connecting") from None
    except (ImportError, ValueError) as e:
        raise SweepStorageError(f"sweep storage {redact(url)}: cannot be opened ({e})") from None


def quiet_storage_thread_errors() -> None:
    """Make a storage failure in a background thread (Optuna's heartbeat) one log line, not a traceback.

    For a command-line process: the main thread then reports the failure once, as one line.
    """
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None and storage_cause(args.exc_value) is not None:
            log.debug("storage error in thread %s: %s", args.thread.name if args.thread else "?",
                      _short(args.exc_value))
            return
        previous(args)

    threading.excepthook = hook


# --- sweeps: settings in the study, create, join, list ----------------------------------------


@dataclass(frozen=True)
class SweepSettings:
    """What a sweep searches and how; stored in its study so every process runs the same sweep."""

    space: dict[str, dict[str, Any]] = field(default_factory=lambda: validate_space(DEFAULT_SPACE))
    sampler: str = "tpe"  # tpe | random | grid
    pruner: str = "median"  # none | median | hyperband
    startup_trials: int = 5  # trials before TPE models and before the median pruner acts
    warmup_epochs: int = 1  # the median pruner never prunes a trial in its first warmup_epochs epochs

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise SweepError(f"sampler must be one of {', '.join(SAMPLERS)}; got {self.sampler!r}")
        if self.pruner not in PRUNERS:
            raise SweepError(f"pruner must be one of {', '.join(PRUNERS)}; got {self.pruner!r}")
        if self.sampler == "grid":
            grid_search_space(self.space)  # raises SpaceError for a grid too big

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepSettings:
        return cls(**data)

    @property
    def grid_size(self) -> int | None:
        """How many points the grid sampler has; None for other samplers."""
        if self.sampler != "grid":
            return None
        return math.prod(len(v) for v in grid_search_space(self.space).values())


@dataclass(frozen=True)
class Budget:
    """When the whole study is done: `trials` finished (completed or pruned) trials, or a deadline."""

    trials: int | None = None
    deadline: float | None = None  # time.time() after which no trial starts

    @classmethod
    def make(cls, trials: int | None = None, minutes: float | None = None) -> Budget:
        """--trials N or --minutes M (default DEFAULT_TRIALS trials).

        Raises:
            SweepError: both given, or not positive.
        """
        if trials is not None and minutes is not None:
            raise SweepError("give either trials or minutes, not both")
        if trials is not None and trials < 1:
            raise SweepError(f"trials must be at least 1; got {trials}")
        if minutes is not None and not minutes > 0:
            raise SweepError(f"minutes must be above 0; got {minutes}")
        if minutes is not None:
            return cls(deadline=time.time() + minutes * 60)
        return cls(trials=trials or DEFAULT_TRIALS)


def make_sampler(settings: SweepSettings, seed: int | None = None) -> optuna.samplers.BaseSampler:
    """This process' sampler for the sweep; give a seed only to one process (others would repeat its draws)."""
    if settings.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if settings.sampler == "grid":
        return optuna.samplers.GridSampler(grid_search_space(settings.space), seed=seed)
    return optuna.samplers.TPESampler(n_startup_trials=settings.startup_trials, seed=seed, constant_liar=True)


def make_pruner(settings: SweepSettings) -> optuna.pruners.BasePruner:
    """The pruner on validation accuracy per epoch: none, median, or Hyperband over the epochs."""
    if settings.pruner == "median":
        # Steps are 1-based epochs; Optuna may prune from step == n_warmup_steps on.
        return optuna.pruners.MedianPruner(n_startup_trials=settings.startup_trials,
                                           n_warmup_steps=settings.warmup_epochs + 1)
    if settings.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_epochs(settings.space),
                                              reduction_factor=3)
    return optuna.pruners.NopPruner()


@dataclass
class Sweep:
    """One process' handle on a sweep: its study (with this process' sampler), settings and storage URL."""

    study: optuna.Study
    settings: SweepSettings
    url: str
    heartbeat: int = DEFAULT_HEARTBEAT_S  # the storage's heartbeat interval, seconds

    @property
    def name(self) -> str:
        return self.study.study_name

    def budget(self) -> Budget:
        """The study's budget as it now stands in the storage (a resumed sweep may have changed it)."""
        data = self.study.user_attrs.get(ATTR_BUDGET) or {}
        return Budget(data.get("trials"), data.get("deadline"))

    def target(self, budget: Budget | None = None) -> int | None:
        """How many finished trials end the study: the trial budget, at most the grid's size; None: a deadline."""
        trials = (budget or self.budget()).trials
        grid = self.settings.grid_size
        if grid is not None:
            return min(trials, grid) if trials else grid
        return trials


def default_study_name() -> str:
    return time.strftime("sweep-%Y%m%d-%H%M%S")


def start_sweep(storage: optuna.storages.RDBStorage, name: str | None, settings: SweepSettings,
                budget: Budget | None, data: Dataset | None = None, sampler_seed: int | None = None,
                same_space: bool = True) -> Sweep:
    """Create a sweep's study, or resume the one of that name (its stored settings win; the budget is updated).

    Args:
        storage: from open_storage.
        name: the study name; None for sweep-<date>-<time>.
        settings: space, sampler, pruner of a new study.
        budget: the study-wide budget, written to the study for every process to read; None keeps
            a resumed study's own (a new one gets DEFAULT_TRIALS).
        data: the dataset the trials train on; its fingerprint is recorded so workers check theirs.
        sampler_seed: seeds this process' sampler (for a reproducible single-process sweep).
        same_space: a resumed study must have settings.space (False: resume whatever space it has).

    Raises:
        SweepError: the existing study has another space or was made on other data.
        SweepStorageError: the storage failed.
    """
    name = name or default_study_name()
    url = storage.url
    try:
        existing = name in optuna.get_all_study_names(storage)
        if existing:
            stored = _stored_settings(storage, name)
            if same_space and stored.space != settings.space:
                raise SweepError(f"study {name!r} already exists with another search space; "
                                 "give a new --study name, or no --space to resume it")
            settings = stored
        study = optuna.create_study(storage=storage, study_name=name, direction="maximize", load_if_exists=True,
                                    sampler=make_sampler(settings, sampler_seed), pruner=make_pruner(settings))
        if not existing:
            study.set_user_attr(ATTR_SETTINGS, settings.to_dict())
            study.set_user_attr(ATTR_CREATED, time.time())
        if data is not None:
            _check_data(study, data, name)
        if budget is not None or ATTR_BUDGET not in study.user_attrs:
            study.set_user_attr(ATTR_BUDGET, dataclasses.asdict(budget or Budget.make()))
    except STORAGE_ERRORS as e:
        raise storage_error(url, e, f"creating study {name!r}") from None
    return Sweep(study, settings, url, storage.heartbeat_interval or DEFAULT_HEARTBEAT_S)


def _stored_settings(storage: optuna.storages.BaseStorage, name: str) -> SweepSettings:
    study_id = storage.get_study_id_from_name(name)
    data = storage.get_study_user_attrs(study_id).get(ATTR_SETTINGS)
    if data is None:
        raise SweepError(f"study {name!r} was not made by `sweep run` (it has no KMNIST Lab settings)")
    return SweepSettings.from_dict(data)


def _check_data(study: optuna.Study, data: Dataset, name: str) -> None:
    recorded = study.user_attrs.get(ATTR_DATA)
    if recorded is None:
        study.set_user_attr(ATTR_DATA, {"fingerprint": data.fingerprint, "source": data.source})
    elif recorded["fingerprint"] != data.fingerprint:
        raise SweepError(f"study {name!r} trains on other data ({recorded['source']}) than this machine's "
                         f"({data.source}); point --data-dir at the same files")


def join_sweep(storage: optuna.storages.RDBStorage, name: str, data: Dataset | None = None,
               sampler_seed: int | None = None) -> Sweep:
    """Load an existing sweep with this process' own sampler and pruner (what `sweep worker` does).

    Raises:
        SweepError: no such study, it has no KMNIST Lab settings, or it trains on other data.
        SweepStorageError: the storage failed.
    """
    try:
        if name not in optuna.get_all_study_names(storage):
            raise SweepError(f"no study {name!r} in {redact(storage.url)}; start it with `sweep run --study {name}`")
        settings = _stored_settings(storage, name)
        study = optuna.load_study(study_name=name, storage=storage, sampler=make_sampler(settings, sampler_seed),
                                  pruner=make_pruner(settings))
        if data is not None:
            _check_data(study, data, name)
    except STORAGE_ERRORS as e:
        raise storage_error(storage.url, e, f"loading study {name!r}") from None
    return Sweep(study, settings, storage.url, storage.heartbeat_interval or DEFAULT_HEARTBEAT_S)


def list_sweeps(storage: optuna.storages.RDBStorage) -> list[dict[str, Any]]:
    """Every study in the storage, oldest first: name, created (a datetime or None), trial counts, best value.

    Raises:
        SweepStorageError: the storage failed.
    """
    try:
        summaries = optuna.get_all_study_summaries(storage, include_best_trial=True)
        rows = []
        for s in summaries:
            study_id = storage.get_study_id_from_name(s.study_name)
            counts = trial_counts_of(storage.get_all_trials(study_id, deepcopy=False))
            created = s.user_attrs.get(ATTR_CREATED)
            rows.append({"study": s.study_name, "counts": counts,
                         "created": datetime.datetime.fromtimestamp(created) if created else s.datetime_start,
                         "best_val_accuracy": s.best_trial.value if s.best_trial else None,
                         "sweep": ATTR_SETTINGS in s.user_attrs})
    except STORAGE_ERRORS as e:
        raise storage_error(storage.url, e, "listing studies") from None
    return sorted(rows, key=lambda r: r["created"].timestamp() if r["created"] else math.inf)


def latest_sweep_name(storage: optuna.storages.RDBStorage) -> str:
    """The most recently created study's name.

    Raises:
        SweepError: the storage has no study.
    """
    rows = [r for r in list_sweeps(storage) if r["sweep"]] or list_sweeps(storage)
    if not rows:
        raise SweepError(f"no sweep in {redact(storage.url)} yet; start one with `sweep run`")
    return rows[-1]["study"]


# --- the run folder tag ----------------------------------------------------------------------


def tag_run(store: RunStore, run_id: str, study: str, trial: int, url: str) -> None:
    """Add {study, trial, storage, host} to the run's sweep.json (a cached run may answer several trials).

    Raises:
        StoreError: the run folder cannot be written.
    """
    path = store.root / check_run_id(run_id) / SWEEP_FILE
    entries = run_sweep_tags(store, run_id)
    entries.append({"study": study, "trial": trial, "storage": redact(url), "host": HOST, "time": time.time()})
    try:
        write_atomic(path, json.dumps({"trials": entries}, indent=1).encode())
    except OSError as e:
        raise StoreError(f"cannot write {path} ({e.strerror or e})") from None


def run_sweep_tags(store: RunStore, run_id: str) -> list[dict[str, Any]]:
    """The sweep trials a run answered, from its sweep.json; [] for a run no sweep used."""
    path = store.root / check_run_id(run_id) / SWEEP_FILE
    try:
        return list(json.loads(path.read_text())["trials"])
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("ignoring unreadable %s: %s", path, e)
        return []


# --- running trials --------------------------------------------------------------------------


def _is_surplus(t: FrozenTrial) -> bool:
    return t.state == TrialState.FAIL and bool(t.user_attrs.get("surplus"))


def trial_status(t: FrozenTrial) -> str:
    """completed | pruned | failed | running | waiting | surplus."""
    return "surplus" if _is_surplus(t) else STATE_WORDS.get(t.state, t.state.name.lower())


def trial_counts_of(trials: list[FrozenTrial]) -> dict[str, int]:
    """{completed, pruned, failed, running, waiting, surplus}: how many trials are in each state.

    A surplus trial (see run_trials) is Optuna's FAIL, but no failure: it is counted apart.
    """
    counts = Counter(trial_status(t) for t in trials)
    return {word: counts.get(word, 0) for word in (*STATE_WORDS.values(), "surplus")}


@dataclass(frozen=True)
class _Gate:
    done: bool
    may_start: bool
    reason: str = ""


def _max_failures(budget: Budget) -> int:
    return max(3, budget.trials or 10)


def _gate(sweep: Sweep) -> _Gate:
    """Whether the study has its trials, and whether this process may start one now."""
    budget = sweep.budget()
    counts = trial_counts_of(sweep.study.get_trials(deepcopy=False))
    finished = counts["completed"] + counts["pruned"]
    if budget.deadline is not None and time.time() >= budget.deadline:
        return _Gate(True, False, "time budget reached")
    if counts["failed"] >= _max_failures(budget):
        return _Gate(True, False, f"{counts['failed']} trials failed")
    target = sweep.target(budget)
    if target is None:
        return _Gate(False, True)
    if finished >= target:
        return _Gate(True, False, "trial budget reached")
    # Trials running elsewhere may still finish the budget, or die and come back as waiting retries.
    return _Gate(False, counts["waiting"] > 0 or finished + counts["running"] + counts["waiting"] < target)


class _Objective:
    """One trial = one job: submit, report validation accuracy per epoch, prune, record the result."""

    def __init__(self, sweep: Sweep, queue: JobQueue, stop: threading.Event):
        self.sweep, self.queue, self.store, self.stop = sweep, queue, queue.store, stop
        self._local = threading.local()  # the trial this thread runs, and whether another process took it over

    def taken_over(self) -> int | None:
        """The number of this thread's last trial if another process failed it as stale while it ran; then None."""
        number = getattr(self._local, "taken_over", None)
        self._local.taken_over = None
        return number

    def __call__(self, trial: optuna.Trial) -> float:
        self._local.taken_over = None
        try:
            return self._run(trial)
        except optuna.exceptions.UpdateFinishedTrialError:
            # Another process saw no heartbeat from us for `grace` seconds (a stalled, overloaded
            # machine) and failed this trial; its retry runs the same config (from the cache here).
            self._local.taken_over = trial.number
            raise TrialTakenOver(f"trial {trial.number} was failed as stale by another process") from None

    def _run(self, trial: optuna.Trial) -> float:
        if self.stop.is_set():
            raise SweepStopped("the sweep was stopped")
        if self._surplus(trial):
            trial.set_user_attr("surplus", True)
            raise SweepStopped("the study had its trials when this one started (another process took the last)")
        config = suggest_config(trial, self.sweep.settings.space, grid=self.sweep.settings.sampler == "grid")
        for key, value in (("config", config.to_dict()), ("host", HOST), ("pid", os.getpid()),
                           ("runs_dir", str(self.store.root.absolute()))):
            trial.set_user_attr(key, value)
        try:
            run_id = self.queue.submit(config)
        except KmnistError as e:
            trial.set_user_attr("error", str(e))
            raise TrialFailed(str(e)) from None
        trial.set_user_attr("run_id", run_id)
        try:
            tag_run(self.store, run_id, self.sweep.name, trial.number, self.sweep.url)
        except (StoreError, OSError) as e:
            log.warning("run %s: %s", run_id, e)
        try:
            snap, pruned = self._follow(trial, run_id)
        finally:
            if self.queue.progress(run_id).active:  # the trial ended abnormally (storage error, stop): end its job
                self.queue.cancel(run_id)
                self._wait_end(run_id)  # within a second or so (the queue kills a worker that does not stop)
        info = self.store.get(run_id)
        val = [h["val_accuracy"] for h in info.history]
        best_val = info.metrics.get("best_val_accuracy")
        if best_val is None and val:
            best_val = max(val)
        trial.set_user_attr("cached", snap.cached)
        trial.set_user_attr("status", str(info.status))
        trial.set_user_attr("val_accuracy_per_epoch", val)
        trial.set_user_attr("val_accuracy", best_val)
        trial.set_user_attr("test_accuracy", info.metrics.get("test_accuracy"))
        trial.set_user_attr("train_seconds", info.metrics.get("wall_seconds") or
                            (info.history[-1]["elapsed_seconds"] if info.history else None))
        if info.status == Status.COMPLETED:
            return float(best_val)
        if pruned and info.status == Status.PRUNED:
            raise optuna.TrialPruned(f"pruned after epoch {len(val)}")
        if self.stop.is_set():
            trial.set_user_attr("error", "the sweep was stopped while this trial trained")
            raise SweepStopped("the sweep was stopped")
        reason = info.reason or snap.error or ""
        trial.set_user_attr("error", f"run {info.status}" + (f": {reason}" if reason else ""))
        raise TrialFailed(f"run {run_id} {info.status}: {reason}")

    def _surplus(self, trial: optuna.Trial) -> bool:
        """Whether trials numbered before this one already make the budget: two processes passed the gate at once."""
        target = self.sweep.target()
        if target is None:
            return False
        live = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
        ahead = sum(1 for t in self.sweep.study.get_trials(deepcopy=False)
                    if t.number < trial.number and t.state in live)
        return ahead >= target

    def _follow(self, trial: optuna.Trial, run_id: str) -> tuple[JobSnapshot, bool]:
        """Poll the job until it ends: report each finished epoch and prune if the pruner says so.

        Raises:
            optuna.exceptions.UpdateFinishedTrialError: another process failed the trial as stale;
                raised once the job has ended, so that its run is whole (and cached for the retry).
        """
        reported = 0
        while True:
            snap = self.queue.progress(run_id)
            new = snap.history[reported:]
            try:
                for record in new:
                    trial.report(record["val_accuracy"], record["epoch"])
            except optuna.exceptions.UpdateFinishedTrialError:
                self._wait_end(run_id)
                raise
            reported += len(new)
            if new and snap.active and trial.should_prune():
                if self.queue.cancel(run_id, status=Status.PRUNED):
                    return self._wait_end(run_id), True
            if not snap.active:
                return snap, False
            if self.stop.is_set():
                self.queue.cancel(run_id)
                return self._wait_end(run_id), False
            time.sleep(POLL_S)

    def _wait_end(self, run_id: str) -> JobSnapshot:
        while (snap := self.queue.progress(run_id)).active:
            time.sleep(POLL_S / 2)
        return snap


def run_trials(sweep: Sweep, queue: JobQueue, *, parallel: int | None = None, stop: threading.Event | None = None,
               on_trial: Callable[[FrozenTrial], None] | None = None) -> str:
    """Take trials from the sweep in this process until the study has its budget (whoever ran them).

    Each of `parallel` threads (default: the queue's worker count) runs Optuna's optimize one
    trial at a time, after checking the study-wide budget; MaxTrialsCallback also stops Optuna at
    the budget. A thread never starts a trial the study does not need: while the last ones run
    elsewhere it waits, failing stale trials (Optuna's heartbeat check) so that a dead process'
    trial is retried. Two processes that pass that check at the same instant both get a trial;
    the one with the higher number sees the trials before it already make the budget and ends at
    once, untrained, as Optuna's FAIL with the user attribute surplus=True (counted apart, not
    as failed), so the study ends with exactly N finished trials. A trial running when a time
    budget ends is finished.

    Args:
        sweep: from start_sweep or join_sweep.
        queue: trains the trials; its store keeps their runs.
        parallel: trials at once in this process.
        stop: set it to stop: running trials' jobs are cancelled and the trials fail (no retry).
        on_trial: called in this process after each of its trials ends.

    Returns:
        Why it ended: "trial budget reached", "time budget reached", "N trials failed", "stopped".

    Raises:
        SweepStorageError: the storage failed mid-sweep (one line); finished trials and runs are kept
            and the sweep can be resumed.
    """
    stop = stop or threading.Event()
    count = parallel or queue.capacity()
    objective = _Objective(sweep, queue, stop)
    callbacks: list[Callable[[optuna.Study, FrozenTrial], None]] = []
    budget = sweep.budget()
    if budget.trials:
        callbacks.append(optuna.study.MaxTrialsCallback(budget.trials, states=(TrialState.COMPLETE,
                                                                              TrialState.PRUNED)))
    if on_trial is not None:
        callbacks.append(lambda study, trial: on_trial(trial))
    errors: list[BaseException] = []
    reasons: list[str] = []
    interval = sweep.heartbeat

    def loop() -> None:
        try:
            while not stop.is_set():
                gate = _gate(sweep)
                if gate.done:
                    reasons.append(gate.reason)
                    return
                if not gate.may_start:
                    _fail_stale(sweep)
                    stop.wait(min(interval, 2.0))
                    continue
                try:
                    sweep.study.optimize(objective, n_trials=1, catch=(TrialFailed, SweepStopped),
                                         callbacks=callbacks)
                except (ValueError, optuna.exceptions.UpdateFinishedTrialError):  # Optuna's "Cannot tell a FAIL trial"
                    number = objective.taken_over()
                    if number is None:
                        raise
                    log.warning("trial %d was failed as stale by another process while it ran here (its heartbeats "
                                "came late); its retry takes over", number)
        except BaseException as e:  # noqa: BLE001 - reported by the caller's thread, once
            errors.append(e)
            stop.set()

    def janitor() -> None:
        """Fail stale trials while every thread here is busy training, so no retry waits for us."""
        while not done.wait(interval):
            try:
                _fail_stale(sweep)
            except STORAGE_ERRORS as e:
                log.debug("stale-trial check failed: %s", _short(e))

    done = threading.Event()
    threads = [threading.Thread(target=loop, name=f"kmnist-sweep-{i}", daemon=True) for i in range(count)]
    watcher = threading.Thread(target=janitor, name="kmnist-sweep-janitor", daemon=True)
    for t in [*threads, watcher]:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.5)
    except KeyboardInterrupt:
        stop.set()
        for t in threads:
            t.join()
        raise
    finally:
        done.set()
    if errors:
        cause = storage_cause(errors[0])
        if cause is not None:
            error = storage_error(sweep.url, cause, f"running study {sweep.name!r}")
            raise SweepStorageError(f"{error}; finished trials and runs are kept: run `sweep run --study "
                                    f"{sweep.name}` (or `sweep worker`) again to resume") from None
        raise errors[0]
    if stop.is_set():
        return "stopped"
    return reasons[0] if reasons else "stopped"


def _fail_stale(sweep: Sweep) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(sweep.study)


# --- summaries for the Sweep page and `sweep show` --------------------------------------------


def _guard(sweep: Sweep, doing: str):
    class Guard:
        def __enter__(self) -> None:
            return None

        def __exit__(self, kind, e, tb) -> bool:
            if e is not None and isinstance(e, STORAGE_ERRORS):
                raise storage_error(sweep.url, e, doing) from None
            return False

    return Guard()


def trials_table(sweep: Sweep) -> list[dict[str, Any]]:
    """One row per trial, by number: params, status, val/test accuracy, duration, host, run.

    Keys: trial, status (completed|pruned|failed|running|waiting|surplus), val_accuracy, test_accuracy,
    duration_s, epochs, host, run_id, runs_dir, cached, retry_of (the failed trial it retries), error, params.

    Raises:
        SweepStorageError: the storage failed.
    """
    with _guard(sweep, "reading trials"):
        trials = sweep.study.get_trials(deepcopy=False)
    rows = []
    for t in sorted(trials, key=lambda t: t.number):
        attrs = t.user_attrs
        end = t.datetime_complete
        duration = (end - t.datetime_start).total_seconds() if end and t.datetime_start else None
        rows.append({
            "trial": t.number, "status": trial_status(t),
            "val_accuracy": attrs.get("val_accuracy", t.value), "test_accuracy": attrs.get("test_accuracy"),
            "duration_s": duration, "epochs": len(attrs.get("val_accuracy_per_epoch", [])),
            "host": attrs.get("host"), "run_id": attrs.get("run_id"), "runs_dir": attrs.get("runs_dir"),
            "cached": attrs.get("cached", False), "retry_of": t.system_attrs.get("failed_trial"),
            "error": attrs.get("error", ""), "params": dict(t.params),
        })
    return rows


def trial_counts(sweep: Sweep) -> dict[str, int]:
    """{completed, pruned, failed, running, waiting} of the whole study.

    Raises:
        SweepStorageError: the storage failed.
    """
    with _guard(sweep, "reading trials"):
        return trial_counts_of(sweep.study.get_trials(deepcopy=False))


def best_so_far(sweep: Sweep) -> list[dict[str, Any]]:
    """The best-so-far curve: completed trials in the order they finished, {trial, value, best}.

    Raises:
        SweepStorageError: the storage failed.
    """
    with _guard(sweep, "reading trials"):
        done = sweep.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    best = -math.inf
    points = []
    for t in sorted(done, key=lambda t: (t.datetime_complete, t.number)):
        best = max(best, t.value)
        points.append({"trial": t.number, "value": t.value, "best": best})
    return points


@dataclass(frozen=True)
class Importances:
    """Parameter importances of a sweep; empty with a `note` when they cannot be computed yet."""

    evaluator: str
    values: dict[str, float]
    note: str = ""


def importances(sweep: Sweep) -> Importances:
    """Parameter importances over the completed trials, with optuna.importance's PED-ANOVA evaluator.

    Params that not every completed trial has (units of a third layer) are left out by Optuna.
    """
    with _guard(sweep, "reading trials"):
        done = sweep.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(done) < 2:
        return Importances(IMPORTANCE_EVALUATOR, {}, "needs at least 2 completed trials")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = optuna.importance.get_param_importances(
                sweep.study, evaluator=optuna.importance.PedAnovaImportanceEvaluator())
    except (RuntimeError, ValueError, ZeroDivisionError) as e:
        return Importances(IMPORTANCE_EVALUATOR, {}, f"cannot be computed yet ({e})")
    except STORAGE_ERRORS as e:
        raise storage_error(sweep.url, e, "reading trials") from None
    return Importances(IMPORTANCE_EVALUATOR, {k: float(v) for k, v in values.items()})


def best_trial(sweep: Sweep) -> FrozenTrial | None:
    """The completed trial with the best validation accuracy, or None."""
    with _guard(sweep, "reading trials"):
        done = sweep.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return max(done, key=lambda t: (t.value, -t.number)) if done else None


def trial_config(sweep: Sweep, trial: FrozenTrial) -> TrainConfig:
    """The TrainConfig a trial trained: its recorded config, else rebuilt from its params."""
    if "config" in trial.user_attrs:
        return TrainConfig.from_dict(trial.user_attrs["config"])
    return config_from_params(sweep.settings.space, trial.params, grid=sweep.settings.sampler == "grid")


# --- the dashboard's sweep: one at a time per server, run by a thread, seen by every session ---


class SweepRunner:
    """Runs one sweep at a time on the dashboard's job queue, in a background thread; thread-safe.

    A sweep started here survives page switches and is visible to every session, like a training;
    Stop cancels the running trials' jobs and ends it (the study keeps its finished trials and can
    be resumed from here or with `sweep run --study NAME`).

    Args:
        queue: the dashboard's job queue; its store holds the trials' runs and, by default, sweeps.db.
    """

    def __init__(self, queue: JobQueue):
        self.queue = queue
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.sweep: Sweep | None = None
        self.outcome = ""  # why the last sweep ended, or its one-line error

    @property
    def running(self) -> bool:
        with self._lock:
            return self._thread is not None and self._thread.is_alive()

    def start(self, settings: SweepSettings, budget: Budget, name: str | None = None,
              storage: str | None = None) -> Sweep:
        """Create (or resume) a sweep and run its trials in the background.

        Raises:
            SweepError: one is already running here, or the study cannot be made (one line).
            SweepStorageError: the storage cannot be reached.
        """
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                raise SweepError(f"sweep {self.sweep.name!r} is still running here: stop it first")
            rdb = open_storage(storage, self.queue.store.root)
            sweep = start_sweep(rdb, name, settings, budget, self.queue.data)
            self.sweep, self.outcome, self._stop = sweep, "", threading.Event()
            self._thread = threading.Thread(target=self._run, args=(sweep, self._stop), name="kmnist-sweep",
                                            daemon=True)
            self._thread.start()
            return sweep

    def stop(self) -> None:
        """Ask the running sweep to end; its running trials' jobs are cancelled."""
        self._stop.set()

    def _run(self, sweep: Sweep, stop: threading.Event) -> None:
        try:
            outcome = run_trials(sweep, self.queue, stop=stop)
        except KmnistError as e:
            outcome = str(e)
        except Exception as e:  # noqa: BLE001 - a background sweep must end with a line, never a traceback
            log.exception("sweep %s failed", sweep.name)
            outcome = f"{type(e).__name__}: {e}"
        with self._lock:
            self.outcome = outcome
