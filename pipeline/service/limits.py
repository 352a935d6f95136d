"""What one request of nasflow's Katib services may cost: a slot among a few (so a thread is
left for the health checks Katib's probes send), and time up to its client's deadline.

Katib calls a Suggestion pod (one per experiment) once per reconcile of its Suggestion, with a
60 s deadline, and GetEarlyStoppingRules right after (katib v0.19.0,
pkg/controller.v1beta1/suggestion/suggestionclient); its controller reconciles one Suggestion at
a time. So a pod sees one call at a time from Katib: a call that finds every slot taken (another
client, a retry storm) waits up to ``WAIT_SECONDS`` within its deadline, then is told
RESOURCE_EXHAUSTED (Katib requeues), rather than queueing behind work it cannot see end.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

MAX_SECONDS = 60.0  # a request's own deadline, when the client sets none or a longer one
WAIT_SECONDS = 2.0  # for a slot


class Limits:
    def __init__(self, slots: int) -> None:
        self.slots = threading.BoundedSemaphore(slots)

    @contextlib.contextmanager
    def request(self, context: Any, what: str) -> Iterator[Callable[[], float]]:
        """A slot for the request; yields ``left()``: the seconds left before the client's
        deadline (or ``MAX_SECONDS``), aborting with DEADLINE_EXCEEDED when none are."""
        give_up = time.monotonic() + min(MAX_SECONDS, context.time_remaining() or MAX_SECONDS)
        if not self.slots.acquire(timeout=max(0.0, min(WAIT_SECONDS,
                                                       give_up - time.monotonic()))):
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"busy: every {what} slot is "
                          "taken; Katib asks again")

        def left() -> float:
            remaining = give_up - time.monotonic()
            if remaining <= 0 or not context.is_active():
                context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, f"the {what} took longer "
                              "than the request's deadline")
            return remaining

        try:
            yield left
        finally:
            self.slots.release()
