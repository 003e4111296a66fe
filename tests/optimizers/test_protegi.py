"""ProTeGi mechanics (errors, textual gradients, edits, bandits), on the fake LLM and scorer."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import pytest

from promptopt.errors import ConfigError
from promptopt.evaluator import Evaluation
from promptopt.optimizers import ProTeGi
from promptopt.optimizers._protegi import between, lowest_scoring, successive_rejects, ucb_select
from promptopt.template import Template
from promptopt.testing import FakeSetup

GRADIENTS = ("The prompt never mentions tone.", "It asks for too many words.")


def _scripted_proposer():
    """Two gradients per gradient call; always-new edits and paraphrases."""
    counter = itertools.count(1)

    def reply(prompt, params):
        n = next(counter)
        if "reasons why" in prompt:
            return f"{GRADIENTS[0]}<END>\n<START>{GRADIENTS[1]}<END>"
        if "improved prompts" in prompt:
            return f"Name the change in tone, edit {n}.<END>"
        return f"<INS>State the tone change, variant {n}.</INS>"

    return reply


def _pulls(rewards):
    counts: Counter[int] = Counter()

    def pull(i):
        counts[i] += 1
        return rewards[i]

    return pull, counts


# --- pure pieces -----------------------------------------------------------------------


def test_lowest_scoring_are_the_errors():
    ev = Evaluation(
        template=Template("x"),
        split="train",
        example_ids=("a", "b", "c", "d"),
        predictions=("p",) * 4,
        scores=(0.7, 0.1, 0.9, 0.1),
        scorer="test",
    )
    assert lowest_scoring(ev, 2) == [1, 3]
    assert lowest_scoring(ev, 3) == [1, 3, 0]


def test_between_reads_start_end_items():
    assert between("one<END>\n<START>two<END>") == ["one", "two"]
    assert between("<START>only one, unclosed\nnoise") == ["only one, unclosed"]
    assert between("") == []


def test_ucb_pulls_every_arm_then_favours_the_best():
    pull, counts = _pulls([0.1, 0.9, 0.5])
    assert ucb_select(3, pull, k=2, pulls=30, c=0.2) == [1, 2]
    assert min(counts.values()) >= 1 and sum(counts.values()) == 30
    assert counts[1] == max(counts.values())


def test_ucb_rule_with_no_exploration_is_greedy():
    pull, counts = _pulls([0.3, 0.6, 0.2])
    assert ucb_select(3, pull, k=1, pulls=10, c=0.0) == [1]
    assert counts == {0: 1, 1: 8, 2: 1}


def test_ucb_explores_an_arm_with_few_pulls():
    # After one pull each, with c=1 the bonus sqrt(ln t / n) decides between close arms.
    pull, counts = _pulls([0.50, 0.55])
    ucb_select(2, pull, k=1, pulls=6, c=1.0)
    assert counts[0] >= 2  # the worse arm is revisited because its bonus grows


def test_successive_rejects_follows_its_schedule():
    pull, counts = _pulls([0.2, 0.8, 0.5, 0.1])
    assert successive_rejects(4, pull, k=1, pulls=20) == [1]
    logbar = 0.5 + 1 / 2 + 1 / 3 + 1 / 4
    phase = [math.ceil(16 / (logbar * (5 - j))) for j in (1, 2, 3)]
    # arm 3 rejected after phase 1, arm 0 after phase 2, arm 2 after phase 3
    assert counts == {3: phase[0], 0: phase[1], 2: phase[2], 1: phase[2]}


def test_successive_rejects_keeps_k_and_pulls_each_at_least_once():
    pull, counts = _pulls([0.4, 0.3, 0.9])
    assert successive_rejects(3, pull, k=2, pulls=2) == [2, 0]
    assert set(counts) == {0, 1, 2}
    pull, counts = _pulls([0.4, 0.9])
    assert successive_rejects(2, pull, k=4, pulls=8) == [1, 0]
    assert counts == {0: 1, 1: 1}


# --- runs ------------------------------------------------------------------------------


def test_errors_shown_to_the_proposer_are_the_lowest_scoring_examples():
    good: dict[str, str] = {}

    def recovery(prompt, params):  # exact answers for some examples, junk for the rest
        return next((t for o, t in good.items() if o in prompt), "zzz qqq")

    setup = FakeSetup(budget=60, replies=recovery, proposer_replies=_scripted_proposer())
    train = setup.task.examples("train")
    for ex in train[::2]:
        good[ex.inputs["original_text"][:40]] = ex.target
    setup.optimize(ProTeGi(rounds=1, minibatch_size=6, errors_per_gradient=2))
    first = next(e for e in setup.evaluator.history if e.split == "train")
    by_id = {ex.id: ex for ex in train}
    gradient_prompt = next(p for p in setup.proposer_fake.prompts() if "reasons why" in p)
    worst = [by_id[first.example_ids[i]] for i in lowest_scoring(first, 2)]
    best = by_id[first.example_ids[max(range(first.n), key=lambda i: first.scores[i])]]
    for ex in worst:
        assert setup.task.format_example(ex) in gradient_prompt
    assert setup.task.format_example(best) not in gradient_prompt
    assert gradient_prompt.rstrip().endswith("<START>")


@pytest.mark.parametrize("selector", ["ucb", "sr"])
def test_gradients_edits_and_paraphrases_are_recorded(selector):
    setup = FakeSetup(budget=150, proposer_replies=_scripted_proposer())
    opt = ProTeGi(rounds=2, selector=selector, num_gradients=2, mc_samples=1)
    setup.optimize(opt)
    train = [e for e in setup.evaluator.history if e.split == "train"]
    edits = [e for e in train if e.meta.get("kind") == "edit"]
    paras = [e for e in train if e.meta.get("kind") == "paraphrase"]
    assert edits and paras
    known = {e.template.id: e for e in train}
    for ev in edits + paras:
        assert ev.meta["gradient"] in GRADIENTS and ev.meta["round"] >= 1
        assert len(ev.parents) == 1
    edit_ids = {e.template.id for e in edits}
    for ev in paras:
        assert ev.parents[0] in edit_ids
        assert known[ev.parents[0]].meta["gradient"] == ev.meta["gradient"]
    edit_prompts = [p for p in setup.proposer_fake.prompts() if "improved prompts" in p]
    assert {g for g in GRADIENTS if any(g in p for p in edit_prompts)} == set(GRADIENTS)
    assert 1 <= len(opt.beam_) <= opt.beam_size


def test_weak_proposer_still_gives_a_valid_result_with_a_note():
    setup = FakeSetup(budget=80, proposer_replies=lambda prompt, params: "")
    result = setup.optimize(ProTeGi())
    assert result.template == setup.task.start_template()
    assert result.notes and "nothing usable" in result.notes[0]
    assert result.rejected.get("no gradient in answer", 0) > 0


@pytest.mark.parametrize("selector", ["ucb", "sr"])
@pytest.mark.parametrize("budget", [20, 45, 110])
def test_budget_is_respected(selector, budget):
    setup = FakeSetup(budget=budget, proposer_replies=_scripted_proposer())
    setup.optimize(ProTeGi(selector=selector))
    assert setup.budget.spent <= budget
    assert setup.calls == setup.budget.spent


def test_bad_settings_are_reported_by_name():
    with pytest.raises(ConfigError, match="selector"):
        FakeSetup().optimize(ProTeGi(selector="greedy"))
    with pytest.raises(ConfigError, match="beam_size"):
        FakeSetup().optimize(ProTeGi(beam_size=0))


def test_bandits_count_initial_rewards_as_pulls():
    pull, counts = _pulls([0.1, 0.9, 0.5])
    assert ucb_select(3, pull, k=1, pulls=1, c=0.0, initial=[[0.1], [], [0.5]]) == [1]
    assert counts == {1: 1}  # the only unpulled arm
    pull, counts = _pulls([0.1, 0.9, 0.5])
    assert successive_rejects(3, pull, k=3, pulls=5, initial=[[0.1], [], [0.5]]) == [1, 2, 0]
    assert counts == {1: 1}
    with pytest.raises(ValueError):
        ucb_select(2, pull, k=1, pulls=1, initial=[[0.1]])
