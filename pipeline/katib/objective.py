"""How Katib reads an objective: which of a metric's values counts, and which way is better."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

# metricStrategies value -> the value it picks from the values in the order reported
PICK: dict[str, Callable[[Sequence[float]], float]] = {
    "min": min, "max": max, "latest": lambda values: values[-1]}


def metric_strategy(objective: Any, metric: str) -> str:
    """Which of a metric's min/max/latest is its value (Katib's experiment defaults): the
    objective's ``metricStrategies`` entry, else max for a maximize objective and min for a
    minimize one; Katib gives additional metrics the objective's default too."""
    for strategy in objective.metric_strategies or []:
        if strategy.name == metric:
            return strategy.value
    return "max" if objective.type == "maximize" else "min"


def numbers(values: Sequence[str]) -> list[float]:
    """The finite numbers among ``values`` (strings as collected)."""
    out = []
    for v in values:
        try:
            number = float(v)
        except ValueError:
            continue
        if math.isfinite(number):
            out.append(number)
    return out
