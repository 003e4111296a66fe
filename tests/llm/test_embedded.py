"""The real parts on a few examples: embedded llama.cpp models and the packaged scorer."""

from __future__ import annotations

import optuna
import pytest

import promptopt.optimizers  # noqa: F401  (registers every method)
from promptopt.llm import LLM
from promptopt.registry import optimizers
from promptopt.runs import evaluate, run

pytestmark = pytest.mark.embedded
FEW = dict(train=4, val=3, test=3, scorer="minilm")


def test_gemma_base_model_generates():
    llm = LLM("llamacpp/gemma-3-270m", max_tokens=12)
    assert not llm.is_chat
    text = llm.complete([{"role": "user", "content": "The capital of France is"}])
    assert text.strip()
    assert llm.usage.completion_tokens > 0 and llm.usage.prompt_tokens > 0


def test_smollm2_chat_model_generates():
    llm = LLM("llamacpp/smollm2-135m", max_tokens=12)
    assert llm.is_chat
    assert llm.complete([{"role": "user", "content": "Say hello."}]).strip()


def test_sampling_is_seeded():
    llm = LLM("llamacpp/gemma-3-270m", max_tokens=12)
    msg = [{"role": "user", "content": "Once upon a time"}]
    a = llm.complete(msg, temperature=1.0, seed=1)
    assert llm.complete(msg, temperature=1.0, seed=1) == a


def test_evaluate_on_real_model_and_scorer(embedded_cache):
    ev = evaluate("Write the instruction that produced the rewrite.", split="val",
                  cache_dir=embedded_cache, **FEW)
    assert ev.n == 3 and ev.scorer.endswith("all-MiniLM-L6-v2")
    assert all(p.strip() for p in ev.predictions)
    assert all(0.0 <= s <= 1.0 for s in ev.scores)


@pytest.mark.parametrize("method", optimizers.names())
def test_every_method_runs_on_the_embedded_model(method, tmp_path, embedded_cache):
    url = f"sqlite:///{tmp_path}/e.db"
    result = run(method, budget=24, seed=0, storage=url, study="e", cache_dir=embedded_cache,
                 **FEW)
    assert result.budget_spent <= 24
    assert 0.0 <= result.test_score <= 1.0 and result.template.instruction.strip()
    study = optuna.load_study(study_name="e", storage=url)
    assert len(study.trials) == result.trials >= 2
    assert study.user_attrs["result"]["template_id"] == result.template.id
