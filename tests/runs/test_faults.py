"""LLM faults: a misbehaving OpenAI-compatible server on 127.0.0.1, retries, failed evaluations.

Every fault goes through the real HTTP path (LiteLLM's ``openai/`` provider with
``api_base`` pointing at :class:`~promptopt.testing._faults.MisbehavingServer`):
transport faults are retried (a retried request counts once in the budget), a call
that keeps failing makes a failed evaluation (a FAIL trial with the reason) and the
search goes on, more than ``max_errors`` of them stop the run so that ``--resume``
continues it, and odd answers (empty, endless, non-English, chatter) are cleaned.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import types
from collections import Counter

import optuna
import pytest
from typer.testing import CliRunner

import promptopt.optimizers  # noqa: F401  (registers every method)
from promptopt.cli import app
from promptopt.data import load_examples, sample_path, split_examples
from promptopt.errors import (
    AuthenticationError,
    BudgetExhausted,
    EvaluationFailed,
    LLMError,
    TooManyErrors,
    TransientLLMError,
)
from promptopt.evaluator import Evaluator
from promptopt.llm import LLM, Budget, DiskCache, _client, _errors
from promptopt.redact import scrub_text
from promptopt.registry import optimizers
from promptopt.runs import run
from promptopt.scoring import HashingScorer
from promptopt.tasks import PromptRecoveryTask
from promptopt.tasks._prompt_recovery import DEFAULT_PREDICTION
from promptopt.testing import FakeSetup, default_reply
from promptopt.testing._faults import FAULTS, NON_ENGLISH, MisbehavingServer
from promptopt.tracking import Tracker, evaluation_trials, is_evaluation

KEY = "sk-test-faults-0123456789"
MSG = [{"role": "user", "content": "Original text: hi\nRewritten text: HI!\nRewrite prompt:"}]
SMALL = dict(scorer="hashing", train=8, val=4, test=4)
VARYING = {"study", "usage", "wall_time_s", "replayed_trials"}
runner = CliRunner()


@pytest.fixture(autouse=True)
def _api_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)


def _llm(server, **kw):
    kw = {"timeout": 2.0, "max_retries": 2, "backoff": 0.0, **kw}
    return LLM("openai/fake", api_base=server.url, **kw)


def _expected(messages) -> str:
    """What the server answers when it behaves (temperature 0, no seed)."""
    prompt = "\n\n".join(m["content"] for m in messages)
    return default_reply(prompt, {"seed": None, "temperature": 0.0})


def _task(n_train=8):
    examples = load_examples(sample_path(), input_fields=PromptRecoveryTask.input_fields,
                             target_field=PromptRecoveryTask.target_field)
    splits = split_examples(examples, train=n_train, val=4, test=4, seed=0)
    return PromptRecoveryTask(splits, scorer=HashingScorer())


def _trials(url, study, state=None):
    trials = sorted(optuna.load_study(study_name=study, storage=url).trials,
                    key=lambda t: t.number)
    if state == optuna.trial.TrialState.COMPLETE:  # every evaluation that has a score
        return evaluation_trials(trials)
    return [t for t in trials if state is None or t.state == state]


def _content(trials):
    return Counter((t.user_attrs["template_id"], t.user_attrs["split"],
                    t.user_attrs["examples_hash"], t.value) for t in trials)


def _same_result(a: dict, b: dict) -> None:
    assert {k: v for k, v in a.items() if k not in VARYING} == {
        k: v for k, v in b.items() if k not in VARYING
    }


# --- the client against each fault ---------------------------------------------------


@pytest.mark.parametrize("fault", ["429", "500", "malformed", "disconnect", "hang"])
def test_transport_faults_are_retried_and_a_retried_request_counts_once(fault):
    with MisbehavingServer([fault, fault], hang=5.0) as server:
        llm = _llm(server, timeout=0.5, budget=Budget(1))
        assert llm.complete(MSG) == _expected(MSG)
    assert server.log == [fault, fault, "ok"]
    assert (llm.usage.calls, llm.usage.retries, llm.usage.failures) == (1, 2, 0)
    assert llm.budget.spent == 1  # three attempts, one request


def test_a_request_that_keeps_failing_gives_up_after_bounded_retries():
    with MisbehavingServer() as server:
        server.outage = "500"
        llm = _llm(server, budget=Budget(3))
        with pytest.raises(TransientLLMError, match="InternalServerError.*gave up after 3"):
            llm.complete(MSG)
        assert server.count == 3 and llm.budget.spent == 1
        assert (llm.usage.calls, llm.usage.retries, llm.usage.failures) == (0, 2, 1)
        with pytest.raises(BudgetExhausted):  # the budget is charged before any attempt
            llm.complete_many([MSG] * 3)
        assert server.count == 3


def test_retry_after_sets_the_wait(monkeypatch):
    waits = []
    monkeypatch.setattr(_client, "time", types.SimpleNamespace(sleep=waits.append,
                                                               time=time.time))
    with MisbehavingServer(["429", "500"], retry_after=2.5) as server:
        assert _llm(server, backoff=0.125).complete(MSG) == _expected(MSG)
    assert server.log == ["429", "500", "ok"]
    assert waits[0] == 2.5  # Retry-After, not the backoff
    assert 0.125 <= waits[1] <= 0.25  # no header: exponential backoff (with jitter)


def test_retry_after_forms():
    def error(headers):
        return types.SimpleNamespace(litellm_response_headers=headers)

    assert _errors.retry_after(error({"retry-after": "3"})) == 3.0
    assert _errors.retry_after(error({"retry-after-ms": "250", "retry-after": "9"})) == 0.25
    soon = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 20 < _errors.retry_after(error({"retry-after": soon})) <= 30
    assert _errors.retry_after(error({"retry-after": "whenever"})) is None
    assert _errors.retry_after(error({})) is None


def test_overlong_output_is_cut_at_max_tokens():
    text = " ".join(f"w{i}" for i in range(500))
    assert _client.cut_to_max_tokens(text, 48).split() == text.split()[:48]
    assert _client.cut_to_max_tokens("x" * 10_000, 48) == "x" * (48 * 16)
    assert _client.cut_to_max_tokens("short answer", 48) == "short answer"


@pytest.mark.parametrize("fault", ["empty", "endless", "huge", "non-english", "chatter"])
def test_odd_outputs_are_cleaned_through_the_real_http_path(fault):
    task = _task()
    with MisbehavingServer() as server:
        good = Evaluator(task, _llm(server)).evaluate(task.start_template(), "val")
        server.outage = fault
        llm = _llm(server)
        raw = llm.complete(MSG, max_tokens=48)
        ev = Evaluator(task, llm).evaluate(task.start_template(), "val")
    assert not ev.failed and all(0.0 <= s <= 1.0 for s in ev.scores)
    assert len(raw.split()) <= 48 and len(raw) <= 48 * 16  # endless and huge: cut
    assert all(p and "\n" not in p and len(p) <= 300 for p in ev.predictions)
    expected = {
        "empty": [DEFAULT_PREDICTION] * 4,
        "non-english": [NON_ENGLISH] * 4,
        "chatter": list(good.predictions),  # "Sure! Here is ...:" and the sign-off are gone
    }
    if fault in expected:
        assert list(ev.predictions) == expected[fault]
    else:  # the answer runs on: one line of the cut text
        assert all(p.startswith(("and then the text", "all work and no play"))
                   for p in ev.predictions)


def test_the_server_refuses_unknown_faults():
    with pytest.raises(ValueError, match="unknown fault 'oops'.*hang, 429"):
        MisbehavingServer(["429", "oops"])
    assert {"hang", "429", "500", "malformed", "empty", "endless", "chatter"} <= set(FAULTS)


# --- failed evaluations ----------------------------------------------------------------


def test_a_failing_evaluation_is_a_failed_trial_and_its_answered_calls_stay_cached(tmp_path):
    task = _task()
    batch = task.examples("train")[:4]
    doomed = batch[2].inputs["rewritten_text"][:40]
    url = f"sqlite:///{tmp_path}/f.db"
    healed = {"now": False}

    def script(n, prompt):
        return None if healed["now"] or doomed not in prompt else "429"

    cache = DiskCache(tmp_path / "cache", "llm")
    with MisbehavingServer(script, retry_after=0.01) as server:
        evaluator = Evaluator(task, _llm(server, cache=cache, budget=Budget(10)),
                              tracker=Tracker(url, "f"))
        ev = evaluator.evaluate(task.start_template(), "train", examples=batch)
        assert ev.failed.startswith("TransientLLMError: openai/fake: RateLimitError")
        assert "gave up after 3 attempts" in ev.failed
        assert ev.scores == (0.0,) * 4 and ev.predictions == ("",) * 4
        assert evaluator.llm.budget.spent == 4  # every example stays charged
        assert len(cache) == 3  # the answered calls are kept
        (trial,) = _trials(url, "f")
        assert trial.state == optuna.trial.TrialState.FAIL and trial.value is None
        assert trial.user_attrs["error"] == ev.failed
        assert trial.user_attrs["template_id"] == task.start_template().id
        assert trial.user_attrs["usage"]["failures"] == 1
        # The same evaluation is not retried within the run (the search's path is fixed)...
        assert evaluator.evaluate(task.start_template(), "train", examples=batch) is ev
        # ...but a later run retries it, paying only the call that failed.
        healed["now"] = True
        before = server.count
        again = Evaluator(task, _llm(server, cache=cache)).evaluate(
            task.start_template(), "train", examples=batch)
        assert not again.failed and server.count - before == 1


def test_more_failed_evaluations_than_max_errors_stop_with_the_last_error(tmp_path):
    task = _task()
    url = f"sqlite:///{tmp_path}/m.db"
    with MisbehavingServer(retry_after=0.01) as server:
        server.outage = "429"
        evaluator = Evaluator(task, _llm(server, max_retries=0), tracker=Tracker(url, "m"),
                              max_errors=1)
        first = evaluator.evaluate(task.start_template(), "train")
        assert first.failed
        with pytest.raises(TooManyErrors, match=r"2 evaluations failed, more than the run "
                           r"allows \(max_errors=1, --max-errors\); the last: "
                           r"TransientLLMError.*RateLimitError"):
            evaluator.evaluate(task.start_template(), "val")
    assert [t.user_attrs["split"] for t in _trials(url, "m")] == ["train", "val"]
    assert all(t.state == optuna.trial.TrialState.FAIL for t in _trials(url, "m"))


def test_a_missing_api_key_stops_at_once_instead_of_failing_evaluations(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    task = _task()
    url = f"sqlite:///{tmp_path}/k.db"
    evaluator = Evaluator(task, LLM("openai/gpt-4o-mini", max_retries=0),
                          tracker=Tracker(url, "k"))
    with pytest.raises(AuthenticationError):
        evaluator.evaluate(task.start_template(), "train")
    assert evaluator.errors == [] and _trials(url, "k") == []


def test_error_reasons_are_scrubbed_of_secrets(monkeypatch):
    monkeypatch.setenv("MY_PROVIDER_API_KEY", "abcdef0123456789")
    text = scrub_text("401: Incorrect API key provided: sk-live-9f8e7d6c5b4a. Header: "
                      "Bearer tok.en-123456789, url ?api_key=zzz9&x=1, abcdef0123456789")
    for secret in ("sk-live-9f8e7d6c5b4a", "tok.en-123456789", "zzz9", "abcdef0123456789"):
        assert secret not in text
    assert text.startswith("401: Incorrect API key provided: ***")


# --- optimizers go on past failed evaluations --------------------------------------------


def _doomed(instruction: str) -> bool:
    return sum(map(ord, instruction)) % 3 == 0


def _is_evaluation(params) -> bool:
    """Whether a FakeLLM request renders a task example (the task's stop sequences)."""
    return "\nOriginal text:" in (params.get("stop") or [])


def _flaky(prompt, params):
    """Proposals work; evaluations of a third of the instructions fail (not retried)."""
    if _is_evaluation(params) and _doomed(prompt.split("\n\n", 1)[0]):
        raise LLMError("fake: the server had an error")
    return default_reply(prompt, params)


@pytest.mark.parametrize("name", optimizers.names())
def test_every_optimizer_goes_on_past_failed_evaluations_and_never_chooses_one(name):
    setup = FakeSetup(budget=60, replies=_flaky)
    setup.evaluator.max_errors = None
    start = setup.task.start_template()
    assert not _doomed(start.instruction)
    result = setup.optimize(optimizers.get(name)())
    failed = {ev.template.id for ev in setup.evaluator.history if ev.failed}
    assert result.template.id not in failed
    assert all(_doomed(ev.template.instruction) == bool(ev.failed)
               for ev in setup.evaluator.history)
    assert len(setup.evaluator.errors) == sum(ev.failed != "" for ev in setup.evaluator.history)


def test_a_failed_start_template_on_validation_stops_the_run_but_not_on_train():
    start = _task().start_template()
    train_texts = [e.inputs["rewritten_text"][:40] for e in _task().examples("train")]

    def start_fails(prompt, params, on_val=False):
        is_start = prompt.startswith(start.instruction)
        on_train = any(t in prompt for t in train_texts)
        if is_start and (on_train or on_val):
            raise LLMError("fake: the server had an error")
        return default_reply(prompt, params)

    setup = FakeSetup(budget=40, replies=start_fails, train=8, val=4, test=4)
    result = setup.optimize(optimizers.get("opro")())
    assert setup.evaluator.errors and result.start_val_score > 0  # scored on validation

    setup = FakeSetup(budget=40, train=8, val=4, test=4,
                      replies=lambda p, q: start_fails(p, q, on_val=True))
    with pytest.raises(EvaluationFailed, match="the starting template on the validation "
                       "split could not be scored"):
        setup.optimize(optimizers.get("opro")())


# --- whole runs against the misbehaving server ---------------------------------------------


def _recovery_outage(after: int, fault: str = "429"):
    """A script: recovery requests from the ``after``-th on get ``fault``; proposals work."""
    seen = {"n": 0, "healed": False}

    def script(n, prompt):
        if "<INS>" in prompt or seen["healed"]:
            return None
        seen["n"] += 1
        return fault if seen["n"] > after else None

    return script, seen


def test_max_errors_stops_the_run_and_resume_reaches_the_uninterrupted_result(tmp_path):
    url = f"sqlite:///{tmp_path}/r.db"
    kw = dict(model="openai/fake", budget=50, seed=1, storage=url, **SMALL)
    with MisbehavingServer() as good:
        ref = run("opro", api_base=good.url, study="ref", cache_dir=str(tmp_path / "ref"), **kw)
    recovery_calls = sum("<INS>" not in p for p in good.prompts)
    script, state = _recovery_outage(recovery_calls // 3)
    with MisbehavingServer(script, retry_after=0.01) as server:
        with pytest.raises(TooManyErrors, match="3 evaluations failed.*max_errors=2") as info:
            run("opro", api_base=server.url, study="cut", max_errors=2, **kw)
        assert info.value.resume_hint == f"promptopt run --resume --study cut --storage {url}"
        attrs = optuna.load_study(study_name="cut", storage=url).user_attrs
        assert attrs["status"] == "interrupted" and "TooManyErrors" in (
            attrs["status_detail"]["reason"])
        failed = _trials(url, "cut", optuna.trial.TrialState.FAIL)
        assert len(failed) == 3 and all("RateLimitError" in t.user_attrs["error"]
                                        for t in failed)
        kept = _content(_trials(url, "cut", optuna.trial.TrialState.COMPLETE))

        state["healed"] = True
        res = run("opro", study="cut", storage=url, resume=True)
    _same_result(res.to_dict(), ref.to_dict())
    assert res.budget_spent == ref.budget_spent
    done = _content(_trials(url, "cut", optuna.trial.TrialState.COMPLETE))
    assert kept <= done  # nothing recorded before the stop is lost
    ref_trials = _content(_trials(url, "ref"))
    assert done == ref_trials | kept  # every trial of the reference, none twice
    assert optuna.load_study(study_name="cut", storage=url).user_attrs["status"] == "finished"


def _mixed(n, prompt):
    """Sporadic faults, each recovered by a retry, and odd answers, by request number."""
    transport = {2: "429", 5: "500", 9: "malformed", 12: "disconnect", 15: "hang"}
    odd = ["chatter", "empty", "non-english", "endless", "huge"]
    if n in transport:
        return transport[n]
    return odd[n % 5] if n % 3 == 0 else None


def test_a_cli_run_against_a_flaky_server_finishes_with_every_fault_seen(tmp_path):
    url = f"sqlite:///{tmp_path}/c.db"
    with MisbehavingServer(_mixed, retry_after=0.01, hang=5.0) as server:
        result = runner.invoke(app, [
            "run", "-m", "opro", "--model", "openai/fake", "--api-base", server.url,
            "--budget", "40", "--seed", "0", "--scorer", "hashing", "--train", "8",
            "--val", "4", "--test", "4", "--timeout", "1", "--storage", url, "--study", "c",
            "--set", "opening=false", "--json"])  # answers as the server gives them
    assert result.exit_code == 0, result.output
    assert set(server.faults()) == {"ok", *FAULTS}
    out = json.loads(result.stdout)
    assert out["usage"]["retries"] == 5 and out["usage"]["failures"] == 0
    trials = _trials(url, "c")
    assert all(is_evaluation(t) for t in trials)  # none failed
    predictions = {p["prediction"] for t in trials for p in t.user_attrs["predictions"]}
    assert {DEFAULT_PREDICTION, NON_ENGLISH} <= predictions
    assert not any(p.lower().startswith("sure") or len(p) > 300 for p in predictions)
    settings = optuna.load_study(study_name="c", storage=url).user_attrs["settings"]
    assert settings["timeout"] == 1.0 and settings["max_errors"] == 3


def test_the_cli_stops_at_max_errors_says_how_to_resume_and_resumes(tmp_path):
    url = f"sqlite:///{tmp_path}/p.db"
    args = ["-m", "opro", "--model", "openai/fake", "--budget", "40", "--seed", "2",
            "--scorer", "hashing", "--train", "8", "--val", "4", "--test", "4"]
    env = {**os.environ, "PROMPTOPT_CACHE_DIR": str(tmp_path / "cache"),
           "OPENAI_API_KEY": KEY, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    with MisbehavingServer() as good:
        ref = run("opro", model="openai/fake", api_base=good.url, budget=40, seed=2,
                  storage=url, study="ref", cache_dir=str(tmp_path / "ref"), **SMALL)
    script, state = _recovery_outage(sum("<INS>" not in p for p in good.prompts) // 4)
    with MisbehavingServer(script, retry_after=0.01) as server:
        cut = subprocess.run(
            [sys.executable, "-m", "promptopt", "run", *args, "--api-base", server.url,
             "--max-errors", "1", "--storage", url, "--study", "cut"],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert cut.returncode == 2, cut.stderr
        assert "error: 2 evaluations failed, more than the run allows (max_errors=1" in (
            " ".join(cut.stderr.split()))
        assert f"resume with:  promptopt run --resume --study cut --storage {url}" in cut.stderr
        state["healed"] = True
        resumed = subprocess.run(
            [sys.executable, "-m", "promptopt", "run", "--resume", "--study", "cut",
             "--storage", url, "--json"],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    _same_result(json.loads(resumed.stdout), ref.to_dict())
    assert KEY.encode() not in (tmp_path / "p.db").read_bytes()
