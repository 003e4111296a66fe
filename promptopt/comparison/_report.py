"""The files of a comparison: ``trials.csv``, ``best_so_far.png`` and ``report.md``.

Written by :func:`promptopt.comparison._compare.compare` into its output folder. The plot uses
matplotlib's Agg canvas directly (no pyplot, no global backend change). The curves come
from :func:`best_so_far` (one run) and :func:`curve_band` (mean and range over seeds).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from promptopt.comparison._results import (
    FIXED_PREDICTION,
    TABLE_COLUMNS,
    CompareResult,
    CompareRow,
)
from promptopt.redact import redact

if TYPE_CHECKING:
    from matplotlib.axes import Axes

TRIAL_COLUMNS = (
    "method", "seed", "study", "trial", "split", "role", "constant", "score", "requests",
    "cumulative_requests", "template_id", "instruction", "parents",
)
"""Columns of ``trials.csv``: one row per trial of every study, in trial order."""


def write_files(result: CompareResult) -> dict[str, Path]:
    """Write the trials, the plot and the report into ``result.out_dir``."""
    folder = result.out_dir
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "trials": folder / "trials.csv",
        "plot": folder / "best_so_far.png",
        "report": folder / "report.md",
    }
    write_trials_csv(result, files["trials"])
    plot_best_so_far(result, files["plot"])
    files["report"].write_text(report_markdown(result, files["plot"].name, files["trials"].name),
                               encoding="utf-8")
    return files


def write_trials_csv(result: CompareResult, path: Path) -> None:
    """Every trial of every study as CSV (:data:`TRIAL_COLUMNS`)."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=TRIAL_COLUMNS)
        writer.writeheader()
        writer.writerows({k: row[k] for k in TRIAL_COLUMNS} for row in result.trials)


def curves(result: CompareResult, method: str) -> list[list[tuple[int, float]]]:
    """The best-so-far validation curve of each seed of ``method``, its last value held
    out to the budget (a run's final choice often comes at its last calls)."""
    budget = int(result.settings["budget"])
    out = []
    for seed in result.seeds:
        curve = best_so_far([t for t in result.trials
                             if t["method"] == method and t["seed"] == seed])
        if curve and curve[-1][0] < budget:
            curve.append((budget, curve[-1][1]))
        out.append(curve)
    return out


def plot_best_so_far(result: CompareResult, path: Path) -> None:
    """Best validation score so far against cumulative LLM requests, one line per method.

    The line is the mean over seeds, the shaded band their min-max; constant
    baselines are dashed horizontal lines at their mean validation score, the budget
    a vertical line; the legend sits to the right of the axes.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, method in enumerate(result.methods):
        color = f"C{i % 10}"  # past ten methods the colours repeat, with another line style
        xs, mean, low, high = curve_band(curves(result, method))
        if not xs.size:
            continue
        ax.step(xs, mean, where="post", color=color, label=method, marker=".", markersize=4,
                linestyle=("-", "--", ":")[i // 10 % 3])
        if len(result.seeds) > 1:
            ax.fill_between(xs, low, high, step="post", color=color, alpha=0.2, linewidth=0)
    _baselines(ax, [r for r in result.rows if r.kind == "baseline"])
    ax.axvline(result.settings["budget"], color="black", linewidth=0.8, alpha=0.6,
               label=f"budget ({result.settings['budget']} calls)")
    ax.set_xlabel("LLM requests so far (proposer calls and cache hits included)")
    ax.set_ylabel(f"best validation score so far ({result.settings['scorer']})")
    seeds = ", ".join(map(str, result.seeds))
    ax.set_title(f"{result.settings['task']}: mean over seeds {seeds} (band: min-max)")
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, format="png")


def _baselines(ax: Axes, rows: Sequence[CompareRow]) -> None:
    styles = ("--", ":", "-.")
    for row, style in zip(rows, styles, strict=False):
        ax.axhline(row.val.mean, color="gray", linestyle=style, linewidth=1,
                   label=f"{row.name} (baseline)")


def markdown_table(result: CompareResult) -> str:
    """The comparison table in Markdown."""
    lines = ["| " + " | ".join(TABLE_COLUMNS) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(TABLE_COLUMNS) - 1)) + "|"]
    for cells in result.table():
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def gains_table(result: CompareResult) -> str:
    """Markdown table: each run's validation and test gain over the start with intervals."""
    lines = ["| method | seed | val gain | test gain | below start | why the start |",
             "|---|---:|---:|---:|---|---|"]
    seeds = {id(r): seed for method in result.methods
             for r, seed in zip([r for r in result.runs if r.method == method], result.seeds,
                                strict=False)}
    for r in result.runs:
        cells = [r.method, str(seeds.get(id(r), "")),
                 "-" if r.val_gain is None else str(r.val_gain),
                 "-" if r.test_gain is None else str(r.test_gain),
                 "yes" if r.below_start else "no", r.why.removeprefix(
                     "the result is the starting template: ")]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def _selection_text(selection: Any) -> str:
    from promptopt.search import Selection

    chosen = Selection.from_dict(selection if isinstance(selection, dict) else None)
    grow = (f"validation grows from {chosen.val_first} examples for close finalists"
            if chosen.val_first else "every finalist scored on the whole validation split")
    return (f"a finalist replaces the start only with a credible validation gain "
            f"(confidence {chosen.confidence}, Bonferroni over the finalists); {grow}")


