"""Storage faults on SQLite: a locked database and a read-only file or folder.

At the start of a run and in the middle of one, the CLI prints one line naming the
storage URL and what to do (no SQLAlchemy traceback); mid-run, the trials recorded
before the fault stay in the study and the LLM answers in the cache, and ``--resume``
finishes the run with the uninterrupted result once the fault is gone. Root ignores
file permissions, so the read-only tests run the CLI without the capabilities that
let it (``setpriv``), as an ordinary user would be.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys

import optuna
import pytest
from typer.testing import CliRunner

from promptopt.cli import app
from promptopt.errors import StorageError
from promptopt.runs import run
from promptopt.testing import FakeLLM, FakeOpenAIServer, default_reply
from promptopt.tracking import Tracker
from promptopt.tracking import _storage as storage_module

runner = CliRunner()
SMALL = dict(scorer="hashing", train=8, val=4, test=4)
ARGS = ["-m", "opro", "--budget", "40", "--seed", "1", "--scorer", "hashing",
        "--train", "8", "--val", "4", "--test", "4"]
VARYING = {"study", "usage", "wall_time_s", "replayed_trials"}
KEY = "sk-test-storage-0123456789"


@pytest.fixture(autouse=True)
def _short_lock_wait(monkeypatch):
    """Give up on a locked database after 0.3 s instead of 30 s; a key for the server."""
    monkeypatch.setattr(storage_module, "SQLITE_TIMEOUT", 0.3)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)


def _flat(text: str) -> str:
    """``text`` without any whitespace (the console wraps long lines anywhere)."""
    return "".join(text.split())


def _trials(url, study):
    trials = optuna.load_study(study_name=study, storage=url).trials
    return sorted((t.number, t.user_attrs["template_id"], t.user_attrs["split"], t.value)
                  for t in trials)


def _same_result(a: dict, b: dict) -> None:
    assert {k: v for k, v in a.items() if k not in VARYING} == {
        k: v for k, v in b.items() if k not in VARYING
    }


class Locker:
    """Holds an exclusive lock on a SQLite file, as another program's open transaction."""

    def __init__(self, path) -> None:
        self.path = path
        self.conn: sqlite3.Connection | None = None

    def lock(self) -> None:
        self.conn = sqlite3.connect(self.path, timeout=5, isolation_level=None)
        self.conn.execute("BEGIN EXCLUSIVE")

    def release(self) -> None:
        if self.conn is not None:
            self.conn.execute("ROLLBACK")
            self.conn.close()
            self.conn = None


class LockAt:
    """A FakeLLM reply that calls ``fault()`` when the ``at``-th request arrives."""

    def __init__(self, fault) -> None:
        self.fault, self.at, self.calls = fault, None, 0

    def __call__(self, prompt, params):
        self.calls += 1
        if self.calls == self.at:
            self.fault()
        return default_reply(prompt, params)


def test_a_locked_database_at_start_is_a_clear_error(tmp_path):
    db = tmp_path / "s.db"
    url = f"sqlite:///{db}"
    fake = FakeLLM(name="locked-start")
    run("identity", model=fake.model, budget=20, storage=url, study="first", **SMALL)
    locker = Locker(db)
    locker.lock()
    try:
        result = runner.invoke(app, ["run", *ARGS, "--model", fake.model, "--storage", url,
                                     "--study", "second"])
    finally:
        locker.release()
    assert result.exit_code == 2, result.output
    text = _flat(result.output)
    assert _flat(f"error: storage {url}: cannot") in text
    assert _flat("the database is locked: another connection holds a write lock on it") in text
    assert _flat("End that transaction or process, or use another --storage") in text
    assert "Traceback" not in result.output and "sqlalchemy" not in text.lower()
    ok = runner.invoke(app, ["run", *ARGS, "--model", fake.model, "--storage", url,
                             "--study", "second"])
    assert ok.exit_code == 0, ok.output  # the lock gone, the same command works


def test_a_database_locked_mid_run_keeps_what_was_recorded_and_resumes(tmp_path):
    db = tmp_path / "m.db"
    url = f"sqlite:///{db}"
    locker = Locker(db)
    reply = LockAt(locker.lock)
    fake = FakeLLM(reply, name="locked-mid-run")
    ref = runner.invoke(app, ["run", *ARGS, "--model", fake.model, "--storage", url,
                              "--study", "ref", "--json"],
                        env={"PROMPTOPT_CACHE_DIR": str(tmp_path / "ref-cache")})
    assert ref.exit_code == 0, ref.output
    reply.calls, reply.at = 0, reply.calls // 2
    try:
        cut = runner.invoke(app, ["run", *ARGS, "--model", fake.model, "--storage", url,
                                  "--study", "cut"])
        assert cut.exit_code == 2, cut.output
        text = _flat(cut.output)
        assert _flat(f"error: storage {url}: cannot record a trial (the trials recorded "
                     "before it are kept): the database is locked") in text
        assert _flat(f"resume with: promptopt run --resume --study cut --storage {url}") in text
        assert "Traceback" not in cut.output
    finally:
        locker.release()
    recorded = _trials(url, "cut")
    assert 0 < len(recorded) and recorded == _trials(url, "ref")[: len(recorded)]
    with contextlib.closing(sqlite3.connect(tmp_path / "cache" / "cache.sqlite")) as conn:
        (cached,) = conn.execute("SELECT COUNT(*) FROM llm").fetchone()
    assert cached >= reply.at  # every answer before the lock is in the cache

    reply.at, before = None, reply.calls
    res = runner.invoke(app, ["run", "--resume", "--study", "cut", "--storage", url, "--json"])
    assert res.exit_code == 0, res.output
    _same_result(json.loads(res.stdout), json.loads(ref.stdout))
    assert _trials(url, "cut") == _trials(url, "ref")  # none lost, none twice
    assert reply.calls - before == json.loads(ref.stdout)["usage"]["calls"] - cached


