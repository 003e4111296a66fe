"""The gepa method: the package's engine through promptopt's evaluator and proposer."""

from __future__ import annotations

import inspect
from types import SimpleNamespace
from typing import Any, cast

import pytest

from promptopt.errors import ConfigError
from promptopt.optimizers import GEPA
from promptopt.optimizers._gepa import PREFIX_PROMPT, first_prefix, read_fenced
from promptopt.search import SearchContext
from promptopt.testing import FakeSetup, default_reply

PLAN_B = "Use plan B: name the rewrite in the words of the true prompt."


def test_settings_default_to_the_packages_own():
    import gepa
    from gepa.api import optimize

    package = inspect.signature(gepa.optimize).parameters
    ours = inspect.signature(GEPA.__init__).parameters
    shared = [n for n in ours if n in package and n != "reflection_minibatch_size"]
    assert len(shared) >= 9
    for name in shared:
        assert ours[name].default == package[name].default, name
    # The package leaves reflection_minibatch_size at None and samples 3 then.
    assert package["reflection_minibatch_size"].default is None
    assert "minibatch_size=reflection_minibatch_size or 3" in inspect.getsource(optimize)
    assert ours["reflection_minibatch_size"].default == 3


def test_read_fenced():
    assert first_prefix("Make, Rewrite, Notice\nmore") == "Make"
    assert first_prefix("\nRewrite this text\n") == "Rewrite this text"
    assert first_prefix("Rewrite this, then that one here") == "Rewrite this, then that one here"
    assert read_fenced("Say it briefly.\n```") == ("Say it briefly.", True)
    assert read_fenced("```text\nSay it.\n```\nmore") == ("Say it.", True)
    assert read_fenced("Say it and then") == ("Say it and then", False)
    # a chat model's answer to a prompt that did not open the block
    chat = "Here is a better one:\n```\nSay it.\n```\nHope this helps."
    assert read_fenced(chat, opened=False) == ("Say it.", True)
    assert read_fenced(chat) == ("Here is a better one:", True)  # a base model's continuation
    assert read_fenced("Say it plainly.", opened=False) == ("Say it plainly.", False)
    assert read_fenced("```Rewrite```", opened=False) == ("Rewrite", True)  # one line
    assert read_fenced("They begin with:\n```Rewrite this```", opened=False) == (
        "Rewrite this", True)


def test_a_chat_proposer_is_asked_for_a_block_and_its_reply_to_the_asker_is_rejected():
    seen: list[tuple[str, Any]] = []
    answers = iter(["Certainly, I'd be happy to help you write a new instruction for the "
                    "assistant. Please provide the details of the task.",
                    "Here is the improved instruction:\n```\nName the change of tone in one "
                    "short sentence that starts with Rewrite.\n```\nI hope this helps!"])

    def proposer(prompt: str, params: dict) -> str:
        seen.append((prompt, params.get("stop")))
        return next(answers, "Name the rewrite in a few words, as a command.")

    setup = FakeSetup(budget=60, proposer_replies=proposer, proposer_chat=True)
    gepa_opt = GEPA(components=["instruction"])
    result = setup.optimize(gepa_opt, seed=0)
    assert len(seen) >= 2
    assert all(not p.endswith("```\n") and stop is None for p, stop in seen)
    assert "Reply with the whole new instruction only, inside ``` blocks." in seen[0][0]
    assert result.rejected.get("no task content (replies to the asker)") == 1
    wanted = "Name the change of tone in one short sentence that starts with Rewrite."
    assert any(wanted in p for p in setup.fake.prompts())  # evaluated by the task model


def _targets_by_text(setup: FakeSetup) -> dict[str, str]:
    """The first words of each example's original text -> its true prompt."""
    examples = [e for split in ("train", "val", "test") for e in setup.task.examples(split)]
    return {e.inputs["original_text"][:40]: e.target for e in examples}


