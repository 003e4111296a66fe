"""Several workers on one study: joining, indexes, shared history, resume, best result.

In-process tests make worker 0's run look alive (its record names a live process,
the test's parent) and then start a second run with the same settings, which joins.
The subprocess tests start two real ``python -m promptopt run`` workers at the same
instant against a local OpenAI-compatible server, on one SQLite file and on the
PostgreSQL server that ``.ci/run`` sets up.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections import Counter

import numpy as np
import optuna
import pytest

from promptopt.errors import ConfigError, LLMError
from promptopt.evaluator import examples_hash
from promptopt.runs import (
    CLAIM_ATTR,
    REGISTRATION_ATTR,
    best_template,
    process_start,
    run,
    worker_seed,
)
from promptopt.runs._workers import _pick
from promptopt.search import Selection, choose_among_workers
from promptopt.template import Template
from promptopt.testing import FakeLLM, FakeOpenAIServer, default_reply
from promptopt.testing.postgres import test_postgres_url
from promptopt.tracking import evaluation_trials, is_evaluation

SMALL = dict(scorer="hashing", train=8, val=4, test=4)


class Outage:
    """A reply that raises an LLMError from call ``at`` on (None: never)."""

    def __init__(self) -> None:
        self.at: int | None = None
        self.calls = 0

    def __call__(self, prompt, params):
        self.calls += 1
        if self.at is not None and self.calls >= self.at:
            raise LLMError("provider outage")
        return default_reply(prompt, params)


def _study(url, name):
    return optuna.load_study(study_name=name, storage=url)


def _evaluations(url, name, worker=None):
    """(worker, template id, split, examples hash, value) of the study's trials, in order."""
    return [
        (t.user_attrs.get("worker", 0), t.user_attrs["template_id"], t.user_attrs["split"],
         t.user_attrs["examples_hash"], t.value)
        for t in sorted(_study(url, name).trials, key=lambda t: t.number)
        if is_evaluation(t)  # validation COMPLETE, train and test PRUNED
        and (worker is None or t.user_attrs.get("worker", 0) == worker)
    ]


def _pretend_running(url, name):
    """Make worker 0 look like a live run: its record names the test's parent process."""
    study = _study(url, name)
    parent = os.getppid()
    detail = dict(study.user_attrs["status_detail"])
    study.set_user_attr("status", "running")
    study.set_user_attr("status_detail", {**detail, "pid": parent,
                                          "started": process_start(parent)})


def _first_worker(url, name, method="opro", settings=None, budget=60):
    fake = FakeLLM(name=f"workers-{name}")
    kw = dict(model=fake.model, budget=budget, seed=3, storage=url, study=name,
              settings=settings or {"proposals_per_step": 2}, **SMALL)
    first = run(method, **kw)
    _pretend_running(url, name)
    return fake, kw, first


def test_a_second_run_joins_a_live_one_and_reads_its_candidates(tmp_path):
    url = f"sqlite:///{tmp_path}/w.db"
    fake, kw, first = _first_worker(url, "s")
    assert first.workers is None and first.worker == 0  # alone, a run is as before
    mine = {t for _, t, split, _, _ in _evaluations(url, "s", 0) if split == "train"}
    calls_before = len(fake.calls)

    second = run("opro", **kw)
    assert second.worker == 1
    study = _study(url, "s")
    registrations = [t for t in study.trials if REGISTRATION_ATTR in t.user_attrs]
    assert len(registrations) == 1 and registrations[0].state == optuna.trial.TrialState.PRUNED
    record = study.user_attrs["worker:1"]
    assert record["status"] == "finished" and record["seed"] == worker_seed(3, 1) != 3
    # Every trial of worker 1 is recorded once; its count is what it reports.
    ones = _evaluations(url, "s", 1)
    assert len(ones) == second.trials
    assert len(set(ones)) == len(ones)
    # The base (the start, opened with the answers' first word) was scored on the same
    # minibatch by worker 0: reused, not paid again.
    start_id = first.start_template.id
    base_id = next(e[1] for e in _evaluations(url, "s", 0) if e[2] == "train")
    assert not [e for e in ones if e[1] == base_id and e[2] == "train"]
    # Worker 1's meta-prompts showed worker 0's candidates, and its trials name them as parents.
    meta = [c["prompt"] for c in fake.calls[calls_before:] if "<INS>" in c["prompt"]]
    shown = {t.user_attrs["instruction"] for t in study.trials
             if t.user_attrs.get("worker") == 0 and t.user_attrs.get("split") == "train"}
    assert meta and any(f"<INS>{text}</INS>" in meta[0] for text in shown - {
        first.start_template.instruction})
    parents = {p for t in study.trials if t.user_attrs.get("worker") == 1
               for p in t.user_attrs.get("parents", [])}
    assert parents & (mine - {start_id, base_id})
    # The study's result is the pick among both workers' choices (corrected for all
    # their finalists); readers see that template.
    attrs = study.user_attrs
    result = attrs["result"]
    assert set(result["workers"]) == {"0", "1"}
    records = {k: attrs[f"result:{k}"]["final_choice"] for k in (0, 1)}
    assert all(r["compared"] >= 1 and len(r["start_val_scores"]) == 4 for r in records.values())
    pick, how = choose_among_workers(records, Selection(), seed=3)
    assert how in second.notes
    found = pick if pick is not None else next(
        (k for k in (0, 1) if not records[k]["chosen"]), None)
    assert result["found_by"] == found == second.found_by
    expected = (attrs[f"result:{found}"]["template_id"] if found is not None
                else first.start_template.id)
    assert result["template_id"] == expected == second.template.id
    assert best_template(url, "s").id == second.template.id


