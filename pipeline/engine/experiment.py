"""Katib's Experiment controller on one machine: trials, counts, goal, conditions, resume.

Semantics follow Katib v1beta1 (docs/katib.md §3-§5): ``parallelTrialCount`` trials at once (default
3); the experiment Succeeds with ``ExperimentGoalReached`` when the best objective meets
``goal``, ``ExperimentMaxTrialsReached`` when ``maxTrialCount`` trials have completed (failed,
killed and early-stopped ones included) or ``ExperimentSuggestionEndReached`` when the algorithm
has nothing left; it Fails with ``ExperimentFailed`` once ``maxFailedTrialCount`` trials (at
least one) Failed or had their metrics unavailable.

Reproducibility under parallelism: an algorithm that learns from results is asked for trial
``k`` only once trials ``0..k-parallel`` have finished, and sees exactly those; with its
randomness seeded by (seed, k) the search is the same whatever order trials finish in.
"""

from __future__ import annotations

import functools
import os
import queue
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.early_stopping import create as create_early_stopping
from pipeline.engine.early_stopping import curves, stop_early
from pipeline.engine.lock import ExperimentLock, Locked
from pipeline.engine.metrics_collector import CollectorError
from pipeline.engine.pareto_front import pareto_front
from pipeline.engine.state import StateError, StateStore, TrialRecord, check_resumable
from pipeline.engine.status import Conditions, Objective, katib_status, progress
from pipeline.engine.template import TemplateError, trial_command
from pipeline.engine.trial import (
    INTERRUPTED,
    Collector,
    TrialProcess,
    WarmPool,
    outcome,
    requeue_interrupted,
)
from pipeline.engine.trial_volume import TrialVolume
from pipeline.katib.manifest import Manifest
from pipeline.katib.redaction import redact
from pipeline.katib.status import SCORED
from pipeline.katib.status import ExperimentCondition as Condition
from pipeline.katib.status import TrialStatus as Status
from pipeline.suggestion import create
from pipeline.suggestion.base import WAIT, SearchContext, TrialResult, trial_name
from pipeline.suggestion.pareto import parse_objectives
from trial_image.contract import TrackingError


class EngineError(Exception):
    """The run cannot start (exit code 2)."""


@dataclass
class EngineOptions:
    workdir: Path = Path(".nasflow")
    tracking_uri: str | None = None  # None: no MLflow
    seed: int = 0
    resume: bool = False
    restart: bool = False
    on_progress: Callable[[dict[str, Any]], None] | None = None
    cwd: Path = field(default_factory=Path.cwd)
    warm_trials: bool = True  # run `python -m trial_image` trials in warm workers
    pool: WarmPool | None = None  # the caller's, left open (final training reuses them)
    mlflow_retry_seconds: float = 20.0  # how long an unreachable MLflow is waited for


