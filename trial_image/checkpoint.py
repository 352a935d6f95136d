"""A trial's checkpoints (``--checkpoint-dir``, a PVC path on a cluster): what a killed trial
resumes from, and what population-based training hands from one trial to the next.

At the end of every epoch the directory gets ``epoch-NNNN/`` (the weights, the optimizer's
state and the best epoch's weights, as NumPy archives), then ``latest.json`` is replaced
atomically to point at it; older epochs are removed after. ``latest.json`` also holds what the
weights do not: the epoch's number, the per-epoch metrics so far, the early-stopping callback's
state, the random generators' state (dropout), the trial's MLflow run, and the trials this
training continues (``lineage``).

A directory is read three ways:

* written by this trial and not finished (the trial was killed, its pod restarted, the engine
  resumed): training resumes after the last finished epoch, as if never interrupted;
* written by another trial (PBT copied a member's directory here): the weights are inherited,
  the optimizer starts afresh with this trial's hyperparameters, and ``--epochs`` more epochs
  run;
* written by this trial for another candidate, seed, data or training (a stale directory):
  ignored, with a line on stderr, and overwritten.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from trial_image.errors import InputError

LATEST = "latest.json"
WEIGHTS = "weights.npz"
OPTIMIZER = "optimizer.npz"
BEST = "best.npz"


@dataclass
class Checkpoint:
    trial: str
    fingerprint: str  # candidate, training, seed and data: a resume must match all of them
    epoch: int  # epochs finished (counted from the first trial of the lineage)
    target: int  # the epoch this trial trains to
    finished: bool = False
    history: list[dict[str, float]] = field(default_factory=list)  # this trial's epochs
    early_stopping: dict[str, Any] = field(default_factory=dict)
    seeds: dict[str, list[int]] = field(default_factory=dict)  # seed-generator states by path
    lineage: list[str] = field(default_factory=list)  # earlier trials, oldest first
    folder: str = ""  # the epoch's sub-folder holding the weights
    run_id: str = ""  # the trial's MLflow run, which a resumed trial goes on logging to


MAX_LATEST = 16 << 20  # bytes of latest.json: its history is a few numbers an epoch
JSON_TYPES = {"str": str, "int": int, "bool": bool, "list": list, "dict": dict}


def _typed(value: Any, kind: type) -> bool:
    """``value`` is a ``kind`` as JSON holds it (an int is not a bool, nor a bool an int)."""
    return isinstance(value, kind) and (kind is bool or not isinstance(value, bool))


def fingerprint(spec: Any, seed: int, data: Any) -> str:
    """What must be equal for a trial to resume a checkpoint as its own."""
    return json.dumps({"candidate": spec.candidate_id, "training": asdict(spec.training),
                       "seed": seed, "data": [s.digest for s in data.splits]}, sort_keys=True)


def read(directory: Path) -> Checkpoint | None:
    """The directory's latest checkpoint; None when it has none. A damaged one is an input
    error naming the file (never silently trained over: it may be another trial's)."""
    path = directory / LATEST
    if not path.is_file():
        return None
    try:
        with path.open("rb") as file:
            text = file.read(MAX_LATEST + 1)
        if len(text) > MAX_LATEST:
            raise ValueError(f"over {MAX_LATEST} bytes")
        doc = json.loads(text)
        checkpoint = Checkpoint(**doc)
        wrong = [f.name for f in fields(Checkpoint) if not _typed(
            getattr(checkpoint, f.name), JSON_TYPES[str(f.type).split("[")[0]])]
        if wrong:
            raise ValueError(f"wrong type of {', '.join(wrong)}")
    except (ValueError, TypeError, OSError) as exc:
        raise InputError(f"--checkpoint-dir: {path} is not a nasflow checkpoint ({exc}); "
                         "remove it to start over") from None
    if not (directory / checkpoint.folder / WEIGHTS).is_file():
        raise InputError(f"--checkpoint-dir: {path} names {checkpoint.folder}/{WEIGHTS}, which "
                         "is missing; remove the directory to start over")
    return checkpoint


def write(directory: Path, model: Any, checkpoint: Checkpoint,
          best_weights: list[Any] | None) -> None:
    """Save ``model``'s weights, its optimizer's state and ``checkpoint`` as the latest,
    atomically (``latest.json`` is replaced last)."""
    import numpy as np

    checkpoint.folder = f"epoch-{checkpoint.epoch:04d}"
    folder = directory / checkpoint.folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    np.savez(folder / WEIGHTS, *model.get_weights())
    np.savez(folder / OPTIMIZER, *[v.numpy() for v in model.optimizer.variables])
    if best_weights is not None:  # the early-stopping callback's best epoch so far
        np.savez(folder / BEST, *best_weights)
    checkpoint.seeds = {v.path: [int(x) for x in v.numpy().ravel()]
                        for v in model.variables if "seed_generator" in v.path}
    temporary = directory / f".{LATEST}.tmp"
    with open(temporary, "w") as f:
        f.write(json.dumps(asdict(checkpoint)))
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, directory / LATEST)
    for old in directory.glob("epoch-*"):
        if old.name != checkpoint.folder:
            shutil.rmtree(old, ignore_errors=True)