def test_evoprompt_workers_take_in_each_others_candidates(tmp_path):
    url = f"sqlite:///{tmp_path}/w.db"
    _, kw, first = _first_worker(url, "evo", method="evoprompt-ga", budget=90,
                                 settings={"population_size": 3})
    with pytest.raises(ConfigError, match="--set"):  # the settings must be the same
        run("evoprompt-ga", **{**kw, "settings": {"population_size": 4}})
    with pytest.raises(ConfigError, match="cannot join study 'evo'.*--method"):
        run("evoprompt-de", **kw)
    second = run("evoprompt-ga", **kw)
    assert second.worker == 1
    study = _study(url, "evo")
    zero = {t.user_attrs["template_id"] for t in study.trials
            if t.user_attrs.get("worker") == 0 and t.user_attrs.get("split") == "train"}
    ones = [t for t in study.trials if t.user_attrs.get("worker") == 1]
    migrants = zero - {first.start_template.id}
    assert any(set(t.user_attrs.get("parents", [])) & migrants for t in ones)


def test_settings_that_differ_or_a_dead_run_are_refused(tmp_path):
    url = f"sqlite:///{tmp_path}/w.db"
    _, kw, first = _first_worker(url, "s")
    with pytest.raises(ConfigError, match="--budget 60, this one 61.*--seed and --api-base"):
        run("opro", **{**kw, "budget": 61})
    with pytest.raises(ConfigError, match="--train/--val/--test"):
        run("opro", **{**kw, "train": 9})
    study = _study(url, "s")
    study.set_user_attr("status", "finished")  # nobody runs it any more
    with pytest.raises(ConfigError, match="already holds a run.*--resume.*best template"):
        run("opro", **kw)
    assert not [t for t in _study(url, "s").trials if REGISTRATION_ATTR in t.user_attrs]


def test_a_stopped_worker_resumes_with_its_own_trials_only(tmp_path):
    """Twin studies: one joiner runs straight through, the other is cut and resumed."""
    outage = Outage()
    fake = FakeLLM(outage, name="workers-resume")
    url = f"sqlite:///{tmp_path}/w.db"
    kw = dict(model=fake.model, budget=60, seed=5, storage=url, **SMALL)
    for name in ("ref", "cut"):
        run("opro", study=name, **kw)
        _pretend_running(url, name)
    calls = outage.calls
    ref = run("opro", study="ref", **{**kw, "seed": 9}, cache_dir=str(tmp_path / "ref"))
    joiner_calls = outage.calls - calls
    outage.calls, outage.at = 0, joiner_calls // 2
    with pytest.raises(LLMError) as info:  # max_errors=0: the first failure stops it
        run("opro", study="cut", **{**kw, "seed": 9}, cache_dir=str(tmp_path / "cut"),
            max_errors=0)
    assert _study(url, "cut").user_attrs["worker:1"]["status"] == "interrupted"
    assert info.value.resume_hint.startswith("promptopt run --resume --study cut")
    outage.at = None
    # Worker 0 still "runs", so the resume continues worker 1.
    resumed = run(resume=True, study="cut", storage=url, cache_dir=str(tmp_path / "cut"))
    assert outage.calls == joiner_calls + 1  # only the calls that never got an answer
    assert resumed.worker == 1 and resumed.replayed_trials > 0
    assert _evaluations(url, "cut", 1) == _evaluations(url, "ref", 1)
    assert resumed.template == ref.template and resumed.val_score == ref.val_score
    record = _study(url, "cut").user_attrs["worker:1"]
    assert record["status"] == "finished" and record["resumes"] == 1


# --- two real worker processes against a local OpenAI-compatible server --------------

