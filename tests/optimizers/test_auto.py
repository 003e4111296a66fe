"""``auto``: successive halving over methods on one budget (fake LLM and scorer)."""

from __future__ import annotations

import json

import optuna
import pytest

import promptopt.optimizers  # noqa: F401  (registers every method)
from promptopt.errors import ConfigError
from promptopt.optimizers import Auto, default_contestants, halving_rounds
from promptopt.registry import optimizers
from promptopt.testing import FakeLLM, FakeSetup

TWO = "opro,ape"


def _spent_by(race: list[dict]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for entry in race:
        totals[entry["method"]] = totals.get(entry["method"], 0) + entry["spent"]
    return totals


def test_halving_rounds():
    assert [halving_rounds(n) for n in (1, 2, 3, 4, 5, 8, 9)] == [1, 2, 3, 3, 4, 4, 5]


def test_default_contestants_suit_the_task_and_leave_out_the_special_ones():
    setup = FakeSetup()
    names = default_contestants(setup.task)
    assert names and not {"auto", "identity", "mean-prompt"} & set(names)
    assert {"dspy-bootstrap", "dspy-mipro", "dspy-gepa"} <= set(names)  # every suitable one
    assert set(names) <= set(optimizers.names())
    assert names[:3] == ["dspy-bootstrap", "tpe", "dspy-mipro"]  # the benchmark's order


@pytest.mark.parametrize("budget", [60, 120, 200])
def test_budget_is_exact_and_all_of_it_is_used(budget):
    setup = FakeSetup(budget=budget)
    auto = Auto(methods=TWO)
    setup.optimize(auto)
    n_val = len(setup.task.examples("val"))
    assert setup.budget.spent <= budget and setup.budget.reserved == 0
    # opro and ape can always spend more: what is left is less than the winner's own
    # final validation of one more candidate would need.
    assert budget - setup.budget.spent < 2 * n_val
    assert setup.calls == setup.budget.spent  # every charged request reached the LLM once
    assert sum(e["spent"] for e in auto.race_) == setup.budget.spent - n_val


def test_same_seed_same_race_and_result():
    def once(seed):
        setup = FakeSetup(budget=120)
        auto = Auto(methods="opro,ape,random")
        result = setup.optimize(auto, seed=seed)
        trials = [(e.template.id, e.split, e.example_ids) for e in setup.evaluator.history]
        return result, auto.race_, trials

    a, b = once(4), once(4)
    assert a[0].template == b[0].template and a[0].val_score == b[0].val_score
    assert a[1] == b[1] and a[2] == b[2]


def test_the_losers_budget_moves_to_the_winner(tmp_path):
    url = f"sqlite:///{tmp_path}/a.db"
    setup = FakeSetup(budget=150, storage=url, study="race")
    auto = Auto(methods="opro,ape,random,protegi")
    setup.optimize(auto)
    race = auto.race_
    first = [e for e in race if e["round"] == 1]
    assert len(first) == 4 and len({e["allowance"] for e in first}) == 1  # equal slices
    slice_ = first[0]["allowance"] - len(setup.task.examples("val"))
    final = race[-1]
    winner = final["method"]
    assert [e["method"] for e in race if e["round"] == race[-1]["round"]] == [winner]
    losers = {e["method"] for e in first} - {winner}
    assert slice_ == first[0]["share"]
    for entry in race[:-1]:  # nobody spends more than its share of a round
        assert entry["spent"] <= entry["share"]
    totals = _spent_by(race)
    assert totals[winner] > max(totals[n] for n in losers)
    assert final["allowance"] > first[0]["allowance"]
    assert sum(totals.values()) == setup.budget.spent - len(setup.task.examples("val"))
    # The same split, counted from the study: calls of the trials each contestant paid for.
    study = optuna.load_study(study_name="race", storage=url)
    calls: dict[str, int] = {}
    for t in study.trials:
        method = t.user_attrs["method"]
        calls[method] = calls.get(method, 0) + t.user_attrs["usage"]["calls"]
    assert calls[winner] > max(calls.get(n, 0) for n in losers)
    assert sum(calls.values()) <= setup.budget.spent  # the rest: proposer calls


def test_a_continued_contestant_pays_only_for_requests_it_never_made():
    setup = FakeSetup(budget=100)
    auto = Auto(methods="opro,ape")
    setup.optimize(auto)
    # Proposer requests carry a seed: none is sent twice, though the winner's reruns ask
    # them all again. (A recovery request may repeat, as in a lone run: one example in
    # two minibatches of one template.)
    asked = [json.dumps(c, sort_keys=True, default=str) for c in setup.fake.calls
             if c["params"].get("seed") is not None]
    assert asked and len(asked) == len(set(asked))
    assert setup.calls == setup.budget.spent
    assert len({e["round"] for e in auto.race_ if e["method"] == auto.race_[-1]["method"]}) >= 2


def test_every_trial_is_marked_with_its_contestant(tmp_path):
    url = f"sqlite:///{tmp_path}/m.db"
    setup = FakeSetup(budget=90, storage=url, study="marks", method="auto")
    setup.optimize(Auto(methods=TWO))
    trials = optuna.load_study(study_name="marks", storage=url).trials
    assert {t.user_attrs["method"] for t in trials} == {"auto", "opro", "ape"}
    for t in trials:
        meta = t.user_attrs["meta"]
        if t.user_attrs["method"] == "auto":  # the start on validation, paid once for all
            assert t.user_attrs["split"] == "val" and meta["role"] == "start"
        else:
            assert meta["contestant"] == t.user_attrs["method"] and meta["round"] >= 1


def test_methods_pick_the_contestants_as_a_list_or_a_string():
    for methods in (["random", "opro"], "random, opro"):
        setup = FakeSetup(budget=80)
        auto = Auto(methods=methods)
        setup.optimize(auto)
        assert {e["method"] for e in auto.race_} == {"random", "opro"}
        assert {e.meta.get("contestant") for e in setup.evaluator.history} <= {
            None, "random", "opro"}


@pytest.mark.parametrize(("methods", "message"), [
    ("opro,nope", r"unknown method 'nope'.*valid contestants: .*opro"),
    ("auto", "cannot race"),
    ("mean-prompt", "cannot race"),
    ("opro,opro", "names repeat"),
    ([], "at least one"),
])
def test_bad_methods_are_clear_errors(methods, message):
    with pytest.raises(ConfigError, match=message):
        FakeSetup(budget=60).optimize(Auto(methods=methods))


def test_contestant_settings_are_passed_and_checked():
    setup = FakeSetup(budget=80)
    auto = Auto(methods=TWO, method_settings={"opro": {"max_steps": 1}})
    setup.optimize(auto)
    opro = [e for e in setup.evaluator.history if e.meta.get("contestant") == "opro"]
    assert {e.meta.get("step") for e in opro if e.split == "train"} <= {None, 0, 1}
    with pytest.raises(ConfigError, match="bad settings for contestant 'opro'"):
        FakeSetup(budget=80).optimize(Auto(methods=TWO, method_settings={"opro": {"x": 1}}))
    with pytest.raises(ConfigError, match="not among the contestants"):
        FakeSetup(budget=80).optimize(Auto(methods=TWO, method_settings={"tpe": {}}))


def test_a_budget_too_small_for_the_named_contestants_is_a_clear_error():
    with pytest.raises(ConfigError, match="budget too small for 3 contestants"):
        FakeSetup(budget=40).optimize(Auto(methods="opro,ape,random"))


def test_the_default_field_shrinks_to_what_the_budget_allows():
    small, large = FakeSetup(budget=60), FakeSetup(budget=400)
    r_small = small.optimize(a_small := Auto())
    large.optimize(a_large := Auto())
    n_small = len({e["method"] for e in a_small.race_})
    n_large = len({e["method"] for e in a_large.race_})
    assert 1 <= n_small < n_large <= len(default_contestants(small.task))
    assert any("leaves out" in note for note in r_small.notes)


def test_the_result_is_the_best_validated_template_of_all_contestants():
    setup = FakeSetup(budget=120)
    auto = Auto(methods="opro,ape,random")
    result = setup.optimize(auto)
    n_val = len(setup.task.examples("val"))
    val = [e for e in setup.evaluator.history if e.split == "val" and e.n == n_val]
    assert len({e.template.id for e in val}) > 1  # contestants' finalists were validated
    # The shared final choice: a finalist only with a credible gain, else the start.
    if result.template.id == result.start_template.id:
        assert result.val_gain.gain == 0.0 and result.why
    else:
        assert result.val_gain.above_zero
        assert result.val_score == pytest.approx(
            max(e.score for e in val if e.template.id == result.template.id))
    assert any(note.startswith("auto: round 1:") for note in result.notes)


def test_the_cli_runs_auto_on_the_fake_model(tmp_path):
    from typer.testing import CliRunner

    from promptopt.cli import app

    fake = FakeLLM()
    url = f"sqlite:///{tmp_path}/c.db"
    result = CliRunner().invoke(app, [
        "run", "--method", "auto", "--set", "methods=opro,ape", "--model", fake.model,
        "--budget", "80", "--storage", url, "--study", "cli-auto", "--train", "8", "--val",
        "4", "--test", "4", "--scorer", "hashing"])
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="cli-auto", storage=url)
    assert study.user_attrs["settings"]["method"] == "auto"
    assert 80 - 2 * 4 < study.user_attrs["result"]["budget_spent"] <= 80
    methods = {t.user_attrs["method"] for t in study.trials}
    assert {"opro", "ape"} <= methods <= {"opro", "ape", "auto"}


