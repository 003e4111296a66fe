"""DSPy's optimizers (``dspy-bootstrap``, ``dspy-mipro``) on promptopt's budget and tracker."""

from __future__ import annotations

import math

import optuna
import pytest

from promptopt.errors import AuthenticationError, ConfigError
from promptopt.optimizers._dspy import DSPyBootstrap, DSPyMIPRO
from promptopt.optimizers._dspy_bridge import export_template
from promptopt.template import Template
from promptopt.testing import FakeSetup

METHODS = {"dspy-bootstrap": DSPyBootstrap, "dspy-mipro": DSPyMIPRO}
FIELDS = ("original_text", "rewritten_text", "rewrite_prompt")


def _evaluated_calls(setup):
    """LLM calls the evaluator made itself (each evaluation's examples, memo hits excluded)."""
    return sum(e.n for e in setup.evaluator.history)


def _is_proposer(prompt):
    return "[[ ##" in prompt  # DSPy's ChatAdapter markup; task calls never carry it


@pytest.mark.parametrize("name", METHODS)
def test_dspy_calls_are_charged_and_the_budget_is_exact(name):
    setup = FakeSetup(budget=60)
    result = setup.optimize(METHODS[name]())
    assert setup.calls == setup.budget.spent <= 60  # no cache: every charged call was made
    assert setup.calls > _evaluated_calls(setup)  # DSPy's own calls (bootstrapping, proposals)
    proposals = [p for p in setup.fake.prompts() if _is_proposer(p)]
    assert bool(proposals) == (name == "dspy-mipro")
    assert result.stopped == "finished"


@pytest.mark.parametrize(
    "opt", [DSPyBootstrap(num_candidate_programs=16), DSPyMIPRO(auto="medium")]
)
def test_budget_running_out_inside_dspy_stops_cleanly(opt):
    setup = FakeSetup(budget=60)
    result = setup.optimize(opt)
    assert result.stopped == "budget"
    assert setup.calls == setup.budget.spent <= 60
    assert any(e.split == "val" and e.template == result.template
               for e in setup.evaluator.history)


def test_llm_errors_inside_dspy_propagate():
    def reply(prompt, params):
        if _is_proposer(prompt):
            raise AuthenticationError("fake: invalid API key")
        return "Rewrite this text formally."

    setup = FakeSetup(budget=100, replies=reply)
    with pytest.raises(AuthenticationError):
        setup.optimize(DSPyMIPRO())


def test_export_keeps_instruction_and_only_complete_demos():
    import dspy

    base = Template(instruction="old", answer_prefix="Rewrite", suffix="!")
    full = dict(zip(FIELDS, ("a", "b", "Make it formal."), strict=True))
    demos = [
        dspy.Example(augmented=True, **full).with_inputs(*FIELDS[:2]),
        {"original_text": "a", "rewritten_text": "b"},  # no target: dropped
        {**full, "rewrite_prompt": None},  # not a string: dropped
    ]
    template = export_template("new instruction", demos, base, FIELDS)
    assert template.instruction == "new instruction"
    assert template.answer_prefix == "Rewrite" and template.suffix == "!"
    assert [dict(d) for d in template.demos] == [full]
    assert [k for k, _ in template.demos[0]] == list(FIELDS)  # inputs first, target last


def test_bootstrap_exports_demos_and_renders_like_promptopt():
    setup = FakeSetup(budget=100)
    setup.optimize(DSPyBootstrap())
    train = [e for e in setup.evaluator.history if e.split == "train"]
    start = setup.task.start_template()
    assert any(e.template.demos for e in train)
    train_ids = {e.id for e in setup.task.examples("train")}
    for e in train:
        assert e.template.instruction == start.instruction
        for demo in e.template.demos:
            assert tuple(k for k, _ in demo) == FIELDS
        assert not set(e.example_ids) - train_ids
    # DSPy's own task calls (bootstrapping) use the task's rendering, not DSPy's markup.
    assert not any(_is_proposer(p) for p in setup.fake.prompts())


def test_mipro_exports_proposed_instructions():
    setup = FakeSetup(budget=200)
    setup.optimize(DSPyMIPRO())
    train = [e for e in setup.evaluator.history if e.split == "train"]
    start = setup.task.start_template().instruction
    assert {e.template.instruction for e in train} - {start}
    assert any(e.template.demos for e in train)
    assert all(e.meta["dspy"].startswith("MIPROv2") for e in train)


def test_rejected_instructions_are_never_run():
    def reply(prompt, params):
        if _is_proposer(prompt):
            return "[[ ## proposed_instruction ## ]]\nUse {bogus} here.\n\n[[ ## completed ## ]]"
        return "Rewrite this text formally."

    setup = FakeSetup(budget=100, replies=reply)
    result = setup.optimize(DSPyMIPRO())
    assert result.rejected.get("invalid for task", 0) >= 1
    assert not any("{bogus}" in e.template.instruction for e in setup.evaluator.history)
    task_prompts = [p for p in setup.fake.prompts() if not _is_proposer(p)]
    assert task_prompts and not any("{bogus}" in p for p in task_prompts)


@pytest.mark.parametrize("name", METHODS)
def test_trials_are_recorded(name, tmp_path):
    url = f"sqlite:///{tmp_path}/t.db"
    setup = FakeSetup(budget=80, storage=url)
    setup.optimize(METHODS[name]())
    trials = optuna.load_study(study_name="test", storage=url).trials
    assert len(trials) == setup.evaluator.trial_count
    train = [t for t in trials if t.user_attrs["split"] == "train"]
    assert len(train) >= 2
    assert all(t.user_attrs["meta"]["dspy"] for t in train)
    assert {t.user_attrs["template_id"] for t in train} == {
        e.template.id for e in setup.evaluator.history if e.split == "train"
    }


