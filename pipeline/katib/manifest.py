"""Katib Experiment manifests: YAML (multi-document) → Katib's typed models, with field paths.

``kubeflow-katib-api``'s pydantic models reject wrongly typed fields but silently drop unknown
ones, so a typo such as ``maxTrialCounts`` would vanish; :func:`parse` walks the raw
document against the models and names every field they do not know.
"""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic
import yaml
from kubeflow_katib_api.models import (
    IoK8sApimachineryPkgUtilIntstrIntOrString,
    V1beta1Experiment,
)

from pipeline.katib import safe_yaml

# The label Katib puts on an Experiment's Trials and pods; the manifests also read it through
# ``${trialSpec.Labels[...]}`` as the MLflow experiment name.
EXPERIMENT_LABEL = "katib.kubeflow.org/experiment"


@dataclass(frozen=True)
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ManifestError(Exception):
    """The manifest cannot be used; carries every problem found (CLI exit code 2)."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


@dataclass(frozen=True)
class Manifest:
    source: str  # "file.yaml" or "file.yaml#2" for the 2nd document
    raw: dict[str, Any]
    experiment: V1beta1Experiment

    @property
    def name(self) -> str:
        return self.experiment.metadata.name


def load_documents(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """Every Experiment document of a YAML file, labelled for messages (read within
    :mod:`pipeline.katib.safe_yaml`'s limits)."""
    try:
        documents = [d for d in safe_yaml.load_all(path.read_bytes()) if d is not None]
    except OSError as exc:
        raise ManifestError(str(path), [Problem("", f"cannot read: {exc.strerror}")]) from None
    except safe_yaml.UnsafeYaml as exc:
        raise ManifestError(str(path), [Problem(exc.path, str(exc))]) from None
    except yaml.YAMLError as exc:
        message = " ".join(str(exc).split())
        raise ManifestError(str(path), [Problem("", f"not valid YAML: {message}")]) from None
    experiments = []
    names: dict[str, str] = {}
    for index, doc in enumerate(documents, start=1):
        label = str(path) if len(documents) == 1 else f"{path}#{index}"
        if not isinstance(doc, dict):
            raise ManifestError(label, [Problem("", "a YAML document must be a mapping")])
        if doc.get("kind") != "Experiment":
            continue
        metadata = doc.get("metadata")
        name = metadata.get("name") if isinstance(metadata, dict) else None
        if isinstance(name, str) and name in names:
            raise ManifestError(label, [Problem("metadata.name", f"experiment {name!r} is "
                                                f"already defined in {names[name]}")])
        if isinstance(name, str):
            names[name] = label
        experiments.append((label, doc))
    if not experiments:
        raise ManifestError(str(path), [Problem("kind", "no Katib Experiment in this file")])
    return experiments


def parse(source: str, raw: dict[str, Any]) -> tuple[V1beta1Experiment | None, list[Problem]]:
    """Typed parse plus unknown-field check; the experiment is None if types are wrong."""
    problems: list[Problem] = []
    typed = _walk(raw, V1beta1Experiment, "", problems)
    try:
        # model_validate reports full paths (spec.parameters[0]...); from_dict builds the
        # nested models the way the generated client expects.
        V1beta1Experiment.model_validate(typed)
        return V1beta1Experiment.from_dict(raw), problems
    except pydantic.ValidationError as exc:
        for error in exc.errors():
            path = field_path(error["loc"])
            problems.append(Problem(path, f"{error['msg']} (got {error.get('input')!r})"))
        return None, problems


def did_you_mean(key: Any, known: typing.Iterable[str]) -> str | None:
    """The known field name closest to a mistyped ``key``, if one is close."""
    close = difflib.get_close_matches(str(key), list(known), n=1)
    return close[0] if close else None


def field_path(loc: tuple) -> str:
    """A pydantic error location as a field path: ``spec.parameters[0].name``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def model_of(annotation: Any) -> type[pydantic.BaseModel] | None:
    """The pydantic model inside Optional[List[Model]] / Optional[Model], if any."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list, typing.Annotated):
        for arg in typing.get_args(annotation):
            model = model_of(arg)
            if model is not None:
                return model
        return None
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return annotation
    return None


def _walk(raw: Any, model: type[pydantic.BaseModel], path: str, problems: list[Problem]) -> Any:
    """``raw`` for the typed models' validation: unknown fields are reported (the models would
    drop them silently), and Kubernetes' int-or-string fields (a port: 8080 or "http"), whose
    generated model validates only its wrapped form, are checked here and wrapped."""
    if not isinstance(raw, dict):
        return raw
    known = {(f.alias or name): f for name, f in model.model_fields.items()}
    typed = {}
    for key, value in raw.items():
        where = f"{path}.{key}" if path else str(key)
        field = known.get(key)
        if field is None:
            close = did_you_mean(key, known)
            hint = f" (did you mean {close}?)" if close else ""
            problems.append(Problem(where, f"unknown field{hint}"))
            continue
        child = model_of(field.annotation)
        if child is IoK8sApimachineryPkgUtilIntstrIntOrString:
            if isinstance(value, bool) or not isinstance(value, int | str):
                problems.append(Problem(where, f"must be an integer or a string, got {value!r}"))
                continue
            typed[key] = {"actual_instance": value}
            continue
        if child is None:
            typed[key] = value
        elif isinstance(value, list):
            typed[key] = [_walk(item, child, f"{where}[{i}]", problems)
                          for i, item in enumerate(value)]
        else:
            typed[key] = _walk(value, child, where, problems)
    return typed
