"""What MLflow's basic-auth costs a search, and how many requests a trial makes.

The same search (random-digits.yaml's space, 6 trials of 3 epochs, 2 at a time, one seed) runs
against three real MLflow servers on 127.0.0.1, each on its own PostgreSQL database: without
authentication, with basic-auth as the reference deployment configures it (manifests/mlflow:
users in PostgreSQL, credentials cache on), and with basic-auth as MLflow ships it (cache off:
every request re-checks the password with PBKDF2). Requests are counted from each server's
access log; the search's wall time is the `nasflow run` process's.

    .venv/bin/python benchmarks/mlflow_auth.py [--trials 6]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.mlflow_server import MlflowServer  # noqa: E402 - the tests' real server helper
from tests.postgres_server import PostgresServer  # noqa: E402
from tests.test_engine_e2e import small  # noqa: E402

ADMIN_PASSWORD = "bench-admin-only-3f1a"
REQUEST = re.compile(r'"(GET|POST|PATCH|PUT|DELETE) (/[^ ?"]*)')


def server(kind: str, postgres: PostgresServer, root: Path) -> MlflowServer:
    root.mkdir(parents=True)
    label = re.sub(r"\W+", "_", kind)
    backend = postgres.create_database(f"tracking_{label}")
    if kind == "no auth":
        return MlflowServer(root, backend=backend).start()
    settings = (ROOT / "manifests" / "mlflow" / "basic_auth.ini").read_text()
    if kind == "auth, cache off":
        settings = settings.replace("auth_cache_ttl_seconds = 60", "auth_cache_ttl_seconds = 0")
    ini = root / "basic_auth.ini"
    ini.write_text(settings + f"database_uri = {postgres.create_database(f'auth_{label}')}\n"
                   f"admin_password = {ADMIN_PASSWORD}\n")
    return MlflowServer(root, backend=backend, auth=ini,
                        env={"MLFLOW_FLASK_SERVER_SECRET_KEY": uuid.uuid4().hex}).start()


def requests(log: Path) -> list[str]:
    return [m.group(2) for m in REQUEST.finditer(log.read_text(errors="replace"))]


def search(kind: str, mlflow: MlflowServer, workdir: Path, trials: int) -> dict[str, float]:
    path = small("random-digits.yaml", "bench-auth", trials=trials, epochs=3, tmp_path=workdir)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if kind != "no auth":
        env.update(MLFLOW_TRACKING_USERNAME="admin", MLFLOW_TRACKING_PASSWORD=ADMIN_PASSWORD)
    before = len(requests(mlflow.root / "server.log"))
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pipeline", "run", path, "--seed", "1",
                           "--quiet", "--tracking-uri", mlflow.uri, "--workdir",
                           str(workdir / ".nasflow")], cwd=workdir, env=env,
                          capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{kind}: nasflow run failed: {done.stderr[-2000:]}")
    time.sleep(1)  # the access log's last lines
    made = requests(mlflow.root / "server.log")[before:]
    return {"seconds": seconds, "requests": len(made), "paths": made}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=6)
    args = parser.parse_args()
    postgres = PostgresServer().start()
    results = {}
    try:
        for kind in ("no auth", "auth, cache on", "auth, cache off"):
            with tempfile.TemporaryDirectory(prefix="nasflow-auth-") as tmp:
                mlflow = server(kind, postgres, Path(tmp) / "server")
                try:
                    results[kind] = search(kind, mlflow, Path(tmp), args.trials)
                finally:
                    mlflow.stop()
    finally:
        postgres.stop()
    base = results["no auth"]["seconds"]
    print("| server | search wall | vs no auth | requests | per trial |\n|---|---|---|---|---|")
    for kind, r in results.items():
        print(f"| {kind} | {r['seconds']:.1f} s | {r['seconds'] / base:.2f}x | {r['requests']} "
              f"| {r['requests'] / args.trials:.1f} |")
    counts: dict[str, int] = {}
    for path in results["no auth"]["paths"]:
        counts[path] = counts.get(path, 0) + 1
    print("\nrequests of the search without auth, by endpoint:")
    for path, count in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"  {count:4d} {path}")


if __name__ == "__main__":
    main()
