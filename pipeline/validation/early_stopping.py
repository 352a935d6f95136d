"""``spec.earlyStopping``: Katib's medianstop and its settings."""

from __future__ import annotations

from typing import Any

from pipeline.katib.manifest import Problem
from pipeline.suggestion.registry import Setting

EARLY_STOPPING_SETTINGS = {"medianstop": {"min_trials_required": Setting("int", low=1),
                                          "start_step": Setting("int", low=1)}}


def check_early_stopping(spec: Any) -> list[Problem]:
    es = spec.early_stopping
    if es is None:
        return []
    if es.algorithm_name not in EARLY_STOPPING_SETTINGS:
        return [Problem("spec.earlyStopping.algorithmName", "must be medianstop")]
    out = []
    checks = EARLY_STOPPING_SETTINGS[es.algorithm_name]
    for i, setting in enumerate(es.algorithm_settings or []):
        where = f"spec.earlyStopping.algorithmSettings[{i}]"
        if setting.name not in checks:
            out.append(Problem(f"{where}.name", f"unknown setting {setting.name!r}"))
        elif error := checks[setting.name].check(str(setting.value)):
            out.append(Problem(f"{where}.value", f"{setting.name} {error}"))
    return out


