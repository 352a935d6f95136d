"""Asynchronous successive halving (ASHA, Li et al. 2020) as early stopping: Katib's open request
kubeflow/katib#1582.

Rungs are at ``min_resource × reduction_factor^r`` epochs (below ``max_resource`` when set). A
trial reaching a rung goes on only if its best objective so far is in the top
``1/reduction_factor`` of the values the trials that have reached that rung had there; with
fewer trials than that fraction needs, only a trial better than all of them goes on (Optuna's
successive-halving rule). Nobody waits: each decision uses the trials that have reached the rung
by then.

* The embedded engine decides at each rung when the trial reaches it (:meth:`ASHA.judge`), from
  every other trial's curve at that moment: textbook ASHA.
* On Katib a trial's rules are fixed when it is created, and its collector stops a trial only
  when *all* its rules are met, so a rule per rung would stop a trial only if it were bad at every
  rung. :meth:`ASHA.rules` therefore gives one rule, for the first rung, with the threshold of the
  trials known when the trial is created; the higher rungs do not stop trials on Katib.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.early_stopping.base import Curve, EarlyStopping, Rule, best
from pipeline.katib.settings import Setting

_SETTINGS = {"min_resource": Setting("int", "1", low=1),
            "reduction_factor": Setting("int", "3", low=2),
            "max_resource": Setting("int", low=1)}


class ASHA(EarlyStopping):
    name = "asha"
    settings = _SETTINGS

    def __init__(self, settings: dict[str, str], objective: str, maximize: bool) -> None:
        super().__init__(settings, objective, maximize)
        self.min_resource = int(settings.get("min_resource", 1))
        self.eta = int(settings.get("reduction_factor", 3))
        self.max_resource = int(settings["max_resource"]) if "max_resource" in settings else None
        self.judged: dict[str, int] = {}  # trial -> values it had at its last judgement

    def rungs(self, upto: int) -> list[int]:
        """The rungs a trial with ``upto`` values has reached."""
        out, rung = [], self.min_resource
        while rung <= upto and (self.max_resource is None or rung < self.max_resource):
            out.append(rung)
            rung *= self.eta
        return out

    def threshold(self, rung: int, others: Sequence[Curve]) -> float | None:
        """The value a trial reaching ``rung`` must at least equal to go on, given the other
        trials' curves (None: no other trial has reached it)."""
        values = sorted((best(c.values[:rung], self.maximize) for c in others
                         if len(c.values) >= rung), reverse=self.maximize)
        keep = max(1, (len(values) + 1) // self.eta)  # the places among them and the trial
        return values[keep - 1] if len(values) >= keep else None

    def rules(self, trials: Sequence[Curve]) -> list[Rule]:
        threshold = self.threshold(self.min_resource, trials)
        if threshold is None or not self.rungs(self.min_resource):
            return []
        return [Rule(self.objective, threshold, self.worse, self.min_resource)]

    def judge(self, trial: Curve, rules: Sequence[Rule], others: Sequence[Curve]) -> str | None:
        done = self.judged.get(trial.trial, 0)
        for rung in self.rungs(len(trial.values)):
            if rung <= done:
                continue
            threshold = self.threshold(rung, others)
            value = best(trial.values[:rung], self.maximize)
            if threshold is not None and (value < threshold if self.maximize
                                          else value > threshold):
                return (f"asha: {self.objective} {value:.6g} after {rung} epoch(s) is not in "
                        f"the top 1/{self.eta} of the trials there (needs "
                        f"{'>=' if self.maximize else '<='} {threshold:.6g})")
        self.judged[trial.trial] = len(trial.values)
        return None
