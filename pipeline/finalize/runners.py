"""Where final runs execute: as trial processes of the embedded engine, or as Kubernetes Jobs.

Both take the experiment's trial template, substitute a candidate's assignments for the run's
name, append the final schedule's flags to the primary container's command, run up to
``parallel`` at a time and report each run's outcome. The trial logs its run, metrics and model to
MLflow itself, where :mod:`pipeline.finalize` reads them.
"""

from __future__ import annotations

import os
import queue
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pipeline.engine.template import TrialCommand, primary_container, substitute, trial_command
from pipeline.engine.trial import Collector, TrialProcess, WarmPool
from pipeline.finalize.errors import FinalizeError
from pipeline.finalize.plan import FinalRun
from pipeline.validation.support import LOCAL_KINDS

FINALIZE_LABEL = "nasflow.dev/finalize"


@dataclass(frozen=True)
class Outcome:
    succeeded: bool
    message: str  # why it failed: exit code and last log line, or the Job's condition


class Runner(Protocol):
    def run(self, runs: list[FinalRun]) -> dict[str, Outcome]:
        """Run every one of ``runs`` (outcomes by name), at most ``parallel`` at once."""


def _is_trial_image(argv: list[str]) -> bool:
    return "trial_image" in argv[:3] and "darts" not in argv[3:4]


class LocalRunner:
    """Trial processes of the embedded engine (warm workers for ``python -m trial_image``), logs
    in ``<workdir>/<experiment>/final/<run>/metrics.log``."""

    def __init__(self, template: Any, namespace: str, workdir: Path, tracking_uri: str,
                 parallel: int, pool: WarmPool | None, cwd: Path | None = None,
                 log: Callable[[str], None] = lambda line: None) -> None:
        self.template = template
        self.namespace = namespace
        self.workdir = workdir
        self.tracking_uri = tracking_uri
        self.parallel = max(1, parallel)
        self.pool = pool  # the caller's: after `nasflow run`, the search's own warm workers
        self.cwd = cwd or Path.cwd()
        self.log = log

    def _command(self, run: FinalRun) -> TrialCommand:
        command = trial_command(self.template, run.name, self.namespace,
                                run.candidate.assignments)
        if not _is_trial_image(command.argv):
            raise FinalizeError("final training needs the trial template to run nasflow's "
                                f"trial image (`python -m trial_image`), not {command.argv[:3]}")
        return TrialCommand([*command.argv, *run.flags()], command.env,
                            command.deadline_seconds, command.nodes)

    def run(self, runs: list[FinalRun]) -> dict[str, Outcome]:
        commands = {run.name: self._command(run) for run in runs}
        pool = self.pool
        if pool is not None and all(c.nodes == 1 for c in commands.values()):
            pool.prestart(min(self.parallel, len(runs)))  # several nodes: fresh processes
        done: queue.Queue[TrialProcess] = queue.Queue()
        pending, running, outcomes = list(runs), {}, {}
        try:
            while pending or running:
                while pending and len(running) < self.parallel:
                    run = pending.pop(0)
                    directory = self.workdir / run.experiment / "final" / run.name
                    shutil.rmtree(directory, ignore_errors=True)
                    env = {**os.environ, **commands[run.name].env, "KATIB_TRIAL_NAME": run.name,
                           "MLFLOW_TRACKING_URI": self.tracking_uri}
                    env.pop("MLFLOW_PARENT_RUN_ID", None)
                    self.log(f"{run.role} run {run.name}: {run.describe()}")
                    proc = TrialProcess(len(outcomes) + len(running), run.name, commands[run.name],
                                        directory, Collector(), env, self.cwd, done, pool)
                    running[run.name] = proc
                try:
                    proc = done.get(timeout=1.0)
                except queue.Empty:
                    for late in running.values():
                        if late.deadline and time.monotonic() > late.deadline:
                            late.stop("DeadlineExceeded")
                    continue
                running.pop(proc.name)
                outcomes[proc.name] = self._outcome(proc)
        finally:
            for proc in running.values():
                proc.stop("Interrupted")
        return outcomes

    @staticmethod
    def _outcome(proc: TrialProcess) -> Outcome:
        if proc.returncode == 0 and not proc.killed_reason:
            return Outcome(True, "")
        log = proc.trial_dir / "metrics.log"
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
        why = proc.killed_reason or f"exit code {proc.returncode}"
        return Outcome(False, f"{why}: {tail[0] if tail else ''}"[:1000])


