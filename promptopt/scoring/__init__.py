"""Scoring: the SCS embedding scorer, the hashing scorer, metrics by name, the human metric."""

from promptopt.registry import metrics
from promptopt.scoring._hashing import HashingScorer, stable_int
from promptopt.scoring._human import HumanScorer, normalize_rating, rating_note, ratings_study_name
from promptopt.scoring._metrics import (
    ExactMatch,
    FunctionMetric,
    MetricOptions,
    RougeL,
    batch_metric,
    describe,
    is_embedding_metric,
    lcs_length,
    make_metric,
    make_scorer,
    metric_factory,
    object_spec,
    rouge_l,
)
from promptopt.scoring._scs import MINILM, FallbackWarning, SCSScorer

__all__ = [
    "ExactMatch",
    "FallbackWarning",
    "FunctionMetric",
    "HashingScorer",
    "HumanScorer",
    "MINILM",
    "MetricOptions",
    "RougeL",
    "SCSScorer",
    "batch_metric",
    "describe",
    "is_embedding_metric",
    "lcs_length",
    "make_metric",
    "make_scorer",
    "metric_factory",
    "metrics",
    "normalize_rating",
    "object_spec",
    "rating_note",
    "ratings_study_name",
    "rouge_l",
    "stable_int",
]
