"""The optimal trial of an experiment, from either engine, in one shape.

Katib writes it to ``status.currentOptimalTrial``; the embedded engine keeps the same structure in
its state database. The objective value follows Katib's metric strategy (``max`` for maximize,
``min`` for minimize unless ``metricStrategies`` says otherwise).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubeflow_katib_api.models import V1beta1Experiment

from pipeline.katib.objective import metric_strategy


class NoOptimalTrial(Exception):
    """The experiment has no trial to promote (message says why)."""


@dataclass(frozen=True)
class OptimalTrial:
    experiment: str
    namespace: str
    trial: str
    metric: str
    maximize: bool
    value: float | None  # None: not numeric (e.g. a DARTS genotype)
    algorithm: str
    assignments: dict[str, str] = field(default_factory=dict)


def _strategy_value(metrics: list[dict[str, Any]], name: str, strategy: str) -> float | None:
    for metric in metrics:
        if metric.get("name") == name:
            for key in (strategy, "latest"):
                try:
                    value = float(metric.get(key))
                except (TypeError, ValueError):
                    continue
                if math.isfinite(value):
                    return value
    return None


def _from_spec(experiment: V1beta1Experiment, name: str, namespace: str,
               optimal: dict[str, Any] | None) -> OptimalTrial:
    if not optimal or not optimal.get("bestTrialName"):
        raise NoOptimalTrial(f"experiment {name!r} has no optimal trial yet (no trial reported "
                             "the objective)")
    objective = experiment.spec.objective
    metric = objective.objective_metric_name
    return OptimalTrial(
        experiment=name, namespace=namespace, trial=optimal["bestTrialName"], metric=metric,
        maximize=objective.type == "maximize",
        value=_strategy_value(optimal.get("observation", {}).get("metrics", []), metric,
                              metric_strategy(objective, metric)),
        algorithm=experiment.spec.algorithm.algorithm_name,
        assignments={a["name"]: str(a["value"]) for a in optimal.get("parameterAssignments", [])})


def from_katib(experiment: V1beta1Experiment) -> OptimalTrial:
    """From a Katib Experiment read from the cluster."""
    raw = experiment.to_dict()
    return _from_spec(experiment, experiment.metadata.name,
                      experiment.metadata.namespace or "default",
                      raw.get("status", {}).get("currentOptimalTrial"))


def from_engine_state(workdir: Path, name: str) -> OptimalTrial:
    """From the embedded engine's state (``<workdir>/<name>/state.db``)."""
    from pipeline.engine.state import StateError, read_state

    try:
        saved, _ = read_state(workdir, name)
    except StateError as exc:
        raise NoOptimalTrial(str(exc)) from None
    manifest, status, _ = saved
    raw = yaml.safe_load(manifest)
    experiment = V1beta1Experiment.from_dict(json.loads(json.dumps(raw)))
    return _from_spec(experiment, name, experiment.metadata.namespace or "default",
                      status.get("currentOptimalTrial"))
