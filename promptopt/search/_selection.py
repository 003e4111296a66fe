"""The final choice: a finalist replaces the start only when its validation gain is credible.

With a few noisy validation examples, the best of several candidates beats the start
by luck (the winner's curse). :func:`choose_final` therefore scores the start and the
finalists on the same validation examples and compares each finalist with the start
through a paired bootstrap interval of the per-example differences
(:func:`~promptopt.scoring.paired_interval`, seeded from the run seed). The level of
each interval is Bonferroni-adjusted for the number of finalists
(:func:`~promptopt.scoring.adjusted_level`): a finalist is accepted only when its whole
adjusted interval lies above 0, and the best accepted one (by mean gain) wins;
otherwise the start is kept, and a note says so with the figures.

Growing validation (:attr:`Selection.val_first`): finalists are first scored on the
first ``val_first`` examples of the validation split; those whose interval lies wholly
below 0 are dropped, the better half of the rest by mean gain (successive halving; equal
gains: the higher lower end first) is scored on the next examples, the examples doubling
each round, up to the whole split. Only a finalist scored on the whole split can be
chosen. The start is scored on the whole split first. Without ``val_first`` (the
default) every finalist is scored on the whole split at once, as before.
:class:`Selection` holds these settings and the budget the final choice holds back
(:meth:`Selection.reserve`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from promptopt.data import Example
from promptopt.errors import BudgetExhausted, ConfigError
from promptopt.evaluator import Evaluator
from promptopt.scoring import (
    DEFAULT_LEVEL,
    DEFAULT_RESAMPLES,
    GainInterval,
    adjusted_level,
    format_level,
    paired_interval,
)
from promptopt.template import Template


@dataclass(frozen=True, kw_only=True)
class Selection:
    """Settings of the final choice (``promptopt run --select KEY=VALUE``).

    Attributes:
        confidence: Confidence level of the gain intervals (0.5-0.999); the family of
            finalists compared with the start keeps it (Bonferroni).
        val_first: Validation examples every finalist is first scored on; close ones
            grow (doubling) up to the whole validation split. None: the whole split at
            once (no growth).
        reserve_share: The most of the budget left when the search starts that the
            final choice holds back (the start and at least one finalist always fit).
        resamples: Bootstrap resamples per interval.
    """

    confidence: float = DEFAULT_LEVEL
    val_first: int | None = None
    reserve_share: float = 0.5
    resamples: int = DEFAULT_RESAMPLES

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Selection:
        """Settings from a mapping (unset keys default), validated.

        Raises:
            ConfigError: an unknown key (the message lists the valid ones) or a bad value.
        """
        data = dict(data or {})
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ConfigError(f"unknown selection setting(s) {unknown} (--select); valid: "
                              f"{', '.join(names)}")
        selection = cls(**data)
        selection.validate()
        return selection

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings."""
        return dataclasses.asdict(self)

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming a bad setting."""

        def bad(name: str, requirement: str) -> ConfigError:
            return ConfigError(f"selection setting {name}={getattr(self, name)!r} is invalid "
                               f"(--select): {requirement}")

        if not isinstance(self.confidence, int | float) or not 0.5 <= self.confidence <= 0.999:
            raise bad("confidence", "must be a number from 0.5 to 0.999")
        if self.val_first is not None and (
            not isinstance(self.val_first, int) or isinstance(self.val_first, bool)
            or self.val_first < 2
        ):
            raise bad("val_first", "must be a whole number of examples, at least 2 (or null)")
        if not isinstance(self.reserve_share, int | float) or not 0 < self.reserve_share <= 1:
            raise bad("reserve_share", "must lie in (0, 1]")
        if not isinstance(self.resamples, int) or self.resamples < 100:
            raise bad("resamples", "must be a whole number, at least 100")

    def cuts(self, n_val: int) -> list[int]:
        """Where each round's examples end: ``val_first``, doubling, up to ``n_val``."""
        if self.val_first is None or self.val_first >= n_val:
            return [n_val]
        out, n = [], self.val_first
        while n < n_val:
            out.append(n)
            n *= 2
        return [*out, n_val]

    def cost(self, finalists: int, n_val: int) -> int:
        """Validation calls of the start and ``finalists`` finalists, the most halving allows."""
        total, alive, lo = n_val, finalists, 0
        for hi in self.cuts(n_val):
            total += alive * (hi - lo)
            alive, lo = math.ceil(alive / 2), hi
        return total

    def reserve(self, finalists: int, n_val: int, left: int | None) -> int:
        """LLM calls held back for the final choice.

        The cost of the start and as many finalists (up to ``finalists``) as fit in
        ``reserve_share`` of ``left``, but always the start and one finalist when they
        fit in ``left`` (a reserve for the start alone would return the start whatever
        the search found). ``left=None``: no budget limit.
        """
        if left is None:
            return self.cost(finalists, n_val)
        cap = max(self.cost(1, n_val), int(left * self.reserve_share))
        k = finalists
        while k > 0 and (self.cost(k, n_val) > cap or self.cost(k, n_val) > left):
            k -= 1
        return self.cost(k, n_val)


