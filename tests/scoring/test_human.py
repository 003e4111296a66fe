"""The human metric: ratings given in a real optuna-dashboard steer a search on the fake LLM.

The dashboard test posts the rating form's answer the way the dashboard's JavaScript
does when the form is submitted (``POST /api/trials/<id>/tell`` with
``{"state": "Complete", "values": [rating]}``). The resume tests let the "person"
answer through Optuna's storage (the same write that endpoint makes).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import optuna
import pytest

from promptopt.data import sample_path
from promptopt.errors import ConfigError, HumanTimeout
from promptopt.runs import evaluate, resume_run, run
from promptopt.scoring import (
    HumanScorer,
    make_scorer,
    normalize_rating,
    rating_note,
    ratings_study_name,
)
from promptopt.tasks import PromptRecoveryTask
from promptopt.template import Template
from promptopt.testing import FakeLLM, FakeOpenAIServer

GOOD = "Name the single change the rewrite made, as a short imperative."
BAD = "Describe both texts at length."
START = PromptRecoveryTask.default_instruction
RATINGS = {GOOD: 5, BAD: 2, START: 1}
SCORES = {text: normalize_rating(r) for text, r in RATINGS.items()}
SEARCH = dict(budget=40, train=4, val=2, test=2,
              settings={"minibatch_size": 2, "pool": [GOOD, BAD]})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def _post(url: str, body: dict) -> int:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return int(response.status)


@pytest.fixture
def dashboard(tmp_path):
    """A real optuna-dashboard (``promptopt dashboard``) on a SQLite storage; its base URL."""
    url = f"sqlite:///{tmp_path}/hitl.db"
    optuna.create_study(storage=url, study_name="placeholder")  # the schema exists
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "promptopt", "dashboard", "--storage", url, "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                _get(f"{base}/api/studies")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    raise AssertionError(proc.stdout.read().decode()) from None
                time.sleep(0.3)
        yield url, base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _in_thread(fn, **kwargs):
    box: dict = {}

    def target():
        try:
            box["result"] = fn(**kwargs)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


def test_ratings_posted_in_the_dashboard_form_become_the_search_scores(dashboard):
    url, base = dashboard
    fake = FakeLLM()
    messages: list[str] = []
    scorer = HumanScorer(examples=2, poll=0.1, dashboard=base, on_wait=messages.append)
    thread, box = _in_thread(run, method="random", model=fake.model, scorer=scorer,
                             storage=url, study="hitl", seed=0, **SEARCH)
    rated: dict[int, str] = {}
    study_id = None
    deadline = time.monotonic() + 180
    while thread.is_alive():
        assert time.monotonic() < deadline, "the run did not finish"
        if study_id is None:
            names = {s["study_name"]: s["study_id"] for s in _get(f"{base}/api/studies")[
                "study_summaries"]}
            study_id = names.get(ratings_study_name("hitl"))
        if study_id is not None:
            detail = _get(f"{base}/api/studies/{study_id}")
            for trial in detail["trials"]:
                if trial["state"] != "Running" or trial["trial_id"] in rated:
                    continue
                form = detail["form_widgets"]  # registered before any trial is asked
                widget = form["widgets"][0]
                assert form["output_type"] == "objective"
                assert (widget["type"], widget["min"], widget["max"]) == ("slider", 1, 5)
                note = trial["note"]["body"]
                if not note:  # a person rates what the note shows; it is being written
                    continue
                attrs = {a["key"]: a["value"] for a in trial["user_attrs"]}
                instruction = attrs["instruction"]
                assert instruction in note and "**prediction**" in note
                assert "**reference**" in note and "original_text" in note
                status = _post(f"{base}/api/trials/{trial['trial_id']}/tell",
                               {"state": "Complete", "values": [RATINGS[instruction]]})
                assert status == 204
                rated[trial["trial_id"]] = instruction
        thread.join(0.2)
    assert "error" not in box, box.get("error")
    result = box["result"]
    # The optimizer ranked candidates by the person's ratings, 1-5 -> 0-1.
    assert result.template.instruction == GOOD
    assert (result.val_score, result.test_score) == (1.0, 1.0)
    assert (result.start_val_score, result.start_test_score) == (0.0, 0.0)
    run_trials = optuna.load_study(study_name="hitl", storage=url).trials
    assert len(run_trials) == result.trials == len(rated) == scorer.asked
    for trial in run_trials:
        assert trial.value == SCORES[trial.user_attrs["instruction"]]
        assert trial.user_attrs["scorer"] == "human-rating-1-5"
    ratings = optuna.load_study(study_name="hitl-ratings", storage=url).trials
    assert all(t.state.name == "COMPLETE" for t in ratings)
    assert sorted(t.value for t in ratings) == sorted(RATINGS[i] for i in rated.values())
    assert all(len(t.user_attrs["examples"]) == 2 for t in ratings)
    assert messages[0].startswith(
        f"waiting for a rating of trial 0 in optuna-dashboard at {base}/dashboard/studies/")


def _person(url: str, study: str, *, interrupt_at: int | None = None):
    """An ``on_wait`` that rates every waiting trial, or raises Ctrl-C at the n-th wait."""
    waits = []

    def on_wait(message: str) -> None:
        waits.append(message)
        if len(waits) == interrupt_at:
            raise KeyboardInterrupt
        rate_waiting(url, study)

    return on_wait, waits


def rate_waiting(url: str, study: str) -> int:
    ratings = optuna.load_study(study_name=ratings_study_name(study), storage=url)
    waiting = [t for t in ratings.get_trials(deepcopy=False) if t.state.name == "RUNNING"]
    for t in waiting:
        ratings.tell(t.number, RATINGS[t.user_attrs["instruction"]])
    return len(waiting)


def test_ctrl_c_while_waiting_then_resume_asks_nothing_twice(tmp_path):
    url = f"sqlite:///{tmp_path}/h.db"
    fake = FakeLLM()
    on_wait, _ = _person(url, "h", interrupt_at=4)
    first = HumanScorer(poll=0.01, on_wait=on_wait)
    with pytest.raises(KeyboardInterrupt):
        run("random", model=fake.model, scorer=first, storage=url, study="h", **SEARCH)
    assert optuna.load_study(study_name="h", storage=url).user_attrs["status"] == "interrupted"
    assert first.asked == 4
    assert rate_waiting(url, "h") == 1  # the person rates the open trial after the stop
    on_wait, waits = _person(url, "h")
    second = HumanScorer(poll=0.01, on_wait=on_wait)
    result = resume_run("h", storage=url, given={"scorer": second})
    assert result.template.instruction == GOOD and result.replayed_trials == 3
    assert second.reused == 4 and second.asked == len(waits) == result.trials - 4
    keys = [t.user_attrs["rating_key"] for t in optuna.load_study(
        study_name="h-ratings", storage=url).trials]
    assert len(keys) == len(set(keys)) == result.trials


def test_no_rating_in_time_stops_the_run_resumably(tmp_path):
    url = f"sqlite:///{tmp_path}/t.db"
    fake = FakeLLM()
    with pytest.raises(HumanTimeout, match="no rating of trial 0") as info:
        run("identity", model=fake.model, scorer=HumanScorer(timeout=0.2, poll=0.05,
                                                             on_wait=lambda m: None),
            storage=url, study="t", budget=20, train=2, val=2, test=2)
    assert "promptopt run --resume --study t" in info.value.resume_hint
    assert optuna.load_study(study_name="t", storage=url).user_attrs["status"] == "interrupted"
    assert rate_waiting(url, "t") == 1
    on_wait, _ = _person(url, "t")
    scorer = HumanScorer(poll=0.01, on_wait=on_wait)
    result = resume_run("t", storage=url, given={"scorer": scorer})
    assert (scorer.reused, scorer.asked) == (1, 2)  # train rating kept; val and test asked
    assert result.val_score == result.test_score == SCORES[START]


def test_cli_run_with_metric_human_waits_for_the_rating(tmp_path):
    url = f"sqlite:///{tmp_path}/c.db"
    env = {**os.environ, "PROMPTOPT_CACHE_DIR": str(tmp_path / "cache"),
           "OPENAI_API_KEY": "sk-test", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    with FakeOpenAIServer() as server:
        proc = subprocess.Popen(
            [sys.executable, "-m", "promptopt", "run", "-m", "identity", "--metric",
             "human:poll=0.1,examples=1", "--model", "openai/fake", "--api-base", server.url,
             "--budget", "10", "--train", "2", "--val", "2", "--test", "2",
             "--storage", url, "--study", "c"],
            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        rated = 0
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                rated += rate_waiting(url, "c")
            except KeyError:  # the ratings study does not exist yet
                pass
            time.sleep(0.2)
        if proc.poll() is None:
            proc.kill()
        stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert rated == 3  # train, val and test of the starting template
    assert "waiting for a rating of trial 0 in optuna-dashboard" in stderr
    assert "scorer human-rating-1-5" in stdout
    assert optuna.load_study(study_name="c", storage=url).user_attrs["settings"][
        "task_options"]["metric"] == "human:poll=0.1,examples=1"


# --- pieces -----------------------------------------------------------------------------


def test_metric_strings_and_settings():
    scorer = make_scorer("human:examples=2,timeout=30,scope=template")
    assert isinstance(scorer, HumanScorer)
    assert (scorer.examples, scorer.timeout, scorer.scope) == (2, 30.0, "template")
    assert HumanScorer.from_spec(scorer.name).examples == 3
    with pytest.raises(ConfigError, match="examples, timeout, poll, scope, dashboard"):
        HumanScorer.from_spec("human:exmples=2")
    with pytest.raises(ConfigError, match="timeout"):
        HumanScorer.from_spec("human:timeout=soon")
    with pytest.raises(ConfigError, match="scope"):
        HumanScorer(scope="batch").attach("sqlite:///x.db", "s")


def test_ratings_map_to_scores():
    assert [normalize_rating(r) for r in (1, 2, 3, 4, 5)] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert normalize_rating(9) == 1.0 and normalize_rating(0) == 0.0


def test_note_shows_everything_and_backticks_cannot_break_it():
    template = Template("Say it in ```code``` form.")
    shown = [{"id": "r1", "inputs": {"original_text": "a", "rewritten_text": "b"},
              "prediction": "Make it formal.", "reference": "Make this formal."}]
    note = rating_note(template, shown, "run-1")
    assert "````text\nSay it in ```code``` form.\n````" in note
    for text in ("Make it formal.", "Make this formal.", "original_text", "run-1", template.id):
        assert text in note


def test_human_metric_needs_a_study_and_the_inputs():
    fake = FakeLLM()
    with pytest.raises(ConfigError, match="needs a storage and study"):
        evaluate("Guess the instruction.", model=fake.model, scorer="human", split="val",
                 train=2, val=2, test=2)
    with pytest.raises(ConfigError, match="cannot score bare predictions"):
        HumanScorer().score(["a"], ["b"])


def test_scores_fill_every_example_of_the_evaluation(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    on_wait, waits = _person(url, "s")
    scorer = HumanScorer(poll=0.01, on_wait=on_wait, scope="template")
    scorer.attach(url, "s")
    task = PromptRecoveryTask.from_file(
        sample_path(), scorer=scorer, train=4, val=2, test=2)
    examples = task.examples("train")
    good = Template(GOOD)
    scores = task.score(["p"] * 4, examples, good)
    assert np.allclose(scores, 1.0) and len(waits) == 1
    assert np.allclose(task.score(["q"] * 2, examples[:2], good), 1.0)  # scope=template
    assert len(waits) == 1
