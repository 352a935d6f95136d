"""One trial as a local process: Katib's Trial + its Job's primary container + its collector.

The process gets an argv list (never a shell), its own session (so it can be killed with its
children), stdout and stderr merged into ``metrics.log`` as Katib's StdOut wrapper does
(``1>metrics.log 2>&1``); a TrainJob of several nodes runs as local workers
(:mod:`pipeline.engine.workers`). A File collector's absolute path is mapped into the trial's
directory, the way a pod would have its own filesystem, and every occurrence of it in argv/env
is rewritten.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.engine import metrics_collector
from pipeline.engine.process_group import kill_group, stop_groups
from pipeline.engine.template import TemplateError, TrialCommand, trial_command
from pipeline.engine.workers import LocalWorkers
from pipeline.katib.status import TrialStatus

KILL_GRACE_SECONDS = 10.0
DEFAULT_FILE_PATH = "/var/log/katib/metrics.log"  # Katib's default for a File collector
INTERRUPTED = "EngineInterrupted"  # a trial stopped by the engine's own stop: it runs again


@dataclass(frozen=True)
class Collector:
    """Katib's metricsCollectorSpec, as the engine needs it (StdOut or File)."""

    kind: str = "StdOut"
    filters: tuple[str, ...] = ()
    path: str | None = None
    fmt: str = "TEXT"

    @classmethod
    def of(cls, spec: Any) -> Collector:
        mc = spec.metrics_collector_spec
        if mc is None:
            return cls()
        kind = (mc.collector.kind if mc.collector else None) or "StdOut"
        source = mc.source
        filters = tuple((source.filter.metrics_format if source and source.filter else None)
                        or [])
        fsp = source.file_system_path if source else None
        path = (fsp.path if fsp else None) or (DEFAULT_FILE_PATH if kind == "File" else None)
        return cls(kind, filters, path, (fsp.format if fsp else None) or "TEXT")

    def local_path(self, trial_dir: Path) -> Path | None:
        if self.kind != "File" or not self.path:
            return None
        return trial_dir / "fs" / self.path.lstrip("/")

    def collect(self, trial_dir: Path, names: list[str]) -> dict[str, list[str]]:
        """Metric name -> values in time order, as Katib's collector reads them (``names[0]``
        is the objective); CollectorError where Katib's collector fails the trial."""
        if self.kind == "File":
            found = metrics_collector.collect(self.local_path(trial_dir), names,
                                              self.filters, self.fmt)
        else:
            found = metrics_collector.collect(trial_dir / "metrics.log", names, self.filters)
        out: dict[str, list[str]] = {}
        for o in sorted(found, key=lambda o: o.order):  # Katib's DB orders by time (stable)
            if metrics_collector.observable(o.value):
                out.setdefault(o.name, []).append(o.value)
        return out


class WarmWorker:
    """A :mod:`pipeline.engine.warm_worker` process: runs ``python -m trial_image`` trials."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.engine.warm_worker"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)

    def run(self, argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> None:
        request = {"argv": argv, "env": env, "cwd": str(cwd), "log": str(log)}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()

    def result(self) -> int:
        """The trial's exit code; the worker's own if it died (killed, crashed)."""
        for line in self.process.stdout:
            if line.startswith("{"):
                return int(json.loads(line)["code"])
        return self.process.wait()


class WarmPool:
    """Idle warm workers; a trial takes one (or starts one) and gives it back when it ends."""

    def __init__(self) -> None:
        self.idle: list[WarmWorker] = []
        self.lock = threading.Lock()

    @staticmethod
    def serves(argv: list[str]) -> bool:
        return argv[:3] == [sys.executable, "-m", "trial_image"]

    @classmethod
    def serves_template(cls, template: Any, namespace: str) -> bool:
        """Do this trial template's trials run in warm workers (``python -m trial_image``)?"""
        probe = {p.reference or p.name: "0" for p in template.trial_parameters or []}
        try:
            command = trial_command(template, "probe", namespace, probe)
        except TemplateError:
            return False
        return cls.serves(command.argv) and command.nodes == 1

    def prestart(self, count: int) -> None:
        """Start workers now, so that their imports overlap the engine's own set-up."""
        with self.lock:
            self.idle += [WarmWorker() for _ in range(count - len(self.idle))]

    def take(self) -> WarmWorker:
        with self.lock:
            return self.idle.pop() if self.idle else WarmWorker()

    def give_back(self, worker: WarmWorker) -> None:
        with self.lock:
            self.idle.append(worker)

    def __enter__(self) -> WarmPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self.lock:
            for worker in self.idle:
                worker.process.stdin.close()
                kill_group(worker.process.pid, signal.SIGKILL)
                worker.process.wait()
            self.idle.clear()


