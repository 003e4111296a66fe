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


@pytest.mark.parametrize("name", ["qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"])
def test_qwen_chat_models_generate(name):
    """The GGUFs assembled from the chunk packages load, carry a chat template, answer."""
    from promptopt.llm._embedded import load

    llm = LLM(f"llamacpp/{name}", max_tokens=8)
    assert llm.is_chat
    metadata = load(name).metadata
    assert metadata["general.architecture"] == "qwen2" and "tokenizer.chat_template" in metadata
    text = llm.complete([{"role": "user", "content": "Name one Python keyword."}])
    assert text.strip()
    assert llm.usage.completion_tokens > 0


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
    # the 0.5B proposes here (quicker than the default 1.5B, which the gepa, protegi and
    # refine tests on the embedded model run)
    result = run(method, budget=24, seed=0, storage=url, study="e", cache_dir=embedded_cache,
                 proposer="llamacpp/qwen2.5-coder-0.5b", **FEW)
    assert result.budget_spent <= 24
    assert 0.0 <= result.test_score <= 1.0 and result.template.instruction.strip()
    study = optuna.load_study(study_name="e", storage=url)
    assert len(study.trials) == result.trials >= 2
    assert study.user_attrs["result"]["template_id"] == result.template.id


def _recovery_prompts(n_demos: int, n: int, text_tokens: int = 60) -> list[str]:
    from promptopt.data import load_examples, sample_path, split_examples
    from promptopt.llm._embedded import messages_to_prompt
    from promptopt.scoring import ExactMatch
    from promptopt.tasks import PromptRecoveryTask
    from promptopt.template import Template, make_demo

    examples = load_examples(sample_path(), input_fields=PromptRecoveryTask.input_fields,
                             target_field="rewrite_prompt")
    splits = split_examples(examples, train=max(2, n_demos), val=1, test=n, seed=0)
    task = PromptRecoveryTask(splits, scorer=ExactMatch(), max_text_tokens=text_tokens)
    start = task.start_template()
    template = Template(start.instruction, demos=tuple(
        make_demo({**e.inputs, "rewrite_prompt": e.target}) for e in splits.train[:n_demos]))
    return [messages_to_prompt(task.render(template, e, chat=False)) for e in splits.test]


