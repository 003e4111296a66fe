"""`promptopt dashboard` really serves the study: trials over HTTP, trial pages in Chromium.

The module's study is a real run (OPRO on the fake LLM, recorded in SQLite); the
dashboard is ``python -m promptopt dashboard`` on a free localhost port; the trial page
is rendered by Debian's ``chromium`` (headless). Without chromium the browser test is
skipped, except in CI (``CI`` set), where it fails: ``.ci/run`` installs chromium.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from types import SimpleNamespace

import optuna
import pytest

from promptopt.runs import run
from promptopt.template import Template
from promptopt.testing import FakeLLM, FakeSetup

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@contextlib.contextmanager
def serve(url: str) -> Iterator[str]:
    """``promptopt dashboard --storage url`` on a free port; its base URL."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "promptopt", "dashboard", "--storage", url, "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                _get(f"{base}/api/studies")
                break
            except OSError:
                if proc.poll() is not None:
                    raise AssertionError(proc.stdout.read().decode()) from None
                if time.time() > deadline:
                    raise AssertionError("the dashboard did not start in 60 s") from None
                time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def chromium_dom(url: str, profile: str, *, budget_ms: int = 20000) -> str:
    """The DOM of ``url`` after headless Chromium ran its scripts for ``budget_ms``."""
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI (.ci/run installs the Debian package)")
        pytest.skip("chromium is not installed (Debian: apt-get install chromium); "
                    "the browser test needs it")
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}",
         "--dump-dom", url],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _study(base: str, name: str) -> tuple[int, dict]:
    [summary] = [s for s in _get(f"{base}/api/studies")["study_summaries"]
                 if s["study_name"] == name]
    return summary["study_id"], _get(f"{base}/api/studies/{summary['study_id']}")


def _shown(trial: dict) -> dict:
    """A trial's user attributes as the API shows them (JSON text, clipped)."""
    return {a["key"]: a["value"] for a in trial["user_attrs"]}


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[SimpleNamespace]:
    """A real OPRO run on the fake LLM, served by ``promptopt dashboard``."""
    folder = tmp_path_factory.mktemp("served")
    url = f"sqlite:///{folder}/run.db"
    fake = FakeLLM(name="dashboard-run")
    # (without the answer opening: this seed's best validated finalist is then the result)
    result = run("opro", model=fake.model, budget=40, seed=0, scorer="hashing", train=8,
                 val=4, test=4, storage=url, study="dash-run", cache_dir=str(folder / "cache"),
                 settings={"opening": False})
    with serve(url) as base:
        study_id, detail = _study(base, "dash-run")
        trials = {t["number"]: t for t in detail["trials"]}
        stored = {t.number: t.user_attrs for t in
                  optuna.load_study(study_name="dash-run", storage=url).trials}
        yield SimpleNamespace(base=base, url=url, result=result, study_id=study_id,
                              detail=detail, trials=trials, folder=folder,
                              attrs=lambda t: stored[t["number"]])


def _final_test(served: SimpleNamespace) -> dict:
    [trial] = [t for t in served.trials.values() if served.attrs(t)["split"] == "test"
               and served.attrs(t)["meta"].get("role") == "final"]
    return trial


def test_dashboard_serves_the_studys_trials(tmp_path):
    url = f"sqlite:///{tmp_path}/dash.db"
    setup = FakeSetup(budget=None, storage=url, study="dash-study", method="unit")
    parent = Template("First instruction.")
    setup.evaluator.evaluate(parent, "train")
    setup.evaluator.evaluate(Template("Second instruction."), "val", parents=[parent.id])
    with serve(url) as base:
        _, detail = _study(base, "dash-study")
        trials = detail["trials"]
        assert len(trials) == 2
        assert detail["objective_names"] == ["validation score"]  # not "Objective 0"
        attrs = [_shown(t) for t in trials]
        assert [a["instruction"] for a in attrs] == ["First instruction.", "Second instruction."]
        assert attrs[1]["split"] == "val" and parent.id in attrs[1]["parents"]
        # the train evaluation is pruned (its score an intermediate value); validation is best
        assert [t["state"] for t in trials] == ["Pruned", "Complete"]
        assert trials[0]["intermediate_values"][0]["value"] == pytest.approx(trials[0]["values"][0])
        assert [t["number"] for t in detail["best_trials"]] == [1]
        assert "trial #0" in trials[1]["note"]["body"]  # the parent, by its trial number
        with urllib.request.urlopen(f"{base}/dashboard", timeout=5) as page:
            assert page.status == 200 and b"<html" in page.read().lower()


