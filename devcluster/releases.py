"""The released projects the development cluster installs from their own manifests, read from
the Go module cache: the same modules ``make cluster-build`` built their binaries from, pinned by
the wrapper modules under ``devcluster/go/``."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import yaml

from devcluster.kubectl import kubectl
from devcluster.layout import RUN

GO = Path(__file__).resolve().parent / "go"


def source(wrapper: str, module: str, version: str) -> Path:
    """``module@version``'s folder in the module cache (``go mod download`` fetches it once)."""
    found = subprocess.run(["go", "mod", "download", "-json", f"{module}@{version}"],
                           cwd=GO / wrapper, check=True, capture_output=True, text=True)
    return Path(json.loads(found.stdout)["Dir"])


def overlay(name: str, body: str, resources: list[Path],
            files: dict[str, str] | None = None) -> Path:
    """A kustomization under ``run/<name>`` (it names the module cache's absolute paths, so it
    is written at start, not kept in the repository): ``resources`` relative to it, ``files``
    written beside it and listed after them, then ``body``."""
    folder = RUN / name
    folder.mkdir(parents=True, exist_ok=True)
    for file, text in (files or {}).items():
        (folder / file).write_text(text)
    listed = "".join(f"  - {os.path.relpath(r, folder)}\n" for r in resources)
    listed += "".join(f"  - {file}\n" for file in files or {})
    (folder / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources:\n{listed}{body}")
    return folder


def render(folder: Path) -> list[dict]:
    """The overlay's objects, as ``kubectl kustomize`` builds them."""
    rendered = kubectl("kustomize", "--load-restrictor", "LoadRestrictionsNone", str(folder))
    return [d for d in yaml.safe_load_all(rendered.stdout) if d]


def apply(documents: list[dict]) -> None:
    kubectl("apply", "--server-side", "--force-conflicts", "-f", "-",
            stdin=yaml.safe_dump_all(documents))
