"""MLflow as platform teams run it: PostgreSQL for the tracking data, artifacts served by the
server, and basic-auth (users and permissions in PostgreSQL too, the credentials cache on) with
nasflow working as a least-privilege user. The servers are real, started on 127.0.0.1; the
basic-auth settings are the reference deployment's own (manifests/mlflow/basic_auth.ini).

Skipped, with the reason, where PostgreSQL's server binaries are absent; ``make test`` installs
them (Debian's ``postgresql``), so CI never skips.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import pytest
from mlflow import MlflowClient

from tests import test_promotion
from tests.conftest import ROOT
from tests.mlflow_server import MlflowServer
from tests.postgres_server import PostgresServer
from tests.test_engine_e2e import small

pytestmark = pytest.mark.slow
ADMIN = ("admin", "admin-test-only-9c2e")
TRAINER = ("nasflow", "trainer-test-only-41d7")


@pytest.fixture(scope="module")
def postgres():
    try:
        server = PostgresServer().start()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def pg_mlflow(postgres, tmp_path_factory):
    server = MlflowServer(tmp_path_factory.mktemp("pg-mlflow"),
                          backend=postgres.create_database("tracking")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def auth_mlflow(postgres, tmp_path_factory):
    """Basic-auth on PostgreSQL, configured as manifests/mlflow configures it."""
    root = tmp_path_factory.mktemp("auth-mlflow")
    ini = root / "basic_auth.ini"
    # as the Deployment's start command writes it: the settings, then the secrets appended
    ini.write_text((ROOT / "manifests" / "mlflow" / "basic_auth.ini").read_text()
                   + f"database_uri = {postgres.create_database('auth')}\n"
                   + f"admin_password = {ADMIN[1]}\n")
    server = MlflowServer(root, backend=postgres.create_database("tracking_auth"), auth=ini,
                          env={"MLFLOW_FLASK_SERVER_SECRET_KEY": uuid.uuid4().hex}).start()
    yield server
    server.stop()


def nasflow(*args: str, cwd, user: tuple[str, str] | None = None, timeout: float = 900
            ) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(ROOT), "PATH": f"{os.path.dirname(sys.executable)}:/usr/bin:/bin",
           "HOME": str(cwd)}
    if user:
        env.update(MLFLOW_TRACKING_USERNAME=user[0], MLFLOW_TRACKING_PASSWORD=user[1])
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def story(server, tmp_path, name: str, model: str, user=None) -> subprocess.CompletedProcess:
    """`make run`'s story, small: 3 trials of 2 epochs, the 2 best retrained for 3 epochs,
    promoted and compressed to int8."""
    path = small("random-digits.yaml", name, trials=3, epochs=2, tmp_path=tmp_path)
    return nasflow("run", path, "--finalize", "--promote", "--compress", "--variants",
                   "int8-full", "--max-accuracy-drop", "100", "--tracking-uri", server.uri,
                   "--workdir", str(tmp_path / ".nasflow"), "--seed", "3", "--top-k", "2",
                   "--final-epochs", "3", "--model", model, cwd=tmp_path, user=user)


def client_of(server) -> MlflowClient:
    """A client of ``server`` for tracking and registry both (a bare MlflowClient(uri) takes the
    registry from the process's global tracking URI, which other tests set)."""
    return MlflowClient(server.uri, registry_uri=server.uri)


def aliases(client: MlflowClient, model: str) -> dict[str, str]:
    return dict(client.get_registered_model(model).aliases)


def test_the_story_and_a_rollback_on_postgresql(pg_mlflow, tmp_path):
    first = story(pg_mlflow, tmp_path, "pg-story", "pg-digits")
    assert first.returncode == 0, first.stderr[-3000:]
    client = client_of(pg_mlflow)
    assert aliases(client, "pg-digits") == {"champion": "1"}
    assert aliases(client, "pg-digits-variants") == {"int8-full": "1"}
    champion = client.get_model_version_by_alias("pg-digits", "champion")
    final = client.get_run(champion.run_id)
    assert final.data.tags["nasflow.role"] == "final"
    assert float(champion.tags["nasflow.objective.value"]) == \
        final.data.metrics["Test-Accuracy"]
    # a second champion (the same model registered again), then the rollback gives the first back
    second = client.create_model_version("pg-digits", champion.source, champion.run_id,
                                         model_id=champion.source.removeprefix("models:/"))
    client.set_registered_model_alias("pg-digits", "champion", second.version)
    client.set_model_version_tag("pg-digits", second.version, "nasflow.previous_champion", "1")
    back = nasflow("promote", "--rollback", "pg-digits", "--tracking-uri", pg_mlflow.uri,
                   cwd=tmp_path)
    assert back.returncode == 0, back.stderr[-2000:]
    assert client.get_model_version_by_alias("pg-digits", "champion").version == "1"


@pytest.mark.parametrize("round_", range(2))
def test_six_concurrent_promoters_on_postgresql(pg_mlflow, round_, monkeypatch):
    test_promotion.test_concurrent_promoters_end_with_the_best(pg_mlflow, round_, monkeypatch)


def grant(server, tmp_path, *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "mlflow", "grant", TRAINER[0], "--tracking-uri",
         server.uri, *args], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
             "MLFLOW_TRACKING_USERNAME": ADMIN[0], "MLFLOW_TRACKING_PASSWORD": ADMIN[1],
             "NASFLOW_MLFLOW_NEW_PASSWORD": TRAINER[1]})
    assert done.returncode == 0, done.stderr


