"""The Experiment's own fields: its name, trial counts, objective and resume policy."""

from __future__ import annotations

import math
import re
from typing import Any

from pipeline.katib.manifest import Problem

NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def check_name(experiment: Any) -> list[Problem]:
    """Katib's name rule; 40 characters leave room for its trial and suggestion names."""
    out = []
    name = (experiment.metadata.name if experiment.metadata else None) or ""
    if not NAME_RE.match(name):
        out.append(Problem("metadata.name", f"{name!r} must match {NAME_RE.pattern}"))
    elif len(name) > 40:
        out.append(Problem("metadata.name", f"must be at most 40 characters ({len(name)})"))
    return out


def int32(value: Any, where: str) -> list[Problem]:
    """Katib's counts and sizes are Go int32s: a larger number cannot even be decoded."""
    if isinstance(value, int) and not -2**31 <= value < 2**31:
        return [Problem(where, f"{value} does not fit Katib's int32 (at most {2**31 - 1})")]
    return []


def check_counts(spec: Any) -> list[Problem]:
    out = []
    for field, value in (("maxTrialCount", spec.max_trial_count),
                         ("parallelTrialCount", spec.parallel_trial_count),
                         ("maxFailedTrialCount", spec.max_failed_trial_count)):
        out += int32(value, f"spec.{field}")
        if value is not None and value < (0 if field == "maxFailedTrialCount" else 1):
            out.append(Problem(f"spec.{field}", "must be positive"))
    if spec.max_trial_count is not None:
        if (spec.parallel_trial_count or 3) > spec.max_trial_count:
            out.append(Problem("spec.parallelTrialCount",
                               f"must be <= maxTrialCount ({spec.max_trial_count})"))
        if (spec.max_failed_trial_count or 0) > spec.max_trial_count:
            out.append(Problem("spec.maxFailedTrialCount",
                               f"must be <= maxTrialCount ({spec.max_trial_count})"))
    return out


def check_objective(spec: Any) -> list[Problem]:
    objective = spec.objective
    if objective is None:
        return [Problem("spec.objective", "required")]
    out = []
    if objective.goal is not None and not math.isfinite(objective.goal):
        out.append(Problem("spec.objective.goal", "must be a finite number"))
    if objective.type not in ("minimize", "maximize"):
        out.append(Problem("spec.objective.type", "must be minimize or maximize"))
    if not objective.objective_metric_name:
        out.append(Problem("spec.objective.objectiveMetricName", "required"))
    additional = objective.additional_metric_names or []
    if objective.objective_metric_name in additional:
        i = additional.index(objective.objective_metric_name)
        out.append(Problem(f"spec.objective.additionalMetricNames[{i}]",
                           "must not repeat the objective metric"))
    for i, strategy in enumerate(objective.metric_strategies or []):
        if strategy.value not in ("min", "max", "latest"):
            out.append(Problem(f"spec.objective.metricStrategies[{i}].value",
                               "must be min, max or latest"))
    return out


