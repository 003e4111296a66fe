"""EvoPrompt (GA and DE) mechanics, on the fake LLM and scorer."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest

from promptopt.errors import ConfigError
from promptopt.evaluator import Evaluation
from promptopt.optimizers import EvoPromptDE, EvoPromptGA
from promptopt.optimizers._evoprompt import (
    EVOLUTION_MAX_TOKENS,
    TAG,
    Member,
    de_should_replace,
    elitist,
    final_block,
    roulette_select,
)
from promptopt.search import SearchContext
from promptopt.template import Template
from promptopt.testing import FakeSetup


def _evaluation(scores, ids=None, text="x"):
    ids = ids or tuple(f"e{i}" for i in range(len(scores)))
    return Evaluation(
        template=Template(text),
        split="train",
        example_ids=tuple(ids),
        predictions=tuple("p" for _ in scores),
        scores=tuple(scores),
        scorer="test",
    )


def _numbered(stem):
    """Proposer replies that are always new: '<stem> 1.', '<stem> 2.', ..."""
    counter = itertools.count(1)
    return lambda prompt, params: f"{stem} number {next(counter)}.</prompt>"


# --- roulette wheel, elitism, DE survivor rule -------------------------------------------


def test_roulette_favours_high_scores():
    rng = random.Random(0)
    counts = Counter(roulette_select([0.8, 0.2, 0.0], 1, rng)[0] for _ in range(4000))
    assert counts[2] == 0
    assert 3.0 < counts[0] / counts[1] < 5.0


def test_roulette_all_zero_is_uniform_and_without_replacement_is_distinct():
    rng = random.Random(1)
    counts = Counter(roulette_select([0.0, 0.0, 0.0], 1, rng)[0] for _ in range(3000))
    assert all(900 < counts[i] < 1100 for i in range(3))
    for _ in range(200):
        first, second = roulette_select([0.9, 0.0, 0.1], 2, rng)
        assert first != second
    assert roulette_select([0.5], 2, rng) == [0, 0]  # a population of one pairs with itself


def test_roulette_is_deterministic_given_the_rng():
    draw = [roulette_select([0.3, 0.5, 0.2, 0.9], 2, random.Random(7)) for _ in range(2)]
    assert draw[0] == draw[1]


def test_elitist_keeps_the_best_and_parents_on_ties():
    members = [
        Member(Template(f"t{i}"), _evaluation([s])) for i, s in enumerate([0.2, 0.5, 0.5, 0.9])
    ]
    kept = elitist(members, 2)
    assert [m.template.instruction for m in kept] == ["t3", "t1"]


def test_de_replaces_only_on_strict_improvement_on_the_same_examples():
    parent = _evaluation([0.4, 0.6])
    assert de_should_replace(parent, _evaluation([0.5, 0.6]))
    assert not de_should_replace(parent, _evaluation([0.6, 0.4]))  # a tie keeps the parent
    assert not de_should_replace(parent, _evaluation([0.1, 0.2]))
    with pytest.raises(ValueError):
        de_should_replace(parent, _evaluation([0.9, 0.9], ids=("a", "b")))


# --- GA runs ---------------------------------------------------------------------------


def test_ga_children_record_both_parents_and_the_population_is_elitist():
    setup = FakeSetup(budget=120, proposer_replies=_numbered("Rewrite the text as a"))
    opt = EvoPromptGA(population_size=3, generations=3)
    setup.optimize(opt)
    train = [e for e in setup.evaluator.history if e.split == "train"]
    assert [e.meta["op"] for e in train[:3]] == ["start", "init", "init"]
    children = [e for e in train if e.meta.get("op") == "ga"]
    assert children and {e.meta["generation"] for e in children} <= {1, 2, 3}
    seen: set[str] = set()
    for ev in train:
        if ev.meta["op"] == "ga":
            assert len(ev.parents) == 2 and len(set(ev.parents)) == 2
            assert set(ev.parents) <= seen  # parents were evaluated before their child
        seen.add(ev.template.id)
    # (mu + lambda) elitism: the final population is the best N ever evaluated.
    best = sorted((e.score for e in train), reverse=True)[:3]
    assert sorted((m.score for m in opt.population_), reverse=True) == best
    prompts = [p for p in setup.proposer_fake.prompts() if "Crossover" in p]
    assert prompts and all(p.rstrip().endswith("<prompt>") for p in prompts)
    assert all("Mutate the prompt generated in Step 1" in p for p in prompts)


# --- DE runs ---------------------------------------------------------------------------


def test_de_child_replaces_its_member_only_when_it_scores_higher():
    targets: dict[str, str] = {}

    def recovery(prompt, params):  # "GOOD" instructions recover the true prompt exactly
        if "GOOD" in prompt:
            return next((t for o, t in targets.items() if o in prompt), "zzz")
        return "zzz qqq"

    calls = itertools.count(1)

    def proposer(prompt, params):
        n = next(calls)
        if "Basic Prompt" in prompt:  # DE calls alternate better and no better children
            return f"{'GOOD' if n % 2 else 'Plain'} child {n}.</prompt>"
        return f"Variant {n}.</prompt>"

    setup = FakeSetup(budget=200, replies=recovery, proposer_replies=proposer)
    for ex in setup.task.examples("train"):
        targets[ex.inputs["original_text"][:40]] = ex.target
    opt = EvoPromptDE(population_size=4, generations=1)
    setup.optimize(opt)
    train = {e.template.id: e for e in setup.evaluator.history if e.split == "train"}
    children = [e for e in train.values() if e.meta.get("op") == "de"]
    assert len(children) == 4
    final = {m.template.id for m in opt.population_}
    for child in children:
        basic = train[child.parents[0]]  # the member the child competes with
        replaced = child.template.id in final
        assert replaced == (child.score > basic.score)
        assert replaced == ("GOOD" in child.template.instruction)
    assert len(opt.population_) == 4
    de_prompts = [p for p in setup.proposer_fake.prompts() if "Basic Prompt" in p]
    for step in (
        "1. Identify the different parts",
        "2. Randomly mutate",
        "3. Combine",
        "4. Cross over",
    ):
        assert all(step in p for p in de_prompts)


# --- both variants ---------------------------------------------------------------------


@pytest.mark.parametrize("cls", [EvoPromptGA, EvoPromptDE])
def test_weak_proposer_still_gives_a_valid_result_with_a_note(cls):
    setup = FakeSetup(budget=80, proposer_replies=lambda prompt, params: "")
    result = setup.optimize(cls())
    assert result.template == setup.task.start_template()
    assert result.notes and "nothing usable" in result.notes[0]
    assert result.rejected.get("no proposal in answer", 0) > 0
    assert setup.budget.spent <= 80


@pytest.mark.parametrize("cls", [EvoPromptGA, EvoPromptDE])
@pytest.mark.parametrize("budget", [25, 47, 90])
def test_budget_is_respected(cls, budget):
    setup = FakeSetup(budget=budget)
    result = setup.optimize(cls(population_size=3, minibatch_size=3))
    assert setup.budget.spent <= budget
    assert setup.calls == setup.budget.spent
    assert result.stopped in {"budget", "finished"}


@pytest.mark.parametrize("cls", [EvoPromptGA, EvoPromptDE])
def test_bad_settings_are_reported_by_name(cls):
    with pytest.raises(ConfigError, match="population_size"):
        FakeSetup().optimize(cls(population_size=1))
    with pytest.raises(ConfigError, match="temperature"):
        FakeSetup().optimize(cls(temperature=-1.0))


@pytest.mark.parametrize("cls", [EvoPromptGA, EvoPromptDE])
def test_an_evolution_answer_has_room_for_the_steps_and_the_final_prompt(cls):
    asked: list[int] = []

    def proposer(prompt: str, params: dict) -> str:
        asked.append(params["max_tokens"])
        return f"Make it formal, take {len(asked)}.</prompt>"

    FakeSetup(budget=40, proposer_replies=proposer).optimize(cls())
    assert asked and set(asked) == {EVOLUTION_MAX_TOKENS}
    asked.clear()
    FakeSetup(budget=40, proposer_replies=proposer).optimize(cls(max_tokens=90))
    assert asked and set(asked) == {90}
    with pytest.raises(ConfigError, match="max_tokens"):
        FakeSetup().optimize(cls(max_tokens=0))


def test_proposals_are_read_from_prompt_tags_the_meta_prompt_opened():
    setup = FakeSetup()
    start = setup.task.start_template()
    ctx = SearchContext(
        task=setup.task, evaluator=setup.evaluator, proposer=setup.proposer, start=start, seed=0
    )
    raw = [
        "Make it formal.</prompt>",  # continuation of the opened tag
        "\n\nFinal prompt: Make it a poem.\nStep 2: ...",  # label, no closing tag
        "<prompt>Make it a tweet.</prompt> and more",
        "",
    ]
    found = [t.instruction for t in ctx.accept_answers(raw, start, tag=TAG)]
    assert found == ["Make it formal.", "Make it a poem.", "Make it a tweet."]
    assert ctx.rejected["no proposal in answer"] == 1


def test_a_chat_proposers_final_prompt_is_read_past_its_echo_of_the_request():
    raw = ("1. Crossover: New prompt: Rewrite it plainly.\n2. Mutate it and generate a final "
           "prompt bracketed with <prompt> and </prompt>.\n\nFinal prompt: <prompt>Name the "
           "change in a short imperative sentence.</prompt>\nThis keeps ...")
    assert final_block(raw) == "<prompt>Name the change in a short imperative sentence.</prompt>"
    assert final_block("Make it formal.") == "Make it formal."  # no block: unchanged
    unclosed = ("2. Mutate it ... bracketed with <prompt> and </prompt>:\n   <prompt> Rewrite "
                "the text in a calm tone.")
    assert final_block(unclosed) == "<prompt> Rewrite the text in a calm tone."
    asked: list[dict] = []

    def proposer(prompt: str, params: dict) -> str:
        asked.append(params)
        return raw

    result = FakeSetup(budget=40, proposer_replies=proposer).optimize(EvoPromptGA())
    assert asked and all(p.get("stop") in (None, []) for p in asked)  # read whole
    setup = FakeSetup(budget=40, proposer_replies=proposer)
    setup.optimize(EvoPromptGA())
    evaluated = {e.template.instruction for e in setup.evaluator.history}
    assert "Name the change in a short imperative sentence." in evaluated
    assert "and" not in evaluated and result.rejected.get("no task content (fits any task)",
                                                          0) == 0
    asked.clear()  # a base model continues inside the opened tag: stopped at the closing one
    FakeSetup(budget=40, proposer_replies=proposer, proposer_chat=False).optimize(EvoPromptGA())
    assert asked and all(p.get("stop") == ["</prompt>"] for p in asked)
