"""Compression as a stage: the trial image makes and measures the variants where training runs
(a local process, or a Job of the experiment's trial template on a cluster); this registers the
ones within the accuracy budget as versions of the same model, each with its alias.

A variant whose Test-Accuracy, measured with the variant itself, is more than
``max_accuracy_drop`` points below the source model's (a regression's: whose Test-RMSE is more
than that many percent above) is logged (its run says why) but not registered. Variants are
versions of their own registered model, ``<model>-variants``, each under its alias
(``models:/<model>-variants@int8-full``): the model's own versions stay its final models, so
its page leads with the champion; ``champion`` never moves.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.promotion.registry import PromotionError, Registry
from trial_image.contract import (
    COMPRESSION_VARIANTS,
    NUM_NODES_ENV,
    family_of,
    parse_model_uri,
    retry,
    tags,
    task_of,
)

VARIANT_LINE = re.compile(r"^[a-z0-9-]+: test (accuracy|RMSE) ")  # the trial's line per variant
STUDENT_SHARE = 0.5  # a student has at most half the teacher's parameters


@dataclass(frozen=True)
class CompressionPlan:
    """Which variants, and the budget a registered one must meet (accuracy points, or percent of
    a regression's RMSE)."""

    variants: str = ",".join(COMPRESSION_VARIANTS)
    max_accuracy_drop: float = 0.5

    @property
    def names(self) -> list[str]:
        return [v.strip() for v in self.variants.split(",") if v.strip()]


class CompressionError(Exception):
    """The compression process or Job failed (message says why)."""


@dataclass(frozen=True)
class VariantResult:
    variant: str
    run_id: str
    metric: str  # Test-Accuracy, Test-RMSE
    score: float
    drop: float  # accuracy points below the source model, or percent of RMSE above it
    size: float  # bytes of the .tflite file
    compressed: float  # the same gzip-compressed (what a pruned model saves)
    latency_ms: float
    version: str | None  # registered version, None: over the budget
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def source_of(registry: Registry, uri: str) -> tuple[Any, Any]:
    """(model version, its run) of ``models:/NAME@ALIAS`` or ``models:/NAME/N``."""
    parsed = parse_model_uri(uri)
    if parsed is None or parsed[0] != registry.model:
        raise PromotionError(f"expected models:/{registry.model}@ALIAS or "
                             f"models:/{registry.model}/N, got {uri!r}")
    name, alias, number = parsed
    version = registry.client.get_model_version_by_alias(name, alias) if alias \
        else registry.client.get_model_version(name, number)
    return version, registry.client.get_run(version.run_id)


def choose_student(registry: Registry, teacher_run: Any) -> Any | None:
    """The most accurate search trial of the teacher's experiment with at most half its
    parameters (by validation accuracy; None if there is none)."""
    limit = STUDENT_SHARE * teacher_run.data.metrics.get("Parameter-Count", 0)
    trials = [r for r in registry.runs_of(teacher_run.data.tags.get(tags.EXPERIMENT, ""),
                                          teacher_run.data.tags.get(tags.NAMESPACE, "default"))
              if r.data.tags.get(tags.ROLE, "trial") == "trial"
              and 0 < r.data.metrics.get("Parameter-Count", 0) <= limit
              and r.data.metrics.get("Best-Validation-Accuracy") is not None]
    return max(trials, key=lambda r: r.data.metrics["Best-Validation-Accuracy"], default=None)


def compress_flags(uri: str, variants: Sequence[str], student: Any | None,
                   max_drop: float, distillation: Sequence[str] = ()) -> list[str]:
    """The ``python -m trial_image compress`` flags (without ``distilled`` when there is no
    student); ``distillation``: the trial image's own flags for it (``--temperature=1``)."""
    kept = [v for v in variants if v != "distilled" or student is not None]
    return [f"--model-uri={uri}", f"--variants={','.join(kept)}",
            f"--max-accuracy-drop={max_drop:g}",
            *([f"--student-run={student.info.run_id}", *distillation]
              if student is not None else [])]


def run_locally(flags: list[str], tracking_uri: str, log: Callable[[str], None],
                log_file: Path) -> None:
    """The trial image's compression as a local process (argv list, no shell). Its whole
    output (TensorFlow's start-up, MLflow's warnings) goes to ``log_file``; the terminal gets
    its one line per variant made, and on failure its last line, the reason."""
    import os

    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    log("compressing: python -m trial_image compress " + " ".join(flags))
    log_file.parent.mkdir(parents=True, exist_ok=True)
    last = ""
    with log_file.open("a") as out, subprocess.Popen(
            [sys.executable, "-m", "trial_image", "compress", *flags], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            errors="replace") as child:
        for line in child.stdout:
            out.write(line)
            if line.strip():
                last = line.strip()
            if VARIANT_LINE.match(line):
                log("  " + line.rstrip())
    if child.returncode != 0:
        raise CompressionError(f"{last[:300] or 'no output'} (python -m trial_image compress "
                               f"exited {child.returncode}; its output is in {log_file})")


def compress_model(registry: Registry, model_uri: str, plan: CompressionPlan,
                   execute: Callable[[list[str], Any], None], log: Callable[[str], None],
                   retry_seconds: float, distillation: Sequence[str] = ()
                   ) -> list[VariantResult]:
    """Make, measure and register ``plan``'s variants of ``model_uri``: ``execute(flags, source
    run)`` runs ``python -m trial_image compress`` where training runs."""
    version, run = source_of(registry, model_uri)
    family = family_of(run.data.tags.get(tags.FAMILY))
    if family.compression:  # docs/sequences.md
        log(f"{model_uri} reads a {family}: {family.compression}; no compressed variants are "
            "made")
        return []
    source = f"models:/{registry.model}/{version.version}"
    made = variant_runs(registry, source, retry_seconds)
    missing = [v for v in plan.names if v not in made]
    for variant, why in family.unmakeable.items():
        if variant in missing:
            missing.remove(variant)
            log(why)
    if "distilled" in missing and task_of(run.data.tags.get(tags.TASK)).name != "classification":
        missing.remove("distilled")
        log("distillation softens a classifier's outputs: no distilled variant of a regression")
    student = choose_student(registry, run) if "distilled" in missing else None
    if "distilled" in missing and student is None:
        log("no trial of the search has at most half the model's parameters: no distilled "
            "variant")
    if missing:  # a variant already made of this version is not made again
        execute(compress_flags(source, missing, student, plan.max_accuracy_drop, distillation),
                run)
    return register_within_budget(registry, version, plan.max_accuracy_drop, retry_seconds)


def variant_runs(registry: Registry, source: str, retry_seconds: float) -> dict[str, Any]:
    """The newest FINISHED run of each variant made of ``source`` (``models:/NAME/N``)."""
    runs = retry(lambda: registry.finished_runs(
        f"tags.`{tags.SOURCE_MODEL}` = '{source}' and tags.`{tags.ROLE}` = 'variant'",
        order_by="attributes.start_time ASC"), "finding the variants' runs", retry_seconds)
    return {r.data.tags[tags.VARIANT]: r for r in runs}  # a rerun replaces an earlier one


def register_within_budget(registry: Registry, source_version: Any, max_drop: float,
                           retry_seconds: float) -> list[VariantResult]:
    """Register each variant run of ``source_version`` whose accuracy drop (or RMSE increase) is
    within ``max_drop`` points (percent); tag the others with why not."""
    source = f"models:/{registry.model}/{source_version.version}"
    out, variants = [], None
    for variant, run in variant_runs(registry, source, retry_seconds).items():
        m = run.data.metrics
        task = task_of(run.data.tags.get(tags.TASK))
        drop = m[task.loss_metric]
        version, reason = None, ""
        if drop > max_drop:
            reason = f"{task.describe_loss(drop)} > {max_drop:g}"
            registry.client.set_tag(run.info.run_id, "nasflow.decision", "not-registered")
            registry.client.set_tag(run.info.run_id, "nasflow.reason", reason)
        else:
            variants = variants or registry.variants()
            version = variants.register_variant(run, variant).version
        out.append(VariantResult(variant, run.info.run_id, task.test_metric,
                                 m[task.test_metric], drop,
                                 m["File-Size-Bytes"], m["Compressed-Size-Bytes"],
                                 m["Inference-Latency-Ms"], version, reason))
    return out


COMPRESS_LABEL = "nasflow.dev/compress"


def run_on_cluster(client: Any, experiment: str, flags: list[str], timeout: float,
                   image: str | None, log: Callable[[str], None]) -> None:
    """The compression as a Job (a TrainJob of one node) of the experiment's trial template (its
    image, service account, resources, MLflow settings), owned by the Experiment, followed to
    its end."""
    import hashlib

    from pipeline.finalize.runners import job_outcome, template_job

    found = client.get_experiment(experiment)
    template = found.spec.trial_template
    name = f"{experiment[:40]}-compress-{hashlib.sha1(' '.join(flags).encode()).hexdigest()[:8]}"

    def compress(container: dict[str, Any]) -> None:
        container.pop("args", None)
        container["command"] = ["python", "-m", "trial_image", "compress", *flags]
        if "numNodes" in container:  # a TrainJob's trainer: compression is one process
            container["numNodes"] = 1
            container["env"] = [e for e in container.get("env") or []
                                if e.get("name") != NUM_NODES_ENV]

    owner = {"apiVersion": "kubeflow.org/v1beta1", "kind": "Experiment",
             "name": found.metadata.name, "uid": found.metadata.uid}
    blank = {p.reference or p.name: "" for p in template.trial_parameters or []}
    body = template_job(template, name, client.namespace, blank, compress,
                        {COMPRESS_LABEL: experiment}, owner, image)
    log(f"compression job {name}")
    client.create_job(body)
    outcome = job_outcome(client.wait_job(name, timeout, body["kind"]))
    if not outcome.succeeded:
        raise CompressionError(f"compression job {name}: {outcome.message}")
