"""`refine`: a person's critique applied as a ProTeGi textual gradient, on the fake LLM."""

from __future__ import annotations

import json

import optuna
import pytest
from typer.testing import CliRunner

from promptopt import refine
from promptopt.cli import app
from promptopt.errors import ConfigError
from promptopt.runs import best_template, run
from promptopt.template import Template
from promptopt.testing import FakeLLM

FEEDBACK = "it should ask for one short imperative sentence naming the change"
FOLLOWS = "Answer with one short imperative sentence naming the change."
IGNORES = "Write a long essay about both texts."
SMALL = dict(scorer="hashing", train=6, val=4, test=4)
runner = CliRunner()


def _recovery(targets: dict[str, str]):
    """Right answers for instructions that follow the feedback, junk otherwise."""

    def reply(prompt, params):
        if "imperative sentence" in prompt:
            return next((t for o, t in targets.items() if o in prompt), "zzz")
        return "qqq zzz"

    return reply


def _proposer(prompt, params):
    if "improved prompts" in prompt:
        return f"{IGNORES}<END>\n<START>{FOLLOWS}<END>\n<START>{FOLLOWS}<END>"
    return "nothing"


@pytest.fixture
def base_study(tmp_path):
    """A finished identity run on the fake LLM; its storage URL, study and recovery fake."""
    from promptopt.runs import make_task

    task = make_task(data=None, **SMALL)
    targets = {e.inputs["original_text"][:40]: e.target
               for split in ("train", "val", "test") for e in task.examples(split)}
    fake = FakeLLM(_recovery(targets))
    url = f"sqlite:///{tmp_path}/r.db"
    run("identity", model=fake.model, budget=30, storage=url, study="base", **SMALL)
    return url, "base", fake


def test_feedback_becomes_the_gradient_and_the_best_edit_is_saved(base_study, tmp_path):
    url, study, fake = base_study
    proposer = FakeLLM(_proposer)
    out = tmp_path / "refined.json"
    result = refine(FEEDBACK, study=study, storage=url, proposer=proposer.model, k=2, out=out,
                    refine_study="ref")
    [prompt] = proposer.prompts()  # one edit request gave the two edits asked for
    assert f"the problem with this prompt is that {FEEDBACK}" in prompt
    assert f'My current prompt is:\n"{result.original.instruction}"' in prompt
    assert "Prediction: qqq zzz" in prompt  # the base's errors on the train minibatch
    assert [c.kind for c in result.candidates] == ["original", "edit", "edit"]
    assert [c.template.instruction for c in result.candidates[1:]] == [IGNORES, FOLLOWS]
    assert result.rejected == {} and result.notes == []
    scores = {c.template.instruction: c.val_score for c in result.candidates}
    assert scores[FOLLOWS] == pytest.approx(1.0)
    assert scores[IGNORES] < 0.5 and result.original_score < 0.5
    assert result.best.instruction == FOLLOWS and all(c.n == 4 for c in result.candidates)
    assert Template.load(str(out)) == result.best
    trials = optuna.load_study(study_name="ref", storage=url).trials
    val = [t for t in trials if t.user_attrs["split"] == "val"]
    assert len(val) == 3 and len(trials) == 4  # + the train minibatch that found the errors
    edits = [t for t in val if t.user_attrs["meta"]["kind"] == "edit"]
    assert all(t.user_attrs["parents"] == [result.original.id] for t in edits)
    assert all(t.user_attrs["meta"]["feedback"] == FEEDBACK for t in val)
    assert best_template(url, "ref") == result.best  # predict --study / refine again work


def test_a_proposer_without_usable_edits_keeps_the_original(base_study):
    url, study, _ = base_study
    proposer = FakeLLM(lambda prompt, params: "")
    result = refine(FEEDBACK, study=study, storage=url, proposer=proposer.model, k=2,
                    edit_calls=3)
    assert len(proposer.prompts()) == 3
    assert [c.kind for c in result.candidates] == ["original"]
    assert result.best == result.original and result.rejected == {"no proposal in answer": 3}
    assert result.notes == ["the proposer gave 0 usable edit(s) of the 2 asked for (rejected: "
                            "{'no proposal in answer': 3})"]


