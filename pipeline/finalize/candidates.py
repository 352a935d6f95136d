"""The search's best trials, from either engine: what final training starts from.

Ranked by the experiment's objective under Katib's metric strategy (``max`` when maximising,
``min`` when minimising, unless ``metricStrategies`` says otherwise); only Succeeded and
EarlyStopped trials with a finite value count. Ties keep the trial that ran first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubeflow_katib_api.models import V1beta1Experiment

from pipeline.engine.state import StateError, read_state
from pipeline.finalize.errors import NoCandidates
from pipeline.katib.objective import PICK, metric_strategy, numbers
from pipeline.katib.status import SCORED


@dataclass(frozen=True)
class Candidate:
    trial: str
    assignments: dict[str, str]
    value: float


@dataclass(frozen=True)
class Search:
    """A finished search: its manifest (typed), where it ran, its best trials first."""

    experiment: V1beta1Experiment
    name: str
    namespace: str
    candidates: list[Candidate]

    @property
    def maximize(self) -> bool:
        return self.experiment.spec.objective.type == "maximize"


def _ranked(experiment: V1beta1Experiment, scored: list[tuple[str, dict[str, str], list[str]]]
            ) -> list[Candidate]:
    """(trial, assignments, objective values in order) -> candidates, best first."""
    objective = experiment.spec.objective
    pick = PICK[metric_strategy(objective, objective.objective_metric_name)]
    candidates = [Candidate(trial, assignments, pick(values))
                  for trial, assignments, raw in scored if (values := numbers(raw))]
    sign = -1.0 if objective.type == "maximize" else 1.0
    return sorted(candidates, key=lambda c: sign * c.value)  # stable: earlier trials first


def from_state(workdir: Path, name: str) -> Search:
    """From the embedded engine's state (``<workdir>/<name>/state.db``)."""
    try:
        saved, trials = read_state(workdir, name)
    except StateError as exc:
        raise NoCandidates(str(exc)) from None
    experiment = V1beta1Experiment.from_dict(json.loads(json.dumps(yaml.safe_load(saved[0]))))
    objective = experiment.spec.objective.objective_metric_name
    scored = [(t.name, t.assignments, t.observations.get(objective, []))
              for t in trials if t.status in SCORED]
    return Search(experiment, name, experiment.metadata.namespace or "default",
                  _ranked(experiment, scored))


def from_katib(client: Any, name: str) -> Search:
    """From Katib: the Experiment and its Trials as the controllers wrote them."""
    from pipeline.cluster.client import condition

    experiment = client.get_experiment(name)
    objective = experiment.spec.objective.objective_metric_name
    strategy = metric_strategy(experiment.spec.objective, objective)
    scored = []
    for trial in client.list_trials(name):
        if condition(trial) not in SCORED:
            continue
        metrics = (trial.status.observation.metrics if trial.status and trial.status.observation
                   else None) or []
        value = next((getattr(m, strategy) for m in metrics if m.name == objective), None)
        scored.append((trial.metadata.name,
                       {a.name: str(a.value) for a in trial.spec.parameter_assignments or []},
                       [] if value is None else [str(value)]))
    return Search(experiment, name, client.namespace, _ranked(experiment, scored))