def test_a_read_only_sqlite_uri_is_a_clear_error(tmp_path):
    Tracker(f"sqlite:///{tmp_path}/r.db", "made")
    url = f"sqlite:///file:{tmp_path}/r.db?mode=ro&uri=true"
    with pytest.raises(StorageError, match=r"r.db\?mode=ro&uri=true: cannot create study "
                       r"'new': the database is read-only \(attempt to write a readonly "
                       r"database\). Make the file and its folder writable"):
        Tracker(url, "new")


def _unprivileged() -> list[str]:
    """A command prefix under which file permissions apply (root otherwise ignores them)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    prefix = [setpriv or "setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"]
    if setpriv is None or subprocess.run([*prefix, "true"]).returncode != 0:
        pytest.skip("running as root and cannot drop the capability to ignore permissions")
    return prefix


def _cli(tmp_path, *args, server=None):
    env = {**os.environ, "PROMPTOPT_CACHE_DIR": str(tmp_path / "cache"),
           "OPENAI_API_KEY": KEY, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    extra = ["--model", "openai/fake", "--api-base", server.url] if server else []
    return subprocess.run([*_unprivileged(), sys.executable, "-m", "promptopt", "run", *args,
                           *extra], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)


def test_a_read_only_database_file_at_start_is_a_clear_error(tmp_path):
    db = tmp_path / "ro.db"
    url = f"sqlite:///{db}"
    with FakeOpenAIServer() as server:
        run("identity", model="openai/fake", api_base=server.url, budget=20, storage=url,
            study="first", **SMALL)
        db.chmod(0o444)
        try:
            again = _cli(tmp_path, *ARGS, "--storage", url, "--study", "second", server=server)
        finally:
            db.chmod(0o644)
        assert again.returncode == 2, again.stderr
        text = _flat(again.stderr)
        assert _flat(f"error: storage {url}: cannot") in text
        assert _flat("the database is read-only (attempt to write a readonly database). "
                     "Make the file and its folder writable") in text
        assert "Traceback" not in again.stderr
        ok = runner.invoke(app, ["run", *ARGS, "--model", "openai/fake", "--api-base",
                                 server.url, "--storage", url, "--study", "second"])
        assert ok.exit_code == 0, ok.output  # writable again: the same command works


def test_a_folder_made_read_only_mid_run_keeps_what_was_recorded_and_resumes(tmp_path):
    folder = tmp_path / "db"
    folder.mkdir()
    url = f"sqlite:///{folder}/f.db"
    calls = {"n": 0, "at": None}

    def reply(prompt, params):
        calls["n"] += 1
        if calls["n"] == calls["at"]:
            folder.chmod(0o555)  # SQLite can no longer create its journal there
        return default_reply(prompt, params)

    with FakeOpenAIServer(reply) as server:
        ref = run("opro", model="openai/fake", api_base=server.url, budget=40, seed=1,
                  storage=f"sqlite:///{tmp_path}/ref.db", study="ref",
                  cache_dir=str(tmp_path / "ref-cache"), **SMALL)
        calls["n"], calls["at"] = 0, calls["n"] // 2
        try:
            cut = _cli(tmp_path, *ARGS, "--storage", url, "--study", "cut", server=server)
        finally:
            folder.chmod(0o755)
        assert cut.returncode == 2, cut.stderr
        text = _flat(cut.stderr)
        assert _flat(f"error: storage {url}: cannot record a trial (the trials recorded "
                     "before it are kept): the database is read-only") in text
        assert _flat(f"resume with: promptopt run --resume --study cut --storage {url}") in text
        assert "Traceback" not in cut.stderr
        recorded = _trials(url, "cut")
        ref_trials = _trials(f"sqlite:///{tmp_path}/ref.db", "ref")
        assert 0 < len(recorded) and recorded == ref_trials[: len(recorded)]

        resumed = _cli(tmp_path, "--resume", "--study", "cut", "--storage", url, "--json")
    assert resumed.returncode == 0, resumed.stderr
    _same_result(json.loads(resumed.stdout), ref.to_dict())
    assert _trials(url, "cut") == ref_trials
