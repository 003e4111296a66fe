"""Would decoding several examples together pay on this CPU, with identical outputs?

    flock /tmp/cpu.lock .venv/bin/python experiments/check_batch_decode.py

A proxy for llama.cpp batches holding one new token of each of B sequences: after a
shared prompt, the time of B single-token decode steps against one step of B tokens
(the weights are read once per step either way; attention differs little at these
lengths), and whether the last token's logits are bit-identical both ways (if a
B-row batch changes a row's floating-point result, batched decoding would change
greedy outputs).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe, loadavg  # noqa: E402

from promptopt.llm import _embedded as embedded  # noqa: E402


def logits(llama) -> np.ndarray:
    return np.ctypeslib.as_array(llama._ctx.get_logits_ith(-1), shape=(llama.n_vocab(),)).copy()


def main() -> None:
    llama = embedded.load(os.environ.get("MODEL", "gemma-3-270m"))
    prompt = llama.tokenize(b"Rewrite the text below as a poem about the sea and its moods.")
    extra = llama.tokenize(b" The waves roll in and out, forever and ever more", add_bos=False)
    print(f"machine: {describe()}; load average {loadavg()}")
    for b in (2, 3, 4, 8):
        steps = extra[:b]
        single = batched = 0.0
        for _ in range(3):
            llama.reset()
            llama.eval(prompt)
            t0 = time.perf_counter()
            for t in steps:
                llama.eval([t])
            single += time.perf_counter() - t0
            one = logits(llama)
            llama.reset()
            llama.eval(prompt)
            t0 = time.perf_counter()
            llama.eval(steps)
            batched += time.perf_counter() - t0
            many = logits(llama)
        same = bool(np.array_equal(one, many))
        print(f"B={b}: {b} single-token steps {1000 * single / 3:.1f} ms, one {b}-token step "
              f"{1000 * batched / 3:.1f} ms (x{single / batched:.2f} faster); last logits "
              f"identical: {same} (max abs diff {float(np.abs(one - many).max()):.3g}), "
              f"same argmax: {int(one.argmax()) == int(many.argmax())}")


if __name__ == "__main__":
    main()
