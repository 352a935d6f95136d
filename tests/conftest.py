from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.mlflow_server import MlflowServer

ROOT = Path(__file__).resolve().parent.parent
SHARED_KATIB = ROOT.parent / "shared" / "katib"


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    server = MlflowServer(tmp_path_factory.mktemp("mlflow")).start()
    yield server
    server.stop()


def run_trial(args: list[str], cwd: Path, tracking_uri: str, timeout: float = 300,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the trial image as Katib would: a subprocess with an argv list, no shell."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "KATIB_"))}
    full_env.update({"MLFLOW_TRACKING_URI": tracking_uri, "PYTHONPATH": str(ROOT), **(env or {})})
    return subprocess.run([sys.executable, "-m", "trial_image", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def wire_example(key: str) -> str:
    """A literal value from Katib's wire-examples.txt, e.g. ``ENAS architecture``."""
    for line in (SHARED_KATIB / "wire-examples.txt").read_text().splitlines():
        name, sep, value = line.partition(" = ")
        if sep and name.strip() == key:
            return value.strip()
    raise KeyError(key)
