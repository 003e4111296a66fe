"""What a comparison returns: the table rows over seeds and the whole result.

Kept apart from :mod:`promptopt.comparison._compare` (which runs the methods) so that
the report (:mod:`promptopt.comparison._report`) reads results without running anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from promptopt.runs import RunResult
from promptopt.scoring import GainInterval

FIXED_PREDICTION = "Improve this text."
"""The constant prediction scored as a baseline (no LLM call)."""

TABLE_COLUMNS = (
    "method", "val (mean ± sd)", "test (mean ± sd)", "start val", "start test",
    "LLM calls", "tokens", "cost $", "wall s", "val gain", "test gain", "below start",
)
"""Header of :meth:`CompareResult.table`; usage columns are means per run over seeds. The
gain columns are the returned template's gain over the start: one run's with its
confidence interval (``+0.0120 [-0.0040, +0.0300]``), several runs' as mean ± sd; "below
start" counts the runs whose whole test-gain interval lies below 0."""


@dataclass(frozen=True)
class Stat:
    """Mean and spread of one number over seeds.

    Attributes:
        values: One value per seed (or per run), in seed order.
    """

    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        """The mean (nan when empty)."""
        return float(np.mean(self.values)) if self.values else float("nan")

    @property
    def sd(self) -> float:
        """The sample standard deviation (ddof=1); 0 for a single value."""
        return float(np.std(self.values, ddof=1)) if len(self.values) > 1 else 0.0

    def __str__(self) -> str:
        return f"{self.mean:.4f} ± {self.sd:.4f}"


@dataclass
class CompareRow:
    """One line of the comparison table: a method over seeds, or a constant baseline.

    Attributes:
        name: Method name, or the baseline's label.
        kind: ``"method"`` or ``"baseline"``.
        val, test: Scores of the returned template (or the constant) over seeds.
        start_val, start_test: The starting template's scores in the method's runs.
        requests, tokens, cost, wall_time_s: Per run over seeds (None for baselines):
            LLM requests (calls plus cache hits), prompt plus completion tokens, the
            dollars paid, and the run's wall time.
    """

    name: str
    kind: str
    val: Stat
    test: Stat
    start_val: Stat | None = None
    start_test: Stat | None = None
    requests: Stat | None = None
    tokens: Stat | None = None
    cost: Stat | None = None
    wall_time_s: Stat | None = None
    val_gains: tuple[GainInterval | None, ...] = ()
    test_gains: tuple[GainInterval | None, ...] = ()
    """Per run, the returned template's gain over the start with its interval (None:
    a study recorded before intervals existed); empty for baselines."""

    @property
    def below_start(self) -> int:
        """Runs whose returned template scored below the start on test (the whole
        test-gain interval below 0)."""
        return sum(1 for g in self.test_gains if g is not None and g.below_zero)

    def cells(self) -> list[str]:
        """The row as table cells, in :data:`TABLE_COLUMNS` order."""

        def num(stat: Stat | None, fmt: str) -> str:
            return "-" if stat is None else format(stat.mean, fmt)

        known = [g for g in self.test_gains if g is not None]
        return [
            self.name, str(self.val), str(self.test),
            num(self.start_val, ".4f"), num(self.start_test, ".4f"),
            num(self.requests, ".0f"), num(self.tokens, ".0f"), num(self.cost, ".4f"),
            num(self.wall_time_s, ".1f"), gain_cell(self.val_gains), gain_cell(self.test_gains),
            f"{self.below_start}/{len(known)}" if known else "-",
        ]


def gain_cell(gains: tuple[GainInterval | None, ...]) -> str:
    """One run's gain with its interval; several runs' mean ± sd; ``-`` when unknown."""
    known = [g for g in gains if g is not None]
    if not known:
        return "-"
    if len(known) == 1:
        return str(known[0])
    stat = Stat(tuple(g.gain for g in known))
    return f"{stat.mean:+.4f} ± {stat.sd:.4f}"


@dataclass
class CompareResult:
    """The outcome of :func:`compare`.

    Attributes:
        prefix: Study-name prefix; studies are ``<prefix>-<method>-s<seed>``.
        storage: The Optuna storage URL holding the studies.
        out_dir: Folder of ``report.md``, ``best_so_far.png`` and ``trials.csv``.
        methods, seeds: What was run.
        settings: The shared settings (JSON-ready; written into the report).
        runs: Every run's result, method by method, seed by seed.
        rows: The table: one row per method, then the constant baselines.
        trials: One dict per trial of every study (the rows of ``trials.csv``).
        mean_prompt_texts: The mean-prompt string learned for each seed.
        files: ``{"report": ..., "plot": ..., "trials": ...}`` paths.
    """

    prefix: str
    storage: str
    out_dir: Path
    methods: list[str]
    seeds: list[int]
    settings: dict[str, Any]
    runs: list[RunResult] = field(default_factory=list)
    rows: list[CompareRow] = field(default_factory=list)
    trials: list[dict[str, Any]] = field(default_factory=list)
    mean_prompt_texts: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)

    def study(self, method: str, seed: int) -> str:
        """The study name of one run."""
        return study_name(self.prefix, method, seed)

    def table(self) -> list[list[str]]:
        """The comparison table as cells (header :data:`TABLE_COLUMNS`)."""
        return [row.cells() for row in self.rows]

    def row(self, name: str) -> CompareRow:
        """The table row called ``name``."""
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(name)


def study_name(prefix: str, method: str, seed: int) -> str:
    """The study of one (method, seed) run: ``<prefix>-<method>-s<seed>``."""
    return f"{prefix}-{method}-s{seed}"
