"""Katib v0.19.0 on the development cluster: its own ``katib-standalone-postgres`` install,
read from the Go module cache (the module ``make cluster-build`` built Katib's binaries from),
patched by kustomize: ``manifests/suggestion/katib-config.yaml`` as katib-config (nasflow's
services for the algorithms and early stopping), PostgreSQL on the host instead of a pod."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import yaml

from devcluster import host_services
from devcluster.kubectl import kubectl
from devcluster.layout import KATIB_VERSION, ROOT, RUN

HERE = Path(__file__).resolve().parent
MODULE = HERE / "go" / "katib"  # the Go module that pins Katib's release


def source() -> Path:
    """Katib's module in the Go module cache (downloaded by ``go mod download``)."""
    found = subprocess.run(["go", "mod", "download", "-json", f"github.com/kubeflow/katib@"
                            f"{KATIB_VERSION}"], cwd=MODULE, check=True, capture_output=True,
                           text=True)
    return Path(json.loads(found.stdout)["Dir"])


def kustomization() -> Path:
    """The overlay, written under ``run/`` since it names the module cache's absolute path."""
    folder = RUN / "katib"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "host-postgres.yaml").write_text(host_services.endpoint_slice(
        "katib-postgres", "kubeflow", host_services.POSTGRES_PORT, "dbapi"))
    (folder / "kustomization.yaml").write_text(f"""\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - {os.path.relpath(source() / "manifests/v1beta1/installs/katib-standalone-postgres", folder)}
  - host-postgres.yaml
patches:
  - path: {ROOT / "manifests/suggestion/katib-config.yaml"}
  - path: {HERE / "manifests" / "katib-patches.yaml"}
  - target: {{kind: Service, name: katib-postgres}}
    patch: '[{{"op": "remove", "path": "/spec/selector"}}]'
""")
    return folder


WEBHOOKS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")


def apply() -> None:
    """Everything but the webhook configurations, then those once katib-controller is
    Available. Katib's install labels its own namespace for metrics-collector injection and
    its pod webhook fails closed, so no pod of ``kubeflow`` can be created while no controller
    serves the webhook, katib-controller's own included: a plain ``kubectl apply`` works only
    when the controller's pod is created before the webhook configuration lands (docs/katib.md)."""
    rendered = kubectl("kustomize", "--load-restrictor", "LoadRestrictionsNone",
                       str(kustomization())).stdout
    documents = [d for d in yaml.safe_load_all(rendered) if d]
    first = [d for d in documents if d["kind"] not in WEBHOOKS]
    kubectl("apply", "--server-side", "--force-conflicts", "-f", "-",
            stdin=yaml.safe_dump_all(first))
    kubectl("-n", "kubeflow", "wait", "--for=condition=Available", "deployment",
            "katib-controller", "--timeout=180s")
    kubectl("apply", "--server-side", "--force-conflicts", "-f", "-",
            stdin=yaml.safe_dump_all([d for d in documents if d["kind"] in WEBHOOKS]))
