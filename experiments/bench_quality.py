"""Quality: ``promptopt.compare`` on the dev set with the embedded model, at two budgets.

    .venv/bin/python experiments/bench_quality.py            # the full run (hours on 2 cores)
    .venv/bin/python experiments/bench_quality.py --quick    # smoke test (minutes)
    .venv/bin/python experiments/bench_quality.py --budgets 150 --resume 20261122-023329
                                            # continue a stopped run (its STAMP as printed)

Settings come from ``experiments/quality.toml`` (``[common]`` and ``[compare]``; with
``--quick`` also ``[quick.common]`` and ``[quick.compare]``): every registered method
(or the listed ones), seeds 0, 1, 2, fixed train/val/test splits (split seed 0),
the embedded defaults (Gemma 3 270M recovery model, Qwen2.5-Coder 1.5B proposer; earlier
runs: Gemma 3 270M as both), packaged MiniLM scorer. For each
budget it runs ``compare`` and writes its ``report.md``, ``best_so_far.png`` and
``trials.csv`` under ``<out>/budget-<B>/``; the Optuna studies go to
``<out>/studies.db`` and the LLM and embedding caches to ``<out>/cache`` (shared by
the budgets: a cached call still counts against the budget, so results are those of
a cold run). Prints the machine, load averages, each table, and ``<out>/summary.md``.
Each budget's section also lists every run's validation and test gain over the starting
template with its interval, and per method the runs whose returned template scored
below the start on test: credibly (the whole test-gain interval below 0) and by the
point estimate alone. ``--select KEY=VALUE`` (repeatable) passes final-choice settings
(e.g. ``confidence=0.95``, ``val_first=10``) to every run. ``--methods a,b`` runs those
methods only, ``--proposer MODEL`` another proposer. ``--transfer FILE`` scores every
run's start and returned template on every row of another data file that no run saw
(``promptopt.runs.transfer``, as ``promptopt eval --study NAME --data FILE`` does)
and adds a table of both columns side by side.
The peer rows (DSPy driven directly) come from ``bench_dspy_direct.py``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _machine import describe, loadavg  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIG = Path(__file__).resolve().parent / "quality.toml"


def load_config(path: Path, section: str, quick: bool) -> dict[str, Any]:
    """``[common]`` + ``[section]`` (+ their ``[quick.*]`` overrides), paths resolved."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    raw = tomllib.loads(path.read_text())
    cfg = {**raw.get("common", {}), **raw.get(section, {})}
    if quick:
        cfg.update(raw.get("quick", {}).get("common", {}))
        cfg.update(raw.get("quick", {}).get(section, {}))
    for key in ("data", "out"):
        cfg[key] = str((ROOT / cfg[key]).resolve())
    return cfg


