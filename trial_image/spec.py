"""The one candidate description every front end produces and the one builder builds.

A candidate is a small DAG. Index 0 is the network's encoded input (rescaled pixels; for a table,
its columns normalised and embedded); node ``i`` (1-based) applies one operation to the merge of
its inputs, which are earlier indices. The last node feeds the head: class probabilities
(classification) or one number (regression). It is plain data (JSON round-trip), so the engine,
MLflow and the registry can store it as is. Statistics of the data (a column's mean, a
vocabulary) are not part of it: the builder adapts them on the training split.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from trial_image.errors import InputError
from trial_image.families import IMAGE, SERIES, TABLE, TEXT, Family
from trial_image.tasks import TASKS

# op name -> (required params, optional params with defaults). Convolutions are ReLU-Conv-BN
# (pre-activation), as in Katib's ENAS op library and in DARTS; padding is always "same".
OPS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "conv": (("filters", "kernel"), {"stride": 1, "dilation": 1, "batch_norm": True}),
    "sep_conv": (
        ("filters", "kernel"),
        {"stride": 1, "dilation": 1, "depth_multiplier": 1, "batch_norm": True},
    ),
    "depthwise_conv": (("kernel",), {"stride": 1, "depth_multiplier": 1, "batch_norm": True}),
    "pool": (("pool_type", "size"), {"stride": None}),
    "factorized_reduce": (("filters",), {}),
    "identity": ((), {}),
    # table operations, on (batch, features): Dense-BN-ReLU; a pre-norm residual MLP block;
    # a gated linear unit; self-attention over feature tokens (FT-Transformer's block)
    "dense": (("units",), {"dropout": 0.0, "batch_norm": True}),
    "residual": (("units",), {"dropout": 0.0}),
    "glu": (("units",), {"dropout": 0.0}),
    "attention": (("heads", "key_dim"), {"dropout": 0.0}),
    # sequence operations, on (batch, steps, channels) (a text's tokens, a series' window):
    # a dilated 1-D convolution (same length); a GRU or LSTM layer; "attention" above, over steps
    "conv1d": (("filters", "kernel"), {"dilation": 1, "dropout": 0.0}),
    "rnn": (("units",), {"cell": "gru", "bidirectional": False, "dropout": 0.0}),
}
COLUMN_KINDS = ("numeric", "categorical", "text")  # what a model reads
RNN_CELLS = ("gru", "lstm")
MERGES = ("concat", "add")
OPTIMIZERS = ("adam", "sgd", "rmsprop")
LR_SCHEDULES = ("constant", "cosine")  # cosine: decays to 0 over all epochs
AUGMENTATIONS = ("none", "light")  # light: random shifts of up to 1/8 of the image
# The head's wide path beside the deep one (trial_image.families says which a family has):
# none; linear: a linear map of the encoded inputs; decomposed: of a series' moving-average
# trend and its remainder (DLinear); kernels: of the responses of MiniRocket's fixed kernels to
# a series' window
WIDE_PATHS = ("none", "linear", "decomposed", "kernels")
# How a series' window is scaled: global (the training windows' mean and variance), or last (each
# window relative to its own last value, a forecast the change from it: the level part of RevIN,
# Kim et al. 2022, so that a trend beyond the training values can be extrapolated)
LEVELS = ("global", "last")
# How a table's numeric column is encoded: scaled (normalised by the training mean and variance),
# or piecewise (scaled, and also its piecewise-linear encoding in quantile bins of the training
# values: Gorishniy et al. 2022, "On Embeddings for Numerical Features in Tabular Deep Learning",
# what lets an MLP and a linear path bend where a tree would split)
NUMERIC_ENCODINGS = ("scaled", "piecewise")
# Fields added after candidates were first identified, with the value every earlier candidate
# had: left out of an identifier at that value, so those candidates keep theirs
LATER_FIELDS = {"head": {"wide": "none"}, "table": {"numeric_encoding": "scaled"},
                "series": {"level": "global"}}


@dataclass(frozen=True)
class Node:
    op: str
    inputs: tuple[int, ...]
    params: dict[str, Any] = field(default_factory=dict)
    merge: str = "concat"


@dataclass(frozen=True)
class Head:
    """Global average pooling, then an optional hidden dense layer, then softmax; ``wide``: a
    linear path from the encoded inputs whose output is added to the deep path's (wide & deep:
    a linear model plus what the network adds to it, often the best model of nearly linear
    data)."""

    dense_units: int = 0
    dropout: float = 0.0
    wide: str = "none"


@dataclass(frozen=True)
class Table:
    """A table's inputs: its feature columns in order, each ``(name, kind)``; a categorical
    column's values are looked up in its training vocabulary and embedded in ``embedding_size``
    dimensions (one more row for values never seen, missing ones included). A table whose one
    column is ``text`` is a text: its first ``sequence_length`` tokens (of the
    ``vocabulary_size`` most frequent in training) are embedded, a sequence of steps. Numeric
    columns are encoded as ``numeric_encoding`` says (:data:`NUMERIC_ENCODINGS`)."""

    columns: tuple[tuple[str, str], ...]
    embedding_size: int = 8
    sequence_length: int = 64
    vocabulary_size: int = 10_000
    numeric_encoding: str = "scaled"


@dataclass(frozen=True)
class Series:
    """A series model's input: the last ``lookback`` values of the series (a window), scaled
    as ``level`` says (:data:`LEVELS`)."""

    lookback: int
    level: str = "global"


@dataclass(frozen=True)
class Training:
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0  # decoupled (AdamW / SGDW); 0 is plain Adam or SGD
    batch_size: int = 64
    epochs: int = 10
    lr_schedule: str = "constant"
    augment: str = "none"

    @classmethod
    def of(cls, flags: Any) -> Training:
        """From the trial CLI's flags of the same names (``--learning-rate`` and so on)."""
        return cls(optimizer=flags.optimizer, learning_rate=flags.learning_rate,
                   momentum=flags.momentum, weight_decay=flags.weight_decay,
                   batch_size=flags.batch_size, epochs=flags.epochs,
                   lr_schedule=flags.lr_schedule, augment=flags.augment)


