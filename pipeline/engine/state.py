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

CREATED, RUNNING = "Created", "Running"  # Created: waiting to run (again, after an interruption)
FINISHED = {"Succeeded", "Failed", "Killed", "MetricsUnavailable", "EarlyStopped"}
FAILED = {"Failed", "MetricsUnavailable"}  # count towards maxFailedTrialCount
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
    status: str = CREATED
    reason: str = ""
    message: str = ""
    # metric name -> values in the order reported (strings, as collected)
    observations: dict[str, list[str]] = field(default_factory=dict)
    started: float = 0.0
    finished: float = 0.0
    pid: int = 0
    rule: dict[str, Any] | None = None  # early-stopping rule attached at creation

    @property
    def done(self) -> bool:
        return self.status in FINISHED


class StateStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def experiment(self) -> tuple[str, dict[str, Any], dict[str, Any]] | None:
        row = self.db.execute("SELECT manifest, status, data FROM experiment").fetchone()
        if row is None:
            return None
        return row[0], json.loads(row[1]), json.loads(row[2])

    def save_experiment(self, name: str, manifest: str, status: dict[str, Any],
                        data: dict[str, Any]) -> None:
        self.db.execute(
            "INSERT INTO experiment (id, name, manifest, status, data) VALUES (1, ?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET manifest=excluded.manifest, status=excluded.status, "
            "data=excluded.data", (name, manifest, json.dumps(status), json.dumps(data)))

    def save_trial(self, t: TrialRecord) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO trials VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (t.index, t.name, json.dumps(t.assignments), t.status, t.reason, t.message,
             json.dumps(t.observations), t.started, t.finished, t.pid,
             json.dumps(t.rule) if t.rule else None))

    def trials(self) -> list[TrialRecord]:
        rows = self.db.execute("SELECT * FROM trials ORDER BY idx").fetchall()
        return [TrialRecord(r[0], r[1], json.loads(r[2]), r[3], r[4], r[5], json.loads(r[6]),
                            r[7], r[8], r[9], json.loads(r[10]) if r[10] else None) for r in rows]
