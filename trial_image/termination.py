"""SIGTERM for a trial: Kubernetes' way of saying stop (a deadline, a deletion, an early stop).

The handler raises :class:`Terminated` where the trial is, so its MLflow run ends KILLED with the
reason. Python may run a handler inside a finaliser (``__del__``, of which TensorFlow has many),
where the exception is printed and dropped; the signal is therefore also remembered, and
:func:`check` (called after every training batch and before a run is finished) raises it again.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from typing import Any

from trial_image.errors import TrialError

PR_SET_PDEATHSIG = 1
_received: list[int] = []


class Terminated(TrialError):
    exit_code = 143


def _terminated(signum: int) -> Terminated:
    return Terminated(f"terminated by signal {signum}")


def _raise(signum: int, frame: Any) -> None:
    _received.append(signum)
    raise _terminated(signum)


def raise_on_sigterm() -> None:
    """From now on SIGTERM raises :class:`Terminated` (installed once the MLflow run is about to
    exist: before, the default action loses nothing)."""
    signal.signal(signal.SIGTERM, _raise)


def check() -> None:
    """Raise :class:`Terminated` if a SIGTERM came and its exception was dropped."""
    if _received:
        raise _terminated(_received[0])


def end_with_parent() -> None:
    """Be sent SIGTERM when the parent process dies. Katib's StdOut and File collectors run the
    trial as ``sh -c "<command> 1>/var/log/katib/metrics.log 2>&1 && ..."``: a deadline or a
    deletion sends SIGTERM to ``sh``, which dies without passing it on; the kernel then tells the
    trial, whose handler ends its MLflow run KILLED (docs/katib.md §1.3). Linux only."""
    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent went before the kernel was told
        os.kill(os.getpid(), signal.SIGTERM)
