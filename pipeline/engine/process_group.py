"""Signals to a local trial process and its children as one: every trial process (and every
local worker of one) leads its own session, so its process group is the trial."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterable


def kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def stop_groups(running: Callable[[], Iterable[int]], grace_seconds: float) -> None:
    """SIGTERM to the groups of ``running()`` now, SIGKILL to those it names after
    ``grace_seconds`` (a process that ignores or outlives SIGTERM)."""
    for pid in running():
        kill_group(pid, signal.SIGTERM)
    timer = threading.Timer(grace_seconds,
                            lambda: [kill_group(pid, signal.SIGKILL) for pid in running()])
    timer.daemon = True
    timer.start()
