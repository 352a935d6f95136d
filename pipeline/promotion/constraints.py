"""Promotion within a budget: ``--constraint "Inference-Latency-Ms<=2"`` picks the most accurate
model that meets every constraint, instead of the optimal trial and then a gate.

Candidates are the experiment's finished MLflow runs, which carry every measure the trial image
logs (``Parameter-Count``, ``Model-Size-Bytes``, ``Multiply-Adds``, ``Inference-Latency-Ms``,
accuracies). A final model (``nasflow finalize``) that meets them wins, ranked by its
Test-Accuracy, as promotion compares final models; otherwise the search trials are ranked by
``Best-Validation-Accuracy`` (what the search measured; the test split never chooses), or by the
run metric ``--metric`` names.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.promotion.optimal_trial import OptimalTrial
from pipeline.promotion.registry import PromotionError, Registry
from trial_image.contract import tags

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}
_SYNTAX = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*(<=|>=|<|>)\s*([-+]?[0-9.]+(?:[eE][-+]?\d+)?)\s*$")
TRIAL_RANKING = "Best-Validation-Accuracy"
FINAL_RANKING = "Test-Accuracy"


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


def within_budget(registry: Registry, experiment: str, namespace: str,
                  constraints: Sequence[Constraint], stage: str, metric: str | None
                  ) -> OptimalTrial:
    """The most accurate run of ``experiment`` meeting every constraint, as the trial to
    promote; PromotionError naming the closest runs when none does."""
    runs = registry.runs_of(experiment, namespace)
    finals = [r for r in runs if r.data.tags.get(tags.ROLE) == "final"]
    trials = [r for r in runs if r.data.tags.get(tags.ROLE, "trial") == "trial"]
    pools = {"final": [(finals, FINAL_RANKING)], "search": [(trials, metric or TRIAL_RANKING)],
             "auto": [(finals, FINAL_RANKING), (trials, metric or TRIAL_RANKING)]}[stage]
    for pool, ranking in pools:
        meeting = [r for r in pool if all(c.holds(r.data.metrics) for c in constraints)
                   and r.data.metrics.get(ranking) is not None]
        if meeting:
            best = max(meeting, key=lambda r: (r.data.metrics[ranking], r.info.end_time or 0))
            if pool is finals:
                return registry.final_trial(experiment, namespace, best.info.run_id)
            return OptimalTrial(experiment, namespace, best.data.tags[tags.TRIAL], ranking, True,
                                best.data.metrics[ranking], best.data.tags.get(tags.ALGORITHM, ""))
    candidates = [r for pool, _ in pools for r in pool]
    if not candidates:
        raise PromotionError(f"experiment {experiment!r} has no finished MLflow run at "
                             f"{registry.uri} to promote")
    closest = sorted(candidates, key=lambda r: sum(c.excess(r.data.metrics)
                                                   for c in constraints))[:3]
    raise PromotionError(
        f"no model of experiment {experiment!r} meets {', '.join(map(str, constraints))}; "
        "closest: " + "; ".join(_describe(r, constraints) for r in closest))


def _describe(run: Any, constraints: Sequence[Constraint]) -> str:
    measured = ", ".join(f"{c.metric} {run.data.metrics[c.metric]:.6g}"
                         if c.metric in run.data.metrics else f"no {c.metric}"
                         for c in constraints)
    role = run.data.tags.get(tags.ROLE, "trial")
    return f"{role} {run.data.tags.get(tags.TRIAL, run.info.run_id)} ({measured})"
