"""Katib v0.19.0 on the development cluster: its own ``katib-standalone-postgres`` install,
patched by kustomize: ``manifests/suggestion/katib-config.yaml`` as katib-config (nasflow's
services for the algorithms and early stopping), PostgreSQL on the host instead of a pod."""

from __future__ import annotations

from pathlib import Path

from devcluster import host_services, releases
from devcluster.kubectl import kubectl
from devcluster.layout import KATIB_VERSION, ROOT

HERE = Path(__file__).resolve().parent
WEBHOOKS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")


def overlay() -> Path:
    katib = releases.source("katib", "github.com/kubeflow/katib", KATIB_VERSION)
    return releases.overlay(
        "katib", f"""\
patches:
  - path: {ROOT / "manifests/suggestion/katib-config.yaml"}
  - path: {HERE / "manifests" / "katib-patches.yaml"}
  - target: {{kind: Service, name: katib-postgres}}
    patch: '[{{"op": "remove", "path": "/spec/selector"}}]'
""", [katib / "manifests/v1beta1/installs/katib-standalone-postgres"],
        files={"host-postgres.yaml": host_services.endpoint_slice(
            "katib-postgres", "kubeflow", host_services.POSTGRES_PORT, "dbapi")})


def apply() -> None:
    """Everything but the webhook configurations, then those once katib-controller is
    Available. Katib's install labels its own namespace for metrics-collector injection and
    its pod webhook fails closed, so no pod of ``kubeflow`` can be created while no controller
    serves the webhook, katib-controller's own included: a plain ``kubectl apply`` works only
    when the controller's pod is created before the webhook configuration lands (docs/katib.md)."""
    documents = releases.render(overlay())
    releases.apply([d for d in documents if d["kind"] not in WEBHOOKS])
    kubectl("-n", "kubeflow", "wait", "--for=condition=Available", "deployment",
            "katib-controller", "--timeout=180s")
    releases.apply([d for d in documents if d["kind"] in WEBHOOKS])
