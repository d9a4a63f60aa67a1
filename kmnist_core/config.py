"""TrainConfig, the field table that drives its validation, widgets, flags and labels, and the presets."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

ACTIVATIONS = ("relu", "sigmoid", "tanh", "elu", "gelu", "selu")
OPTIMIZERS = ("adam", "sgd", "rmsprop", "nesterov")
LR_SCHEDULES = ("constant", "cosine", "step")

# Keras' own default learning rate per optimizer; used when learning_rate is None,
# which is what the reference study did by passing optimizer names to compile().
DEFAULT_LEARNING_RATES = {"adam": 0.001, "sgd": 0.01, "rmsprop": 0.001, "nesterov": 0.01}

# The fields every key has hashed since keys were introduced; see TrainConfig.key.
KEY_FIELDS = frozenset({
    "hidden_layers", "activation", "optimizer", "weight_decay", "learning_rate", "epochs", "batch_size", "val_fraction",
    "seed", "dropout", "augment", "lr_schedule", "early_stopping", "label_smoothing", "batch_norm",
})
MAX_LAYERS = 6
MAX_UNITS = 4096
UNIT_OPTIONS: tuple[int, ...] = tuple(2**k for k in range(4, 11))  # the Train page's per-layer steps, 16..1024


@dataclass(frozen=True)
class TrainConfig:
    """One training run, as plain data. `config.json` inside a run is this, serialised.

    Weight decay is an L2 penalty on every Dense kernel: loss += weight_decay * sum(w ** 2).
    We chose the penalty over the Keras 3 optimizers' decoupled `weight_decay` because it acts
    the same under all four optimizers, and because at the study's values (0.0005 with a
    learning rate of 0.001) decoupled decay shrinks weights by 5e-7 per step, which is no
    regularisation at all; 0.0005 is a classic L2 coefficient.
    """

    hidden_layers: tuple[int, ...] = (128, 64)  # units per hidden Dense layer
    activation: str = "relu"  # hidden-layer activation
    optimizer: str = "adam"  # adam | sgd | rmsprop | nesterov (SGD, momentum 0.9)
    weight_decay: float = 0.0  # L2 penalty coefficient on Dense kernels
    learning_rate: float | None = None  # None: the optimizer's Keras default
    epochs: int = 10  # passes over the training split
    batch_size: int = 128  # samples per gradient step
    val_fraction: float = 0.1  # stratified hold-out of the training split
    seed: int = 0  # seeds weights, shuffling, the validation split
    dropout: float = 0.0  # dropout rate after each hidden layer; 0 is off
    augment: float = 0.0  # strength of random shift/rotate/zoom at training time; 0 is off
    lr_schedule: str = "constant"  # constant | cosine | step (x0.1 at 50 % and 75 %)
    early_stopping: int = 0  # patience in epochs on val accuracy; 0 is off
    label_smoothing: float = 0.0  # cross-entropy label smoothing
    batch_norm: bool = False  # BatchNormalization before each hidden activation

    def __post_init__(self) -> None:
        layers = self.hidden_layers
        if isinstance(layers, str):
            layers = parse_layers(layers)
        elif isinstance(layers, (list, tuple)):
            layers = tuple(layers)
        object.__setattr__(self, "hidden_layers", layers)
        validate(self)
        # 0 and 0.0 are the same setting: store floats so that equal configs share one key.
        for name, f in FIELDS.items():
            value = getattr(self, name)
            if f.kind == "float" and isinstance(value, int):
                object.__setattr__(self, name, float(value))

    @property
    def resolved_learning_rate(self) -> float:
        """The learning rate training uses: the given one or the optimizer's default."""
        if self.learning_rate is None:
            return DEFAULT_LEARNING_RATES[self.optimizer]
        return self.learning_rate

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of every field."""
        data = dataclasses.asdict(self)
        data["hidden_layers"] = list(self.hidden_layers)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a dict such as config.json; unknown keys are an error.

        Raises:
            ConfigError: on an unknown key or an invalid value.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(
                f"unknown config field {unknown[0]!r}; allowed fields: {', '.join(sorted(names))}"
            )
        return cls(**data)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed, validated again."""
        return dataclasses.replace(self, **changes)

    def key(self, data_fingerprint: str, fields: Mapping[str, Field] | None = None) -> str:
        """Stable id of the result this config gives on the dataset with this fingerprint.

        A field added to the table later enters the key only when it differs from its default, so
        adding one keeps every stored run's key (and cache hit) as it was.
        """
        table = FIELDS if fields is None else fields
        payload = {name: value for name, value in self.to_dict().items()
                   if name in KEY_FIELDS or value != table[name].default}
        payload["learning_rate"] = self.resolved_learning_rate
        text = json.dumps(payload, sort_keys=True) + "|" + data_fingerprint
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    def describe(self) -> str:
        """Short one-line label of the study's four fields, e.g. '[128, 64] relu adam wd=0.0005'."""
        layers = ", ".join(str(u) for u in self.hidden_layers)
        return f"[{layers}] {self.activation} {self.optimizer} wd={self.weight_decay:g}"

    def options_text(self, skip: Iterable[str] = (), fields: Mapping[str, Field] | None = None) -> str:
        """The other fields that differ from their defaults, e.g. 'lr 0.002, epochs 20, dropout 0.2'.

        Args:
            skip: field names to leave out (e.g. those a table shows in columns of their own).
            fields: the field table (default FIELDS); each field with a `short` label is an option.

        Returns:
            The options in table order, or '' when all are at their defaults.
        """
        parts = []
        for name, f in (FIELDS if fields is None else fields).items():
            value = getattr(self, name)
            if not f.short or name in skip or value == f.default:
                continue
            parts.append(f.short if value is True else f"{f.short} {f.format(value)}")
        return ", ".join(parts)

    def summary(self, skip: Iterable[str] = (), fields: Mapping[str, Field] | None = None) -> str:
        """describe() and the non-default options (but those in `skip`): the config in one line."""
        options = self.options_text(skip, fields)
        return f"{self.describe()} · {options}" if options else self.describe()


