"""Katib's ``medianstop`` (``pkg/earlystopping/v1beta1/medianstop``).

Once ``min_trials_required`` (default 3) trials have succeeded, the rule's value is the mean over
them of the mean of each one's first ``start_step`` (default 4) objective values — Katib calls it
a median but computes this mean. The rule is attached to trials created from then on; such a
trial stops once it has reported ``start_step`` values and its best so far is worse than the rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import fmean

from pipeline.early_stopping.base import Curve, EarlyStopping, Rule
from pipeline.katib.settings import Setting
from pipeline.katib.status import TrialStatus

_SETTINGS = {"min_trials_required": Setting("int", "3", low=1),
            "start_step": Setting("int", "4", low=1)}


class MedianStop(EarlyStopping):
    name = "medianstop"
    settings = _SETTINGS

    def __init__(self, settings: dict[str, str], objective: str, maximize: bool) -> None:
        super().__init__(settings, objective, maximize)
        self.min_trials_required = int(settings.get("min_trials_required", 3))
        self.start_step = int(settings.get("start_step", 4))

    def rules(self, trials: Sequence[Curve]) -> list[Rule]:
        firsts = [t.values[:self.start_step] for t in trials
                  if t.status == TrialStatus.SUCCEEDED and t.values]
        if len(firsts) < self.min_trials_required:
            return []
        return [Rule(self.objective, fmean(fmean(f) for f in firsts), self.worse,
                     self.start_step)]
