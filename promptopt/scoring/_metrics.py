"""Metrics: how a task's predictions are judged against its targets.

Every metric is exposed through the scorer protocol the evaluator uses: an object
with a ``name`` and ``score(predictions, targets) -> per-example scores`` (higher is
better, ideally in [0, 1]). :func:`make_metric` builds one from

- a built-in name: ``exact`` (:class:`ExactMatch`), ``rouge-l`` (:class:`RougeL`),
  ``scs`` (sharpened cosine similarity of sentence embeddings, the prompt-recovery
  metric; the embedding model is the ``--scorer`` choice, ``auto`` by default);
- a name that a plugin package registered in the entry-point group
  ``promptopt.scoring._metrics``;
- a Python function ``metric(prediction, target) -> float``, or, decorated with
  :func:`batch_metric`, ``metric(predictions, targets) -> list of floats``;
- a ``"module:function"`` string naming such a function (the CLI's ``--metric``);
  the current directory is searched too, so ``--metric my_metrics:close_enough``
  finds ``./my_metrics.py``;
- a scorer object or class (anything with ``score``), used as it is (a class is
  instantiated without arguments).

New metrics are registered by name in :data:`metrics`; a registered entry may be any
of the objects above, or a factory marked with :func:`metric_factory` that receives
the :class:`MetricOptions` (for metrics that need the embedding scorer)::

    metrics.register("human")(HumanMetric)
"""

from __future__ import annotations

import importlib
import math
import numbers
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from promptopt.errors import ConfigError, UnknownNameError
from promptopt.llm import DiskCache
from promptopt.registry import metrics
from promptopt.scoring._hashing import HashingScorer
from promptopt.scoring._scs import SCSScorer

_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class MetricOptions:
    """What a :func:`metric_factory` receives.

    Attributes:
        scorer: The embedding scorer chosen by ``--scorer`` (a name such as ``"auto"``
            or ``"minilm"``, or an :class:`~promptopt.scoring._scs.SCSScorer`); used by ``scs``.
    """

    scorer: Any = "auto"


def metric_factory(fn: Callable[[MetricOptions], Any]) -> Callable[[MetricOptions], Any]:
    """Mark ``fn(options) -> scorer`` as a factory, for registering in :data:`metrics`."""
    fn.promptopt_factory = True  # type: ignore[attr-defined]
    return fn


def batch_metric(fn: Callable[[list[str], list[str]], Sequence[float]]) -> Any:
    """Mark ``fn(predictions, targets) -> scores`` as a batch metric (one call per evaluation)."""
    fn.promptopt_batch = True  # type: ignore[attr-defined]
    return fn


def normalize_text(text: str) -> str:
    """Case-folded, with every run of whitespace collapsed to one space and ends trimmed."""
    return " ".join(str(text).casefold().split())


