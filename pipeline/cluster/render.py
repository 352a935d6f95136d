"""An Experiment manifest made ready for one submission: its name, namespace and trial image.

Katib resolves ``${trialSpec.Labels[katib.kubeflow.org/experiment]}`` from the trial template's
own labels, and the manifests use that label for the MLflow experiment name; a renamed Experiment
therefore gets the label renamed too, so its trials log under the new name.
"""

from __future__ import annotations

import copy
import re
from datetime import datetime
from typing import Any

from pipeline.katib.manifest import EXPERIMENT_LABEL
from pipeline.validation.experiment import NAME_RE

MAX_NAME = 40  # Katib's webhook limit


class RenderError(ValueError):
    """The requested name or image cannot be applied (exit code 2)."""


def check_name(name: str) -> str:
    if len(name) > MAX_NAME or not NAME_RE.match(name):
        raise RenderError(f"experiment name {name[:60]!r} must match {NAME_RE.pattern} and have at "
                          f"most {MAX_NAME} characters (Katib's rule)")
    return name


def slug(text: str, limit: int) -> str:
    """``text`` as lower-case letters, digits and dashes, at most ``limit`` characters."""
    return re.sub(r"[^-a-z0-9]", "-", text.lower())[:limit].strip("-") or "nasflow"


def unique_name(prefix: str, now: datetime) -> str:
    """``<prefix>-<yymmddhhmmss>``, the prefix cut so the whole stays within 40 characters."""
    stamp = now.strftime("%y%m%d%H%M%S")
    return check_name(f"{slug(prefix, MAX_NAME - len(stamp) - 1)}-{stamp}")


def render(raw: dict[str, Any], *, name: str | None = None, namespace: str | None = None,
           image: str | None = None, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A copy of ``raw`` renamed, moved and with the primary container's image replaced (a
    TrainJob's: its trainer's)."""
    body = copy.deepcopy(raw)
    metadata = body.setdefault("metadata", {})
    old = metadata.get("name")
    if name:
        metadata["name"] = check_name(name)
    if namespace:
        metadata["namespace"] = namespace
    if labels:
        metadata["labels"] = {**metadata.get("labels", {}), **labels}
    template = body.get("spec", {}).get("trialTemplate", {})
    trial_labels = template.get("trialSpec", {}).get("metadata", {}).get("labels", {})
    if name and trial_labels.get(EXPERIMENT_LABEL) == old:
        trial_labels[EXPERIMENT_LABEL] = name
    if image:
        primary = template.get("primaryContainerName")
        trial_spec = template.get("trialSpec", {})
        containers = [c for c in _containers(trial_spec) if c.get("name") == primary]
        if trial_spec.get("kind") == "TrainJob":  # the trainer overrides the runtime's image
            containers = [trial_spec.setdefault("spec", {}).setdefault("trainer", {})]
        if not containers:
            raise RenderError(f"no container named {primary!r} (primaryContainerName) in the "
                              "trial template to set the image of")
        for container in containers:
            container["image"] = image
    return body


def _containers(node: Any) -> list[dict[str, Any]]:
    """Every container in a trial spec (Job, TFJob replicas, PyTorchJob, ...)."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                found.extend(c for c in value if isinstance(c, dict))
            else:
                found.extend(_containers(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_containers(item))
    return found