@pytest.mark.parametrize("name", METHODS)
def test_same_seed_same_search(name):
    def trace(seed):
        setup = FakeSetup(budget=80)
        result = setup.optimize(METHODS[name](), seed=seed)
        history = [(e.split, e.template.id, e.scores) for e in setup.evaluator.history]
        return result.template, result.val_score, history, setup.budget.spent

    assert trace(5) == trace(5)


@pytest.mark.parametrize("name", METHODS)
def test_budget_too_small_for_validation(name):
    setup = FakeSetup(budget=4, val=6)
    with pytest.raises(ConfigError, match="budget too small"):
        setup.optimize(METHODS[name]())
    assert setup.calls == 0


@pytest.mark.parametrize(
    ("opt", "setting"),
    [
        (DSPyBootstrap(eval_size=0), "eval_size"),
        (DSPyBootstrap(num_candidate_programs=-1), "num_candidate_programs"),
        (DSPyBootstrap(max_bootstrapped_demos=1.5), "max_bootstrapped_demos"),
        (DSPyMIPRO(auto="huge"), "auto"),
        (DSPyMIPRO(num_trials=0), "num_trials"),
        (DSPyMIPRO(metric_threshold="high"), "metric_threshold"),
    ],
)
def test_bad_settings_are_named(opt, setting):
    with pytest.raises(ConfigError, match=setting):
        FakeSetup(budget=60).optimize(opt)


def test_budget_mappings():
    boot = DSPyBootstrap(max_bootstrapped_demos=4)
    assert boot.candidates(31, n_eval=6, n_pool=6) == 0  # under 4E + 2D = 32: BootstrapFewShot
    assert boot.candidates(32, n_eval=6, n_pool=6) == 1
    assert boot.candidates(1000, n_eval=6, n_pool=6) == 16
    assert boot.candidates(math.inf, n_eval=6, n_pool=6) == 16
    assert DSPyBootstrap(num_candidate_programs=3).candidates(10, 6, 6) == 3

    mipro = DSPyMIPRO(max_bootstrapped_demos=4)
    assert mipro.plan(math.inf, 8, 8) == {"auto": "light"}
    assert mipro.plan(1000, 8, 8) == {"auto": "heavy"}
    assert mipro.plan(200, 8, 8) == {"auto": "medium"}
    assert mipro.plan(120, 8, 8) == {"auto": "light"}
    assert mipro.plan(41, 8, 8) == {"auto": None, "num_candidates": 3, "num_trials": 3}
    assert mipro.plan(5, 8, 8)["num_trials"] == 1
    assert DSPyMIPRO(auto="heavy").plan(10, 8, 8) == {"auto": "heavy"}
    assert DSPyMIPRO(num_trials=7).plan(10, 8, 8) == {
        "auto": None, "num_candidates": 6, "num_trials": 7
    }


def test_small_budget_runs_plain_bootstrap():
    setup = FakeSetup(budget=30, train=8, val=3)
    result = setup.optimize(DSPyBootstrap())
    train = [e for e in setup.evaluator.history if e.split == "train"]
    assert train and {e.meta["dspy"] for e in train} == {"BootstrapFewShot"}
    assert setup.calls == setup.budget.spent <= 30 and result.stopped == "finished"


@pytest.mark.embedded
def test_dspy_bootstrap_on_the_embedded_model(tmp_path, embedded_cache):
    from promptopt.runs import run

    url = f"sqlite:///{tmp_path}/d.db"
    result = run("dspy-bootstrap", budget=24, train=4, val=3, test=3, scorer="minilm",
                 storage=url, study="d", cache_dir=embedded_cache)
    assert result.budget_spent <= 24
    assert 0.0 <= result.test_score <= 1.0 and result.template.instruction.strip()
    trials = optuna.load_study(study_name="d", storage=url).trials
    assert len(trials) == result.trials >= 2
    assert any(t.user_attrs["split"] == "train" for t in trials)


def _gepa_reply(instruction):
    def reply(prompt, params):
        if "new_instruction" in prompt:  # DSPy GEPA's reflection request
            return f'{{"new_instruction": "{instruction}"}}'
        return "Rewrite this text formally."
    return reply


def test_dspy_gepa_reflects_with_feedback_within_the_budget():
    from promptopt.optimizers import DSPyGEPA

    setup = FakeSetup(budget=120, replies=_gepa_reply("Name the change as one short order."))
    result = setup.optimize(DSPyGEPA(), seed=0)
    assert setup.calls == setup.budget.spent <= 120
    reflections = [p for p in setup.fake.prompts() if "new_instruction" in p]
    assert reflections
    assert "True prompt:" in reflections[0] and "missed:" in reflections[0]  # Task.feedback
    train = [e for e in setup.evaluator.history if e.split == "train"]
    assert "Name the change as one short order." in {e.template.instruction for e in train}
    assert all(e.meta["dspy"] == "GEPA" for e in train)
    assert result.template.instruction.strip()


def test_dspy_gepa_never_runs_a_rejected_instruction():
    from promptopt.optimizers import DSPyGEPA

    setup = FakeSetup(budget=100, replies=_gepa_reply("Use {bogus} here."))
    result = setup.optimize(DSPyGEPA(), seed=0)
    assert result.rejected.get("invalid for task", 0) >= 1
    task_prompts = [p for p in setup.fake.prompts() if "new_instruction" not in p]
    assert task_prompts and not any("{bogus}" in p for p in task_prompts)
    a = FakeSetup(budget=100, replies=_gepa_reply("Say it.")).optimize(DSPyGEPA(), seed=4)
    b = FakeSetup(budget=100, replies=_gepa_reply("Say it.")).optimize(DSPyGEPA(), seed=4)
    assert a.template == b.template and a.val_score == b.val_score