@dataclass(frozen=True)
class Frame:
    """What a candidate takes from its trial, whatever its front end: the data's shape, task,
    classes and scaling (or columns), the head and the training. Front ends describe only the
    nodes; :meth:`candidate` is the one place a :class:`CandidateSpec` is put together."""

    input_shape: tuple[int, ...]
    num_classes: int
    input_scale: float = 1.0
    head: Head = Head()
    training: Training = Training()
    task: str = "classification"
    table: Table | None = None
    series: Series | None = None

    def candidate(self, source: str, nodes: Sequence[Node]) -> CandidateSpec:
        return CandidateSpec(input_shape=self.input_shape, num_classes=self.num_classes,
                             nodes=tuple(nodes), head=self.head, training=self.training,
                             input_scale=self.input_scale, source=source, task=self.task,
                             table=self.table, series=self.series)


@dataclass(frozen=True)
class CandidateSpec:
    input_shape: tuple[int, ...]  # (height, width, channels); a table's (columns,); (lookback,)
    num_classes: int  # 0 for regression
    nodes: tuple[Node, ...]
    head: Head = Head()
    training: Training = Training()
    input_scale: float = 1.0
    source: str = "hyperparameters"
    task: str = "classification"
    table: Table | None = None
    series: Series | None = None

    @property
    def family(self) -> Family:
        """image, table, text (a table of one text column) or series."""
        if self.series is not None:
            return SERIES
        if self.table is None:
            return IMAGE
        return TEXT if any(kind == "text" for _, kind in self.table.columns) else TABLE

    def __post_init__(self) -> None:
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def candidate_id(self) -> str:
        """Stable short hash of the architecture and head (not training) for de-duplication."""
        arch: dict[str, Any] = {"nodes": self.to_dict()["nodes"]}
        for part in ("head", "table", "series"):
            if getattr(self, part) is not None:
                fields = asdict(getattr(self, part))
                for name, default in LATER_FIELDS[part].items():
                    if fields[name] == default:
                        del fields[name]
                arch[part] = fields
        return hashlib.sha1(json.dumps(arch, sort_keys=True).encode()).hexdigest()[:12]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CandidateSpec:
        try:
            return cls(
                input_shape=tuple(data["input_shape"]),
                num_classes=int(data["num_classes"]),
                nodes=tuple(
                    Node(n["op"], tuple(n["inputs"]), dict(n.get("params", {})),
                         n.get("merge", "concat"))
                    for n in data["nodes"]
                ),
                head=Head(**data.get("head", {})),
                training=Training(**data.get("training", {})),
                input_scale=float(data.get("input_scale", 1.0)),
                source=data.get("source", "hyperparameters"),
                task=data.get("task", "classification"),
                table=None if data.get("table") is None else Table(
                    tuple((str(n), str(k)) for n, k in data["table"]["columns"]),
                    **{k: str(v) if k == "numeric_encoding" else int(v)
                       for k, v in data["table"].items() if k != "columns"}),
                series=None if data.get("series") is None else Series(
                    int(data["series"]["lookback"]), str(data["series"].get("level", "global"))),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"malformed candidate spec: {exc}") from exc


def with_defaults(op: str, params: dict[str, Any]) -> dict[str, Any]:
    """The params of ``op`` with its optional defaults filled in."""
    return {**OPS[op][1], **params}


