"""What each evaluation's trial holds for the dashboard: state, params, times, note, artifact."""

from __future__ import annotations

import csv
from pathlib import Path

import optuna
import pytest
from optuna.artifacts import FileSystemArtifactStore, download_artifact, get_all_artifact_meta
from optuna.distributions import CategoricalDistribution
from optuna_dashboard import get_note

from promptopt.runs import run
from promptopt.template import Template
from promptopt.testing import FakeLLM, FakeSetup
from promptopt.tracking import Tracker, artifact_dir, evaluation_trials, is_evaluation
from promptopt.tracking._notes import Parent, render_note, word_diff

State = optuna.trial.TrialState


def _note(url: str, study: str, trial: optuna.trial.FrozenTrial) -> str:
    loaded = optuna.load_study(study_name=study, storage=url)
    return get_note(optuna.trial.Trial(loaded, trial._trial_id))


def test_word_diff_strikes_removed_words_and_bolds_added_ones():
    diff = word_diff("Rewrite the text politely", "Rewrite this text politely now")
    assert diff == "Rewrite ~~the~~ **this** text politely **now**"
    assert word_diff("a b", "a b") == "a b"


def test_the_note_shows_the_worst_and_best_predictions_and_the_parents():
    rows = [{"id": f"e{i}", "prediction": f"guess {i}", "target": f"truth {i}",
             "score": s} for i, s in enumerate([0.5, 0.1, 0.9, 0.3, 0.7, 0.2, 0.8, 0.6])]
    attrs = {"method": "opro", "split": "train", "n_examples": 8, "template_id": "abc",
             "template": {"instruction": "New *careful* wording | here", "demos": [],
                          "answer_prefix": "Prompt:", "suffix": ""},
             "meta": {"step": 2}, "scorer": "hashing"}
    parent = Parent("p1", (3, 5), {"instruction": "Old wording here", "demos": []})
    note = render_note(attrs, 0.5, parents=[parent, Parent("p2")], rows=rows)
    shown = [line.split(" | ")[0].lstrip("| ") for line in note.splitlines()
             if line.startswith("| e") and not line.startswith("| example")]
    assert shown == ["e1", "e5", "e3", "e4", "e6", "e2"]  # 3 worst then 3 best, worst first
    assert "e0" not in shown and "e7" not in shown
    assert "trial #3, #5" in note and "(template `p2`, not evaluated in this study)" in note
    assert "~~Old~~" in note and "**New \\*careful\\***" in note
    assert "New \\*careful\\* wording \\| here" in note  # shown literally, not as Markdown
    assert "train split · 8 examples · step 2" in note
    assert "not the objective" in note and "Answer prefix: `Prompt:`" in note
    assert "answer prefix: ` ` → `Prompt:`" in note  # what changed besides the words


def test_states_params_times_notes_and_artifacts_of_each_kind_of_evaluation(tmp_path):
    url = f"sqlite:///{tmp_path}/t.db"
    setup = FakeSetup(budget=None, storage=url, study="kinds", method="opro")
    ev = setup.evaluator
    start = Template("Say what the rewrite asked for.")
    child = Template("Name the change the rewrite made.")
    ev.evaluate(start, "train", meta={"step": 0})
    ev.evaluate(child, "train", parents=[start.id], meta={"step": 4})
    val = ev.evaluate(child, "val", parents=[start.id], meta={"role": "finalist"})
    ev.evaluate(child, "test", meta={"role": "final"})
    ev.score_constant("Improve this text.", "val")
    trials = sorted(optuna.load_study(study_name="kinds", storage=url).trials,
                    key=lambda t: t.number)
    assert [t.state for t in trials] == [State.PRUNED, State.PRUNED, State.COMPLETE,
                                         State.PRUNED, State.PRUNED]
    study = optuna.load_study(study_name="kinds", storage=url)
    assert study.best_trial.number == 2 and study.best_value == pytest.approx(val.score)
    assert trials[1].intermediate_values == {4: pytest.approx(trials[1].value)}
    assert all(t.datetime_complete > t.datetime_start for t in trials)
    assert trials[1].params == {"method": "opro", "split": "train", "step": 4,
                                "n_examples": len(setup.task.examples("train")), "n_demos": 0,
                                "instruction_chars": len(child.instruction)}
    assert trials[2].distributions["split"] == CategoricalDistribution(["train", "val", "test"])
    assert "step" not in trials[2].params
    note = _note(url, "kinds", trials[1])
    assert "trial #0" in note and "Name the change the rewrite made" in note.replace("\\", "")
    # predictions artifacts: validation and test templates, not train, not constants
    store = FileSystemArtifactStore(str(tmp_path / "t.db-artifacts"))
    metas = {t.number: get_all_artifact_meta(t, storage=study._storage) for t in trials}
    assert [n for n, m in metas.items() if m] == [2, 3]
    target = tmp_path / "val.csv"
    download_artifact(artifact_store=store, artifact_id=metas[2][0].artifact_id,
                      file_path=str(target))
    rows = list(csv.DictReader(target.open(encoding="utf-8")))
    assert [r["prediction"] for r in rows] == list(val.predictions)
    assert [r["id"] for r in rows] == list(val.example_ids)
    assert {"original_text", "rewritten_text", "target", "score"} <= set(rows[0])


