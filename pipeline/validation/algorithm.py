"""``spec.algorithm``: the name, its settings and the checks its Katib service makes at start,
all read from the algorithm's declaration (:mod:`pipeline.suggestion.registry`)."""

from __future__ import annotations

from typing import Any

from pipeline.katib.manifest import Problem
from pipeline.suggestion.registry import algorithms


def check_algorithm(spec: Any, space_valid: bool) -> list[Problem]:
    """``space_valid``: :func:`~pipeline.validation.space.check_space` found nothing (the
    algorithm's own checks read the space, so they run only on a valid one)."""
    algorithm = spec.algorithm
    if algorithm is None or not algorithm.algorithm_name:
        return [Problem("spec.algorithm.algorithmName", "required")]
    name = algorithm.algorithm_name
    known = algorithms()
    if name not in known:
        return [Problem("spec.algorithm.algorithmName",
                        f"unknown algorithm {name!r}; known: {', '.join(known)}")]
    declared = known[name]
    settings = {s.name: s.value for s in algorithm.algorithm_settings or []}
    out = []
    for i, setting in enumerate(algorithm.algorithm_settings or []):
        where = f"spec.algorithm.algorithmSettings[{i}]"
        if setting.name not in declared.settings:
            if not declared.passes_unknown_settings:
                out.append(Problem(f"{where}.name", f"unknown setting {setting.name!r} for {name}"
                                   f"; known: {', '.join(declared.settings) or 'none'}"))
            continue
        error = declared.settings[setting.name].check(str(setting.value))
        if error:
            out.append(Problem(f"{where}.value", f"{setting.name} {error}, got {setting.value!r}"))
    for required in (n for n, s in declared.settings.items() if s.required):
        if required not in settings:
            out.append(Problem("spec.algorithm.algorithmSettings", f"{name} requires {required}"))
    if declared.space == "nas" and spec.nas_config is None:
        out.append(Problem("spec.nasConfig", f"{name} needs a nasConfig"))
    if declared.space == "parameters" and spec.nas_config is not None:
        out.append(Problem("spec.algorithm.algorithmName",
                           f"{name} searches spec.parameters, not a nasConfig"))
    if space_valid:
        for check in declared.checks:
            out += check(spec, settings)
    return out
