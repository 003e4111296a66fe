"""Peer rows: DSPy's MIPROv2, BootstrapFewShotWithRandomSearch and GEPA driven directly.

    .venv/bin/python experiments/bench_dspy_direct.py            # the full run (hours)
    .venv/bin/python experiments/bench_dspy_direct.py --quick    # smoke test (minutes)

Not through promptopt's optimizers: a plain ``dspy.Predict`` over
``original_text, rewritten_text -> rewrite_prompt`` with the task's starting
instruction, DSPy's own ChatAdapter prompts (see ``_dspy_direct.py`` for the one
liberty taken with a reply that ignores the format), ``dspy.LM(<model>,
engine="litellm")`` through LiteLLM's custom ``llamacpp`` provider (the same
in-process model as ``bench_quality.py``), task LM at temperature 0 with 48 new tokens,
prompt LM (MIPROv2's proposer, GEPA's reflection LM) with 300. Same data, split
(promptopt's train / val / test with the same split seed; inputs cut to 200 tokens as
promptopt cuts them), scorer and metric (SCS of the cleaned prediction), budgets and seeds as
``bench_quality.py``, from ``experiments/quality.toml`` (``[common]``,
``[dspy_direct]``, with ``--quick`` also ``[quick.common]``, ``[quick.dspy_direct]``).

DSPy compiles with ``trainset`` = the train split (shuffled with the run's seed, so
that seeds differ for BootstrapFewShotWithRandomSearch too) and ``valset`` = the
validation split. Budget: every LM request of the compile (task and prompt model,
DSPy cache hits included, as promptopt counts them) is counted; the request that
would exceed the budget raises instead, which ends the compile. DSPy then has no
compiled program to return, so the result is the program with the best full-valset
score DSPy had measured so far (DSPy's own selection rule), or the starting program
if it had measured none. The compiled program is then scored on the validation and
test splits through DSPy (``dspy.Evaluate``, not charged to the budget, like
promptopt's final test scoring), next to the starting program. DSPy's response cache
lives in ``<out>/dspy-cache``; results go to ``<out>/runs.jsonl`` and
``<out>/summary.md``. ``--resume`` takes each (method, seed, budget) already in
``runs.jsonl`` with the same settings from there instead of running it again, so a
stopped run continues where it was.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _dspy_direct import (  # noqa: E402  (sets the offline environment first)
    BudgetSpent,
    CallBudget,
    counting_lm,
    feedback_metric,
    import_dspy,
    lenient_adapter,
    scs_metric,
    signature,
    to_dspy,
)
from _machine import describe, loadavg  # noqa: E402
from bench_quality import markdown, parse_args, summary_path  # noqa: E402

METHODS = {"mipro": "MIPROv2", "bootstrap-rs": "BootstrapFewShotWithRandomSearch",
           "gepa": "GEPA"}
SETTING_KEYS = ("data", "model", "proposer", "scorer", "train", "val", "test", "split_seed",
                "skip_bad_rows", "mipro_auto", "num_candidate_programs",
                "max_bootstrapped_demos", "max_labeled_demos")
"""What a recorded run must share with this one for ``--resume`` to reuse it."""


def run_settings(cfg: dict[str, Any]) -> dict[str, Any]:
    """The settings a run records (``SETTING_KEYS`` of the config)."""
    return {k: cfg[k] for k in SETTING_KEYS}


PROPOSER_MAX_TOKENS = 300
"""The prompt LM's answer length, as promptopt's gepa reflection (``max_tokens``), so
that DSPy's proposer is not cut shorter than promptopt's (160 until 2026-12-08)."""


def best_so_far_callback(valset: list[Any]) -> Any:
    """A DSPy callback keeping the best program scored on the whole ``valset``."""
    from dspy.utils.callback import BaseCallback

    full = sorted(str(x.get("original_text")) for x in valset)

    class BestSoFar(BaseCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.best: Any = None
            self.best_score = float("-inf")
            self.full_evals = 0
            self._open: dict[str, Any] = {}

        def on_evaluate_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
            devset = inputs.get("devset") or getattr(instance, "devset", None) or []
            if sorted(str(x.get("original_text")) for x in devset) == full:
                self._open[call_id] = inputs["program"].deepcopy()

        def on_evaluate_end(self, call_id: str, outputs: Any, exception: Any = None) -> None:
            program = self._open.pop(call_id, None)
            if program is None or exception is not None or outputs is None:
                return
            self.full_evals += 1
            score = float(getattr(outputs, "score", outputs))
            if score > self.best_score:
                self.best, self.best_score = program, score

    return BestSoFar()


def run_one(method: str, seed: int, budget: int, cfg: dict[str, Any], task: Any,
            out: Path) -> dict[str, Any]:
    """Compile with one DSPy optimizer under ``budget`` LM requests; score the result."""
    dspy = import_dspy()
    metric = scs_metric(task.scorer, task.default_prediction)
    train = list(task.examples("train"))
    random.Random(seed).shuffle(train)
    trainset = to_dspy(train, task.max_text_tokens)
    valset = to_dspy(task.examples("val"), task.max_text_tokens)
    testset = to_dspy(task.examples("test"), task.max_text_tokens)
    start = dspy.Predict(signature(task.start_template().instruction))
    gen = task.generation
    tally = CallBudget(limit=budget)
    task_lm = counting_lm(cfg["model"], tally, temperature=0.0, max_tokens=gen["max_tokens"],
                          cache=True)
    prompt_lm = counting_lm(cfg["proposer"], tally, max_tokens=PROPOSER_MAX_TOKENS, cache=True)
    adapter = lenient_adapter()
    tracker = best_so_far_callback(valset)
    demos = {"max_bootstrapped_demos": cfg["max_bootstrapped_demos"],
             "max_labeled_demos": cfg["max_labeled_demos"]}
    t0 = time.perf_counter()
    stopped = "finished"
    with dspy.context(lm=task_lm, adapter=adapter, callbacks=[tracker]):
        try:
            if method == "mipro":
                optimizer = dspy.MIPROv2(metric=metric, prompt_model=prompt_lm, task_model=task_lm,
                                         auto=cfg["mipro_auto"], num_threads=1, seed=seed,
                                         **demos)
                compiled = optimizer.compile(start.deepcopy(), trainset=trainset, valset=valset,
                                             seed=seed, minibatch=len(valset) > 35)
            elif method == "gepa":  # DSPy's defaults; the reflection LM is the proposer
                optimizer = dspy.GEPA(metric=feedback_metric(task), max_metric_calls=budget,
                                      reflection_lm=prompt_lm, num_threads=1, seed=seed,
                                      warn_on_score_mismatch=False)
                compiled = optimizer.compile(start.deepcopy(), trainset=trainset, valset=valset)
            else:
                optimizer = dspy.BootstrapFewShotWithRandomSearch(
                    metric=metric, num_candidate_programs=cfg["num_candidate_programs"],
                    num_threads=1, **demos)
                compiled = optimizer.compile(start.deepcopy(), trainset=trainset, valset=valset)
        except BudgetSpent:
            stopped = "budget"
            compiled = tracker.best if tracker.best is not None else start
    search_s = time.perf_counter() - t0
    search = {"requests": tally.requests, "calls": tally.calls, "cache_hits": tally.cache_hits}

    scoring = CallBudget()  # the final scoring is reported on top of the budget
    eval_lm = counting_lm(cfg["model"], scoring, temperature=0.0, max_tokens=gen["max_tokens"],
                          cache=True)
    eval_adapter = lenient_adapter()

    def score(program: Any, devset: list[Any]) -> float:
        evaluate = dspy.Evaluate(devset=devset, metric=metric, num_threads=1,
                                 display_progress=False, max_errors=len(devset) + 1)
        with dspy.context(lm=eval_lm, adapter=eval_adapter):
            result = evaluate(program)
        return statistics.fmean(float(s) for _, _, s in result.results)

    predictor = compiled.predictors()[0]
    row = {
        "method": method, "dspy": METHODS[method], "seed": seed, "budget": budget,
        "val": score(compiled, valset), "test": score(compiled, testset),
        "start_val": score(start, valset), "start_test": score(start, testset),
        "search": search, "stopped": stopped, "full_val_evals": tracker.full_evals,
        "scoring_requests": scoring.requests, "search_s": round(search_s, 1),
        "wall_s": round(time.perf_counter() - t0, 1),
        "format_fallbacks": adapter.fallbacks + eval_adapter.fallbacks,
        "format_parsed": adapter.parsed + eval_adapter.parsed,
        "instruction": predictor.signature.instructions, "demos": len(predictor.demos),
        "scorer": task.scorer_name, "settings": run_settings(cfg),
    }
    with (out / "runs.jsonl").open("a") as f:
        f.write(json.dumps(row) + "\n")
    return row


def recorded_runs(out: Path, cfg: dict[str, Any]) -> dict[tuple[str, int, int], dict[str, Any]]:
    """The runs in ``<out>/runs.jsonl`` made with these settings, by (method, seed, budget)."""
    path = out / "runs.jsonl"
    if not path.exists():
        return {}
    settings = run_settings(cfg)
    rows = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return {(r["method"], r["seed"], r["budget"]): r for r in rows
            if r.get("settings") == settings}


def main() -> None:
    parser, args, cfg = parse_args("dspy_direct", __doc__, lambda p: p.add_argument(
        "--resume", action="store_true", help="reuse the runs already in runs.jsonl made "
        "with the same settings (a stopped run continues)"))
    unknown = set(cfg["methods"]) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; use {sorted(METHODS)}")

    from promptopt.runs import make_task

    dspy = import_dspy()
    logging.getLogger("dspy").setLevel(logging.WARNING)
    out = Path(cfg["out"])
    out.mkdir(parents=True, exist_ok=True)
    dspy.configure_cache(enable_disk_cache=True, enable_memory_cache=True,
                         disk_cache_dir=str(out / "dspy-cache"))
    task = make_task("prompt-recovery", cfg["data"], scorer=cfg["scorer"], train=cfg["train"],
                     val=cfg["val"], test=cfg["test"], split_seed=cfg["split_seed"],
                     skip_bad_rows=cfg["skip_bad_rows"], cache=True,
                     cache_dir=str(out / "cache"))
    started = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    head = [
        f"machine: {describe()}",
        f"started: {started}; load average at start: {loadavg()}",
        f"DSPy {dspy.__version__}; settings: {args.config.name}"
        f"{' --quick' if args.quick else ''}: "
        + ", ".join(f"{k}={cfg[k]}" for k in ("data", "model", "proposer", "scorer", "budgets",
                                             "seeds", "methods", "mipro_auto",
                                             "num_candidate_programs", "max_bootstrapped_demos",
                                             "max_labeled_demos", "split_seed"))
        + f", splits {task.splits.sizes()}, scorer {task.scorer_name}",
    ]
    done = recorded_runs(out, cfg) if args.resume else {}
    if args.resume:
        head.append(f"resumed: {len(done)} recorded runs reused (their wall time is the first "
                    "attempt's)")
    print("\n".join(head), flush=True)
    header = ["DSPy optimizer (direct)", "val (mean ± sd)", "test (mean ± sd)", "start val",
              "start test", "requests used", "stopped by budget", "wall s"]
    sections = []
    for budget in cfg["budgets"]:
        rows = []
        for method in cfg["methods"]:
            runs = []
            for seed in cfg["seeds"]:
                r = done.get((method, seed, int(budget))) or run_one(
                    method, seed, int(budget), cfg, task, out)
                runs.append(r)
                print(f"  {dt.datetime.now():%H:%M:%S} {method} seed {seed} budget {budget}: "
                      f"val {r['val']:.4f} test {r['test']:.4f} (start {r['start_val']:.4f} / "
                      f"{r['start_test']:.4f}), {r['search']['requests']} requests, "
                      f"{r['stopped']}, {r['full_val_evals']} full val evaluations, "
                      f"{r['demos']} demos, {r['wall_s']}s; load {loadavg()}", flush=True)

            def stat(key: str, runs: list[dict[str, Any]] = runs) -> str:
                values = [r[key] for r in runs]
                sd = statistics.stdev(values) if len(values) > 1 else 0.0
                return f"{statistics.fmean(values):.4f} ± {sd:.4f}"

            rows.append([
                METHODS[method], stat("val"), stat("test"),
                f"{statistics.fmean(r['start_val'] for r in runs):.4f}",
                f"{statistics.fmean(r['start_test'] for r in runs):.4f}",
                f"{statistics.fmean(r['search']['requests'] for r in runs):.0f}",
                f"{sum(r['stopped'] == 'budget' for r in runs)}/{len(runs)}",
                f"{statistics.fmean(r['wall_s'] for r in runs):.1f}",
            ])
        section = (f"## budget {budget} LM requests per run\n\n{markdown(header, rows)}\n\n"
                   f"load average after: {loadavg()}")
        print("\n" + section, flush=True)
        sections.append(section)
    summary = summary_path(out, args.budgets)
    summary.write_text("# DSPy optimizers driven directly\n\n" + "\n\n".join(head) + "\n\n"
                       + "\n\n".join(sections) + "\n")
    print(f"\nwritten: {summary} (and runs.jsonl)")


if __name__ == "__main__":
    main()