def test_a_template_file_and_a_tight_budget(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("Guess the instruction.")
    proposer = FakeLLM(_proposer)
    fake = FakeLLM()
    result = refine(FEEDBACK, template=str(path), storage=f"sqlite:///{tmp_path}/x.db",
                    model=fake.model, proposer=proposer.model, k=2, budget=4 + 1 + 4 + 4,
                    **SMALL)
    assert result.original.instruction == "Guess the instruction."
    assert [c.val_score is not None for c in result.candidates] == [True, True, False]
    assert any("budget ran out" in n for n in result.notes)
    assert result.budget_spent <= 13
    with pytest.raises(ConfigError, match="budget too small"):
        refine(FEEDBACK, template=str(path), storage=f"sqlite:///{tmp_path}/y.db",
               model=fake.model, budget=5, **SMALL)


def test_clear_errors(tmp_path):
    url = f"sqlite:///{tmp_path}/e.db"
    optuna.create_study(storage=url, study_name="empty")
    with pytest.raises(ConfigError, match="'empty' has no result yet"):
        refine(FEEDBACK, study="empty", storage=url)
    with pytest.raises(ConfigError, match="no study 'nope'"):
        refine(FEEDBACK, study="nope", storage=url)
    with pytest.raises(ConfigError, match="needs a critique"):
        refine("  ", template="x")
    with pytest.raises(ConfigError, match="a study .* or a template"):
        refine(FEEDBACK)
    with pytest.raises(ConfigError, match="unknown setting"):
        refine(FEEDBACK, template="x", modle="x")
    result = runner.invoke(app, ["refine", "--feedback", FEEDBACK, "--study", "empty",
                                 "--storage", url])
    assert result.exit_code == 2
    assert "error: study 'empty' has no result yet" in " ".join(result.output.split())


def test_cli_refine_prints_the_table_and_saves_the_best(base_study, tmp_path):
    url, study, _ = base_study
    proposer = FakeLLM(_proposer)
    result = runner.invoke(app, ["refine", "-f", FEEDBACK, "--study", study, "--storage", url,
                                 "--proposer", proposer.model, "-k", "2", "--out",
                                 str(tmp_path / "best.json"), "--refine-study", "cli-ref"],
                           env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "promptopt refine" in text and "original:" in text and FOLLOWS in text
    assert "best template (val 1.0000" in text and "saved to" in text  # rounded to 4 places
    saved = json.loads((tmp_path / "best.json").read_text())
    assert saved["instruction"] == FOLLOWS
    attrs = optuna.load_study(study_name="cli-ref", storage=url).user_attrs
    assert attrs["refine_settings"]["source"].endswith("#base")
    assert attrs["refine_settings"]["run_args"]["scorer"] == "hashing"  # taken from the study


@pytest.mark.embedded
def test_refine_on_the_embedded_model(tmp_path, embedded_cache):
    result = refine("it should ask for the instruction only, in a few words",
                    template="Write the instruction that produced the rewrite.",
                    storage=f"sqlite:///{tmp_path}/emb.db", k=2, budget=30,
                    cache_dir=embedded_cache, train=4, val=3, test=3, scorer="minilm",
                    minibatch_size=3)
    original = result.candidates[0]
    assert original.kind == "original" and original.n == 3
    assert 0.0 <= result.original_score <= 1.0
    assert result.best_score >= result.original_score
    assert result.budget_spent <= 30 and result.scorer.endswith("all-MiniLM-L6-v2")
    trials = optuna.load_study(study_name=result.study, storage=result.storage).trials
    assert len(trials) == 1 + sum(c.val_score is not None for c in result.candidates)


def test_refine_reuses_a_csv_task_study_with_its_options(tmp_path):
    data = tmp_path / "capitals.csv"
    rows = [("France", "Paris"), ("Japan", "Tokyo"), ("Peru", "Lima"), ("Chad", "N'Djamena"),
            ("Cuba", "Havana"), ("Fiji", "Suva"), ("Iran", "Tehran"), ("Laos", "Vientiane")]
    data.write_text("country,capital\n" + "".join(f"{c},{t}\n" for c, t in rows))
    fake = FakeLLM(lambda prompt, params: "Paris")
    url = f"sqlite:///{tmp_path}/c.db"
    options = {"inputs": ["country"], "target": "capital", "metric": "exact"}
    run("identity", task="csv", data=str(data), task_options=options, model=fake.model,
        budget=20, storage=url, study="caps", train=3, val=3, test=2)
    result = refine("answer with the capital city only", study="caps", storage=url,
                    proposer=FakeLLM(_proposer).model, k=2, budget=30, out=tmp_path / "r.json")
    assert result.scorer == "exact"  # the csv task and its metric came from the study
    assert [c.kind for c in result.candidates] == ["original", "edit", "edit"]
    assert result.candidates[0].template.instruction.startswith("Given the country")
    assert all(c.n == 3 for c in result.candidates)  # the study's val split of 3 rows


def test_a_refine_study_has_a_status_like_a_run(base_study):
    from promptopt.tracking import RunStatus, StudyAttrs, load_study_attrs

    url, study, _ = base_study
    refine(FEEDBACK, study=study, storage=url, proposer=FakeLLM(_proposer).model, k=2,
           refine_study="ref-ok")
    attrs = StudyAttrs(load_study_attrs(url, "ref-ok"))
    assert attrs.status == RunStatus.FINISHED and attrs.status_detail["pid"]

    def stopped(prompt, params):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as info:
        refine(FEEDBACK, study=study, storage=url, proposer=FakeLLM(stopped).model, k=2,
               refine_study="ref-stop")
    attrs = StudyAttrs(load_study_attrs(url, "ref-stop"))
    assert attrs.status == RunStatus.INTERRUPTED
    assert "KeyboardInterrupt" in attrs.status_detail["reason"]
    assert not hasattr(info.value, "resume_hint")  # --resume does not continue a refine


def test_an_eval_study_has_a_status(tmp_path):
    from promptopt import evaluate
    from promptopt.tracking import RunStatus, StudyAttrs, load_study_attrs

    url = f"sqlite:///{tmp_path}/e.db"
    evaluate("Name the rewrite.", model=FakeLLM().model, storage=url, study="ev", **SMALL)
    assert StudyAttrs(load_study_attrs(url, "ev")).status == RunStatus.FINISHED