ARGS = ["-m", "opro", "--model", "openai/fake", "--budget", "80", "--seed", "0",
        "--scorer", "hashing", "--train", "8", "--val", "4", "--test", "4",
        "--set", "proposals_per_step=2", "--json"]


def _start_worker(tmp_path, server, storage, study, k):
    env = {**os.environ, "PROMPTOPT_CACHE_DIR": str(tmp_path / f"cache{k}"),
           "OPENAI_API_KEY": "sk-test", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    return subprocess.Popen(
        [sys.executable, "-m", "promptopt", "run", *ARGS, "--api-base", server.url,
         "--storage", storage, "--study", study],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _postgres():
    url, why = test_postgres_url()
    if url is None:
        pytest.skip(f"no PostgreSQL server: {why}")
    return url


@pytest.mark.parametrize(("backend", "made_empty"),
                         [("sqlite", False), ("postgresql", False), ("sqlite", True)])
def test_two_worker_processes_share_one_study(backend, made_empty, tmp_path):
    storage = f"sqlite:///{tmp_path}/w.db" if backend == "sqlite" else _postgres()
    study = f"two-{secrets.token_hex(4)}"
    if made_empty:  # as `optuna create-study` would: nobody created it by starting a run
        optuna.create_study(study_name=study, storage=_engine(storage), direction="maximize")
    with FakeOpenAIServer(delay=0.15) as server:  # slow enough for the two runs to overlap
        procs = [_start_worker(tmp_path, server, storage, study, k) for k in (0, 1)]
        finished = []
        deadline = time.monotonic() + 300
        while len(finished) < 2 and time.monotonic() < deadline:
            for i, proc in enumerate(procs):
                if i not in finished and proc.poll() is not None:
                    finished.append(i)
            time.sleep(0.05)
        outputs = [proc.communicate(timeout=30) for proc in procs]
    for proc, (_, stderr) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, stderr
        assert "Traceback" not in stderr
    results = [json.loads(stdout) for stdout, _ in outputs]
    for r in results:  # a first worker that finished before the other joined reports alone
        r.setdefault("worker", 0)
    assert sorted(r["worker"] for r in results) == [0, 1]  # different indexes

    trials = [t for t in optuna.load_study(study_name=study, storage=_engine(storage)).trials]
    evaluations = evaluation_trials(trials)
    keys = Counter((t.user_attrs["worker"], t.user_attrs["template_id"], t.user_attrs["split"],
                    t.user_attrs["examples_hash"]) for t in evaluations)
    assert max(keys.values()) == 1  # none duplicated
    for r in results:  # none lost: each worker's trials are all there
        assert sum(1 for t in evaluations if t.user_attrs["worker"] == r["worker"]) == r["trials"]
    assert len(evaluations) == sum(r["trials"] for r in results)
    assert sum(REGISTRATION_ATTR in t.user_attrs for t in trials) == 1
    claims = sum(CLAIM_ATTR in t.user_attrs for t in trials)  # 2 unless one came late
    assert 1 <= claims <= 2 if made_empty else claims == 0

    # OPRO read the other worker's candidates: some trial names one as its parent (the
    # shared starting template, which the joiner reuses, does not count).
    start = Template.from_dict(results[0]["start_template"]).id
    train = {(t.user_attrs["worker"], t.user_attrs["template_id"]) for t in evaluations
             if t.user_attrs["split"] == "train"}
    crossed = [t for t in evaluations for p in t.user_attrs.get("parents", [])
               if p != start and (1 - t.user_attrs["worker"], p) in train
               and (t.user_attrs["worker"], p) not in train]
    assert crossed, "no worker's meta-prompt showed the other worker's candidates"

    # The best template: what the study shows == the best of the workers' own choices
    # (each keeps its start unless a finalist's gain is credible) == the last report.
    val_hash = {t.user_attrs["examples_hash"] for t in evaluations
                if t.user_attrs["split"] == "val"}
    assert len(val_hash) == 1  # one validation split for both workers
    val = [t for t in evaluations if t.user_attrs["split"] == "val"]
    top = max(r["val_score"] for r in results)
    shown = best_template(storage, study)
    assert shown.id in {r["template_id"] for r in results if r["val_score"] == top}
    assert top == pytest.approx(max(t.value for t in val
                                    if t.user_attrs["template_id"] == shown.id))
    last = results[finished[-1]]
    assert last["template_id"] == shown.id and last["val_score"] == pytest.approx(top)
    assert val_hash == {examples_hash(tuple(p["id"] for p in val[0].user_attrs["predictions"]))}


def _engine(storage):
    from promptopt.tracking import open_storage

    return open_storage(storage)


@pytest.mark.embedded
def test_two_workers_on_the_embedded_model(tmp_path, embedded_cache):
    """The real parts: embedded Gemma 3 270M, packaged MiniLM scorer, a SQLite study."""
    url = f"sqlite:///{tmp_path}/e.db"
    kw = dict(budget=24, seed=0, storage=url, study="e", cache_dir=embedded_cache,
              train=4, val=3, test=3, scorer="minilm")
    first = run("opro", **kw)
    _pretend_running(url, "e")
    second = run("opro", **kw)
    assert second.worker == 1 and second.budget_spent <= 24
    assert len(_evaluations(url, "e", 1)) == second.trials
    attrs = _study(url, "e").user_attrs
    assert attrs["result:0"]["template_id"] == first.template.id
    assert attrs["result"]["template_id"] == best_template(url, "e").id == second.template.id
    assert second.template.id in {first.start_template.id, first.template.id,
                                  attrs["result:1"]["template_id"]}
    across = [line for line in second.notes if line.startswith("across workers: ")]
    assert len(across) == 1
    if second.template.id != first.start_template.id:  # a worker's gain stayed credible
        assert "Bonferroni over" in across[0] and "of 2 workers" in across[0]


# --- the pick among workers' results ----------------------------------------------------

START_T, A, B = Template("Say the prompt."), Template("Name the prompt."), Template("Guess it.")


def _result(template, val, test, record):
    """A worker's stored result (the fields the pick reads)."""
    return {"template": template.to_dict(), "template_id": template.id, "val_score": val,
            "test_score": test, "test_metrics": {"score": test},
            "start_template": START_T.to_dict(), "start_val_score": 0.30,
            "start_test_score": 0.25, "start_test_metrics": {"score": 0.25},
            "test_score_without_suffix": None,
            "val_gain": {"gain": val - 0.30, "low": 0.001, "high": 0.2, "level": 0.9, "n": 20},
            "test_gain": {"gain": test - 0.25, "low": -0.1, "high": 0.2, "level": 0.9, "n": 12},
            "final_choice": record}


def _record(gain, spread, seed, *, chosen=True, compared=1):
    z = np.random.default_rng(seed).standard_normal(20)
    z = (z - z.mean()) / z.std()
    base = np.full(20, 0.30)
    scores = base + gain + spread * z if chosen else base
    return {"confidence": 0.9, "compared": compared, "chosen": chosen,
            "start_val_scores": base.tolist(), "val_scores": scores.tolist()}


def test_the_pick_returns_the_start_when_no_workers_gain_survives_the_correction():
    # Each worker alone found a gain credible at 90%; two of them at 95% each are not.
    results = {0: _result(A, 0.38, 0.20, _record(0.08, 0.2, 1)),
               1: _result(B, 0.38, 0.31, _record(0.08, 0.2, 2))}
    settings = {"seed": 3, "selection": {}}
    merged, how = _pick(results, settings)
    assert merged["template_id"] == START_T.id and merged["found_by"] is None
    assert merged["val_score"] == 0.30 and merged["test_score"] == 0.25
    assert merged["test_metrics"] == {"score": 0.25}
    assert merged["val_gain"] == {"gain": 0.0, "low": 0.0, "high": 0.0, "level": 0.9, "n": 20}
    assert merged["test_gain"]["n"] == 12 and merged["test_gain"]["gain"] == 0.0
    assert merged["why"] == how and "not credible" in how and "2 workers" in how
    # A worker that kept the start is the result then (its own scores and notes).
    results[2] = _result(START_T, 0.30, 0.25, _record(0, 0, 0, chosen=False, compared=3))
    merged, _ = _pick(results, settings)
    assert merged["found_by"] == 2 and merged["template_id"] == START_T.id
    # A stricter or looser level is the run's setting.
    loose, _ = _pick({0: results[0]}, {"seed": 3, "selection": {"confidence": 0.8}})
    assert loose["found_by"] == 0 and loose["template_id"] == A.id


def test_the_pick_takes_a_credible_gain_and_old_results_by_validation_mean():
    results = {0: _result(A, 0.45, 0.20, _record(0.15, 0.6, 1)),  # higher mean, noise
               1: _result(B, 0.36, 0.31, _record(0.06, 0.02, 2))}  # steady
    merged, how = _pick(results, {"seed": 0, "selection": {}})
    assert merged["found_by"] == 1 and merged["template_id"] == B.id
    assert merged["test_score"] == 0.31 and "chose worker 1's template" in how
    old = {k: {key: v for key, v in r.items() if key != "final_choice"}
           for k, r in results.items()}
    merged, how = _pick(old, {"seed": 0, "selection": {}})
    assert merged["found_by"] == 0 and how == ""
