"""The contract every registered optimizer passes, on the fake LLM and scorer."""

from __future__ import annotations

import json

import pytest

import promptopt.optimizers  # noqa: F401  (registers every method)
from promptopt.errors import ConfigError
from promptopt.registry import optimizers
from promptopt.testing import FakeSetup

METHODS = optimizers.names()
BUDGET = 60


def _make(name: str):
    return optimizers.get(name)()


@pytest.mark.parametrize("name", METHODS)
def test_respects_budget_exactly(name):
    setup = FakeSetup(budget=BUDGET)
    setup.optimize(_make(name))
    assert setup.budget.spent <= BUDGET
    assert setup.calls == setup.budget.spent  # no cache: every charged request reached the LLM


@pytest.mark.parametrize("name", METHODS)
def test_same_seed_same_result(name):
    first = FakeSetup(budget=BUDGET).optimize(_make(name), seed=3)
    second = FakeSetup(budget=BUDGET).optimize(_make(name), seed=3)
    assert first.template == second.template
    assert first.val_score == second.val_score


@pytest.mark.parametrize("name", METHODS)
def test_settings_serialize_and_roundtrip(name):
    opt = _make(name)
    params = opt.get_params()
    assert json.loads(json.dumps(params)) == params
    clone = optimizers.get(name)(**params)
    assert clone.get_params() == params


@pytest.mark.parametrize("name", METHODS)
def test_result_score_is_validation_score_of_returned_template(name):
    setup = FakeSetup(budget=BUDGET)
    result = setup.optimize(_make(name))
    val_evals = [
        e for e in setup.evaluator.history
        if e.split == "val" and e.template.id == result.template.id
    ]
    assert val_evals, "the returned template was never scored on the validation split"
    assert val_evals[-1].n == len(setup.task.examples("val"))
    assert result.val_score == pytest.approx(val_evals[-1].score)


@pytest.mark.parametrize("name", METHODS)
def test_rejected_proposals_are_never_evaluated(name):
    # A proposer that only ever says the same useless things: empty, huge, or the start.
    def junk(prompt, params):
        if "<INS>" in prompt or "instruction" in prompt.lower():
            return ["<INS></INS>", "<INS>" + "x" * 5000 + "</INS>", "<INS>{bogus}</INS>"][
                params.get("seed", 0) % 3
            ]
        return "Rewrite this text."

    setup = FakeSetup(budget=BUDGET, replies=junk)
    result = setup.optimize(_make(name))
    for ev in setup.evaluator.history:
        text = ev.template.instruction
        assert text.strip() and len(text) < 5000 and "{bogus}" not in text
    assert result.template.instruction.strip()


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("budget", [18, 20, 30])  # 3, 3 1/3 and 5 validation evaluations
def test_a_small_budget_still_validates_a_candidate_the_search_found(name, budget):
    # Holding back only half the budget (9 or 10 calls here) would leave room for the
    # start's validation alone, returning the start whatever the search found.
    setup = FakeSetup(budget=budget, val=6)
    result = setup.optimize(_make(name))
    history = setup.evaluator.history
    start = result.start_template.id
    found = {e.template.id for e in history if e.split == "train" and not e.failed} - {start}
    validated = {e.template.id for e in history if e.split == "val"} - {start}
    assert setup.budget.spent <= budget
    if found:
        assert validated, f"{len(found)} candidates, none scored on validation"
    if name == "random" and budget == 30:  # no proposer calls: room for one candidate
        assert found


@pytest.mark.parametrize("name", METHODS)
def test_budget_too_small_for_validation_is_a_clear_error(name):
    setup = FakeSetup(budget=3, val=6)
    with pytest.raises(ConfigError, match="budget too small"):
        setup.optimize(_make(name))


@pytest.mark.parametrize("name", METHODS)
def test_rerun_with_the_same_seed_replays_from_the_cache(name, tmp_path):
    first = FakeSetup(budget=BUDGET, cache_dir=str(tmp_path), fake_name=f"replay-{name}")
    r1 = first.optimize(_make(name), seed=1)
    second = FakeSetup(budget=BUDGET, cache_dir=str(tmp_path), fake_name=f"replay-{name}")
    r2 = second.optimize(_make(name), seed=1)
    assert second.calls == 0
    assert r2.template == r1.template and r2.val_score == r1.val_score


@pytest.mark.parametrize("name", METHODS)
def test_interrupted_run_resumes_from_the_cache_paying_only_the_rest(name, tmp_path):
    from promptopt.errors import LLMError
    from promptopt.testing import default_reply

    # auto's default field at this budget ends with tpe alone, which asks no proposer:
    # the outage would only fail evaluations, which a run tolerates (max_errors).
    settings = {"methods": "opro,ape"} if name == "auto" else {}

    def make(name):
        return optimizers.get(name)(**settings)

    # Count with a cache too: a run may ask the same request twice, paid only once.
    full_setup = FakeSetup(budget=BUDGET, cache_dir=str(tmp_path / "full"))
    full = full_setup.optimize(make(name), seed=2)
    total = full_setup.calls
    if total < 4:
        pytest.skip(f"{name} makes too few LLM calls to interrupt")
    dies_at = total // 2
    seen = {"n": 0}

    def outage(prompt, params):
        seen["n"] += 1
        if seen["n"] >= dies_at:
            raise LLMError("provider outage")
        return default_reply(prompt, params)

    fake_name = f"outage-{name}"
    crashed = FakeSetup(budget=BUDGET, cache_dir=str(tmp_path), replies=outage,
                        fake_name=fake_name)
    with pytest.raises(LLMError):
        crashed.optimize(make(name), seed=2)
    resumed = FakeSetup(budget=BUDGET, cache_dir=str(tmp_path), fake_name=fake_name)
    result = resumed.optimize(make(name), seed=2)
    assert resumed.calls == total - (dies_at - 1)
    assert result.template == full.template and result.val_score == full.val_score
