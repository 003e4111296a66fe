"""The CLI through Typer's runner, on the fake LLM and the hashing scorer."""

from __future__ import annotations

import csv
import json

import optuna
import pytest
from typer.testing import CliRunner

from promptopt import __version__
from promptopt.cli import app
from promptopt.runs import run
from promptopt.testing import FakeLLM

runner = CliRunner()
SMALL = ["--train", "8", "--val", "4", "--test", "4", "--scorer", "hashing"]


def _invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result


def test_version_and_help():
    assert __version__ in _invoke("--version").stdout
    help_text = _invoke("-h").stdout
    for command in ("run", "eval", "predict", "dashboard", "list", "compare"):
        assert command in help_text
    assert "--budget" in _invoke("run", "-h").stdout


def test_list_shows_methods_tasks_models():
    out = _invoke("list").stdout
    assert "identity" in out and "random" in out
    assert "prompt-recovery" in out and "llamacpp/gemma-3-270m" in out


def test_run_records_a_study_and_prints_the_best_template(tmp_path):
    fake = FakeLLM()
    url = f"sqlite:///{tmp_path}/p.db"
    result = _invoke("run", "--method", "random", "--model", fake.model, "--budget", 40,
                     "--storage", url, "--study", "cli-run", *SMALL)
    assert result.exit_code == 0, result.output
    assert "best template (test SCS" in result.stdout
    study = optuna.load_study(study_name="cli-run", storage=url)
    assert study.user_attrs["settings"]["method"] == "random"
    assert study.user_attrs["settings"]["budget"] == 40
    res = study.user_attrs["result"]
    assert res["template"]["instruction"] in result.stdout.replace("\n", " ") or res["template_id"]
    assert {t.user_attrs["split"] for t in study.trials} >= {"train", "val", "test"}
    assert res["budget_spent"] <= 40


def test_run_json_output(tmp_path):
    fake = FakeLLM()
    result = _invoke("run", "-m", "identity", "--model", fake.model, "--budget", 20,
                     "--storage", f"sqlite:///{tmp_path}/p.db", "--json", *SMALL)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["method"] == "identity" and 0 <= data["test_score"] <= 1


def test_second_run_with_same_seed_is_served_from_cache(tmp_path):
    fake = FakeLLM()
    url = f"sqlite:///{tmp_path}/p.db"
    kwargs = dict(model=fake.model, scorer="hashing", budget=40, seed=7, storage=url,
                  train=8, val=4, test=4)
    first = run("random", **kwargs)
    n_calls = len(fake.calls)
    second = run("random", **kwargs)
    assert len(fake.calls) == n_calls  # not one new LLM call
    assert second.usage["calls"] == 0
    assert second.usage["cache_hits"] == first.usage["calls"] + first.usage["cache_hits"]
    assert second.template == first.template and second.test_score == first.test_score


def test_no_cache_flag_calls_again(tmp_path):
    fake = FakeLLM()
    args = ["run", "-m", "identity", "--model", fake.model, "--budget", 20,
            "--storage", f"sqlite:///{tmp_path}/p.db", *SMALL]
    _invoke(*args)
    n = len(fake.calls)
    _invoke(*args, "--no-cache")
    assert len(fake.calls) == 2 * n


def test_unknown_method_lists_valid_ones():
    result = _invoke("run", "--method", "nope", "--scorer", "hashing")
    assert result.exit_code == 2
    assert "unknown method 'nope'" in result.output and "identity" in result.output
    assert "Traceback" not in result.output


def test_bad_data_file_error_names_file_row_field(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("original_text,rewrite_prompt,rewritten_text\na,p,b\nc,,d\n")
    result = _invoke("run", "-m", "identity", "--data", bad, "--scorer", "hashing")
    assert result.exit_code == 2
    assert "bad.csv" in result.output and "row 2" in result.output
    assert "rewrite_prompt" in result.output


def test_bad_setting_is_a_clear_error(tmp_path):
    result = _invoke("run", "-m", "random", "--set", "no_such_setting=1", "--scorer", "hashing")
    assert result.exit_code == 2 and "bad settings for method 'random'" in result.output


def test_eval_a_template_string_and_file(tmp_path):
    fake = FakeLLM(lambda prompt, params: "Make it formal.")
    result = _invoke("eval", "Find the instruction.", "--split", "val", "--model", fake.model,
                     *SMALL)
    assert result.exit_code == 0, result.output
    assert "mean score" in result.stdout and "Make it formal." in result.stdout
    tpl = tmp_path / "t.json"
    tpl.write_text('{"instruction": "Use {nothing}."}')
    bad = _invoke("eval", tpl, "--model", fake.model, *SMALL)
    assert bad.exit_code == 2 and "unknown placeholder" in bad.output


def test_predict_writes_a_kaggle_submission(tmp_path):
    fake = FakeLLM(lambda prompt, params: "Sure! Here is the prompt: Make it a poem.")
    data = tmp_path / "test.csv"
    with data.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "original_text", "rewritten_text"])
        w.writerow(["9", "The sun rose.", "Golden dawn broke."])
        w.writerow(["10", "I ate.", "Dinner was devoured."])
    out = tmp_path / "sub.csv"
    result = _invoke("predict", "--data", data, "--output", out, "--template", "Guess it.",
                     "--model", fake.model)
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(out.open()))
    assert rows == [["id", "rewrite_prompt"], ["9", "Make it a poem."], ["10", "Make it a poem."]]


