"""MLflow as platform teams run it: PostgreSQL for the tracking data, artifacts served by the
server, and basic-auth (users and permissions in PostgreSQL too, the credentials cache on) with
nasflow working as a least-privilege user. The servers are real, started on 127.0.0.1; the
basic-auth settings are the reference deployment's own (manifests/mlflow/basic_auth.ini).

Skipped, with the reason, where PostgreSQL's server binaries are absent; ``make test`` installs
them (Debian's ``postgresql``), so CI never skips.
"""

from __future__ import annotations

import contextlib
import json
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
                   "int8-full", "--max-accuracy-drop", "5", "--tracking-uri", server.uri,
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
    # the serve line says what the server will ask for, and never the secret itself
    assert "export MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" in run.stdout
    assert TRAINER[1] not in run.stdout + run.stderr
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


@pytest.fixture(scope="module")
def shipped_auth_mlflow(postgres, tmp_path_factory):
    """Basic-auth as MLflow ships it: every user may read everything (``READ``)."""
    root = tmp_path_factory.mktemp("shipped-auth-mlflow")
    ini = root / "basic_auth.ini"
    settings = (ROOT / "manifests" / "mlflow" / "basic_auth.ini").read_text().replace(
        "default_permission = NO_PERMISSIONS", "default_permission = READ")
    ini.write_text(settings + f"database_uri = {postgres.create_database('auth_read')}\n"
                   + f"admin_password = {ADMIN[1]}\n")
    server = MlflowServer(root, backend=postgres.create_database("tracking_read"), auth=ini,
                          env={"MLFLOW_FLASK_SERVER_SECRET_KEY": uuid.uuid4().hex}).start()
    yield server
    server.stop()


NEWCOMER = ("newcomer", "newcomer-test-only-5b1e")


def new_user(server, user: tuple[str, str]) -> None:
    """A user the admin created and granted nothing."""
    from mlflow.server.auth.client import AuthServiceClient

    as_user(ADMIN, lambda: AuthServiceClient(server.uri).create_user(*user))


def test_a_first_champion_needs_no_grant(shipped_auth_mlflow, tmp_path):
    """A user with MLflow's default READ and no grant: nasflow creates the experiment and the
    model (their creator gets MANAGE) and the story ends with a champion, though MLflow refuses
    (403) to read an alias of a model that does not exist yet."""
    new_user(shipped_auth_mlflow, NEWCOMER)
    run = story(shipped_auth_mlflow, tmp_path, "newcomer-story", "newcomer-digits",
                user=NEWCOMER)
    assert run.returncode == 0, run.stderr[-3000:]
    client = as_user(NEWCOMER, lambda: client_of(shipped_auth_mlflow))
    assert as_user(NEWCOMER, lambda: aliases(client, "newcomer-digits")) == {"champion": "1"}
    assert as_user(NEWCOMER, lambda: aliases(client, "newcomer-digits-variants")) == {
        "int8-full": "1"}


@pytest.mark.parametrize("manifest", ["enas-digits.yaml", "darts-digits.yaml",
                                      "random-digits.yaml", "pbt-digits.yaml"])
def test_refused_credentials_come_before_the_search_is_built(auth_mlflow, tmp_path, manifest):
    """MLflow is asked first: the refusal imports no TensorFlow (ENAS' controller and DARTS'
    settings would) and starts no warm worker."""
    path = small(manifest, "auth-first", trials=1, epochs=1, tmp_path=tmp_path)
    probe = subprocess.run([sys.executable, "-c", """
import json, sys
from pipeline.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "tensorflow": "tensorflow" in sys.modules}))
""", "run", path, "--tracking-uri", auth_mlflow.uri, "--workdir", str(tmp_path / ".nasflow")],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
             "MLFLOW_TRACKING_USERNAME": "nasflow", "MLFLOW_TRACKING_PASSWORD": "wrong"})
    assert json.loads(probe.stdout.splitlines()[-1]) == {"code": 4, "tensorflow": False}, \
        probe.stderr[-2000:]
    assert "not authenticated" in probe.stderr


