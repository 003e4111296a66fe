"""Scaling: time and peak memory of mean-prompt and of one OPRO step as the train split grows.

    .venv/bin/python experiments/bench_scaling.py                # sizes 100, 300, 1000

For each train size, in a child process of its own (so that peak memory is that
run's alone), on ``../shared/data/prompt_recovery_dev.csv`` (its 2 rows with an empty
``original_text`` skipped: 993 usable rows, so "1000" means all 993), the train split
being the first N rows of one seeded shuffle (seed 0; each size's split contains
the smaller ones):

- ``mean-prompt``: :func:`search_mean_prompt` with its defaults (greedy, 24 tokens at
  most, pool 1,000, seed 0) on the N train prompts, packaged MiniLM scorer, no disk
  cache.
- ``opro``: ONE OPRO step with the embedded model as recovery model and proposer: one
  meta-prompt (2 exemplars sampled from the train split plus the trajectory), its
  proposals (``proposals_per_step=4``, temperature 1, seeded) and the evaluation of
  each accepted proposal on the run's minibatch (4 train examples), no LLM cache.
  The starting template's minibatch evaluation (step 0) is done first, timed
  apart, so the step itself is what ``OPRO.search`` runs with ``max_steps=1``.

Model loading is outside the timings. Memory: the child's peak resident set size
over the timed part alone (``VmHWM`` reset through ``/proc/self/clear_refs`` just
before it), its resident size before it (models loaded, data split), and the
child's overall peak (``ru_maxrss``). Prints the machine, the load average before
and after each child, and one table.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _machine import describe, loadavg  # noqa: E402

DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "prompt_recovery_dev.csv"
MIB = 1024  # KiB per MiB


def _status_kib(field: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{field}:\s+(\d+)\s+kB", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def _reset_peak() -> bool:
    """Reset this process's peak RSS (Linux >= 4.0); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class Meter:
    """Times a block and measures its peak RSS."""

    def __enter__(self) -> Meter:
        self.rss_before = _status_kib("VmRSS")
        self.reset = _reset_peak()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self.t0
        self.peak = _status_kib("VmHWM") if self.reset else None

    def as_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "rss_before_kib": self.rss_before,
                "peak_kib": self.peak,
                "max_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


def train_split(data: str, size: int) -> tuple[list[Any], int]:
    """The first ``size`` rows of the seeded shuffle (all rows if fewer), and the row count."""
    from promptopt.data import load_examples
    from promptopt.tasks import PromptRecoveryTask

    examples = load_examples(data, input_fields=PromptRecoveryTask.input_fields,
                             target_field=PromptRecoveryTask.target_field, skip_bad_rows=True)
    order = list(examples)
    random.Random(0).shuffle(order)
    return order[:size], len(examples)


def child_mean_prompt(args: argparse.Namespace) -> dict[str, Any]:
    """One mean-prompt search on the train prompts."""
    from promptopt.optimizers import search_mean_prompt
    from promptopt.scoring import SCSScorer

    train, rows = train_split(args.data, args.size)
    scorer = SCSScorer(args.scorer)
    _ = scorer.tokenizer  # load the model outside the timing
    scorer.embed(["warm up"])
    with Meter() as m:
        result = search_mean_prompt(scorer, [e.target for e in train], seed=0)
    return {**m.as_dict(), "train": len(train), "rows": rows,
            "detail": f"{len(result.steps)} tokens, {result.embedded} texts embedded, "
                      f"{result.entries} pool entries, stopped: {result.stopped}"}


