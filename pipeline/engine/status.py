"""Katib's experiment status on the embedded engine: each trial's value of a metric, the optimal
trial, when the experiment is complete, and its conditions (``status.conditions``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from pipeline.engine.state import TrialRecord
from pipeline.katib.objective import PICK, metric_strategy, numbers
from pipeline.katib.status import ENDED, FAILED, SCORED, now_rfc3339
from pipeline.katib.status import ExperimentCondition as Condition
from pipeline.katib.status import TrialStatus as Status


class Objective:
    """The experiment's objective and additional metrics, read as Katib reads them."""

    def __init__(self, objective: Any) -> None:
        self.name = objective.objective_metric_name
        self.maximize = objective.type == "maximize"
        self.goal = objective.goal
        self.metric_names = [self.name, *(objective.additional_metric_names or [])]
        self.strategies = {n: metric_strategy(objective, n) for n in self.metric_names}

    def value(self, t: TrialRecord, metric: str | None = None) -> float | None:
        """The trial's numeric value of a metric under its strategy (None if unavailable)."""
        metric = metric or self.name
        values = numbers(t.observations.get(metric, []))
        return PICK[self.strategies[metric]](values) if values else None

    def best(self, trials: Sequence[TrialRecord]) -> TrialRecord | None:
        scored = [t for t in trials if t.status in SCORED]
        numeric = [t for t in scored if self.value(t) is not None]
        if numeric:
            pick = max if self.maximize else min
            return pick(numeric, key=lambda t: self.value(t))
        # string objectives (a DARTS genotype): Katib takes the latest trial as optimal
        with_values = [t for t in scored if t.observations.get(self.name)]
        return max(with_values, key=lambda t: t.finished) if with_values else None

    def optimal(self, trials: Sequence[TrialRecord]) -> dict[str, Any] | None:
        """Katib's ``currentOptimalTrial``."""
        best = self.best(trials)
        if best is None:
            return None
        metrics = []
        for name in self.metric_names:
            raw = best.observations.get(name, [])
            values = numbers(raw)
            metrics.append({"name": name,
                            "min": str(min(values)) if values else "unavailable",
                            "max": str(max(values)) if values else "unavailable",
                            "latest": raw[-1] if raw else "unavailable"})
        return {"bestTrialName": best.name,
                "parameterAssignments": [{"name": k, "value": v}
                                         for k, v in best.assignments.items()],
                "observation": {"metrics": metrics}}

    def completed(self, trials: Sequence[TrialRecord], max_trials: int | None,
                  max_failed: int | None, exhausted: bool, running: int
                  ) -> tuple[str, str, str] | None:
        """Katib's completion rule: (condition, reason, message), or None while it runs on."""
        finished = [t for t in trials if t.done]
        best = self.best(trials)
        best_value = self.value(best) if best else None
        if self.goal is not None and best_value is not None and (
                best_value >= self.goal if self.maximize else best_value <= self.goal):
            return (Condition.SUCCEEDED, "ExperimentGoalReached",
                    f"{best.name} reached {self.name}={best_value} (goal {self.goal})")
        failed = sum(t.status in FAILED for t in finished)
        # Katib's rule (measured on Katib v0.19, docs/katib.md): the count reaching
        # maxFailedTrialCount fails the experiment, with reason ExperimentFailed
        if max_failed is not None and failed and failed >= max_failed:
            return (Condition.FAILED, "ExperimentFailed",
                    f"Experiment has failed because max failed count has reached ({failed} "
                    f"trials failed, maxFailedTrialCount {max_failed})")
        if max_trials is not None and len(finished) >= max_trials:
            return (Condition.SUCCEEDED, "ExperimentMaxTrialsReached",
                    f"{len(finished)} trials completed")
        if exhausted and not running and not any(t.status == Status.CREATED for t in trials):
            return (Condition.SUCCEEDED, "ExperimentSuggestionEndReached",
                    "the algorithm has no more suggestions")
        return None


class Conditions:
    """Katib's rule: one condition per type; a change moves it to the end; the transition time
    stays while the status does; Succeeded and Failed turn Running False. ``on_change`` is
    called after every change (the engine saves its state)."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        self.items: list[dict[str, str]] = []
        self.on_change = on_change

    @property
    def last(self) -> dict[str, str]:
        return self.items[-1]

    def set(self, kind: str, reason: str, message: str, status: str = "True") -> None:
        current = next((c for c in self.items if c["type"] == kind), None)
        if kind in ENDED:
            running = next((c for c in self.items if c["type"] == Condition.RUNNING), None)
            if running is not None:
                self.set(Condition.RUNNING, running["reason"], running["message"], "False")
        if current is not None and (current["status"], current["reason"]) == (status, reason):
            return
        now = now_rfc3339()
        self.items = [c for c in self.items if c["type"] != kind] + [
            {"type": kind, "status": status, "reason": reason, "message": message,
             "lastUpdateTime": now,
             "lastTransitionTime": current["lastTransitionTime"]
             if current is not None and current["status"] == status else now}]
        self.on_change()

    def restart(self) -> None:
        """A run that starts (again): Created, or Restarting after it ended."""
        ended = [c for c in self.items if c["type"] in ENDED]
        if not self.items:
            self.set(Condition.CREATED, "ExperimentCreated", "Experiment is created")
        elif ended:
            self.items = [c for c in self.items if c not in ended]
            self.set(Condition.RESTARTING, "ExperimentRestarting", "Experiment is restarting")


def katib_status(name: str, conditions: list[dict[str, str]], trials: Sequence[TrialRecord],
                 running: int, optimal: dict[str, Any] | None, parent_run_id: str | None
                 ) -> dict[str, Any]:
    """The experiment's status in Katib's shape (what ``--output json`` prints and ``nasflow
    promote`` reads back from the state)."""
    counts = {s: sum(t.status == s for t in trials) for s in Status}
    return {
        "name": name,
        "conditions": conditions,
        "trials": len(trials),
        "trialsSucceeded": counts[Status.SUCCEEDED],
        "trialsFailed": counts[Status.FAILED],
        "trialsKilled": counts[Status.KILLED],
        "trialsEarlyStopped": counts[Status.EARLY_STOPPED],
        "trialMetricsUnavailable": counts[Status.METRICS_UNAVAILABLE],
        "trialsRunning": running,
        "currentOptimalTrial": optimal,
        "mlflowParentRunId": parent_run_id,
    }


def progress(trials: Sequence[TrialRecord], running: int, max_trials: int | None,
             objective: Objective, started: float) -> dict[str, Any]:
    """What the progress line shows."""
    finished = [t for t in trials if t.done]
    best = objective.best(trials)
    elapsed = time.time() - started
    total = max_trials or 0
    eta = (elapsed / len(finished) * (total - len(finished))) if finished and total else None
    return {"done": len(finished), "running": running, "total": total,
            "failed": sum(t.status in FAILED for t in finished),
            "best": objective.value(best) if best else None, "elapsed": elapsed, "eta": eta}
