"""Resuming interrupted runs: same trials, same result, only the missing LLM calls paid.

In-process tests interrupt runs on the fake LLM (a provider outage, Ctrl-C); the
subprocess tests kill or terminate ``python -m promptopt run`` talking to a local
OpenAI-compatible server (:class:`~promptopt.testing.FakeOpenAIServer`, 127.0.0.1).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import optuna
import pytest
from typer.testing import CliRunner

import promptopt.optimizers  # noqa: F401  (registers every method)
from promptopt.cli import app
from promptopt.errors import ConfigError, Interrupted, LLMError, ResumeError
from promptopt.registry import optimizers
from promptopt.runs import process_start, run, sigterm_as_interrupt
from promptopt.template import Template
from promptopt.testing import FakeLLM, FakeOpenAIServer, FakeSetup, default_reply
from promptopt.tracking import Tracker, is_evaluation, storage_errors

runner = CliRunner()
SMALL = dict(scorer="hashing", train=8, val=4, test=4)
# Fields of a result that depend on the interruption, not on the search.
VARYING = {"study", "usage", "wall_time_s", "replayed_trials"}


class Outage:
    """A FakeLLM reply that fails (raises ``error``) from call ``at`` on, until healed."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error or LLMError("provider outage")
        self.at: int | None = None
        self.calls = 0

    def __call__(self, prompt, params):
        self.calls += 1
        if self.at is not None and self.calls >= self.at:
            raise self.error
        return default_reply(prompt, params)

    def fail_at(self, n: int | None) -> None:
        self.calls, self.at = 0, n


def _trials(url: str, name: str) -> list[tuple]:
    study = optuna.load_study(study_name=name, storage=url)
    return [
        (t.user_attrs["template_id"], t.user_attrs["split"], t.user_attrs["n_examples"],
         t.user_attrs["examples_hash"], t.value)
        for t in sorted(study.trials, key=lambda t: t.number)
        if is_evaluation(t)  # failed evaluations: test_faults.py
    ]


def _attrs(url: str, name: str) -> dict:
    return dict(optuna.load_study(study_name=name, storage=url).user_attrs)


def _same_result(a: dict, b: dict) -> None:
    assert {k: v for k, v in a.items() if k not in VARYING} == {
        k: v for k, v in b.items() if k not in VARYING
    }
    assert a["usage"]["requests"] == b["usage"]["requests"]
    assert a["usage"]["prompt_tokens"] == b["usage"]["prompt_tokens"]


