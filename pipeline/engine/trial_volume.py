"""The volume Katib mounts into every trial of an algorithm that keeps state between trials
(pbt's ``suggestion_trial_dir``): on Katib each trial sees its own folder of the Suggestion's
volume at that path; the embedded engine gives each trial ``<experiment dir>/checkpoints/<trial>``
and puts it where the trial template says the path is."""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

from pipeline.engine.template import TrialCommand


@dataclasses.dataclass(frozen=True)
class TrialVolume:
    path: str  # where the trial template expects it (the algorithm's setting)
    root: Path  # the trials' folders on this machine

    def folder(self, trial: str) -> Path:
        return self.root / trial

    def prepare(self, trial: str, parent: str | None) -> None:
        """A new trial's folder: a copy of its parent's (PBT), or empty. An interrupted trial
        keeps its folder: it resumes from its own checkpoint."""
        folder = self.folder(trial)
        shutil.rmtree(folder, ignore_errors=True)
        if parent is not None and self.folder(parent).is_dir():
            shutil.copytree(self.folder(parent), folder)
        else:
            folder.mkdir(parents=True)

    def mount(self, command: TrialCommand, trial: str) -> TrialCommand:
        """``command`` with the path (as whole path components: ``/ckpt`` in ``/ckpt/x`` and
        ``--dir=/ckpt``, not in ``/ckpts`` nor in ``/some/where/ckpt``) replaced by the trial's
        own folder."""
        mount = str(self.folder(trial).resolve())
        pattern = re.compile(r"(?<![^\s=:,'\"])" + re.escape(self.path.rstrip("/"))
                             + r"(?=/|$|\s|[:,'\"])")

        def swap(text: str) -> str:
            return pattern.sub(lambda _: mount, text)

        return dataclasses.replace(command, argv=[swap(a) for a in command.argv],
                                   env={k: swap(v) for k, v in command.env.items()})
