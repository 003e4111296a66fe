"""The classification task: label log-probs from the LLM, softmax predictions, log loss and
accuracy; every optimizer on it with the fake LLM, and one run on the embedded model."""

from __future__ import annotations

import json
import math

import numpy as np
import optuna
import pytest
from typer.testing import CliRunner

import promptopt.optimizers  # noqa: F401  (registers every method)
from promptopt.cli import app
from promptopt.data import DataWarning, Splits, sample_path
from promptopt.errors import BudgetExhausted, ConfigError, DataError, LLMError
from promptopt.evaluator import Evaluator
from promptopt.llm import LLM, Budget, DiskCache
from promptopt.llm._logprobs import FLOOR_LOGPROB, read_top_logprobs
from promptopt.registry import optimizers
from promptopt.runs import make_task, run
from promptopt.tasks import ClassificationTask
from promptopt.tasks._classification import (
    accuracy,
    format_prediction,
    log_loss,
    parse_prediction,
    softmax,
)
from promptopt.template import Template
from promptopt.testing import FakeLLM, FakeOpenAIServer, FakeSetup

LABELS = ["A", "B", "tie"]
SAMPLE = sample_path("preference_sample.csv")
BUDGET = 60


def _fixed(scores):
    """Label log-probs that ignore the prompt: ``{label: log p}``."""
    return lambda prompt, labels: {label: math.log(scores[label]) for label in labels}


def _write_csv(path, rows, header=("id", "text", "label")):
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


# --- the math -------------------------------------------------------------------------


def test_softmax_normalizes_label_logprobs():
    probs = softmax([math.log(0.2), math.log(0.3), math.log(0.1)])  # sum 0.6 before
    assert probs == pytest.approx([1 / 3, 1 / 2, 1 / 6])
    assert softmax([1000.0, 1000.0]) == pytest.approx([0.5, 0.5])  # no overflow


def test_log_loss_and_accuracy_with_known_numbers():
    probs = np.array([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1]])
    assert log_loss(probs, [0, 1, 1]) == pytest.approx(-(math.log(0.5) + math.log(0.8)
                                                         + math.log(0.3)) / 3)
    assert accuracy(probs, [0, 1, 1]) == pytest.approx(2 / 3)
    assert accuracy(np.array([[0.4, 0.4, 0.2]]), [0]) == 1.0  # ties go to the first label
    assert log_loss(np.array([[1.0, 0.0]]), [1]) == pytest.approx(-math.log(1e-15))  # clipped


def test_prediction_strings_round_trip():
    text = format_prediction(LABELS, [0.2, 0.7, 0.1])
    assert text.startswith("B {") and json.loads(text[2:]) == {"A": 0.2, "B": 0.7, "tie": 0.1}
    assert parse_prediction(text, LABELS) == pytest.approx([0.2, 0.7, 0.1])
    assert parse_prediction("tie", LABELS) == pytest.approx([0, 0, 1])  # a bare label: certain
    assert parse_prediction("Rewrite this text.", LABELS) is None
    tiny = format_prediction(LABELS, [1e-9, 1 - 2e-9, 1e-9])
    assert parse_prediction(tiny, LABELS)[0] == pytest.approx(1e-9)  # 6 significant digits


def test_top_logprobs_are_read_as_label_logprobs():
    top = [(" A", math.log(0.5)), ("A", math.log(0.1)), (" B", math.log(0.2)),
           ("t", math.log(0.05)), ("Answer", math.log(0.1))]
    got = read_top_logprobs(top, LABELS)
    assert got["A"] == pytest.approx(math.log(0.6))  # " A" and "A" both stand for A
    assert got["B"] == pytest.approx(math.log(0.2))
    assert got["tie"] == pytest.approx(math.log(0.05))  # a first piece of "tie"


def test_labels_missing_from_the_top_list_get_an_upper_bound():
    # lowest listed log-prob (0.2) is the bound while the mass left over (0.1) is larger
    got = read_top_logprobs([(" A", math.log(0.6)), (" B", math.log(0.2))], LABELS)
    assert got["tie"] == pytest.approx(math.log(0.2))
    # the mass left over (0.01) is smaller than the lowest listed log-prob (0.04)
    got = read_top_logprobs([("A", math.log(0.5)), ("B", math.log(0.45)),
                             ("x", math.log(0.04))], LABELS)
    assert got["tie"] == pytest.approx(math.log(0.01))
    # a token that starts two labels stands for neither; nothing is ever below the floor
    got = read_top_logprobs([("ti", math.log(0.9)), ("x", math.log(0.1))], ["tie", "tidy"])
    assert got == {"tie": FLOOR_LOGPROB, "tidy": FLOOR_LOGPROB}


