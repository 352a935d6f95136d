"""One engine per experiment: an OS-level lock on ``<workdir>/<experiment>.lock``.

``flock`` is released by the kernel when the holder dies, ``kill -9`` included, so a crashed run
never leaves a stale lock behind; the file says who holds it, for the message a second engine
prints.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path


def _holder(fd: int) -> str:
    """Who holds the lock: the holder writes it just after taking the lock, so a second
    engine started at the same instant waits up to a second for that line."""
    deadline = time.monotonic() + 1.0
    while True:
        said = os.pread(fd, 200, 0).decode(errors="replace").strip()
        if said or time.monotonic() > deadline:
            return said or "another process"
        time.sleep(0.02)


class Locked(Exception):
    """Another process holds the lock; ``str()`` names it."""


class ExperimentLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise Locked(holder) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"PID {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the lock
            self.fd = None
