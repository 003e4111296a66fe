"""The mean-prompt search (pure function and optimizer) and Evaluator.score_constant."""

from __future__ import annotations

import numpy as np
import optuna
import pytest

from promptopt.data import load_examples, sample_path
from promptopt.optimizers import MeanPrompt, search_mean_prompt
from promptopt.optimizers._mean_prompt import train_words, vocabulary_entries
from promptopt.scoring import HashingScorer
from promptopt.search import SearchContext
from promptopt.testing import FakeSetup


def _targets() -> list[str]:
    examples = load_examples(
        sample_path(), input_fields=("original_text",), target_field="rewrite_prompt"
    )
    return [e.target for e in examples]


def _mean_scs(scorer, text: str, targets: list[str]) -> float:
    return float(np.mean(scorer.score([text] * len(targets), targets)))


def test_beats_every_single_pool_entry_and_each_step_raises_the_objective():
    targets = _targets()[:24]
    scorer = HashingScorer()
    result = search_mean_prompt(scorer, targets, max_tokens=10, val_targets=_targets()[24:36],
                                test_targets=_targets()[36:])
    assert result.text and result.steps and result.stopped in {"max_tokens", "no improvement"}
    best_single = max(_mean_scs(scorer, w, targets) for w in train_words(targets))
    assert _mean_scs(scorer, result.text, targets) >= best_single - 1e-6
    assert result.entries == len(train_words(targets))  # no tokenizer: train words only
    previous = 0.0
    for k, step in enumerate(result.steps, start=1):
        assert step.step == k
        again = _mean_scs(scorer, step.text, targets)  # recomputed independently
        assert again == pytest.approx(step.train, abs=1e-5)
        assert step.train > previous
        previous = step.train
        assert step.val is not None and step.test is not None
        if k > 1:  # greedy: each string extends the previous one by its token
            assert step.text == f"{result.steps[k - 2].text} {step.added}"
    assert result.text == result.steps[-1].text
    assert result.train_score == result.steps[-1].train


def test_beam_search_is_monotone_and_seeded():
    targets = _targets()[:16]
    a = search_mean_prompt(HashingScorer(), targets, max_tokens=6, beam_width=3, pool_size=20)
    b = search_mean_prompt(HashingScorer(), targets, max_tokens=6, beam_width=3, pool_size=20)
    assert a.to_dict() == b.to_dict()
    assert a.candidates <= 20
    scores = [s.train for s in a.steps]
    assert scores == sorted(set(scores))  # strictly increasing


def test_vocabulary_entries_are_cleaned():
    class Tok:
        all_special_tokens = ["[CLS]", "<pad>"]

        def get_vocab(self):
            pieces = ["[CLS]", "<pad>", "[unused3]", "<extra_id_0>", "##ing", "▁Rewrite",
                      "poem", "x", "12", "a-b", "café", "poem", "▁poem"]
            return {p: i for i, p in enumerate(pieces)}

    assert vocabulary_entries(Tok()) == ["ing", "Rewrite", "poem"]
    assert vocabulary_entries(None) == []


def test_optimizer_search_makes_no_llm_call_and_records_trials(tmp_path):
    url = f"sqlite:///{tmp_path}/mp.db"
    setup = FakeSetup(budget=60, storage=url, study="mp")
    opt = MeanPrompt(max_tokens=5)
    ctx = SearchContext(task=setup.task, evaluator=setup.evaluator, proposer=setup.proposer,
                        start=setup.task.start_template(), seed=0)
    opt.search(ctx)
    assert setup.calls == 0 and setup.budget.spent == 0
    assert setup.evaluator.history == []  # constants never reach select_final's ranking
    steps = opt.result_.steps
    # train, validation and test SCS reported after every accepted token
    assert steps and len(setup.evaluator.constants) == 3 * len(steps)
    trials = optuna.load_study(study_name="mp", storage=url).trials
    assert len(trials) == 3 * len(steps) == setup.evaluator.trial_count
    first = trials[0].user_attrs
    assert first["meta"]["kind"] == "mean-prompt" and first["meta"]["step"] == 1
    assert first["meta"]["added"] == steps[0].added  # stored as is, not scrubbed
    assert first["template"]["suffix"] == first["meta"]["prefix"] == steps[0].text
    assert first["usage"]["calls"] == 0
    assert {t.user_attrs["split"] for t in trials} == {"train", "val", "test"}
    by_split = {(t.user_attrs["meta"]["step"], t.user_attrs["split"]): t.value for t in trials}
    for step in steps:
        assert by_split[(step.step, "train")] == pytest.approx(step.train)
        assert by_split[(step.step, "test")] == pytest.approx(step.test)


def test_optimizer_result_is_start_or_start_plus_learned_suffix():
    setup = FakeSetup(budget=60)
    opt = MeanPrompt(max_tokens=4)
    result = setup.optimize(opt)
    start = setup.task.start_template()
    assert result.template in (start, start.replace(suffix=opt.result_.text))
    val_templates = {e.template for e in setup.evaluator.history if e.split == "val"}
    assert val_templates == {start, start.replace(suffix=opt.result_.text)}
    assert setup.calls == setup.budget.spent == 2 * len(setup.task.examples("val"))
    assert any("mean prompt" in note for note in result.notes)


def test_score_constant_does_not_shadow_a_real_evaluation():
    setup = FakeSetup(budget=60)
    template = setup.task.start_template().replace(suffix="rewrite text")
    ev = setup.evaluator.score_constant("rewrite text", "train", template=template)
    assert set(ev.predictions) == {"rewrite text"} and ev.n == len(setup.task.examples("train"))
    assert ev.meta["constant"] is True and setup.calls == 0
    real = setup.evaluator.evaluate(template, "train")
    assert setup.calls == real.n and real is not ev
    assert setup.evaluator.history == [real]


@pytest.mark.parametrize("bad", [{"max_tokens": 0}, {"beam_width": 0}, {"pool_size": -1}])
def test_invalid_settings_are_clear_errors(bad):
    from promptopt.errors import ConfigError

    with pytest.raises(ConfigError, match=next(iter(bad))):
        MeanPrompt(**bad).validate()
    with pytest.raises(ConfigError, match=next(iter(bad))):
        search_mean_prompt(HashingScorer(), ["make it formal"], **bad)


@pytest.mark.embedded
def test_packaged_minilm_vocabulary_search():
    from promptopt.optimizers._mean_prompt import _objective
    from promptopt.scoring import SCSScorer

    scorer = SCSScorer("minilm")
    targets = _targets()[:6]
    result = search_mean_prompt(scorer, targets, max_tokens=3, pool_size=200)
    entries = vocabulary_entries(scorer.tokenizer)
    assert len(entries) > 10_000 and result.entries >= len(entries)
    pool = list(dict.fromkeys(train_words(targets) + entries))
    best_single = float(_objective(scorer, pool, scorer.embed(targets)).max())
    assert result.steps[0].train == pytest.approx(best_single, abs=1e-6)
    assert _mean_scs(scorer, result.text, targets) >= best_single - 1e-4
    scores = [s.train for s in result.steps]
    assert scores == sorted(set(scores)) and len(result.steps) <= 3