def restore(directory: Path, model: Any, checkpoint: Checkpoint, own: bool
            ) -> list[Any] | None:
    """Load the checkpoint's weights into ``model`` (built and compiled); when it is the trial's
    ``own``, its optimizer state and random generators too (an inherited one leaves this
    trial's optimizer as it starts). Returns the best epoch's weights, if saved."""
    import numpy as np

    folder = directory / checkpoint.folder

    def arrays(name: str) -> list[Any]:
        with np.load(folder / name) as stored:
            return [stored[f"arr_{i}"] for i in range(len(stored.files))]

    try:
        model.set_weights(arrays(WEIGHTS))
        if not own:
            return None
        model.optimizer.build(model.trainable_variables)
        saved = arrays(OPTIMIZER)
        if len(saved) != len(model.optimizer.variables):
            raise ValueError(f"{len(saved)} optimizer variables saved, "
                             f"{len(model.optimizer.variables)} expected")
        for variable, value in zip(model.optimizer.variables, saved, strict=True):
            variable.assign(value)
        for v in model.variables:
            if v.path in checkpoint.seeds:
                v.assign(np.asarray(checkpoint.seeds[v.path], dtype=v.dtype))
        return arrays(BEST) if (folder / BEST).is_file() else None
    except (ValueError, KeyError, OSError) as exc:
        raise InputError(f"--checkpoint-dir: the checkpoint of trial {checkpoint.trial!r} in "
                         f"{directory} does not fit this candidate ({str(exc)[:300]}); PBT can "
                         "only vary hyperparameters that keep the architecture") from None


def note(message: str) -> None:
    print(f"checkpoint: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Plan:
    """How a trial starts from ``directory``: afresh, resuming its own checkpoint, or from an
    inherited one (see the module docstring)."""

    directory: Path
    trial: str
    fingerprint: str
    previous: Checkpoint | None  # what the directory held, when this trial may use it
    own: bool  # previous is this trial's (resume), not inherited

    @classmethod
    def of(cls, directory: Path, trial: str, fingerprint: str) -> Plan:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            probe = directory / ".nasflow-write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise InputError(f"--checkpoint-dir: {directory} is not a folder this trial can "
                             f"write ({exc.strerror or exc})") from None
        previous = read(directory)
        own = previous is not None and previous.trial == trial
        if own and previous.fingerprint != fingerprint:
            note(f"{directory} holds trial {trial}'s checkpoint for another candidate, training, "
                 "seed or data: starting from epoch 0 and replacing it")
            previous, own = None, False
        if previous is not None:
            note(f"resuming after epoch {previous.epoch}" if own else
                 f"continuing trial {previous.trial}'s training from its epoch {previous.epoch}")
        return cls(directory, trial, fingerprint, previous, own)

    @property
    def first_epoch(self) -> int:
        return self.previous.epoch if self.previous else 0

    def target(self, epochs: int) -> int:
        """The epoch to train to: the resumed trial's own target (its last epoch, if early
        stopping had ended it), or ``epochs`` more."""
        if self.own:
            stopped = self.previous.early_stopping.get("stopped")
            return self.previous.epoch if stopped else self.previous.target
        return self.first_epoch + epochs

    @property
    def lineage(self) -> list[str]:
        if self.previous is None:
            return []
        return self.previous.lineage if self.own else [*self.previous.lineage,
                                                       self.previous.trial]

    @property
    def run_id(self) -> str:
        """The MLflow run a resumed trial goes on logging to."""
        return self.previous.run_id if self.own else ""
