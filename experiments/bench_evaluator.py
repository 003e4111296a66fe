"""Evaluation speed with prefix reuse: raw loops, promptopt's evaluator, a real server.

    flock /tmp/cpu.lock .venv/bin/python -W ignore experiments/bench_evaluator.py --n 200

The same N test examples of the prompt-recovery task, rendered with two templates: the
task's starting template (zero-shot) and the same instruction with ``--demos`` demos
from the train split (few-shot). For each template, interleaved chunk by chunk so that
background load hits every path alike, and with the engine's KV cache cleared at the
start of each path's chunk (no path inherits another's prefix, so the reusing paths
pay the template's prefix once per chunk: ``--chunk``, default 20, the size of a
search's validation split, sets how often):

1. raw reset loop: ``llama.reset()`` and ``create_completion`` on the whole prompt, as
   the engine ran before prefix reuse (the baseline of every ratio);
2. raw reuse loop: the same calls, keeping the prefix that the previous prompt left in
   the KV cache and shares with this one, to a multiple of 4 tokens (what the engine
   does now); and (``--whole-batches``) keeping only whole 512-token batches of it (the
   engine's first rule);
3. promptopt's evaluator with an empty disk cache (LiteLLM, cache, cleaning, scoring);

then, per template, the evaluator again on the filled cache (warm, new LLM object), and
(``--server``, default on) the OpenAI-compatible path: ``llama_cpp.server`` serving the
same GGUF on a free localhost port, evaluated by promptopt with ``openai/gemma`` and
``--api-base`` (that server renders the GGUF's chat template, so its prompts and outputs
differ from the completion-style paths and are not compared; with the Gemma base GGUF
it answers every chat request with an empty turn, so this path times prefill and
request overhead, not generation).

Prints seconds, examples/s and time as a ratio to the raw reset loop for each path and
template, and whether the outputs are identical: raw reuse vs raw reset (generated
text), the evaluator's predictions vs the raw reset loop's parsed texts.

The search case (``--search``): what a search does, ``--candidates`` instructions
(default 30: the task's pool and variants of it) each evaluated greedily on the same
``--n`` examples (default 20, a validation split), candidate after candidate, through
the engine (``generate``), on four paths interleaved candidate by candidate:

1. reset loop: every prompt evaluated from an emptied context (instruction after the
   texts; the reference for outputs);
2. today's engine: the instruction before the texts, prefix reuse, no saved states
   (``PROMPTOPT_STATE_CACHE_MB=0``), as searches ran before;
3. the same with the instruction after the texts (the layout alone);
4. the new engine: instruction after the texts, saved example states.

    flock /tmp/cpu.lock .venv/bin/python -W ignore experiments/bench_evaluator.py \
        --search --model qwen2.5-coder-1.5b

Prints seconds and seconds per evaluation of each path, the ratio to today's engine,
how many outputs equal the reset loop's, the store's saves, hits, evictions and peak
bytes against its limit, and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _evalsetup import DEFAULT_DATA, evaluation_setup  # noqa: E402
from _machine import loadavg  # noqa: E402

from promptopt.evaluator import Evaluator  # noqa: E402
from promptopt.llm import DEFAULT_STATE_CACHE_MB as DEFAULT_LIMIT_MB  # noqa: E402
from promptopt.llm import LLM, DiskCache  # noqa: E402
from promptopt.llm import _embedded as embedded  # noqa: E402
from promptopt.template import Template, make_demo  # noqa: E402

PATHS = ("raw reset loop", "raw reuse loop", "evaluator, cold cache", "evaluator, warm cache",
         "OpenAI-compatible server", "raw reuse, whole batches")


def raw_generate(llama: Any, prompt: str, gen: dict[str, Any], *, reuse: bool,
                 group: int = embedded.ROW_GROUP) -> str:
    """One greedy generation straight on llama.cpp: reset, or keep the prefix the previous
    prompt shares, to a multiple of ``group`` tokens (the engine's ROW_GROUP; 512, whole
    batches, was the engine's first rule)."""
    tokens = list(llama.tokenize(prompt.encode("utf-8"), add_bos=True))
    room = embedded.N_CTX - gen["max_tokens"] - 8
    if len(tokens) > room:  # the engine keeps the end of an over-long prompt
        tokens = tokens[:1] + tokens[-(room - 1):]
    engine_group, embedded.ROW_GROUP = embedded.ROW_GROUP, group
    try:
        embedded._prefill(llama, tokens, reuse=reuse)  # reuse=False: reset
    finally:
        embedded.ROW_GROUP = engine_group
    out = llama.create_completion(tokens, max_tokens=gen["max_tokens"], temperature=0.0,
                                  stop=gen["stop"], seed=0)
    return str(out["choices"][0]["text"] or "")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(gguf: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """``llama_cpp.server`` on ``gguf``, ready to answer (raises if it does not start)."""
    threads = os.environ.get("PROMPTOPT_THREADS", str(os.cpu_count() or 2))
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias",
         "gemma", "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(embedded.N_CTX),
         "--n_threads", threads, "--n_batch", "512"],
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2) as r:
                json.load(r)
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"llama_cpp.server did not start; see {log}") from None
            time.sleep(0.5)


