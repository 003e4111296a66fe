"""Which embedded models to default to: each task model's start score, speed and memory,
and each proposer's rate of unusable proposals.

    .venv/bin/python experiments/bench_models.py                 # everything (about 30 min)
    .venv/bin/python experiments/bench_models.py --part task     # the task models only
    .venv/bin/python experiments/bench_models.py --part proposer --methods opro,gepa

Task models (``--task-models``; Gemma 3 270M, Qwen2.5-Coder 0.5B and 1.5B): the task's
starting template on the dev set's test split (train 100 / val 20 / test 20, split seed
0, as the quality benchmark), packaged MiniLM scorer: test score, seconds per example
(the predictions alone, model loaded, LLM cache off) and the child process's peak RSS
(VmHWM)
(the model, the scorer and torch loaded).

Proposers (``--proposers``; SmolLM2-135M, Qwen 0.5B, Qwen 1.5B): a real ``promptopt.run``
of each proposing method (``--methods``, default ape, opro, evoprompt-ga, protegi and
gepa) at ``--budget`` calls with Gemma 3 270M as the task model on the same data (train
100, but validation and test 4 each, so that the budget goes to proposals); a proposal
is unusable when
:meth:`SearchContext.accept` rejects it (empty, an echo, a reply to the asker, ...);
the usable ones are the distinct templates the run evaluated besides the start. Also
each run's peak RSS and wall time.

The proposer runs share one LLM cache (``<out>/cache``): the start template's
evaluations are paid once in wall time, though every cached call still counts against
the budget, so each run follows the path a cold run would.

Every measurement runs in a child process of its own (so peak RSS is that model's) and
is appended to ``<out>/results.jsonl``; a measurement already there is not run again,
so a stopped run continues where it was. Prints the tables as markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _machine import describe, loadavg  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT.parent / "shared" / "data" / "prompt_recovery_dev.csv"
TASK_MODELS = "gemma-3-270m,qwen2.5-coder-0.5b,qwen2.5-coder-1.5b"
PROPOSERS = "smollm2-135m,qwen2.5-coder-0.5b,qwen2.5-coder-1.5b"
METHODS = "ape,opro,evoprompt-ga,protegi,gepa"
SPLITS = {"train": 100, "val": 20, "test": 20, "split_seed": 0}
PROPOSER_SPLITS = {"train": 100, "val": 4, "test": 4, "split_seed": 0}
"""The proposer runs validate on 4 examples: the final choice's reserve for 20 would
leave a budget of 80 room for one or two proposals."""


def task_child(model: str, data: str) -> dict[str, Any]:
    """The start template on the test split: score, seconds per example."""
    from promptopt.data import load_examples, split_examples
    from promptopt.llm import LLM
    from promptopt.llm import _embedded as embedded
    from promptopt.scoring import SCSScorer
    from promptopt.tasks import PromptRecoveryTask

    examples = load_examples(data, input_fields=PromptRecoveryTask.input_fields,
                             target_field="rewrite_prompt", skip_bad_rows=True)
    splits = split_examples(examples, train=SPLITS["train"], val=SPLITS["val"],
                            test=SPLITS["test"], seed=SPLITS["split_seed"])
    scorer = SCSScorer("minilm")
    task = PromptRecoveryTask(splits, scorer=scorer)
    t0 = time.perf_counter()
    embedded.load(model.split("/", 1)[1])
    load_s = time.perf_counter() - t0
    scorer.embed(["warm up"])
    llm = LLM(model, cache=None)
    start = task.start_template()
    test = task.examples("test")
    t0 = time.perf_counter()
    predictions = task.predict(llm, start, test)
    seconds = time.perf_counter() - t0
    scores = task.score(predictions, test, start)
    return {"test_score": float(scores.mean()), "s_per_example": seconds / len(test),
            "load_s": load_s, "n": len(test), "prompt_tokens": llm.usage.prompt_tokens,
            "completion_tokens": llm.usage.completion_tokens,
            "samples": [[p, e.target] for p, e in list(zip(predictions, test, strict=True))[:3]]}


def proposer_child(proposer: str, method: str, data: str, budget: int,
                   cache: str) -> dict[str, Any]:
    """One run with ``proposer``: proposals usable and rejected (by reason)."""
    import optuna

    from promptopt import run

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/s.db"
        t0 = time.perf_counter()
        result = run(method, data=data, model="llamacpp/gemma-3-270m", proposer=proposer,
                     budget=budget, seed=0, scorer="minilm", storage=url, study="s",
                     cache_dir=cache, skip_bad_rows=True, **PROPOSER_SPLITS)
        wall = time.perf_counter() - t0
        trials = optuna.load_study(study_name="s", storage=url).trials
        ids = {t.user_attrs.get("template_id") for t in trials} - {None, result.start_template.id}
        instructions = sorted({t.user_attrs.get("instruction", "") for t in trials
                               if t.user_attrs.get("template_id") in ids})
    rejected = dict(result.rejected)
    usable = len(ids)
    total = usable + sum(rejected.values())
    return {"usable": usable, "rejected": rejected, "proposed": total,
            "unusable_rate": (total - usable) / total if total else None,
            "wall_s": wall, "val_gain": result.val_gain.to_dict() if result.val_gain else None,
            "test_score": result.test_score, "start_test_score": result.start_test_score,
            "proposals": instructions[:12]}


def measure(key: dict[str, Any], out: Path) -> dict[str, Any]:
    """Run one measurement in a child process; returns its record with the peak RSS."""
    with tempfile.NamedTemporaryFile("r", suffix=".json") as answer:
        cmd = [sys.executable, __file__, "--child", json.dumps(key), "--answer", answer.name]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"{key} failed:\n{proc.stderr[-3000:]}")
        record = json.loads(Path(answer.name).read_text())
    return {**key, **record, "child_wall_s": wall}


def peak_rss_gib() -> float:
    """This process's peak resident memory (VmHWM), GiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def tables(records: list[dict[str, Any]]) -> str:
    lines = ["| task model | start test score | s / example | prompt tokens / example "
             "| load s | peak RSS GiB |", "|---|---:|---:|---:|---:|---:|"]
    for r in records:
        if r["part"] == "task":
            lines.append(f"| {r['model']} | {r['test_score']:.4f} | {r['s_per_example']:.2f} | "
                         f"{r['prompt_tokens'] / r['n']:.0f} | {r['load_s']:.1f} | "
                         f"{r['peak_rss_gib']:.2f} |")
    lines += ["", "| proposer | method | proposed | usable | unusable rate | rejected by reason "
              "| wall s | peak RSS GiB |", "|---|---|---:|---:|---:|---|---:|---:|"]
    for r in records:
        if r["part"] == "proposer":
            rate = "-" if r["unusable_rate"] is None else f"{r['unusable_rate']:.2f}"
            reasons = ", ".join(f"{k} {v}" for k, v in sorted(r["rejected"].items())) or "none"
            lines.append(f"| {r['proposer']} | {r['method']} | {r['proposed']} | {r['usable']} | "
                         f"{rate} | {reasons} | {r['wall_s']:.0f} | {r['peak_rss_gib']:.2f} |")
    by: dict[str, list[int]] = {}
    for r in records:
        if r["part"] == "proposer":
            tot = by.setdefault(r["proposer"], [0, 0])
            tot[0] += r["proposed"]
            tot[1] += r["usable"]
    lines += ["", "| proposer | proposed | usable | unusable rate |", "|---|---:|---:|---:|"]
    for name, (proposed, usable) in by.items():
        rate = (proposed - usable) / proposed if proposed else float("nan")
        lines.append(f"| {name} | {proposed} | {usable} | {rate:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=["task", "proposer", "all"], default="all")
    parser.add_argument("--task-models", default=TASK_MODELS)
    parser.add_argument("--proposers", default=PROPOSERS)
    parser.add_argument("--methods", default=METHODS)
    parser.add_argument("--budget", type=int, default=80)
    parser.add_argument("--data", default=str(DEV))
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-models")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--answer", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        key = json.loads(args.child)
        if key["part"] == "task":
            record = task_child(key["model"], key["data"])
        else:
            record = proposer_child(key["proposer"], key["method"], key["data"], key["budget"],
                                    str(args.out / "cache"))
        record["peak_rss_gib"] = peak_rss_gib()
        Path(args.answer).write_text(json.dumps(record))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "results.jsonl"
    done = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    print(f"machine: {describe()}\nload average before: {loadavg()}", flush=True)
    keys: list[dict[str, Any]] = []
    if args.part in ("task", "all"):
        keys += [{"part": "task", "model": f"llamacpp/{m}", "data": args.data}
                 for m in args.task_models.split(",")]
    if args.part in ("proposer", "all"):
        keys += [{"part": "proposer", "proposer": f"llamacpp/{p}", "method": m,
                  "data": args.data, "budget": args.budget}
                 for p in args.proposers.split(",") for m in args.methods.split(",")]
    for key in keys:
        if any(all(r.get(k) == v for k, v in key.items()) for r in done):
            continue
        print(f"measuring {key} ...", flush=True)
        record = measure(key, args.out)
        done.append(record)
        with path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        print(json.dumps({k: v for k, v in record.items() if k != "data"})[:600], flush=True)
    print(f"load average after: {loadavg()}")
    print(tables([r for r in done if any(all(r.get(k) == v for k, v in key.items())
                                         for key in keys)]))


if __name__ == "__main__":
    main()