def child_opro(args: argparse.Namespace) -> dict[str, Any]:
    """The starting template's minibatch evaluation, then one timed OPRO step."""
    from promptopt.data import Splits
    from promptopt.evaluator import Evaluator
    from promptopt.llm import LLM
    from promptopt.llm import _embedded as embedded
    from promptopt.optimizers import OPRO
    from promptopt.scoring import SCSScorer
    from promptopt.search import SearchContext
    from promptopt.tasks import PromptRecoveryTask

    train, rows = train_split(args.data, args.size)
    scorer = SCSScorer(args.scorer)
    task = PromptRecoveryTask(Splits(train, [], []), scorer=scorer)
    llm, proposer = LLM(args.model, cache=None), LLM(args.proposer, cache=None)
    for model in {args.model, args.proposer}:
        if model.startswith("llamacpp/"):
            embedded.load(model.split("/", 1)[1])
    scorer.embed(["warm up"])
    evaluator = Evaluator(task, llm)
    start = task.start_template()
    opro = OPRO(max_steps=1)

    def context() -> SearchContext:
        return SearchContext(task=task, evaluator=evaluator, proposer=proposer, start=start,
                             seed=0)

    # Step 0 on a twin context (same seed, so the same minibatch): the search below
    # then finds the start's evaluation in the evaluator's memo and runs step 1 only.
    t0 = time.perf_counter()
    batch = context().minibatch(opro.minibatch_size)
    evaluator.evaluate(start, "train", examples=batch)
    start_s = time.perf_counter() - t0
    recovery_before = llm.usage.as_dict()
    proposing = [0.0]
    complete_many = proposer.complete_many

    def timed_complete_many(*a: Any, **kw: Any) -> Any:
        t = time.perf_counter()
        try:
            return complete_many(*a, **kw)
        finally:
            proposing[0] += time.perf_counter() - t

    proposer.complete_many = timed_complete_many  # type: ignore[method-assign]
    ctx = context()
    with Meter() as m:
        opro.search(ctx)
    rec = llm.usage.since(recovery_before)
    prop = proposer.usage.as_dict()
    accepted = len(evaluator.history) - 1
    return {**m.as_dict(), "train": len(train), "rows": rows, "start_s": start_s,
            "propose_s": proposing[0], "proposer_calls": prop["calls"],
            "recovery_calls": rec["calls"],
            "detail": f"step 0 (start on the minibatch, not in 'seconds') {start_s:.1f}s; "
                      f"step 1: {prop['calls']} proposals in {proposing[0]:.1f}s "
                      f"({prop['prompt_tokens'] // max(prop['calls'], 1)} prompt tokens each, "
                      f"{prop['completion_tokens']} generated), {accepted} accepted "
                      f"(rejected: {dict(ctx.rejected) or 'none'}), {rec['calls']} recovery "
                      f"calls in {m.seconds - proposing[0]:.1f}s"}


def run_child(part: str, size: int, args: argparse.Namespace) -> dict[str, Any]:
    """Run one (part, size) in a fresh interpreter; its JSON result."""
    cmd = [sys.executable, "-W", "ignore", __file__, "--child", part, "--size", str(size),
           "--data", args.data, "--scorer", args.scorer, "--model", args.model,
           "--proposer", args.proposer]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr or proc.stdout)[-1500:]}
    return json.loads(lines[-1])


def mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / MIB:,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100,300,1000", help="train sizes, comma-separated")
    parser.add_argument("--parts", default="mean-prompt,opro", help="mean-prompt, opro")
    parser.add_argument("--data", default=str(DEV))
    parser.add_argument("--scorer", default="minilm")
    parser.add_argument("--model", default="llamacpp/gemma-3-270m")
    parser.add_argument("--proposer", default=None, help="default: --model")
    parser.add_argument("--child", choices=["mean-prompt", "opro"], help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.proposer = args.proposer or args.model
    if args.child:
        fn = child_mean_prompt if args.child == "mean-prompt" else child_opro
        print(json.dumps(fn(args)))
        return

    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    print(f"machine: {describe()}")
    print(f"data: {args.data}; scorer {args.scorer}; model {args.model}, proposer "
          f"{args.proposer}")
    print(f"load average at start: {loadavg()}")
    results = []
    for part in parts:
        for size in sizes:
            before = loadavg()
            res = run_child(part, size, args)
            results.append((part, size, res, before, loadavg()))
            if "error" in res:
                print(f"{part} {size}: FAILED\n{res['error']}")
            else:
                print(f"{part} train={res['train']}: {res['seconds']:.1f}s; {res['detail']} "
                      f"(load {before} -> {loadavg()})", flush=True)
    print()
    print(f"{'part':<12}{'train':>7}{'seconds':>9}{'RSS before MiB':>16}{'peak MiB':>10}"
          f"{'rise MiB':>10}{'max RSS MiB':>13}{'LLM calls':>11}   load before -> after")
    for part, size, res, before, after in results:
        if "error" in res:
            print(f"{part:<12}{size:>7}   failed")
            continue
        rise = (res["peak_kib"] - res["rss_before_kib"]
                if res["peak_kib"] is not None and res["rss_before_kib"] is not None else None)
        train = f"{res['train']}" + ("*" if res["train"] < size else "")
        calls = (f"{res['proposer_calls']}+{res['recovery_calls']}" if "proposer_calls" in res
                 else "0")
        print(f"{part:<12}{train:>7}{res['seconds']:>9.1f}{mib(res['rss_before_kib']):>16}"
              f"{mib(res['peak_kib']):>10}{mib(rise):>10}{mib(res['max_rss_kib']):>13}"
              f"{calls:>11}   {before} -> {after}")
    if any(res.get("train", 0) < size for _, size, res, _, _ in results):
        rows = next(r[2]["rows"] for r in results if "rows" in r[2])
        print(f"* all {rows} usable rows (fewer than asked)")
    print("seconds: the timed part only (models loaded before); peak: highest RSS during "
          "it; rise: peak minus RSS before it; max RSS: the child's overall peak; LLM calls: "
          "proposer + recovery calls in the step")


if __name__ == "__main__":
    main()
