"""Early stopping (Katib's EarlyStopping): ``medianstop`` as Katib ships it and ``asha``, the
same rules on the embedded engine and, through ``python -m pipeline.service --serve
early-stopping``, on Katib."""

from __future__ import annotations

from typing import Any

from pipeline.early_stopping.asha import ASHA
from pipeline.early_stopping.base import EarlyStopping
from pipeline.early_stopping.medianstop import MedianStop

ALGORITHMS: dict[str, type[EarlyStopping]] = {a.name: a for a in (MedianStop, ASHA)}
KATIB_SHIPS = ("medianstop",)  # the others are served by nasflow's early-stopping service


def create(spec: Any) -> EarlyStopping | None:
    """The experiment's early stopping (``spec``: a V1beta1ExperimentSpec, validated)."""
    es = spec.early_stopping
    if es is None:
        return None
    settings = {s.name: str(s.value) for s in es.algorithm_settings or []}
    objective = spec.objective
    return ALGORITHMS[es.algorithm_name](settings, objective.objective_metric_name,
                                         objective.type == "maximize")
