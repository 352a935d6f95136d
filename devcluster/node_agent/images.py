"""The one table from image names to what runs on this machine instead (no image can be pulled
here). A pod's container runs the table's command unless the pod gives its own, in the table's
working folder, with the image's environment under the pod's, as a runtime would.

| image (any registry, any tag)            | runs                                            |
|------------------------------------------|-------------------------------------------------|
| nasflow-trial, nasflow-trial-gpu         | the Dockerfile target's ENTRYPOINT in ``.venv`` |
| nasflow-pipeline, nasflow-suggestion,    | the same, for the targets pipeline, suggestion, |
| nasflow-earlystopping, nasflow-mlflow    | earlystopping, mlflow                           |
| ghcr.io/kubeflow/katib/katib-controller  | ``.devcluster/bin/katib-controller``            |
| ghcr.io/kubeflow/katib/katib-db-manager  | ``.devcluster/bin/katib-db-manager``            |
| ghcr.io/kubeflow/katib/file-metrics-collector | ``.devcluster/bin/file-metricscollector``  |

``.venv`` (``make install``) holds every extra of nasflow, so each nasflow image runs there with
its own ENTRYPOINT, CMD and ENV from the Dockerfile, and the repository folders the Dockerfile
copies into it (``COPY manifests /app/manifests``) mounted read-only where the image has them.
Katib's images run the binaries ``make cluster-build`` built from Katib's release, in the
folder that plays their ``/app``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from devcluster import dockerfile
from devcluster.layout import BIN, ROOT, VENV

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NASFLOW_TARGETS = {"nasflow-trial": "trial", "nasflow-trial-gpu": "trial-gpu",
                   "nasflow-pipeline": "pipeline", "nasflow-suggestion": "suggestion",
                   "nasflow-earlystopping": "earlystopping", "nasflow-mlflow": "mlflow"}
KATIB_BINARIES = {"ghcr.io/kubeflow/katib/katib-controller": "katib-controller",
                  "ghcr.io/kubeflow/katib/katib-db-manager": "katib-db-manager",
                  "ghcr.io/kubeflow/katib/file-metrics-collector": "file-metricscollector"}


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
    if name in KATIB_BINARIES:
        return Image(entrypoint=[str(BIN / KATIB_BINARIES[name])],
                     env={"PATH": SYSTEM_PATH}, workdir=str(BIN))
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