class ClusterRunner:
    """``batch/v1`` Jobs (or Kubeflow Trainer TrainJobs, as the trials are) rendered from the
    template: the trial's image, service account, resources and security context (a TrainJob's
    come from its runtime), in the experiment's namespace, followed with a watch. The
    Experiment owns them, so deleting it (``kubectl delete``, the pipeline's pruning) deletes
    them, as it deletes its trials."""

    def __init__(self, client: Any, experiment: Any, parallel: int, timeout: float,
                 image: str | None = None, log: Callable[[str], None] = lambda line: None
                 ) -> None:
        self.client = client
        self.template = experiment.spec.trial_template
        self.owner = {"apiVersion": "kubeflow.org/v1beta1", "kind": "Experiment",
                      "name": experiment.metadata.name, "uid": experiment.metadata.uid}
        self.parallel = max(1, parallel)
        self.timeout = timeout
        self.image = image
        self.log = log

    def job(self, run: FinalRun) -> dict[str, Any]:
        """The Job of ``run``: the template's Job with the final flags on its primary
        container and none of Katib's labels (Katib must not take it for a trial)."""
        def add_flags(container: dict[str, Any]) -> None:
            container["args" if "args" in container else "command"] += run.flags()

        return template_job(self.template, run.name, self.client.namespace,
                            run.candidate.assignments, add_flags,
                            {FINALIZE_LABEL: run.experiment, "nasflow.dev/role": run.role},
                            self.owner, self.image)

    def run(self, runs: list[FinalRun]) -> dict[str, Outcome]:
        jobs = {run.name: self.job(run) for run in runs}
        outcomes = {}
        for start in range(0, len(runs), self.parallel):
            batch = runs[start:start + self.parallel]
            for run in batch:
                self.log(f"{run.role} job {run.name}: {run.describe()}")
                self.client.create_job(jobs[run.name])
            for run in batch:
                outcomes[run.name] = job_outcome(self.client.wait_job(
                    run.name, self.timeout, jobs[run.name]["kind"]))
        return outcomes


def template_job(template: Any, name: str, namespace: str, assignments: dict[str, str],
                 edit: Callable[[dict[str, Any]], None], labels: dict[str, str],
                 owner: dict[str, Any], image: str | None) -> dict[str, Any]:
    """A ``batch/v1`` Job (or TrainJob) from the trial template whose primary container (the
    trial image's: its image, service account, resources and security stay; a TrainJob's
    trainer) ``edit`` changes, without Katib's labels (Katib must not take it for a trial),
    owned by ``owner`` (deleted with it)."""
    spec = substitute(template, name, namespace, assignments)
    if (spec.get("kind"), spec.get("apiVersion")) not in LOCAL_KINDS:
        raise FinalizeError(f"this stage runs a batch/v1 Job or a TrainJob; the trial template "
                            f"is a {spec.get('kind')}")
    container, _ = primary_container(spec, template.primary_container_name)
    argv = [*(container.get("command") or []), *(container.get("args") or [])]
    if not _is_trial_image(argv):
        raise FinalizeError("this stage needs the trial template to run nasflow's trial image "
                            f"(`python -m trial_image`), not {argv[:3]}")
    edit(container)
    if image:
        container["image"] = image
    kept = {k: v for k, v in (spec.get("metadata") or {}).get("labels", {}).items()
            if not k.startswith("katib.kubeflow.org/")}
    spec["metadata"] = {"name": name, "labels": {**kept, **labels},
                        **({"ownerReferences": [owner]} if owner.get("uid") else {})}
    if spec["kind"] == "Job":  # a TrainJob's runtime says so (manifests/trainer)
        spec["spec"]["backoffLimit"] = 0  # a failed run is reported, not retried
    return spec


def job_outcome(job: dict[str, Any]) -> Outcome:
    """Succeeded when its ``Complete`` condition is True; else the ``Failed`` one's reason
    (a Job's and a TrainJob's conditions have the same names)."""
    conditions = {c.get("type"): c for c in (job.get("status") or {}).get("conditions") or []
                  if c.get("status") == "True"}
    if "Complete" in conditions:
        return Outcome(True, "")
    failed = conditions.get("Failed", {})
    return Outcome(False, f"{job.get('kind', 'Job')} failed: {failed.get('reason', '')}: "
                          f"{failed.get('message', '')}")

