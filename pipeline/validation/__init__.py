"""The checks Katib's admission webhook and suggestion services make, before anything starts.

One module per manifest section; every problem names its field path and the rule.
:func:`validate` covers what Katib itself would refuse; :mod:`~pipeline.validation.support` says
what each engine cannot run of a valid manifest (a ConfigMap template needs a cluster,
nasflow's own algorithms need the embedded engine).
"""

from __future__ import annotations

from typing import Any

from kubeflow_katib_api.models import V1beta1Experiment

from pipeline.katib.manifest import Problem, parse
from pipeline.validation.algorithm import check_algorithm
from pipeline.validation.early_stopping import check_early_stopping
from pipeline.validation.experiment import check_counts, check_name, check_objective
from pipeline.validation.metrics_collector import check_metrics_collector
from pipeline.validation.space import check_space
from pipeline.validation.support import (
    cluster_support,
    engine_support,
    ignored_settings,
    katib_limits,
    nasflow_services,
)
from pipeline.validation.trial_template import check_trial_template

__all__ = ["cluster_support", "engine_support", "ignored_settings", "katib_limits",
           "nasflow_services",
           "validate"]


def validate(source: str, raw: dict[str, Any]) -> tuple[V1beta1Experiment | None, list[Problem]]:
    """All problems Katib would refuse the manifest for (empty list = valid)."""
    experiment, problems = parse(source, raw)
    if experiment is None:
        return None, problems
    if raw.get("apiVersion") != "kubeflow.org/v1beta1":
        problems.append(Problem("apiVersion", "must be kubeflow.org/v1beta1"))
    problems += check_name(experiment)
    spec = experiment.spec
    if spec is None:
        return experiment, [*problems, Problem("spec", "required")]
    problems += check_counts(spec)
    problems += check_objective(spec)
    space = check_space(spec)
    problems += check_algorithm(spec, space_valid=not space)
    problems += space
    problems += check_trial_template(spec, raw)
    problems += check_metrics_collector(spec, raw)
    problems += check_early_stopping(spec.early_stopping)
    if spec.resume_policy not in (None, "Never", "LongRunning", "FromVolume"):
        problems.append(Problem("spec.resumePolicy", "must be Never, LongRunning or FromVolume"))
    return experiment, problems
