"""Katib's gRPC messages ↔ the Experiment model and the trial results the algorithms read.

The request's experiment becomes the same ``V1beta1Experiment`` a manifest parses to (one model,
one validation); its trials become :class:`TrialResult` by the index label the service gave
each suggestion.
"""

from __future__ import annotations

import re
from typing import Any

from kubeflow_katib_api.models import V1beta1Experiment

from pipeline.katib.status import SCORED, TrialStatus
from pipeline.service.api import api_pb2
from pipeline.suggestion.base import TrialResult

INDEX_LABEL = "nasflow.dev/suggestion-index"
MAX_TRIALS = 100_000  # trials one search may have: every request replays them all
INDEX_RE = re.compile(r"[0-9]{1,12}")


PARAMETER_TYPES = {api_pb2.DOUBLE: "double", api_pb2.INT: "int", api_pb2.DISCRETE: "discrete",
                   api_pb2.CATEGORICAL: "categorical"}
DISTRIBUTIONS = {api_pb2.UNIFORM: "uniform", api_pb2.LOG_UNIFORM: "logUniform",
                 api_pb2.NORMAL: "normal", api_pb2.LOG_NORMAL: "logNormal"}
CONDITIONS = {
    api_pb2.TrialStatus.CREATED: TrialStatus.CREATED,
    api_pb2.TrialStatus.RUNNING: TrialStatus.RUNNING,
    api_pb2.TrialStatus.SUCCEEDED: TrialStatus.SUCCEEDED,
    api_pb2.TrialStatus.KILLED: TrialStatus.KILLED,
    api_pb2.TrialStatus.FAILED: TrialStatus.FAILED,
    api_pb2.TrialStatus.METRICSUNAVAILABLE: TrialStatus.METRICS_UNAVAILABLE,
    api_pb2.TrialStatus.EARLYSTOPPED: TrialStatus.EARLY_STOPPED,
}


class BadRequest(ValueError):
    """A request that names something impossible; ``str()`` names the field."""


def _parameter(p: Any) -> dict[str, Any]:
    fs = p.feasible_space
    space: dict[str, Any] = {k: getattr(fs, k) for k in ("min", "max", "step") if getattr(fs, k)}
    if fs.list:
        space["list"] = list(fs.list)
    if fs.distribution in DISTRIBUTIONS:
        space["distribution"] = DISTRIBUTIONS[fs.distribution]
    return {"name": p.name, "parameterType": PARAMETER_TYPES.get(p.parameter_type, "unknown"),
            "feasibleSpace": space}


def experiment_of(message: Any) -> V1beta1Experiment:
    """The request's experiment as Katib's own typed model (the fields an algorithm reads)."""
    spec = message.spec
    objective = spec.objective
    doc: dict[str, Any] = {
        "objective": {"type": {api_pb2.MINIMIZE: "minimize", api_pb2.MAXIMIZE: "maximize"}.get(
            objective.type, "unknown"), "objectiveMetricName": objective.objective_metric_name,
            "additionalMetricNames": list(objective.additional_metric_names)},
        "algorithm": {"algorithmName": spec.algorithm.algorithm_name, "algorithmSettings": [
            {"name": s.name, "value": s.value} for s in spec.algorithm.algorithm_settings]},
        "parallelTrialCount": spec.parallel_trial_count or None,
        "maxTrialCount": spec.max_trial_count or None,
    }
    if spec.HasField("nas_config"):
        nas = spec.nas_config
        doc["nasConfig"] = {
            "graphConfig": {"numLayers": nas.graph_config.num_layers,
                            "inputSizes": list(nas.graph_config.input_sizes),
                            "outputSizes": list(nas.graph_config.output_sizes)},
            "operations": [{"operationType": op.operation_type,
                            "parameters": [_parameter(p) for p in op.parameter_specs.parameters]}
                           for op in nas.operations.operation]}
    else:
        doc["parameters"] = [_parameter(p) for p in spec.parameter_specs.parameters]
    return V1beta1Experiment.from_dict({"apiVersion": "kubeflow.org/v1beta1",
                                        "kind": "Experiment",
                                        "metadata": {"name": message.name}, "spec": doc})


def results_of(trials: Any, experiment: V1beta1Experiment) -> dict[int, TrialResult]:
    """Each trial the service suggested, by index: assignments, condition, metric values (Katib
    sends each metric's value under its strategy)."""
    objective = experiment.spec.objective.objective_metric_name
    out = {}
    for trial in trials:
        index = trial.spec.labels.get(INDEX_LABEL)
        if index is None or not INDEX_RE.fullmatch(index):
            continue  # not ours (created by hand): not part of the search's sequence
        if int(index) >= MAX_TRIALS:
            raise BadRequest(f"trials[{trial.name}].labels[{INDEX_LABEL}]: {index} is past the "
                             f"{MAX_TRIALS:,} trials nasflow's service replays")
        status = CONDITIONS.get(trial.status.condition, TrialStatus.CREATED)
        metrics: dict[str, float | None] = {}
        for metric in trial.status.observation.metrics:
            try:
                metrics[metric.name] = float(metric.value)
            except ValueError:
                metrics[metric.name] = None
        scored = status in SCORED
        out[int(index)] = TrialResult(
            int(index), {a.name: a.value for a in trial.spec.parameter_assignments.assignments},
            status, metrics.get(objective) if scored else None, metrics if scored else {})
    return out
