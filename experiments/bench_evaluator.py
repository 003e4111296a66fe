"""Evaluator throughput vs the raw llama-cpp-python loop, cold and warm cache.

    .venv/bin/python experiments/bench_evaluator.py --n 200

Renders one template on N examples, then times (1) the raw llama.cpp loop generating
exactly those prompts (the engine's limit), (2) promptopt's evaluator with an empty
cache (LLM calls through LiteLLM + cleaning + scoring), (3) the evaluator again on the
same cache (a rerun). Prints seconds, examples/s and ratios to the raw loop, plus the
scorer's embedding throughput with and without its cache.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from _machine import describe  # noqa: E402

from promptopt.data import load_examples, sample_path, split_examples  # noqa: E402
from promptopt.evaluator import Evaluator  # noqa: E402
from promptopt.llm import LLM, DiskCache  # noqa: E402
from promptopt.llm import _embedded as embedded  # noqa: E402
from promptopt.scorer import SCSScorer  # noqa: E402
from promptopt.tasks import PromptRecoveryTask  # noqa: E402

DEV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "prompt_recovery_dev.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200, help="examples to evaluate")
    parser.add_argument("--data", default=str(DEV) if DEV.exists() else str(sample_path()))
    parser.add_argument("--model", default="gemma-3-270m")
    args = parser.parse_args()

    examples = load_examples(
        args.data, input_fields=PromptRecoveryTask.input_fields, target_field="rewrite_prompt",
        skip_bad_rows=True,
    )
    n = min(args.n, len(examples) - 2)
    splits = split_examples(examples, train=1, val=1, test=n, seed=0)
    scorer = SCSScorer("minilm")
    task = PromptRecoveryTask(splits, scorer=scorer)
    template = task.start_template()
    gen = task.generation
    llama = embedded.load(args.model)
    scorer.embed(["warm up"])  # load both models before timing anything
    print(f"machine: {describe()}")
    print(f"data: {args.data} ({n} examples), model llamacpp/{args.model}, scorer {scorer.name}")

    prompts = [
        embedded.messages_to_prompt(task.render(template, e, chat=False)) for e in splits.test
    ]
    # Interleave the raw loop and the evaluator chunk by chunk, so that any background
    # load on the machine hits both alike.
    chunk = 5
    raw = cold = 0.0
    cold_scores: list[float] = []
    with tempfile.TemporaryDirectory() as cache_dir:
        cold_llm = LLM(f"llamacpp/{args.model}", cache=DiskCache(cache_dir, "llm"))
        cold_eval = Evaluator(task, cold_llm)
        for lo in range(0, n, chunk):
            t0 = time.perf_counter()
            for p in prompts[lo : lo + chunk]:  # the engine's limit: same prompts, no framework
                llama.reset()
                llama.create_completion(
                    p, max_tokens=gen["max_tokens"], temperature=0.0, stop=gen["stop"], seed=0
                )
            raw += time.perf_counter() - t0
            t0 = time.perf_counter()
            ev = cold_eval.evaluate(template, "test", examples=splits.test[lo : lo + chunk])
            cold += time.perf_counter() - t0
            cold_scores.extend(ev.scores)
        warm_llm = LLM(f"llamacpp/{args.model}", cache=DiskCache(cache_dir, "llm"))
        scorer._memory.clear()
        t0 = time.perf_counter()
        warm_ev = Evaluator(task, warm_llm).evaluate(template, "test")
        warm = time.perf_counter() - t0
    runs = {
        "cold": (cold, sum(cold_scores) / len(cold_scores), cold_llm.usage.as_dict()),
        "warm": (warm, warm_ev.score, warm_llm.usage.as_dict()),
    }

    print(f"{'path':<32}{'seconds':>10}{'ex/s':>10}{'x raw time':>12}")
    print(f"{'raw llama.cpp loop':<32}{raw:>10.2f}{n / raw:>10.2f}{1.0:>12.3f}")
    for label, (secs, score, usage) in runs.items():
        print(f"{'promptopt evaluator, ' + label:<32}{secs:>10.2f}{n / secs:>10.2f}"
              f"{secs / raw:>12.3f}   (score {score:.4f}, calls {usage['calls']}, "
              f"cache hits {usage['cache_hits']})")
    cold, warm = runs["cold"][0], runs["warm"][0]
    print(f"cold overhead vs raw: {100 * (cold / raw - 1):+.1f}%   "
          f"warm speed-up: {cold / warm:.0f}x")

    texts = [e.target for e in examples] + [e.inputs["original_text"][:200] for e in examples]
    fresh = SCSScorer("minilm")
    fresh.embed(["warm up"])
    t0 = time.perf_counter()
    fresh.embed(texts)
    no_cache = time.perf_counter() - t0
    t0 = time.perf_counter()
    fresh.embed(texts)
    cached = time.perf_counter() - t0
    print(f"scorer embeddings: {len(texts)} texts, {len(texts) / no_cache:.0f}/s uncached, "
          f"{len(texts) / max(cached, 1e-9):.0f}/s from cache")


if __name__ == "__main__":
    main()
