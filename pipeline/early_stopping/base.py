"""The one small interface every early-stopping algorithm implements (Katib's EarlyStopping).

Katib asks an early-stopping service for the rules of each new trial (``GetEarlyStoppingRules``:
metric, value, comparison, start step) and its metrics collector enforces them while the trial
runs: the trial stops once *every* rule has been met at or after its start step (a met rule stays
met; for the objective the value compared is the best so far). :meth:`EarlyStopping.rules` is
that answer, the same on both engines. The embedded engine, which sees every trial's curve while
it runs, asks :meth:`EarlyStopping.judge` instead; by default it enforces the rules exactly as
Katib's collector does, and an algorithm whose textbook form decides later than a trial's start
(ASHA) decides there.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from pipeline.katib.settings import Setting

COMPARISONS = ("less", "greater", "equal")


@dataclass(frozen=True)
class Rule:
    """Katib's ``EarlyStoppingRule`` (``comparison``: less, greater or equal)."""

    name: str
    value: float
    comparison: str
    start_step: int

    def met(self, values: Sequence[float], maximize: bool) -> bool:
        """Whether Katib's collector has met this rule on the objective ``values`` (in report
        order): at some step from ``start_step`` on, the best value so far compared true."""
        best = None
        for step, value in enumerate(values, 1):
            best = value if best is None else (max if maximize else min)(best, value)
            if step >= self.start_step and {"less": best < self.value,
                                            "greater": best > self.value,
                                            "equal": best == self.value}[self.comparison]:
                return True
        return False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.name} {self.comparison} {self.value:.6g} from step {self.start_step}"


@dataclass(frozen=True)
class Curve:
    """One trial's objective values so far, in the order reported."""

    trial: str
    status: str
    values: tuple[float, ...]


class EarlyStopping(ABC):
    name: ClassVar[str]  # Katib's earlyStopping.algorithmName
    settings: ClassVar[Mapping[str, Setting]]  # its algorithmSettings

    def __init__(self, settings: dict[str, str], objective: str, maximize: bool) -> None:
        self.objective, self.maximize = objective, maximize

    @property
    def worse(self) -> str:
        """The comparison that means "worse than" for the objective's direction."""
        return "less" if self.maximize else "greater"

    @abstractmethod
    def rules(self, trials: Sequence[Curve]) -> list[Rule]:
        """The rules of a trial created now, given every trial known now (Katib's
        ``GetEarlyStoppingRules``)."""

    def judge(self, trial: Curve, rules: Sequence[Rule], others: Sequence[Curve]) -> str | None:
        """Why the embedded engine stops the running ``trial`` now (None: it goes on), given
        its ``rules`` and the other trials' curves: Katib's collector's semantics."""
        if rules and all(rule.met(trial.values, self.maximize) for rule in rules):
            return f"{self.name} rule(s) met: {'; '.join(map(str, rules))}"
        return None


def best(values: Sequence[float], maximize: bool) -> float:
    return max(values) if maximize else min(values)