# --- the task -------------------------------------------------------------------------


def test_task_reads_fields_and_labels_from_the_data():
    task = make_task("classification", scorer="hashing")  # the bundled preference sample
    assert isinstance(task, ClassificationTask)
    assert task.input_fields == ("prompt", "response_a", "response_b")
    assert task.target_field == "label" and task.labels == LABELS
    assert task.scorer_name == "label-probability"
    assert sum(task.splits.sizes().values()) == 48


def test_rendering_ends_where_the_label_comes():
    task = make_task("classification", scorer="hashing", train=8, val=4, test=4)
    example, demo = task.examples("test")[0], task.examples("train")[0]
    template = Template("Pick the better response.").with_demos([demo.as_fields("label")])
    [message] = task.render(template, example, chat=False)
    text = message["content"]
    assert text.startswith("Pick the better response.\n\n")
    assert f"Response A: {example.inputs['response_a']}" in text
    assert f"\nAnswer: {demo.target}\n\n" in text  # the demo shows its label after the cue
    assert text.endswith(f"Response B: {example.inputs['response_b']}\nAnswer: ")
    chat = task.render(template, example, chat=True)
    assert [m["role"] for m in chat] == ["system", "user", "assistant", "user"]
    assert chat[2]["content"] == demo.target and chat[-1]["content"].endswith("\nAnswer: ")
    inline = task.render(Template("Q: {prompt}\n1: {response_a}\n2: {response_b}"), example,
                         chat=False)[0]["content"]
    assert inline.endswith(f"2: {example.inputs['response_b']}\n\nAnswer: ")


def test_given_labels_fields_and_bad_rows(tmp_path):
    path = _write_csv(tmp_path / "d.csv", [("r1", "good", "pos"), ("r2", "bad", "neg"),
                                           ("r3", "meh", "neutral"), ("r4", "fine", "pos")])
    with pytest.raises(DataError) as info:
        ClassificationTask.from_file(path, scorer=None, labels=["pos", "neg"], train=1, val=1)
    assert (info.value.path, info.value.row, info.value.field) == (str(path), 3, "label")
    assert "'neutral' is not one of the labels" in str(info.value)
    with pytest.warns(DataWarning, match="row 3"):
        task = ClassificationTask.from_file(path, scorer=None, labels=["pos", "neg"], train=1,
                                            val=1, skip_bad_rows=True)
    assert task.labels == ["pos", "neg"] and sum(task.splits.sizes().values()) == 3
    assert task.input_fields == ("text",)
    assert task.start_template().instruction.endswith("one label: pos or neg.")


def test_unusable_label_sets_are_clear_errors(tmp_path):
    one = _write_csv(tmp_path / "one.csv", [("1", "x", "A"), ("2", "y", "A"), ("3", "z", "A")])
    with pytest.raises(ConfigError, match="at least two labels"):
        ClassificationTask.from_file(one, scorer=None, train=1, val=1)
    with pytest.raises(ConfigError, match="'tie' and 'tied'.*first tokens"):
        ClassificationTask(Splits([], [], []), labels=["tie", "tied", "A"])
    with pytest.raises(DataError, match="missing column"):
        ClassificationTask.from_file(one, scorer=None, target_field="winner", train=1, val=1)


# --- the LLM layer --------------------------------------------------------------------


def test_label_logprobs_are_charged_cached_counted_and_retried(tmp_path):
    fake = FakeLLM(fail_first=1, label_scores=_fixed({"A": 0.5, "B": 0.3, "tie": 0.1}))
    budget = Budget(9)
    llm = LLM(fake.model, cache=DiskCache(tmp_path), budget=budget, backoff=0.0)
    prompts = [[{"role": "user", "content": f"Q{i}\nAnswer: "}] for i in range(3)]
    first = llm.label_logprobs(prompts, LABELS)
    assert first == [{"A": math.log(0.5), "B": math.log(0.3), "tie": math.log(0.1)}] * 3
    assert budget.spent == 3 and len(fake.calls) == 4  # one transient failure retried
    assert fake.calls[-1]["params"] == {"labels": LABELS}
    assert llm.usage.calls == 3 and llm.usage.cache_hits == 0
    assert llm.label_logprobs(prompts, LABELS) == first  # from the disk cache
    assert len(fake.calls) == 4 and budget.spent == 6 and llm.usage.cache_hits == 3
    llm.label_logprobs(prompts[:1], ["A", "B"])  # the labels are part of the cache key
    assert len(fake.calls) == 5
    with pytest.raises(BudgetExhausted):
        llm.label_logprobs(prompts, LABELS)
    assert budget.spent == 7 and len(fake.calls) == 5  # nothing spent on a refused batch


