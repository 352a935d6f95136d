"""A real PostgreSQL server (Debian's binaries) on 127.0.0.1 for the tests, in a temporary data
directory, with password authentication over TCP as a team's database has it.

``initdb`` refuses to run as root: under root (CI, this machine) the server runs as the
``postgres`` user Debian's package creates, in a directory handed to it.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.mlflow_server import free_port

USER, PASSWORD = "nasflow", "pg-test-only-5b1f"  # a throwaway server's, on 127.0.0.1


def binaries() -> Path | None:
    """The newest installed server's bin directory (``apt-get install postgresql``)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


class PostgresServer:
    def __init__(self) -> None:
        self.bin = binaries()
        if self.bin is None:
            raise FileNotFoundError("PostgreSQL's server binaries (/usr/lib/postgresql/*/bin) "
                                    "are not installed: apt-get install postgresql")
        self.root = Path(tempfile.mkdtemp(prefix="nasflow-pg-"))
        self.port = free_port()
        self.as_postgres = os.geteuid() == 0

    def _run(self, *argv: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self.as_postgres else []
        subprocess.run([*prefix, *argv], check=True, capture_output=True, text=True, timeout=120)

    def start(self) -> PostgresServer:
        if self.as_postgres:
            ids = pwd.getpwnam("postgres")
            os.chown(self.root, ids.pw_uid, ids.pw_gid)
        secret = self.root / "pw"
        secret.write_text(PASSWORD)
        if self.as_postgres:
            os.chown(secret, pwd.getpwnam("postgres").pw_uid, -1)
        self._run(str(self.bin / "initdb"), "-D", str(self.root / "data"), "-U", USER,
                  "--auth-host=scram-sha-256", "--auth-local=peer", f"--pwfile={secret}")
        secret.unlink()
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), "-w", "-l",
                  str(self.root / "server.log"), "-o",
                  f"-p {self.port} -h 127.0.0.1 -k {self.root} -c fsync=off", "start")
        return self

    def create_database(self, name: str) -> str:
        """A new database; its SQLAlchemy URI (psycopg2, the driver MLflow's image installs)."""
        import psycopg2

        connection = psycopg2.connect(host="127.0.0.1", port=self.port, user=USER,
                                      password=PASSWORD, dbname="postgres")
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        connection.close()
        return f"postgresql+psycopg2://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast",
                      "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