@pytest.mark.parametrize("n_demos", [0, 4])
def test_prefix_reuse_keeps_greedy_outputs(n_demos, monkeypatch):
    """Outputs equal those of the reset-per-prompt engine, and each example after the
    evaluates only what follows the prefix it shares with the one before (to a multiple
    of ROW_GROUP tokens): the instruction, zero-shot; instruction and demos, 4-demo."""
    from promptopt.llm import _embedded as embedded

    llama = embedded.load("gemma-3-270m")
    # the previous prompt's prefix alone (saved states, tests/llm/test_states.py, would
    # restore more where earlier tests left prompts that share these)
    monkeypatch.setenv("PROMPTOPT_STATE_CACHE_MB", "0")
    evaluated: list[int] = []
    real_eval = llama.eval
    monkeypatch.setattr(llama, "eval", lambda toks: (evaluated.append(len(toks)),
                                                     real_eval(toks))[1])
    prompts = _recovery_prompts(n_demos, 3, text_tokens=120)

    def outputs(reuse: bool) -> list[str]:
        evaluated.clear()
        return [embedded.generate("gemma-3-270m", [{"role": "user", "content": p}],
                                  max_tokens=12, stop=["\n\n"], reuse=reuse)["text"]
                for p in prompts]

    fresh = outputs(False)
    fresh_tokens = sum(evaluated)
    reused = outputs(True)
    assert reused == fresh and any(t.strip() for t in fresh)
    tokens = [llama.tokenize(p.encode(), add_bos=True) for p in prompts]
    previous = tokens[-1:] + tokens[:-1]  # the first reuses the last fresh prompt
    shared = [next(i for i, (a, b) in enumerate(zip(x, y, strict=False)) if a != b)
              for x, y in zip(previous, tokens, strict=True)]
    kept = sum(s // embedded.ROW_GROUP * embedded.ROW_GROUP for s in shared)
    assert kept >= 3 * (512 if n_demos else embedded.ROW_GROUP)
    assert fresh_tokens - sum(evaluated) == kept


def test_chat_model_prompts_are_those_of_the_chat_handler_and_reuse_their_prefix(monkeypatch):
    """A chat model's outputs equal llama-cpp-python's own chat completion from a reset
    context (greedy and sampled), and samples of one prompt evaluate it only once."""
    from promptopt.llm import _embedded as embedded

    name = "qwen2.5-coder-0.5b"
    llama = embedded.load(name)
    prompts = _recovery_prompts(0, 2, text_tokens=60)
    asks = [[{"role": "system", "content": "Name the rewrite instruction in a few words."},
             {"role": "user", "content": p}] for p in prompts]
    settings = [(0.0, 0), (1.0, 7), (1.0, 8)]

    def handler(messages, temperature, seed):
        llama.reset()
        embedded._prefilled.pop(id(llama), None)
        out = llama.create_chat_completion(messages=messages, max_tokens=16,
                                           temperature=temperature, seed=seed, top_p=0.95)
        return out["choices"][0]["message"]["content"] or ""

    expected = [handler(m, t, s) for m in asks for t, s in settings]
    evaluated: list[int] = []
    real_eval = llama.eval
    monkeypatch.setattr(llama, "eval", lambda toks: (evaluated.append(len(toks)),
                                                     real_eval(toks))[1])
    ours = [embedded.generate(name, m, max_tokens=16, temperature=t, seed=s)["text"]
            for m in asks for t, s in settings]
    assert ours == expected and all(text.strip() for text in ours)
    prompt_len = len(llama.tokenize(embedded._chat_prompt(llama, asks[1]).encode(),
                                    add_bos=False, special=True))
    # the second and third samples of a prompt evaluate at most a few of its tokens again
    assert sum(evaluated) < 2 * prompt_len + 6 * 16 + 4 * embedded.ROW_GROUP


def test_a_chat_model_continues_an_opened_assistant_turn():
    from promptopt.llm import _embedded as embedded

    name = "qwen2.5-coder-0.5b"
    asked = [{"role": "user", "content": "Name a colour of the sky, in one short sentence."}]
    opened = [*asked, {"role": "assistant", "content": "The sky is"}]
    prompt = embedded._chat_prompt(embedded.load(name), opened)
    assert prompt == embedded._chat_prompt(embedded.load(name), asked) + "The sky is"
    text = embedded.generate(name, opened, max_tokens=8)["text"]
    assert text.strip() and not text.lstrip().lower().startswith("the sky is")


def test_prefix_reuse_across_a_batch_boundary_keeps_the_logits(monkeypatch):
    """Prompts that share a short prefix and run past 512 tokens: the kept prefix ends
    inside the first batch, and the rest must still be evaluated in the batches a fresh
    evaluation uses (a batch across token 512 changed about two thirds of such logits)."""
    import random

    from promptopt.data import load_examples, sample_path
    from promptopt.llm import _embedded as embedded
    from promptopt.tasks import PromptRecoveryTask

    llama = embedded.load("gemma-3-270m")
    words = " ".join(e.inputs["original_text"] for e in load_examples(
        sample_path(), input_fields=PromptRecoveryTask.input_fields,
        target_field="rewrite_prompt")).split()
    rng = random.Random(0)

    def text(n_tokens: int) -> str:
        out = ""
        while len(llama.tokenize(out.encode(), add_bos=False)) < n_tokens:
            out += " " + " ".join(rng.choice(words) for _ in range(20))
        return out

    shared = "Rewrite prompts." + text(100)
    messages = [[{"role": "user", "content": shared + text(420) + " Label:"}] for _ in range(4)]
    assert all(512 < len(llama.tokenize(m[0]["content"].encode())) < 700 for m in messages)
    labels = ["A", "B"]
    monkeypatch.setenv("PROMPTOPT_PREFIX_REUSE", "0")
    fresh = [embedded.label_logprobs("gemma-3-270m", m, labels) for m in messages]
    monkeypatch.setenv("PROMPTOPT_PREFIX_REUSE", "1")
    evaluated: list[int] = []
    real_eval = llama.eval
    monkeypatch.setattr(llama, "eval", lambda toks: (evaluated.append(len(toks)),
                                                     real_eval(toks))[1])
    reused = [embedded.label_logprobs("gemma-3-270m", m, labels) for m in messages]
    assert reused == fresh
    assert len(evaluated) > len(messages)  # the kept prefix's batch ended on its own


def test_label_logprobs_same_with_prefix_reuse(monkeypatch):
    from promptopt.llm import _embedded as embedded

    messages = [[{"role": "user", "content": p + " Label:"}] for p in _recovery_prompts(2, 2)]
    labels = ["A", "B"]
    monkeypatch.setenv("PROMPTOPT_PREFIX_REUSE", "0")
    fresh = [embedded.label_logprobs("gemma-3-270m", m, labels) for m in messages]
    monkeypatch.setenv("PROMPTOPT_PREFIX_REUSE", "1")
    reused = [embedded.label_logprobs("gemma-3-270m", m, labels) for m in messages]
    assert reused == fresh