def validate(spec: CandidateSpec) -> None:
    """Reject a spec the builder cannot build, naming the node and the reason."""
    _validate_inputs(spec)
    if not spec.nodes:
        raise InputError("the candidate has no layers")
    family_ops = spec.family.operations
    for index, node in enumerate(spec.nodes, start=1):
        where = f"node {index} ({node.op})"
        if node.op not in family_ops:
            raise InputError(f"{where}: not an operation on {spec.family}s; known: "
                             f"{', '.join(sorted(family_ops))}")
        required, optional = OPS[node.op]
        missing = [p for p in required if p not in node.params]
        unknown = [p for p in node.params if p not in required and p not in optional]
        if missing:
            raise InputError(f"{where}: missing parameter(s) {', '.join(missing)}")
        if unknown:
            raise InputError(f"{where}: unknown parameter(s) {', '.join(unknown)}")
        if node.merge not in MERGES:
            raise InputError(f"{where}: merge must be one of {MERGES}, got {node.merge!r}")
        if not node.inputs or any(not 0 <= i < index for i in node.inputs):
            raise InputError(f"{where}: inputs {list(node.inputs)} must be earlier nodes")
        for name in ("filters", "kernel", "stride", "dilation", "depth_multiplier", "size",
                     "units", "heads", "key_dim"):
            value = node.params.get(name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise InputError(f"{where}: {name} must be a positive integer, got {value!r}")
        if node.op == "rnn" and (node.params.get("cell", "gru") not in RNN_CELLS or
                                 not isinstance(node.params.get("bidirectional", False), bool)):
            raise InputError(f"{where}: cell must be one of {', '.join(RNN_CELLS)} and "
                             "bidirectional true or false")
        if node.op == "pool" and node.params["pool_type"] not in ("max", "avg"):
            raise InputError(f"{where}: pool_type must be max or avg")
        dropout = node.params.get("dropout", 0.0)
        if not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise InputError(f"{where}: dropout must be in [0, 1), got {dropout!r}")
    t = spec.training
    if t.optimizer not in OPTIMIZERS:
        raise InputError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {t.optimizer!r}")
    if not t.weight_decay >= 0:
        raise InputError(f"weight decay must be >= 0, got {t.weight_decay}")
    if not t.learning_rate > 0:
        raise InputError(f"learning rate must be positive, got {t.learning_rate}")
    if t.batch_size < 1 or t.epochs < 1:
        raise InputError("batch size and epochs must be at least 1")
    if t.lr_schedule not in LR_SCHEDULES or t.augment not in AUGMENTATIONS:
        raise InputError(f"learning-rate schedule must be one of {', '.join(LR_SCHEDULES)} and "
                         f"augmentation one of {', '.join(AUGMENTATIONS)}")
    if not 0 <= spec.head.dropout < 1:
        raise InputError(f"dropout must be in [0, 1), got {spec.head.dropout}")
    if spec.head.dense_units < 0:
        raise InputError(f"dense units must be >= 0, got {spec.head.dense_units}")
    if spec.series is not None and spec.series.level not in LEVELS:
        raise InputError(f"level must be one of {', '.join(LEVELS)}, got {spec.series.level!r}")
    if spec.head.wide not in spec.family.wide_paths:
        raise InputError(f"wide path {spec.head.wide!r}: {spec.family}s take "
                         f"{', '.join(spec.family.wide_paths)}"
                         + (f" ({spec.family.no_wide})" if spec.family.no_wide else ""))


def _validate_inputs(spec: CandidateSpec) -> None:
    if spec.task not in TASKS:
        raise InputError(f"task must be one of {', '.join(TASKS)}, got {spec.task!r}")
    if spec.task == "classification" and spec.num_classes < 2:
        raise InputError(f"num_classes must be at least 2, got {spec.num_classes}")
    if spec.task == "regression" and spec.num_classes != 0:
        raise InputError(f"a regression has no classes (num_classes 0), got {spec.num_classes}")
    if spec.table is not None and spec.series is not None:
        raise InputError("a candidate reads a table or a series, not both")
    if spec.series is not None:
        if spec.series.lookback < 1 or tuple(spec.input_shape) != (spec.series.lookback,):
            raise InputError(f"a series' input_shape is (lookback,): lookback "
                             f"{spec.series.lookback}, input_shape {spec.input_shape}")
        return
    if spec.table is None:
        if len(spec.input_shape) != 3 or min(spec.input_shape) < 1:
            raise InputError(f"input_shape must be (height, width, channels), got "
                             f"{spec.input_shape}")
        return
    columns = spec.table.columns
    if not columns or tuple(spec.input_shape) != (len(columns),):
        raise InputError(f"a table's input_shape is (number of columns,): {len(columns)} "
                         f"column(s), input_shape {spec.input_shape}")
    names = [name for name, _ in columns]
    if len(set(names)) != len(names):
        raise InputError("a table's column names must be unique")
    for name, kind in columns:
        if kind not in COLUMN_KINDS:
            raise InputError(f"column {name!r}: kind must be one of {', '.join(COLUMN_KINDS)}, "
                             f"got {kind!r}")
    if spec.table.numeric_encoding not in NUMERIC_ENCODINGS:
        raise InputError(f"numeric encoding must be one of {', '.join(NUMERIC_ENCODINGS)}, got "
                         f"{spec.table.numeric_encoding!r}")
    if min(spec.table.embedding_size, spec.table.sequence_length,
           spec.table.vocabulary_size) < 1:
        raise InputError("embedding size, sequence length and vocabulary size must be at least 1")
    if spec.family.one_column and len(columns) > 1:
        raise InputError("a text column must be the table's only feature column (the text "
                         f"family); this table has {len(columns)}")
