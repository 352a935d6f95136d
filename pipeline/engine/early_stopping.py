"""Katib's ``medianstop`` early stopping (``pkg/earlystopping/v1beta1/medianstop``).

Once ``min_trials_required`` (default 3) trials have succeeded, the rule's value is the mean over
them of the mean of each one's first ``start_step`` (default 4) objective values — Katib calls it
a median but computes this mean. The rule is attached to trials created from then on; such a
trial is stopped (status EarlyStopped) once it has reported ``start_step`` values and its best so
far is worse than the rule (``less`` for maximize, ``greater`` for minimize).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import fmean
from typing import Any

from pipeline.engine.state import TrialRecord
from pipeline.katib.objective import numbers
from pipeline.katib.status import TrialStatus


@dataclass(frozen=True)
class MedianStop:
    min_trials_required: int = 3
    start_step: int = 4

    @classmethod
    def of(cls, spec: Any) -> MedianStop | None:
        es = spec.early_stopping
        if es is None:
            return None
        settings = {s.name: int(s.value) for s in es.algorithm_settings or []}
        return cls(**settings)

    def rule(self, trials: Sequence[TrialRecord], objective: str, maximize: bool
             ) -> dict[str, Any] | None:
        firsts = [numbers(t.observations.get(objective, []))[:self.start_step]
                  for t in trials if t.status == TrialStatus.SUCCEEDED]
        firsts = [f for f in firsts if f]
        if len(firsts) < self.min_trials_required:
            return None
        return {"name": objective, "comparison": "less" if maximize else "greater",
                "value": fmean(fmean(f) for f in firsts), "start_step": self.start_step}


def should_stop(rule: dict[str, Any], observed: Sequence[str]) -> bool:
    values = numbers(observed)
    if len(values) < rule["start_step"]:
        return False
    if rule["comparison"] == "less":
        return max(values) < rule["value"]
    return min(values) > rule["value"]
