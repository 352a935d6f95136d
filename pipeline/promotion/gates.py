"""Promotion gates: what a model must meet before it may become champion, whatever it beats.

Each gate reads a metric the trial image logs with the model: ``Test-Accuracy`` (the test split,
evaluated once), ``Inference-Latency-Ms`` (batch 1, CPU) and ``Parameter-Count``. A model that
fails one is still registered, as ``challenger``, with the reason in its version tags.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Gates:
    min_accuracy: float | None = None
    max_latency_ms: float | None = None
    max_parameters: float | None = None

    def failures(self, metrics: dict[str, float]) -> list[str]:
        """One line per failed gate (empty: every gate passed or none was set)."""
        out = []
        for name, metric, limit, at_least in (
                ("min-accuracy", "Test-Accuracy", self.min_accuracy, True),
                ("max-latency-ms", "Inference-Latency-Ms", self.max_latency_ms, False),
                ("max-parameters", "Parameter-Count", self.max_parameters, False)):
            if limit is None:
                continue
            value = metrics.get(metric)
            if value is None:
                out.append(f"{name}: the run has no {metric}")
            elif (value < limit) if at_least else (value > limit):
                out.append(f"{name}: {metric} {value:.6g} {'<' if at_least else '>'} {limit:g}")
        return out

    def __str__(self) -> str:
        return ", ".join(f"{name} {limit:g}" for name, limit in (
            ("min-accuracy", self.min_accuracy), ("max-latency-ms", self.max_latency_ms),
            ("max-parameters", self.max_parameters)) if limit is not None) or "none"
