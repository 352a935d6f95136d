"""A real MLflow tracking server (SQLite backend, local artifacts) on 127.0.0.1 for the tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

# MLflow 3's job executor (a runner and seven huey consumers per server) serves nothing nasflow
# uses, and its consumers outlive a stopped server.
SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_TRACKING_URI": ""}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process_group(process: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM the process's group (it was started in its own session), SIGKILL what remains."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # workers the server forked, if any are left
    process.wait(timeout)


class MlflowServer:
    """``backend``: the tracking store's URI (default SQLite in ``root``); ``auth``: the path of
    a basic-auth ``.ini`` (MLflow's ``--app-name basic-auth``), with the admin's password and the
    Flask secret in the server's environment only."""

    def __init__(self, root: Path, port: int | None = None, backend: str | None = None,
                 auth: Path | None = None, env: dict[str, str] | None = None) -> None:
        self.root = root
        self.port = port or free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.backend = backend or f"sqlite:///{root / 'mlflow.db'}"
        self.auth = auth
        self.env = env or {}
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 90) -> MlflowServer:
        self.root.mkdir(parents=True, exist_ok=True)
        log = open(self.root / "server.log", "ab")  # noqa: SIM115 - lives as long as the server
        auth = ["--app-name", "basic-auth"] if self.auth else []
        env = {**os.environ, **SERVER_ENV, **self.env}
        if self.auth:
            env["MLFLOW_AUTH_CONFIG_PATH"] = str(self.auth)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", "1", *auth,
             "--backend-store-uri", self.backend,
             "--artifacts-destination", str(self.root / "artifacts")],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log_text = (self.root / "server.log").read_text()
                raise RuntimeError(f"mlflow server exited: {log_text}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError("mlflow server did not become healthy")

    def stop(self) -> None:
        if self.process is not None:
            stop_process_group(self.process)
        self.process = None


@contextlib.contextmanager
def served_model(model_uri: str, tracking_uri: str, env: dict[str, str], home: Path):
    """`mlflow models serve -m model_uri` on a free port of 127.0.0.1, as a user runs it
    (``--env-manager local``, one worker); yields the port once /ping answers, stops the server
    and its workers afterwards."""
    port = free_port()
    server = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "mlflow"), "models", "serve", "-m",
         model_uri, "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
        env={**env, "MLFLOW_TRACKING_URI": tracking_uri, "HOME": str(home)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, "mlflow models serve exited"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the model server did not come up"
                time.sleep(0.5)
        yield port
    finally:
        stop_process_group(server)