class ExperimentEngine:
    def __init__(self, manifest: Manifest, options: EngineOptions) -> None:
        self.manifest = manifest
        self.options = options
        self.experiment = manifest.experiment
        spec = self.experiment.spec
        self.name = manifest.name
        self.namespace = self.experiment.metadata.namespace or "default"
        self.parallel = spec.parallel_trial_count or 3
        self.max_trials = spec.max_trial_count
        self.max_failed = spec.max_failed_trial_count
        self.scoring = Objective(spec.objective)
        self.objective, self.maximize = self.scoring.name, self.scoring.maximize
        self.collector = Collector.of(spec)
        self.early_stopping = create_early_stopping(spec)
        self.dir = options.workdir / self.name
        self.trials: list[TrialRecord] = []
        self.running: dict[int, TrialProcess] = {}
        self.done: queue.Queue[TrialProcess] = queue.Queue()
        self.exhausted = False
        self.interrupted = False
        self.progress_due = True  # a trial started or ended since the progress line was drawn
        self.started = time.time()
        self.conditions = Conditions(on_change=self._save)
        self.data: dict[str, Any] = {}
        self.tracking = None
        self.objectives: list[tuple[str, bool]] = []
        self.pool = options.pool or (WarmPool() if options.warm_trials else None)

    # ---- set-up and resume -------------------------------------------------------------------

    def _open_state(self) -> StateStore:
        path = self.dir / "state.db"
        if self.options.restart and self.dir.exists():
            shutil.rmtree(self.dir)
        exists = path.exists()
        try:
            store = StateStore(path)
            saved = store.experiment() if exists else None
            trials = store.trials() if saved is not None else []
        except StateError as exc:
            raise EngineError(f"the state of {self.name!r} in {path} is damaged ({exc}); nothing "
                              "was changed: --restart discards it and starts over") from None
        if saved is not None and not self.options.resume:
            store.close()
            raise EngineError(f"experiment {self.name!r} already has state in {self.dir}; "
                              "use --resume to continue it or --restart to start over")
        if saved is not None:
            try:
                check_resumable(self.name, yaml.safe_load(saved[0]), self.manifest.raw)
            except StateError as exc:
                raise EngineError(str(exc)) from None
            self.conditions.items = saved[1].get("conditions", [])
            self.data = saved[2]
            self.trials = trials
        return store

    # ---- trial values ------------------------------------------------------------------------

    def _result(self, t: TrialRecord) -> TrialResult:
        if t.status not in SCORED:
            return TrialResult(t.index, t.assignments, t.status, None)
        return TrialResult(t.index, t.assignments, t.status, self.scoring.value(t),
                           {m: self.scoring.value(t, m) for m in self.scoring.metric_names})

    def _history(self, upto: int) -> list[TrialResult] | None:
        """The trials before ``upto`` once all of them are done (None: not yet): the engine
        waits for them, so a search is the same at any speed."""
        earlier = self.trials[:max(upto, 0)]
        if not all(t.done for t in earlier):
            return None
        return [self._result(t) for t in earlier]

    def _replay(self) -> None:
        """Rebuild the algorithm's state exactly as it evolved: each recorded trial is proposed
        again from the history it was proposed from."""
        def seen(upto: int) -> list[TrialResult]:
            return [self._result(r) for r in self.trials[:max(upto, 0)] if r.done]

        changed = [t.index for t in self.trials
                   if not self.suggestion.replay(t.index, t.assignments, seen, self.parallel)]
        if changed:
            print(f"nasflow run: resume is not exact: the algorithm now suggests other values "
                  f"for trial(s) {', '.join(map(str, changed))} than the saved run has (a "
                  "library changed?); the saved trials are kept and the search goes on from "
                  "them", file=sys.stderr)

    # ---- the loop ----------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        lock = ExperimentLock(self.options.workdir / f"{self.name}.lock")
        try:
            lock.acquire()
        except Locked as holder:
            raise EngineError(f"experiment {self.name!r} in {self.options.workdir} is being run "
                              f"by another nasflow ({holder}); wait for it, or stop it and "
                              "--resume") from None
        try:
            fresh = not self.dir.exists() or self.options.restart
            self.store = self._open_state()
            try:
                return self._run()
            except TrackingError:
                if fresh and not self.trials:  # refused before it began: leave nothing behind
                    self.store.close()
                    shutil.rmtree(self.dir, ignore_errors=True)
                raise
            finally:
                self.store.close()
                if self.pool and self.options.pool is None:
                    self.pool.close()
        finally:
            lock.release()

    def _run(self) -> dict[str, Any]:
        # MLflow first: a refusal comes before the search is built (ENAS imports TensorFlow)
        # and before warm workers start
        if self.options.tracking_uri:
            from pipeline.engine.tracking import open_tracking

            self.tracking = open_tracking(self.options.tracking_uri, self.manifest,
                                          self.data.get("parent_run_id"), self.options.seed,
                                          self.options.mlflow_retry_seconds)
            self.data["parent_run_id"] = self.tracking.run_id
        if self.pool and self.pool.serves_template(self.experiment.spec.trial_template,
                                                   self.namespace):
            left = (self.max_trials or self.parallel) - sum(t.done for t in self.trials)
            self.pool.prestart(max(0, min(self.parallel, left)))
        settings = {s.name: str(s.value) for s in self.experiment.spec.algorithm.algorithm_settings
                    or []}
        seed = int(settings.get("random_state", self.options.seed))
        self.suggestion = create(SearchContext(self.experiment, settings, seed))
        # Katib mounts each trial's folder of the algorithm's volume there (pbt)
        path = settings.get("suggestion_trial_dir", "").rstrip("/")
        self.volume = TrialVolume(path, self.dir / "checkpoints") if path else None
        if "objectives" in settings:  # a multi-objective algorithm: the front is reported
            self.objectives = parse_objectives(settings["objectives"])
        interrupted = requeue_interrupted(self.trials, self.store.save_trial)
        if self.tracking:
            self.tracking.kill_trial_runs(interrupted)
        self._replay()
        if self._completed() is not None and not self._budget_left():
            self._end_tracking()  # reopened above: a finished search's run ends as it was
            return self._status()
        self.conditions.restart()
        self.conditions.set(Condition.RUNNING, "ExperimentRunning", "Experiment is running")
        previous = {s: signal.signal(s, self._interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            reason = self._loop()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        for proc in list(self.running.values()):
            proc.stop(INTERRUPTED if reason is None else "ExperimentCompleted")
        while self.running:
            self._finish(self.done.get())
        if reason is None:  # interrupted: resumable
            self.conditions.set(Condition.RUNNING, "ExperimentInterrupted",
                                "Interrupted; continue with --resume")
        else:
            status, why, message = reason
            self.conditions.set(status, why, message)
        self._end_tracking()
        self._save()
        return self._status()

    def _end_tracking(self) -> None:
        if self.tracking:
            run_status = {Condition.SUCCEEDED: "FINISHED", Condition.FAILED: "FAILED"}.get(
                self.conditions.last["type"], "KILLED")
            self.tracking.finish(self.trials, self._values(), self.maximize, run_status,
                                 self._front())

    def _interrupt(self, signum: int, frame: Any) -> None:
        self.interrupted = True

    def _budget_left(self) -> bool:
        return self.max_trials is None or len(self.trials) < self.max_trials

    def _loop(self) -> tuple[str, str, str] | None:
        last_check = 0.0
        while True:
            try:
                proc = self.done.get(timeout=0.2 if self.running else 0.001)
                self._finish(proc)
                while not self.done.empty():
                    self._finish(self.done.get_nowait())
            except queue.Empty:
                pass
            if self.interrupted:
                return None
            if time.monotonic() - last_check > 0.5:
                last_check = time.monotonic()
                self._watch_running()
            reason = self._completed()
            if reason is not None:
                self._progress()
                return reason
            self._launch()
            if self.progress_due:  # after launching: the line counts every trial running now
                self._progress()

    def _launch(self) -> None:
        for record in self.trials:  # interrupted trials first, as they were
            if record.status == Status.CREATED and len(self.running) < self.parallel:
                self._spawn(record)
        while (len(self.running) < self.parallel and not self.exhausted
               and self._budget_left()):
            index = len(self.trials)
            assignments = self.suggestion.propose_in_turn(index, self._history, self.parallel)
            if assignments == WAIT and self._history(index) is None:
                return  # trials still running: proposed once they are done
            if not isinstance(assignments, dict):  # None, or WAIT with nothing left to wait for
                self.exhausted = True
                return
            self._start(index, assignments)

    def _start(self, index: int, assignments: dict[str, str]) -> None:
        name = trial_name(self.name, self.options.seed, index)
        record = TrialRecord(index, name, dict(assignments))
        if self.early_stopping:
            record.rules = [r.to_dict() for r in self.early_stopping.rules(
                curves(self.trials, self.objective))]
        self.trials.append(record)
        if self.volume:
            parent = self.suggestion.parent(index)
            self.volume.prepare(name, None if parent is None else self.trials[parent].name)
        self._spawn(record)

    def _spawn(self, record: TrialRecord) -> None:
        """Start ``record``'s process (again, after an interruption: a clean trial directory)."""
        index, name, assignments = record.index, record.name, record.assignments
        record.status, record.reason, record.message = Status.RUNNING, "", ""
        record.started = time.time()
        shutil.rmtree(self.dir / "trials" / name, ignore_errors=True)
        try:
            command = trial_command(self.experiment.spec.trial_template, name, self.namespace,
                                    assignments)
        except TemplateError as exc:
            record.status, record.reason = Status.FAILED, "TrialTemplateError"
            record.message = str(exc)
            record.finished = time.time()
            self.store.save_trial(record)
            return
        if self.volume:
            command = self.volume.mount(command, name)
        env = {**os.environ, "KATIB_TRIAL_NAME": name}
        env.pop("MLFLOW_PARENT_RUN_ID", None)
        if self.tracking:
            env.update({"MLFLOW_TRACKING_URI": self.options.tracking_uri,
                        "MLFLOW_PARENT_RUN_ID": self.tracking.run_id})
        proc = TrialProcess(index, name, command, self.dir / "trials" / name, self.collector, env,
                            self.options.cwd, self.done, self.pool)
        record.pid = proc.pid
        self.store.save_trial(record)
        if proc.process is not None:
            self.running[index] = proc
        self.progress_due = True

    def _watch_running(self) -> None:
        now = time.monotonic()
        for proc in list(self.running.values()):
            if not proc.killed_reason and proc.deadline and now > proc.deadline:
                proc.stop("DeadlineExceeded")
        if self.early_stopping:
            stop_early(self.early_stopping, self.trials, self.running, self.collector,
                       self.objective)

    def _finish(self, proc: TrialProcess) -> None:
        self.running.pop(proc.index, None)
        self.progress_due = True
        t = self.trials[proc.index]
        t.finished = time.time()
        try:
            t.observations = self.collector.collect(proc.trial_dir,
                                                    [*self.scoring.metric_names, "Parameter-Count"])
            unreadable = None
        except CollectorError as exc:
            t.observations, unreadable = {}, str(exc)
        t.status, t.reason, t.message = outcome(proc, t, self.objective, unreadable)
        self.store.save_trial(t)
        self._save()
        if self.tracking:
            if proc.returncode != 0:
                self.tracking.kill_trial_runs([t.name], "FAILED")
            self.tracking.update(self.trials, self._values(), self.maximize, self._front())

    # ---- conditions and status ---------------------------------------------------------------

    def _values(self) -> dict[int, float | None]:
        return {t.index: self.scoring.value(t) for t in self.trials if t.done}

    def _completed(self) -> tuple[str, str, str] | None:
        return self.scoring.completed(self.trials, self.max_trials, self.max_failed,
                                      self.exhausted, len(self.running))

    def _front(self) -> dict[str, Any] | None:
        return pareto_front(self.trials, self.scoring, self.objectives) if self.objectives \
            else None

    def _status(self) -> dict[str, Any]:
        status = katib_status(self.name, self.conditions.items, self.trials, len(self.running),
                              self.scoring.optimal(self.trials), self.data.get("parent_run_id"))
        if self.objectives:  # nasflow's addition: Katib's status has one optimal trial
            status["paretoFront"] = self._front()["front"]
        return status

    @functools.cached_property
    def _stored_manifest(self) -> str:
        """The manifest as stored, redacted; dumped once (a large one takes seconds)."""
        return yaml.dump(redact(self.manifest.raw), Dumper=getattr(yaml, "CSafeDumper",
                                                                   yaml.SafeDumper))

    def _save(self) -> None:
        # The whole Katib-style status: `nasflow promote` reads currentOptimalTrial from it.
        self.store.save_experiment(self.name, self._stored_manifest, self._status(), self.data)

    def _progress(self) -> None:
        self.progress_due = False
        if self.options.on_progress is not None:
            self.options.on_progress(progress(self.trials, len(self.running), self.max_trials,
                                              self.scoring, self.started))
