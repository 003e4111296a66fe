"""The prompt-recovery set-up the evaluator benchmarks share: data, splits, scorer, task,
the loaded GGUF, and the machine lines they print first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _machine import describe, loadavg

from promptopt.data import load_examples, sample_path, split_examples
from promptopt.llm import _embedded as embedded
from promptopt.llm import import_litellm
from promptopt.scoring import SCSScorer
from promptopt.tasks import PromptRecoveryTask

DEV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "prompt_recovery_dev.csv"
DEFAULT_DATA = str(DEV) if DEV.exists() else str(sample_path())
"""The 995-row dev set beside the project when present, else the bundled sample."""


def evaluation_setup(data: str, model: str, *, n: int, train: int) -> tuple[Any, ...]:
    """``(n, splits, scorer, task, llama, examples)``: ``train`` train examples, one validation
    example and up to ``n`` test examples of ``data`` (split seed 0); both models loaded
    and LiteLLM imported before anything is timed; ``examples`` is every row read."""
    examples = load_examples(
        data, input_fields=PromptRecoveryTask.input_fields, target_field="rewrite_prompt",
        skip_bad_rows=True,
    )
    n = min(n, len(examples) - train - 1)
    splits = split_examples(examples, train=train, val=1, test=n, seed=0)
    scorer = SCSScorer("minilm")
    task = PromptRecoveryTask(splits, scorer=scorer)
    llama = embedded.load(model)
    scorer.embed(["warm up"])
    import_litellm()  # a 2-3 s import, once per process
    print(f"machine: {describe()}")
    print(f"load average before: {loadavg()}")
    return n, splits, scorer, task, llama, examples
