"""API keys never reach the storage, the caches, the logs, the reports or the outputs.

Real ``promptopt`` processes (run, compare, eval, predict, and a run whose provider
rejects the key and quotes it back) talk to a local OpenAI-compatible server with a
key from the environment and a password inside ``--api-base``, with Python logging
and LiteLLM's own logging at DEBUG written to files. Then every byte under the
test's folder is searched for the secrets.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from promptopt.redact import MASK, is_redacted, redact
from promptopt.testing import FakeOpenAIServer

ENV_SECRET = "sk-test-SECRET-4f1d9c2b7a6e"
URL_SECRET = "urlpass-SECRET-93b7e0c1"
BASIC = base64.b64encode(f"promptopt:{URL_SECRET}".encode()).decode()
SECRETS = (ENV_SECRET, URL_SECRET, "4f1d9c2b7a6e", "93b7e0c1", BASIC)

CLI = (
    "import logging, sys\n"
    "logging.basicConfig(level=logging.DEBUG, filename=sys.argv[1], force=True)\n"
    "from promptopt.cli import main\n"
    "sys.argv = ['promptopt', *sys.argv[2:]]\n"
    "main()\n"
)
SMALL = ["--train", "6", "--val", "4", "--test", "4"]


def _promptopt(folder: Path, name: str, *args: str, api_base: str | None = None) -> int:
    """Run the CLI in a new process; stdout, stderr and the DEBUG log go to files."""
    env = {
        **os.environ,
        "OPENAI_API_KEY": ENV_SECRET,
        "LITELLM_LOG": "DEBUG",
        "PROMPTOPT_CACHE_DIR": str(folder / "cache"),
        "PYTHONPATH": os.pathsep.join(p for p in (str(Path(__file__).parents[1]),
                                                  os.environ.get("PYTHONPATH")) if p),
    }
    if api_base:
        env["OPENAI_API_BASE"] = api_base
    with (folder / f"{name}.out").open("wb") as out, (folder / f"{name}.err").open("wb") as err:
        done = subprocess.run(
            [sys.executable, "-c", CLI, str(folder / f"{name}.log"), *args],
            stdout=out, stderr=err, cwd=folder, env=env, timeout=600, check=False,
        )
    return done.returncode


class _RejectingHandler(BaseHTTPRequestHandler):
    """A provider that refuses the key and quotes it back, as some do."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers["Content-Length"]))
        key = self.headers.get("Authorization", "").removeprefix("Bearer ")
        body = json.dumps({"error": {"message": f"Incorrect API key provided: {key}.",
                                     "type": "invalid_request_error",
                                     "code": "invalid_api_key"}}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """All commands run once; returns the folder, the exit codes and the server."""
    folder = tmp_path_factory.mktemp("secrets")
    db = f"sqlite:///{folder}/promptopt.db"
    (folder / "test.csv").write_text(
        "id,original_text,rewritten_text\n1,Hello there.,Good day to you.\n2,Hi,Greetings\n"
    )
    codes = {}
    with FakeOpenAIServer() as server:
        host = server.url.removeprefix("http://")
        url = f"http://promptopt:{URL_SECRET}@{host}"
        codes["run"] = _promptopt(folder, "run", "run", "-m", "opro", "--budget", "24",
                                  "--model", "openai/fake", "--api-base", url, "--scorer",
                                  "hashing", "--storage", db, "--study", "s1", *SMALL)
        codes["compare"] = _promptopt(folder, "compare", "compare", "--methods",
                                      "identity,random", "--budget", "12", "--model",
                                      "openai/fake", "--scorer", "hashing", "--storage", db,
                                      "--out", str(folder / "cmp"), *SMALL, api_base=server.url)
        codes["eval"] = _promptopt(folder, "eval", "eval", "Find the instruction.", "--model",
                                   "openai/fake", "--scorer", "minilm", "--split", "val",
                                   "--storage", db, "--study", "ev", *SMALL,
                                   api_base=server.url)
        codes["predict"] = _promptopt(folder, "predict", "predict", "--study", "s1",
                                      "--storage", db, "--data", str(folder / "test.csv"),
                                      "--output", str(folder / "submission.csv"), "--model",
                                      "openai/fake", api_base=server.url)
        requests = list(server.requests)
    rejecting = ThreadingHTTPServer(("127.0.0.1", 0), _RejectingHandler)
    threading.Thread(target=rejecting.serve_forever, daemon=True).start()
    try:
        codes["rejected"] = _promptopt(
            folder, "rejected", "run", "-m", "identity", "--budget", "8", "--model",
            "openai/fake", "--scorer", "hashing", "--storage", db, "--study", "rejected",
            "--api-base", f"http://127.0.0.1:{rejecting.server_address[1]}/v1", *SMALL,
        )
    finally:
        rejecting.shutdown()
        rejecting.server_close()
    return folder, codes, requests


def test_the_commands_ran(session):
    folder, codes, requests = session
    assert codes == {"run": 0, "compare": 0, "eval": 0, "predict": 0, "rejected": 2}, [
        (folder / f"{name}.err").read_text()[-2000:] for name in codes
    ]
    written = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert {"promptopt.db", "cache/cache.sqlite", "submission.csv", "cmp/report.md",
            "cmp/trials.csv", "cmp/best_so_far.png", "run.log", "eval.log"} <= written
    assert "Incorrect API key provided" in (folder / "rejected.err").read_text()
    assert (folder / "run.log").stat().st_size > 0  # DEBUG logging really was on


def test_the_key_reached_the_provider(session):
    _, _, requests = session
    headers = {r["headers"].get("authorization", "") for r in requests}
    assert headers == {f"Bearer {ENV_SECRET}", f"Basic {BASIC}"}  # the URL's password: run


def test_no_secret_in_any_byte_written(session):
    folder, _, _ = session
    leaks = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        leaks += [(path.name, s) for s in SECRETS if s.encode() in data]
    assert not leaks


def test_credentials_in_api_base_are_masked_where_stored(session):
    import optuna

    folder, _, _ = session
    study = optuna.load_study(study_name="s1", storage=f"sqlite:///{folder}/promptopt.db")
    stored = study.user_attrs["settings"]["api_base"]
    assert stored.startswith("http://promptopt:***@127.0.0.1:") and is_redacted(stored)
    rejected = optuna.load_study(study_name="rejected",
                                 storage=f"sqlite:///{folder}/promptopt.db")
    assert "Incorrect API key provided: ***" in json.dumps(rejected.user_attrs)


def test_resuming_a_run_whose_api_base_was_masked_asks_for_it(session):
    from promptopt.errors import ConfigError
    from promptopt.runs import load_for_resume

    folder, _, _ = session
    with pytest.raises(ConfigError, match="give --api-base again"):
        load_for_resume(f"sqlite:///{folder}/promptopt.db", "s1", {})


@pytest.mark.parametrize(
    "text, expected",
    [
        ("http://u:pw-secret@host:1/v1", "http://u:***@host:1/v1"),
        ("https://h/v1?api-key=abc123&x=1", "https://h/v1?api-key=***&x=1"),
        ("postgresql://user:hunter22@db/x", "postgresql://user:***@db/x"),
        ("see https://h/p?token=t0k&sig=s1g#f", "see https://h/p?token=***&sig=***#f"),
        ("http://host:8000/v1 and plain text", "http://host:8000/v1 and plain text"),
    ],
)
def test_redact_masks_url_credentials(text, expected):
    assert redact(text) == expected


def test_redact_masks_secret_environment_values(monkeypatch):
    monkeypatch.setenv("SOME_PROVIDER_API_KEY", "abcd-1234-efgh")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")  # short values are left alone
    assert redact("key abcd-1234-efgh, false") == f"key {MASK}, false"