def count_params(config: TrainConfig) -> int:
    """Trainable + non-trainable parameters of model.build_model(config), computed without Keras."""
    total, fan_in = 0, 28 * 28
    for units in config.hidden_layers:
        total += fan_in * units + (0 if config.batch_norm else units)  # BN's beta replaces the bias
        if config.batch_norm:
            total += 4 * units  # gamma, beta, moving mean, moving variance
        fan_in = units
    return total + fan_in * 10 + 10


def train_flops_per_epoch(config: TrainConfig, n_train: int) -> float:
    """Forward + backward FLOPs of one epoch: 3 passes x 2 FLOPs per multiply-add of the Dense layers."""
    macs, fan_in = 0, 28 * 28
    for units in (*config.hidden_layers, 10):
        macs += fan_in * units
        fan_in = units
    return 6.0 * macs * n_train


# --- the field table: one row per TrainConfig field drives validation, widgets, CLI flags and labels ---


@dataclass(frozen=True)
class Field:
    """One TrainConfig field: what it allows, and how the Train page, the CLI and summaries show it.

    The constraint (kind, low, high, choices, optional) makes every validation message; the
    rest generates the Train page's widget, the `train` command's flag and help, the one-line
    summaries and the Compare table's columns. A new field is one row here plus the training
    code that uses it (tests/test_fields.py shows it).
    """

    kind: str  # "int", "float", "choice", "bool", "layers"
    label: str  # widget label and CLI help, e.g. "Weight decay (L2)"
    help: str = ""
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # True: low itself is not allowed
    choices: tuple[str, ...] = ()
    optional: bool = False  # None is allowed
    widget: str = "number"  # number | slider | select_slider | select | checkbox | layers
    step: float | None = None  # widget step
    options: tuple[Any, ...] = ()  # a select_slider's values
    advanced: bool = False  # in the Train page's Advanced expander
    short: str = ""  # label in one-line summaries ("lr 0.002"); "" for describe()'s four study fields
    column: str = ""  # Compare column of its own; "" means it is listed in the "options" column
    flag: str = ""  # CLI flag; default --name-with-dashes
    name: str = ""  # filled in by the table
    default: Any = None  # filled in from TrainConfig

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    def describe(self) -> str:
        """What is allowed, as the messages say it: 'an integer in the range [1, 200]'."""
        if self.kind == "choice":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.kind == "bool":
            return "true or false"
        if self.kind == "layers":
            return f"1 to {MAX_LAYERS} comma-separated layer sizes, each an integer from 1 to {MAX_UNITS}"
        left = "(" if self.low_open else "["
        noun = "an integer" if self.kind == "int" else "a number"
        text = f"{noun} in the range {left}{self.low:g}, {self.high:g}]"
        return text + (" or empty for the optimizer's default" if self.optional else "")

    def format(self, value: Any) -> str:
        """A value as summaries show it: 0.002, 20, 'cosine', '128, 64'."""
        if self.kind == "layers":
            return ", ".join(str(u) for u in value)
        return f"{value:g}" if isinstance(value, float) else str(value)

    def parse(self, text: str, widget: bool = False) -> Any:
        """A value of this field from text (a CLI flag, a link parameter), checked.

        Args:
            text: the value as text.
            widget: also require one of the widget's `options` (a select-slider takes no other value).

        Raises:
            ConfigError: naming the field, the text and what is allowed.
        """
        if self.kind == "layers":
            return parse_layers(text)
        try:
            if self.kind == "bool":
                value: Any = {"true": True, "false": False}[text.strip().lower()]
            elif self.kind == "int":
                value = int(text)
            elif self.kind == "float":
                value = float(text)
            else:
                value = text
        except (KeyError, ValueError):
            raise ConfigError(f"{self.name} must be {self.describe()}; got {text!r}") from None
        self.check(value)
        if widget and self.options and value not in self.options:
            raise ConfigError(f"{self.name} must be one of {', '.join(f'{o:g}' for o in self.options)}; got {text!r}")
        return value

    def check(self, value: Any) -> None:
        """Raise ConfigError naming this field, the value and what is allowed, unless the value is allowed."""
        if value is None and self.optional:
            return
        if self.kind == "bool":
            ok = isinstance(value, bool)
        elif self.kind == "choice":
            ok = value in self.choices
        elif self.kind == "layers":
            ok = (isinstance(value, tuple) and 1 <= len(value) <= MAX_LAYERS
                  and all(isinstance(u, int) and not isinstance(u, bool) and 1 <= u <= MAX_UNITS for u in value))
            value = list(value) if isinstance(value, tuple) else value
        else:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if self.kind == "int" and not isinstance(value, int):
                ok = False
            if ok and (math.isnan(value) or math.isinf(value)):
                ok = False
            if ok:
                too_low = value <= self.low if self.low_open else value < self.low
                ok = not too_low and value <= self.high
        if not ok:
            raise ConfigError(f"{self.name} must be {self.describe()}; got {value!r}")


