"""Peak memory (max RSS) of a whole `promptopt run` on the embedded default model.

    .venv/bin/python experiments/bench_memory.py -- --method opro --budget 40

Runs the CLI in a child process and reports its peak resident memory and wall time.
The budget for the embedded default on a 2-core machine is 2 GiB.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe  # noqa: E402


def main() -> None:
    extra = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else ["--method", "opro"]
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable, "-m", "promptopt", "run", *extra,
            "--storage", f"sqlite:///{tmp}/bench.db",
        ]
        env = {**os.environ, "PROMPTOPT_CACHE_DIR": f"{tmp}/cache",
               "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(f"machine: {describe()}")
    print(f"command: promptopt run {' '.join(extra)}")
    print(f"exit code {proc.returncode}, wall {wall:.1f}s")
    print(f"peak RSS: {peak_kib / 2**20:.2f} GiB ({peak_kib / 1024:.0f} MiB); budget 2 GiB: "
          f"{'within' if peak_kib < 2 * 2**20 else 'OVER'}")
    if proc.returncode != 0:
        print(proc.stderr[-2000:])


if __name__ == "__main__":
    main()
