"""Evaluator throughput vs dspy.Evaluate vs the raw llama-cpp-python loop, cold and warm.

    .venv/bin/python experiments/bench_evaluator_dspy.py --n 200

Renders one template (the task's starting template) on N test examples, then times,
interleaved chunk by chunk so that background load hits every path alike:

1. the raw llama.cpp loop generating exactly the prompts promptopt renders (the
   engine's limit);
2. promptopt's evaluator with an empty cache (LLM calls through LiteLLM + cleaning +
   scoring);
3. ``dspy.Evaluate`` on the same program, a ``dspy.Predict`` over
   ``original_text, rewritten_text -> rewrite_prompt`` with the template's
   instruction, on ``dspy.LM("llamacpp/<model>", engine="litellm")`` (the same
   in-process model through LiteLLM's custom provider) with DSPy's response cache on,
   in a fresh empty folder; metric: the same SCS scorer (its own instance, so neither
   path reuses the other's embeddings) on the cleaned prediction;
4. the raw loop again, on the prompts DSPy sent (its ChatAdapter markup makes them
   longer, and the base model writes more tokens), i.e. the engine's limit for path 3.

Then the warm reruns on the filled caches, each with fresh in-memory state (new LLM
objects, DSPy cache object re-opened on the same folder, scorer memory cleared). It
prints seconds, examples/s, ratios to the raw loop, prompt and completion tokens per
example and milliseconds per completion token (generation lengths differ between
paths, so that is the fair per-token comparison), plus the scorer's embedding
throughput uncached, from its memory cache and from its disk cache.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _evalsetup import DEFAULT_DATA, evaluation_setup  # noqa: E402
from _machine import loadavg  # noqa: E402

from promptopt.evaluator import Evaluator  # noqa: E402
from promptopt.llm import LLM, DiskCache  # noqa: E402
from promptopt.llm import _embedded as embedded  # noqa: E402
from promptopt.scoring import SCSScorer  # noqa: E402


class Figures:
    """Accumulated figures of one path."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.seconds = 0.0
        self.examples = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.scores: list[float] = []
        self.note = ""

    def row(self, raw_s: float) -> str:
        n = max(self.examples, 1)
        tok = self.completion_tokens
        per_tok = f"{1000 * self.seconds / tok:>9.1f}" if tok else f"{'-':>9}"
        toks = (f"{self.prompt_tokens / n:>8.0f}{tok / n:>8.1f}" if tok
                else f"{'-':>8}{'-':>8}")
        score = f"{sum(self.scores) / len(self.scores):.4f}" if self.scores else "-"
        return (f"{self.label:<40}{self.seconds:>9.2f}{self.examples / self.seconds:>9.2f}"
                f"{self.seconds / raw_s:>9.3f}{toks}{per_tok}{score:>8}  {self.note}")


