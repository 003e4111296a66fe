from __future__ import annotations

import pytest

from promptopt.errors import (
    AuthenticationError,
    BudgetExhausted,
    TransientLLMError,
    UnknownModelError,
)
from promptopt.llm import LLM, Budget, DiskCache, Usage
from promptopt.llm._cache import request_key
from promptopt.testing import FakeLLM

MSG = [{"role": "user", "content": "hello"}]


def test_calls_go_through_litellm_and_are_counted():
    fake = FakeLLM(["one", "two"])
    llm = LLM(fake.model)
    assert llm.complete(MSG) == "one"
    assert llm.complete(MSG) == "two"
    assert llm.usage.calls == 2 and llm.usage.cache_hits == 0
    assert llm.usage.prompt_tokens == 2 and llm.usage.completion_tokens == 2


def test_disk_cache_serves_repeats_and_keys_on_sampling_params(tmp_path):
    fake = FakeLLM(lambda prompt, params: f"t={params.get('temperature')} s={params.get('seed')}")
    cache = DiskCache(tmp_path)
    llm = LLM(fake.model, cache=cache)
    first = llm.complete(MSG, temperature=0.7, seed=1)
    assert llm.complete(MSG, temperature=0.7, seed=1) == first
    assert len(fake.calls) == 1 and llm.usage.cache_hits == 1
    llm.complete(MSG, temperature=0.7, seed=2)
    llm.complete(MSG, temperature=0.9, seed=1)
    llm.complete(MSG, temperature=0.7, seed=1, max_tokens=5)
    assert len(fake.calls) == 4
    # A new client on the same folder (a new process) sees the same entries.
    again = LLM(fake.model, cache=DiskCache(tmp_path))
    assert again.complete(MSG, temperature=0.7, seed=1) == first
    assert again.usage.calls == 0 and again.usage.cache_hits == 1


def test_cache_key_leaves_out_credentials(tmp_path):
    fake = FakeLLM(["x"])
    a = LLM(fake.model, cache=DiskCache(tmp_path), api_key="sk-secret-1")
    b = LLM(fake.model, cache=DiskCache(tmp_path), api_key="sk-secret-2")
    a.complete(MSG)
    b.complete(MSG)
    assert len(fake.calls) == 1
    assert b"sk-secret" not in (tmp_path / "cache.sqlite").read_bytes()
    req = a._request(MSG, None, None, None, None)
    assert "api_key" not in req and request_key(req) == request_key(dict(req))


def test_retries_transient_errors_with_backoff():
    fake = FakeLLM(["ok"], fail_first=2)
    llm = LLM(fake.model, backoff=0.0, max_retries=3)
    assert llm.complete(MSG) == "ok"
    assert len(fake.calls) == 3 and llm.usage.calls == 1


def test_gives_up_after_max_retries():
    fake = FakeLLM(["ok"], fail_first=10)
    llm = LLM(fake.model, backoff=0.0, max_retries=2)
    with pytest.raises(TransientLLMError, match="gave up after 3 attempts"):
        llm.complete(MSG)
    assert llm.usage.failures == 1


def test_budget_is_charged_up_front_and_never_exceeded():
    fake = FakeLLM(["x"])
    budget = Budget(3)
    llm = LLM(fake.model, budget=budget)
    llm.complete_many([MSG, MSG])
    with pytest.raises(BudgetExhausted):
        llm.complete_many([MSG, MSG])
    assert budget.spent == 2 and len(fake.calls) == 2
    llm.complete(MSG)
    assert budget.remaining == 0
    assert llm.complete(MSG, charge=False) == "x"  # uncharged work (final test scoring)


def test_budget_reservation():
    budget = Budget(10)
    assert budget.reserve(4) == 4
    assert budget.remaining == 6 and not budget.can_afford(7)
    budget.release(4)
    assert budget.can_afford(10)


def test_shared_usage_and_snapshots():
    usage = Usage()
    fake = FakeLLM(["a b c"])
    llm = LLM(fake.model, usage=usage)
    before = usage.as_dict()
    llm.complete(MSG)
    assert usage.since(before)["completion_tokens"] == 3
    assert usage.as_dict()["requests"] == 1


def test_missing_api_key_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    llm = LLM("openai/gpt-4o-mini", max_retries=0)
    with pytest.raises(AuthenticationError, match="API key"):
        llm.complete(MSG)


def test_unknown_models_are_clear_errors():
    with pytest.raises(UnknownModelError, match="unknown model"):
        LLM("nosuchprovider-xyz/model", max_retries=0).complete(MSG)
    with pytest.raises(UnknownModelError, match="unknown embedded model"):
        LLM("llamacpp/not-a-model", max_retries=0).complete(MSG)
    with pytest.raises(UnknownModelError, match="GGUF file not found"):
        LLM("llamacpp/missing.gguf", max_retries=0).complete(MSG)


def test_a_server_that_never_answers_is_a_timeout_error():
    import socket
    import threading

    from promptopt.errors import LLMTimeoutError

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    held = []
    stop = threading.Event()

    def accept_and_hang():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                held.append(conn)  # read nothing, answer nothing
            except OSError:
                continue

    thread = threading.Thread(target=accept_and_hang, daemon=True)
    thread.start()
    try:
        llm = LLM("openai/silent-model", api_base=f"http://127.0.0.1:{port}/v1",
                  api_key="sk-test", timeout=0.5, max_retries=1, backoff=0.0)
        with pytest.raises(LLMTimeoutError, match="gave up after 2 attempts"):
            llm.complete(MSG)
        assert len(held) == 2  # retried once
    finally:
        stop.set()
        thread.join(timeout=2)
        for conn in held:
            conn.close()
        server.close()


class _HeldContext:
    """What reusable_prefix reads of a llama.cpp context: the tokens it holds."""

    def __init__(self, held: list[int]):
        self.input_ids = held
        self.n_tokens = len(held)


def test_reusable_prefix_keeps_whole_row_groups_of_the_last_prefill_only():
    from promptopt.llm import _embedded as embedded

    group = embedded.ROW_GROUP
    prompt = list(range(1000, 1000 + 3 * group + 1))
    llama = _HeldContext(prompt + [7, 8, 9])  # the prompt, then three generated tokens
    embedded._prefilled.pop(id(llama), None)
    assert embedded.reusable_prefix(llama, prompt) == 0  # no prefill recorded: nothing kept
    embedded._prefilled[id(llama)] = len(prompt)
    other = prompt[: 2 * group + 1] + [1, 2, 3]
    assert embedded.reusable_prefix(llama, other) == 2 * group  # shared 2 groups + 1
    assert embedded.reusable_prefix(llama, prompt) == 3 * group  # never the last token
    # the generated tokens were decoded one row at a time: never kept
    assert embedded.reusable_prefix(llama, prompt + [7, 8, 9, 10]) == 3 * group
    assert embedded.reusable_prefix(llama, [5] + prompt) == 0
    embedded._prefilled.pop(id(llama), None)
