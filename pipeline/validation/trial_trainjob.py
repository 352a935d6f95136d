"""A trial template of kind Kubeflow Trainer ``TrainJob`` (``trainer.kubeflow.org/v1alpha1``),
checked against Trainer's own typed models (``kubeflow-trainer-api``) and what Katib needs of it.

Katib runs TrainJob trials out of the box (katib-config ``trialResources`` lists
``TrainJob.v1alpha1.trainer.kubeflow.org``): its defaulter fills the ``Complete``/``Failed``
conditions, and its metrics collector joins the pod of node 0 (``jobset.sigs.k8s.io/
replicatedjob-name: node``, completion index 0), in the container named ``node``. The API server
refuses a TrainJob that does not fit Trainer's schema, so every trial would fail at creation:
nasflow refuses it now, naming the field.
"""

from __future__ import annotations

from typing import Any

from pipeline.katib.manifest import Problem, did_you_mean, field_path, model_of
from trial_image.contract import MAX_NODES, NUM_NODES_ENV

API_VERSION = "trainer.kubeflow.org/v1alpha1"
NODE_CONTAINER = "node"  # Trainer's trainer container, Katib's primary container for TrainJob
SCALARS = ("ResourceQuantity", "IntOrString")  # objects in the models, scalars on the wire


def check_trainjob(trial_spec: dict[str, Any], primary: str | None, where: str
                   ) -> list[Problem]:
    """Problems of ``trial_spec`` as a TrainJob (empty for any other kind)."""
    if trial_spec.get("kind") != "TrainJob":
        return []
    if trial_spec.get("apiVersion") != API_VERSION:
        return [Problem(f"{where}.apiVersion", f"a TrainJob is {API_VERSION} (Katib's "
                        f"trialResources), not {trial_spec.get('apiVersion')!r}")]
    from kubeflow_trainer_api.models import TrainerV1alpha1TrainJob

    problems = schema_problems(trial_spec, TrainerV1alpha1TrainJob, where)
    if problems:
        return problems
    if primary and primary != NODE_CONTAINER:
        problems.append(Problem("spec.trialTemplate.primaryContainerName",
                                f"must be {NODE_CONTAINER!r} for a TrainJob (the runtime's "
                                f"trainer container, which Katib's collector joins), not "
                                f"{primary!r}"))
    trainer = trial_spec.get("spec", {}).get("trainer") or {}
    nodes = trainer.get("numNodes")
    if nodes is not None and not 1 <= nodes <= MAX_NODES:
        problems.append(Problem(f"{where}.spec.trainer.numNodes",
                                f"must be from 1 to {MAX_NODES}, got {nodes}"))
        return problems
    declared = [e.get("value") for e in trainer.get("env") or [] if e.get("name") == NUM_NODES_ENV]
    argv = [str(a) for a in (trainer.get("command") or []) + (trainer.get("args") or [])]
    nasflow = "trial_image" in argv[:3]
    if declared and str(declared[0]) != str(nodes or 1):
        problems.append(Problem(f"{where}.spec.trainer.env[{NUM_NODES_ENV}]",
                                f"is {declared[0]!r} but numNodes is {nodes or 1}: the trial "
                                "image must know how many nodes train (set both alike)"))
    elif nasflow and (nodes or 1) > 1 and not declared:
        problems.append(Problem(f"{where}.spec.trainer.env",
                                f"numNodes is {nodes}: add {{name: {NUM_NODES_ENV}, value: "
                                f"\"{nodes}\"}} (the trial image reads it; Trainer does not tell a "
                                "plain runtime's nodes how many they are)"))
    return problems


def schema_problems(value: dict[str, Any], model: type, where: str) -> list[Problem]:
    """``value`` against a ``kubeflow-trainer-api`` model: unknown fields and wrong types. The
    generated models read a resource quantity or an int-or-string as an object; Kubernetes
    writes them as strings or numbers, which are accepted here."""
    import pydantic

    problems = _unknown_fields(value, model, where)
    try:
        model.model_validate(value)
    except pydantic.ValidationError as exc:
        kind = model.__name__.removeprefix("TrainerV1alpha1")
        for e in exc.errors():
            expected = str((e.get("ctx") or {}).get("class_name", ""))
            if e["type"] == "model_type" and expected.endswith(SCALARS) and \
                    isinstance(e["input"], (str, int, float)):
                continue
            problems.append(Problem(f"{where}.{field_path(e['loc'])}",
                                    f"{e['msg']} (Kubeflow Trainer's {kind})"))
    return problems


def _unknown_fields(value: Any, model: type, where: str) -> list[Problem]:
    """Fields the typed model does not have (pydantic ignores them; the API server prunes
    or refuses them)."""
    if not isinstance(value, dict):
        return []
    fields = {(info.alias or name): info for name, info in model.model_fields.items()}
    problems = []
    for key, item in value.items():
        path = f"{where}.{key}"
        if key not in fields:
            close = did_you_mean(key, fields)
            hint = f"; did you mean {close}?" if close else ""
            problems.append(Problem(path, f"unknown field: Kubeflow Trainer's {model.__name__} "
                                          f"has no {key!r}{hint}"))
            continue
        inner = model_of(fields[key].annotation)
        if inner is None:  # a scalar, or a mapping of free keys (labels, quantities)
            continue
        if isinstance(item, list):
            for i, entry in enumerate(item):
                problems += _unknown_fields(entry, inner, f"{path}[{i}]")
        else:
            problems += _unknown_fields(item, inner, path)
    return problems
