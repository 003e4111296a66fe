"""Feedback text: each task explains a score in words for the reflective methods."""

from __future__ import annotations

from promptopt.data import Example
from promptopt.scoring import make_metric
from promptopt.tasks import CSVTask
from promptopt.testing import FakeSetup


def scored_with_reason(prediction: str, target: str) -> tuple[float, str]:
    """A module:function metric that explains itself."""
    same = prediction.strip().lower() == target.strip().lower()
    return (1.0 if same else 0.0), ("exact" if same else f"expected {target!r}")


def test_prompt_recovery_feedback_names_the_missed_content_words():
    task = FakeSetup().task
    example = Example(id="x", inputs={"original_text": "a", "rewritten_text": "b"},
                      target="Rewrite this text as a pirate shanty.")
    text = task.feedback("Rewrite this text as a poem.", example, 0.42)
    assert "True prompt: Rewrite this text as a pirate shanty." in text
    assert "Similarity: 0.42" in text
    assert "missed: pirate, shanty" in text


def test_classification_feedback_shows_label_probabilities():
    task = FakeSetup(task="classification").task
    labels = task.labels
    example = task.examples("train")[0]
    wrong = next(lb for lb in labels if lb != example.target)
    probs = {lb: (0.8 if lb == wrong else 0.2 / (len(labels) - 1)) for lb in labels}
    prediction = wrong + " " + __import__("json").dumps(probs)
    text = task.feedback(prediction, example, probs[example.target])
    assert f"True label: {example.target}" in text and f"favoured {wrong}" in text
    assert f"{wrong} 0.80" in text


def test_function_metric_feedback_reaches_the_task():
    metric = make_metric(scored_with_reason)
    assert list(metric.score(["b", "a"], ["a", "a"])) == [0.0, 1.0]
    task = CSVTask.__new__(CSVTask)  # feedback only needs the scorer
    task.scorer = metric
    example = Example(id="1", inputs={}, target="a")
    assert task.feedback("b", example, 0.0) == "expected 'a'"
    assert task.feedback("zzz", example, 0.0).startswith("Score 0.00")  # never scored
