"""``--concurrency``: requests in flight at once for a remote provider, stored with a run."""

from __future__ import annotations

import threading

import optuna
import pytest
from typer.testing import CliRunner

from promptopt.cli import app
from promptopt.errors import ConfigError
from promptopt.llm import LLM
from promptopt.runs import RunSpec, evaluate, run
from promptopt.testing import FakeOpenAIServer, default_reply

SMALL = dict(train=4, val=6, test=3, scorer="hashing")


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")


class InFlight:
    """A reply that holds each request until ``n`` are in flight together, and counts them.

    A client that never has ``n`` requests out at once breaks the barrier (after
    ``wait`` seconds), so its requests fail instead of hanging.
    """

    def __init__(self, n: int, wait: float = 20.0) -> None:
        self.barrier = threading.Barrier(n, timeout=wait)
        self.lock = threading.Lock()
        self.now = self.peak = 0

    def __call__(self, prompt: str, params: dict) -> str:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        try:
            self.barrier.wait()
        finally:
            with self.lock:
                self.now -= 1
        return default_reply(prompt, params)


def test_llm_keeps_n_requests_in_flight():
    held = InFlight(3)
    with FakeOpenAIServer(held) as server:
        llm = LLM("openai/fake", api_base=server.url, api_key="sk-test", concurrency=3,
                  max_retries=0, max_tokens=7)
        out = llm.complete_many([[{"role": "user", "content": f"q{i}"}] for i in range(6)])
    assert len(out) == 6 and server.count == 6
    # the length bound goes as max_tokens, which every OpenAI-compatible server honours
    assert all(body["max_tokens"] == 7 for body in server.bodies)
    assert held.peak == 3  # three at once, never more


def test_cli_eval_sends_concurrency_requests_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTOPT_CACHE_DIR", str(tmp_path / "cache"))
    held = InFlight(3)
    with FakeOpenAIServer(held) as server:
        result = CliRunner().invoke(app, [
            "eval", "Find the instruction.", "--split", "val", "--model", "openai/fake",
            "--api-base", server.url, "--concurrency", "3", "--scorer", "hashing",
            "--train", "4", "--val", "6", "--test", "3",
        ])
    assert result.exit_code == 0, result.output
    assert server.count == 6 and held.peak == 3


def test_library_evaluate_with_one_request_at_a_time(tmp_path):
    held = InFlight(1)
    with FakeOpenAIServer(held) as server:
        ev = evaluate("Find the instruction.", split="val", model="openai/fake",
                      api_base=server.url, concurrency=1, cache=False, **SMALL)
    assert ev.n == 6 and held.peak == 1


def test_concurrency_is_stored_with_the_run_and_may_change_on_resume(tmp_path):
    url = f"sqlite:///{tmp_path}/c.db"
    with FakeOpenAIServer() as server:
        run("random", budget=12, storage=url, study="c", model="openai/fake",
            api_base=server.url, concurrency=2, cache_dir=str(tmp_path / "cache"), **SMALL)
        settings = optuna.load_study(study_name="c", storage=url).user_attrs["settings"]
        assert settings["concurrency"] == 2
        assert RunSpec.from_settings(settings).llm.concurrency == 2
        again = run("random", budget=12, storage=url, study="c", model="openai/fake",
                    api_base=server.url, concurrency=5, resume=True,
                    cache_dir=str(tmp_path / "cache"), **SMALL)
    assert again.test_score is not None


@pytest.mark.parametrize("bad", [0, -1])
def test_concurrency_below_one_is_refused(bad, tmp_path):
    with pytest.raises(ConfigError, match="concurrency"):
        evaluate("Find the instruction.", split="val", model="openai/fake",
                 api_base="http://127.0.0.1:9/v1", concurrency=bad, cache=False, **SMALL)


@pytest.mark.parametrize("command", ["run", "eval", "compare", "predict"])
def test_every_command_that_calls_the_model_takes_concurrency(command):
    import re

    shown = CliRunner().invoke(app, [command, "-h"], env={"COLUMNS": "200"}).stdout
    assert re.search(r"--concurrency\s", re.sub(r"\x1b\[[0-9;]*m", "", shown))
