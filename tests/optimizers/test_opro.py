"""OPRO mechanics on the fake LLM: meta-prompt, sampling, lineage, budget, weak proposers."""

from __future__ import annotations

import pytest

from promptopt.errors import ConfigError
from promptopt.optimizers import OPRO
from promptopt.testing import FakeSetup, default_reply

META_END = "New instruction: <INS>"


def _meta_calls(fake):
    return [c for c in fake.calls if c["prompt"].endswith(META_END)]


def test_meta_prompt_sorted_ascending_capped_and_scaled():
    opro = OPRO(max_history=3)
    history = [("alpha", 0.5), ("beta", 0.1), ("gamma", 0.9), ("delta", 0.3), ("eps", 0.704)]
    prompt = opro.build_meta_prompt(history, ["Original text: x\nRewrite prompt: y"])
    names = ("alpha", "beta", "gamma", "delta", "eps")
    shown = [text for text in names if f"<INS>{text}</INS>" in prompt]
    assert sorted(shown) == ["alpha", "eps", "gamma"]  # capped to the 3 best
    positions = [prompt.index(f"<INS>{t}</INS>") for t in ("alpha", "eps", "gamma")]
    assert positions == sorted(positions)  # ascending: best last
    assert "<INS>alpha</INS>\nScore: 50" in prompt
    assert "<INS>eps</INS>\nScore: 70" in prompt
    assert "<INS>gamma</INS>\nScore: 90" in prompt
    assert "0 to 100" in prompt
    # Exemplars first, then the trajectory right before the request.
    assert prompt.index("Example 1:\n<INS>\nOriginal text: x") < prompt.index("Score: 50")
    assert prompt.endswith(META_END)


def test_trajectory_keeps_scoring_order_on_ties():
    opro = OPRO(max_history=2)
    assert opro.trajectory([("a", 0.2), ("b", 0.2), ("c", 0.1)]) == [("a", 0.2), ("b", 0.2)]


def test_proposals_per_step_sampled_at_temperature():
    setup = FakeSetup(budget=None, proposer_replies=default_reply)
    opro = OPRO(max_steps=3, proposals_per_step=3, temperature=1.0, minibatch_size=2)
    setup.optimize(opro)
    calls = _meta_calls(setup.proposer_fake)
    assert len(calls) == 9  # 3 steps x 3 samples
    assert all(c["params"]["temperature"] == 1.0 for c in calls)
    assert len({c["params"]["seed"] for c in calls}) == 9  # distinct seeded samples
    # Each step's meta-prompt shows the instructions scored in earlier steps.
    step1 = [e for e in setup.evaluator.history if e.meta.get("step") == 1]
    assert step1
    assert all(f"<INS>{e.template.instruction}</INS>" in calls[3]["prompt"] for e in step1)
    start = setup.task.start_template().instruction
    assert f"<INS>{start}</INS>\nScore: " in calls[0]["prompt"]


@pytest.mark.parametrize("show", [True, False])
def test_exemplars_show_the_best_instructions_answers_beside_the_correct_ones(show):
    setup = FakeSetup(budget=None, replies=lambda p, params: "Make it a limerick.",
                      proposer_replies=default_reply)
    setup.optimize(OPRO(max_steps=2, proposals_per_step=2, minibatch_size=3, show_answers=show,
                        opening=False))
    prompt = _meta_calls(setup.proposer_fake)[0]["prompt"]
    ids = set(setup.evaluator.history[0].example_ids)  # the start on the minibatch
    batch = {e.target for e in setup.task.examples("train") if e.id in ids}
    shown = [t for t in {e.target for e in setup.task.examples("train")}
             if f"Rewrite prompt: {t}" in prompt]
    assert shown
    if show:  # minibatch examples, each with the start's answer and its score
        assert set(shown) <= batch
        assert prompt.count("Answer of the best instruction so far: Make it a limerick.") == 2
        assert prompt.count("\nIts score: ") == 2
    else:
        assert "Answer of the best instruction so far" not in prompt


def test_lineage_and_fixed_minibatch():
    setup = FakeSetup(budget=80)
    setup.optimize(OPRO(minibatch_size=3))
    train = [e for e in setup.evaluator.history if e.split == "train"]
    # the start opened with "Rewrite", the first word of most of the sample's answers
    start_id = setup.task.start_template().replace(answer_prefix="Rewrite").id
    assert train[0].template.id == start_id and train[0].meta == {"step": 0}
    assert len(train) > 3
    assert len({e.example_ids for e in train}) == 1 and train[0].n == 3
    for ev in train[1:]:
        assert ev.meta["step"] >= 1
        assert start_id in ev.parents


def test_history_is_capped_in_every_meta_prompt():
    setup = FakeSetup(budget=None, proposer_replies=default_reply)
    setup.optimize(OPRO(max_steps=4, proposals_per_step=3, max_history=4, minibatch_size=1))
    last = _meta_calls(setup.proposer_fake)[-1]["prompt"]
    assert last.count("\nScore: ") == 4


def test_weak_proposer_returns_start_with_note():
    setup = FakeSetup(budget=60, proposer_replies=lambda prompt, params: "")
    result = setup.optimize(OPRO())
    assert result.template == setup.task.start_template()
    assert result.notes and "nothing usable" in result.notes[0]
    assert setup.budget.spent <= 60
    # Nothing evaluated but the start and the base it opened ("Rewrite", the sample's
    # most common first word).
    base = result.template.replace(answer_prefix="Rewrite")
    assert {e.template.id for e in setup.evaluator.history} == {result.template.id, base.id}


@pytest.mark.parametrize("budget", [30, 47, 100])
def test_respects_budget(budget):
    setup = FakeSetup(budget=budget)
    result = setup.optimize(OPRO())
    assert setup.budget.spent <= budget
    assert result.stopped == "budget"
    assert result.evaluations > 1


def test_max_steps_ends_the_search():
    setup = FakeSetup(budget=None, proposer_replies=default_reply)
    result = setup.optimize(OPRO(max_steps=1, proposals_per_step=2))
    assert result.stopped == "finished"
    assert len(_meta_calls(setup.proposer_fake)) == 2


@pytest.mark.parametrize(
    "settings",
    [
        {"max_steps": 0},
        {"proposals_per_step": 0},
        {"temperature": -1.0},
        {"max_history": 0},
        {"num_exemplars": -1},
        {"minibatch_size": 0},
    ],
)
def test_bad_settings_are_rejected(settings):
    with pytest.raises(ConfigError, match=next(iter(settings))):
        FakeSetup(budget=40).optimize(OPRO(**settings))
