"""The OpenAI-compatible path against a real server: llama-cpp-python's own.

``python -m llama_cpp.server`` (the ``llama-cpp-python[server]`` extras, in the dev
dependencies) serves the embedded SmolLM2-135M-Instruct GGUF on a free localhost port
(a chat model: that server answers chat requests for the Gemma base GGUF with an
empty turn, greedy or sampled, seen 2026-12-05), and
``promptopt run`` and ``promptopt eval`` talk to it as users talk to vLLM, Ollama or a
hosted provider: ``--model openai/NAME --api-base http://127.0.0.1:PORT/v1``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.embedded
pytest.importorskip("uvicorn", reason="needs llama-cpp-python[server] (the dev extras)")

SMALL = ["--train", "2", "--val", "2", "--test", "2", "--scorer", "hashing"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The server's ``api_base``; stopped after the module's tests."""
    from promptopt.llm._embedded import gguf_path

    port = _free_port()
    log = (tmp_path_factory.mktemp("server") / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf_path("smollm2-135m")),
         "--model_alias", "smollm", "--host", "127.0.0.1", "--port", str(port),
         "--n_ctx", "2048", "--n_threads", str(os.cpu_count() or 2)],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=2) as r:
                    assert json.load(r)["data"]
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"llama_cpp.server did not start (see {log.name})")
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _promptopt(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPENAI_API_KEY": "sk-local", "PROMPTOPT_CACHE_DIR": str(folder),
           "PYTHONPATH": os.pathsep.join(p for p in (str(Path(__file__).parents[2]),
                                                     os.environ.get("PYTHONPATH")) if p)}
    return subprocess.run([sys.executable, "-m", "promptopt", *args], capture_output=True,
                          text=True, env=env, cwd=folder, timeout=600, check=False)


def test_requests_bound_the_output_length_on_the_server(server, monkeypatch):
    from promptopt.llm import LLM

    monkeypatch.setenv("OPENAI_API_KEY", "sk-local")
    counts, texts = [], []
    for seed in range(3):
        llm = LLM("openai/smollm", api_base=server, max_tokens=5)
        texts.append(llm.complete([{"role": "user", "content": "Tell me a long story."}],
                                  temperature=1.0, seed=seed))
        counts.append(llm.usage.completion_tokens)  # the server's own count
    assert min(counts) > 0 and max(counts) <= 5, (counts, texts)  # it stopped at max_tokens


def test_run_and_eval_against_the_server(server, tmp_path):
    db = f"sqlite:///{tmp_path}/s.db"
    done = _promptopt(tmp_path, "run", "-m", "identity", "--model", "openai/smollm",
                      "--api-base", server, "--concurrency", "2", "--storage", db,
                      "--study", "srv", "--json", *SMALL)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert 0.0 <= result["test_score"] <= 1.0 and result["usage"]["calls"] > 0

    import optuna

    settings = optuna.load_study(study_name="srv", storage=db).user_attrs["settings"]
    assert settings["concurrency"] == 2 and settings["model"] == "openai/smollm"

    done = _promptopt(tmp_path, "eval", "Write the instruction that produced the rewrite.",
                      "--split", "val", "--model", "openai/smollm", "--api-base", server,
                      "--no-cache", *SMALL)
    assert done.returncode == 0, done.stderr
    assert "mean score" in done.stdout
