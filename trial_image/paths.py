"""Where a process may write: a folder (a state directory, shards) or a file (a metrics file),
checked when the flag is read, so that ``/proc/…`` or a read-only place is bad input (exit 2,
the flag named) rather than a traceback after minutes of work."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

SYSTEM = (("proc",), ("sys",), ("dev",))  # kernel interfaces, not storage


def writable(text: str, folder: bool) -> Path:
    """An argparse check: ``text`` (a folder, or a file) can be made and written here."""
    path = Path(text).expanduser()
    resolved = path.resolve()
    if resolved.parts[1:2] in SYSTEM:
        raise argparse.ArgumentTypeError(f"{text[:200]!r} is under /{resolved.parts[1]}")
    start = resolved if folder else resolved.parent
    existing = next((p for p in (start, *start.parents) if p.exists()), Path("/"))
    if not existing.is_dir():
        raise argparse.ArgumentTypeError(f"{existing} is not a directory")
    if not os.access(existing, os.W_OK):
        raise argparse.ArgumentTypeError(f"{existing} is not writable")
    if not folder and resolved.is_dir():
        raise argparse.ArgumentTypeError(f"{text[:200]!r} is a directory, not a file")
    return path


def writable_file(text: str) -> Path:
    return writable(text, folder=False)


def writable_folder(text: str) -> Path:
    return writable(text, folder=True)
