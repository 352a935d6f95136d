"""The one table from image names to what runs on this machine instead (no image can be pulled
here). A pod's container runs the table's command unless the pod gives its own, in the table's
working folder, with the image's environment under the pod's, as a runtime would.

| image (any registry, any tag)         | runs                                          |
|---------------------------------------|-----------------------------------------------|
| nasflow-trial, nasflow-trial-gpu      | the Dockerfile target's ENTRYPOINT in .venv   |
| nasflow-pipeline, nasflow-suggestion, | the same, for the targets pipeline,           |
| nasflow-earlystopping, nasflow-mlflow | suggestion, earlystopping, mlflow             |
| ghcr.io/kubeflow/katib/katib-controller, katib-db-manager, file-metrics-collector;        |
| ghcr.io/kubeflow/trainer/trainer-controller-manager; registry.k8s.io/jobset/jobset:       |
|                                       | the binaries in .devcluster/bin (GO_BINARIES) |

``.venv`` (``make install``) holds every extra of nasflow, so each nasflow image runs there with
its own ENTRYPOINT, CMD and ENV from the Dockerfile, and the repository folders the Dockerfile
copies into it (``COPY manifests /app/manifests``) mounted read-only where the image has them.
Katib's, Trainer's and JobSet's images run the binaries ``make cluster-build`` built from their
releases, mounted where their Dockerfiles put them (``/app/katib-controller``, ``/manager``),
since a pod may name that path as its command (JobSet's Deployment runs ``/manager``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from devcluster import dockerfile
from devcluster.layout import BIN, ROOT, VENV

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NASFLOW_TARGETS = {"nasflow-trial": "trial", "nasflow-trial-gpu": "trial-gpu",
                   "nasflow-pipeline": "pipeline", "nasflow-suggestion": "suggestion",
                   "nasflow-earlystopping": "earlystopping", "nasflow-mlflow": "mlflow"}
# image -> (binary in .devcluster/bin, where the image's Dockerfile puts it: its ENTRYPOINT)
GO_BINARIES = {
    "ghcr.io/kubeflow/katib/katib-controller": ("katib-controller", "/app/katib-controller"),
    "ghcr.io/kubeflow/katib/katib-db-manager": ("katib-db-manager", "/app/katib-db-manager"),
    "ghcr.io/kubeflow/katib/file-metrics-collector": ("file-metricscollector",
                                                      "/app/file-metricscollector"),
    "ghcr.io/kubeflow/trainer/trainer-controller-manager": ("trainer-controller-manager",
                                                            "/manager"),
    "registry.k8s.io/jobset/jobset": ("jobset-controller", "/manager"),
}


class UnknownImage(LookupError):
    """The image is not in the table: the pod waits, as with an image that cannot be pulled."""


@dataclass(frozen=True)
class Image:
    entrypoint: list[str]
    cmd: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    files: dict[str, str] = field(default_factory=dict)  # image path -> host path (read-only)


def repository(reference: str) -> str:
    """``REGISTRY/NAME:TAG@DIGEST`` -> ``REGISTRY/NAME``."""
    name = reference.split("@", 1)[0]
    last = name.rsplit("/", 1)
    if ":" in last[-1]:
        name = name[: name.rindex(":")]
    return name


def resolve(reference: str) -> Image:
    name = repository(reference)
    if name in GO_BINARIES:
        binary, path = GO_BINARIES[name]
        return Image(entrypoint=[path], env={"PATH": SYSTEM_PATH},
                     workdir=path.rsplit("/", 1)[0] or "/", files={path: str(BIN / binary)})
    target = NASFLOW_TARGETS.get(name.rsplit("/", 1)[-1])
    if target is None:
        raise UnknownImage(f"image {reference!r} is not in the node agent's table "
                           "(devcluster/node_agent/images.py)")
    image_env = dockerfile.env(target)
    image_env["PATH"] = f"{VENV / 'bin'}:{SYSTEM_PATH}"
    image_env["VIRTUAL_ENV"] = str(VENV)
    return Image(entrypoint=dockerfile.instruction(target, "ENTRYPOINT"),
                 cmd=dockerfile.instruction(target, "CMD"), env=image_env, workdir="/tmp",
                 files={dest: str(ROOT / src) for dest, src in dockerfile.copied(target).items()})
