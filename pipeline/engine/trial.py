"""One trial as a local process: Katib's Trial + its Job's primary container + its collector.

The process gets an argv list (never a shell), its own session (so it can be killed with its
children), stdout and stderr merged into ``metrics.log`` as Katib's StdOut wrapper does
(``1>metrics.log 2>&1``). A File collector's absolute path is mapped into the trial's directory,
the way a pod would have its own filesystem, and every occurrence of it in argv/env is rewritten.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.engine import metrics_collector
from pipeline.engine.template import TrialCommand

KILL_GRACE_SECONDS = 10.0


@dataclass(frozen=True)
class Collector:
    """Katib's metricsCollectorSpec, as the engine needs it."""

    kind: str = "StdOut"  # StdOut | File | None
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
        filters = tuple((source.filter.metrics_format or []) if source and source.filter else [])
        fsp = source.file_system_path if source else None
        return cls(kind, filters, fsp.path if fsp else None,
                   (fsp.format if fsp else None) or "TEXT")

    def local_path(self, trial_dir: Path) -> Path | None:
        if self.kind != "File" or not self.path:
            return None
        return trial_dir / "fs" / self.path.lstrip("/")

    def collect(self, trial_dir: Path, names: list[str]) -> dict[str, list[str]]:
        """Metric name -> values in report order, parsed as Katib's collector would."""
        if self.kind == "None":
            return {}
        if self.kind == "File":
            path = self.local_path(trial_dir)
            lines = path.read_text(errors="replace").splitlines() if path and path.exists() else []
        else:
            log = trial_dir / "metrics.log"
            lines = log.read_text(errors="replace").splitlines() if log.exists() else []
        if self.kind == "File" and self.fmt == "JSON":
            found = metrics_collector.parse_json(lines, names)
        else:
            found = metrics_collector.parse_text(lines, names, list(self.filters) or None)
        found = sorted(found, key=lambda o: o.timestamp)  # Katib's DB orders by time (stable)
        out: dict[str, list[str]] = {}
        for o in found:
            out.setdefault(o.name, []).append(o.value)
        return out


class TrialProcess:
    """A running trial; posts itself on ``done`` when its process has exited."""

    def __init__(self, index: int, name: str, command: TrialCommand, trial_dir: Path,
                 collector: Collector, base_env: dict[str, str], cwd: Path,
                 done: queue.Queue) -> None:
        self.index = index
        self.name = name
        self.trial_dir = trial_dir
        self.collector = collector
        self.done = done
        self.killed_reason: str | None = None
        self.early_stopped = False
        trial_dir.mkdir(parents=True, exist_ok=True)
        argv, env = list(command.argv), {**base_env, **command.env}
        mapped = collector.local_path(trial_dir)
        if mapped is not None:
            mapped.parent.mkdir(parents=True, exist_ok=True)
            argv = [a.replace(collector.path, str(mapped)) for a in argv]
            env = {k: v.replace(collector.path, str(mapped)) for k, v in env.items()}
        self.deadline = time.monotonic() + command.deadline_seconds if command.deadline_seconds \
            else None
        self.log = open(trial_dir / "metrics.log", "wb")  # noqa: SIM115 - closed by the waiter
        try:
            self.process = subprocess.Popen(argv, env=env, cwd=cwd, stdout=self.log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
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
        return self.process.returncode if self.process else 127

    def _wait(self) -> None:
        self.process.wait()
        self.log.close()
        self.done.put(self)

    def stop(self, reason: str, early_stopped: bool = False) -> None:
        """SIGTERM the trial's process group, SIGKILL after a grace period."""
        if self.process is None or self.process.poll() is not None:
            return
        self.killed_reason = reason
        self.early_stopped = early_stopped
        kill_group(self.process.pid, signal.SIGTERM)
        timer = threading.Timer(KILL_GRACE_SECONDS, kill_group, (self.process.pid, signal.SIGKILL))
        timer.daemon = True
        timer.start()


def kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def orphan_of(pid: int, trial_name: str) -> bool:
    """Is ``pid`` still the process of this trial (left running by a killed engine)?"""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"KATIB_TRIAL_NAME={trial_name}".encode() in environ.split(b"\0")
