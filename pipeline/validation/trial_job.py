"""A trial template of kind ``batch/v1 Job`` checked as Katib's webhook checks it: it must convert
to Kubernetes' Job type without losing a field (docs/katib.md §4).

Katib converts the template to ``batchv1.Job`` and refuses it when a field is unknown or of the
wrong type (a ``containers`` mapping instead of a list, a string where a number belongs). The
``kubernetes`` client's models carry the same schema (``openapi_types`` and ``attribute_map``),
so the template is walked against them. Resource quantities may be numbers or strings, and
int-or-string fields (ports) anything, as Kubernetes allows.
"""

from __future__ import annotations

import re
from typing import Any

from pipeline.katib.manifest import Problem, did_you_mean

_LIST = re.compile(r"^List\[(.+)\]$")
_DICT = re.compile(r"^Dict\[str, (.+)\]$")
_QUANTITIES = ("limits", "requests")  # Katib ignores these paths: device plugins add resources
_PRIMITIVES: dict[str, tuple[type, ...]] = {"str": (str,), "datetime": (str,), "bool": (bool,),
                                            "float": (int, float), "int": (int,)}
_NAMES = {str: "a string", bool: "true or false", int: "an integer", float: "a number",
          list: "a list", dict: "a mapping"}


# Job spec fields the API server refuses below zero: Katib would admit the experiment and
# every trial would fail at creation.
NONNEGATIVE = ("activeDeadlineSeconds", "backoffLimit", "completions", "parallelism",
               "ttlSecondsAfterFinished")


def check_job(trial_spec: dict[str, Any], where: str) -> list[Problem]:
    """Problems of ``trial_spec`` as a ``batch/v1`` Job (empty for any other kind)."""
    if trial_spec.get("apiVersion") != "batch/v1" or trial_spec.get("kind") != "Job":
        return []
    problems = _check(trial_spec, "V1Job", where)
    spec = trial_spec.get("spec")
    for field in NONNEGATIVE:
        value = spec.get(field) if isinstance(spec, dict) else None
        if isinstance(value, int) and not isinstance(value, bool) and value < 0:
            problems.append(Problem(f"{where}.spec.{field}", f"must be >= 0, got {value} "
                                    "(Kubernetes refuses the Job: Katib would fail every trial)"))
    return problems


def _kind_of(value: Any) -> str:
    for kind, name in _NAMES.items():
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _check(value: Any, type_name: str, where: str) -> list[Problem]:
    if type_name == "object" or value is None:
        return []
    if match := _LIST.match(type_name):
        if not isinstance(value, list):
            return [Problem(where, f"must be a list, not {_kind_of(value)} (batch/v1 Job)")]
        return [p for i, item in enumerate(value) for p in _check(item, match[1], f"{where}[{i}]")]
    if match := _DICT.match(type_name):
        if not isinstance(value, dict):
            return [Problem(where, f"must be a mapping, not {_kind_of(value)} (batch/v1 Job)")]
        if where.rsplit(".", 1)[-1] in _QUANTITIES:
            return []
        return [p for k, v in value.items() for p in _check(v, match[1], f"{where}.{k}")]
    if type_name in _PRIMITIVES:
        allowed = _PRIMITIVES[type_name]
        if (isinstance(value, bool) and bool not in allowed) or not isinstance(value, allowed):
            return [Problem(where, f"must be {_NAMES[allowed[-1]]}, not {_kind_of(value)} "
                            "(batch/v1 Job)")]
        return []
    return _check_model(value, type_name, where)


def _check_model(value: Any, model_name: str, where: str) -> list[Problem]:
    import kubernetes.client

    model = getattr(kubernetes.client, model_name)
    if not isinstance(value, dict):
        return [Problem(where, f"must be a mapping, not {_kind_of(value)} (batch/v1 Job)")]
    fields = {json: model.openapi_types[attr] for attr, json in model.attribute_map.items()}
    problems = []
    for key, item in value.items():
        path = f"{where}.{key}"
        if key not in fields:
            close = did_you_mean(key, fields)
            hint = f"; did you mean {close}?" if close else ""
            problems.append(Problem(path, f"unknown field: Kubernetes' {model_name[2:]} has no "
                                          f"{key!r}{hint} (Katib converts the template to a "
                                          "batch/v1 Job)"))
            continue
        problems += _check(item, fields[key], path)
    return problems