@dataclass
class Choice:
    """What :func:`choose_final` decided.

    Attributes:
        template: The chosen template (the start unless a finalist's gain is credible).
        val_score: Its mean score on the whole validation split.
        start_val_score: The start's.
        val_gain: The chosen template's gain over the start at the run's confidence
            level (0 for the start itself).
        best_other: The best finalist by mean gain at the adjusted level, when the start
            was kept (why it was not good enough); None otherwise.
        compared: Finalists compared with the start (the Bonferroni count).
        level: The per-finalist (adjusted) level.
        notes: Lines for the run's notes.
        val_scores: The chosen template's per-example scores on the whole validation
            split (the start's when it was kept).
        start_val_scores: The start's, on the same examples.
        chosen: Whether a finalist replaced the start.
    """

    template: Template
    val_score: float
    start_val_score: float
    val_gain: GainInterval
    best_other: GainInterval | None = None
    compared: int = 0
    level: float = DEFAULT_LEVEL
    notes: list[str] = field(default_factory=list)
    val_scores: list[float] = field(default_factory=list)
    start_val_scores: list[float] = field(default_factory=list)
    chosen: bool = False

    def record(self) -> dict[str, Any]:
        """What another worker's merge needs (:func:`choose_among_workers`): the
        confidence, the finalists compared, whether one was chosen, and the chosen
        template's and the start's per-example validation scores."""
        return {"confidence": self.val_gain.level, "compared": self.compared,
                "chosen": self.chosen, "val_scores": self.val_scores,
                "start_val_scores": self.start_val_scores}


def _seed(seed: int, *stream: int) -> list[int]:
    return [abs(int(seed)), *stream]