def parse_args(
    section: str, doc: str, extra: Callable[[argparse.ArgumentParser], Any] | None = None
) -> tuple[argparse.ArgumentParser, argparse.Namespace, dict[str, Any]]:
    """The command line shared by the quality scripts (``doc``: the script's docstring),
    its arguments and the config they select (``[common]`` + ``[section]``)."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--quick", action="store_true", help="the [quick.*] smoke-test settings")
    parser.add_argument("--budgets", type=lambda s: [int(b) for b in s.split(",")],
                        help="override the config's budgets, e.g. 60 (one budget at a time)")
    parser.add_argument("--methods", help="override the config's methods, comma-separated "
                        "(e.g. gepa,dspy-gepa,auto)")
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")],
                        help="override the config's seeds, e.g. 0 or 0,1")
    if extra is not None:
        extra(parser)
    args = parser.parse_args()
    cfg = load_config(args.config, section, args.quick)
    if args.budgets:
        cfg["budgets"] = args.budgets
    if args.seeds:
        cfg["seeds"] = args.seeds
    if args.methods:
        cfg["methods"] = [m.strip() for m in args.methods.split(",") if m.strip()]
    return parser, args, cfg


def summary_path(out: Path, budgets: list[int] | None) -> Path:
    """``summary.md``, or ``summary-b60.md`` for a run of the given budgets only."""
    return out / ("summary.md" if not budgets else f"summary-b{'-'.join(map(str, budgets))}.md")


def markdown(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def below_start(result: Any) -> str:
    """Per method: runs whose returned template scored below the start on test."""
    rows = []
    for method in result.methods:
        runs = [r for r in result.runs if r.method == method]
        credible = sum(1 for r in runs if r.below_start)
        point = sum(1 for r in runs if r.test_score < r.start_test_score)
        kept = sum(1 for r in runs if r.template.id == r.start_template.id)
        rows.append([method, str(len(runs)), str(credible), str(point), str(kept)])
    return markdown(["method", "runs", "below start on test (interval below 0)",
                     "below start on test (point estimate)", "returned the start"], rows)


def score_on_test(template: Any, cfg: dict[str, Any], cache_dir: str) -> Any:
    """``template``'s evaluation on the benchmark's test split (``promptopt.evaluate``
    with the config's data, splits, model and scorer; the LLM cache answers repeats)."""
    from promptopt import evaluate

    return evaluate(template, split="test", data=cfg["data"], model=cfg["model"],
                    scorer=cfg["scorer"], train=cfg["train"], val=cfg["val"],
                    test=cfg["test"], split_seed=cfg["split_seed"],
                    skip_bad_rows=cfg["skip_bad_rows"], cache=True, cache_dir=cache_dir)


def old_rule(result: Any, cfg: dict[str, Any], cache_dir: str) -> str:
    """Per method: what the final choice before credible gains would have returned from
    the same runs, and how often that scored below the start on test.

    That rule took the highest validation mean among the start and the finalists (the
    start first; a finalist had to beat the best so far strictly), whatever the margin.
    It is read from each study's validation trials of role start or finalist on the whole
    validation split; a pick that is neither the start nor the returned template is scored
    on the test split (the run's LLM cache answers the start's calls)."""
    import optuna

    from promptopt.scoring import paired_interval
    from promptopt.template import Template

    start_test: dict[str, Any] = {}  # every run shares the start: score it once
    rows = []
    for method in result.methods:
        runs = [r for r in result.runs if r.method == method]
        credible = point = kept = differs = 0
        for r in runs:
            study = optuna.load_study(study_name=r.study, storage=r.storage)
            best: tuple[float, dict[str, Any]] | None = None
            for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
                a = t.user_attrs
                role = (a.get("meta") or {}).get("role")
                if (a.get("split") != "val" or role not in ("start", "finalist")
                        or int(a.get("n_examples") or 0) != cfg["val"] or t.state.name == "FAIL"):
                    continue
                score = float(a.get("score", t.value) or 0.0)
                if best is None or score > best[0]:
                    best = (score, a.get("template") or {})
            pick = Template.from_dict(best[1]) if best is not None else r.start_template
            if pick.id == r.start_template.id:
                kept += 1
                continue
            differs += pick.id != r.template.id
            if r.start_template.id not in start_test:
                start_test[r.start_template.id] = score_on_test(r.start_template, cfg, cache_dir)
            start, chosen = start_test[r.start_template.id], score_on_test(pick, cfg, cache_dir)
            gain = paired_interval(start.scores, chosen.scores, level=0.9)
            credible += gain.below_zero
            point += chosen.score < start.score
        rows.append([method, str(len(runs)), str(credible), str(point), str(kept),
                     str(differs)])
    return markdown(["method", "runs", "below start on test (interval below 0)",
                     "below start on test (point estimate)", "returned the start",
                     "pick differs from this run's"], rows)


def _extra_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--resume", metavar="STAMP", help="continue the interrupted run whose studies are "
        "b<budget>-STAMP-<method>-s<seed> (STAMP as printed, e.g. 20261122-023329)")
    parser.add_argument("--proposer", help="override the config's proposer model, e.g. "
                        "llamacpp/smollm2-135m")
    parser.add_argument("--transfer", type=Path, metavar="FILE",
                        help="score each run's templates on this other data file too")
    parser.add_argument("--select", action="append", default=[], metavar="KEY=VALUE",
                        help="final-choice setting for every run, repeatable (see "
                        "docs/guides/methods.md)")


