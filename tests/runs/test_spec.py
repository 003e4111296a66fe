"""The typed run spec: its fields, its stored form, old studies, and given options.

A :class:`RunSpec` is what a run stores (``to_settings``) and what a resume reads back
(``from_settings``); a study written before the spec existed (``tests/fixtures/
study-0.1.0.db``, an OPRO run interrupted by Ctrl-C, made by promptopt 0.1.0 before
the layout change) must still resume to the uninterrupted run's result.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

import promptopt.optimizers  # noqa: F401  (registers every method)
from promptopt.cli import app
from promptopt.errors import ConfigError
from promptopt.runs import LLMSpec, RunSpec, SearchSpec, TaskSpec, build_task, resume_run, run
from promptopt.runs._runner import Live
from promptopt.runs._spec import FIELDS, OVERRIDABLE, default, option, shared_settings
from promptopt.testing import FakeLLM
from promptopt.tracking import StudyAttrs

FIXTURE = Path(__file__).parent.parent / "fixtures" / "study-0.1.0.db"
SMALL = dict(scorer="hashing", train=8, val=4, test=4)


def test_the_spec_is_frozen_keyword_only_and_names_every_run_argument():
    spec = RunSpec.from_args(method="ape", budget=7, model="openai/x", train=5)
    assert (spec.search.method, spec.search.budget, spec.llm.model, spec.task.train) == (
        "ape", 7, "openai/x", 5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.search.budget = 8  # type: ignore[misc]
    with pytest.raises(TypeError):
        SearchSpec("opro")  # type: ignore[misc]  # keyword-only
    import inspect

    arguments = set(inspect.signature(run).parameters)
    assert set(FIELDS) <= arguments  # every field is a run() argument of the same name
    with pytest.raises(ConfigError, match="unknown run setting.*'budgett'.*valid: task"):
        RunSpec.from_args(budgett=3)


def test_field_metadata_says_what_a_resume_may_change_and_what_workers_share():
    assert OVERRIDABLE == {"api_base", "timeout", "concurrency", "max_errors"}
    shared = shared_settings()
    assert shared["splits"] == "--train/--val/--test" and shared["method_settings"] == "--set"
    assert "seed" not in shared.values() and not any("--seed" in v for v in shared.values())
    assert not any("--api-base" in v for v in shared.values())
    assert option("split_seed").flag == "--split-seed"
    assert default("budget") == SearchSpec.budget == 100 and default("task_options") == {}


def test_cli_defaults_are_the_spec_defaults():
    import typer.main

    command = typer.main.get_command(app).commands["run"]  # type: ignore[attr-defined]
    defaults = {p.name: p.default for p in command.params}
    for name in ("method", "task", "model", "scorer", "budget", "seed", "train", "val",
                 "test", "split_seed", "skip_bad_rows", "suffix", "max_errors", "timeout"):
        assert defaults[name] == default(name), name


def test_settings_round_trip(tmp_path):
    fake = FakeLLM()
    spec = RunSpec.from_args(method="random", model=fake.model, budget=9, seed=4,
                             settings={"samples": 2}, task_options={}, **SMALL)
    task = build_task(spec, Live())
    settings = spec.to_settings(task, {"samples": 2}, task.start_template())
    again = RunSpec.from_settings(settings)
    assert again.search == dataclasses.replace(spec.search, start=task.start_template())
    assert again.llm == dataclasses.replace(spec.llm, proposer=fake.model)  # resolved
    assert again.task == dataclasses.replace(spec.task, task_options=task.get_params())
    assert again.to_settings(task, {"samples": 2}, task.start_template()) == settings


def test_the_default_proposer_goes_with_the_default_model_only():
    from promptopt.llm import DEFAULT_MODEL, DEFAULT_PROPOSER, proposer_for
    from promptopt.runs._building import make_llms

    assert proposer_for(DEFAULT_MODEL) == DEFAULT_PROPOSER
    assert proposer_for("openai/gpt-4o-mini") == "openai/gpt-4o-mini"  # the user's model
    assert proposer_for(DEFAULT_MODEL, "fake/mine") == "fake/mine"  # the user's proposer
    _, writer = make_llms(DEFAULT_MODEL, cache=False)  # no model is loaded for this
    assert writer.model == DEFAULT_PROPOSER
    _, writer = make_llms("fake/x", cache=False)
    assert writer.model == "fake/x"
    spec = RunSpec.from_args(method="random", **SMALL)
    task = build_task(dataclasses.replace(spec, llm=LLMSpec(model=FakeLLM().model)), Live())
    stored = spec.to_settings(task, {}, task.start_template())
    assert stored["proposer"] == DEFAULT_PROPOSER  # stored resolved: a resume keeps it


def test_a_study_made_before_the_spec_resumes_to_the_uninterrupted_result(tmp_path):
    db = tmp_path / "old.db"
    shutil.copy(FIXTURE, db)
    url = f"sqlite:///{db}"
    stored = StudyAttrs(optuna.load_study(study_name="made-by-0.1.0", storage=url).user_attrs)
    assert stored.status == "interrupted" and stored.settings["promptopt_version"] == "0.1.0"
    recorded = len(optuna.load_study(study_name="made-by-0.1.0", storage=url).trials)
    fake = FakeLLM(name="fixture-v0")  # the model string the old run used
    resumed = resume_run("made-by-0.1.0", storage=url, cache=False)
    assert resumed.replayed_trials == recorded > 0
    fresh = run("opro", model=fake.model, budget=30, seed=3, storage=url, study="fresh",
                cache=False, settings={"proposals_per_step": 2, "opening": False}, **SMALL)
    assert resumed.template == fresh.template
    assert (resumed.val_score, resumed.test_score) == (fresh.val_score, fresh.test_score)
    assert resumed.budget_spent == fresh.budget_spent
    after = StudyAttrs(optuna.load_study(study_name="made-by-0.1.0", storage=url).user_attrs)
    assert after.status == "finished" and after.status_detail["resumes"] == 1


def _interrupted(url: str, study: str) -> FakeLLM:
    """An OPRO run with budget 30 in ``study``, stopped by Ctrl-C after 5 requests."""
    fake = FakeLLM()
    calls = [0]

    def stop() -> None:
        calls[0] += 1
        if calls[0] == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run("opro", model=fake.model, budget=30, storage=url, study=study, on_progress=stop,
            **SMALL)
    return fake


def test_an_option_given_with_its_default_value_counts_on_resume(tmp_path):
    url = f"sqlite:///{tmp_path}/r.db"
    fake = _interrupted(url, "s")
    with pytest.raises(ConfigError, match="--budget 100.*started with 30"):
        run("opro", model=fake.model, budget=100, storage=url, study="s", resume=True)
    with pytest.raises(ConfigError, match="--budget 100.*started with 30"):
        resume_run("s", storage=url, given={"budget": 100})
    done = run("opro", model=fake.model, storage=url, study="s", resume=True, proposer=None)
    assert done.budget == 30  # None means not given: the stored proposer stays


def test_cli_resume_counts_an_explicit_default(tmp_path):
    url = f"sqlite:///{tmp_path}/c.db"
    _interrupted(url, "s")
    result = CliRunner().invoke(app, ["run", "--resume", "--study", "s", "--storage", url,
                                      "--budget", "100"])
    assert result.exit_code != 0
    assert "--budget 100" in " ".join(result.output.split())


def test_refine_takes_the_task_options_of_run(tmp_path):
    data = tmp_path / "capitals.csv"
    rows = [("France", "Paris"), ("Japan", "Tokyo"), ("Peru", "Lima"), ("Chad", "N'Djamena"),
            ("Cuba", "Havana"), ("Fiji", "Suva"), ("", "Nowhere"), ("Laos", "Vientiane")]
    data.write_text("country,capital\n" + "".join(f"{c},{t}\n" for c, t in rows))
    fake = FakeLLM(lambda prompt, params: "<INS>Name the capital city.</INS>")
    url = f"sqlite:///{tmp_path}/r.db"
    base = ["--task", "csv", "--data", str(data), "--inputs", "country", "--target", "capital",
            "--metric", "exact", "--model", fake.model, "--storage", url, "--train", "3",
            "--val", "2", "--test", "2"]
    args = ["refine", "-f", "be short", "--template", "Give the capital.", "-k", "1",
            "--budget", "20", "--refine-study", "r", "--out", str(tmp_path / "r.json"), *base]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code != 0 and "row 7" in " ".join(refused.output.split())
    done = CliRunner().invoke(app, [*args, "--skip-bad-rows", "--task-option", "answer=full"])
    assert done.exit_code == 0, done.output
    run_args = optuna.load_study(study_name="r", storage=url).user_attrs[
        "refine_settings"]["run_args"]
    assert run_args["skip_bad_rows"] is True
    assert run_args["task_options"]["metric"] == "exact"
    assert run_args["task_options"]["answer"] == "full"


def test_parts_hold_their_own_fields():
    assert {f.name for f in dataclasses.fields(TaskSpec)} == {
        "task", "data", "task_options", "scorer", "train", "val", "test", "split_seed",
        "skip_bad_rows"}
    assert {f.name for f in dataclasses.fields(LLMSpec)} == {
        "model", "proposer", "api_base", "timeout", "concurrency"}


def test_each_setting_is_declared_once_on_the_spec():
    """run(), compare() and the run and compare commands take their settings from the
    spec fields: the same names, defaults and help."""
    import inspect

    import typer.main

    from promptopt.comparison import PER_RUN, compare
    from promptopt.runs import EVAL_FIELDS, evaluate

    for fn, names in ((run, set(FIELDS)), (compare, set(FIELDS) - set(PER_RUN)),
                      (evaluate, set(EVAL_FIELDS))):
        params = inspect.signature(fn).parameters
        assert names <= set(params), fn.__name__
        for name in names:
            assert params[name].default == default(name), (fn.__name__, name)
            assert option(name).help.split()[0] in (fn.__doc__ or ""), (fn.__name__, name)
        assert not set(PER_RUN) & set(params) or fn is run
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    for command, names in (("run", set(FIELDS)), ("compare", set(FIELDS) - set(PER_RUN)),
                           ("eval", set(EVAL_FIELDS))):
        params = {p.name: p for p in commands[command].params}
        for name in names - {"task_options"}:
            assert params[name].opts[0] == option(name).flag, (command, name)
            if not (command == "compare" and name == "budget"):  # "per run" there
                assert params[name].help == option(name).help, (command, name)
        assert {"inputs", "target", "metric", "task_option"} <= set(params)
        assert not {"budget", "seed", "method"} & set(params) or command != "eval"
        assert not set(PER_RUN) & set(params) or command == "run"


def test_a_setting_a_function_does_not_take_is_named_in_the_error():
    from promptopt.comparison import compare

    with pytest.raises(ConfigError, match=r"run\(\) got unknown setting.*'budgett'.*budget"):
        run("random", budgett=3)
    with pytest.raises(ConfigError, match=r"compare\(\) got unknown setting.*'seed'"):
        compare(["random"], seed=3)


def test_the_stored_settings_carry_their_form_and_a_newer_form_is_refused(tmp_path):
    from promptopt.errors import ResumeError
    from promptopt.runs._spec import SETTINGS_VERSION

    fake = FakeLLM()
    spec = RunSpec.from_args(method="random", model=fake.model, budget=9, **SMALL)
    task = build_task(spec, Live())
    settings = spec.to_settings(task, {}, task.start_template())
    assert settings["settings_version"] == SETTINGS_VERSION
    older = {k: v for k, v in settings.items() if k != "settings_version"}  # form 1
    assert RunSpec.from_settings(older) == RunSpec.from_settings(settings)
    with pytest.raises(ResumeError, match="newer promptopt"):
        RunSpec.from_settings({**settings, "settings_version": SETTINGS_VERSION + 1})
