"""``spec.earlyStopping``: the algorithm and its settings (pipeline/early_stopping)."""

from __future__ import annotations

from typing import Any

from pipeline.early_stopping import ALGORITHMS
from pipeline.katib.manifest import Problem


def check_early_stopping(es: Any) -> list[Problem]:
    """``es``: an experiment's earlyStopping (None: none), or the services' request message."""
    if es is None:
        return []
    if es.algorithm_name not in ALGORITHMS:
        return [Problem("spec.earlyStopping.algorithmName",
                        f"must be one of {', '.join(ALGORITHMS)}, not {es.algorithm_name!r}")]
    out = []
    checks = ALGORITHMS[es.algorithm_name].settings
    values = {}
    for i, setting in enumerate(es.algorithm_settings or []):
        where = f"spec.earlyStopping.algorithmSettings[{i}]"
        if setting.name not in checks:
            out.append(Problem(f"{where}.name", f"unknown setting {setting.name!r} (known: "
                               f"{', '.join(checks)})"))
        elif error := checks[setting.name].check(str(setting.value)):
            out.append(Problem(f"{where}.value", f"{setting.name} {error}"))
        else:
            values[setting.name] = int(setting.value)
    if values.get("max_resource", 1 << 31) <= values.get("min_resource", 1):
        out.append(Problem("spec.earlyStopping.algorithmSettings",
                           f"max_resource {values['max_resource']} leaves no rung: it must be "
                           f"more than min_resource ({values.get('min_resource', 1)})"))
    return out

