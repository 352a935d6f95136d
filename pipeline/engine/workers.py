"""A TrainJob trial of ``numNodes: N`` on the embedded engine: N local worker processes on
127.0.0.1, seen by the engine as one process.

Each worker gets what a TrainJob node gets on a cluster (trial_image/distributed.py): its rank
as ``JOB_COMPLETION_INDEX``, ``NASFLOW_NUM_NODES`` and, instead of the JobSet's host names, the
workers' local addresses in ``NASFLOW_WORKER_HOSTS``. Worker 0 (the chief) writes the trial's
log (Katib's collector reads only the primary pod's); worker ``i`` writes ``worker-<i>.log``.
When one worker fails, the others are stopped (SIGTERM, then SIGKILL), as a JobSet fails the
whole TrainJob when one of its Jobs fails; the trial's exit code and reason are the first
failure's.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from pathlib import Path
from typing import IO

from pipeline.engine.process_group import stop_groups
from trial_image.contract import NUM_NODES_ENV, RANK_ENV, WORKER_HOSTS_ENV

POLL_SECONDS = 0.1
# TensorFlow's C++ log lines, which say nothing about why a worker ended
TENSORFLOW_NOISE = ("W0000", "I0000", "E0000", "WARNING: All log messages before absl")


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 now (held together, so they differ)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


class LocalWorkers:
    """N processes that answer ``pid``, ``poll()``, ``wait()`` and ``returncode`` as one
    ``Popen`` (the chief's pid). ``failure``: which worker failed first, and how."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path, trial_dir: Path,
                 log: IO[bytes], nodes: int, grace_seconds: float) -> None:
        hosts = ",".join(f"127.0.0.1:{port}" for port in free_ports(nodes))
        self.trial_dir, self.grace = trial_dir, grace_seconds
        self.processes: list[subprocess.Popen] = []
        self.failure = ""
        self.returncode: int | None = None
        for rank in range(nodes):
            with contextlib.ExitStack() as own:
                out = log if rank == 0 else own.enter_context(
                    open(trial_dir / f"worker-{rank}.log", "wb"))
                self.processes.append(subprocess.Popen(
                    argv, env={**env, NUM_NODES_ENV: str(nodes), RANK_ENV: str(rank),
                               WORKER_HOSTS_ENV: hosts},
                    cwd=cwd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    start_new_session=True))

    @property
    def pid(self) -> int:
        return self.processes[0].pid

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def poll(self) -> int | None:
        return self.returncode

    def wait(self) -> int:
        """Until every worker has exited; the first failure stops the others."""
        first: tuple[int, int] | None = None
        while True:
            codes = [p.poll() for p in self.processes]
            if first is None:
                failed = [(rank, c) for rank, c in enumerate(codes) if c not in (None, 0)]
                if failed:
                    first = failed[0]
                    self.failure = self._describe(*first)
                    stop_groups(self._running, self.grace)
            if all(c is not None for c in codes):
                self.returncode = first[1] if first else 0
                return self.returncode
            time.sleep(POLL_SECONDS)

    def _running(self) -> list[int]:
        return [p.pid for p in self.processes if p.poll() is None]

    def _describe(self, rank: int, code: int) -> str:
        log = self.trial_dir / ("metrics.log" if rank == 0 else f"worker-{rank}.log")
        lines = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
        tail = [line for line in lines if not line.startswith(TENSORFLOW_NOISE)][-1:]
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        return (f"worker {rank} of {len(self.processes)} {how}"
                + (f": {tail[0]}" if tail else ""))[:1000]
