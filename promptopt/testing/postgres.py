"""PostgreSQL servers for tests and benchmarks of several workers on one study.

:func:`test_postgres_url` finds the server ``.ci/run`` sets up (the URL in
``PROMPTOPT_TEST_POSTGRES``, else the one it would export, if that answers), or
says why there is none. :class:`PrivatePostgres` runs a throwaway cluster in a
temporary folder on a free localhost port, which a test may stop and start again
(a database server going away mid-run). As root, the PostgreSQL programs run as the
``postgres`` user (the server refuses to run as root).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from typing import Any

CI_URL = "postgresql://promptopt:promptopt@localhost:5432/promptopt_test"
"""The database ``.ci/run`` (``.ci/postgres.sh``) creates."""


def _answers(url: str) -> str | None:
    """None if ``url`` accepts a connection, else why not."""
    from sqlalchemy import create_engine, text

    from promptopt.tracking import engine_url

    try:
        engine = create_engine(engine_url(url), connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"
    return None


def test_postgres_url() -> tuple[str | None, str]:
    """The test server's URL and how it was found, or ``(None, why there is none)``."""
    url = os.environ.get("PROMPTOPT_TEST_POSTGRES")
    if url:
        problem = _answers(url)
        return (None, f"PROMPTOPT_TEST_POSTGRES does not answer ({problem})") if problem else (
            url, "PROMPTOPT_TEST_POSTGRES")
    problem = _answers(CI_URL)
    if problem:
        return None, (f"PROMPTOPT_TEST_POSTGRES is unset and no server answers at {CI_URL} "
                      f"({problem}); .ci/run sets one up")
    return CI_URL, "the .ci/run default"


test_postgres_url.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def postgres_bin() -> str | None:
    """The newest ``/usr/lib/postgresql/*/bin`` holding ``initdb`` (Debian layout), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: [int(x) for x in p.split("/")[4].split(".") if x.isdigit()])
    return os.path.dirname(found[-1]) if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivatePostgres:
    """A throwaway PostgreSQL cluster on ``127.0.0.1:<free port>`` (trust authentication).

    ::

        with PrivatePostgres() as pg:
            run("opro", storage=pg.url, ...)
            pg.stop()   # the server goes away
            pg.start()  # and comes back, with its data

    Raises:
        RuntimeError: no PostgreSQL programs, or the cluster would not start.
    """

    def __init__(self, database: str = "promptopt") -> None:
        self.bin = postgres_bin()
        self.database = database
        self.port = 0
        self.folder = ""
        self._user: str | None = None

    @property
    def url(self) -> str:
        """The database URL (user ``postgres``, no password)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [*(["runuser", "-u", self._user, "--"] if self._user else []), *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120,
                              cwd=self.folder)
        if done.returncode:
            raise RuntimeError(f"{' '.join(args[:2])} failed: {done.stderr.strip()[-500:]}")
        return done

    def __enter__(self) -> PrivatePostgres:
        if self.bin is None:
            raise RuntimeError("no PostgreSQL programs under /usr/lib/postgresql/*/bin")
        self.folder = tempfile.mkdtemp(prefix="promptopt-pg-")
        if os.geteuid() == 0:
            self._user = "postgres"
            entry = pwd.getpwnam("postgres")
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        self.port = _free_port()
        try:
            self._run(f"{self.bin}/initdb", "-D", f"{self.folder}/data", "-U", "postgres",
                      "--auth=trust", "-E", "UTF8", "--no-sync")
            self.start()
            self._run(f"{self.bin}/createdb", "-h", "127.0.0.1", "-p", str(self.port),
                      "-U", "postgres", self.database)
        except BaseException:
            self.__exit__()
            raise
        return self

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._run(f"{self.bin}/pg_ctl", "-D", f"{self.folder}/data", "-l",
                  f"{self.folder}/log", "-w", "-t", "60", "-o",
                  f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
                  "-c fsync=off", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: disconnect clients, as an administrator would)."""
        self._run(f"{self.bin}/pg_ctl", "-D", f"{self.folder}/data", "-m", mode, "-w", "stop")

    def __exit__(self, *exc: Any) -> None:
        if self.folder and os.path.exists(f"{self.folder}/data/postmaster.pid"):
            try:
                self.stop("immediate")
            except (RuntimeError, subprocess.SubprocessError):
                pass
        if self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)
