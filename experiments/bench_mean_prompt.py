"""Benchmark of the mean-prompt search: wall time and SCS per step, on CPU.

    LITELLM_LOCAL_MODEL_COST_MAP=True .venv/bin/python experiments/bench_mean_prompt.py

By default runs on the bundled 48-row sample and on ../shared/data/prompt_recovery_dev.csv
(995 rows), each split 50/25/rest with seed 0, with a fresh packaged MiniLM scorer per
dataset (no embedding cache carried over, no disk cache). Prints the machine, rows,
settings, seconds (model load and search separately), the final string and the
train/val/test SCS after each accepted token.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from _machine import describe  # noqa: E402

from promptopt.data import load_examples, sample_path, split_examples  # noqa: E402
from promptopt.optimizers import MeanPromptStep, search_mean_prompt  # noqa: E402
from promptopt.scoring import SCSScorer  # noqa: E402

DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "prompt_recovery_dev.csv"


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def bench(path: Path, args: argparse.Namespace) -> None:
    """Run one search on ``path`` and print its figures."""
    # Only the true prompts matter here, so rows with an empty input cell (the dev
    # set has a few) are kept; rows without a prompt are dropped.
    examples = load_examples(path, input_fields=(), target_field="rewrite_prompt")
    splits = split_examples(examples, train=0.5, val=0.25, test=None, seed=0)
    sizes = splits.sizes()
    print(f"\n== {path.name}: {len(examples)} rows (train {sizes['train']}, val {sizes['val']}, "
          f"test {sizes['test']}); load average {_load()}")
    scorer = SCSScorer(args.scorer)
    t0 = time.perf_counter()
    _ = scorer.tokenizer  # load the model outside the timed search
    load_s = time.perf_counter() - t0

    def show(step: MeanPromptStep) -> None:
        print(f"  step {step.step:2d}  +{step.added!r:18} train {step.train:.4f}  "
              f"val {step.val:.4f}  test {step.test:.4f}  ({time.perf_counter() - t1:.1f}s)")

    t1 = time.perf_counter()
    result = search_mean_prompt(
        scorer,
        [e.target for e in splits.train],
        max_tokens=args.max_tokens,
        beam_width=args.beam_width,
        pool_size=args.pool_size,
        seed=args.seed,
        val_targets=[e.target for e in splits.val],
        test_targets=[e.target for e in splits.test],
        on_step=show,
    )
    search_s = time.perf_counter() - t1
    print(f"  scorer {scorer.name}: load {load_s:.1f}s; search {search_s:.1f}s; "
          f"{result.embedded} texts embedded; pool {result.entries} entries screened, "
          f"{result.candidates} per later step; stopped: {result.stopped}")
    ranks = [result.pool.index(s.added) + 1 if s.added in result.pool else None
             for s in result.steps[1:]]
    print(f"  final ({len(result.steps)} tokens): {result.text!r}")
    print(f"  pool rank of tokens 2..: {ranks}; load average now {_load()}")


def main() -> None:
    """Parse options and run the benchmark on each dataset."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", action="append", type=Path,
                        help="dataset file (repeatable; default: bundled sample and dev set)")
    parser.add_argument("--scorer", default="minilm")
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--beam-width", type=int, default=1)
    parser.add_argument("--pool-size", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    paths = args.data or [sample_path()] + ([DEV] if DEV.is_file() else [])
    print(f"machine: {describe()} ({platform.platform()})")
    print(f"settings: scorer={args.scorer} max_tokens={args.max_tokens} "
          f"beam_width={args.beam_width} pool_size={args.pool_size} seed={args.seed}")
    for path in paths:
        bench(Path(path), args)


if __name__ == "__main__":
    main()
