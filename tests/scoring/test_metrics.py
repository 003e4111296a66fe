"""Metrics: built-ins on hand-computed pairs, Python functions, module:function, registry."""

from __future__ import annotations

import numpy as np
import pytest

from promptopt.errors import ConfigError, UnknownNameError
from promptopt.scoring import (
    ExactMatch,
    FunctionMetric,
    HashingScorer,
    MetricOptions,
    RougeL,
    SCSScorer,
    batch_metric,
    is_embedding_metric,
    lcs_length,
    make_metric,
    metric_factory,
    metrics,
    rouge_l,
)


def length_ratio(prediction: str, target: str) -> float:
    """A per-example metric used by the tests (shorter over longer length)."""
    a, b = len(prediction), len(target)
    return min(a, b) / max(a, b)


@batch_metric
def first_letter_batch(predictions: list[str], targets: list[str]) -> list[float]:
    """A batch metric used by the tests: 1 when the first letters agree."""
    pairs = zip(predictions, targets, strict=True)
    return [float(p[:1].lower() == t[:1].lower()) for p, t in pairs]


@pytest.fixture
def clean_metrics(monkeypatch):
    """Registrations made by a test are undone afterwards."""
    monkeypatch.setattr(metrics, "_items", dict(metrics._items))
    return metrics


def test_exact_match_ignores_case_and_whitespace_only():
    scores = ExactMatch().score(
        ["  Paris ", "new  york", "Paris.", "Lyon", "Rome\nItaly"],
        ["paris", "New York", "Paris", "Paris", "rome italy"],
    )
    assert scores.tolist() == [1.0, 1.0, 0.0, 0.0, 1.0]


def test_rouge_l_on_hand_computed_pairs():
    # LCS("the cat sat on the mat", "the cat is on the mat") = "the cat on the mat" = 5
    assert rouge_l("the cat sat on the mat", "the cat is on the mat") == pytest.approx(5 / 6)
    # LCS = "b d" = 2; P = 2/4, R = 2/3, F1 = 2PR/(P+R) = 4/7
    assert rouge_l("a b c d", "b d e") == pytest.approx(4 / 7)
    assert rouge_l("The CAT!", "the cat") == 1.0  # case and punctuation do not count
    assert rouge_l("dog", "cat") == 0.0
    assert rouge_l("", "cat") == 0.0 and rouge_l("...", "cat") == 0.0
    assert lcs_length(list("ABCBDAB"), list("BDCABA")) == 4


def test_rouge_l_scorer_is_per_example():
    scores = RougeL().score(["a b c d", "x"], ["b d e", "x"])
    assert scores == pytest.approx([4 / 7, 1.0])
    with pytest.raises(ValueError):
        RougeL().score(["a"], [])


def test_built_in_names_resolve_to_scorers():
    assert make_metric("exact").name == "exact"
    assert make_metric("rouge-l").name == "rouge-l"
    scs = make_metric("scs", scorer="hashing")
    assert isinstance(scs, SCSScorer) and is_embedding_metric(scs)
    assert scs.score(["make it formal"], ["make it formal"])[0] == pytest.approx(1.0)
    assert not is_embedding_metric(make_metric("exact"))
    shared = HashingScorer()
    assert make_metric("scs", scorer=shared) is shared  # the --scorer object is used as is


def test_python_function_metric_per_example_and_batch():
    metric = make_metric(length_ratio)
    assert isinstance(metric, FunctionMetric)
    assert metric.name == "test_metrics:length_ratio"
    assert metric.score(["ab", "abcd"], ["abcd", "abcd"]).tolist() == [0.5, 1.0]
    batch = make_metric(first_letter_batch)
    assert batch.batch and batch.score(["Paris", "Lyon"], ["paris", "Rome"]).tolist() == [1, 0]


def test_module_function_string_is_imported_from_the_working_directory(tmp_path):
    (tmp_path / "my_csv_metrics.py").write_text(
        "def starts_same(prediction, target):\n"
        "    return float(prediction.split()[0] == target.split()[0])\n"
    )
    metric = make_metric("my_csv_metrics:starts_same")  # the test's cwd is tmp_path
    assert metric.name == "my_csv_metrics:starts_same"
    assert metric.score(["Paris France", "Rome"], ["Paris", "Lyon"]).tolist() == [1.0, 0.0]


def test_bad_metric_names_and_imports_are_clear_errors():
    with pytest.raises(UnknownNameError, match=r"unknown metric 'f1'.*exact, human, rouge-l, scs.*"
                                               r"module:function"):
        make_metric("f1")
    with pytest.raises(ConfigError, match=r"cannot import 'no_such_module_xyz:f'"):
        make_metric("no_such_module_xyz:f")
    with pytest.raises(ConfigError, match=r"test_metrics has no 'nope'"):
        make_metric("test_metrics:nope")
    with pytest.raises(ConfigError, match="only from that script"):
        make_metric("__main__:surely_not_defined_here")
    with pytest.raises(ConfigError, match="neither a function"):
        make_metric(42)


def test_metric_that_misbehaves_names_the_example():
    with pytest.raises(ConfigError, match=r"returned 'high' for example 1 .*'b'"):
        make_metric(lambda p, t: 1.0 if p == "a" else "high").score(["a", "b"], ["a", "a"])
    with pytest.raises(ConfigError, match=r"returned nan"):
        make_metric(lambda p, t: float("nan")).score(["a"], ["a"])

    def broken(prediction: str, target: str) -> float:
        raise KeyError("oops")

    with pytest.raises(ConfigError, match=r"failed on example 0 .*KeyError") as info:
        make_metric(broken).score(["a"], ["b"])
    assert isinstance(info.value.__cause__, KeyError)

    @batch_metric
    def short(predictions: list[str], targets: list[str]) -> list[float]:
        return [1.0]

    with pytest.raises(ConfigError, match="returned 1 scores for 2 examples"):
        make_metric(short).score(["a", "b"], ["a", "b"])


def test_scorer_objects_and_classes_pass_through():
    exact = ExactMatch()
    assert make_metric(exact) is exact
    assert isinstance(make_metric(RougeL), RougeL)


def test_registry_takes_new_metrics_in_one_line(clean_metrics):
    clean_metrics.register("length")(length_ratio)
    metric = make_metric("length")
    assert metric.name == "length" and metric.score(["ab"], ["abcd"]).tolist() == [0.5]

    seen: list[MetricOptions] = []

    @metric_factory
    def embedding_aware(options: MetricOptions) -> ExactMatch:
        seen.append(options)
        return ExactMatch()

    clean_metrics.register("aware")(embedding_aware)
    assert make_metric("aware", scorer="minilm").name == "exact"
    assert seen == [MetricOptions(scorer="minilm")]
    assert "length" in clean_metrics.names()


def test_scores_are_float_arrays():
    for name in ("exact", "rouge-l"):
        out = make_metric(name).score(["a b"], ["a b"])
        assert isinstance(out, np.ndarray) and out.dtype == np.float64 and out[0] == 1.0
