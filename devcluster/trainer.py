"""Kubeflow Trainer v2.3.0 and JobSet v0.12.0 on the development cluster, from their own
manifests in the Go module cache: TrainJob trials (manifests/trainer, docs/trainjob.md) run as
Trainer's controller makes them, a JobSet of Indexed Jobs."""

from __future__ import annotations

from devcluster import releases
from devcluster.kubectl import kubectl
from devcluster.layout import JOBSET_VERSION, TRAINER_VERSION

NAMESPACE = "kubeflow-system"
JOBSET_NAMESPACE = "jobset-system"


def apply() -> None:
    """Trainer's ``manifests/overlays/manager`` as released, but with JobSet from its own
    module's ``config/default`` (the overlay downloads JobSet's manifests from GitHub, which
    this machine cannot reach). Each controller makes its webhook certificate itself."""
    trainer = releases.source("trainer", "github.com/kubeflow/trainer/v2", TRAINER_VERSION)
    jobset = releases.source("trainer", "sigs.k8s.io/jobset", JOBSET_VERSION)
    base = trainer / "manifests" / "base"
    trainer_overlay = releases.overlay("trainer", f"""\
namespace: {NAMESPACE}
images:
  - name: ghcr.io/kubeflow/trainer/trainer-controller-manager
    newTag: {TRAINER_VERSION}
secretGenerator:
  - name: kubeflow-trainer-webhook-cert
    namespace: {NAMESPACE}
    options: {{disableNameSuffixHash: true}}
configMapGenerator:
  - name: kubeflow-trainer-public
    literals: [kubeflow_trainer_version={TRAINER_VERSION}]
    options: {{disableNameSuffixHash: true}}
""", [trainer / "manifests/overlays/manager/namespace.yaml", base / "crds", base / "manager",
      base / "rbac", base / "webhook"])
    jobset_overlay = releases.overlay("jobset", f"""\
images:  # as Trainer's manifests/third-party/jobset names JobSet's release image
  - name: us-central1-docker.pkg.dev/k8s-staging-images/jobset/jobset
    newName: registry.k8s.io/jobset/jobset
    newTag: {JOBSET_VERSION}
""", [jobset / "config" / "default"])
    releases.apply(releases.render(jobset_overlay) + releases.render(trainer_overlay))


def wait() -> None:
    """Both controllers serve their webhooks (a TrainingRuntime is refused before)."""
    kubectl("-n", JOBSET_NAMESPACE, "wait", "--for=condition=Available", "deployment",
            "jobset-controller-manager", "--timeout=240s")
    kubectl("-n", NAMESPACE, "wait", "--for=condition=Available", "deployment",
            "kubeflow-trainer-controller-manager", "--timeout=240s")
