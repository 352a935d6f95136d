"""What final training runs: the schedule, the runs it is made of, and their trial flags.

Every run is the experiment's own trial command (its template, the candidate's assignments
substituted) with the final schedule's flags appended; the trial CLI takes the last value of a
repeated flag, so ``--epochs=15`` of the template gives way to the schedule's.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from pipeline.finalize.candidates import Candidate
from trial_image.contract import AUGMENTATIONS, LR_SCHEDULES

SELECTION, FINAL = "selection", "final"


@dataclass(frozen=True)
class Schedule:
    """The final schedule; defaults measured on digits (docs/benchmarks.md)."""

    top_k: int = 3
    seeds: int = 1  # selection runs per candidate
    epochs: int = 30
    lr_schedule: str = "cosine"
    augment: str = "light"
    ensemble: int = 3  # finalists an ensemble may average (1: none; pipeline.finalize.ensemble)

    def __post_init__(self) -> None:
        if min(self.top_k, self.seeds, self.epochs, self.ensemble) < 1:
            raise ValueError("the number of candidates, seeds, epochs and ensemble members must "
                             "be at least 1")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"learning-rate schedule {self.lr_schedule!r} is not one of "
                             f"{', '.join(LR_SCHEDULES)}")
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"augmentation {self.augment!r} is not one of "
                             f"{', '.join(AUGMENTATIONS)}")


@dataclass(frozen=True)
class FinalRun:
    experiment: str
    candidate: Candidate
    role: str  # selection | final
    seed: int
    schedule: Schedule
    model: str  # the registered model whose champion a final run is measured against
    members: tuple[tuple[str, int], ...] = ()  # an ensemble's: final runs and their picks

    @property
    def name(self) -> str:
        """A valid Job name (the experiment's ≤ 40 + 16 characters), the same for the same
        inputs (candidate, role, seed, training schedule): a run that finished is not run again
        when final training is repeated or resumed."""
        schedule = self.schedule
        inputs = json.dumps([self.candidate.trial, self.candidate.assignments, self.role,
                             self.seed, schedule.epochs, schedule.lr_schedule, schedule.augment,
                             *([self.members] if self.members else [])], sort_keys=True)
        prefix = "final" if self.role == FINAL else "select"
        return f"{self.experiment}-{prefix}-{hashlib.sha1(inputs.encode()).hexdigest()[:8]}"

    def describe(self) -> str:
        """What the run trains, for the progress lines."""
        if self.members:
            return f"the ensemble of {len(self.members)} final runs"
        return f"{self.candidate.trial}, seed {self.seed}"

    def flags(self) -> list[str]:
        """The trial flags this run adds to the template's command."""
        schedule = self.schedule
        flags = [f"--epochs={schedule.epochs}", f"--patience={schedule.epochs}",
                 f"--lr-schedule={schedule.lr_schedule}", f"--augment={schedule.augment}",
                 f"--seed={self.seed}", f"--role={self.role}",
                 f"--source-trial={self.candidate.trial}", f"--trial-name={self.name}",
                 f"--experiment-name={self.experiment}"]
        if self.role == SELECTION:
            return [*flags, "--skip-test"]  # the winner is chosen without the test split
        ensemble = [f"--ensemble-of={','.join(f'{r}:{n}' for r, n in self.members)}"
                    ] if self.members else []
        return [*flags, "--train-on=train+validation",
                f"--evaluate-model=models:/{self.model}@champion", *ensemble]


def selection_runs(experiment: str, candidates: list[Candidate], schedule: Schedule,
                   model: str) -> list[FinalRun]:
    return [FinalRun(experiment, c, SELECTION, seed, schedule, model)
            for c in candidates[:schedule.top_k] for seed in range(schedule.seeds)]