def report_markdown(result: CompareResult, plot_name: str, trials_name: str) -> str:
    """The Markdown report: settings, table, plot and how to read them."""
    s = {**result.settings, "storage": redact(str(result.settings["storage"]))}
    seeds = ", ".join(map(str, result.seeds))
    settings = [
        ("methods", ", ".join(result.methods)),
        ("seeds", seeds),
        ("task", s["task"]),
        ("data", s["data"]),
        ("model", s["model"]),
        ("proposer", s["proposer"]),
        ("scorer", s["scorer"]),
        ("budget", f"{s['budget']} LLM calls per run (search; final test scoring on top)"),
        ("splits", ", ".join(f"{k} {v}" for k, v in s["splits"].items())
         + f" (split seed {s['split_seed']})"),
        ("starting template", s.get("start_template", "")),
        ("final choice", _selection_text(s.get("selection"))),
        ("storage", s["storage"]),
        ("studies", f"`{result.prefix}-<method>-s<seed>`"),
    ]
    mean_prompts = "\n".join(
        f"- seed {seed}: `{text}`" for seed, text in zip(result.seeds, result.mean_prompt_texts,
                                                         strict=True)
    ) if result.mean_prompt_texts else (
        "  (none here: the metric is not an embedding similarity, so the only baseline is "
        "the starting template)"
    )
    return f"""# promptopt compare: {result.prefix}

## Settings

{chr(10).join(f"- **{k}**: {v}" for k, v in settings)}

## Results

{markdown_table(result)}

- Methods: validation and test scores of the template each run returned, mean ± sample
  standard deviation over seeds ({seeds}); "start val"/"start test" are the starting
  template's scores in the same runs.
- Usage columns are means per run: LLM calls = requests (calls sent plus cache hits,
  proposer calls included), tokens = prompt + completion tokens, cost = dollars
  actually paid (cache hits are free), wall time of the run.
- Constant baselines use no LLM call and the same scorer and splits: the starting
  template (its scores over all runs), the fixed prediction "{FIXED_PREDICTION}" for every
  example, and the mean-prompt string alone (learned on the train targets, once per
  seed):
{mean_prompts}

## Gains over the starting template, run by run

{gains_table(result)}

- Each run's returned template against the starting template on the same examples:
  mean per-example gain and its paired bootstrap interval (the run's confidence level).
  A finalist replaces the start only when its validation gain is credible (its
  interval, Bonferroni-adjusted for the finalists compared, lies above 0), so a
  validation gain of +0.0000 [+0.0000, +0.0000] means the run kept the start.
- "below start": the whole test-gain interval lies below 0 (the returned template is
  credibly worse than the start on data the search never saw).

## Best validation score so far

![best validation score so far against LLM calls]({plot_name})

x: cumulative LLM requests of the run (cache hits and proposer calls included); y:
the best validation score of any template scored on the validation split so far. The
line is the mean over seeds, the band their min-max (where only some seeds have a
validation score yet, over those seeds). Methods that score candidates on the train
split and use the validation split only to choose the final template (all the
built-in ones) show a single step near the end of their run: the starting template
and the finalists. Dashed lines: the constant baselines' validation scores.

## Raw data

`{trials_name}`: one row per trial of every study, in trial order (split, role,
constant, score, the evaluation's own requests, cumulative requests, template id,
instruction, parent ids). The studies hold everything else (predictions, settings,
the final result): `promptopt dashboard --storage {s['storage']}`.
"""


def best_so_far(trials: Sequence[dict[str, Any]]) -> list[tuple[int, float]]:
    """The best validation score so far against cumulative LLM requests, for one run.

    One point per search trial (train or validation split) from the first
    validation-split evaluation of a template on (constant-prediction trials, such as
    the mean-prompt string alone, are left out). Methods that score on validation
    only when choosing the final template give a single step near the end of the
    budget. The test-split scoring after the run adds no point: it is outside the
    budget and does not change the choice.
    """
    points: list[tuple[int, float]] = []
    best: float | None = None
    for t in trials:
        if t["split"] == "test":
            continue
        if t["split"] == "val" and not t["constant"]:
            best = t["score"] if best is None else max(best, t["score"])
        if best is not None:
            points.append((int(t["cumulative_requests"]), float(best)))
    return points


def curve_band(curves: Sequence[Sequence[tuple[int, float]]]) -> tuple[np.ndarray, ...]:
    """Mean, min and max over runs of step curves, on the union of their x values.

    Each run's curve holds its last value to the right; at an x where only some runs
    have a validation score yet, the statistics are over those runs.

    Returns:
        ``(x, mean, low, high)`` arrays (empty when no run has a point).
    """
    xs = np.array(sorted({x for c in curves for x, _ in c}), dtype=float)
    grid = np.full((len(curves), len(xs)), np.nan)
    for i, curve in enumerate(curves):
        if not curve:
            continue
        cx = np.array([x for x, _ in curve], dtype=float)
        cy = np.array([y for _, y in curve], dtype=float)
        idx = np.searchsorted(cx, xs, side="right") - 1
        grid[i] = np.where(idx >= 0, cy[np.clip(idx, 0, None)], np.nan)
    keep = ~np.all(np.isnan(grid), axis=0)
    grid, xs = grid[:, keep], xs[keep]
    if not xs.size:
        return xs, xs, xs, xs
    return xs, np.nanmean(grid, axis=0), np.nanmin(grid, axis=0), np.nanmax(grid, axis=0)
