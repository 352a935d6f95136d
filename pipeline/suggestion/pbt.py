"""Katib's ``pbt`` (population-based training): declared for validation; Katib runs it.

Its trials share a checkpoint volume Katib mounts (``suggestion_trial_dir``), which the
embedded engine does not have.
"""

from __future__ import annotations

from pipeline.suggestion.registry import Algorithm, Setting

ALGORITHMS = (Algorithm(
    "pbt", "Katib's population-based training (exploit/explore over checkpoints)", {
        "suggestion_trial_dir": Setting("text", required=True),
        "n_population": Setting("int", low=5, high=10_000, required=True),
        "truncation_threshold": Setting("float", low=0, high=1, required=True),
        "resample_probability": Setting("float", low=0, high=1)},
    None, local_limit="algorithm pbt (needs Katib's shared checkpoint volume)"),)
