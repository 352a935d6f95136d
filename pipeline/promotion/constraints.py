"""Promotion within a budget: ``--constraint "Inference-Latency-Ms<=2"`` picks the best model
that meets every constraint, instead of the optimal trial and then a gate.

Candidates are the experiment's finished MLflow runs, which carry every measure the trial image
logs (``Parameter-Count``, ``Model-Size-Bytes``, ``Multiply-Adds``, ``Inference-Latency-Ms``,
accuracies or errors). A final model (``nasflow finalize``) that meets them wins, ranked by its
task's test measure (Test-Accuracy, highest; Test-RMSE, lowest), as promotion compares final
models; otherwise the search trials are ranked by ``Best-Validation-Accuracy`` or
``Best-Validation-RMSE`` (what the search measured; the test split never chooses), or by the run
metric ``--metric`` names (highest).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipeline.promotion.gates import Constraint
from pipeline.promotion.optimal_trial import OptimalTrial
from pipeline.promotion.registry import PromotionError, Registry
from trial_image.contract import tags, task_of


def within_budget(registry: Registry, experiment: str, namespace: str,
                  constraints: Sequence[Constraint], stage: str, metric: str | None
                  ) -> OptimalTrial:
    """The best run of ``experiment`` meeting every constraint, as the trial to promote;
    PromotionError naming the closest runs when none does."""
    runs = registry.runs_of(experiment, namespace)
    finals = [r for r in runs if r.data.tags.get(tags.ROLE) == "final"]
    trials = [r for r in runs if r.data.tags.get(tags.ROLE, "trial") == "trial"]
    task = task_of(runs[0].data.tags.get(tags.TASK)) if runs else task_of(None)
    final_ranking = (task.test_metric, task.maximize)
    trial_ranking = (metric, True) if metric else (task.best_validation_metric, task.maximize)
    pools = {"final": [(finals, final_ranking)], "search": [(trials, trial_ranking)],
             "auto": [(finals, final_ranking), (trials, trial_ranking)]}[stage]
    for pool, (ranking, maximize) in pools:
        meeting = [r for r in pool if all(c.holds(r.data.metrics) for c in constraints)
                   and r.data.metrics.get(ranking) is not None]
        if meeting:
            sign = 1.0 if maximize else -1.0
            best = max(meeting, key=lambda r: (sign * r.data.metrics[ranking],
                                               r.info.end_time or 0))
            if pool is finals:
                return registry.final_trial(experiment, namespace, best.info.run_id)
            return OptimalTrial(experiment, namespace, best.data.tags[tags.TRIAL], ranking,
                                maximize, best.data.metrics[ranking],
                                best.data.tags.get(tags.ALGORITHM, ""))
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
