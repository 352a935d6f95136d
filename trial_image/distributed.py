"""One trial as several processes: ``tf.distribute.MultiWorkerMirroredStrategy`` across the
nodes of a Kubeflow Trainer ``TrainJob`` (or the embedded engine's local workers).

The contract (docs/trial-image.md, "Several workers"), read from the environment:

- ``TF_CONFIG`` set (a TFJob, your own launcher): used as it is; the chief is task 0 of
  ``worker`` (or the ``chief`` task).
- ``NASFLOW_NUM_NODES`` > 1: the trial's TrainJob ``numNodes`` (nasflow's manifests set both, and
  ``nasflow validate`` checks that they agree). The node's rank is ``JOB_COMPLETION_INDEX``, which
  Kubernetes sets in the pods of an Indexed Job (a JobSet's replicated jobs are). The workers'
  addresses are ``NASFLOW_WORKER_HOSTS`` (``host:port,...``, what the embedded engine gives), or
  else the JobSet's stable host names ``<jobset>-node-0-<rank>.<jobset>`` with ``<jobset>`` from
  ``NASFLOW_JOBSET_NAME`` (nasflow's TrainingRuntime reads it from the pod's
  ``jobset.sigs.k8s.io/jobset-name`` label) and port ``NASFLOW_WORKER_PORT`` (default 2222).
- otherwise one process, as before.

Every worker trains the same steps; the global batch (``--batch-size``) is split across them, so
the same seed gives the 1-worker trial's curve. Only the chief reports to Katib and MLflow.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from trial_image.errors import InputError

NUM_NODES = "NASFLOW_NUM_NODES"
HOSTS = "NASFLOW_WORKER_HOSTS"
JOBSET = "NASFLOW_JOBSET_NAME"
PORT = "NASFLOW_WORKER_PORT"
RANK = "JOB_COMPLETION_INDEX"
DEFAULT_PORT = 2222
NODE_JOB = "node"  # Kubeflow Trainer's replicated job of training nodes
MAX_NODES = 1024
_HOST = re.compile(r"^[A-Za-z0-9.-]+:\d{1,5}$")


@dataclass(frozen=True)
class Workers:
    """The trial's workers and which one this process is."""

    tf_config: dict[str, Any]
    rank: int
    count: int

    @property
    def chief(self) -> bool:
        return self.rank == 0


def _integer(environ: Mapping[str, str], name: str, low: int, high: int) -> int:
    text = environ.get(name, "")
    if not re.fullmatch(r"\d{1,6}", text.strip()) or not low <= int(text) <= high:
        raise InputError(f"${name} must be an integer from {low} to {high}, got {text[:40]!r}")
    return int(text)


def _from_tf_config(text: str) -> Workers:
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        kind, index = str(task["type"]), int(task["index"])
        count = sum(len(cluster.get(k, [])) for k in ("chief", "worker"))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"$TF_CONFIG is not a TensorFlow cluster spec "
                         f"({type(exc).__name__}: {exc})") from None
    rank = (0 if kind == "chief" else index + 1) if cluster.get("chief") else index
    return Workers(config, rank, max(count, 1))


def workers(environ: Mapping[str, str] = os.environ) -> Workers | None:
    """This process's place among the trial's workers; None for a one-process trial. An
    inconsistent environment is an input error (exit 2) naming the variable."""
    if environ.get("TF_CONFIG"):
        found = _from_tf_config(environ["TF_CONFIG"])
        return found if found.count > 1 else None
    if environ.get(NUM_NODES, "1").strip() == "1":
        return None
    count = _integer(environ, NUM_NODES, 1, MAX_NODES)
    if RANK not in environ:
        raise InputError(f"${NUM_NODES} is {count} but ${RANK} (the node's rank, set by "
                         "Kubernetes in an Indexed Job's pods) is missing")
    rank = _integer(environ, RANK, 0, count - 1)
    if environ.get(HOSTS):
        hosts = [h.strip() for h in environ[HOSTS].split(",")]
        bad = [h for h in hosts if not _HOST.match(h)]
        if len(hosts) != count or bad:
            raise InputError(f"${HOSTS} must list {count} host:port addresses, got "
                             f"{environ[HOSTS][:200]!r}")
    else:
        jobset = environ.get(JOBSET, "")
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", jobset):
            raise InputError(f"${JOBSET} (the TrainJob's name, from the pod's "
                             f"jobset.sigs.k8s.io/jobset-name label) must be a DNS label, got "
                             f"{jobset[:80]!r}")
        port = _integer(environ, PORT, 1, 65535) if environ.get(PORT) else DEFAULT_PORT
        hosts = [f"{jobset}-{NODE_JOB}-0-{i}.{jobset}:{port}" for i in range(count)]
    config = {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": rank}}
    return Workers(config, rank, count)


def strategy(found: Workers) -> Any:
    """The multi-worker strategy, created before TensorFlow runs anything (it configures the
    collective ops of this process); Keras 3 patched where it cannot train with it yet."""
    os.environ["TF_CONFIG"] = json.dumps(found.tf_config)
    import tensorflow as tf

    _patch_keras_reductions()
    return tf.distribute.MultiWorkerMirroredStrategy()


def _patch_keras_reductions() -> None:
    """Keras 3 reduces each step's logs under MultiWorkerMirroredStrategy with
    ``strategy.reduce("MEAN", v, axis=0)``, which fails on the scalar metrics
    (tensorflow/tensorflow#72388, open since Keras 3.0; the reported workaround is Keras 2).
    The metrics' variables are summed across workers already, so the mean over workers of each
    scalar (``axis=None``) is the value every worker holds."""
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer

    if getattr(trainer.reduce_per_replica, "nasflow", False):
        return
    original = trainer.reduce_per_replica

    def reduce_per_replica(values: Any, strategy: Any, reduction: str) -> Any:
        if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(strategy):
            return tf.nest.map_structure(
                lambda v: strategy.reduce("MEAN", v, axis=None)
                if isinstance(v, tf.distribute.DistributedValues) else v, values)
        return original(values, strategy, reduction)

    reduce_per_replica.nasflow = True  # type: ignore[attr-defined]
    trainer.reduce_per_replica = reduce_per_replica


def prepare_model(model: Any, sample: Any) -> None:
    """Build ``model``'s metrics and optimizer from a local batch: Keras 3 would reduce the
    first distributed batch across workers to learn its shapes, which
    MultiWorkerMirroredStrategy cannot do on a nested batch (the same issue)."""
    def symbolic_build(iterator: Any = None, data_batch: Any = None) -> None:
        with model.distribute_strategy.scope():
            model._symbolic_build(data_batch=sample)

    model._maybe_symbolic_build = symbolic_build


def shard_by_data(dataset: Any) -> Any:
    """Every worker reads the pipeline and keeps its share of each global batch: the global
    batches are the 1-worker trial's, in the same order (file sharding would change them)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)