@pytest.mark.parametrize("strategy", ["pareto", "current_best"])
def test_pareto_selection_keeps_a_candidate_best_on_one_example_only(strategy):
    setup = FakeSetup(budget=None, train=12, val=4)
    gepa_opt = GEPA(pareto_size=4, reflection_minibatch_size=2, max_metric_calls=60,
                    candidate_selection_strategy=strategy, components=["instruction"],
                    reflect_on="rest")  # plan B is accepted on the feedback examples
    ctx = SearchContext(task=setup.task, evaluator=setup.evaluator, proposer=setup.proposer,
                        start=setup.task.start_template(), seed=0)
    pareto, _ = gepa_opt.split(ctx)
    lone = pareto[0].inputs["original_text"][:40]  # plan B wins on this Pareto example only
    feedback_texts = {e.inputs["original_text"][:40] for e in ctx.train if e not in pareto}
    targets = _targets_by_text(setup)
    start = setup.task.start_template().instruction
    proposals = iter([PLAN_B] + [f"Try variant {i} of the rewrite." for i in range(1, 50)])

    def replies(prompt: str, params: dict) -> str:
        if "new instruction only" in prompt:
            return next(proposals) + "\n```"
        key = next((k for k in targets if k in prompt), None)
        if PLAN_B in prompt:
            return targets[key] if key == lone or key in feedback_texts else "zzz qqq"
        if key and start in prompt:  # the start: half right everywhere
            words = targets[key].split()
            return " ".join(words[: max(1, len(words) // 2)])
        return "Rewrite this text."

    setup = FakeSetup(budget=None, train=12, val=4, replies=replies)
    setup.optimize(gepa_opt, seed=0)
    result = gepa_opt.result_
    scores = {c["instruction"]: s for c, s in zip(result.candidates, result.val_aggregate_scores,
                                                   strict=True)}
    assert PLAN_B in scores and scores[PLAN_B] < scores[start]  # worse on average...
    front = [c["instruction"] for c in gepa_opt.pareto_front()]
    assert PLAN_B in front  # ...but best on one example: kept
    # and it is chosen as a parent again (its instruction is reflected on).
    parents = [p for p in gepa_opt.adapter_.prompts if f"```\n{PLAN_B}\n```" in p]
    assert bool(parents) == (strategy == "pareto")  # "current_best" never picks it


def _recording_proposer():
    """A proposer that answers each reflection with a new instruction, and its prompts."""
    seen: list[str] = []

    def proposer(prompt: str, params: dict) -> str:
        seen.append(prompt)
        return f"Name the rewrite in one short sentence, version {len(seen)}.\n```"

    return seen, proposer


def test_the_correct_answers_come_first_in_the_reflection_prompt():
    seen, proposer = _recording_proposer()
    setup = FakeSetup(budget=60, proposer_replies=proposer)
    setup.optimize(GEPA(components=["instruction"]), seed=0)
    assert seen
    first = seen[0]
    assert "quoting one of the correct answers above" in first
    truths = [e.target for e in setup.task.examples("train")]
    assert first.count("## Correct answer\n") == 3  # the reflection minibatch
    assert all(any(f"## Correct answer\n{t}\n" in section for t in truths)
               for section in first.split("# Example ")[1:])
    for section in first.split("# Example ")[1:]:
        order = [section.index(h) for h in ("## Correct answer", "## Assistant's answer",
                                            "## Score", "## Inputs")]
        assert order == sorted(order)
    assert "## Feedback" not in first  # the scorer gives no explanation of its own


def test_feedback_text_reaches_the_reflection_prompt():
    seen, proposer = _recording_proposer()
    setup = FakeSetup(budget=60, proposer_replies=proposer)
    setup.optimize(GEPA(reflection_style="feedback"), seed=0)
    assert seen
    first = seen[0]
    assert "## Feedback" in first and "True prompt:" in first and "Similarity:" in first
    assert "Content words of the true prompt the prediction missed:" in first
    truths = [e.target for e in setup.task.examples("train")]
    assert any(f"True prompt: {t}" in first for t in truths)


def test_a_custom_reflection_prompt_template_is_used_and_checked():
    seen, proposer = _recording_proposer()
    template = "Now: <curr_param>\nResults:\n<side_info>\nA better instruction:"
    setup = FakeSetup(budget=60, proposer_replies=proposer, proposer_chat=False)  # a base model
    setup.optimize(GEPA(reflection_prompt_template=template), seed=0)
    assert seen and all(p.startswith("Now: ") for p in seen)
    assert "## Correct answer" in seen[0] and "A better instruction:\n\n```\n" in seen[0]
    assert "I provided an assistant" not in seen[0]  # the package's own template
    with pytest.raises(ConfigError, match="reflection_prompt_template"):
        GEPA(reflection_prompt_template="no placeholders").validate()
    with pytest.raises(ConfigError, match="reflection_style"):
        GEPA(reflection_style="chat").validate()


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("", "empty"),
        ("{start}\n```", "echo of parent"),
        ("word " * 400, "truncated"),
        ("```", "empty"),
    ],
)
def test_unusable_reflections_are_counted_and_never_evaluated(answer, reason):
    start = FakeSetup().task.start_template().instruction
    text = answer.replace("{start}", start)
    setup = FakeSetup(budget=60, proposer_replies=lambda prompt, params: text)
    result = setup.optimize(GEPA(), seed=0)
    assert result.rejected.get(reason, 0) >= 1
    start = setup.task.start_template()
    base = start.replace(answer_prefix="Rewrite")  # the sample's answers' first word
    assert {e.template.id for e in setup.evaluator.history} == {start.id, base.id}


def test_each_child_records_its_parent():
    setup = FakeSetup(budget=80, proposer_replies=lambda p, params: (
        f"Say what changed, take {params.get('seed', 0)}.\n```"))
    setup.optimize(GEPA(), seed=1)
    start = setup.task.start_template()
    base = start.replace(answer_prefix="Rewrite")  # the seed candidate
    children = [e for e in setup.evaluator.history
                if e.split == "train" and e.template.id not in (start.id, base.id)]
    assert children
    known = {e.template.id for e in setup.evaluator.history}
    for ev in children:
        assert len(ev.parents) == 1 and ev.parents[0] in known


def test_default_reply_runs_are_deterministic_per_seed():
    a = FakeSetup(budget=70, replies=default_reply).optimize(GEPA(), seed=5)
    b = FakeSetup(budget=70, replies=default_reply).optimize(GEPA(), seed=5)
    assert a.template == b.template and a.rejected == b.rejected


def test_accept_rejects_truncated_and_echoed_proposals():
    setup = FakeSetup()
    ctx = SearchContext(task=setup.task, evaluator=setup.evaluator, proposer=setup.proposer,
                        start=setup.task.start_template(), seed=0)
    shown = ("Original text: The cat sat.\n"
             "Rewrite prompt: Turn this into a very long poem about the sea, please")
    assert ctx.accept("Name it.", truncated=True) is None
    assert ctx.accept(ctx.start.instruction, ctx.start) is None
    assert ctx.accept("Turn this into a very long poem about the sea, please",
                      echo_of=[shown]) is None
    assert ctx.accept("Name the change in one short sentence.") is not None
    assert ctx.rejected == {"truncated": 1, "echo of parent": 1, "echo of prompt": 1}


def test_error_reports_carry_the_tasks_feedback():
    from promptopt.optimizers import error_report

    setup = FakeSetup()
    batch = setup.task.examples("train")[:3]
    ev = setup.evaluator.evaluate(setup.task.start_template(), "train", examples=batch)
    report = error_report(setup.task, batch, ev, 2)
    assert report.count("Feedback: Predicted prompt:") == 2 and "True prompt:" in report


def _by_component(prefix_answer: str, instruction_answer: str):
    """A proposer that answers the answer-prefix reflection and the instruction one
    differently, and the prompts it was sent."""
    seen: list[str] = []

    def proposer(prompt: str, params: dict) -> str:
        seen.append(prompt)
        if "opening words" in prompt:
            return f"{prefix_answer} {len(seen)}\n```"
        return f"{instruction_answer}, version {len(seen)}.\n```"

    return proposer, seen


def test_the_answer_prefix_is_a_second_component_with_its_own_reflection_prompt():
    proposer, seen = _by_component("Rewrite this text as", "Name the rewrite in one sentence")
    setup = FakeSetup(budget=90, proposer_replies=proposer)
    gepa_opt = GEPA()
    setup.optimize(gepa_opt, seed=0)
    kinds = ["prefix" if "opening words" in p else "instruction" for p in seen]
    assert kinds[:2] == ["instruction", "prefix"]  # round robin over the two components
    # the seed: the start opened with the sample's answers' first word
    assert "(empty: none):\n```\nRewrite\n```" in seen[kinds.index("prefix")]
    # each answer with the correct one, not the inputs nor the feedback's other labels
    assert "Correct answer" in seen[kinds.index("prefix")]
    assert "Original text:" not in seen[kinds.index("prefix")]
    assert "Similarity:" not in seen[kinds.index("prefix")]
    assert "Original text:" in seen[kinds.index("instruction")]
    start = setup.task.start_template()
    prefixed = [e for e in setup.evaluator.history if e.split == "train"
                and e.template.answer_prefix.startswith("Rewrite this text as")]
    assert prefixed, "a proposed prefix was evaluated"
    assert all(e.template.demos == start.demos and e.parents for e in prefixed)
    assert all(e.predictions[0].startswith("Rewrite this text as") for e in prefixed)
    assert all(set(c) == {"instruction", "answer_prefix"} for c in gepa_opt.pareto_front())


def _truths(prompt: str) -> set[str]:
    return {line for section in prompt.split("## Correct answer\n")[1:]
            for line in section.splitlines()[:1]}


@pytest.mark.parametrize("second_chance", [True, False])
def test_an_echoed_prefix_gives_its_turn_to_the_instruction(second_chance):
    seen: list[str] = []

    def proposer(prompt: str, params: dict) -> str:
        seen.append(prompt)
        if "opening words" in prompt:
            return "Rewrite\n```"  # the seed's own prefix: an echo
        return f"Name the rewrite in one sentence, version {len(seen)}.\n```"

    setup = FakeSetup(budget=120, proposer_replies=proposer)
    result = setup.optimize(GEPA(second_chance=second_chance), seed=0)
    kinds = ["prefix" if "opening words" in p else "instruction" for p in seen]
    first = kinds.index("prefix")
    assert result.rejected["echo of parent"] >= 1
    if second_chance:  # the same minibatch, reflected on for the instruction at once
        assert kinds[first + 1] == "instruction"
        assert _truths(seen[first + 1]) == _truths(seen[first])
    else:
        assert kinds[first + 1:first + 2] != ["instruction"] or \
            _truths(seen[first + 1]) != _truths(seen[first])


def test_a_rejected_instruction_is_asked_for_again_told_why():
    start = FakeSetup().task.start_template().instruction
    seen: list[str] = []

    def proposer(prompt: str, params: dict) -> str:
        seen.append(prompt)
        if "was not used" in prompt:
            return f"Name the rewrite in one sentence, version {len(seen)}.\n```"
        return f"{start}\n```"  # the parent again

    setup = FakeSetup(budget=60, proposer_replies=proposer)
    setup.optimize(GEPA(components=["instruction"], second_chance=True), seed=0)
    assert "not used: it was the instruction above, unchanged" in seen[1]
    assert _truths(seen[1]) == _truths(seen[0])
    children = [e for e in setup.evaluator.history
                if e.template.instruction.startswith("Name the rewrite")]
    assert children and children[0].template.instruction.endswith("version 2.")
    legacy = FakeSetup(budget=60, proposer_replies=proposer)
    legacy.optimize(GEPA(components=["instruction"], second_chance=False), seed=0)
    assert not any(e.template.instruction.startswith("Name the rewrite")
                   for e in legacy.evaluator.history)


def test_reflection_on_the_pareto_set_pays_for_each_example_once():
    def search(**settings: Any) -> tuple[GEPA, list[str], list[tuple[str, str]]]:
        seen, proposer = _recording_proposer()
        setup = FakeSetup(budget=90, proposer_replies=proposer)
        gepa_opt = GEPA(components=["instruction"], **settings)
        setup.optimize(gepa_opt, seed=0)
        runs = [(e.template.id, i) for e in setup.evaluator.history if e.split == "train"
                for i in e.example_ids]
        return gepa_opt, seen, runs

    ctx = cast(Any, SimpleNamespace(train=FakeSetup().task.examples("train"), seed=0))
    gepa_opt, seen, runs = search(reflect_on="pareto", reuse_scores=True)
    pareto, feedback = gepa_opt.split(ctx)
    truths = {e.target for e in pareto}
    assert feedback == pareto and set().union(*(_truths(p) for p in seen)) <= truths
    assert len(runs) == len(set(runs))  # no example bought twice by one candidate
    legacy, legacy_seen, legacy_runs = search()  # the defaults: the rest of train, no reuse
    pareto, _ = legacy.split(ctx)
    assert not set().union(*(_truths(p) for p in legacy_seen)) & {e.target for e in pareto}
    assert len(legacy_runs) > len(set(legacy_runs))  # parents bought their minibatch again
    assert len(seen) > len(legacy_seen)  # more reflections on the same budget


def test_module_selector_all_updates_both_components_in_one_child():
    proposer, seen = _by_component("Rewrite this", "Name the rewrite in one sentence")
    setup = FakeSetup(budget=60, proposer_replies=proposer)
    setup.optimize(GEPA(module_selector="all"), seed=0)
    start = setup.task.start_template()
    base = start.replace(answer_prefix="Rewrite")  # the seed candidate
    children = [e.template for e in setup.evaluator.history
                if e.template.id not in (start.id, base.id)]
    assert children and all(t.answer_prefix.startswith("Rewrite this")
                            and t.instruction != start.instruction for t in children)


def test_components_are_the_instruction_alone_where_the_task_has_no_answer_prefixes():
    from types import SimpleNamespace

    def ctx(prefixes):
        return cast(Any, SimpleNamespace(task=SimpleNamespace(answer_prefixes=prefixes)))

    assert GEPA().evolved(ctx(("",))) == ["instruction"]
    assert GEPA().evolved(ctx(("", "Rewrite"))) == ["instruction", "answer_prefix"]
    assert GEPA(components=["answer_prefix"]).evolved(ctx(("",))) == ["answer_prefix"]
    proposer, seen = _by_component("Rewrite this", "Name the rewrite in one sentence")
    setup = FakeSetup(budget=60, proposer_replies=proposer)
    setup.optimize(GEPA(components=["instruction"]), seed=0)
    assert seen and not any("opening words" in p for p in seen)
    # the seed's prefix (the answers' first word) on train, the start's on validation
    assert {e.template.answer_prefix for e in setup.evaluator.history
            if e.split == "train"} == {"Rewrite"}


@pytest.mark.parametrize(("settings", "name"), [
    ({"components": ["instruction", "demos"]}, "components"),
    ({"components": []}, "components"),
    ({"components": ["instruction", "instruction"]}, "components"),
    ({"module_selector": "random"}, "module_selector"),
    ({"reflection_prompt_template": {"suffix": "<curr_param> <side_info>"}},
     "reflection_prompt_template"),
    ({"reflection_prompt_template": {"answer_prefix": "no placeholders"}},
     "reflection_prompt_template"),
])
def test_bad_component_settings_are_refused(settings, name):
    with pytest.raises(ConfigError, match=name):
        GEPA(**settings).validate()


def test_accept_prefix_counts_unusable_prefixes():
    setup = FakeSetup()
    ctx = SearchContext(task=setup.task, evaluator=setup.evaluator, proposer=setup.proposer,
                        start=setup.task.start_template(), seed=0)
    start = ctx.start
    assert ctx.accept_prefix("", start) is None
    assert ctx.accept_prefix("Rewrite", start, truncated=True) is None
    assert ctx.accept_prefix("word " * 30, start) is None
    assert ctx.accept_prefix(start.answer_prefix or " ", start) is None
    child = ctx.accept_prefix("'Rewrite this text'", start)
    assert child is not None and child.answer_prefix == "Rewrite this text"
    assert child.instruction == start.instruction
    assert ctx.accept_prefix("rewrite  this text", start) is None  # same template again
    assert ctx.accept_prefix("opening words written for it", start, frame=PREFIX_PROMPT) is None
    assert ctx.accept_prefix("Rewrite it", start, frame=PREFIX_PROMPT) is not None
    assert ctx.rejected == {"empty": 2, "truncated": 1, "prefix too long": 1, "duplicate": 1,
                            "echo of prompt": 1}
    assert ctx.proposed == 8


@pytest.mark.embedded
def test_gepa_on_the_embedded_model(tmp_path, embedded_cache):
    from promptopt.runs import run

    url = f"sqlite:///{tmp_path}/g.db"
    result = run("gepa", budget=30, train=6, val=3, test=3, scorer="minilm",
                 storage=url, study="g", cache_dir=embedded_cache,
                 settings={"pareto_size": 3, "reflection_minibatch_size": 2, "max_tokens": 120})
    assert result.budget_spent <= 30
    assert 0.0 <= result.test_score <= 1.0 and result.template.instruction.strip()
    assert result.trials >= 3  # the start on the Pareto set and a minibatch, and validation
