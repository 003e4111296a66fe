"""How sure a gain is: paired bootstrap intervals on per-example score differences.

Two templates scored on the same examples give paired scores; the gain of one over
the other is the mean of the per-example differences. :func:`paired_interval` puts a
percentile bootstrap interval around it (resampling the examples, seeded, with numpy);
:func:`adjusted_level` widens the level for several comparisons at once (Bonferroni),
so that choosing the best of several candidates does not turn luck into a "gain".
Pure functions: no LLM, no storage.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_LEVEL = 0.9
"""The default confidence level of an interval."""
DEFAULT_RESAMPLES = 2000
"""Bootstrap resamples per interval."""


@dataclass(frozen=True)
class GainInterval:
    """The gain of a candidate over a base on the same examples, with its interval.

    Attributes:
        gain: Mean per-example difference (candidate minus base).
        low, high: The interval's ends (``-inf``/``inf`` when fewer than two examples).
        level: Its confidence level (e.g. 0.9).
        n: The number of paired examples.
    """

    gain: float
    low: float
    high: float
    level: float
    n: int

    @property
    def above_zero(self) -> bool:
        """Whether the whole interval lies above 0 (a credible gain)."""
        return self.low > 0.0

    @property
    def below_zero(self) -> bool:
        """Whether the whole interval lies below 0 (a credible loss)."""
        return self.high < 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (infinite ends stored as None)."""

        def end(x: float) -> float | None:
            return round(x, 6) if math.isfinite(x) else None

        return {"gain": round(self.gain, 6), "low": end(self.low), "high": end(self.high),
                "level": self.level, "n": self.n}

    @classmethod
    def none(cls, level: float, n: int) -> GainInterval:
        """The gain of a template over itself (the start returned): 0, interval [0, 0]."""
        return cls(0.0, 0.0, 0.0, level, n)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> GainInterval | None:
        """Rebuild from :meth:`to_dict` output; None (an older study) gives None."""
        if not data:
            return None
        low, high = data.get("low"), data.get("high")
        return cls(gain=float(data["gain"]),
                   low=-math.inf if low is None else float(low),
                   high=math.inf if high is None else float(high),
                   level=float(data.get("level", DEFAULT_LEVEL)), n=int(data.get("n", 0)))

    def __str__(self) -> str:
        return f"{self.gain:+.4f} [{self.low:+.4f}, {self.high:+.4f}]"

    def describe(self) -> str:
        """E.g. ``+0.0160 (90% interval [-0.0040, +0.0350], 20 examples)``."""
        return (f"{self.gain:+.4f} ({format_level(self.level)} interval "
                f"[{self.low:+.4f}, {self.high:+.4f}], {self.n} examples)")


def format_level(level: float) -> str:
    """``0.9`` -> ``"90%"``, ``0.9666`` -> ``"96.7%"``."""
    text = f"{100 * level:.1f}"
    return (text[:-2] if text.endswith(".0") else text) + "%"


def adjusted_level(level: float, comparisons: int) -> float:
    """The per-comparison level that keeps ``level`` for ``comparisons`` at once.

    Bonferroni: the error rate ``1 - level`` is split evenly, so the chance that any
    of the intervals misses its true gain is at most ``1 - level``.
    """
    return 1.0 - (1.0 - level) / max(1, comparisons)


def paired_interval(
    base: Sequence[float],
    candidate: Sequence[float],
    *,
    level: float = DEFAULT_LEVEL,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int | Sequence[int] = 0,
) -> GainInterval:
    """Percentile bootstrap interval of the mean gain of ``candidate`` over ``base``.

    The scores are paired by position (the same examples in the same order). The
    examples are resampled with replacement ``resamples`` times (numpy, seeded by
    ``seed``); the interval holds the central ``level`` of the resampled mean
    differences, its spread around the observed gain widened by ``sqrt(n / (n - 1))``
    (the bootstrap's variance is the biased one, too narrow for a few examples).

    Args:
        base: Per-example scores of the base (e.g. the starting template).
        candidate: Per-example scores of the candidate on the same examples.
        level: Confidence level in (0, 1).
        resamples: Bootstrap resamples.
        seed: Seed (or seed sequence) of the resampling.

    Returns:
        The gain and its interval; with fewer than two examples the interval is
        unbounded (nothing can be said).

    Raises:
        ValueError: unequal lengths, or a level outside (0, 1).
    """
    if len(base) != len(candidate):
        raise ValueError(f"paired scores differ in length: {len(base)} vs {len(candidate)}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"the confidence level must lie in (0, 1), got {level}")
    diffs = np.asarray(candidate, dtype=float) - np.asarray(base, dtype=float)
    n = int(diffs.size)
    if n == 0:
        return GainInterval(0.0, -math.inf, math.inf, level, 0)
    gain = float(diffs.mean())
    if n < 2:
        return GainInterval(gain, -math.inf, math.inf, level, n)
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(0, n, size=(max(1, resamples), n))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    lo_q, hi_q = np.quantile(means, [tail, 1.0 - tail])
    widen = math.sqrt(n / (n - 1))
    return GainInterval(gain, gain + widen * (float(lo_q) - gain),
                        gain + widen * (float(hi_q) - gain), level, n)
