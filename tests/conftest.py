from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.mlflow_server import MlflowServer

# No test phones home, and every process a test starts inherits this.
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
ROOT = Path(__file__).resolve().parent.parent
KATIB_DATA = ROOT / "tests" / "data" / "katib"  # Katib's examples and wire formats (see its README)
# kubectl (with kustomize) as `make cluster-build` builds it from Kubernetes' release
KUBECTL = str(ROOT / ".devcluster" / "bin" / "kubectl")


@pytest.fixture
def fake():
    """A fake Kubernetes API server holding recorded Katib objects (tests/recorded_katib.py)."""
    from tests.recorded_katib import recorded_api

    return recorded_api()


@pytest.fixture
def cli(fake, monkeypatch):
    """`nasflow` commands talk to the fake server."""
    from pipeline.cluster.client import KatibClient
    from tests.recorded_katib import NS

    monkeypatch.setattr("pipeline.cluster.client.KatibClient",
                        lambda namespace=None, kubeconfig=None, context=None:
                        KatibClient(namespace=namespace or NS, api=fake.api()))
    return fake


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
    for line in (KATIB_DATA / "wire-examples.txt").read_text().splitlines():
        name, sep, value = line.partition(" = ")
        if sep and name.strip() == key:
            return value.strip()
    raise KeyError(key)


# ---- no server process outlives the suite ------------------------------------------------------

# what a server's command line holds: `mlflow server`, its uvicorn/gunicorn workers
# (mlflow.server...), huey consumers, `mlflow models serve` and its scoring server; not a user's
# `nasflow run --no-mlflow` running beside the suite
SERVER_WORDS = (b"mlflow server", b"mlflow.server", b"huey", b"models serve", b"scoring_server")


SESSION_MARK = "NASFLOW_TEST_SESSION"


def _server_processes() -> dict[int, str]:
    """pid -> command line of every process of this test session (its environment carries the
    session's mark, inherited by whatever the tests start, orphans included) running MLflow
    (servers, their workers, huey). Another session's servers (a second suite, CI's) are not
    this one's."""
    mark = f"{SESSION_MARK}={os.environ.get(SESSION_MARK, '')}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            if not any(word in cmdline for word in SERVER_WORDS):
                continue
            if mark not in (entry / "environ").read_bytes().split(b"\0"):
                continue
        except OSError:
            continue
        found[int(entry.name)] = cmdline.decode(errors="replace")[:200]
    return found


def pytest_sessionstart(session):
    os.environ[SESSION_MARK] = uuid.uuid4().hex
    session.config._servers_before = set(_server_processes())


def pytest_sessionfinish(session, exitstatus):
    """Fail the run if a process the suite started (an MLflow server, a huey consumer, a model
    server) is still running, and end it."""
    import signal
    import time

    before = getattr(session.config, "_servers_before", set())
    leftover = {}
    deadline = time.monotonic() + 5  # a server told to stop may still be exiting
    while time.monotonic() < deadline:
        leftover = {p: c for p, c in _server_processes().items() if p not in before}
        if not leftover:
            return
        time.sleep(0.2)
    for pid in leftover:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"processes left running by the test suite (now killed): "
                            f"{sorted(leftover.values())}", red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