def choose_final(
    evaluator: Evaluator,
    start: Template,
    finalists: Sequence[Template],
    val: Sequence[Example],
    selection: Selection,
    *,
    seed: int = 0,
    finalist_meta: Mapping[str, Any] | None = None,
    parents: Sequence[str] = (),
    compared: int = 0,
) -> Choice:
    """Score the start and ``finalists`` on validation and choose (see the module).

    Args:
        evaluator: The run's evaluator (it charges the budget and records trials).
        start: The starting template.
        finalists: Candidates in rank order (best first), the start not among them.
        val: The validation split.
        selection: The settings.
        seed: The run seed (the bootstrap's seed).
        finalist_meta: Extra trial metadata of the finalists' evaluations.
        parents: Parent ids recorded on the finalists' evaluations.
        compared: How many templates validation already compared to pick ``finalists``
            (each the best of its search on validation): the correction counts them all
            when they outnumber the finalists, as a lone run counts its own finalists.

    Raises:
        EvaluationFailed: the start could not be scored on validation.
    """
    n_val = len(val)
    start_eval = evaluator.evaluate(start, "val", meta={"role": "start"})
    start_eval.require("the starting template on the validation split")
    base = list(start_eval.scores)
    m = max(len(finalists), compared)
    level = adjusted_level(selection.confidence, m)
    rank = {t.id: i for i, t in enumerate(finalists)}
    pooled: dict[str, list[float]] = {t.id: [] for t in finalists}
    alive, lo, rounds = list(finalists), 0, []
    cuts = selection.cuts(n_val)

    def interval(t: Template, hi: int, at: float, *stream: int) -> GainInterval:
        return paired_interval(base[:hi], pooled[t.id], level=at,
                               resamples=selection.resamples, seed=_seed(seed, *stream))

    for r, hi in enumerate(cuts):
        whole = len(cuts) == 1
        meta = {"role": "finalist", **dict(finalist_meta or {})}
        if not whole:
            meta.update(rung=r, examples=[lo, hi])
        scored = []
        short = False
        for t in alive:
            try:
                ev = evaluator.evaluate(t, "val", examples=None if whole else val[lo:hi],
                                        parents=parents, meta=meta)
            except BudgetExhausted:
                short = True
                break
            if not ev.failed:
                pooled[t.id].extend(ev.scores)
                scored.append(t)
        if alive:
            rounds.append(f"{len(scored)} on {hi}")
        alive = scored
        if short or hi == n_val or not alive:
            break
        gains = {t.id: interval(t, hi, level, 1, r, rank[t.id]) for t in alive}
        alive = [t for t in alive if not gains[t.id].below_zero]
        alive.sort(key=lambda t: (-gains[t.id].gain, -gains[t.id].low, rank[t.id]))
        alive = sorted(alive[: math.ceil(len(alive) / 2)], key=lambda t: rank[t.id])
        lo = hi

    complete = [t for t in finalists if len(pooled[t.id]) == n_val]
    decided = {t.id: interval(t, n_val, level, 2, rank[t.id]) for t in complete}
    credible = [t for t in complete if decided[t.id].above_zero]
    notes = []
    if len(cuts) > 1 and rounds:
        notes.append(f"validation grew for close finalists: {', '.join(rounds)} examples "
                     f"(val_first={selection.val_first}, successive halving)")
    figures = (f"{format_level(selection.confidence)} level, Bonferroni over {m} finalist"
               f"{'s' if m != 1 else ''}: {format_level(level)} each")
    if credible:
        best = max(credible, key=lambda t: (decided[t.id].gain, -rank[t.id]))
        scores = pooled[best.id]
        gain = paired_interval(base, scores, level=selection.confidence,
                               resamples=selection.resamples, seed=_seed(seed, 3))
        notes.append(f"chose a finalist over the start: validation gain "
                     f"{decided[best.id].describe()} lies above 0 ({figures})")
        return Choice(template=best, val_score=sum(scores) / n_val,
                      start_val_score=start_eval.score, val_gain=gain, compared=m, level=level,
                      notes=notes, val_scores=list(scores), start_val_scores=base, chosen=True)
    best_other = None
    if complete:
        top = max(complete, key=lambda t: (decided[t.id].gain, -rank[t.id]))
        best_other = decided[top.id]
        notes.append(f"kept the starting template: the best finalist's validation gain "
                     f"{best_other.describe()} is not credible ({figures})")
    return Choice(template=start, val_score=start_eval.score, start_val_score=start_eval.score,
                  val_gain=GainInterval.none(selection.confidence, n_val),
                  best_other=best_other, compared=m, level=level, notes=notes,
                  val_scores=list(base), start_val_scores=base)


def choose_among_workers(
    records: Mapping[int, Mapping[str, Any]], selection: Selection, *, seed: int = 0
) -> tuple[int | None, str]:
    """The pick between several workers' final choices, corrected for all their finalists.

    Each worker of a study chose for itself (:func:`choose_final`), its family of
    finalists keeping the confidence level. Taking the best of N such choices would
    let luck replace the start in up to N times ``1 - confidence`` of the studies; so
    each worker's chosen template is compared again with the start on the same
    validation examples, at the level Bonferroni-adjusted for every worker's finalists
    together, and the best credible one (by mean gain; equal gains: the lower index)
    is picked.

    Args:
        records: Worker index -> its :meth:`Choice.record`.
        selection: The run's settings of the final choice (level, resamples).
        seed: The study's seed (the bootstrap's).

    Returns:
        The index of the worker whose template wins, or None for the starting
        template; and one line for the notes with the figures.
    """
    m = max(1, sum(int(r.get("compared", 0)) for r in records.values()))
    level = adjusted_level(selection.confidence, m)
    figures = (f"{format_level(selection.confidence)} level, Bonferroni over {m} finalist"
               f"{'s' if m != 1 else ''} of {len(records)} workers: {format_level(level)} each")
    gains = {
        k: paired_interval(r["start_val_scores"], r["val_scores"], level=level,
                           resamples=selection.resamples, seed=_seed(seed, 5, k))
        for k, r in sorted(records.items()) if r.get("chosen")
    }
    if not gains:
        return None, f"across workers: all {len(records)} kept the starting template"
    credible = [k for k in gains if gains[k].above_zero]
    if credible:
        best = max(credible, key=lambda k: (gains[k].gain, -k))
        return best, (f"across workers: chose worker {best}'s template, its validation gain "
                      f"{gains[best].describe()} lies above 0 ({figures})")
    top = max(gains, key=lambda k: (gains[k].gain, -k))
    return None, (f"across workers: kept the starting template: the best worker's (worker "
                  f"{top}) validation gain {gains[top].describe()} is not credible ({figures})")
