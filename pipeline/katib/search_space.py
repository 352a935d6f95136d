"""Search spaces: Katib's ``parameters`` as Optuna distributions, ``nasConfig`` as ENAS operations.

Values handed to trials are strings, as Katib hands them. ``normal`` and ``logNormal``
distributions are sampled through their quantile: Optuna samples q in [0, 1] and the value is the
truncated normal's inverse CDF at q, with mean (min+max)/2 and σ = (max-min)/6 (in log space for
logNormal), so every Optuna sampler works on them.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
from collections.abc import Container, Iterator
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

DISTRIBUTIONS = ("uniform", "logUniform", "normal", "logNormal")
ENUMERATE_LIMIT = 200_000  # finite spaces up to this size are listed to find what is left


@dataclass(frozen=True)
class Parameter:
    name: str
    kind: str  # int | double | categorical | discrete
    low: float = 0.0
    high: float = 0.0
    step: float | None = None
    choices: tuple[str, ...] = ()
    distribution: str = "uniform"

    @classmethod
    def from_spec(cls, p: Any) -> Parameter:
        fs = p.feasible_space
        if p.parameter_type in ("categorical", "discrete"):
            return cls(p.name, p.parameter_type, choices=tuple(fs.list))
        number = int if p.parameter_type == "int" else float
        return cls(p.name, p.parameter_type, number(fs.min), number(fs.max),
                   number(fs.step) if fs.step else None, (), fs.distribution or "uniform")

    def distribution_for_optuna(self) -> BaseDistribution:
        if self.choices:
            return CategoricalDistribution(self.choices)
        if self.distribution in ("normal", "logNormal"):
            return FloatDistribution(0.0, 1.0)  # the quantile, see module docstring
        log = self.distribution == "logUniform"
        if self.kind == "int":
            return IntDistribution(int(self.low), int(self.high), log=log,
                                   step=1 if log else int(self.step or 1))
        step = None if log or self.step is None else self.step
        return FloatDistribution(self.low, self.high, log=log, step=step)

    def to_katib(self, value: Any) -> str:
        """An Optuna value → the string Katib would assign."""
        if self.choices:
            return str(value)
        if self.distribution in ("normal", "logNormal"):
            value = self._quantile_to_value(float(value))
        if self.kind == "int":
            return str(round(value))
        return repr(float(value))

    def from_katib(self, value: str) -> Any:
        """A Katib string → the Optuna value (inverse of :meth:`to_katib`)."""
        if self.choices:
            return value
        number = int(value) if self.kind == "int" else float(value)
        if self.distribution in ("normal", "logNormal"):
            return self._value_to_quantile(float(number))
        return number

    def _normal(self) -> tuple[NormalDist, float, float]:
        lo, hi = self.low, self.high
        if self.distribution == "logNormal":
            lo, hi = math.log(lo), math.log(hi)
        return NormalDist((lo + hi) / 2, (hi - lo) / 6 or 1e-12), lo, hi

    def _quantile_to_value(self, q: float) -> float:
        dist, lo, hi = self._normal()
        a, b = dist.cdf(lo), dist.cdf(hi)
        x = dist.inv_cdf(min(max(a + q * (b - a), 1e-12), 1 - 1e-12))
        x = min(max(x, lo), hi)
        return math.exp(x) if self.distribution == "logNormal" else x

    def _value_to_quantile(self, value: float) -> float:
        dist, lo, hi = self._normal()
        x = math.log(value) if self.distribution == "logNormal" else value
        a, b = dist.cdf(lo), dist.cdf(hi)
        return min(max((dist.cdf(x) - a) / (b - a), 0.0), 1.0)

    def sample(self, rng: np.random.Generator) -> str:
        """One value drawn from the parameter's prior (uniform, log-uniform or normal)."""
        if self.choices:
            return str(self.choices[rng.integers(len(self.choices))])
        count = self.count()
        if count is not None and self.distribution == "uniform":
            return self.value(_index(rng, count))
        if self.distribution in ("normal", "logNormal"):
            return self.to_katib(rng.uniform())
        if self.distribution == "logUniform":
            return self.to_katib(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return self.to_katib(rng.uniform(self.low, self.high))

    def count(self) -> int | None:
        """How many values, if finite (int, categorical, discrete, double with a step), counted
        without listing them: a range's size never costs memory or time."""
        if self.choices:
            return len(self.choices)
        if self.kind == "int":
            return (int(self.high) - int(self.low)) // int(self.step or 1) + 1
        if self.step is None:
            return None
        return math.floor((self.high - self.low) / self.step + 1e-9) + 1

    def value(self, index: int) -> str:
        """The ``index``-th value of a finite parameter, in the order :meth:`grid` lists them."""
        if self.choices:
            return str(self.choices[index])
        if self.kind == "int":
            return str(int(self.low) + index * int(self.step or 1))
        return repr(round(self.low + index * float(self.step or 0), 12))

    def grid(self) -> list[str] | None:
        """Every value, if finite; only for spaces checked to be small (``ENUMERATE_LIMIT``)."""
        count = self.count()
        if count is None:
            return None
        if count > ENUMERATE_LIMIT:
            raise ValueError(f"{self.name} has {count:.3g} values, more than can be listed")
        return [self.value(i) for i in range(count)]


def product(counts: list[int]) -> float:
    """The product of value counts as a float, ``inf`` past the float range."""
    try:
        return float(math.prod(counts))
    except OverflowError:
        return math.inf


def _index(rng: np.random.Generator, count: int) -> int:
    """A uniform index below ``count``, also past numpy's 64-bit integers."""
    return int(rng.integers(count)) if count < 2**62 else int(rng.uniform() * count)


def parameters(spec: Any) -> list[Parameter]:
    return [Parameter.from_spec(p) for p in spec.parameters or []]


def _katib_values(p: Any) -> list[Any]:
    """Katib's ENAS expansion of one operation parameter (docs/katib.md §1.1)."""
    fs = p.feasible_space
    if p.parameter_type == "categorical":
        return list(fs.list)
    if p.parameter_type == "int":
        return list(range(int(fs.min), int(fs.max) + 1, int(fs.step or 1)))
    values = list(np.arange(float(fs.min), float(fs.max) + float(fs.step), float(fs.step)))
    return [float(v) for v in values if v <= float(fs.max) + 1e-12]


def operation_count(nas_config: Any) -> float:
    """How many operations :func:`enas_operations` would list, counted without listing them
    (``inf`` where a parameter has no finite set of values)."""
    total = 0.0
    for op in nas_config.operations or []:
        counts = [Parameter.from_spec(p).count() for p in op.parameters or []]
        total += math.inf if None in counts else product(counts)
    return total


def enas_operations(nas_config: Any) -> list[dict[str, Any]]:
    """Every operation id Katib's ENAS service would number, in its order."""
    operations = []
    for op in nas_config.operations:
        names = [p.name for p in op.parameters]
        for combo in itertools.product(*(_katib_values(p) for p in op.parameters)):
            operations.append({"opt_id": len(operations), "opt_type": op.operation_type,
                               "opt_params": dict(zip(names, combo, strict=True))})
    return operations


def darts_primitives(nas_config: Any) -> list[str]:
    """Katib's DARTS search space: ``<type>_<f>x<f>`` per value of the first parameter."""
    primitives = []
    for op in nas_config.operations:
        if op.operation_type == "skip_connection":
            primitives.append("skip_connection")
            continue
        for size in op.parameters[0].feasible_space.list:
            primitives.append(f"{op.operation_type}_{size}x{size}")
    return primitives


def size(experiment: Any) -> tuple[float, str]:
    """Number of distinct candidates and how it is counted."""
    spec = experiment.spec
    if spec.nas_config is not None and spec.algorithm.algorithm_name == "darts":
        prims = [*darts_primitives(spec.nas_config), "none"]
        return float("inf"), (f"DARTS relaxes {len(prims)} primitives per edge; each trial runs "
                              "a whole search")
    space = Space.of(spec)
    if spec.nas_config is not None:
        layers = spec.nas_config.graph_config.num_layers
        return space.size, (f"{operation_count(spec.nas_config):.0f} operations ^ {layers} "
                            f"layers × 2 ^ {layers * (layers - 1) // 2} skip bits")
    counts = [p.count() for p in space.parameters]
    if math.isinf(space.size):
        finite = product([c for c in counts if c is not None])
        return space.size, (f"{sum(c is None for c in counts)} real-valued parameter(s) × "
                            f"{finite:.4g} discrete combinations")
    return space.size, " × ".join(f"{p.name}:{c}"
                                  for p, c in zip(space.parameters, counts, strict=True))


def enas_assignments(arc: list[list[int]], operations: list[dict[str, Any]],
                     graph: Any) -> dict[str, str]:
    """Katib's ENAS wire format for one architecture (docs/katib.md §1.2), byte for byte."""
    nn_config: dict[str, Any] = {"num_layers": graph.num_layers,
                                 "input_sizes": list(graph.input_sizes or []),
                                 "output_sizes": list(graph.output_sizes or []),
                                 "embedding": {}}
    for row in arc:
        nn_config["embedding"][row[0]] = operations[row[0]]
    return {"architecture": json.dumps(arc).replace('"', "'"),
            "nn_config": json.dumps(nn_config).replace('"', "'")}


def enas_architecture(assignments: dict[str, str]) -> list[list[int]]:
    return json.loads(assignments["architecture"].replace("'", '"'))


def key(assignments: dict[str, str]) -> str:
    """One configuration as a hashable, order-independent key."""
    return json.dumps(assignments, sort_keys=True)


@dataclass(frozen=True)
class Space:
    """A search space as a set of configurations (Katib-style assignments): hyperparameters, or
    the ENAS wire format of a ``nasConfig``. DARTS' space is searched inside a trial: ``None``."""

    parameters: tuple[Parameter, ...] = ()
    nas: Any = None  # nasConfig for ENAS-format spaces

    @classmethod
    def of(cls, spec: Any) -> Space:
        if spec.nas_config is not None:
            return cls(nas=spec.nas_config)
        return cls(parameters=tuple(parameters(spec)))

    @functools.cached_property
    def operations(self) -> list[dict[str, Any]]:
        """The ENAS operations, listed once per space (not once per sample)."""
        return enas_operations(self.nas)

    @functools.cached_property
    def size(self) -> float:
        """How many distinct configurations (``inf`` if any parameter is continuous)."""
        if self.nas is not None:
            layers = self.nas.graph_config.num_layers
            bits = layers * (layers - 1) // 2
            try:
                return operation_count(self.nas) ** layers * 2.0 ** bits
            except OverflowError:
                return math.inf
        counts = [p.count() for p in self.parameters]
        return math.inf if None in counts else product(counts)

    def sample(self, rng: np.random.Generator) -> dict[str, str]:
        """One configuration from the prior (uniform over operations and skip bits for NAS)."""
        if self.nas is None:
            return {p.name: p.sample(rng) for p in self.parameters}
        operations = self.operations
        arc = [[int(rng.integers(len(operations)))] + [int(b) for b in rng.integers(0, 2, r)]
               for r in range(self.nas.graph_config.num_layers)]
        return enas_assignments(arc, operations, self.nas.graph_config)

    def configurations(self) -> Iterator[dict[str, str]]:
        """Every configuration of a finite space, in a fixed order."""
        if self.nas is not None:
            operations = self.operations
            layers = self.nas.graph_config.num_layers
            rows = [[[op, *bits] for op in range(len(operations))
                     for bits in itertools.product((0, 1), repeat=r)] for r in range(layers)]
            for arc in itertools.product(*rows):
                yield enas_assignments([list(row) for row in arc], operations,
                                       self.nas.graph_config)
            return
        grids = [p.grid() or [] for p in self.parameters]
        for values in itertools.product(*grids):
            yield dict(zip((p.name for p in self.parameters), values, strict=True))

    def unvisited(self, seen: Container[str], rng: np.random.Generator,
                  draws: int = 10_000) -> dict[str, str] | None:
        """A random configuration whose :func:`key` is not in ``seen``; None when a finite space
        has none left."""
        if self.size <= ENUMERATE_LIMIT:
            left = [c for c in self.configurations() if key(c) not in seen]
            return left[int(rng.integers(len(left)))] if left else None
        for _ in range(draws):  # a large space: a random draw is almost surely new
            candidate = self.sample(rng)
            if key(candidate) not in seen:
                return candidate
        return None
