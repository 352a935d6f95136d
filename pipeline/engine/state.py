"""Experiment state in SQLite (``.nasflow/<experiment>/state.db``): what resume needs.

Every trial row is written when the trial is created and again when it ends, in one transaction
each, so after ``kill -9`` the database says exactly which trials finished (never re-run) and
which were running (marked Killed on resume).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.katib.status import FINISHED, ExperimentCondition, TrialStatus

# what may change on --resume, as in Katib
BUDGET_FIELDS = ("maxTrialCount", "parallelTrialCount", "maxFailedTrialCount")
SCHEMA = """
CREATE TABLE IF NOT EXISTS experiment (
    id INTEGER PRIMARY KEY CHECK (id = 1), name TEXT, manifest TEXT, status TEXT, data TEXT);
CREATE TABLE IF NOT EXISTS trials (
    idx INTEGER PRIMARY KEY, name TEXT UNIQUE, assignments TEXT, status TEXT, reason TEXT,
    message TEXT, observations TEXT, started REAL, finished REAL, pid INTEGER, rule TEXT);
"""


@dataclass
class TrialRecord:
    index: int
    name: str
    assignments: dict[str, str]
    status: str = TrialStatus.CREATED
    reason: str = ""
    message: str = ""
    # metric name -> values in the order reported (strings, as collected)
    observations: dict[str, list[str]] = field(default_factory=dict)
    started: float = 0.0
    finished: float = 0.0
    pid: int = 0
    rules: list[dict[str, Any]] = field(default_factory=list)  # early stopping's, at creation

    @property
    def done(self) -> bool:
        return self.status in FINISHED


class StateError(Exception):
    """The state database cannot be read: damaged, or not nasflow's."""


class StateStore:
    """Crash-safe: every write is one SQLite transaction, committed through the write-ahead log
    with ``synchronous=FULL`` (fsync at each commit), so a ``kill -9`` or a power cut loses at
    most the write under way, never a finished trial. A damaged file is reported
    (:class:`StateError`), never silently replaced."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        existed = path.exists()
        if existed and path.stat().st_size == 0:
            raise StateError("the file is empty")
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            if existed:
                check = self.db.execute("PRAGMA quick_check").fetchone()[0]
                if check != "ok":
                    raise StateError(check)
                tables = {r[0] for r in self.db.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'")}
                if not {"experiment", "trials"} <= tables:
                    raise StateError("not a nasflow state database")
            self.db.executescript(SCHEMA)
        except (sqlite3.DatabaseError, StateError) as exc:
            self.db.close()
            raise StateError(str(exc)) from None

    def close(self) -> None:
        self.db.close()

    def _read(self, query: str) -> list[sqlite3.Row]:
        try:
            return self.db.execute(query).fetchall()
        except sqlite3.DatabaseError as exc:
            raise StateError(str(exc)) from None

    def experiment(self) -> tuple[str, dict[str, Any], dict[str, Any]] | None:
        rows = self._read("SELECT manifest, status, data FROM experiment")
        if not rows:
            return None
        try:
            row = rows[0]["manifest"], json.loads(rows[0]["status"]), json.loads(rows[0]["data"])
        except (TypeError, ValueError) as exc:
            raise StateError(f"unreadable experiment row: {exc}") from None
        manifest, status, data = row
        conditions = status.get("conditions", []) if isinstance(status, dict) else None
        if not (isinstance(manifest, str) and isinstance(data, dict)
                and isinstance(conditions, list)
                and all(isinstance(c, dict)
                        and c.get("type") in ExperimentCondition.__members__.values()
                        for c in conditions)):
            raise StateError("unreadable experiment row: not the shape nasflow writes")
        return row

    def save_experiment(self, name: str, manifest: str, status: dict[str, Any],
                        data: dict[str, Any]) -> None:
        self.db.execute(
            "INSERT INTO experiment (id, name, manifest, status, data) VALUES (1, ?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET manifest=excluded.manifest, status=excluded.status, "
            "data=excluded.data", (name, manifest, json.dumps(status), json.dumps(data)))

    def save_trial(self, t: TrialRecord) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO trials (idx, name, assignments, status, reason, message, "
            "observations, started, finished, pid, rule) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (t.index, t.name, json.dumps(t.assignments), t.status, t.reason, t.message,
             json.dumps(t.observations), t.started, t.finished, t.pid,
             json.dumps(t.rules) if t.rules else None))

    def trials(self) -> list[TrialRecord]:
        records = []
        for r in self._read("SELECT * FROM trials ORDER BY idx"):
            try:
                record = TrialRecord(r["idx"], r["name"], json.loads(r["assignments"]),
                                     r["status"], r["reason"], r["message"],
                                     json.loads(r["observations"]), r["started"], r["finished"],
                                     r["pid"], _rules(r["rule"]))
            except (TypeError, ValueError) as exc:
                raise StateError(f"unreadable trial row {r['idx']}: {exc}") from None
            if not _well_formed(record, len(records)):
                raise StateError(f"unreadable trial row {r['idx']}: not the shape nasflow "
                                 "writes")
            records.append(record)
        return records


def _well_formed(t: TrialRecord, position: int) -> bool:
    """The row is what :meth:`StateStore.save_trial` writes: trials numbered 0, 1, ... with
    string assignments, a known status and lists of observed values."""
    def strings(values: Any) -> bool:
        return isinstance(values, list) and all(isinstance(v, str) for v in values)

    return (t.index == position and isinstance(t.name, str)
            and isinstance(t.assignments, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in t.assignments.items())
            and t.status in TrialStatus.__members__.values()
            and isinstance(t.observations, dict) and all(map(strings, t.observations.values()))
            and isinstance(t.rules, list) and all(isinstance(r, dict) for r in t.rules))


def _rules(stored: str | None) -> Any:
    """The ``rule`` column: a list of rules (one rule, before ASHA, was stored bare)."""
    rules = json.loads(stored) if stored else []
    return [rules] if isinstance(rules, dict) else rules


def read_state(workdir: Path, name: str) -> tuple[tuple[str, dict[str, Any], dict[str, Any]],
                                                   list[TrialRecord]]:
    """The saved experiment (manifest, status, engine data) and trials of ``name``'s local run;
    FileNotFoundError if there is none, StateError if its database holds no experiment."""
    path = workdir / name / "state.db"
    if not path.exists():
        raise FileNotFoundError(path)
    store = StateStore(path)
    try:
        saved, trials = store.experiment(), store.trials()
    finally:
        store.close()
    if saved is None:
        raise StateError(f"{path} holds no experiment")
    return saved, trials


def check_resumable(name: str, before: dict[str, Any], manifest: dict[str, Any]) -> None:
    """StateError unless ``manifest`` differs from the stored one (``before``, redacted) only
    in :data:`BUDGET_FIELDS`."""
    from pipeline.katib.redaction import redact

    now = json.loads(json.dumps(redact(manifest)))  # as it would be stored
    for doc in (before, now):
        for key in BUDGET_FIELDS:
            doc.get("spec", {}).pop(key, None)
    if before.get("spec") != now.get("spec"):
        raise StateError(f"the manifest of {name!r} changed since the run started; only "
                         f"{', '.join(BUDGET_FIELDS)} may change on --resume (as in Katib)")
