"""MnasNet's reward (Tan et al. 2019, eq. 2): accuracy scaled by how a cost compares with a target.

``Reward = ACC × (COST / T)^w`` with ``w = α`` if ``COST <= T`` else ``β``. MnasNet's soft
constraint is α = β = −0.07 (a model twice as costly as the target scores about 5 % less); its hard
constraint α = 0, β = −1 (no bonus under the target, a steep penalty over it). One scalar, so
Katib's single-objective algorithms (and the embedded engine's) search the accuracy/cost
trade-off unchanged: the trial prints ``Reward`` every epoch next to its accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass

from trial_image.errors import InputError

# --reward-cost -> the metric the trial reports for that cost
COSTS = {"latency": "Inference-Latency-Ms", "parameters": "Parameter-Count",
         "size": "Model-Size-Bytes", "madds": "Multiply-Adds"}


@dataclass(frozen=True)
class Reward:
    target: float
    cost: str = "madds"
    alpha: float = -0.07
    beta: float = -0.07

    def __post_init__(self) -> None:
        if not self.target > 0:
            raise InputError(f"--reward-target must be > 0, got {self.target}")
        if self.cost not in COSTS:
            raise InputError(f"--reward-cost must be one of {', '.join(COSTS)}")

    @property
    def metric(self) -> str:
        return COSTS[self.cost]

    def __call__(self, accuracy: float, cost: float) -> float:
        exponent = self.alpha if cost <= self.target else self.beta
        return accuracy * (cost / self.target) ** exponent