def as_user(user: tuple[str, str], action):
    """``action()`` with ``user``'s credentials in this process's environment."""
    os.environ.update(MLFLOW_TRACKING_USERNAME=user[0], MLFLOW_TRACKING_PASSWORD=user[1])
    try:
        return action()
    finally:
        for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            os.environ.pop(key)


@pytest.fixture(scope="module")
def auth_story(auth_mlflow, tmp_path_factory):
    """The team pre-creates the model (with its description) and nasflow's identity gets the
    documented permissions and nothing else; then the story runs as that identity."""
    tmp_path = tmp_path_factory.mktemp("auth-story")
    as_user(ADMIN, lambda: client_of(auth_mlflow).create_registered_model(
        "team-digits", description="digits, owned by the team"))
    grant(auth_mlflow, tmp_path, "--model", "team-digits")
    run = story(auth_mlflow, tmp_path, "auth-story", "team-digits", user=TRAINER)
    assert run.returncode == 0, run.stderr[-3000:]
    return tmp_path


def test_the_story_as_a_least_privilege_user_on_a_precreated_model(auth_mlflow, auth_story):
    tmp_path = auth_story
    as_trainer = as_user(TRAINER, lambda: client_of(auth_mlflow))
    assert as_user(TRAINER, lambda: aliases(as_trainer, "team-digits")) == {"champion": "1"}
    assert as_user(TRAINER, lambda: aliases(as_trainer, "team-digits-variants")) == {
        "int8-full": "1"}
    assert as_user(TRAINER, lambda: as_trainer.get_registered_model("team-digits")
                   ).description == "digits, owned by the team"
    # promoting the same run again registers nothing: the identity reads what it needs
    again = nasflow("promote", "auth-story", "--model", "team-digits", "--tracking-uri",
                    auth_mlflow.uri, "--workdir", str(tmp_path / ".nasflow"), cwd=tmp_path,
                    user=TRAINER)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "champion (already registered: no new version)" in again.stdout


def test_without_the_grant_the_identity_is_told_what_it_lacks(auth_mlflow, auth_story):
    """A model the team created but did not share: one line naming the user and the fix."""
    tmp_path = auth_story
    as_user(ADMIN, lambda: client_of(auth_mlflow).create_registered_model("not-shared"))
    refused = nasflow("promote", "auth-story", "--model", "not-shared", "--tracking-uri",
                      auth_mlflow.uri, "--workdir", str(tmp_path / ".nasflow"), cwd=tmp_path,
                      user=TRAINER)
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert refused.returncode == 4 and len(lines) == 1, refused.stderr
    assert "user 'nasflow' is not allowed" in lines[0] and "nasflow mlflow grant" in lines[0]


@pytest.mark.parametrize("user", [None, ("nasflow", "wrong-password"), ("nobody", "x")])
def test_wrong_or_missing_credentials_are_one_line_at_once(auth_mlflow, tmp_path, user):
    path = small("random-digits.yaml", "auth-refused", trials=1, epochs=1, tmp_path=tmp_path)
    started = time.monotonic()
    run = nasflow("run", path, "--tracking-uri", auth_mlflow.uri, "--workdir",
                  str(tmp_path / ".nasflow"), cwd=tmp_path, user=user, timeout=60)
    elapsed = time.monotonic() - started
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode == 4 and len(lines) == 1, run.stderr
    assert "not authenticated" in lines[0] and "MLFLOW_TRACKING_USERNAME" in lines[0]
    assert "You are not authenticated. Please see" not in lines[0]  # MLflow's cut body
    assert elapsed < 6.0, elapsed  # a fresh interpreter importing MLflow: ~3 s of it here


def test_refused_credentials_take_no_retries(auth_mlflow, tmp_path, monkeypatch, capsys):
    """The same refusal measured inside one process (imports done): under 2 s, where 401 was
    retried as an outage for 17-23 s."""
    from pipeline.cli import main

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "nasflow")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "wrong-password")
    path = small("random-digits.yaml", "auth-refused", trials=1, epochs=1, tmp_path=tmp_path)
    started = time.monotonic()
    assert main(["run", path, "--tracking-uri", auth_mlflow.uri, "--workdir",
                 str(tmp_path / ".nasflow")]) == 4
    assert time.monotonic() - started < 2.0
    assert "not authenticated (user 'nasflow' and its password were refused)" in \
        capsys.readouterr().err
