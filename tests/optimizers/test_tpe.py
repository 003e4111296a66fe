"""Structured template search with Optuna TPE."""

from __future__ import annotations

import pytest

from promptopt.errors import DataError
from promptopt.optimizers import INSTRUCTION_POOL, TPESearch
from promptopt.optimizers._tpe import ANSWER_PREFIXES, read_instructions
from promptopt.testing import FakeSetup


def _search_evals(setup):
    return [e for e in setup.evaluator.history if e.split == "train"]


def test_parts_are_sampled_and_recorded():
    setup = FakeSetup(budget=200, train=16)
    setup.optimize(TPESearch(minibatch_size=4, max_demos=2, n_trials=30))
    evals = [e for e in _search_evals(setup) if e.meta.get("trial") is not None]
    assert len(evals) >= 5
    instructions = {e.template.instruction for e in evals}
    assert len(instructions) >= 3 and instructions <= {
        setup.task.start_template().instruction, *INSTRUCTION_POOL
    }
    assert len({e.meta["n_demos"] for e in evals}) >= 2
    assert len({e.template.answer_prefix for e in evals}) >= 2
    for e in evals:
        assert e.template.answer_prefix in ANSWER_PREFIXES
        assert len(e.template.demos) == e.meta["n_demos"] == len(e.meta["demo_ids"])
        assert e.template.answer_prefix == e.meta["answer_prefix"]
        assert e.meta["kind"] == "tpe" and e.meta["instruction_source"] in {"start", "builtin"}
    assert len({e.template.id for e in evals}) == len(evals)  # duplicates never re-evaluated


def test_same_seed_same_trials_and_different_seed_differs():
    def trace(seed):
        setup = FakeSetup(budget=150, train=16)
        setup.optimize(TPESearch(minibatch_size=4, n_trials=20), seed=seed)
        return [(e.template.id, e.score) for e in _search_evals(setup)]

    assert trace(1) == trace(1)
    assert trace(1) != trace(2)


def test_demos_never_overlap_the_scored_minibatch():
    setup = FakeSetup(budget=300, train=12)
    setup.optimize(TPESearch(minibatch_size=8, max_demos=3, n_trials=40))
    evals = _search_evals(setup)
    batches = {e.example_ids for e in evals}
    assert len(batches) == 1  # every candidate is scored on the same minibatch
    batch = set(next(iter(batches)))
    target = setup.task.target_field
    batch_answers = {e.target for e in setup.task.examples("train") if e.id in batch}
    with_demos = [e for e in evals if e.template.demos]
    assert with_demos
    for e in with_demos:
        assert not batch & set(e.meta["demo_ids"])
        for demo in e.template.demos:
            assert dict(demo)[target] not in batch_answers  # not even a duplicate answer


def test_minibatch_shrinks_to_leave_room_for_demos():
    setup = FakeSetup(budget=300, train=6)
    setup.optimize(TPESearch(minibatch_size=8, max_demos=2, n_trials=20))
    evals = _search_evals(setup)
    assert {len(e.example_ids) for e in evals} == {4}
    assert any(e.template.demos for e in evals)


def test_user_instructions_file_is_read(tmp_path):
    path = tmp_path / "ins.txt"
    path.write_text(
        "# my instructions\n\nState the rewrite instruction in five words.\n"
        "Original: {original_text}\\nRewrite: {rewritten_text}\\nInstruction?\n",
        encoding="utf-8",
    )
    assert len(read_instructions(path)) == 2
    setup = FakeSetup(budget=400, train=12)
    setup.optimize(TPESearch(minibatch_size=3, max_demos=0, n_trials=60,
                             instructions_file=str(path)))
    used = {e.template.instruction: e.meta for e in _search_evals(setup) if "trial" in e.meta}
    assert "State the rewrite instruction in five words." in used
    assert used["State the rewrite instruction in five words."]["instruction_source"] == "file"


@pytest.mark.parametrize(
    ("content", "line", "why"),
    [
        ("Fine instruction.\nUse {bogus} here.\n", 2, "unknown placeholder"),
        ("ok\n\n" + "x" * 2000 + "\n", 3, "characters"),
        ("Only {original_text} is used.\n", 1, "rewritten_text"),
    ],
)
def test_bad_instructions_file_names_file_and_line(tmp_path, content, line, why):
    path = tmp_path / "bad.txt"
    path.write_text(content, encoding="utf-8")
    setup = FakeSetup(budget=60)
    with pytest.raises(DataError, match=f"{path}.*line {line}:.*{why}"):
        setup.optimize(TPESearch(instructions_file=str(path)))
    assert setup.calls == 0


def test_missing_or_empty_instructions_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        TPESearch(instructions_file=str(tmp_path / "nope.txt")).validate()
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="no instructions"):
        TPESearch(instructions_file=str(empty)).validate()


def test_fixed_suffix_is_on_every_candidate():
    setup = FakeSetup(budget=100)
    setup.optimize(TPESearch(minibatch_size=4, n_trials=10, suffix="rewrite text style"))
    evals = [e for e in _search_evals(setup) if "trial" in e.meta]
    assert evals and all(e.template.suffix == "rewrite text style" for e in evals)
    assert all(p.endswith("rewrite text style") for e in evals for p in e.predictions)


def test_empty_suffix_setting_keeps_the_start_suffix():
    setup = FakeSetup(budget=100)
    start = setup.task.start_template().replace(suffix="learned mean prompt")
    TPESearch(minibatch_size=4, n_trials=8).optimize(
        setup.task, setup.evaluator, setup.proposer, start=start
    )
    assert {e.template.suffix for e in setup.evaluator.history} == {"learned mean prompt"}
