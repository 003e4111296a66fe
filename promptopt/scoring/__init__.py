"""Scoring: the SCS embedding scorer, the hashing scorer, metrics by name, the human metric,
and paired intervals on score gains."""

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
from promptopt.scoring._stats import (
    DEFAULT_LEVEL,
    DEFAULT_RESAMPLES,
    GainInterval,
    adjusted_level,
    format_level,
    paired_interval,
)

__all__ = [
    "DEFAULT_LEVEL",
    "DEFAULT_RESAMPLES",
    "ExactMatch",
    "FallbackWarning",
    "FunctionMetric",
    "GainInterval",
    "HashingScorer",
    "HumanScorer",
    "MINILM",
    "MetricOptions",
    "RougeL",
    "adjusted_level",
    "SCSScorer",
    "batch_metric",
    "describe",
    "format_level",
    "is_embedding_metric",
    "lcs_length",
    "make_metric",
    "make_scorer",
    "metric_factory",
    "metrics",
    "normalize_rating",
    "object_spec",
    "paired_interval",
    "rating_note",
    "ratings_study_name",
    "rouge_l",
    "stable_int",
]
