"""Bad-input benchmark: a seeded corpus of defective files through the real loaders.

    LITELLM_LOCAL_MODEL_COST_MAP=True .venv/bin/python experiments/bench_bad_input.py

Generates ``--data`` dataset files (CSV, TSV, JSON Lines, Parquet) and ``--templates``
template files (JSON, text) with the generators of :mod:`promptopt.testing.badinput` (the
ones tests/data/test_fuzz_inputs.py runs under Hypothesis), file ``i`` from
``random.Random(seed + i)``, and judges each with its checks: every dataset is loaded
as a user would (stopping at the first bad row, then with ``skip_bad_rows``).
Prints the machine, the inputs tried, clear errors, files loaded, crashes (must be
0), wrong outcomes (an error at the wrong row or field, a defect let through: must
be 0), the row accounting (rows written = loaded + reported as skipped + in files
refused as a whole; silently lost and altered rows must be 0) and the defects seen.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from _machine import describe, loadavg  # noqa: E402

from promptopt.testing.badinput import (  # noqa: E402
    cell_kinds,
    check_data_case,
    check_template_case,
    make_data_case,
    make_template_case,
)


def _kind(defect: str) -> str:
    """A defect's kind without its particulars ("missing column rewrite_prompt" -> ...)."""
    for cut in (" '", " original", " rewri", " id"):
        defect = defect.split(cut)[0]
    return defect


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=int, default=400, help="dataset files to generate")
    parser.add_argument("--templates", type=int, default=100, help="template files")
    parser.add_argument("--seed", type=int, default=0, help="seed of file 0")
    parser.add_argument("--show", type=int, default=5, help="failures to print in full")
    args = parser.parse_args()
    print(f"machine: {describe()}; load average {loadavg()}")
    status: Counter[str] = Counter()
    rows: Counter[str] = Counter()
    defects: Counter[str] = Counter()
    formats: Counter[str] = Counter()
    failures: list[str] = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        for i in range(args.data):
            case = make_data_case(random.Random(args.seed + i))
            formats[case.name.split(".")[-1]] += 1
            defects.update({_kind(d) for d in case.defects} or {"(none)"})
            defects.update(cell_kinds(case))
            out = check_data_case(case, Path(folder))
            status[f"data {out.status}"] += 1
            rows["written"] += out.rows
            if out.status in ("crash", "wrong"):
                failures.append(f"data seed {args.seed + i} {case.defects}: {out.detail}")
                rows["lost"] += out.lost
                rows["altered"] += out.altered
                continue
            rows["loaded"] += out.loaded
            rows["skipped"] += out.skipped
            rows["refused"] += out.rows - out.loaded - out.skipped
            rows["lost"] += out.lost
        for i in range(args.templates):
            tcase = make_template_case(random.Random(args.seed + i))
            formats[tcase.name.split(".")[-1] + " template"] += 1
            defects.update({f"template: {_kind(d)}" for d in tcase.defects} or {"template: (none)"})
            out = check_template_case(tcase, Path(folder))
            status[f"template {out.status}"] += 1
            if out.status in ("crash", "wrong"):
                failures.append(f"template seed {args.seed + i} {tcase.defects}: {out.detail}")
    seconds = time.perf_counter() - t0
    crashes = status["data crash"] + status["template crash"]
    wrong = status["data wrong"] + status["template wrong"]
    errors = status["data error"] + status["template error"]
    loaded = status["data loaded"] + status["template loaded"]
    last = args.seed + max(args.data, args.templates) - 1
    print(f"inputs tried: {args.data + args.templates} ({args.data} dataset files, "
          f"{args.templates} template files; seeds {args.seed}..{last}) in {seconds:.1f}s")
    print(f"  formats: {', '.join(f'{k} {v}' for k, v in sorted(formats.items()))}")
    print(f"clear errors (file, row, field named): {errors} (data {status['data error']}, "
          f"templates {status['template error']})")
    print(f"loaded exactly: {loaded} (data {status['data loaded']}, "
          f"templates {status['template loaded']})")
    print(f"crashes (other exception types): {crashes}")
    print(f"wrong (error at the wrong place, defect let through): {wrong}")
    print(f"rows written: {rows['written']}; with skip_bad_rows: loaded {rows['loaded']}, "
          f"reported as skipped {rows['skipped']}, in files refused as a whole "
          f"{rows['refused']}")
    print(f"rows silently lost: {rows['lost']}; rows altered: {rows['altered']}")
    print("defects and tricky cells (files with each):")
    for name, n in sorted(defects.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"  {n:4d}  {name}")
    for line in failures[: args.show]:
        print(f"FAIL {line[:400]}")
    sys.exit(1 if crashes or wrong or rows["lost"] or rows["altered"] else 0)


if __name__ == "__main__":
    main()
