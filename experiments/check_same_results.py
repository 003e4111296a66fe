"""Fixed-seed runs of every registered method on the fake LLM, for a restructuring's
"results identical before and after" check.

Each method runs once (budget 40, seed 3, hashing scorer, train 8 / val 4 / test 4) on
the fake LLM; the script writes, per method, the returned template's id, its val and
test scores, the budget spent, the trial count, the rejected proposals and a hash of
every trial's (template, split, value), as JSON. Run it on the tree before the move and
after, and compare the two files:

    .venv/bin/python experiments/check_same_results.py before.json   # at the old commit
    .venv/bin/python experiments/check_same_results.py after.json    # at the new one
    diff before.json after.json && echo identical
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
import warnings

import optuna

import promptopt.optimizers  # noqa: F401  (registers every method)
from promptopt import run
from promptopt.registry import optimizers
from promptopt.testing import FakeLLM


def main(out: str) -> None:
    warnings.filterwarnings("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folder = tempfile.mkdtemp()
    found: dict[str, object] = {}
    for name in sorted(optimizers.names()):
        url = f"sqlite:///{folder}/{name}.db"
        try:
            r = run(name, model=FakeLLM().model, budget=40, seed=3, scorer="hashing", train=8,
                    val=4, test=4, storage=url, cache=False)
        except Exception as exc:  # noqa: BLE001 - a method that fails is a result too
            found[name] = f"{type(exc).__name__}: {exc}"[:300]
            continue
        trials = optuna.load_study(study_name=r.study, storage=url).trials
        trail = [((t.user_attrs.get("template") or {}).get("instruction"),
                  t.user_attrs.get("split"), round(t.value or 0.0, 6)) for t in trials]
        found[name] = [r.template.id, round(r.val_score, 6), round(r.test_score, 6),
                       r.budget_spent, r.trials, dict(r.rejected), len(trail),
                       hashlib.sha256(json.dumps(trail).encode()).hexdigest()[:12]]
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(found, fh, indent=1, sort_keys=True)
    print(f"{len(found)} methods -> {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "same_results.json")
