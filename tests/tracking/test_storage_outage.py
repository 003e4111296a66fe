"""A PostgreSQL server that goes away mid-run: a clear error, nothing recorded lost, resumable.

The test runs a private PostgreSQL cluster (initdb + pg_ctl in a temporary folder, on
a free localhost port), starts ``python -m promptopt run`` against it and a local
OpenAI-compatible server, stops the database server mid-run, starts it again and
resumes the run.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time

import optuna
import pytest
from sqlalchemy import create_engine, text

from promptopt.runs import run
from promptopt.testing import FakeOpenAIServer
from promptopt.testing.postgres import PrivatePostgres, postgres_bin
from promptopt.tracking import display_url, engine_url

ARGS = ["-m", "opro", "--model", "openai/fake", "--budget", "60", "--seed", "2",
        "--scorer", "hashing", "--train", "8", "--val", "4", "--test", "4"]
ENV = {"OPENAI_API_KEY": "sk-test", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}


@pytest.fixture
def postgres():
    if postgres_bin() is None:
        pytest.skip("no PostgreSQL programs under /usr/lib/postgresql/*/bin")
    try:
        with PrivatePostgres() as pg:
            yield pg
    except RuntimeError as exc:
        pytest.skip(f"cannot run a private PostgreSQL cluster here: {exc}")


def _count(url: str, study: str) -> int:
    engine = create_engine(engine_url(url))
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(  # evaluations: validation COMPLETE, others PRUNED
                "SELECT COUNT(*) FROM trials JOIN studies USING (study_id) WHERE "
                "study_name = :s AND state IN ('COMPLETE', 'PRUNED')"), {"s": study}).scalar() or 0)
    finally:
        engine.dispose()


def _trials(url: str, study: str) -> list[tuple]:
    from promptopt.tracking import open_storage

    loaded = optuna.load_study(study_name=study, storage=open_storage(url))
    return [(t.user_attrs["template_id"], t.user_attrs["split"], t.user_attrs["examples_hash"],
             t.value) for t in sorted(loaded.trials, key=lambda t: t.number)]


def test_a_database_server_that_goes_away_mid_run(postgres, tmp_path, monkeypatch):
    url = postgres.url
    monkeypatch.setenv("OPENAI_API_KEY", ENV["OPENAI_API_KEY"])
    with FakeOpenAIServer(delay=0.05) as server:
        ref = run("opro", model="openai/fake", api_base=server.url, budget=60, seed=2,
                  storage=f"sqlite:///{tmp_path}/ref.db", study="ref", scorer="hashing",
                  train=8, val=4, test=4, cache_dir=str(tmp_path / "ref-cache"))
        reference = _trials(f"sqlite:///{tmp_path}/ref.db", "ref")
        env = {**os.environ, **ENV, "PROMPTOPT_CACHE_DIR": str(tmp_path / "cache")}
        proc = subprocess.Popen(
            [sys.executable, "-m", "promptopt", "run", *ARGS, "--api-base", server.url,
             "--storage", url, "--study", "outage"],
            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        deadline = time.monotonic() + 120
        seen = 0
        while seen < 4 and time.monotonic() < deadline:
            assert proc.poll() is None, f"the run ended early: {proc.communicate()}"
            with contextlib.suppress(Exception):
                seen = _count(url, "outage")
            time.sleep(0.05)
        assert seen >= 4, "the run recorded no trials in time"
        postgres.stop()  # the database server goes away mid-run
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 2, stderr
        assert "Traceback" not in stderr
        assert f"error: storage {display_url(url)}: cannot" in stderr
        assert "recorded before" in stderr and "are kept" in stderr
        assert f"resume with:  promptopt run --resume --study outage --storage {url}" in stderr

        postgres.start()
        kept = _count(url, "outage")
        assert seen <= kept < len(reference)  # nothing recorded was lost
        assert _trials(url, "outage") == reference[:kept]
        resumed = subprocess.run(
            [sys.executable, "-m", "promptopt", "run", "--resume", "--study", "outage",
             "--storage", url, "--json"],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
        )
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout)
    assert result["replayed_trials"] == kept
    assert result["template_id"] == ref.template.id and result["test_score"] == ref.test_score
    assert _trials(url, "outage") == reference  # none lost, none duplicated
