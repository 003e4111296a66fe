"""Check that prefix reuse leaves the embedded engine's outputs unchanged.

    flock /tmp/cpu.lock .venv/bin/python experiments/check_prefix_reuse.py --n 20 --offset 0

Renders the prompt-recovery task's starting template (zero-shot) and the same
template with 4 demos on test examples ``offset .. offset+n``, and generates each
prompt three ways on the embedded model: the reset-per-prompt path written out here
(cache reset, whole prompt), the engine with reuse off (the same) and the engine keeping
the prefix it shares with the previous prompt, to a multiple of 4 tokens
(``reusable_prefix``). Prints the
mismatches and the seconds of each path, and appends one JSON line per example to
``--out`` so that runs in chunks add up.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from promptopt.data import load_examples, sample_path, split_examples  # noqa: E402
from promptopt.llm import _embedded as embedded  # noqa: E402
from promptopt.scoring import ExactMatch  # noqa: E402
from promptopt.tasks import PromptRecoveryTask  # noqa: E402
from promptopt.template import Template, make_demo  # noqa: E402

DEV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "prompt_recovery_dev.csv"


def one_batch(llama: Any, prompt: str, max_tokens: int, stop: list[str], temp: float) -> str:
    """The engine's previous path: reset, then the whole prompt as one prefill."""
    llama.reset()
    tokens = llama.tokenize(prompt.encode("utf-8"), add_bos=True)
    room = embedded.N_CTX - max_tokens - 8
    if len(tokens) > room:
        tokens = tokens[:1] + tokens[-(room - 1):]
    out = llama.create_completion(tokens, max_tokens=max_tokens, temperature=temp, stop=stop,
                                  seed=0, top_p=0.95)
    return str(out["choices"][0]["text"] or "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--data", default=str(DEV) if DEV.exists() else str(sample_path()))
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--demos", type=int, default=4)
    parser.add_argument("--out", default="")
    args = parser.parse_args()

    fields = PromptRecoveryTask.input_fields
    examples = load_examples(args.data, input_fields=fields, target_field="rewrite_prompt",
                             skip_bad_rows=True)
    splits = split_examples(examples, train=args.demos, val=1,
                            test=len(examples) - args.demos - 1, seed=0)
    task = PromptRecoveryTask(splits, scorer=ExactMatch())
    zero = task.start_template()
    few = Template(zero.instruction, demos=tuple(
        make_demo({**e.inputs, "rewrite_prompt": e.target}) for e in splits.train[:args.demos]))
    test = splits.test[args.offset:args.offset + args.n]
    gen = task.generation
    llama = embedded.load(args.model)
    seconds = {"one_batch": 0.0, "reset": 0.0, "reuse": 0.0}
    bad = 0
    rows = []
    for name, template in (("zero-shot", zero), (f"{args.demos}-demo", few)):
        prompts = [embedded.messages_to_prompt(task.render(template, e, chat=False)) for e in test]
        outs: dict[str, list[str]] = {}
        for path in seconds:
            t0 = time.perf_counter()
            if path == "one_batch":
                outs[path] = [one_batch(llama, p, gen["max_tokens"], gen["stop"],
                                        args.temperature) for p in prompts]
            else:
                outs[path] = [embedded.generate(
                    args.model, [{"role": "user", "content": p}], temperature=args.temperature,
                    max_tokens=gen["max_tokens"], stop=gen["stop"], reuse=path == "reuse",
                )["text"] for p in prompts]
            seconds[path] += time.perf_counter() - t0
        for i in range(len(prompts)):
            row = {"template": name, "index": args.offset + i, "temperature": args.temperature,
                   **{k: v[i] for k, v in outs.items()}}
            rows.append(row)
            if row["reset"] != row["reuse"]:
                bad += 1
                print(f"MISMATCH reuse vs reset {name} #{args.offset + i}: "
                      f"{row['reset']!r} != {row['reuse']!r}")
            if row["one_batch"] != row["reset"]:
                print(f"differs from the one-batch path {name} #{args.offset + i}: "
                      f"{row['one_batch']!r} != {row['reset']!r}")
        if args.out:  # each template's rows as soon as they are done
            with open(args.out, "a", encoding="utf-8") as f:
                f.writelines(json.dumps(r) + "\n" for r in rows[-len(prompts):])
    n_one = sum(r["one_batch"] != r["reset"] for r in rows)
    print(f"{len(rows)} generations (examples {args.offset}..{args.offset + len(test) - 1}, "
          f"both templates, temperature {args.temperature}): reuse != reset: {bad}; "
          f"one-batch != two-batch: {n_one}")
    print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
