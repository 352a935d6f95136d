"""Neural ensembles as champions: which finalists to average, chosen on validation.

Final training trains its top-k candidates on the training split (selection runs); each logs
its outputs on the validation split (``trial_image/ensemble.py``). Caruana et al.'s (2004)
greedy ensemble selection, with replacement, starts from the winner alone and adds, at most
:data:`ROUNDS` times, the finalist whose addition lowers the validation loss of the averaged
outputs most (cross-entropy of the mean probabilities, or squared error of the mean number),
stopping when none does and never taking more than ``size`` different finalists. Each member's
weight is its share of the picks.

The ensemble is proposed only when its validation loss is at least :data:`MARGIN` below the
winner's alone and its validation measure (accuracy, RMSE) is no worse: then the members' final
models are trained as the winner's was, and one more run of the trial image averages them
into one model, measured on the test split like any final model. A latency or size budget (the
promotion gates' ``--max-latency-ms`` and ``--max-parameters``) can still rule it out; then the
winner alone goes on. The test split never takes part in the choice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trial_image.contract import Task

MARGIN = 0.02  # relative: the ensemble's validation loss below the winner's alone
ROUNDS = 10  # greedy picks at most


@dataclass(frozen=True)
class Choice:
    """The greedy selection's result on the validation split."""

    counts: dict[str, int]  # finalist (its search trial) -> picks; the winner first
    single: tuple[float, float]  # the winner alone: (loss, measure)
    mixed: tuple[float, float]  # the ensemble: (loss, measure)
    task: Task

    @property
    def proposed(self) -> bool:
        (single_loss, single_measure), (loss, measure) = self.single, self.mixed
        no_worse = measure >= single_measure if self.task.maximize else measure <= single_measure
        return len(self.counts) > 1 and loss <= (1 - MARGIN) * single_loss and no_worse

    @property
    def weights(self) -> dict[str, float]:
        total = sum(self.counts.values())
        return {trial: count / total for trial, count in self.counts.items()}

    def describe(self) -> str:
        """One line: what was chosen and why (or why not)."""
        (single_loss, single_measure), (loss, measure) = self.single, self.mixed
        change = (loss / single_loss - 1) * 100 if single_loss else 0.0
        figures = (f"validation loss {single_loss:.4f} -> {loss:.4f} ({change:+.1f} %), "
                   f"{self.task.measure} {single_measure:.4f} -> {measure:.4f}")
        if len(self.counts) < 2:
            return "no finalist improves the winner's validation loss: the winner alone"
        members = " + ".join(f"{trial} ×{count}" for trial, count in self.counts.items())
        if self.proposed:
            return f"ensemble of {members}: {figures}"
        return (f"ensemble of {members} not proposed ({figures}; it needs {MARGIN:.0%} lower "
                f"loss and no worse {self.task.measure})")


def choose(outputs: dict[str, np.ndarray], truth: np.ndarray, task: Task, winner: str,
           size: int) -> Choice:
    """Greedy selection with replacement over ``outputs`` (finalist -> its validation outputs,
    in the same order as ``truth``), from ``winner`` alone, at most ``size`` finalists."""
    counts = {winner: 1}
    total = outputs[winner].astype("float64")
    single = task.judge(truth, total)
    best = single
    for picks in range(2, ROUNDS + 1):
        trials = [t for t in outputs if t in counts or len(counts) < size]
        scored = [(task.judge(truth, (total + outputs[t]) / picks), t) for t in trials]
        (loss, measure), trial = min(scored, key=lambda pair: pair[0][0])
        if not loss < best[0]:
            break
        counts[trial] = counts.get(trial, 0) + 1
        total = total + outputs[trial]
        best = (loss, measure)
    return Choice(counts, single, best, task)