def test_api_durations_params_states_and_best_trial(served):
    result, trials = served.result, served.trials
    assert len(trials) == result.trials >= 6
    for t in trials.values():
        start, end = (datetime.fromisoformat(t[k]) for k in ("datetime_start",
                                                              "datetime_complete"))
        assert end > start, (t["number"], t["datetime_start"], t["datetime_complete"])
        params = {p["name"]: p for p in t["params"]}
        assert {"method", "split", "n_examples", "n_demos", "instruction_chars"} <= set(params)
        attrs = served.attrs(t)
        assert params["split"]["param_external_value"] == attrs["split"]
        assert int(params["instruction_chars"]["param_external_value"]) == len(
            attrs["instruction"])
        if attrs["split"] == "val":
            assert t["state"] == "Complete"
        else:
            assert t["state"] == "Pruned" and t["intermediate_values"]
    stepped = [t for t in trials.values() if "step" in served.attrs(t)["meta"]]
    assert stepped and all(any(p["name"] == "step" for p in t["params"]) for t in stepped)
    # the best trial is the best validated template: the run's result
    [best] = served.detail["best_trials"]
    assert served.attrs(best)["split"] == "val"
    assert best["values"][0] == pytest.approx(result.val_score)
    assert served.attrs(best)["template_id"] == result.template.id


def test_notes_name_parents_by_trial_number_and_show_predictions(served):
    children = [t for t in served.trials.values() if served.attrs(t)["parents"]]
    assert children
    numbers = {}
    for t in served.trials.values():
        numbers.setdefault(served.attrs(t)["template_id"], []).append(t["number"])
    for t in children:
        note = t["note"]["body"]
        first = served.attrs(t)["parents"][0]
        assert f"trial #{numbers[first][0]}" in note, note
        assert "Changed from the first parent" in note
        assert "| example | score | prediction | target |" in note
        assert f"{served.attrs(t)['split']} split" in note


def test_final_predictions_download_as_an_artifact(served):
    trial = _final_test(served)
    [artifact] = trial["artifacts"]
    assert artifact["filename"].endswith(".csv")
    assert (served.folder / "run.db-artifacts" / artifact["artifact_id"]).is_file()
    link = (f"{served.base}/artifacts/{served.study_id}/{trial['trial_id']}/"
            f"{artifact['artifact_id']}")
    with urllib.request.urlopen(link, timeout=10) as response:
        rows = list(csv.DictReader(io.StringIO(response.read().decode("utf-8"))))
    assert len(rows) == served.attrs(trial)["n_examples"] == 4
    kept = {p["id"]: p["prediction"] for p in served.attrs(trial)["predictions"]}
    assert {r["id"]: r["prediction"] for r in rows} == kept
    assert float(rows[0]["score"]) == pytest.approx(
        next(p["score"] for p in served.attrs(trial)["predictions"] if p["id"] == rows[0]["id"]),
        abs=1e-4)  # the attribute keeps 4 decimals, the artifact every digit


def test_trial_page_shows_the_template_and_a_prediction_in_chromium(served, tmp_path):
    trial = _final_test(served)
    page = (f"{served.base}/dashboard/studies/{served.study_id}/trials"
            f"?numbers={trial['number']}")
    dom = chromium_dom(page, str(tmp_path / "profile"))
    instruction = served.result.template.instruction
    assert instruction in dom, dom[-3000:]
    predictions = [p["prediction"] for p in served.attrs(trial)["predictions"]]
    assert any(p in dom for p in predictions), predictions
    assert f"Trial {trial['number']}" in dom
