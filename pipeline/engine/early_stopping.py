"""The engine's side of early stopping (:mod:`pipeline.early_stopping`): the trials' curves, and
every running trial judged against all of them while it runs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.early_stopping.base import Curve, EarlyStopping, Rule
from pipeline.engine.metrics_collector import CollectorError
from pipeline.engine.state import TrialRecord
from pipeline.katib.objective import numbers
from pipeline.katib.status import TrialStatus


def curve(t: TrialRecord, observed: Mapping[str, list[str]], objective: str) -> Curve:
    return Curve(t.name, t.status, tuple(numbers(observed.get(objective, []))))


def curves(trials: Sequence[TrialRecord], objective: str) -> list[Curve]:
    """Every trial's curve as recorded (a running trial's is read when it ends)."""
    return [curve(t, t.observations, objective) for t in trials]


def stop_early(early_stopping: EarlyStopping, trials: Sequence[TrialRecord],
               running: Mapping[int, Any], collector: Any, objective: str) -> None:
    """Stop each running trial (a TrialProcess) its early stopping says to stop now, given
    every trial's curve now: the finished ones' recorded, the running ones' collected."""
    now = {t.index: curve(t, t.observations, objective) for t in trials if t.done}
    for index, proc in running.items():
        try:
            observed = collector.collect(proc.trial_dir, [objective])
        except CollectorError:  # nothing written yet
            observed = {}
        now[index] = curve(trials[index], observed, objective)
    for index, proc in list(running.items()):
        if proc.killed_reason:
            continue
        others = [c for i, c in now.items() if i != index]
        why = early_stopping.judge(now[index], [Rule(**r) for r in trials[index].rules], others)
        if why:
            proc.stop(TrialStatus.EARLY_STOPPED, early_stopped=why)
