"""APE mechanics on the fake LLM: generation, UCB selection, resampling, lineage, budget."""

from __future__ import annotations

import math

import pytest

from promptopt.errors import ConfigError
from promptopt.optimizers import APE, ucb_pick
from promptopt.search import read_proposal
from promptopt.testing import FakeSetup, default_reply

GEN_END = "The instruction was <INS>"
RESAMPLE_START = "Generate a variation of the following instruction"


def test_ucb_pick_tries_untried_arms_first():
    assert ucb_pick([(0.9, 3), (0.1, 0), (0.5, 0)], c=1.0) == 1


def test_ucb_pick_follows_the_formula():
    stats = [(0.50, 10), (0.40, 1), (0.60, 20), (0.45, 4)]
    total = sum(n for _, n in stats)
    for c in (0.0, 0.05, 0.1, 0.3, 1.0):
        values = [m + c * math.sqrt(math.log(total) / n) for m, n in stats]
        assert ucb_pick(stats, c) == values.index(max(values))
    assert ucb_pick(stats, 0.0) == 2  # greedy: best mean
    assert ucb_pick(stats, 1.0) == 1  # exploring: the rarely pulled arm


def test_ucb_pick_gives_known_arms_no_bonus():
    # Arm 0 is known exactly; arm 1's upper bound is higher although its mean is lower.
    assert ucb_pick([(0.5, math.inf), (0.45, 2)], c=0.1, total=8) == 1
    assert ucb_pick([(0.5, math.inf), (0.2, 2)], c=0.1, total=8) == 0


def test_tidy_drops_leading_to():
    assert read_proposal(APE._tidy(" to rewrite it as a poem.</INS> extra")) == (
        "Rewrite it as a poem."
    )
    assert read_proposal(APE._tidy("<INS>Today, be formal.</INS>")) == "Today, be formal."
    assert read_proposal(APE._tidy("\nInput:\nOriginal text: hi"), echo_labels=["Input:"]) == ""


def test_generation_prompts_show_demos():
    setup = FakeSetup(budget=None, proposer_replies=default_reply, proposer_chat=False)
    setup.optimize(APE(num_prompts=3, demos_per_prompt=2, mc_rounds=0))
    calls = [c for c in setup.proposer_fake.calls if c["prompt"].endswith(GEN_END)]
    assert len(calls) == 3
    targets = {e.target for e in setup.task.examples("train")}
    for call in calls:
        assert call["prompt"].startswith("I gave a friend an instruction and 2 inputs")
        assert call["prompt"].count("\nOutput: ") == 2
        assert sum(f"Output: {t}" in call["prompt"] for t in targets) == 2
        assert call["params"]["temperature"] == 0.9


def test_a_chat_proposer_is_told_the_task_and_asked_for_the_instruction():
    def proposer(prompt, params):
        return "The instruction was: <INS>Name the change in a few words.</INS>"

    setup = FakeSetup(budget=None, proposer_replies=proposer)  # a chat model
    setup.optimize(APE(num_prompts=2, demos_per_prompt=2, mc_rounds=0))
    [first, *_] = setup.proposer_fake.calls
    assert first["prompt"].startswith("My friend reads the instruction")  # the task's brief
    assert first["prompt"].endswith("Reply with the instruction only, between <INS> and "
                                    "</INS>.")
    assert "The instruction was <INS>" not in first["prompt"]
    assert any(e.template.instruction == "Name the change in a few words."
               for e in setup.evaluator.history)
    setup = FakeSetup(budget=None, proposer_replies=proposer)
    setup.optimize(APE(num_prompts=2, demos_per_prompt=2, mc_rounds=0, ask_chat=False))
    assert setup.proposer_fake.calls[0]["prompt"].endswith("The instruction was <INS>")


