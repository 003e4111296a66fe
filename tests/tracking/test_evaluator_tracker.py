from __future__ import annotations

import json

import optuna
import pytest

from promptopt.errors import BudgetExhausted, ConfigError, StorageError
from promptopt.redact import scrub
from promptopt.template import Template
from promptopt.testing import FakeSetup
from promptopt.tracking import Tracker, load_study_attrs


def test_evaluate_scores_every_example_and_memoizes():
    setup = FakeSetup(budget=None, replies=lambda p, params: "Rewrite this text as a poem.")
    t = Template("Guess.")
    ev = setup.evaluator.evaluate(t, "train")
    assert ev.n == len(setup.task.examples("train")) == len(ev.predictions)
    assert all(0.0 <= s <= 1.0 for s in ev.scores)
    assert ev.score == pytest.approx(sum(ev.scores) / ev.n)
    assert setup.evaluator.evaluate(t, "train") is ev
    assert len(setup.fake.calls) == ev.n


def test_evaluation_needs_the_whole_batch_in_budget():
    setup = FakeSetup(budget=5)
    with pytest.raises(BudgetExhausted):
        setup.evaluator.evaluate(Template("Guess."), "train")  # 12 examples
    assert setup.budget.spent == 0 and not setup.fake.calls
    ev = setup.evaluator.evaluate(Template("Guess."), examples=setup.task.examples("train")[:5])
    assert ev.n == 5 and setup.budget.remaining == 0


def test_trials_are_written_with_json_attributes(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    setup = FakeSetup(budget=None, storage=url, study="s1", method="unit")
    parent = Template("Parent.")
    child = Template("Child.")
    setup.evaluator.evaluate(parent, "train")
    setup.evaluator.evaluate(child, "val", parents=[parent.id], meta={"step": 2})
    study = optuna.load_study(study_name="s1", storage=url)
    assert len(study.trials) == 2
    attrs = study.trials[1].user_attrs
    assert attrs["template_id"] == child.id and attrs["parents"] == [parent.id]
    assert attrs["split"] == "val" and attrs["method"] == "unit" and attrs["meta"] == {"step": 2}
    assert attrs["scorer"].startswith("hashing-bow")
    assert attrs["usage"]["requests"] == len(setup.task.examples("val"))
    assert study.trials[1].value == pytest.approx(attrs["score"])
    assert Template.from_dict(attrs["template"]) == child
    json.dumps(attrs)  # JSON only
    assert study.metric_names == ["validation score"]  # the dashboard's name for the objective


def test_secrets_are_scrubbed_from_study_attributes(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    tracker = Tracker(url, "secret")
    tracker.set_attr("settings", {"model": "x", "api_key": "sk-123", "nested": {"token": "t"}})
    attrs = load_study_attrs(url, "secret")
    assert attrs["settings"] == {"model": "x", "api_key": "***", "nested": {"token": "***"}}
    assert "sk-123" not in (tmp_path / "s.db").read_bytes().decode("latin-1")
    assert scrub(["a", {"password": "p"}]) == ["a", {"password": "***"}]


def test_unknown_study_lists_the_existing_ones(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    Tracker(url, "exists")
    with pytest.raises(ConfigError, match="no study 'nope'.*exists"):
        load_study_attrs(url, "nope")


def test_unwritable_storage_is_a_clear_error(tmp_path):
    with pytest.raises(StorageError, match="s.db: cannot open it: .*folder must exist"):
        Tracker(f"sqlite:///{tmp_path}/no/such/dir/s.db", "x")