class TrialProcess:
    """A running trial; posts itself on ``done`` when its process has exited.

    With a :class:`WarmPool`, a ``python -m trial_image`` trial runs in a warm worker (same argv,
    env, working directory and log; TensorFlow already imported); anything else is a new process.
    """

    def __init__(self, index: int, name: str, command: TrialCommand, trial_dir: Path,
                 collector: Collector, base_env: dict[str, str], cwd: Path,
                 done: queue.Queue, pool: WarmPool | None = None) -> None:
        self.index = index
        self.name = name
        self.trial_dir = trial_dir
        self.collector = collector
        self.done = done
        self.killed_reason: str | None = None
        self.early_stopped = ""  # why, when early stopping stopped it
        trial_dir.mkdir(parents=True, exist_ok=True)
        argv, env = list(command.argv), {**base_env, **command.env}
        mapped = collector.local_path(trial_dir)
        if mapped is not None:
            mapped.parent.mkdir(parents=True, exist_ok=True)
            argv = [a.replace(collector.path, str(mapped)) for a in argv]
            env = {k: v.replace(collector.path, str(mapped)) for k, v in env.items()}
        self.deadline = None if command.deadline_seconds is None else \
            time.monotonic() + command.deadline_seconds
        self.worker: WarmWorker | None = None
        self.code: int | None = None
        self.failure = ""  # which of several workers failed first, and how
        if pool is not None and pool.serves(argv) and command.nodes == 1:
            (trial_dir / "metrics.log").write_bytes(b"")
            self.worker = pool.take()
            self.process = self.worker.process
            self.worker.run(argv[3:], env, cwd, trial_dir / "metrics.log")
            threading.Thread(target=self._wait_warm, args=(pool,), daemon=True).start()
            return
        self.log = open(trial_dir / "metrics.log", "wb")  # noqa: SIM115 - closed by the waiter
        try:
            if command.nodes > 1:
                self.process = LocalWorkers(argv, env, cwd, trial_dir, self.log, command.nodes,
                                            KILL_GRACE_SECONDS)
            else:
                self.process = subprocess.Popen(argv, env=env, cwd=cwd, stdout=self.log,
                                                stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            self.log.write(f"cannot start {argv[0]}: {exc}\n".encode())
            self.log.close()
            self.process = None
            done.put(self)
            return
        threading.Thread(target=self._wait, daemon=True).start()

    @property
    def pid(self) -> int:
        return self.process.pid if self.process else 0

    @property
    def returncode(self) -> int | None:
        if self.code is not None:
            return self.code
        return self.process.returncode if self.process else 127

    def _wait(self) -> None:
        self.process.wait()
        self.failure = getattr(self.process, "failure", "")
        self.log.close()
        self.done.put(self)

    def _wait_warm(self, pool: WarmPool) -> None:
        self.code = self.worker.result()
        if self.process.poll() is None and self.killed_reason is None:
            pool.give_back(self.worker)
        self.done.put(self)

    def stop(self, reason: str, early_stopped: str = "") -> None:
        """SIGTERM the trial's process group, SIGKILL after a grace period."""
        if self.process is None or self.process.poll() is not None or self.code is not None:
            return  # already over (a warm worker may be serving another trial by now)
        self.killed_reason = reason
        self.early_stopped = early_stopped
        pids = getattr(self.process, "pids", [self.process.pid])
        stop_groups(lambda: pids, KILL_GRACE_SECONDS)


def orphan_of(pid: int, trial_name: str) -> bool:
    """Is ``pid`` still the process of this trial (left running by a killed engine)?"""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"KATIB_TRIAL_NAME={trial_name}".encode() in environ.split(b"\0")


def outcome(proc: TrialProcess, record: Any, objective: str, unreadable: str | None
            ) -> tuple[TrialStatus, str, str]:
    """How Katib's trial controller names a finished trial's end: (status, reason, message).
    ``unreadable``: why the collector could not read the metrics (None: it could)."""
    log = proc.trial_dir / "metrics.log"
    tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
    if proc.early_stopped:
        return TrialStatus.EARLY_STOPPED, "TrialEarlyStopped", proc.early_stopped
    if proc.killed_reason == "DeadlineExceeded":
        return TrialStatus.FAILED, "DeadlineExceeded", "activeDeadlineSeconds passed"
    if proc.killed_reason == INTERRUPTED:
        return (TrialStatus.KILLED, INTERRUPTED,
                "the engine was interrupted; --resume runs this trial again")
    if proc.killed_reason:
        return TrialStatus.KILLED, proc.killed_reason, "stopped by the engine"
    if proc.returncode != 0:
        return (TrialStatus.FAILED, "TrialFailed", proc.failure
                or f"exit code {proc.returncode}: {tail[0] if tail else ''}"[:1000])
    if unreadable:
        return (TrialStatus.FAILED, "MetricsCollectorFailed",
                f"the metrics collector failed: {unreadable}")
    if not record.observations.get(objective):
        return (TrialStatus.METRICS_UNAVAILABLE, "MetricsUnavailable",
                f"the objective {objective} was never reported")
    return TrialStatus.SUCCEEDED, "TrialSucceeded", ""


def requeue_interrupted(trials: Sequence[Any], save: Callable[[Any], None]) -> list[str]:
    """Trials the engine's own stop interrupted (Ctrl-C, or left Running by ``kill -9``) run
    again, with the same name and assignments, as if the engine had never stopped: they go
    back to Created (leftover processes are killed first). Returns their names."""
    names = []
    for t in trials:
        if t.done and t.reason != INTERRUPTED:
            continue
        if t.pid and orphan_of(t.pid, t.name):
            kill_group(t.pid, signal.SIGKILL)
        t.status, t.reason, t.message = TrialStatus.CREATED, "TrialRestarted", \
            "the engine stopped while this trial was running; it runs again"
        t.observations, t.finished, t.pid = {}, 0.0, 0
        save(t)
        names.append(t.name)
    return names