def test_a_failed_evaluation_is_a_failed_trial_with_a_note(tmp_path):
    url = f"sqlite:///{tmp_path}/f.db"
    tracker = Tracker(url, "failed")
    tracker.record_failure(attrs={"template_id": "t1", "split": "train", "n_examples": 2,
                                  "template": {"instruction": "Do it."}, "method": "m",
                                  "error": "RateLimitError: slow down", "meta": {}})
    [trial] = optuna.load_study(study_name="failed", storage=url).trials
    assert trial.state == State.FAIL and trial.value is None
    assert is_evaluation(trial, failed=True) and not is_evaluation(trial)
    assert "RateLimitError: slow down" in _note(url, "failed", trial)


def test_a_worker_names_parents_recorded_by_another_worker(tmp_path):
    url = f"sqlite:///{tmp_path}/w.db"
    first, second = Tracker(url, "shared"), Tracker(url, "shared", worker=1)
    base = {"split": "train", "n_examples": 1, "method": "m", "meta": {}}
    first.record(value=0.5, attrs={**base, "template_id": "a",
                                   "template": {"instruction": "Old words"}})
    first.record(value=0.6, attrs={**base, "template_id": "b", "parents": ["a"],
                                   "template": {"instruction": "Other words"}})
    second.record(value=0.7, attrs={**base, "template_id": "c", "parents": ["b"],
                                    "template": {"instruction": "New words"}})
    trials = evaluation_trials(optuna.load_study(study_name="shared", storage=url).trials)
    assert "trial #1" in _note(url, "shared", trials[2])
    assert "~~Other~~ **New**" in _note(url, "shared", trials[2])


def test_artifact_folders_sit_beside_the_storage(tmp_path, monkeypatch):
    assert artifact_dir(f"sqlite:///{tmp_path}/a.db") == tmp_path / "a.db-artifacts"
    assert artifact_dir("sqlite:///rel.db") == Path.cwd() / "rel.db-artifacts"
    assert artifact_dir("sqlite:///:memory:") is None
    monkeypatch.setenv("PROMPTOPT_CACHE_DIR", str(tmp_path / "c"))
    folder = artifact_dir("postgresql://user:secret@db.example:5433/runs")
    assert folder == tmp_path / "c" / "artifacts" / "postgresql-db.example-5433-runs"
    assert "secret" not in str(folder)


def test_tpe_records_its_template_parts_as_categorical_parameters(tmp_path):
    url = f"sqlite:///{tmp_path}/tpe.db"
    fake = FakeLLM(name="tpe-params")
    run("tpe", model=fake.model, budget=40, seed=0, scorer="hashing", train=8, val=4, test=4,
        storage=url, study="tpe", settings={"minibatch_size": 2, "max_demos": 1},
        cache_dir=str(tmp_path / "cache"))
    trials = evaluation_trials(optuna.load_study(study_name="tpe", storage=url).trials)
    searched = [t for t in trials if t.user_attrs["meta"].get("kind") == "tpe"
                and "trial" in t.user_attrs["meta"]]
    assert len(searched) >= 2
    for t in searched:
        assert {"tpe_instruction", "tpe_n_demos", "tpe_demo_0", "tpe_answer_prefix"} <= set(
            t.params)
        assert isinstance(t.distributions["tpe_instruction"], CategoricalDistribution)
        assert t.params["step"] == t.user_attrs["meta"]["trial"]
        assert t.params["n_demos"] == len(t.user_attrs["template"]["demos"])
        assert "distributions" not in t.user_attrs["meta"]