def rouge_tokens(text: str) -> list[str]:
    """Case-folded word tokens (runs of letters, digits and ``_``); punctuation is dropped."""
    return _WORD.findall(str(text).casefold())


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token lists."""
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, 1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(prediction: str, target: str) -> float:
    """ROUGE-L F1 of one prediction against one target (0 when either has no token).

    ``P = LCS / len(prediction)``, ``R = LCS / len(target)``, ``F1 = 2PR / (P + R)``
    over :func:`rouge_tokens` (no stemming, no stopword removal).
    """
    pred, ref = rouge_tokens(prediction), rouge_tokens(target)
    lcs = lcs_length(pred, ref) if pred and ref else 0
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def _check_lengths(predictions: Sequence[str], targets: Sequence[str]) -> None:
    if len(predictions) != len(targets):
        raise ValueError("predictions and targets differ in length")


class ExactMatch:
    """Normalized exact match: 1 or 0, ignoring case and whitespace, not punctuation.

    Prediction and target match when their :func:`normalize_text` forms are equal:
    case-folded, runs of spaces and newlines counted as one space, ends trimmed.
    Punctuation counts: ``"Paris."`` does not match ``"Paris"``.
    """

    name = "exact"

    def score(self, predictions: Sequence[str], targets: Sequence[str]) -> np.ndarray:
        """Per-example 1.0 or 0.0."""
        _check_lengths(predictions, targets)
        pairs = zip(predictions, targets, strict=True)
        return np.array([float(normalize_text(p) == normalize_text(t)) for p, t in pairs])


class RougeL:
    """ROUGE-L F1 on word tokens (longest common subsequence; case-insensitive)."""

    name = "rouge-l"

    def score(self, predictions: Sequence[str], targets: Sequence[str]) -> np.ndarray:
        """Per-example ROUGE-L F1 in [0, 1]."""
        _check_lengths(predictions, targets)
        pairs = zip(predictions, targets, strict=True)
        return np.array([rouge_l(p, t) for p, t in pairs], dtype=np.float64)


def object_spec(obj: Any) -> str:
    """``"module:qualname"`` of a function or class (of an instance: its class, or its
    ``spec`` attribute when it has one); what a stored run re-imports the metric by."""
    spec = getattr(obj, "spec", None)
    if isinstance(spec, str):
        return spec
    target = obj if callable(obj) and hasattr(obj, "__qualname__") else type(obj)
    return f"{target.__module__}:{target.__qualname__}"


def _number(value: Any, name: str, index: int, prediction: str, target: str) -> float:
    if isinstance(value, numbers.Real) and math.isfinite(float(value)):
        return float(value)
    raise ConfigError(
        f"metric {name} returned {value!r} for example {index} (prediction {prediction!r}, "
        f"target {target!r}); a metric must return a finite number"
    )


class FunctionMetric:
    """A Python function as a metric: ``fn(prediction, target) -> float`` per example,
    or ``fn(predictions, targets) -> scores`` when marked with :func:`batch_metric`.

    A per-example function may return ``(score, feedback)``: the feedback text is kept
    and given back by :meth:`feedback` (reflective methods show it to the proposer).

    Args:
        fn: The function.
        name: The scorer name recorded with every score (default ``module:qualname``).
    """

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None) -> None:
        self.fn = fn
        self.batch = bool(getattr(fn, "promptopt_batch", False))
        self.spec = object_spec(fn)
        self.name = name or self.spec
        self._feedback: dict[tuple[str, str], str] = {}

    def feedback(self, prediction: str, target: str) -> str | None:
        """The feedback text the function returned for this prediction and target, if any."""
        return self._feedback.get((prediction, target))

    def _fail(self, exc: Exception, where: str) -> ConfigError:
        return ConfigError(f"metric {self.name} failed {where}: {type(exc).__name__}: {exc}")

    def score(self, predictions: Sequence[str], targets: Sequence[str]) -> np.ndarray:
        """Per-example scores; raises :class:`ConfigError` on an error or a non-number."""
        _check_lengths(predictions, targets)
        preds, refs = list(predictions), list(targets)
        if self.batch:
            try:
                values = list(self.fn(preds, refs))
            except Exception as exc:
                raise self._fail(exc, f"on a batch of {len(preds)}") from exc
            if len(values) != len(preds):
                raise ConfigError(
                    f"metric {self.name} returned {len(values)} scores for {len(preds)} examples"
                )
        else:
            values = []
            for i, (p, t) in enumerate(zip(preds, refs, strict=True)):
                try:
                    value = self.fn(p, t)
                except Exception as exc:
                    where = f"on example {i} (prediction {p!r}, target {t!r})"
                    raise self._fail(exc, where) from exc
                if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], str):
                    value, self._feedback[(p, t)] = value
                values.append(value)
        rows = enumerate(zip(values, preds, refs, strict=True))
        return np.array([_number(v, self.name, i, p, t) for i, (v, p, t) in rows], dtype=np.float64)


def import_object(spec: str) -> Any:
    """Import ``"module:attr"`` (dotted attributes allowed); the current directory is
    searched after ``sys.path``. Raises :class:`ConfigError` saying what is missing."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"expected module:function, got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name.split(".")[0] or os.getcwd() in sys.path:
            raise ConfigError(f"cannot import {spec!r}: {exc}") from None
        sys.path.append(os.getcwd())
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as again:
            raise ConfigError(f"cannot import {spec!r}: {again}") from None
        finally:
            sys.path.remove(os.getcwd())
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            hint = (" (a metric defined in a script can be used again only from that script)"
                    if module_name == "__main__" else "")
            raise ConfigError(f"cannot import {spec!r}: {module_name} has no {attr!r}{hint}")
        obj = getattr(obj, part)
    return obj


