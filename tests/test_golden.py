"""`nasflow validate --output json` on every manifest of the repository and every Katib example,
byte for byte as recorded in tests/data/golden/validate.json: restructuring moves no behaviour.

After a deliberate change of validate's output: NASFLOW_UPDATE_GOLDEN=1 pytest tests/test_golden.py
rewrites the file; review its diff like code.
"""

from __future__ import annotations

import json
import os

import pytest

from pipeline.cli import main
from tests.conftest import KATIB_DATA, ROOT

GOLDEN = ROOT / "tests" / "data" / "golden" / "validate.json"
MANIFESTS = sorted(str(p.relative_to(ROOT)) for p in [
    *(ROOT / "manifests").rglob("*.yaml"), *(KATIB_DATA / "examples").rglob("*.yaml")]
    if "kind: Experiment" in p.read_text())


def validate(path: str, capsys) -> dict:
    code = main(["validate", path, "--output", "json"])
    out = capsys.readouterr()
    return {"exit": code, "stdout": out.out, "stderr": out.err}


def test_every_manifest_validates_as_recorded(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    found = {path: validate(path, capsys) for path in MANIFESTS}
    assert len(found) >= 40  # the repository's own and Katib's 33 examples
    if os.environ.get("NASFLOW_UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
        pytest.skip("golden outputs rewritten")
    recorded = json.loads(GOLDEN.read_text())
    assert sorted(found) == sorted(recorded)
    for path, result in found.items():
        assert result == recorded[path], path
