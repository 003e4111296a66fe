"""Prefill and decode speed of whichever llama-cpp-python build is imported, and its outputs.

    flock /tmp/cpu.lock .venv/bin/python experiments/bench_llama_build.py
    PYTHONPATH=/tmp/llama-variants flock /tmp/cpu.lock \
        .venv/bin/python experiments/bench_llama_build.py

Run it once per build (the second line imports a build installed with ``pip install
--target``) and compare: the file and llama.cpp's system info of the build (which CPU
kernels it uses), then, on the embedded Gemma 3 270M with ``--n`` prompt-recovery
prompts (4-demo, so prefill dominates, as in a few-shot evaluation), the seconds of
prefill and of greedy decoding and their tokens per second, and a hash of all the
generated texts: two builds whose hashes match gave the same greedy outputs.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _evalsetup import DEFAULT_DATA  # noqa: E402
from _machine import describe, loadavg  # noqa: E402

from promptopt.data import load_examples, split_examples  # noqa: E402
from promptopt.llm import _embedded as embedded  # noqa: E402
from promptopt.scoring import ExactMatch  # noqa: E402
from promptopt.tasks import PromptRecoveryTask  # noqa: E402
from promptopt.template import Template, make_demo  # noqa: E402


def load_backends() -> str:
    """For a build with dynamically loaded backends (``GGML_BACKEND_DL``, which the
    CPU variants need): load them from the package's ``lib`` folder, as llama-cpp-python
    does not (its issue #2069). Returns what was done."""
    import ctypes

    import llama_cpp

    package = Path(llama_cpp.__file__).parent
    lib = package / "lib"
    # the copy libllama links (pip copies libggml.so, .so.0 and .so.0.x as separate
    # files, each with its own backend registry)
    ggml = ctypes.CDLL(str(next(p for p in (lib / "libggml.so.0", lib / "libggml.so")
                                 if p.exists())))
    if not hasattr(ggml, "ggml_backend_load_all_from_path"):
        return "backends built in"
    # CMake installs the backend modules (libggml-cpu-<variant>.so) to bin/ beside the
    # package when built with --target, to lib/ otherwise
    found = [d for d in (lib, package.parent / "bin") if any(d.glob("libggml-cpu*.so"))]
    if ggml.ggml_backend_reg_count() == 0 and found:
        ggml.ggml_backend_load_all_from_path(str(found[0]).encode())
    return f"backends loaded from {found[0] if found else lib}: {ggml.ggml_backend_reg_count()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20, help="prompts")
    parser.add_argument("--model", default="gemma-3-270m")
    args = parser.parse_args()
    import llama_cpp

    examples = load_examples(DEFAULT_DATA, input_fields=PromptRecoveryTask.input_fields,
                             target_field="rewrite_prompt", skip_bad_rows=True)
    splits = split_examples(examples, train=4, val=1, test=args.n, seed=0)
    task = PromptRecoveryTask(splits, scorer=ExactMatch())
    few = Template(task.start_template().instruction, demos=tuple(
        make_demo({**e.inputs, "rewrite_prompt": e.target}) for e in splits.train))
    loaded = load_backends()
    llama = embedded.load(args.model)
    gen = task.generation
    print(f"machine: {describe()}; load average {loadavg()}")
    print(f"llama_cpp {llama_cpp.__version__} from {Path(llama_cpp.__file__).parent}")
    print(f"{loaded}; system info: " + llama_cpp.llama_print_system_info().decode().strip())
    prefill = decode = 0.0
    n_prompt = n_out = 0
    digest = hashlib.sha256()
    for e in splits.test:
        prompt = embedded.messages_to_prompt(task.render(few, e, chat=False))
        tokens = list(llama.tokenize(prompt.encode("utf-8"), add_bos=True))
        room = embedded.N_CTX - gen["max_tokens"] - 8
        tokens = tokens if len(tokens) <= room else tokens[:1] + tokens[-(room - 1):]
        llama.reset()
        t0 = time.perf_counter()
        llama.eval(tokens)
        t1 = time.perf_counter()
        out = llama.create_completion(tokens, max_tokens=gen["max_tokens"], temperature=0.0,
                                      stop=gen["stop"], seed=0)
        t2 = time.perf_counter()
        prefill += t1 - t0
        decode += t2 - t1
        n_prompt += len(tokens)
        n_out += int(out["usage"]["completion_tokens"])
        digest.update(str(out["choices"][0]["text"]).encode("utf-8") + b"\0")
    print(f"{args.n} prompts, {n_prompt} prompt tokens: prefill {prefill:.2f} s "
          f"({n_prompt / prefill:.0f} tok/s); {n_out} generated tokens: decode {decode:.2f} s "
          f"({n_out / decode:.1f} tok/s); outputs sha256 {digest.hexdigest()[:16]}")
    print(f"load average after: {loadavg()}")


if __name__ == "__main__":
    main()
