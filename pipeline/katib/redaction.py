"""Literal ``env`` values are kept out of everything nasflow stores or prints.

A trial container's ``env: [{name: AWS_SECRET_ACCESS_KEY, value: ...}]`` would otherwise reach the
MLflow parent run's ``experiment.yaml`` (readable by everyone with access to the tracking server),
the engine's state database and ``nasflow status --output json``. The names stay, ``valueFrom``
references stay as they are, every literal value becomes :data:`REDACTED`. ``validate`` also warns,
with the field path, when a literal value looks like a secret: it belongs in a Secret.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from pipeline.katib.manifest import Problem

REDACTED = "<redacted>"
SECRET_LIKE = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL|API_?KEY|ACCESS_?KEY|"
                         r"PRIVATE_?KEY|AUTH", re.IGNORECASE)


def _env_entries(node: Any, path: str):
    """(path, entry) of every ``env`` list entry in ``node``."""
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}" if path else str(key)
            if key == "env" and isinstance(value, list):
                for i, entry in enumerate(value):
                    if isinstance(entry, dict):
                        yield f"{where}[{i}]", entry
            else:
                yield from _env_entries(value, where)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _env_entries(item, f"{path}[{i}]")


def redact(document: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``document`` whose literal env values read :data:`REDACTED`."""
    document = copy.deepcopy(document)
    for _, entry in _env_entries(document, ""):
        if "value" in entry:
            entry["value"] = REDACTED
    return document


def secret_warnings(document: dict[str, Any]) -> list[Problem]:
    """A warning per literal env value whose name looks like a secret's."""
    return [Problem(f"{where}.value", f"{entry.get('name')} is written literally; put it in a "
                                      "Secret and use valueFrom.secretKeyRef")
            for where, entry in _env_entries(document, "")
            if entry.get("value") not in (None, "") and SECRET_LIKE.search(str(entry.get("name")))]