def _scripted_setup(budget=None):
    """Generation proposes 'Instruction <seed>'; one ('MAGIC') recovers targets exactly."""
    by_text: dict[str, str] = {}

    def recovery(prompt, params):
        if prompt.startswith("MAGIC"):
            return next((t for key, t in by_text.items() if key in prompt), "x")
        return "Rewrite this text."

    def proposer(prompt, params):
        if prompt.endswith(GEN_END):
            seed = params["seed"]
            return "MAGIC instruction.</INS>" if seed % 1000 == 2 else f" to name it {seed}.</INS>"
        return f"Variant {params['seed']}.</INS>"

    setup = FakeSetup(budget=budget, replies=recovery, proposer_replies=proposer,
                      proposer_chat=False)  # the paper's prompt, for a completion model
    for split in ("train", "val", "test"):
        for e in setup.task.examples(split):
            by_text[e.inputs["original_text"][:60]] = e.target
    return setup


def test_greedy_bandit_pulls_the_best_arm_again():
    setup = _scripted_setup()
    setup.optimize(APE(num_prompts=4, ucb_c=0.0, pulls_per_round=7, mc_rounds=0, minibatch_size=3))
    pulls = [e.template.instruction for e in setup.evaluator.history if e.split == "train"]
    assert len(pulls) == 7
    assert len(set(pulls[:5])) == 5  # start + 4 generated: each tried once first
    assert pulls[5:] == ["MAGIC instruction.", "MAGIC instruction."]


def test_resampling_prompts_contain_the_top_candidates_and_record_lineage():
    setup = _scripted_setup()
    result = setup.optimize(APE(num_prompts=4, mc_rounds=2, mc_top_k=2, mc_variants=2))
    calls = setup.proposer_fake.calls
    resample = [c["prompt"] for c in calls if c["prompt"].startswith(RESAMPLE_START)]
    assert resample and all(p.endswith("Output: <INS>") for p in resample)
    assert "Input: MAGIC instruction.\n" in resample[0]  # the best candidate is resampled first
    assert len(resample) == 8  # 2 rounds x top 2 x 2 samples
    assert resample[0] == resample[1] and resample[2] != resample[0]
    assert "Input: MAGIC instruction.\n" in resample[4]  # still the best in round 2
    history = [e for e in setup.evaluator.history if e.split == "train"]
    by_id = {e.template.id: e.template.instruction for e in history}
    generated = [e for e in history if e.meta["stage"] == "generate"]
    variants = [e for e in history if e.meta["stage"] == "resample"]
    assert generated and all(e.parents == () for e in generated)
    assert variants and all(len(e.parents) == 1 for e in variants)
    magic_children = [e for e in variants if by_id.get(e.parents[0]) == "MAGIC instruction."]
    assert magic_children and magic_children[0].meta["round"] == 1
    assert {e.meta["round"] for e in variants} == {1, 2}
    assert result.template.instruction == "MAGIC instruction."


def test_instruction_was_to_is_tidied():
    setup = _scripted_setup()
    setup.optimize(APE(num_prompts=2, mc_rounds=0))
    texts = {e.template.instruction for e in setup.evaluator.history}
    assert any(t.startswith("Name it ") for t in texts)  # "to name it ..." tidied


def test_weak_proposer_returns_start_with_note():
    setup = FakeSetup(budget=60, proposer_replies=lambda prompt, params: "\n\n")
    result = setup.optimize(APE())
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
    result = setup.optimize(APE())
    assert setup.budget.spent <= budget
    assert result.stopped == "budget"
    assert result.evaluations > 1


@pytest.mark.parametrize(
    "settings",
    [
        {"num_prompts": 0},
        {"demos_per_prompt": 0},
        {"temperature": 3.0},
        {"minibatch_size": 0},
        {"ucb_c": -0.1},
        {"pulls_per_round": 0},
        {"mc_rounds": -1},
        {"mc_top_k": 0},
        {"mc_variants": 0},
    ],
)
def test_bad_settings_are_rejected(settings):
    with pytest.raises(ConfigError, match=next(iter(settings))):
        FakeSetup(budget=40).optimize(APE(**settings))
