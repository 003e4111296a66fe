"""Each proposing method family with the real Qwen2.5-Coder 0.5B instruct model as proposer.

A few examples, a small budget: the proposer's answer must hold a usable instruction that
the search then evaluates (a trial of a template other than the start).
The task model is the embedded Gemma 3 270M (the quickest to evaluate with). protegi
runs with the default proposer, the 1.5B: with the 0.5B its one or two proposals here
were unusable (an echo of an example, no proposal in the answer).
"""

from __future__ import annotations

import optuna
import pytest

PROPOSER = "llamacpp/qwen2.5-coder-0.5b"
PROPOSERS = {"protegi": "llamacpp/qwen2.5-coder-1.5b"}
SMALL = {
    "ape": {"num_prompts": 4, "demos_per_prompt": 2, "minibatch_size": 2, "mc_rounds": 0},
    "opro": {"proposals_per_step": 2, "minibatch_size": 2, "max_steps": 2},
    "evoprompt-ga": {"population_size": 2, "generations": 1, "minibatch_size": 2},
    "protegi": {"rounds": 1, "beam_size": 2, "minibatch_size": 2, "num_gradients": 2},
    "gepa": {"pareto_size": 2, "reflection_minibatch_size": 2, "components": ["instruction"]},
}


@pytest.mark.embedded
@pytest.mark.parametrize("method", sorted(SMALL))
def test_the_real_instruct_proposer_writes_an_instruction_that_is_evaluated(
    method, tmp_path, embedded_cache
):
    from promptopt.runs import run

    url = f"sqlite:///{tmp_path}/p.db"
    proposer = PROPOSERS.get(method, PROPOSER)
    result = run(method, model="llamacpp/gemma-3-270m", proposer=proposer, budget=40,
                 train=6, val=2, test=2, scorer="minilm", storage=url, study="p",
                 cache_dir=embedded_cache, settings=SMALL[method],
                 selection={"confidence": 0.5})
    assert result.budget_spent <= 40
    trials = optuna.load_study(study_name="p", storage=url).trials
    start = result.start_template.instruction  # (the base: the start opened with a word)
    proposed = [t for t in trials if t.user_attrs["instruction"] != start]  # ape's: no parent
    assert proposed, f"no proposal of {proposer} was evaluated (rejected: {result.rejected})"
    for t in proposed:
        text = t.user_attrs["instruction"]
        assert text.strip() and text != result.start_template.instruction