def test_predict_with_a_studys_best_template(tmp_path):
    fake = FakeLLM()
    url = f"sqlite:///{tmp_path}/p.db"
    res = run("random", model=fake.model, scorer="hashing", budget=40, storage=url,
              study="best", train=8, val=4, test=4)
    data = tmp_path / "t.csv"
    data.write_text("id,original_text,rewritten_text\n1,a b,c d\n")
    out = tmp_path / "s.csv"
    result = _invoke("predict", "--data", data, "-o", out, "--study", "best", "--storage", url,
                     "--model", fake.model)
    assert result.exit_code == 0, result.output
    assert res.template.instruction.split()[0].lower() in fake.prompts()[-1].lower()
    missing = _invoke("predict", "--data", data, "--study", "nope", "--storage", url)
    assert missing.exit_code == 2 and "no study 'nope'" in missing.output


@pytest.mark.parametrize("budget", [0, -3])
def test_non_positive_budget(budget):
    result = _invoke("run", "-m", "identity", "--budget", budget, "--scorer", "hashing")
    assert result.exit_code == 2 and "budget must be a positive" in result.output


def test_suffix_appends_a_learned_mean_prompt_and_reports_both_scores(tmp_path):
    fake = FakeLLM(lambda prompt, params: "Hello there.")
    url = f"sqlite:///{tmp_path}/p.db"
    res = run("identity", model=fake.model, scorer="hashing", budget=20, storage=url,
              train=8, val=4, test=4, suffix=True)
    assert res.template.suffix and res.test_score_without_suffix is not None
    # Predictions say nothing useful, so the learned string can only help on test here.
    assert res.test_score > res.test_score_without_suffix
    # Scoring with the suffix re-uses the cached LLM answers: test examples asked once.
    asked = [p for p in fake.prompts() if "Rewrite prompt:" in p]
    assert len(asked) == len(set(asked))
    result = _invoke("run", "-m", "identity", "--model", fake.model, "--budget", 20,
                     "--storage", url, "--suffix", *SMALL)
    assert result.exit_code == 0, result.output
    assert "with it" in result.stdout and "without" in result.stdout


JUNK = ("<INS>Your new instruction is very effective and it will make a difference in every "
        "way possible.</INS>")


def test_run_shows_gains_with_intervals_and_why_the_start_came_back(tmp_path):
    fake = FakeLLM(lambda prompt, params: JUNK if "<INS>" in prompt else "Make it formal.")
    url = f"sqlite:///{tmp_path}/p.db"
    result = _invoke("run", "-m", "opro", "--model", fake.model, "--budget", 40,
                     "--storage", url, "--study", "why", "--select", "confidence=0.8",
                     "--set", "opening=false", *SMALL)  # no base but the start
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "gain over the start" in text and "[80% interval]" in text
    assert "+0.0000 [+0.0000," in text  # the start itself: no gain
    assert "the result is the starting template: the proposer returned nothing usable" in text
    assert "no task content (praises itself)" in text
    stored = optuna.load_study(study_name="why", storage=url).user_attrs
    assert stored["settings"]["selection"] == {"confidence": 0.8}
    res = stored["result"]
    assert res["why"].startswith("the result is the starting template") and res["why"] in res[
        "notes"]
    assert res["test_gain"]["level"] == 0.8 and res["val_gain"]["gain"] == 0.0
    bad = _invoke("run", "-m", "opro", "--model", fake.model, "--select", "confidence=2",
                  "--storage", url, *SMALL)
    assert bad.exit_code != 0 and "confidence=2" in bad.output


def _other_data(path, rows):
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "original_text", "rewritten_text", "rewrite_prompt"])
        w.writerows(rows)


def test_eval_scores_a_runs_start_and_returned_template_on_other_data(tmp_path):
    from promptopt.runs import transfer

    url = f"sqlite:///{tmp_path}/t.db"
    fake = FakeLLM(name="transfer")
    res = run("opro", model=fake.model, budget=60, seed=24, scorer="hashing", train=8, val=4,
              test=4, storage=url, study="tr", cache_dir=str(tmp_path / "c"),
              selection={"confidence": 0.5}, settings={"opening": False})
    assert res.template.id != res.start_template.id
    other = tmp_path / "other.csv"
    _other_data(other, [[f"o{i}", f"The cat number {i} sat on the mat.",
                         f"A feline, number {i}, rested upon the rug.", "Make it fancier."]
                        for i in range(7)])
    found = transfer(url, "tr", other, cache_dir=str(tmp_path / "c"))
    assert found.start.n == found.returned.n == 7  # every row, none held out
    assert found.start.template.id == res.start_template.id
    assert found.returned.template.id == res.template.id
    assert found.gain.gain == pytest.approx(found.returned.score - found.start.score)
    assert found.start.scorer == res.scorer  # the run's scorer, so the scores compare
    out = _invoke("eval", "--study", "tr", "--storage", url, "--data", other)
    assert out.exit_code == 0, out.output
    assert "gain over the start on 7 rows" in out.stdout
    assert f"{found.returned.score:.4f}" in out.stdout
    missing = _invoke("eval", "--study", "tr", "--storage", url)
    assert missing.exit_code == 2 and "--data" in missing.output
    bad = tmp_path / "bad.csv"
    _other_data(bad, [["b1", "", "Something.", "Do it."]])
    broken = _invoke("eval", "--study", "tr", "--storage", url, "--data", bad)
    assert broken.exit_code == 2 and "bad.csv" in broken.output and "original_text" in broken.output
