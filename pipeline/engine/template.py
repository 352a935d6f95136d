"""Katib's trial-template substitution, and the local process it describes.

Katib serialises the trialSpec to JSON and replaces ``${trialParameters.X}`` in that text; meta
references (``${trialSpec.Name}``, ``Namespace``, ``Kind``, ``APIVersion``, ``Labels[k]``,
``Annotations[k]``) come from the trial and the template's own metadata. A Job's primary
container or a TrainJob's trainer becomes the local process(es). The engine does the same,
except that values are JSON-escaped before the replace, so a value with quotes, ``$(...)``, ``;`` or
newlines arrives as one literal argument instead of breaking the document. The primary container's
``command + args`` become an argv list: no shell ever sees a parameter.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from typing import Any

META = re.compile(r"^\$\{trialSpec\.(.+?)\}$")
INDEXED = re.compile(r"^(Labels|Annotations)\[(.+)\]$")


class TemplateError(Exception):
    """The template cannot produce a local process (reason for the trial's Failed status)."""


@dataclass(frozen=True)
class TrialCommand:
    argv: list[str]
    env: dict[str, str]
    deadline_seconds: float | None
    nodes: int = 1  # a TrainJob's numNodes: that many local workers (pipeline.engine.workers)


def _meta_value(key: str, trial_name: str, namespace: str, trial_spec: dict[str, Any]) -> str:
    match = INDEXED.match(key)
    if match:
        values = (trial_spec.get("metadata") or {}).get(match.group(1).lower()) or {}
        if match.group(2) not in values:
            raise TemplateError(f"trialSpec.metadata.{match.group(1).lower()} has no "
                                f"{match.group(2)!r}")
        return str(values[match.group(2)])
    return {"Name": trial_name, "Namespace": namespace, "Kind": trial_spec.get("kind", ""),
            "APIVersion": trial_spec.get("apiVersion", "")}[key]


def substitute(template: Any, trial_name: str, namespace: str,
               assignments: dict[str, str]) -> dict[str, Any]:
    """The trialSpec of one trial, every placeholder replaced."""
    trial_spec = template.trial_spec
    values = {}
    for param in template.trial_parameters or []:
        ref = param.reference or param.name
        meta = META.match(ref)
        if meta:
            values[param.name] = _meta_value(meta.group(1), trial_name, namespace, trial_spec)
        elif ref in assignments:
            values[param.name] = assignments[ref]
        else:
            raise TemplateError(f"no assignment for trial parameter {param.name} ({ref})")
    text = json.dumps(trial_spec)
    for name, value in values.items():
        text = text.replace("${trialParameters." + name + "}", json.dumps(str(value))[1:-1])
    return json.loads(text)


def trial_command(template: Any, trial_name: str, namespace: str,
                  assignments: dict[str, str]) -> TrialCommand:
    spec = substitute(template, trial_name, namespace, assignments)
    container, nodes = primary_container(spec, template.primary_container_name)
    argv = [str(a) for a in (container.get("command") or []) + (container.get("args") or [])]
    if not argv:
        raise TemplateError("the primary container has no command: the image's entrypoint is "
                            "unknown to the embedded engine")
    if argv[0] in ("python", "python3") or re.fullmatch(r"python3\.\d+", argv[0]):
        argv[0] = sys.executable
    env: dict[str, str] = {}
    for var in container.get("env") or []:
        if "value" in var:
            env[var["name"]] = str(var["value"])
            continue
        source = var.get("valueFrom") or {}
        field = (source.get("fieldRef") or {}).get("fieldPath")
        if field in ("metadata.name", "metadata.namespace"):
            env[var["name"]] = trial_name if field == "metadata.name" else namespace
            continue
        ref = source.get("configMapKeyRef") or source.get("secretKeyRef") or {}
        if not ref.get("optional"):
            raise TemplateError(f"env {var['name']} comes from the cluster ({', '.join(source)}); "
                                "mark it optional to run locally")
    deadline = spec.get("spec", {}).get("activeDeadlineSeconds")
    return TrialCommand(argv, env, None if deadline is None else float(deadline), nodes)


def primary_container(spec: dict[str, Any], name: str) -> tuple[dict[str, Any], int]:
    """The trial's primary container and how many nodes run it: a Job's container of that name
    (one node), or a Kubeflow Trainer TrainJob's ``trainer`` (its ``numNodes``; the runtime's
    node container is named ``node``, and the TrainJob's command, args and env go into it)."""
    if spec.get("kind") == "TrainJob":
        trainer = (spec.get("spec") or {}).get("trainer") or {}
        return trainer, int(trainer.get("numNodes") or 1)
    pod = spec.get("spec", {}).get("template", {}).get("spec", {})
    containers = {c.get("name"): c for c in pod.get("containers", [])}
    if name not in containers:
        raise TemplateError(f"no container named {name!r}")
    return containers[name], 1
