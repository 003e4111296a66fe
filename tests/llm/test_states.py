"""Saved KV states of shared prompt prefixes (llm/_states.py): the store, then the real
engine restoring them with outputs unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from promptopt.errors import ConfigError
from promptopt.llm._states import PrefixStates, common_prefix, limit_bytes


def _arr(*tokens: int) -> np.ndarray:
    return np.asarray(tokens, dtype=np.intc)


def test_common_prefix():
    assert common_prefix(_arr(1, 2, 3), _arr(1, 2, 4)) == 2
    assert common_prefix(_arr(1, 2), _arr(1, 2, 4)) == 2
    assert common_prefix(_arr(5), _arr(1)) == 0


def test_best_finds_the_longest_shared_state_of_that_model_only():
    store = PrefixStates(limit=1000)
    store.put(1, [1, 2, 3, 4], b"a")
    store.put(1, [1, 2, 9], b"b")
    store.put(2, [1, 2, 3, 4, 5], b"c")
    saved, n = store.best(1, _arr(1, 2, 3, 4, 5, 6))
    assert saved is not None and saved.data == b"a" and n == 4
    saved, n = store.best(1, _arr(7, 7))
    assert saved is None and n == 0


def test_a_changed_text_never_hits_a_stale_state():
    store = PrefixStates(limit=1000)
    store.put(1, [1, 2, 3, 4, 5, 6], b"x")
    saved, n = store.best(1, _arr(1, 2, 3, 0, 5, 6, 7))  # token 3 changed
    assert saved is not None and n == 3  # only what is still the same is usable


def test_branch_is_the_longest_prefix_shared_with_a_recent_prompt():
    store = PrefixStates(limit=1000)
    assert store.branch(1, _arr(1, 2, 3, 4)) == 0
    assert store.branch(1, _arr(1, 2, 3, 9)) == 3
    assert store.branch(2, _arr(1, 2, 3, 9)) == 0  # another model's prompts do not count


def test_the_bound_holds_least_recently_used_out():
    store = PrefixStates(limit=10)
    store.put(1, [1], b"aaaa")
    store.put(1, [2], b"bbbb")
    store.use(1, store.best(1, _arr(1))[0])  # [1] used last: [2] goes first
    store.put(1, [3], b"cccc")
    assert store.bytes <= 10 and len(store) == 2 and store.evictions == 1
    assert store.best(1, _arr(2))[0] is None and store.best(1, _arr(1))[0] is not None
    store.put(1, [4], b"x" * 11)  # larger than the whole bound: not kept
    assert store.best(1, _arr(4))[0] is None and store.bytes <= 10


def test_limit_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("PROMPTOPT_STATE_CACHE_MB", "2")
    assert limit_bytes() == 2 * 1024 * 1024
    monkeypatch.setenv("PROMPTOPT_STATE_CACHE_MB", "lots")
    with pytest.raises(ConfigError, match="PROMPTOPT_STATE_CACHE_MB"):
        limit_bytes()


def _examples(n: int) -> list[str]:
    from promptopt.data import load_examples, sample_path
    from promptopt.tasks import PromptRecoveryTask

    rows = load_examples(sample_path(), input_fields=PromptRecoveryTask.input_fields,
                         target_field="rewrite_prompt")[:n]
    return [f"Original text: {' '.join(e.inputs['original_text'].split()[:90])}\n"
            f"Rewritten text: {' '.join(e.inputs['rewritten_text'].split()[:90])}"
            for e in rows]


@pytest.mark.embedded
@pytest.mark.parametrize("name", ["gemma-3-270m", "qwen2.5-coder-0.5b"])
def test_restored_example_states_keep_greedy_outputs(name, monkeypatch):
    """Two candidates' instructions after the same examples: the second candidate's
    prompts restore each example's saved state, evaluate only what follows it, and give
    the outputs of a fresh evaluation; a wrong state would change them."""
    from promptopt.llm import _embedded as embedded

    monkeypatch.setattr(embedded, "_states", None)
    llama = embedded.load(name)
    examples = _examples(3)
    candidates = ["Name the instruction that produced the rewrite, in one sentence.",
                  "Write the rewrite prompt a user gave, starting with a verb.",
                  "What was the user asked to do? One short imperative sentence."]
    prompts = [[{"role": "user", "content": f"{ex}\n\n{c}\nRewrite prompt:"}]
               for c in candidates for ex in examples]

    def outputs(reuse: bool, counts: list[int] | None = None) -> list[str]:
        texts = []
        for m in prompts:
            evaluated.clear()
            texts.append(embedded.generate(name, m, max_tokens=16, stop=["\n\n"],
                                           reuse=reuse)["text"])
            if counts is not None:
                counts.append(sum(evaluated))
        return texts

    evaluated: list[int] = []
    real_eval = llama.eval
    monkeypatch.setattr(llama, "eval", lambda toks: (evaluated.append(len(toks)),
                                                     real_eval(toks))[1])
    fresh = outputs(False)
    monkeypatch.setenv("PROMPTOPT_STATE_CACHE_MB", "64")
    counts: list[int] = []
    reused = outputs(True, counts)
    assert reused == fresh and all(t.strip() for t in fresh)
    store = embedded._states
    assert store is not None and store.saves >= len(examples) and store.hits >= len(examples)
    assert store.bytes <= 64 * 1024 * 1024
    # the third candidate's prompts evaluate the candidate's own words, a few tokens
    # cut back to the row group, and the answer: far less than one example's texts
    per_example = len(llama.tokenize(examples[0].encode()))
    third = counts[-len(examples):]
    assert per_example > 150
    assert all(n < 40 + 16 + 2 * embedded.ROW_GROUP for n in third), (third, per_example)
