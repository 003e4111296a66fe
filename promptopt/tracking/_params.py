"""What an evaluation's trial is in Optuna's terms: its state, parameters and step.

The study's objective is the validation score. An evaluation of a template on the
validation split is a ``COMPLETE`` trial whose value is its score, so the study's best
trial (``study.best_trial``, the dashboard's "Best Trial") is the best validated
template. Every other evaluation (a train minibatch, the final test scoring, a
constant prediction) is a ``PRUNED`` trial: its score is its value and its one
intermediate value (at its search step), so it is plotted but never "best". A failed
evaluation is a ``FAIL`` trial, as before.

Each trial's parameters, with distributions, make the dashboard's plots mean something:
``method``, ``split``, ``step`` (the optimizer's step, generation, round or trial when
it has one), ``n_examples``, ``n_demos``, ``instruction_chars``, and the optimizer's own
parameters when it passes them in the evaluation's meta (``params`` and
``distributions``, Optuna's JSON; TPE's template parts).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from promptopt.registry import optimizers

SPLITS = ("train", "val", "test")
"""The splits, in the ``split`` parameter's categorical order."""
OBJECTIVE_SPLIT = "val"
"""The split whose evaluations are the study's objective (``COMPLETE`` trials)."""
_META_ONLY = ("params", "distributions")


def is_objective(attrs: Mapping[str, Any]) -> bool:
    """Whether an evaluation with these trial attributes is a ``COMPLETE`` trial: a
    template (not a constant prediction) scored on the validation split."""
    meta = attrs.get("meta") or {}
    return attrs.get("split") == OBJECTIVE_SPLIT and not meta.get("constant")


def is_evaluation(trial: Any, *, failed: bool = False) -> bool:
    """Whether ``trial`` records an evaluation (not a worker's claim or registration):
    a ``COMPLETE`` or ``PRUNED`` trial with a template (``failed``: ``FAIL`` ones too).

    Studies written before validation became the objective hold their train and test
    evaluations as ``COMPLETE`` trials; they count the same.
    """
    states = ("COMPLETE", "PRUNED", "FAIL") if failed else ("COMPLETE", "PRUNED")
    return trial.state.name in states and "template_id" in trial.user_attrs


def evaluation_trials(trials: Iterable[Any], *, failed: bool = False) -> list[Any]:
    """The trials that record evaluations (see :func:`is_evaluation`), by number."""
    return sorted((t for t in trials if is_evaluation(t, failed=failed)), key=lambda t: t.number)


def search_step(attrs: Mapping[str, Any]) -> int | None:
    """The optimizer's step of an evaluation (``meta["step"]``), if it has one."""
    step = (attrs.get("meta") or {}).get("step")
    return step if isinstance(step, int) and not isinstance(step, bool) and step >= 0 else None


def stored_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    """``meta`` as a trial attribute: without the parameters, which the trial holds."""
    return {k: v for k, v in meta.items() if k not in _META_ONLY}


def trial_params(attrs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The parameters and their Optuna distributions for an evaluation's trial.

    Args:
        attrs: The trial's attributes as the evaluator writes them (``method``,
            ``split``, ``n_examples``, ``template``, ``meta``).

    Returns:
        ``(params, distributions)`` for :func:`optuna.trial.create_trial`.
    """
    from optuna.distributions import (
        CategoricalDistribution,
        IntDistribution,
        json_to_distribution,
    )

    params: dict[str, Any] = {}
    dists: dict[str, Any] = {}

    def integer(name: str, value: Any, low: int, high: int) -> None:
        if isinstance(value, int) and not isinstance(value, bool) and value >= low:
            params[name] = value
            dists[name] = IntDistribution(low, max(high, value))

    method = attrs.get("method")
    choices = sorted(optimizers.names())
    if isinstance(method, str) and method in choices:
        # Every registered method is a choice, so the trials of one study (`auto` races
        # several methods) share one distribution; an unregistered name (a library
        # caller's own label) stays in the ``method`` attribute only.
        params["method"], dists["method"] = method, CategoricalDistribution(choices)
    if attrs.get("split") in SPLITS:
        params["split"], dists["split"] = attrs["split"], CategoricalDistribution(SPLITS)
    integer("step", search_step(attrs), 0, 100)
    integer("n_examples", attrs.get("n_examples"), 0, 100)
    template = attrs.get("template") or {}
    integer("n_demos", len(template.get("demos") or ()), 0, 8)
    integer("instruction_chars", len(str(template.get("instruction", ""))), 0, 1000)
    meta = attrs.get("meta") or {}
    given, spaces = meta.get("params") or {}, meta.get("distributions") or {}
    for name, value in given.items():
        if name in spaces and name not in params:
            try:
                dist = json_to_distribution(spaces[name])
                if dist._contains(dist.to_internal_repr(value)):
                    params[name], dists[name] = value, dist
            except (ValueError, TypeError, KeyError):
                continue  # a parameter Optuna cannot hold is left out, not fatal
    return params, dists