def test_litellm_provider_log_probs_through_an_openai_server():
    def tokens(prompt):
        return {" A": math.log(0.5), "B": math.log(0.2), " tie": math.log(0.1),
                " The": math.log(0.15)}

    prompts = [[{"role": "user", "content": "Which is better?\nAnswer: "}]]
    with FakeOpenAIServer(token_logprobs=tokens) as server:
        llm = LLM("openai/fake-judge", api_base=server.url, api_key="sk-test")
        [got] = llm.label_logprobs(prompts, LABELS)
        body = server.bodies[-1]
    assert got == pytest.approx({"A": math.log(0.5), "B": math.log(0.2), "tie": math.log(0.1)})
    assert body["logprobs"] is True and body["top_logprobs"] == 20
    assert body["max_tokens"] == 1 and body["temperature"] == 0.0


def test_provider_without_log_probs_is_a_clear_error():
    prompts = [[{"role": "user", "content": "Which is better?\nAnswer: "}]]
    with FakeOpenAIServer(logprobs=False) as server:
        llm = LLM("openai/no-logprobs", api_base=server.url, api_key="sk-test")
        with pytest.raises(LLMError, match="model openai/no-logprobs returned no log-prob"):
            llm.label_logprobs(prompts, LABELS)


def test_evaluation_through_an_openai_server_reports_metrics():
    task = make_task("classification", scorer="hashing", train=4, val=4, test=4)
    with FakeOpenAIServer() as server:
        llm = LLM("openai/fake-judge", api_base=server.url, api_key="sk-test")
        ev = Evaluator(task, llm).evaluate(task.start_template(), "val")
        assert server.count == 4
    sums = [sum(json.loads(p.split(" ", 1)[1]).values()) for p in ev.predictions]
    assert sums == pytest.approx([1.0] * 4, abs=1e-5)
    assert set(ev.metrics) == {"log_loss", "accuracy"} and math.isfinite(ev.metrics["log_loss"])


# --- evaluation and the optimizers ----------------------------------------------------


def test_evaluation_scores_are_true_label_probabilities_with_known_metrics(tmp_path):
    setup = FakeSetup(task="classification", label_scores=_fixed({"A": 0.5, "B": 0.3, "tie": 0.1}),
                      storage=f"sqlite:///{tmp_path}/c.db")
    ev = setup.evaluator.evaluate(setup.task.start_template(), "val")
    truth = [e.target for e in setup.task.examples("val")]
    expected = {"A": 5 / 9, "B": 3 / 9, "tie": 1 / 9}  # the softmax over the three labels
    assert ev.scores == pytest.approx([expected[t] for t in truth], abs=1e-6)
    assert ev.metrics["log_loss"] == pytest.approx(
        -np.mean([math.log(expected[t]) for t in truth]), abs=1e-5)
    assert ev.metrics["accuracy"] == pytest.approx(truth.count("A") / len(truth))
    [trial] = setup.tracker.trials()
    assert trial.user_attrs["metrics"] == pytest.approx(ev.metrics)
    assert trial.value == pytest.approx(ev.score)


@pytest.mark.parametrize("name", optimizers.names())
def test_every_optimizer_on_classification(name):
    setup = FakeSetup(task="classification", budget=BUDGET)
    if name == "mean-prompt":  # a metric attack on SCS: nothing to attack here
        with pytest.raises(ConfigError, match="mean-prompt.*cannot run on task classification"):
            setup.optimize(optimizers.get(name)())
        return
    result = setup.optimize(optimizers.get(name)())
    assert setup.budget.spent <= BUDGET and setup.calls == setup.budget.spent
    label_calls = [c for c in setup.fake.calls if "labels" in c["params"]]
    assert label_calls and all(c["params"]["labels"] == LABELS for c in label_calls)
    finals = [e for e in setup.evaluator.history
              if e.split == "val" and e.template.id == result.template.id]
    assert finals and result.val_score == pytest.approx(finals[-1].score)
    for ev in setup.evaluator.history:
        assert all(0.0 <= s <= 1.0 for s in ev.scores)
        assert math.isfinite(ev.metrics["log_loss"]) and 0 <= ev.metrics["accuracy"] <= 1
    for demo in result.template.demos:  # demos show labels, never prediction strings
        assert dict(demo)["label"] in LABELS


