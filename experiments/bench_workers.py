"""Several workers on one study: N processes, one of them killed (SIGKILL) and resumed.

    .venv/bin/python experiments/bench_workers.py --workers 2,4

For each N and each storage (a SQLite file, and the PostgreSQL server of
``PROMPTOPT_TEST_POSTGRES``/``.ci/run`` when one answers), starts N
``python -m promptopt run -m opro --study S`` processes at the same instant against a
local OpenAI-compatible server (``FakeOpenAIServer``, 127.0.0.1, ``--delay`` seconds
per answer), kills one worker with SIGKILL once it has recorded ``--kill-after``
trials, resumes it (``promptopt run --resume --study S``, which picks the worker that
stopped), waits for all, then checks the study: every trial each worker reports is
there exactly once, the worker indexes differ, and the template a reader of the
study sees (``best_template``) is the one the last worker to finish printed. Prints
workers, trials recorded, kills survived, trials lost or duplicated (must be 0),
wall time and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _machine import describe, loadavg  # noqa: E402

from promptopt.runs import (
    REGISTRATION_ATTR,  # noqa: E402
    best_template,  # noqa: E402
)
from promptopt.template import Template  # noqa: E402
from promptopt.testing import FakeOpenAIServer  # noqa: E402
from promptopt.testing.postgres import test_postgres_url  # noqa: E402
from promptopt.tracking import display_url, import_optuna, open_storage  # noqa: E402


def _trials(storage: str, study: str) -> list[Any]:
    optuna = import_optuna()
    return list(optuna.load_study(study_name=study, storage=open_storage(storage)).trials)


def _own_trials(storage: str, study: str, pid: int) -> int:
    """Completed trials of the worker that process ``pid`` runs (0 before it has started)."""
    from promptopt.tracking import StudyAttrs

    optuna = import_optuna()
    try:
        loaded = optuna.load_study(study_name=study, storage=open_storage(storage))
    except Exception:  # not created yet
        return 0
    records = StudyAttrs(loaded.user_attrs).worker_records()
    index = [k for k, r in records.items() if r.get("pid") == pid]
    if not index:
        return 0
    return sum(t.state.name == "COMPLETE" and t.user_attrs.get("worker") == index[0]
               for t in loaded.trials)


def one_round(storage: str, n: int, args: argparse.Namespace, folder: Path,
              server: FakeOpenAIServer) -> dict[str, Any]:
    """Run ``n`` workers on a fresh study, kill and resume one; return the figures."""
    study = f"bench-workers-{n}-{secrets.token_hex(3)}"
    common = ["--storage", storage, "--study", study]
    run_args = ["-m", "opro", "--model", "openai/fake", "--api-base", server.url,
                "--budget", str(args.budget), "--seed", "0", "--scorer", "hashing",
                "--train", "8", "--val", "4", "--test", "4", "--set", "proposals_per_step=2",
                "--json"]

    def start(k: int, command: list[str]) -> subprocess.Popen[str]:
        env = {**os.environ, "PROMPTOPT_CACHE_DIR": str(folder / f"{study}-cache{k}"),
               "OPENAI_API_KEY": "sk-bench"}
        return subprocess.Popen([sys.executable, "-m", "promptopt", "run", *command],
                                env=env, cwd=folder, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    t0 = time.perf_counter()
    procs = {k: start(k, [*run_args, *common]) for k in range(n)}
    victim = n - 1
    while _own_trials(storage, study, procs[victim].pid) < args.kill_after:
        if procs[victim].poll() is not None:
            raise RuntimeError(f"worker ended before the kill: {procs[victim].communicate()}")
        time.sleep(0.05)
    procs[victim].send_signal(signal.SIGKILL)
    procs[victim].wait()
    at_kill = _own_trials(storage, study, procs[victim].pid)
    procs[victim] = start(victim, ["--resume", *common, "--json"])
    order: list[int] = []
    outputs: dict[int, tuple[str, str]] = {}
    while len(order) < n:
        for k, proc in procs.items():
            if k not in order and proc.poll() is not None:
                order.append(k)
                outputs[k] = proc.communicate()
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    failed = {k: err[-800:] for k, proc in procs.items() if proc.returncode
              for _, err in [outputs[k]]}
    if failed:
        raise RuntimeError(f"workers failed: {failed}")
    results = {k: json.loads(outputs[k][0]) for k in procs}

    trials = _trials(storage, study)
    done = [t for t in trials if t.state.name == "COMPLETE"]
    keys = Counter((t.user_attrs.get("worker"), t.user_attrs["template_id"],
                    t.user_attrs["split"], t.user_attrs["examples_hash"]) for t in done)
    per_worker = Counter(t.user_attrs.get("worker") for t in done)
    lost = sum(max(0, r["trials"] - per_worker[r.get("worker", 0)]) for r in results.values())
    extra = sum(max(0, per_worker[r.get("worker", 0)] - r["trials"]) for r in results.values())
    indexes = sorted(r.get("worker", 0) for r in results.values())
    victim_index = results[victim].get("worker", 0)
    # Trials whose parents include a candidate only another worker scored (OPRO's
    # trajectory showed it); the shared starting template does not count.
    start_id = Template.from_dict(results[victim]["start_template"]).id
    recorded_by = {(t.user_attrs.get("worker"), t.user_attrs["template_id"]) for t in done}
    crossed = sum(
        any(p != start_id and (t.user_attrs.get("worker"), p) not in recorded_by
            for p in t.user_attrs.get("parents") or [])
        for t in done
    )
    shown = best_template(storage, study)
    last = results[order[-1]]
    return {
        "storage": "sqlite" if storage.startswith("sqlite") else "postgresql",
        "workers": n,
        "indexes distinct": len(set(indexes)) == n,
        "registrations": sum(REGISTRATION_ATTR in t.user_attrs for t in trials),
        "trials recorded": len(done),
        "trials reported": sum(r["trials"] for r in results.values()),
        "victim's trials at kill": at_kill,
        "replayed after kill": results[victim]["replayed_trials"],
        "kills survived": int(results[victim]["trials"] == per_worker[victim_index]),
        "trials lost": lost + extra,
        "trials duplicated": sum(c - 1 for c in keys.values()),
        "trials with another worker's parent": crossed,
        "reader sees last report": shown.id == last["template_id"],
        "best val": last["val_score"],
        "wall s": round(wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--workers", default="2,4", help="Comma-separated worker counts.")
    parser.add_argument("--budget", type=int, default=80, help="LLM calls per worker.")
    parser.add_argument("--delay", type=float, default=0.05, help="Seconds per LLM answer.")
    parser.add_argument("--kill-after", type=int, default=5,
                        help="Kill a worker once it has recorded this many trials.")
    parser.add_argument("--storage", action="append",
                        help="Storage URL(s) (default: a SQLite file, plus PostgreSQL if up).")
    args = parser.parse_args()
    counts = [int(x) for x in args.workers.split(",") if x.strip()]
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        folder = Path(tmp)
        storages = args.storage or [f"sqlite:///{folder}/workers.db"]
        if not args.storage:
            url, why = test_postgres_url()
            if url:
                storages.append(url)
            else:
                print(f"(no PostgreSQL: {why})")
        print(f"machine: {describe()}; load average before: {loadavg()}")
        print(f"each worker: opro, budget {args.budget}, fake OpenAI server with "
              f"{args.delay}s per answer; one worker SIGKILLed after {args.kill_after} of "
              "its trials")
        rows = []
        with FakeOpenAIServer(delay=args.delay) as server:
            for storage in storages:
                for n in counts:
                    row = one_round(storage, n, args, folder, server)
                    rows.append(row)
                    print(f"{display_url(storage)}: {json.dumps(row)}", flush=True)
        print(f"load average after: {loadavg()}")
        columns = ["storage", "workers", "trials recorded", "trials reported",
                   "victim's trials at kill", "replayed after kill", "kills survived",
                   "trials lost", "trials duplicated", "trials with another worker's parent",
                   "indexes distinct", "reader sees last report", "wall s"]
        print("| " + " | ".join(columns) + " |")
        print("|" + "---|" * len(columns))
        for row in rows:
            print("| " + " | ".join(str(row[c]) for c in columns) + " |")
        bad = [r for r in rows if r["trials lost"] or r["trials duplicated"]
               or not r["kills survived"] or not r["reader sees last report"]
               or not r["indexes distinct"]]
        if bad:
            sys.exit(f"FAILED: {bad}")


if __name__ == "__main__":
    main()
