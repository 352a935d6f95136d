"""Promotion gates: what a model must meet before it may become champion, whatever it beats.

Each gate reads a metric the trial image logs with the model: ``Test-Accuracy`` (the test split,
evaluated once), ``Inference-Latency-Ms`` (batch 1, CPU) and ``Parameter-Count``, or any run
metric a condition names (``--gate "Test-RMSE<=55"`` for a regression, ``Test-R2>=0.4``).
A model that fails one is still registered, as ``challenger``, with the reason in its version
tags.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}
_SYNTAX = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*(<=|>=|<|>)\s*([-+]?[0-9.]+(?:[eE][-+]?\d+)?)\s*$")


@dataclass(frozen=True)
class Constraint:
    metric: str
    op: str
    bound: float

    @classmethod
    def parse(cls, text: str) -> Constraint:
        match = _SYNTAX.match(text)
        if not match or not math.isfinite(float(match[3])):
            raise ValueError(f"--constraint {text!r}: write METRIC<=NUMBER (or >=, <, >), e.g. "
                             "Inference-Latency-Ms<=2")
        return cls(match[1], match[2], float(match[3]))

    def holds(self, metrics: dict[str, float]) -> bool:
        value = metrics.get(self.metric)
        return value is not None and OPERATORS[self.op](value, self.bound)

    def excess(self, metrics: dict[str, float]) -> float:
        """How far a run misses the bound, relative to it (0: met; inf: not measured)."""
        value = metrics.get(self.metric)
        if value is None:
            return math.inf
        return 0.0 if self.holds(metrics) else abs(value - self.bound) / (abs(self.bound) or 1)

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.bound:g}"


def conditions(text: str) -> tuple[Constraint, ...]:
    """``"Test-RMSE<=55, Test-R2>=0.4"``: comma-separated conditions (ValueError names one)."""
    return tuple(Constraint.parse(part) for part in text.split(",") if part.strip())


@dataclass(frozen=True)
class Gates:
    min_accuracy: float | None = None
    max_latency_ms: float | None = None
    max_parameters: float | None = None
    metrics: str = ""  # conditions on any run metric, comma-separated

    def __post_init__(self) -> None:
        conditions(self.metrics)  # refuse a malformed condition when the gates are made

    def failures(self, metrics: dict[str, float]) -> list[str]:
        """One line per failed gate (empty: every gate passed or none was set)."""
        out = []
        for name, metric, limit, at_least in (
                ("min-accuracy", "Test-Accuracy", self.min_accuracy, True),
                ("max-latency-ms", "Inference-Latency-Ms", self.max_latency_ms, False),
                ("max-parameters", "Parameter-Count", self.max_parameters, False)):
            if limit is None:
                continue
            value = metrics.get(metric)
            if value is None:
                out.append(f"{name}: the run has no {metric}")
            elif (value < limit) if at_least else (value > limit):
                out.append(f"{name}: {metric} {value:.6g} {'<' if at_least else '>'} {limit:g}")
        for condition in conditions(self.metrics):
            value = metrics.get(condition.metric)
            if value is None:
                out.append(f"gate {condition}: the run has no {condition.metric}")
            elif not condition.holds(metrics):
                out.append(f"gate {condition}: {condition.metric} is {value:.6g}")
        return out

    def __str__(self) -> str:
        return ", ".join([f"{name} {limit:g}" for name, limit in (
            ("min-accuracy", self.min_accuracy), ("max-latency-ms", self.max_latency_ms),
            ("max-parameters", self.max_parameters)) if limit is not None]
            + [str(c) for c in conditions(self.metrics)]) or "none"