def _weight_decay_options(high: float) -> tuple[float, ...]:
    """0, then a 1-2-5 log scale up to the maximum, plus the reference study's 0.0005."""
    scale = [m * 10.0**e for e in range(-5, 0) for m in (1, 2, 5)]
    return tuple(sorted({0.0, *(round(v, 12) for v in scale if v <= high), high, 0.0005}))


def field_table(fields: dict[str, Field], config_class: type) -> dict[str, Field]:
    """Fill in each row's name and default from the dataclass; every field needs a row and every row a field."""
    declared = {f.name: f for f in dataclasses.fields(config_class)}
    if set(declared) != set(fields):
        raise RuntimeError(f"field table and {config_class.__name__} disagree: {sorted(set(declared) ^ set(fields))}")
    return {name: dataclasses.replace(f, name=name, default=declared[name].default) for name, f in fields.items()}


_LR_DEFAULTS = ", ".join(f"{name} {lr:g}" for name, lr in DEFAULT_LEARNING_RATES.items())

FIELDS: dict[str, Field] = field_table({
    "hidden_layers": Field("layers", "Hidden layers",
                           f"units per hidden layer, e.g. 256, 128; 1 to {MAX_LAYERS} layers of 1 to {MAX_UNITS} units",
                           widget="layers", flag="--hidden", column="hidden layers"),
    "activation": Field("choice", "Activation", "hidden-layer activation", choices=ACTIVATIONS, widget="select",
                        column="activation"),
    "optimizer": Field("choice", "Optimizer", "nesterov: SGD with momentum 0.9 and Nesterov updates",
                       choices=OPTIMIZERS, widget="select", column="optimizer"),
    "weight_decay": Field("float", "Weight decay (L2)", "L2 penalty on every Dense kernel: loss += weight_decay × Σw²",
                          0.0, 0.1, widget="select_slider", options=_weight_decay_options(0.1), column="weight decay"),
    "learning_rate": Field("float", "Learning rate", f"empty: the optimizer's Keras default ({_LR_DEFAULTS})",
                           0.0, 1.0, low_open=True, optional=True, step=0.0001, advanced=True, short="lr",
                           column="learning rate"),
    "epochs": Field("int", "Epochs", "passes over the training split", 1, 200, step=1, advanced=True,
                    short="epochs", column="epochs"),
    "batch_size": Field("int", "Batch size", "samples per gradient step", 8, 4096, step=16, advanced=True,
                        short="batch"),
    "val_fraction": Field("float", "Validation fraction", "stratified hold-out of the training split",
                          0.01, 0.5, widget="slider", step=0.01, advanced=True, short="val"),
    "seed": Field("int", "Seed", "seeds the weights, the shuffling and the validation split", 0, 2**31 - 1, step=1,
                  advanced=True, short="seed"),
    "dropout": Field("float", "Dropout", "dropout rate after each hidden layer; 0 is off", 0.0, 0.9,
                     widget="slider", step=0.05, advanced=True, short="dropout"),
    "augment": Field("float", "Augmentation strength",
                     "random shifts, rotations and zoom at training time only; 0 is off", 0.0, 1.0,
                     widget="slider", step=0.1, advanced=True, short="augment"),
    "lr_schedule": Field("choice", "Learning-rate schedule", "step: ×0.1 at 50 % and 75 % of training",
                         choices=LR_SCHEDULES, widget="select", advanced=True, short="lr schedule"),
    "early_stopping": Field("int", "Early stopping patience (epochs)",
                            "stop when val accuracy has not improved this long; 0 is off", 0, 200, step=1,
                            advanced=True, short="early stop"),
    "label_smoothing": Field("float", "Label smoothing", "cross-entropy label smoothing; 0 is off", 0.0, 0.5,
                             widget="slider", step=0.05, advanced=True, short="label smoothing"),
    "batch_norm": Field("bool", "Batch normalisation", "BatchNormalization before each hidden activation",
                        widget="checkbox", advanced=True, short="batch norm"),
}, TrainConfig)


