"""The winner's curse, before and after the credible final choice: the same searches,
run by the code before that change and by this code.

    git worktree add /tmp/before 30d0a49^          # the commit before the change
    .venv/bin/python experiments/bench_before_after.py --before /tmp/before
    .venv/bin/python experiments/bench_before_after.py --before /tmp/before \\
        --method opro --proposer llamacpp/smollm2-135m --budget 150 --seeds 0,1,2

Each version runs ``python -m promptopt run`` as a user would (``--json``), with its
own source tree first on ``PYTHONPATH``, on the quality benchmark's data, splits, model
and scorer (``experiments/quality.toml``); both share one LLM cache (a cached call still
counts against the budget, so each result is a cold run's, but wall times are not
comparable). This code then scores every run's start and returned template on the test
split (cache hits) and gives the paired test gain with its 90% interval. Prints per run
and per version: validation and test of the returned template, the gain, and whether it
lies below the start (credibly: the whole interval below 0; by the point estimate).
The default is the issue's example: OPRO, proposer SmolLM2-135M, budget 150.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _machine import describe, loadavg  # noqa: E402
from bench_quality import CONFIG, ROOT, load_config, score_on_test  # noqa: E402


def run_one(code: Path, cfg: dict[str, Any], args: argparse.Namespace, seed: int,
            storage: str, study: str, cache: Path) -> dict[str, Any]:
    """One ``promptopt run`` by the code in ``code``; its ``--json`` result."""
    cmd = [sys.executable, "-m", "promptopt", "run", "-m", args.method,
           "--data", str(cfg["data"]), "--model", cfg["model"],
           "--proposer", args.proposer, "--scorer", cfg["scorer"],
           "--budget", str(args.budget), "--seed", str(seed),
           "--train", str(cfg["train"]), "--val", str(cfg["val"]), "--test", str(cfg["test"]),
           "--split-seed", str(cfg["split_seed"]), "--storage", storage, "--study", study,
           "--json"]
    if cfg.get("skip_bad_rows"):
        cmd.append("--skip-bad-rows")
    env = {**os.environ, "PYTHONPATH": str(code), "PROMPTOPT_CACHE_DIR": str(cache)}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=code, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{code}: {' '.join(cmd)} failed ({done.returncode}):\n"
                         f"{done.stderr[-3000:]}")
    out = json.loads(done.stdout)
    out["_wall_s"] = time.perf_counter() - t0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, type=Path,
                    help="source tree of the code before the change (a git worktree)")
    ap.add_argument("--method", default="opro")
    ap.add_argument("--proposer", default="llamacpp/smollm2-135m")
    ap.add_argument("--budget", type=int, default=150)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "before-after")
    ap.add_argument("--cache", type=Path, default=None,
                    help="LLM cache folder (default: OUT/cache)")
    args = ap.parse_args()
    cfg = load_config(CONFIG, "compare", quick=False)
    args.out.mkdir(parents=True, exist_ok=True)
    cache = args.cache or args.out / "cache"
    print(describe(), f"load {loadavg()}", flush=True)
    before_rev = subprocess.run(["git", "-C", str(args.before), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
    after_rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                               capture_output=True, text=True).stdout.strip()

    from promptopt.scoring import paired_interval
    from promptopt.template import Template

    rows, counts = [], {}
    start_scores: dict[str, Any] = {}
    for label, code, rev in (("before", args.before, before_rev), ("after", ROOT, after_rev)):
        below = point = kept = 0
        for seed in (int(s) for s in args.seeds.split(",")):
            storage = f"sqlite:///{args.out / (label + '.db')}"
            study = f"{args.method}-b{args.budget}-s{seed}"
            res = run_one(code, cfg, args, seed, storage, study, cache)
            start = Template.from_dict(res["start_template"])
            returned = Template.from_dict(res["template"])
            if start.id not in start_scores:
                start_scores[start.id] = score_on_test(start, cfg, str(cache))
            base = start_scores[start.id]
            mine = base if returned.id == start.id else score_on_test(returned, cfg, str(cache))
            gain = paired_interval(base.scores, mine.scores, level=0.9)
            kept += returned.id == start.id
            below += gain.below_zero
            point += mine.score < base.score
            rows.append(f"| {label} ({rev}) | {seed} | {res['val_score']:.4f} | "
                        f"{res['start_val_score']:.4f} | {mine.score:.4f} | {base.score:.4f} | "
                        f"{gain} | {'yes' if gain.below_zero else 'no'} | "
                        f"{res['_wall_s']:.0f} | {returned.instruction[:70]!r} |")
            print(rows[-1], flush=True)
        counts[label] = (below, point, kept)
    print(f"\n{args.method}, proposer {args.proposer}, budget {args.budget}, seeds {args.seeds}; "
          f"{describe()}; load {loadavg()}\n")
    print("| code | seed | val | start val | test | start test | test gain (90%) | "
          "credibly below start | wall s | returned instruction |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print()
    for label, (below, point, kept) in counts.items():
        print(f"{label}: below the start on test credibly {below}, by the point estimate "
              f"{point}; returned the start {kept}")


if __name__ == "__main__":
    main()