def test_random_and_tpe_draw_on_the_tasks_own_instructions():
    task = FakeSetup(task="classification").task
    pool = task.instruction_pool
    for name in ("random", "tpe"):
        setup = FakeSetup(task="classification", budget=BUDGET)
        setup.optimize(optimizers.get(name)())
        tried = {e.template.instruction for e in setup.evaluator.history} - {
            task.start_template().instruction}
        assert tried and tried <= set(pool), name
        assert all(e.template.answer_prefix == "" for e in setup.evaluator.history)
    # labels repeat, so sharing one with a scored example leaks nothing: tpe tries demos
    assert any(e.template.demos for e in setup.evaluator.history)


# --- end to end ------------------------------------------------------------------------


def test_run_reports_log_loss_and_accuracy(tmp_path):
    fake = FakeLLM()
    url = f"sqlite:///{tmp_path}/r.db"
    result = run("opro", task="classification", model=fake.model, budget=40, storage=url,
                 study="cls", train=8, val=4, test=8, scorer="hashing")
    assert set(result.test_metrics) == set(result.start_test_metrics) == {"log_loss", "accuracy"}
    stored = optuna.load_study(study_name="cls", storage=url).user_attrs["result"]
    assert stored["test_metrics"] == pytest.approx(result.test_metrics)
    assert stored["scorer"] == "label-probability"
    with pytest.raises(ConfigError, match="--suffix .* metric is label-probability"):
        run("identity", task="classification", model=fake.model, budget=20, suffix=True,
            storage=url, train=8, val=4, test=8)


def test_cli_run_prints_log_loss_and_accuracy(tmp_path):
    fake = FakeLLM()
    result = CliRunner().invoke(app, [
        "run", "--task", "classification", "--data", str(SAMPLE), "--method", "opro",
        "--model", fake.model, "--budget", "40", "--storage", f"sqlite:///{tmp_path}/c.db",
        "--train", "8", "--val", "4", "--test", "8"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    assert "test metrics: best log loss " in out and ", accuracy " in out
    assert "best template (test p(true label)" in out
    assert "--task" in CliRunner().invoke(app, ["run", "-h"]).stdout


def test_compare_keeps_only_the_start_baseline(tmp_path):
    from promptopt.comparison import compare

    fake = FakeLLM()
    result = compare(["identity"], task="classification", model=fake.model, budget=20,
                     storage=f"sqlite:///{tmp_path}/k.db", out_dir=tmp_path / "k", train=8,
                     val=4, test=8)
    assert [row.name for row in result.rows if row.kind == "baseline"] == ["start template"]
    assert "not an embedding similarity" in (tmp_path / "k" / "report.md").read_text()


# --- the embedded model ----------------------------------------------------------------


@pytest.mark.embedded
def test_embedded_label_logprobs_are_exact_and_check_first_tokens():
    llm = LLM("llamacpp/gemma-3-270m")
    primed = "Pick A.\nAnswer: A\n\nPick A.\nAnswer: A\n\nPick A.\nAnswer: "
    [row] = llm.label_logprobs([[{"role": "user", "content": primed}]], LABELS)
    assert all(math.isfinite(v) and v < 0 for v in row.values())
    assert sum(math.exp(v) for v in row.values()) <= 1.0
    assert max(row, key=row.get) == "A"
    with pytest.raises(ConfigError, match="same token"):
        llm.label_logprobs([[{"role": "user", "content": primed}]], ["A", "A."])


@pytest.mark.embedded
def test_an_optimizer_on_the_embedded_model(tmp_path, embedded_cache):
    # random search: every call is a label log-prob request (no slow proposer generations)
    url = f"sqlite:///{tmp_path}/e.db"
    result = run("random", task="classification", budget=16, seed=0, storage=url, study="e",
                 cache_dir=embedded_cache, train=4, val=3, test=3,
                 settings={"minibatch_size": 2})
    assert result.budget_spent <= 16 and result.trials >= 4
    for key in ("log_loss", "accuracy"):
        assert math.isfinite(result.test_metrics[key])
        assert math.isfinite(result.start_test_metrics[key])
    study = optuna.load_study(study_name="e", storage=url)
    for trial in study.trials:
        for row in trial.user_attrs["predictions"]:
            probs = json.loads(row["prediction"].split(" ", 1)[1])
            assert sum(probs.values()) == pytest.approx(1.0, abs=1e-4)
            assert row["score"] == pytest.approx(probs[row["target"]], abs=1e-4)