SEARCH_PATHS = ("reset loop", "today's engine (instruction first)",
                "prefix reuse, instruction after", "saved example states, instruction after")
VARIANTS = ("", " Answer in one sentence.", " Name the tone and the form.", " Start with a verb.")


def search_case(args: argparse.Namespace) -> None:
    """The ``--search`` case (module docstring)."""
    import resource

    from promptopt.tasks import PromptRecoveryTask

    n, splits, scorer, _, _, _ = evaluation_setup(args.data, args.model, n=args.n, train=1)
    before = PromptRecoveryTask(splits, scorer=scorer)
    after = PromptRecoveryTask(splits, scorer=scorer, instruction_at="after")
    pool = [f"{ins}{extra}" for extra in VARIANTS for ins in before.instruction_pool]
    candidates = [Template(ins) for ins in pool[: args.candidates]]
    name = args.model
    chat = embedded.is_chat_model(name)
    gen = before.generation
    limit = embedded.limit_bytes() or DEFAULT_LIMIT_MB * 1024 * 1024
    print(f"search case: {len(candidates)} candidates x {n} examples, model llamacpp/{name} "
          f"({'chat' if chat else 'base'}), state store limit {limit / 2**20:.0f} MiB")

    def run(task: PromptRecoveryTask, template: Template, *, reuse: bool,
            states: bool) -> list[str]:
        os.environ["PROMPTOPT_STATE_CACHE_MB"] = str(limit / 2**20 if states else 0)
        return [embedded.generate(name, task.render(template, e, chat=chat), reuse=reuse,
                                  max_tokens=gen["max_tokens"], stop=gen["stop"])["text"]
                for e in splits.test]

    paths = [(SEARCH_PATHS[0], after, False, False), (SEARCH_PATHS[1], before, True, False),
             (SEARCH_PATHS[2], after, True, False), (SEARCH_PATHS[3], after, True, True)]
    seconds = dict.fromkeys(SEARCH_PATHS, 0.0)
    outputs: dict[str, list[str]] = {p: [] for p in SEARCH_PATHS}
    for i, template in enumerate(candidates):
        for label, task, reuse, states in paths:
            t0 = time.perf_counter()
            outputs[label] += run(task, template, reuse=reuse, states=states)
            seconds[label] += time.perf_counter() - t0
        print(f"  candidate {i + 1}/{len(candidates)}: " + ", ".join(
            f"{s:.0f} s" for s in seconds.values()), flush=True)
    store = embedded._states
    total = len(candidates) * n
    base = seconds[SEARCH_PATHS[1]]
    print(f"load average after: {loadavg()}")
    print(f"{'path':<44}{'seconds':>9}{'s/eval':>8}{'x today':>9}{'== reset':>10}")
    for label in SEARCH_PATHS:
        same = sum(a == b for a, b in zip(outputs[label], outputs[SEARCH_PATHS[0]], strict=True))
        print(f"{label:<44}{seconds[label]:>9.1f}{seconds[label] / total:>8.2f}"
              f"{base / seconds[label]:>9.2f}{same:>6}/{total}")
    if store is not None:
        print(f"store: {store.saves} saves, {store.hits} hits, {store.evictions} evictions, "
              f"peak {store.peak_bytes / 2**20:.1f} MiB of {store.limit / 2**20:.0f} MiB")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200, help="examples per template")
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--demos", type=int, default=4, help="demos of the few-shot template")
    parser.add_argument("--chunk", type=int, default=20,
                        help="examples per interleaved chunk (20: a search's validation split)")
    parser.add_argument("--whole-batches", action="store_true",
                        help="also time reuse of whole 512-token batches only")
    parser.add_argument("--no-server", action="store_true", help="skip the server path")
    parser.add_argument("--few-shot-only", action="store_true",
                        help="time the few-shot template only (no zero-shot rows)")
    parser.add_argument("--search", action="store_true",
                        help="the search case: --candidates instructions x --n examples")
    parser.add_argument("--candidates", type=int, default=30)
    args = parser.parse_args()
    if args.search:
        search_case(args)
        return

    n, splits, scorer, task, llama, _ = evaluation_setup(args.data, args.model, n=args.n,
                                                      train=args.demos)
    zero = task.start_template()
    few = Template(zero.instruction, demos=tuple(
        make_demo({**e.inputs, "rewrite_prompt": e.target}) for e in splits.train))
    gen = task.generation
    model = f"llamacpp/{args.model}"
    print(f"data: {args.data} ({n} examples), model {model}, scorer {scorer.name}, "
          f"few-shot: {args.demos} demos")

    seconds: dict[tuple[str, str], float] = {}
    notes: list[str] = []
    tmp = tempfile.mkdtemp(prefix="bench-evaluator-")
    templates = [("zero-shot", zero), (f"{args.demos}-demo", few)]
    if args.few_shot_only:
        templates = templates[1:]
    for label, template in templates:
        prompts = [embedded.messages_to_prompt(task.render(template, e, chat=False))
                   for e in splits.test]
        texts: dict[str, list[str]] = {"reset": [], "reuse": [], "batches": []}
        raw = [("reset", False, PATHS[0]), ("reuse", True, PATHS[1])]
        if args.whole_batches:
            raw.append(("batches", True, PATHS[5]))
        predictions: list[str] = []
        cache_dir = f"{tmp}/{label}"
        cold_eval = Evaluator(task, LLM(model, cache=DiskCache(cache_dir, "llm")))
        for lo in range(0, n, args.chunk):
            part = slice(lo, lo + args.chunk)
            for path, reuse, key_path in raw:
                group = 512 if path == "batches" else embedded.ROW_GROUP
                llama.reset()
                t0 = time.perf_counter()
                texts[path] += [raw_generate(llama, p, gen, reuse=reuse, group=group)
                                for p in prompts[part]]
                key = (label, key_path)
                seconds[key] = seconds.get(key, 0.0) + time.perf_counter() - t0
            llama.reset()
            t0 = time.perf_counter()
            ev = cold_eval.evaluate(template, "test", examples=splits.test[part])
            seconds[(label, PATHS[2])] = (seconds.get((label, PATHS[2]), 0.0)
                                          + time.perf_counter() - t0)
            predictions += list(ev.predictions)
        warm_llm = LLM(model, cache=DiskCache(cache_dir, "llm"))
        scorer._memory.clear()
        t0 = time.perf_counter()
        warm = Evaluator(task, warm_llm).evaluate(template, "test")
        seconds[(label, PATHS[3])] = time.perf_counter() - t0
        same_raw = sum(a == b for a, b in zip(texts["reset"], texts["reuse"], strict=True))
        parsed = [task.parse(t, template) for t in texts["reset"]]
        same_eval = sum(a == b for a, b in zip(parsed, predictions, strict=True))
        same_warm = sum(a == b for a, b in zip(predictions, warm.predictions, strict=True))
        if args.whole_batches:
            same_batches = sum(a == b for a, b in zip(texts["reset"], texts["batches"],
                                                      strict=True))
            notes.append(f"{label}: whole-batch reuse == raw reset on {same_batches}/{n}")
        notes.append(f"{label}: raw reuse == raw reset on {same_raw}/{n}; evaluator (cold) == "
                     f"raw reset parsed on {same_eval}/{n}; warm == cold on {same_warm}/{n}")

    if not args.no_server:
        port = free_port()
        proc = start_server(embedded.gguf_path(args.model), port, Path(tmp) / "server.log")
        os.environ.setdefault("OPENAI_API_KEY", "sk-local")
        try:
            for label, template in templates:
                llm = LLM("openai/gemma", api_base=f"http://127.0.0.1:{port}/v1", cache=None,
                          concurrency=1)
                t0 = time.perf_counter()
                Evaluator(task, llm).evaluate(template, "test")
                seconds[(label, PATHS[4])] = time.perf_counter() - t0
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    print(f"load average after: {loadavg()}")
    print(f"{'template':<12}{'path':<28}{'seconds':>9}{'ex/s':>8}{'x raw reset':>13}")
    for label, _ in templates:
        base = seconds[(label, PATHS[0])]
        for path in PATHS:
            if (label, path) in seconds:
                s = seconds[(label, path)]
                print(f"{label:<12}{path:<28}{s:>9.2f}{n / s:>8.2f}{s / base:>13.3f}")
    print("outputs: " + "; ".join(notes))


if __name__ == "__main__":
    main()