def test_a_model_the_user_may_only_read_is_refused_before_the_search(shipped_auth_mlflow,
                                                                     tmp_path):
    """The team's model exists and the user has MLflow's default READ on it: one line naming
    the model, before the search is built or any trial runs."""
    with contextlib.suppress(Exception):  # the other test may have made the user already
        new_user(shipped_auth_mlflow, NEWCOMER)
    as_user(ADMIN, lambda: client_of(shipped_auth_mlflow).create_registered_model("read-only"))
    path = small("enas-digits.yaml", "read-only-story", trials=1, epochs=1, tmp_path=tmp_path)
    probe = subprocess.run([sys.executable, "-c", """
import json, sys, time
started = time.monotonic()
from pipeline.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "tensorflow": "tensorflow" in sys.modules,
                  "seconds": time.monotonic() - started}))
""", "run", path, "--promote", "--model", "read-only", "--tracking-uri",
        shipped_auth_mlflow.uri, "--workdir", str(tmp_path / ".nasflow")],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
             "MLFLOW_TRACKING_USERNAME": NEWCOMER[0], "MLFLOW_TRACKING_PASSWORD": NEWCOMER[1]})
    answer = json.loads(probe.stdout.splitlines()[-1])
    lines = [line for line in probe.stderr.splitlines() if line.strip()]
    assert (answer["code"], answer["tensorflow"], len(lines)) == (4, False, 1), probe.stderr
    assert lines[0].startswith("nasflow run: MLflow: checking that registered model read-only "
                               "can be changed failed: MLflow says: user 'newcomer' is not allowed")
    assert not (tmp_path / ".nasflow" / "read-only-story").exists()  # no search began
    assert answer["seconds"] < 3.0, answer  # imports included


REVIEWER = ("reviewer", "reviewer-test-only-77a0")


def test_promote_names_the_permission_to_read_the_trials(auth_mlflow, auth_story):
    """Runs hidden from the user are not 'missing': the line names the experiment and READ."""
    new_user(auth_mlflow, ("outsider", "outsider-test-only-3f9c"))
    refused = nasflow("promote", "auth-story", "--model", "outsider-digits", "--tracking-uri",
                      auth_mlflow.uri, "--workdir", str(auth_story / ".nasflow"),
                      cwd=auth_story, user=("outsider", "outsider-test-only-3f9c"))
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert refused.returncode == 4 and len(lines) == 1, refused.stderr
    assert "user 'outsider' may not read MLflow experiment 'auth-story'" in lines[0]
    assert "grant it READ or more" in lines[0] and "no finished MLflow run" not in lines[0]


def test_a_reviewer_reads_runs_and_models_and_changes_nothing(auth_mlflow, auth_story):
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "mlflow", "grant", REVIEWER[0], "--reviewer",
         "--experiment", "auth-story", "--model", "team-digits", "--tracking-uri",
         auth_mlflow.uri], cwd=auth_story, capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(auth_story),
             "MLFLOW_TRACKING_USERNAME": ADMIN[0], "MLFLOW_TRACKING_PASSWORD": ADMIN[1],
             "NASFLOW_MLFLOW_NEW_PASSWORD": REVIEWER[1]})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1:] == [
        f"experiment 'auth-story' (id {line.split('(id ')[1].split(')')[0]}): READ"
        for line in done.stdout.splitlines()[1:2]] + [
        "registered model 'team-digits': READ", "registered model 'team-digits-variants': READ"]
    client = as_user(REVIEWER, lambda: client_of(auth_mlflow))
    experiment = as_user(REVIEWER, lambda: client.get_experiment_by_name("auth-story"))
    runs = as_user(REVIEWER, lambda: client.search_runs([experiment.experiment_id]))
    assert len(runs) >= 3  # the trials, the selection and final runs
    assert as_user(REVIEWER, lambda: aliases(client, "team-digits")) == {"champion": "1"}
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match="Permission denied"):
        as_user(REVIEWER, lambda: client.set_registered_model_alias("team-digits", "mine", "1"))


@pytest.mark.parametrize(("argv", "message"), [
    (["somebody", "--tracking-uri", "http://[::1"], "not a URL"),
    (["", "--tracking-uri", "http://127.0.0.1:9"], "a user name is not empty"),
])
def test_grant_refuses_bad_input_before_asking_the_server(tmp_path, argv, message):
    done = subprocess.run([sys.executable, "-m", "pipeline", "mlflow", "grant", *argv],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin",
                               "HOME": str(tmp_path)})
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
