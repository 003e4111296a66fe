"""The final choice: paired intervals, credible gains only, growing validation, the why-line."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

import promptopt.optimizers  # noqa: F401  (registers every method)
from promptopt.errors import ConfigError
from promptopt.optimizers import OPRO, RandomSearch
from promptopt.runs import RunResult, make_task
from promptopt.scoring import GainInterval, adjusted_level, paired_interval, stable_int
from promptopt.search import Selection, choose_among_workers, choose_final
from promptopt.template import Template
from promptopt.testing import FakeSetup

START = "Answer with the capital city."
NOISY = "Name the capital city of the country."
CONSISTENT = "Give the capital city, spelled exactly."
WORSE = "Give the largest city."
SIZES = dict(train=8, val=20, test=12)
OPTIONS = {"inputs": ["country"], "target": "capital", "metric": "exact"}


def _knows(instruction: str, country: str) -> bool:
    """Which templates answer which countries right (the fake's whole behaviour)."""
    start = stable_int(country, "start") % 2 == 0  # about half
    if instruction.startswith(START):
        return start
    if instruction.startswith(NOISY):  # another half, unrelated to the start's
        return stable_int(country, "noisy") % 100 < 55
    if instruction.startswith(CONSISTENT):  # the start's right answers and a few more
        return start or stable_int(country, "more") % 3 != 0
    if instruction.startswith(WORSE):
        return start and stable_int(country, "less") % 2 == 0
    return False


def reply(prompt: str, params: dict) -> str:
    instruction = prompt.strip().split("\n", 1)[0]
    country = prompt.rsplit("country: ", 1)[-1].split("\n", 1)[0].strip()
    return country.replace("Land", "Zed") if _knows(instruction, country) else "Nowhere"


@pytest.fixture
def countries(tmp_path: Path) -> Path:
    path = tmp_path / "countries.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "country", "capital"])
        for i in range(40):
            writer.writerow([f"k{i}", f"Land{i}", f"Zed{i}"])
    return path


def _setup(countries: Path, budget: int = 400) -> FakeSetup:
    task = make_task("csv", countries, scorer="hashing", **SIZES, **OPTIONS)
    return FakeSetup(budget=budget, replies=reply, task=task)


def _val_scores(setup: FakeSetup, instruction: str) -> list[float]:
    ev = setup.evaluator.evaluate(Template(instruction), "val", meta={"role": "probe"})
    return list(ev.scores)


# --- the interval ----------------------------------------------------------------------


def test_paired_interval_covers_a_known_difference_at_about_its_level():
    rng = np.random.default_rng(12345)
    true_gain, n, hits, trials = 0.05, 30, 0, 500
    for i in range(trials):
        base = rng.uniform(0.0, 1.0, n)
        candidate = np.clip(base + true_gain + rng.normal(0.0, 0.2, n), -5, 5)
        # the true mean difference of this population is exactly true_gain (noise mean 0)
        iv = paired_interval(base, candidate, level=0.9, resamples=1000, seed=[7, i])
        hits += iv.low <= true_gain <= iv.high
    coverage = hits / trials
    assert 0.85 <= coverage <= 0.95, coverage


def test_paired_interval_basics():
    same = paired_interval([0.1, 0.5, 0.9], [0.1, 0.5, 0.9])
    assert (same.gain, same.low, same.high) == (0.0, 0.0, 0.0)
    steady = paired_interval([0.0] * 5, [0.2] * 5)
    assert steady.above_zero and steady.gain == pytest.approx(0.2)
    one = paired_interval([0.0], [1.0])
    assert one.low == -math.inf and not one.above_zero  # one example proves nothing
    a = paired_interval([0, 1, 0, 1, 1, 0], [1, 1, 0, 0, 1, 1], seed=3)
    assert a == paired_interval([0, 1, 0, 1, 1, 0], [1, 1, 0, 0, 1, 1], seed=3)  # seeded
    wider = paired_interval([0, 1, 0, 1, 1, 0], [1, 1, 0, 0, 1, 1], seed=3, level=0.99)
    assert wider.low < a.low and wider.high > a.high
    with pytest.raises(ValueError, match="length"):
        paired_interval([1.0], [1.0, 2.0])
    assert adjusted_level(0.9, 3) == pytest.approx(1 - 0.1 / 3)
    assert GainInterval.from_dict(one.to_dict()) == one  # infinite ends survive JSON
    assert GainInterval.from_dict(None) is None


# --- the choice ------------------------------------------------------------------------


def test_a_gain_by_noise_is_not_chosen_a_consistent_gain_is(countries):
    setup = _setup(countries)
    start, noisy, steady = (_val_scores(setup, t) for t in (START, NOISY, CONSISTENT))
    assert np.mean(noisy) > np.mean(start)  # the old rule (highest mean) would take it
    assert np.mean(steady) > np.mean(start)
    val = setup.task.examples("val")
    kept = choose_final(setup.evaluator, Template(START), [Template(NOISY)], val, Selection())
    assert kept.template == Template(START)
    assert kept.best_other is not None and not kept.best_other.above_zero
    assert kept.best_other.gain == pytest.approx(np.mean(noisy) - np.mean(start))
    assert kept.notes and "kept the starting template" in kept.notes[-1]
    assert "90% level" in kept.notes[-1] and "interval" in kept.notes[-1]
    chosen = choose_final(setup.evaluator, Template(START),
                          [Template(NOISY), Template(CONSISTENT)], val, Selection())
    assert chosen.template == Template(CONSISTENT)
    assert chosen.val_score == pytest.approx(np.mean(steady))
    assert chosen.val_gain.above_zero and chosen.val_gain.level == 0.9
    assert chosen.level == pytest.approx(adjusted_level(0.9, 2))


def test_the_choice_records_what_a_merge_of_workers_needs(countries):
    setup = _setup(countries)
    start, steady = (_val_scores(setup, t) for t in (START, CONSISTENT))
    val = setup.task.examples("val")
    chosen = choose_final(setup.evaluator, Template(START),
                          [Template(NOISY), Template(CONSISTENT)], val, Selection())
    record = chosen.record()
    assert record == {"confidence": 0.9, "compared": 2, "chosen": True,
                      "val_scores": list(steady), "start_val_scores": list(start)}
    kept = choose_final(setup.evaluator, Template(START), [Template(NOISY)], val, Selection())
    assert kept.record()["chosen"] is False
    assert kept.record()["val_scores"] == kept.record()["start_val_scores"] == list(start)


def _worker(gain: float, spread: float, *, n: int = 20, seed: int = 0,
            compared: int = 1) -> dict:
    """A worker's record whose per-example gains have exactly this mean and spread."""
    z = np.random.default_rng(seed).standard_normal(n)
    z = (z - z.mean()) / z.std()
    base = np.random.default_rng(seed + 100).uniform(0.2, 0.6, n)
    return {"confidence": 0.9, "compared": compared, "chosen": True,
            "start_val_scores": base.tolist(), "val_scores": (base + gain + spread * z).tolist()}


def test_workers_lucky_alone_are_not_credible_together():
    # Gain 0.08 with spread 0.2 on 20 examples: the 90% interval's lower end lies
    # above 0, the 95% one's (Bonferroni for two finalists) below.
    lucky = {0: _worker(0.08, 0.2, seed=1), 1: _worker(0.08, 0.2, seed=2)}
    for k, record in lucky.items():
        alone, line = choose_among_workers({k: record}, Selection(), seed=3)
        assert alone == k and "lies above 0" in line
    together, line = choose_among_workers(lucky, Selection(), seed=3)
    assert together is None
    assert "kept the starting template" in line and "not credible" in line
    assert "Bonferroni over 2 finalists of 2 workers: 95% each" in line
    # A worker's own finalists count too: one worker that compared 3 is not believed.
    assert choose_among_workers({0: _worker(0.08, 0.2, seed=1, compared=3)},
                                Selection(), seed=3)[0] is None


def test_workers_a_consistent_gain_wins_over_a_higher_noisy_mean():
    steady, noisy = _worker(0.05, 0.02, seed=1), _worker(0.12, 0.6, seed=2)
    keeper = {**_worker(0.0, 0.0, seed=3), "chosen": False, "compared": 3}
    keeper["val_scores"] = keeper["start_val_scores"]
    pick, line = choose_among_workers({0: noisy, 1: steady, 2: keeper}, Selection(), seed=0)
    assert pick == 1 and "chose worker 1's template" in line
    assert "Bonferroni over 5 finalists of 3 workers" in line
    assert choose_among_workers({0: keeper, 1: dict(keeper)}, Selection()) == (
        None, "across workers: all 2 kept the starting template")
    # Two credible gains: the larger mean wins; equal ones go to the lower index.
    strong = _worker(0.09, 0.02, seed=4)
    assert choose_among_workers({0: steady, 1: strong}, Selection())[0] == 1
    assert choose_among_workers({0: strong, 1: dict(strong)}, Selection())[0] == 0


def test_an_optimizer_keeps_the_start_over_a_lucky_finalist_and_says_why(countries):
    setup = _setup(countries)
    result = RandomSearch(pool=(NOISY,)).optimize(setup.task, setup.evaluator, setup.proposer,
                                                  start=Template(START))
    assert result.template == Template(START)
    assert result.val_gain is not None and result.val_gain.gain == 0.0
    assert result.why.startswith("the result is the starting template:")
    assert "1 candidate scored" in result.why and "not credible" in result.why
    assert result.notes[0] == result.why
    found = RandomSearch(pool=(NOISY, CONSISTENT)).optimize(
        setup.task, setup.evaluator, setup.proposer, start=Template(START))
    assert found.template == Template(CONSISTENT) and not found.why
    assert found.val_gain is not None and found.val_gain.above_zero


def test_the_why_line_names_the_rejections_and_the_proposer(countries):
    junk = ("<INS>Your new instruction is very effective and it will make a difference in "
            "every way possible.</INS>")
    task = make_task("csv", countries, scorer="hashing", **SIZES, **OPTIONS)
    setup = FakeSetup(budget=120, replies=reply, proposer_replies=lambda p, k: junk, task=task)
    result = OPRO(max_steps=3).optimize(task, setup.evaluator, setup.proposer,
                                        start=Template(START))
    assert result.template == Template(START)
    assert result.rejected["no task content (praises itself)"] >= 1
    assert all(ev.template == Template(START) for ev in setup.evaluator.history)
    assert "the proposer returned nothing usable" in result.why
    assert "no task content (praises itself)" in result.why
    assert f"the proposer is {setup.proposer.model}" in result.why
    assert "try --proposer llamacpp/smollm2-135m or a stronger model" in result.why


# --- growing validation --------------------------------------------------------------------


def test_selection_settings_are_checked():
    with pytest.raises(ConfigError, match=r"unknown selection setting.*'confidense'.*confidence"):
        Selection.from_dict({"confidense": 0.9})
    with pytest.raises(ConfigError, match=r"confidence=1.5"):
        Selection.from_dict({"confidence": 1.5})
    with pytest.raises(ConfigError, match=r"val_first=1"):
        Selection.from_dict({"val_first": 1})
    assert Selection.from_dict(None) == Selection()


@pytest.mark.parametrize("left", [None, 10, 30, 37, 60, 95, 400])
@pytest.mark.parametrize("n_val", [6, 12])
def test_the_default_reserve_is_the_former_one(left, n_val):
    def former(k: int) -> int:  # the rule before selection settings existed
        evaluations = k + 1
        if left is not None:
            evaluations = min(evaluations, max(2, left // 2 // n_val), left // n_val)
        return max(1, evaluations) * n_val

    assert Selection().reserve(3, n_val, left) == former(3)
    assert Selection().cuts(n_val) == [n_val]


def test_close_finalists_grow_on_more_validation_examples(countries):
    selection = Selection(val_first=5)
    assert selection.cuts(20) == [5, 10, 20]
    assert selection.cost(4, 20) == 20 + 4 * 5 + 2 * 5 + 1 * 10
    setup = _setup(countries)
    val = setup.task.examples("val")
    finalists = [Template(WORSE), Template(NOISY), Template(CONSISTENT), Template("Say Paris.")]
    before = setup.budget.spent
    choice = choose_final(setup.evaluator, Template(START), finalists, val, selection, seed=1)
    spent = setup.budget.spent - before
    assert spent <= selection.cost(len(finalists), len(val)) < 5 * len(val)
    assert choice.template == Template(CONSISTENT)
    history = setup.evaluator.history
    rungs = [(ev.template.instruction, ev.meta.get("rung"), ev.n) for ev in history
             if ev.split == "val" and ev.meta.get("role") == "finalist"]
    assert {(t, r) for t, r, _ in rungs if r == 0} == {(f.instruction, 0) for f in finalists}
    assert (CONSISTENT, 2, 10) in rungs  # grown to the whole split, its last 10 examples
    assert not any(t == "Say Paris." and r and r > 0 for t, r, _ in rungs)  # dropped early
    assert "validation grew" in choice.notes[0]
    assert choice.val_score == pytest.approx(np.mean(_val_scores(setup, CONSISTENT)))


def test_old_results_without_gains_still_load():
    stored = {
        "study": "old", "method": "opro", "template": {"instruction": "A"},
        "start_template": {"instruction": "B"}, "val_score": 0.5, "test_score": 0.4,
        "start_val_score": 0.3, "start_test_score": 0.3, "scorer": "s", "usage": {},
        "budget": 10, "budget_spent": 10, "trials": 3,
    }
    result = RunResult.from_dict(stored, storage="sqlite://")
    assert result.val_gain is None and result.test_gain is None and result.why == ""
    assert not result.below_start
    again = RunResult.from_dict(result.to_dict(), storage="sqlite://")
    assert again.val_gain is None and again.to_dict()["test_gain"] is None


@pytest.mark.embedded
def test_growing_validation_on_the_embedded_model(tmp_path, embedded_cache):
    """The real model and scorer through the whole final choice: finalists scored on the
    first examples, close ones on more, and a returned template other than the start only
    with a validation interval wholly above 0."""
    import optuna

    from promptopt.runs import run

    url = f"sqlite:///{tmp_path}/s.db"
    result = run("random", budget=40, train=4, val=8, test=2, scorer="minilm", storage=url,
                 study="s", cache_dir=embedded_cache, selection={"val_first": 2})
    assert result.budget_spent <= 40
    gain = result.val_gain
    assert gain is not None and gain.n == 8
    if result.template.id == result.start_template.id:
        assert (gain.gain, gain.low, gain.high) == (0.0, 0.0, 0.0) and result.why
    else:
        assert gain.low > 0.0
    trials = optuna.load_study(study_name="s", storage=url).trials
    finalists = [t.user_attrs for t in trials if t.user_attrs.get("split") == "val"
                 and (t.user_attrs.get("meta") or {}).get("role") == "finalist"]
    assert finalists, "no finalist was scored on validation"
    first = [a for a in finalists if a["meta"].get("rung") == 0]
    assert first and all(a["n_examples"] == 2 for a in first)
    assert all(a["meta"]["examples"][1] <= 8 for a in finalists)