@pytest.mark.parametrize("method", optimizers.names())
def test_resume_after_an_outage_equals_the_uninterrupted_run(method, tmp_path):
    outage = Outage()
    fake = FakeLLM(outage, name=f"resume-{method}")
    kw = dict(model=fake.model, budget=50, seed=1, **SMALL)
    url = f"sqlite:///{tmp_path}/r.db"
    ref = run(method, storage=url, study="ref", cache_dir=str(tmp_path / "ref-cache"), **kw)
    total = outage.calls
    if total < 4:
        pytest.skip(f"{method} makes too few LLM calls to interrupt")
    outage.fail_at(total // 2)
    with pytest.raises(LLMError) as info:  # max_errors=0: the first failure stops the run
        run(method, storage=url, study="cut", max_errors=0, **kw)
    assert info.value.resume_hint == f"promptopt run --resume --study cut --storage {url}"
    attrs = _attrs(url, "cut")
    assert attrs["status"] == "interrupted" and "outage" in attrs["status_detail"]["reason"]
    assert "result" not in attrs
    recorded = len(_trials(url, "cut"))

    outage.fail_at(None)
    res = run(method, storage=url, study="cut", resume=True)
    assert outage.calls == total - (total // 2 - 1)  # only the calls never answered
    assert res.budget_spent == ref.budget_spent  # the replayed calls are counted
    assert res.usage["cache_hits"] == ref.usage["cache_hits"] + total // 2 - 1
    assert res.replayed_trials == recorded
    assert _trials(url, "cut") == _trials(url, "ref")  # no duplicates, none missing
    _same_result(res.to_dict(), ref.to_dict())
    attrs = _attrs(url, "cut")
    assert attrs["status"] == "finished" and attrs["status_detail"]["resumes"] == 1
    _same_result(attrs["result"], ref.to_dict())


def test_ctrl_c_marks_the_study_and_the_cli_prints_how_to_resume(tmp_path):
    outage = Outage(KeyboardInterrupt())
    fake = FakeLLM(outage, name="ctrl-c")
    url = f"sqlite:///{tmp_path}/p.db"
    args = ["--model", fake.model, "--budget", "40", "--seed", "3", "--scorer", "hashing",
            "--train", "8", "--val", "4", "--test", "4"]
    ref = runner.invoke(app, ["run", "-m", "opro", "--storage", url, "--study", "ref", "--json",
                              *args], env={"PROMPTOPT_CACHE_DIR": str(tmp_path / "ref")})
    assert ref.exit_code == 0, ref.output
    outage.fail_at(outage.calls // 2)
    cut = runner.invoke(app, ["run", "-m", "opro", "--storage", url, "--study", "cut", *args])
    assert cut.exit_code == 130, cut.output
    assert "interrupted" in cut.output
    assert f"resume with:  promptopt run --resume --study cut --storage {url}" in cut.output
    attrs = _attrs(url, "cut")
    assert attrs["status"] == "interrupted"
    assert "KeyboardInterrupt" in attrs["status_detail"]["reason"]

    outage.fail_at(None)
    res = runner.invoke(app, ["run", "--resume", "--study", "cut", "--storage", url, "--json"])
    assert res.exit_code == 0, res.output
    assert "resuming study cut" in res.output
    _same_result(json.loads(res.stdout), json.loads(ref.stdout))
    assert _trials(url, "cut") == _trials(url, "ref")


def test_a_finished_study_returns_its_stored_result_without_llm_calls(tmp_path):
    fake = FakeLLM(name="finished")
    url = f"sqlite:///{tmp_path}/p.db"
    first = run("random", model=fake.model, budget=30, storage=url, study="done", **SMALL)
    n_calls, n_trials = len(fake.calls), len(_trials(url, "done"))
    again = run(resume=True, study="done", storage=url, cache=False)
    assert len(fake.calls) == n_calls and len(_trials(url, "done")) == n_trials
    assert again.template == first.template and again.test_score == first.test_score
    assert any("already finished" in note for note in again.notes)
    out = runner.invoke(app, ["run", "--resume", "--study", "done", "--storage", url])
    assert out.exit_code == 0, out.output
    assert "already finished" in out.stdout and first.template.instruction[:30] in out.stdout


def test_options_that_contradict_the_stored_settings_are_refused(tmp_path):
    fake = FakeLLM(name="conflicts")
    url = f"sqlite:///{tmp_path}/p.db"
    run("opro", model=fake.model, budget=30, storage=url, study="s",
        settings={"proposals_per_step": 2}, **SMALL)
    base = ["run", "--resume", "--study", "s", "--storage", url]
    for extra, option in (
        (["--budget", "100"], "--budget 100"),  # 100 is the CLI default: still refused
        (["--seed", "5"], "--seed 5"),
        (["-m", "random"], "--method 'random'"),
        (["--set", "proposals_per_step=3"], "--set proposals_per_step 3"),
        (["--train", "9"], "--train 9"),
    ):
        result = runner.invoke(app, [*base, *extra])
        assert result.exit_code == 2, result.output
        assert f"with {option}" in result.output and "Traceback" not in result.output
    # Options that agree with the stored settings are fine.
    same = runner.invoke(app, [*base, "--budget", "30", "-m", "opro", "--train", "8",
                               "--scorer", "hashing", "--set", "proposals_per_step=2"])
    assert same.exit_code == 0, same.output
    with pytest.raises(ConfigError, match="--budget"):
        run(resume=True, study="s", storage=url, budget=31)


def test_resume_needs_an_existing_study(tmp_path):
    url = f"sqlite:///{tmp_path}/p.db"
    result = runner.invoke(app, ["run", "--resume", "--storage", url])
    assert result.exit_code == 2 and "--study" in result.output
    with pytest.raises(ConfigError, match="study"):
        run(resume=True, storage=url)
    missing = runner.invoke(app, ["run", "--resume", "--study", "nope", "--storage", url])
    assert missing.exit_code == 2 and "no study 'nope'" in missing.output
    optuna.create_study(study_name="bare", storage=url)
    with pytest.raises(ResumeError, match="no promptopt run"):
        run(resume=True, study="bare", storage=url)


def test_starting_over_in_a_study_that_holds_a_run_is_refused(tmp_path):
    fake = FakeLLM(name="taken")
    url = f"sqlite:///{tmp_path}/p.db"
    run("identity", model=fake.model, budget=20, storage=url, study="taken", **SMALL)
    n = len(_trials(url, "taken"))
    with pytest.raises(ConfigError, match="already holds a run.*--resume"):
        run("identity", model=fake.model, budget=20, storage=url, study="taken", **SMALL)
    assert len(_trials(url, "taken")) == n


def test_a_replay_that_differs_from_the_study_is_an_error_not_a_duplicate(tmp_path):
    outage = Outage()
    fake = FakeLLM(outage, name="diverge")
    url = f"sqlite:///{tmp_path}/p.db"
    outage.fail_at(30)
    with pytest.raises(LLMError):
        run("opro", model=fake.model, budget=50, storage=url, study="s", **SMALL)
    before = _trials(url, "s")
    assert before
    outage.fail_at(None)
    # Without the cache, a model that now answers differently changes the scores.
    fake._reply = lambda prompt, params: "Something else entirely."
    with pytest.raises(ResumeError, match="differs from the recorded trial 0"):
        run(resume=True, study="s", storage=url, cache=False)
    assert _trials(url, "s") == before
    assert _attrs(url, "s")["status"] == "failed"


def test_a_run_still_alive_is_not_resumed(tmp_path):
    fake = FakeLLM(name="alive")
    url = f"sqlite:///{tmp_path}/p.db"
    outage = Outage()
    fake._reply = outage
    outage.fail_at(5)
    with pytest.raises(LLMError):
        run("opro", model=fake.model, budget=40, storage=url, study="s", **SMALL)
    study = optuna.load_study(study_name="s", storage=url)
    detail = dict(study.user_attrs["status_detail"])
    parent = os.getppid()  # a live process that is not this one
    study.set_user_attr("status", "running")
    study.set_user_attr("status_detail", {**detail, "pid": parent,
                                          "started": process_start(parent)})
    with pytest.raises(ResumeError, match=f"being run by process {parent}"):
        run(resume=True, study="s", storage=url)


def test_sigterm_becomes_an_interrupt_and_the_handler_is_restored():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as info, sigterm_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    assert info.value.signal_name == "SIGTERM" and isinstance(info.value, KeyboardInterrupt)
    assert signal.getsignal(signal.SIGTERM) is before


class _SignalsInCleanup:
    """An object whose destructor receives SIGTERM: Python ignores the handler's exception."""

    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the handler runs (and raises) in here
            pass


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_sigterm_swallowed_in_a_destructor_still_stops_at_the_next_call():
    setup = FakeSetup(budget=None)
    start = Template("Describe the rewrite.")
    with sigterm_as_interrupt():
        _SignalsInCleanup()  # dropped at once: its __del__ swallows the Interrupted
        with pytest.raises(Interrupted) as info:
            setup.evaluator.evaluate(start, "train")
        assert info.value.signal_name == "SIGTERM"
        with pytest.raises(Interrupted):  # an LLM call outside an evaluation too
            setup.llm.complete([{"role": "user", "content": "hello"}])
        assert setup.calls == 0
    setup.evaluator.evaluate(start, "train")  # the request ended with the block
    assert setup.calls > 0


def test_a_sigterm_during_a_storage_write_waits_for_the_write_then_stops(tmp_path):
    from promptopt.runs._session import record_stop

    tracker = Tracker(f"sqlite:///{tmp_path}/s.db", "s")
    wrote = False
    with sigterm_as_interrupt():
        with pytest.raises(Interrupted), storage_errors(tracker.storage_url, "write"):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)  # the handler runs here: it must not cut the write
            tracker.set_attr("after", 1)
            wrote = True
        # Recording the stop writes to the storage too: it must not stop again.
        record_stop(tracker, Interrupted("SIGTERM"))
        attrs = tracker.attrs()
    assert wrote and attrs["after"] == 1 and attrs["status"] == "interrupted"


# --- other processes against a local OpenAI-compatible server -----------------------

RUN_ARGS = ["-m", "opro", "--model", "openai/fake", "--budget", "60", "--seed", "2",
            "--scorer", "hashing", "--train", "8", "--val", "4", "--test", "4"]
SECRET = "sk-test-never-stored-1234"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A slow local server and an uninterrupted reference run against it."""
    folder = tmp_path_factory.mktemp("served")
    url = f"sqlite:///{folder}/ref.db"
    with pytest.MonkeyPatch.context() as mp, FakeOpenAIServer(delay=0.05) as server:
        mp.setenv("OPENAI_API_KEY", SECRET)
        ref = run("opro", model="openai/fake", api_base=server.url, budget=60, seed=2,
                  storage=url, study="ref", cache_dir=str(folder / "cache"), **SMALL)
        yield server, ref, _trials(url, "ref")


def _start(tmp_path, server, study, *extra):
    env = {**os.environ, "PROMPTOPT_CACHE_DIR": str(tmp_path / "cache"),
           "OPENAI_API_KEY": SECRET, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    return subprocess.Popen(
        [sys.executable, "-m", "promptopt", "run", *RUN_ARGS, "--api-base", server.url,
         "--storage", f"sqlite:///{tmp_path}/p.db", "--study", study, *extra],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _wait_for_trials(proc, db, study, n, timeout=180.0):
    """Poll the SQLite study until it has ``n`` trials (the run must still be going)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the run ended early: {proc.communicate()}"
        with contextlib.suppress(sqlite3.Error), contextlib.closing(
            sqlite3.connect(db, timeout=5)
        ) as conn:
            (count,) = conn.execute(
                "SELECT COUNT(*) FROM trials JOIN studies USING (study_id) "
                "WHERE study_name = ?", (study,)).fetchone()
            if count >= n:
                return
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"no {n} trials within {timeout}s: {proc.communicate()}")


def _cache_entries(tmp_path) -> int:
    with contextlib.closing(sqlite3.connect(tmp_path / "cache" / "cache.sqlite")) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM llm").fetchone()[0])


def test_a_killed_process_resumes_paying_only_the_missing_requests(tmp_path, served):
    server, ref, ref_trials = served
    proc = _start(tmp_path, server, "killed")
    _wait_for_trials(proc, tmp_path / "p.db", "killed", 4)
    proc.kill()  # SIGKILL: no handler runs
    proc.wait(timeout=10)
    url = f"sqlite:///{tmp_path}/p.db"
    assert _attrs(url, "killed")["status"] == "running"  # nobody could say otherwise
    cached = _cache_entries(tmp_path)
    assert 0 < cached < ref.usage["calls"]
    before = server.count
    resumed = subprocess.run(
        [sys.executable, "-m", "promptopt", "run", "--resume", "--study", "killed",
         "--storage", url, "--json"],
        env={**os.environ, "PROMPTOPT_CACHE_DIR": str(tmp_path / "cache"),
             "OPENAI_API_KEY": SECRET, "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
        cwd=tmp_path, capture_output=True, text=True, timeout=180,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming study killed" in resumed.stderr
    assert server.count - before == ref.usage["calls"] - cached  # only what was missing
    _same_result(json.loads(resumed.stdout), ref.to_dict())
    assert _trials(url, "killed") == ref_trials
    attrs = _attrs(url, "killed")
    assert attrs["status"] == "finished" and attrs["settings"]["api_base"] == server.url
    for path in (tmp_path / "p.db", tmp_path / "cache" / "cache.sqlite"):
        assert SECRET.encode() not in path.read_bytes()


def test_sigterm_marks_the_study_interrupted_and_says_how_to_resume(
    tmp_path, served, monkeypatch
):
    server, ref, ref_trials = served
    proc = _start(tmp_path, server, "termed")
    _wait_for_trials(proc, tmp_path / "p.db", "termed", 4)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    url = f"sqlite:///{tmp_path}/p.db"
    assert proc.returncode == 143, stderr
    assert "interrupted (SIGTERM)" in stderr
    assert f"resume with:  promptopt run --resume --study termed --storage {url}" in stderr
    attrs = _attrs(url, "termed")
    assert attrs["status"] == "interrupted", stderr
    assert attrs["status_detail"]["reason"] == "SIGTERM", stderr
    monkeypatch.setenv("PROMPTOPT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    result = runner.invoke(app, ["run", "--resume", "--study", "termed", "--storage", url,
                                 "--json"])
    assert result.exit_code == 0, result.output
    _same_result(json.loads(result.stdout), ref.to_dict())
    assert _trials(url, "termed") == ref_trials