@pytest.mark.embedded
def test_auto_on_the_embedded_model(tmp_path, embedded_cache):
    from promptopt.runs import run

    url = f"sqlite:///{tmp_path}/e.db"
    result = run("auto", settings={"methods": "random,opro"}, budget=30, train=4, val=2,
                 test=2, scorer="minilm", storage=url, study="e", cache_dir=embedded_cache)
    assert result.budget_spent <= 30
    assert 0.0 <= result.test_score <= 1.0 and result.template.instruction.strip()
    assert any(note.startswith("auto: round 1: random") for note in result.notes)
    trials = optuna.load_study(study_name="e", storage=url).trials
    assert {t.user_attrs["method"] for t in trials} >= {"random", "opro"}
    for t in trials:
        if t.user_attrs["method"] in ("random", "opro"):
            assert t.user_attrs["meta"]["contestant"] == t.user_attrs["method"]


def test_an_interrupted_race_resumes_with_the_same_trials_paying_only_the_rest(tmp_path):
    from promptopt.errors import LLMError
    from promptopt.runs import run
    from promptopt.testing import default_reply

    state = {"calls": 0, "at": None}

    def outage(prompt, params):
        state["calls"] += 1
        if state["at"] is not None and state["calls"] >= state["at"]:
            raise LLMError("provider outage")
        return default_reply(prompt, params)

    fake = FakeLLM(outage, name="auto-resume")
    kw = dict(model=fake.model, budget=90, seed=1, scorer="hashing", train=8, val=4, test=4,
              settings={"methods": "opro,ape"})
    url = f"sqlite:///{tmp_path}/r.db"
    ref = run("auto", storage=url, study="ref", cache_dir=str(tmp_path / "ref"), **kw)
    total = state["calls"]
    state["calls"], state["at"] = 0, total // 2
    with pytest.raises(LLMError):
        run("auto", storage=url, study="cut", max_errors=0, **kw)
    state["calls"], state["at"] = 0, None
    res = run("auto", storage=url, study="cut", resume=True)
    assert state["calls"] == total - (total // 2 - 1)  # only the calls never answered
    assert res.budget_spent == ref.budget_spent and res.template == ref.template

    def trials(name):
        study = optuna.load_study(study_name=name, storage=url)
        return [(t.user_attrs["method"], t.user_attrs["template_id"], t.user_attrs["split"],
                 t.user_attrs["examples_hash"], t.value) for t in study.trials
                if t.state == optuna.trial.TrialState.COMPLETE]

    assert trials("cut") == trials("ref")


def test_a_dspy_method_races_through_the_same_lanes():
    setup = FakeSetup(budget=120, train=8, val=3)
    auto = Auto(methods="dspy-bootstrap,opro")
    setup.optimize(auto)
    assert setup.calls == setup.budget.spent <= 120
    assert {e["method"] for e in auto.race_} == {"dspy-bootstrap", "opro"}
    assert len(auto.race_) >= 3  # a second round: the winner ran again, its replay free
    paid = {e.meta.get("contestant") for e in setup.evaluator.history}
    assert "dspy-bootstrap" in paid


@pytest.mark.parametrize("name", ["opro", "ape", "tpe", "protegi"])
def test_a_race_of_one_is_the_lone_run(name):
    # The contestant's allowance counts the start's validation, paid by the race, so
    # it follows a lone run's path exactly: same evaluations, same spend, same result.
    # (Without the answer opening: with it, protegi's best finalist here is a borderline
    # case, and the race draws its bootstrap with the finalist's rank in the race (first),
    # the lone run with its rank among its own three.)
    settings = {"opening": False} if name != "tpe" else {}
    race, lone = FakeSetup(budget=100), FakeSetup(budget=100)
    by_race = race.optimize(Auto(methods=name, method_settings={name: settings}), seed=3)
    by_lone = lone.optimize(optimizers.get(name)(**settings), seed=3)

    def train(setup):
        return [(e.template.id, e.example_ids) for e in setup.evaluator.history
                if e.split == "train"]

    assert train(race) == train(lone)
    assert race.budget.spent == lone.budget.spent
    assert by_race.template == by_lone.template and by_race.val_score == by_lone.val_score


def test_contestants_choose_with_the_runs_selection_settings():
    from promptopt.search import Selection

    def levels(selection):
        setup = FakeSetup(budget=120)
        auto = Auto(methods=TWO)
        auto.optimize(setup.task, setup.evaluator, setup.proposer, seed=0, selection=selection)
        return {name: " ".join(r.notes) for name, r in auto.results_.items()}

    default = levels(None)
    strict = levels(Selection(confidence=0.99))
    assert set(default) == set(strict) == {"opro", "ape"}
    for name in default:  # each contestant's own final choice states its level
        assert "99%" not in default[name] and "99%" in strict[name], (default, strict)


def test_the_shared_choice_corrects_for_every_template_the_contestants_validated():
    # protegi's lone run validates three finalists and the race keeps only the best of
    # them: its interval must be as wide as the lone run's (Bonferroni over 3), or the
    # race would adopt a winner's-curse gain the lone run rejects.
    race = FakeSetup(budget=100)
    result = race.optimize(Auto(methods="protegi"), seed=3)
    validated = {e.template.id for e in race.evaluator.history
                 if e.split == "val" and e.meta.get("role") == "finalist"}
    assert len(validated) == 3
    assert "Bonferroni over 3 finalists: 96.7% each" in " ".join(result.notes)