def _from_object(obj: Any, name: str | None, options: MetricOptions) -> Any:
    """A scorer from any metric object (see the module docstring)."""
    if getattr(obj, "promptopt_factory", False):
        return obj(options)
    if isinstance(obj, type) and callable(getattr(obj, "score", None)):
        return obj()
    if callable(getattr(obj, "score", None)) and hasattr(obj, "name"):
        return obj
    if callable(obj):
        return FunctionMetric(obj, name=name)
    raise ConfigError(
        f"metric {name or obj!r} is neither a function nor an object with score(predictions, "
        "targets)"
    )


def make_metric(metric: Any = "exact", *, scorer: Any = "auto") -> Any:
    """A scorer-protocol object (``name``, ``score(predictions, targets)``) for ``metric``.

    Args:
        metric: A registered name (``exact``, ``rouge-l``, ``scs``, plugins), a
            ``"module:function"`` string, a function, or a scorer object or class.
        scorer: The embedding scorer for ``scs`` (a name or an SCSScorer).

    Raises:
        UnknownNameError: an unknown name (the message lists the valid ones).
        ConfigError: a ``module:function`` that cannot be imported, or an unusable object.
    """
    options = MetricOptions(scorer=scorer)
    if not isinstance(metric, str):
        return _from_object(metric, None, options)
    if metric.split(":", 1)[0] == "human":  # "human:examples=2,timeout=600"
        from promptopt.scoring._human import HumanScorer

        return HumanScorer.from_spec(metric)
    if ":" in metric and metric not in metrics:
        return _from_object(import_object(metric), metric, options)
    try:
        obj = metrics.get(metric)
    except UnknownNameError as exc:
        raise UnknownNameError(f"{exc}; or give module:function for a Python metric") from None
    return _from_object(obj, metric, options)


def is_embedding_metric(scorer: Any) -> bool:
    """Whether ``scorer`` is an embedding similarity (has ``embed`` and ``sharpen``), as
    the mean-prompt attack needs."""
    return callable(getattr(scorer, "embed", None)) and callable(getattr(scorer, "sharpen", None))


def make_scorer(
    scorer: str | Any = "auto", *, cache: bool = True, cache_dir: str | None = None
) -> Any:
    """A scorer from a name (or pass an object through).

    ``"hashing"`` is the model-free :class:`~promptopt.scoring.HashingScorer` (tests,
    dry runs); ``"human"`` (with its options) a person rating in optuna-dashboard;
    anything else an :class:`~promptopt.scoring.SCSScorer` (``auto``, ``minilm``,
    ``sentence-t5``, a sentence-transformers name or a local folder).
    """
    if not isinstance(scorer, str):
        return scorer
    if scorer == "hashing":
        return HashingScorer()
    if scorer.split(":", 1)[0] == "human":
        return make_metric(scorer)
    return SCSScorer(scorer, cache=DiskCache(cache_dir, "embeddings") if cache else None)


def describe(name: str) -> str:
    """The first docstring line of the metric registered as ``name``."""
    return (getattr(metrics.get(name), "__doc__", None) or "").strip().split("\n")[0]


@metric_factory
def scs(options: MetricOptions) -> Any:
    """Sharpened cosine similarity of sentence embeddings (model: --scorer, default auto)."""
    return make_scorer(options.scorer if options.scorer is not None else "auto")


metrics.register("exact")(ExactMatch)
metrics.register("rouge-l")(RougeL)
metrics.register("scs")(scs)


@metric_factory
def human(options: MetricOptions) -> Any:
    """A person rates outputs 1-5 in optuna-dashboard (human:examples=3,timeout=...,poll=...)."""
    from promptopt.scoring._human import HumanScorer

    return HumanScorer.from_spec("human")


metrics.register("human")(human)
