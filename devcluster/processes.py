"""The cluster's long-running processes: each started in its own session (so a stop reaches its
children), its output in ``run/logs/<name>.log``, its PID in ``run/pids/<name>``, so that
``cluster-down`` stops exactly what ``cluster-up`` started, in reverse order."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from devcluster.layout import LOGS, ROOT, RUN

PIDS = RUN / "pids"


class StartError(RuntimeError):
    """A component did not come up; the message names it and the tail of its log."""


def start(name: str, argv: Sequence[str | Path], env: dict[str, str] | None = None) -> int:
    LOGS.mkdir(parents=True, exist_ok=True)
    PIDS.mkdir(parents=True, exist_ok=True)
    log = open(LOGS / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
    process = subprocess.Popen([str(a) for a in argv], stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=True, cwd=ROOT,
                               env={**os.environ, **(env or {})})
    log.close()
    (PIDS / name).write_text(f"{process.pid}\n{time.time_ns()}\n")
    return process.pid


def running(name: str) -> int | None:
    try:
        pid = int((PIDS / name).read_text().split()[0])
        os.kill(pid, 0)
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return None
    return pid


def wait_until(name: str, ready: Callable[[], bool], timeout: float) -> None:
    """Poll ``ready`` until it holds; fail at once if the process ``name`` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except Exception:  # noqa: BLE001 - not up yet: connection refused, TLS, 5xx …
            pass
        if running(name) is None:
            raise StartError(f"{name} exited while starting:\n{tail(name)}")
        time.sleep(0.3)
    raise StartError(f"{name} not ready after {timeout:.0f} s:\n{tail(name)}")


def tail(name: str, lines: int = 15) -> str:
    path = LOGS / f"{name}.log"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() \
        else "(no log)"


def stop_all(grace: float = 10.0) -> list[str]:
    """SIGTERM every recorded process group, newest first; SIGKILL what is left after ``grace``."""
    if not PIDS.exists():
        return []
    names = sorted(PIDS.iterdir(), key=lambda p: int(p.read_text().split()[1]), reverse=True)
    stopped = []
    for path in names:
        pid = int(path.read_text().split()[0])
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        _signal_group(pid, signal.SIGKILL)
        path.unlink()
        stopped.append(path.name)
    return stopped


def _alive(pid: int) -> bool:
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)
        if finished:
            return False
    except ChildProcessError:
        pass
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