STUDY_FIELDS = ("hidden_layers", "activation", "optimizer", "weight_decay")  # the reference study's four axes


def train_command(config: TrainConfig, fields: Mapping[str, Field] | None = None) -> str:
    """The `python -m kmnist_core train ...` line that trains this config (and so hits its cached run).

    The study's four axes are always named; other fields only when they differ from their default.
    Floats are written with repr, the shortest text that reads back as the same float (the same key).
    """
    parts = ["python -m kmnist_core train"]
    for name, f in (FIELDS if fields is None else fields).items():
        value = getattr(config, name)
        if value is None or (name not in STUDY_FIELDS and value == f.default):
            continue
        if f.kind == "bool":
            parts += [f.cli_flag] if value else []
        else:
            text = ",".join(map(str, value)) if f.kind == "layers" else repr(value) if f.kind == "float" else str(value)
            parts += [f.cli_flag, text]
    return " ".join(parts)


def validate(config: Any, fields: Mapping[str, Field] | None = None) -> None:
    """Check every field of a config against its row of the table.

    Raises:
        ConfigError: naming the first bad field, its value and what is allowed.
    """
    for name, f in (FIELDS if fields is None else fields).items():
        f.check(getattr(config, name))


def parse_layers(text: str) -> tuple[int, ...]:
    """Parse '128, 64' (also '128 64' or '[128, 64]') into (128, 64).

    Raises:
        ConfigError: naming hidden_layers, the text and what is allowed.
    """
    f = FIELDS["hidden_layers"]

    def fail() -> ConfigError:
        return ConfigError(f"hidden_layers must be {f.describe()}; got {text!r}")

    if not isinstance(text, str):
        raise fail()
    body = text.strip().removeprefix("[").removesuffix("]")
    parts = body.replace(",", " , ").split()
    # Tokens must alternate number, comma, number...; a comma may also be a plain space.
    numbers: list[int] = []
    expect_number = True
    for token in parts:
        if token == ",":
            if expect_number:
                raise fail()
            expect_number = True
            continue
        if not (token.isascii() and token.isdigit()) or len(token) > 5:
            raise fail()
        numbers.append(int(token))
        expect_number = False
    if not numbers or (parts and parts[-1] == ","):
        raise fail()
    if len(numbers) > MAX_LAYERS or not all(1 <= u <= MAX_UNITS for u in numbers):
        raise fail()
    return tuple(numbers)


@dataclass(frozen=True)
class Preset:
    """A named configuration, with the numbers the reference study reported for it."""

    name: str
    config: TrainConfig
    reported_val_accuracy: float | None = None
    reported_test_accuracy: float | None = None
    note: str = ""


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("ref-relu-adam", TrainConfig((128, 64), "relu", "adam", 0.0005), 0.9495, 0.8834,
               "the reference study's best"),
        Preset("ref-relu-sgd", TrainConfig((128, 128, 64), "relu", "sgd", 0.0), 0.8363, 0.7053),
        Preset("ref-sigmoid-rmsprop", TrainConfig((256, 128, 64), "sigmoid", "rmsprop", 0.0005),
               0.9157, 0.8323),
        Preset("ref-relu-nesterov", TrainConfig((128, 64, 32), "relu", "nesterov", 0.0005), 0.9308,
               0.8603),
        # Found by a search that selected on validation accuracy only; see docs/best-mlp.md.
        Preset("best-mlp",
               TrainConfig((1024, 512), "relu", "adam", learning_rate=0.002, epochs=20, augment=0.5,
                           lr_schedule="cosine", label_smoothing=0.1),
               0.9550, 0.9500,
               "plain MLP that beats 4-NN: augmentation, cosine decay, label smoothing; "
               "numbers measured on kmnist-subset (docs/best-mlp.md)"),
    )
}
REFERENCE_PRESETS = ("ref-relu-adam", "ref-relu-sgd", "ref-sigmoid-rmsprop", "ref-relu-nesterov")
BEST_MLP = "best-mlp"

# A named tiny config for tests and smoke runs: trains in a few seconds on the subset.
TINY = TrainConfig(hidden_layers=(32,), epochs=2, batch_size=256)