def raw_generate(llama: Any, prompt: str, max_tokens: int, stop: list[str] | None) -> dict:
    """One generation straight on llama.cpp, as the provider runs it (greedy, seed 0)."""
    llama.reset()
    ctx_room = embedded.N_CTX - max_tokens - 8
    tokens = llama.tokenize(prompt.encode("utf-8"), add_bos=True)
    if len(tokens) > ctx_room:  # the provider keeps the end of an over-long prompt
        tokens = tokens[:1] + tokens[-(ctx_room - 1):]
    out = llama.create_completion(tokens, max_tokens=max_tokens, temperature=0.0, stop=stop,
                                  seed=0)
    return out.get("usage", {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200, help="examples to evaluate")
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--chunk", type=int, default=5, help="examples per interleaved chunk")
    parser.add_argument("--no-dspy", action="store_true", help="skip the DSPy paths (3, 4)")
    args = parser.parse_args()

    n, splits, scorer, task, llama, examples = evaluation_setup(args.data, args.model,
                                                                n=args.n, train=1)
    template = task.start_template()
    gen = task.generation
    model = f"llamacpp/{args.model}"
    print(f"data: {args.data} ({n} examples), model {model}, scorer {scorer.name}")

    dspy_on = not args.no_dspy
    if dspy_on:
        from _dspy_direct import import_dspy, lenient_adapter, scs_metric, signature, to_dspy

        dspy = import_dspy()
        logging.getLogger("dspy").setLevel(logging.ERROR)
        dspy_scorer = SCSScorer("minilm")  # its own memory cache
        dspy_scorer.embed(["warm up"])
        program = dspy.Predict(signature(template.instruction))
        devset = to_dspy(splits.test, task.max_text_tokens)
        metric = scs_metric(dspy_scorer, task.default_prediction)
        adapter = lenient_adapter()

        def dspy_lm() -> Any:
            return dspy.LM(model, engine="litellm", temperature=0.0,
                           max_tokens=gen["max_tokens"], cache=True, num_retries=0)

        def dspy_eval(lm: Any, part: list[Any]) -> list[float]:
            evaluate = dspy.Evaluate(devset=part, metric=metric, num_threads=1,
                                     display_progress=False, max_errors=len(part) + 1)
            with dspy.context(lm=lm, adapter=adapter):
                result = evaluate(program)
            return [float(s) for _, _, s in result.results]

    prompts = [
        embedded.messages_to_prompt(task.render(template, e, chat=False)) for e in splits.test
    ]
    raw = Figures("raw llama.cpp loop (promptopt's prompts)")
    cold = Figures("promptopt evaluator, cold cache")
    dcold = Figures("dspy.Evaluate, cold cache")
    draw = Figures("raw llama.cpp loop (DSPy's prompts)")
    with tempfile.TemporaryDirectory() as tmp:
        cold_llm = LLM(model, cache=DiskCache(tmp, "llm"))
        cold_eval = Evaluator(task, cold_llm)
        if dspy_on:
            dspy.configure_cache(enable_disk_cache=True, enable_memory_cache=True,
                                 disk_cache_dir=f"{tmp}/dspy")
            dcold_lm = dspy_lm()
        for lo in range(0, n, args.chunk):
            part = slice(lo, lo + args.chunk)
            t0 = time.perf_counter()
            usages = [raw_generate(llama, p, gen["max_tokens"], gen["stop"]) for p in prompts[part]]
            raw.seconds += time.perf_counter() - t0
            raw.examples += len(usages)
            raw.prompt_tokens += sum(u.get("prompt_tokens", 0) for u in usages)
            raw.completion_tokens += sum(u.get("completion_tokens", 0) for u in usages)

            t0 = time.perf_counter()
            ev = cold_eval.evaluate(template, "test", examples=splits.test[part])
            cold.seconds += time.perf_counter() - t0
            cold.examples += ev.n
            cold.scores.extend(ev.scores)
            if not dspy_on:
                continue

            seen = len(dcold_lm.history)
            t0 = time.perf_counter()
            scores = dspy_eval(dcold_lm, devset[part])
            dcold.seconds += time.perf_counter() - t0
            dcold.examples += len(scores)
            dcold.scores.extend(scores)
            entries = dcold_lm.history[seen:]
            dcold.prompt_tokens += sum(int(h["usage"].get("prompt_tokens") or 0) for h in entries)
            dcold.completion_tokens += sum(
                int(h["usage"].get("completion_tokens") or 0) for h in entries)
            dspy_prompts = [embedded.messages_to_prompt(h["messages"]) for h in entries]
            t0 = time.perf_counter()  # the engine on DSPy's own prompts (no stop strings)
            usages = [raw_generate(llama, p, gen["max_tokens"], None) for p in dspy_prompts]
            draw.seconds += time.perf_counter() - t0
            draw.examples += len(usages)
            draw.prompt_tokens += sum(u.get("prompt_tokens", 0) for u in usages)
            draw.completion_tokens += sum(u.get("completion_tokens", 0) for u in usages)
        u = cold_llm.usage.as_dict()
        cold.prompt_tokens, cold.completion_tokens = u["prompt_tokens"], u["completion_tokens"]
        cold.note = f"calls {u['calls']}, cache hits {u['cache_hits']}"

        warm = Figures("promptopt evaluator, warm cache")
        warm_llm = LLM(model, cache=DiskCache(tmp, "llm"))
        scorer._memory.clear()
        t0 = time.perf_counter()
        warm_ev = Evaluator(task, warm_llm).evaluate(template, "test")
        warm.seconds = time.perf_counter() - t0
        warm.examples, warm.scores = warm_ev.n, list(warm_ev.scores)
        u = warm_llm.usage.as_dict()
        warm.note = f"calls {u['calls']}, cache hits {u['cache_hits']}"

        if dspy_on:
            calls = sum(1 for h in dcold_lm.history if not getattr(h["response"], "cache_hit", 0))
            dcold.note = (f"calls {calls}, format fallbacks {adapter.fallbacks}/"
                          f"{adapter.fallbacks + adapter.parsed}")
            dwarm = Figures("dspy.Evaluate, warm cache")
            dspy.configure_cache(enable_disk_cache=True, enable_memory_cache=True,
                                 disk_cache_dir=f"{tmp}/dspy")  # empty memory, same disk
            dspy_scorer._memory.clear()
            dwarm_lm = dspy_lm()
            t0 = time.perf_counter()
            dwarm.scores = dspy_eval(dwarm_lm, devset)
            dwarm.seconds = time.perf_counter() - t0
            dwarm.examples = len(dwarm.scores)
            hits = sum(1 for h in dwarm_lm.history if getattr(h["response"], "cache_hit", 0))
            dwarm.note = f"calls {len(dwarm_lm.history) - hits}, cache hits {hits}"

    print(f"load average after: {loadavg()}")
    print(f"{'path':<40}{'seconds':>9}{'ex/s':>9}{'x raw':>9}{'in tok':>8}{'out tok':>8}"
          f"{'ms/otok':>9}{'score':>8}")
    rows = [raw, cold, warm] + ([draw, dcold, dwarm] if dspy_on else [])
    for p in rows:
        print(p.row(raw.seconds))
    print("(x raw: seconds / raw loop on promptopt's prompts; in/out tok: prompt and "
          "completion tokens per example; ms/otok: milliseconds per completion token)")
    print(f"promptopt cold overhead vs raw: {100 * (cold.seconds / raw.seconds - 1):+.1f}%   "
          f"warm speed-up: {cold.seconds / warm.seconds:.0f}x")
    if dspy_on:
        print(f"dspy.Evaluate cold vs raw on its own prompts: "
              f"{100 * (dcold.seconds / draw.seconds - 1):+.1f}%; vs promptopt cold: "
              f"{dcold.seconds / cold.seconds:.2f}x time; warm speed-up: "
              f"{dcold.seconds / dwarm.seconds:.0f}x")

    texts = [e.target for e in examples] + [e.inputs["original_text"][:200] for e in examples]
    fresh = SCSScorer("minilm")  # memory cache only (as the scorer of path 2 here)
    fresh.embed(["warm up"])
    no_cache = timed(fresh.embed, texts)
    cached = timed(fresh.embed, texts)
    with tempfile.TemporaryDirectory() as tmp:
        writer = SCSScorer("minilm", cache=DiskCache(tmp, "embeddings"))
        writer.embed(["warm up"])
        writing = timed(writer.embed, texts)
        reader = SCSScorer("minilm", cache=DiskCache(tmp, "embeddings"))  # new process state
        reader.embed(["warm up"])
        disk = timed(reader.embed, texts)
    print(f"scorer embeddings: {len(texts)} texts; {len(texts) / no_cache:.0f}/s uncached, "
          f"{len(texts) / max(cached, 1e-9):.0f}/s from the memory cache; with a disk "
          f"cache: {len(texts) / writing:.0f}/s uncached (writing it), "
          f"{len(texts) / disk:.0f}/s read back by a new scorer")


def timed(fn: Any, *args: Any) -> float:
    """Seconds that ``fn(*args)`` takes."""
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0

if __name__ == "__main__":
    main()