def parse_select(pairs: list[str]) -> dict[str, Any]:
    """``["confidence=0.95"]`` -> ``{"confidence": 0.95}`` (values read as JSON)."""
    import json

    out: dict[str, Any] = {}
    for pair in pairs:
        key, _, raw = pair.partition("=")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def transfer_table(result: Any, data: Path, cache_dir: str) -> str:
    """Per method (mean ± sd over its runs): test score on the dev split, and the start's
    and the returned template's score on ``data`` with the gain."""
    import statistics

    from promptopt.runs import transfer

    def stat(values: list[float]) -> str:
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.fmean(values):.4f} ± {sd:.4f}"

    rows = []
    for method in result.methods:
        runs = [r for r in result.runs if r.method == method]
        found = [transfer(result.storage, r.study, data, cache_dir=cache_dir) for r in runs]
        rows.append([method, stat([r.test_score for r in runs]),
                     stat([f.returned.score for f in found]), stat([f.start.score for f in found]),
                     stat([f.gain.gain for f in found]),
                     f"{sum(f.gain.below_zero for f in found)}/{len(found)}"])
    return markdown(["method", "test (dev split)", f"transfer: {data.name}",
                     "transfer: start", "transfer gain", "transfer below start"], rows)


def main() -> None:
    _, args, cfg = parse_args("compare", __doc__, _extra_args)
    if args.proposer:
        cfg["proposer"] = args.proposer

    from promptopt import compare
    from promptopt.comparison import TABLE_COLUMNS, gains_table

    selection = {**cfg.get("selection", {}), **parse_select(args.select)}

    out = Path(cfg["out"])
    out.mkdir(parents=True, exist_ok=True)
    stamp = args.resume or dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    started = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    head = [
        f"machine: {describe()}",
        f"started: {started}; load average at start: {loadavg()}; studies b<budget>-{stamp}-*"
        + (" (resumed: runs finished before give their first attempt's wall time)"
           if args.resume else ""),
        f"settings: {args.config.name}{' --quick' if args.quick else ''}: "
        + ", ".join(f"{k}={cfg[k]}" for k in ("data", "model", "proposer", "scorer", "budgets",
                                             "seeds", "train", "val", "test", "split_seed",
                                             "methods")),
        f"final choice: {selection or 'defaults'}",
    ]
    print("\n".join(head), flush=True)
    sections = []
    for budget in cfg["budgets"]:
        t0 = time.perf_counter()
        result = compare(
            cfg["methods"] or None, seeds=cfg["seeds"], data=cfg["data"], model=cfg["model"],
            proposer=cfg["proposer"], scorer=cfg["scorer"], budget=int(budget),
            storage=f"sqlite:///{out}/studies.db", prefix=f"b{budget}-{stamp}",
            out_dir=out / f"budget-{budget}", train=cfg["train"], val=cfg["val"],
            test=cfg["test"], split_seed=cfg["split_seed"], skip_bad_rows=cfg["skip_bad_rows"],
            cache=True, cache_dir=str(out / "cache"), resume=bool(args.resume),
            selection=selection,
            on_study=lambda s: print(f"  {dt.datetime.now():%H:%M:%S} study {s} "
                                     f"(load {loadavg()})", flush=True),
        )
        wall = time.perf_counter() - t0
        table = markdown(list(TABLE_COLUMNS), result.table())
        section = (f"## budget {budget} calls per run\n\n{table}\n\n"
                   f"Returned template against the start, run by run:\n\n"
                   f"{gains_table(result)}\n\n{below_start(result)}\n\n"
                   f"The rule before credible gains (highest validation mean) on the same "
                   f"runs:\n\n{old_rule(result, cfg, str(out / 'cache'))}\n\n"
                   + (f"Transfer to {args.transfer}:\n\n"
                      f"{transfer_table(result, args.transfer, str(out / 'cache'))}\n\n"
                      if args.transfer else "") +
                   f"wall time {wall / 60:.1f} min; load average after: {loadavg()}; "
                   f"splits {result.settings['splits']}; scorer {result.settings['scorer']}; "
                   f"report: {result.files['report']}")
        print("\n" + section, flush=True)
        sections.append(section)
    summary = summary_path(out, args.budgets)
    summary.write_text("# Quality benchmark\n\n" + "\n\n".join(head) + "\n\n"
                       + "\n\n".join(sections) + "\n")
    print(f"\nwritten: {summary}")


if __name__ == "__main__":
    main()
