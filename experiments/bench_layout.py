"""Does the instruction's place change quality? Both layouts of the prompt-recovery task.

    flock /tmp/cpu.lock .venv/bin/python -W ignore experiments/bench_layout.py

For each task model (``--models``) and layout (``instruction_at`` "before" the texts, the
task's first layout, or "after" them, which lets the engine keep each example's state
across candidates): the starting template's score on the test split, and each of the
task's eight hand-written pool instructions on the validation split (a spread of other
candidates), with the split sizes of the quality benchmark (dev set, train 100, val 20,
test 100, split seed 0, MiniLM scorer). Results are appended to
``runs/bench-layout/results.jsonl`` and skipped when already there (the script resumes);
LLM calls are cached in ``runs/bench-layout/cache``. Prints a table per model: mean
score of the start (test) and of the pool (validation) per layout, the paired
difference after - before with a 95% bootstrap interval, and seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _evalsetup import DEFAULT_DATA  # noqa: E402
from _machine import describe, loadavg  # noqa: E402

from promptopt.runs import evaluate  # noqa: E402
from promptopt.tasks import (
    AFTER_INSTRUCTION,  # noqa: E402
    PromptRecoveryTask,  # noqa: E402
)

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "runs" / "bench-layout"
SPLITS = dict(train=100, val=20, test=100, split_seed=0, skip_bad_rows=True, scorer="minilm")


def interval(diffs: list[float], seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval of the mean of ``diffs``."""
    rng = random.Random(seed)
    means = sorted(sum(rng.choice(diffs) for _ in diffs) / len(diffs) for _ in range(2000))
    return means[50], means[1949]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="gemma-3-270m,qwen2.5-coder-0.5b")
    parser.add_argument("--data", default=DEFAULT_DATA)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    results = OUT / "results.jsonl"
    done = {}
    if results.exists():
        for line in results.read_text().splitlines():
            r = json.loads(line)
            done[(r["model"], r["layout"], r["which"])] = r
    print(f"machine: {describe()}; load average before: {loadavg()}")
    pool = list(PromptRecoveryTask.instruction_pool)
    for model in args.models.split(","):
        jobs = []
        for layout in ("before", "after"):
            start = PromptRecoveryTask.default_instruction if layout == "before" else (
                AFTER_INSTRUCTION)
            jobs.append((layout, "start", start, "test"))
            jobs += [(layout, f"pool{i}", ins, "val") for i, ins in enumerate(pool)]
        for layout, which, instruction, split in jobs:
            if (model, layout, which) in done:
                continue
            t0 = time.perf_counter()
            ev = evaluate(instruction, split=split, data=args.data, model=f"llamacpp/{model}",
                          task_options={"instruction_at": layout},
                          cache_dir=str(OUT / "cache"), **SPLITS)
            row = {"model": model, "layout": layout, "which": which, "split": split,
                   "score": ev.score, "scores": list(ev.scores),
                   "seconds": time.perf_counter() - t0,
                   "samples": list(ev.predictions[:3])}
            done[(model, layout, which)] = row
            with results.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"  {model} {layout:<6} {which:<6} {split:<4} {ev.score:.4f} "
                  f"({row['seconds']:.0f} s)", flush=True)
    print(f"load average after: {loadavg()}")
    print("| model | examples | before | after | after - before [95%] | s before | s after |")
    print("|---|---|---:|---:|---|---:|---:|")
    for model in args.models.split(","):
        for label, keys in (("start, test 100", ["start"]),
                            ("8 pool instructions, val 20 each", [f"pool{i}" for i in range(8)])):
            rows = {lay: [done[(model, lay, k)] for k in keys] for lay in ("before", "after")}
            flat = {lay: [s for r in rs for s in r["scores"]] for lay, rs in rows.items()}
            diffs = [a - b for a, b in zip(flat["after"], flat["before"], strict=True)]
            lo, hi = interval(diffs)
            mean = {lay: sum(v) / len(v) for lay, v in flat.items()}
            secs = {lay: sum(r["seconds"] for r in rs) for lay, rs in rows.items()}
            print(f"| {model} | {label} | {mean['before']:.4f} | {mean['after']:.4f} | "
                  f"{mean['after'] - mean['before']:+.4f} [{lo:+.4f}, {hi:+.4f}] | "
                  f"{secs['before']:.0f} | {secs['after']:.0f} |")


if __name__ == "__main__":
    main()
