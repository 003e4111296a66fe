"""Test doubles shipped with promptopt: a scripted LLM and a fast hashing scorer.

``FakeLLM`` is served through LiteLLM as the ``fake/<name>`` provider, so tests run
the real client (cache, budget, usage, retries) with scripted replies::

    fake = FakeLLM(lambda prompt, params: "Make it formal.")
    llm = LLM(fake.model)

``HashingScorer`` embeds texts as hashed bags of words: no torch model, same API
and caching as :class:`~promptopt.scorer.SCSScorer`. ``FakeOpenAIServer`` serves
:func:`default_reply` over HTTP as an OpenAI-compatible server on 127.0.0.1, for
tests that run ``promptopt`` in another process; ``MisbehavingServer`` (from
:mod:`promptopt.testing_faults`) misbehaves on a script (timeouts, 429s, bad JSON ...).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from promptopt.errors import UnknownModelError
from promptopt.scorer import SCSScorer

Reply = Callable[[str, dict[str, Any]], str]
LabelScores = Callable[[str, list[str]], dict[str, float]]
_FAKES: dict[str, FakeLLM] = {}
_counter = itertools.count(1)
_WORD = re.compile(r"[a-z0-9']+")

_PROPOSAL_WORDS = [
    "formal", "casual", "poem", "shorter", "pirate", "summary", "child", "email",
    "bullet", "list", "tweet", "shakespeare", "funny", "sad", "story", "letter",
]


def _stable_int(*parts: object) -> int:
    return int(hashlib.sha256("\0".join(map(str, parts)).encode()).hexdigest()[:12], 16)


def default_reply(prompt: str, params: dict[str, Any]) -> str:
    """A deterministic reply that depends on the prompt, seed and temperature.

    Proposer requests (prompts that mention ``<INS>``) get a new instruction in
    ``<INS>`` tags; anything else gets a short "rewrite prompt" whose words come from
    the prompt, so different templates give different predictions.
    """
    h = _stable_int(prompt, params.get("seed"), params.get("temperature"))
    if "<INS>" in prompt:
        words = [_PROPOSAL_WORDS[(h >> (4 * i)) % len(_PROPOSAL_WORDS)] for i in range(3)]
        return f"<INS>Rewrite the text to be {words[0]}, {words[1]} and {words[2]}.</INS>"
    first_line = prompt.strip().split("\n", 1)[0].lower()
    words = _WORD.findall(first_line)
    picked = [words[(h >> (3 * i)) % len(words)] for i in range(3)] if words else ["text"]
    return "Rewrite this " + " ".join(picked) + "."


def default_label_logprobs(prompt: str, labels: list[str]) -> dict[str, float]:
    """Deterministic first-token log-probs of ``labels`` that depend on the whole prompt.

    Each label gets a logit in [-3, 3) hashed from the prompt and the label; the rest
    of the vocabulary shares logit 0, so the labels' probabilities sum to less than 1
    (as a real model's do) and different templates give different predictions.
    """
    logits = {label: (_stable_int(prompt, label) % 6000) / 1000.0 - 3.0 for label in labels}
    log_norm = float(np.log(1.0 + sum(np.exp(v) for v in logits.values())))
    return {label: v - log_norm for label, v in logits.items()}


class FakeLLM:
    """Scripted replies behind the LiteLLM model string ``fake/<name>``.

    Args:
        replies: ``fn(prompt, params) -> str``, a list of strings served in turn
            (cycling), or None for :func:`default_reply`.
        name: Model name (unique per instance by default).
        fail_first: Raise a transient error on the first N calls (to test retries).
        label_scores: ``fn(prompt, labels) -> {label: logprob}`` answering
            :meth:`LLM.label_logprobs <promptopt.llm.LLM.label_logprobs>` (default
            :func:`default_label_logprobs`); such calls are recorded too.
    """

    def __init__(
        self,
        replies: Reply | Sequence[str] | None = None,
        *,
        name: str | None = None,
        fail_first: int = 0,
        label_scores: LabelScores | None = None,
    ) -> None:
        self.name = name or f"fake-{next(_counter)}"
        if replies is None:
            self._reply: Reply = default_reply
        elif callable(replies):
            self._reply = replies
        else:
            cycle = itertools.cycle(list(replies))
            self._reply = lambda prompt, params: next(cycle)
        self.fail_first = fail_first
        self.label_scores: LabelScores = label_scores or default_label_logprobs
        self.calls: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        _FAKES[self.name] = self

    @property
    def model(self) -> str:
        """The LiteLLM model string to pass to :class:`~promptopt.llm.LLM`."""
        return f"fake/{self.name}"

    def prompts(self) -> list[str]:
        """The prompt text of every call so far."""
        return [c["prompt"] for c in self.calls]

    def _record(self, prompt: str, messages: list[dict[str, Any]], params: dict[str, Any]) -> None:
        self.calls.append({"prompt": prompt, "messages": messages, "params": dict(params)})
        if len(self.calls) <= self.fail_first:
            import litellm

            raise litellm.RateLimitError(
                message="fake rate limit", llm_provider="fake", model=self.model
            )

    def __call__(self, messages: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
        prompt = "\n\n".join(str(m.get("content", "")) for m in messages)
        with self._lock:
            self._record(prompt, messages, params)
            text = self._reply(prompt, params)
        return {
            "text": text,
            "prompt_tokens": len(prompt.split()),
            "completion_tokens": len(text.split()),
        }


    def label_logprobs(self, messages: list[dict[str, Any]], labels: list[str]) -> dict[str, Any]:
        """Scripted label log-probs (recorded as a call with ``params={"labels": ...}``)."""
        prompt = "\n\n".join(str(m.get("content", "")) for m in messages)
        with self._lock:
            self._record(prompt, messages, {"labels": list(labels)})
            scores = self.label_scores(prompt, list(labels))
        return {"logprobs": {label: float(scores[label]) for label in labels},
                "prompt_tokens": len(prompt.split()), "completion_tokens": 0}


def _fake(name: str) -> FakeLLM:
    fake = _FAKES.get(name)
    if fake is None:
        raise UnknownModelError(f"no FakeLLM named {name!r} in this process")
    return fake


def fake_generate(
    name: str, messages: list[dict[str, Any]], params: dict[str, Any]
) -> dict[str, Any]:
    """Entry point of the ``fake`` LiteLLM provider."""
    return _fake(name)(messages, params)


def fake_label_logprobs(
    name: str, messages: list[dict[str, Any]], labels: list[str]
) -> dict[str, Any]:
    """Entry point of the ``fake`` provider's label log-probs (:mod:`promptopt.llm._logprobs`)."""
    return _fake(name).label_logprobs(messages, labels)


def default_token_logprobs(prompt: str) -> dict[str, float]:
    """Deterministic next-token log-probs over the prompt's words, with and without a space.

    Each word of the prompt is a token twice (``"word"`` and ``" word"``), with a logit
    in [-3, 3) hashed from the prompt and the token; one more bucket of logit 0 stands
    for the rest of the vocabulary.
    """
    words = sorted(set(re.findall(r"[A-Za-z0-9']+", prompt)))
    logits = {t: (_stable_int(prompt, t) % 6000) / 1000.0 - 3.0
              for w in words for t in (w, " " + w)}
    log_norm = float(np.log(1.0 + sum(np.exp(v) for v in logits.values())))
    return {t: v - log_norm for t, v in logits.items()}


def send_json(
    handler: Any, status: int, payload: Any, headers: dict[str, str] | None = None
) -> None:
    """Send ``payload`` (JSON-encoded unless bytes) with ``status`` on an HTTP handler."""
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(data)


class FakeOpenAIServer:
    """A tiny OpenAI-compatible chat-completions server on 127.0.0.1, for tests.

    It answers ``POST .../chat/completions`` with :func:`default_reply` (or
    ``replies``) after ``delay`` seconds, and counts the requests, so a test can run
    ``promptopt run --model openai/NAME --api-base URL`` in another process::

        with FakeOpenAIServer(delay=0.05) as server:
            run("opro", model="openai/fake", api_base=server.url, ...)
            print(server.count)

    A request with ``logprobs: true`` gets OpenAI-style ``logprobs`` of the first
    token (its ``top_logprobs`` most likely alternatives under ``token_logprobs``),
    and the most likely token as its text; with ``logprobs=False`` the server acts
    like a provider without log-probs and leaves them out.

    Args:
        replies: ``fn(prompt, params) -> str`` (default :func:`default_reply`).
        delay: Seconds to wait before each answer (a slow provider).
        logprobs: Whether to answer log-prob requests with log-probs.
        token_logprobs: ``fn(prompt) -> {token: logprob}`` (default
            :func:`default_token_logprobs`).
    """

    def __init__(
        self,
        replies: Reply | None = None,
        *,
        delay: float = 0.0,
        logprobs: bool = True,
        token_logprobs: Callable[[str], dict[str, float]] | None = None,
    ) -> None:
        self.reply: Reply = replies or default_reply
        self.delay = delay
        self.logprobs = logprobs
        self.token_logprobs = token_logprobs or default_token_logprobs
        self.bodies: list[dict[str, Any]] = []
        self.prompts: list[str] = []
        self.requests: list[dict[str, Any]] = []
        """Each request's ``path`` and ``headers``, header names in lower case as HTTP
        compares them (e.g. ``headers.get("authorization")`` for the credentials sent)."""
        self._lock = threading.Lock()
        self._server: Any = None

    @property
    def url(self) -> str:
        """The ``api_base`` to give the client (``http://127.0.0.1:PORT/v1``)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    @property
    def count(self) -> int:
        """Requests received so far."""
        with self._lock:
            return len(self.prompts)

    def _answer(self, body: dict[str, Any]) -> dict[str, Any]:
        prompt = "\n\n".join(str(m.get("content", "")) for m in body.get("messages", []))
        with self._lock:
            self.prompts.append(prompt)
            self.bodies.append(body)
        time.sleep(self.delay)
        params = {"seed": body.get("seed"), "temperature": body.get("temperature")}
        choice: dict[str, Any] = {"index": 0, "finish_reason": "stop"}
        if body.get("logprobs") and self.logprobs:
            ranked = sorted(self.token_logprobs(prompt).items(), key=lambda kv: -kv[1])
            top = [{"token": t, "logprob": lp, "bytes": list(t.encode("utf-8"))}
                   for t, lp in ranked[: max(1, int(body.get("top_logprobs") or 1))]]
            text = ranked[0][0]
            choice["logprobs"] = {"content": [{**top[0], "top_logprobs": top}]}
        else:
            text = self.reply(prompt, params)
        choice["message"] = {"role": "assistant", "content": text}
        n_in, n_out = len(prompt.split()), len(text.split())
        return {
            "id": f"fake-{_stable_int(prompt, params['seed'])}",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model", "fake"),
            "choices": [choice],
            "usage": {"prompt_tokens": n_in, "completion_tokens": n_out,
                      "total_tokens": n_in + n_out},
        }

    def _respond(self, handler: Any, body: dict[str, Any]) -> None:
        """Answer one request on ``handler`` (subclasses misbehave here)."""
        send_json(handler, 200, self._answer(body))

    def __enter__(self) -> FakeOpenAIServer:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                with owner._lock:
                    owner.requests.append({"path": self.path, "headers": {
                        name.lower(): value for name, value in self.headers.items()}})
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    owner._respond(self, body)  # a client killed mid-call has gone away

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class _HashingEncoder:
    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.tokenizer = None

    def encode(self, texts: Sequence[str], **_: Any) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                out[i, _stable_int(word) % self.dim] += 1.0
            out[i, 0] += 0.1  # no zero vectors
        return out / np.linalg.norm(out, axis=1, keepdims=True)


class HashingScorer(SCSScorer):
    """SCS on hashed bag-of-words vectors: a fast, model-free scorer for unit tests."""

    def __init__(self, *, dim: int = 512, exponent: float = 3.0) -> None:
        super().__init__("hashing-bow", exponent=exponent)
        self.dim = dim

    def _ensure_loaded(self) -> None:
        if self._st is None:
            self._st = _HashingEncoder(self.dim)
            self._name = f"hashing-bow-{self.dim}"


class FakeSetup:
    """Everything an optimizer needs, on the bundled sample, with fake LLM and scorer.

    Args:
        task: A registered task name (it runs on its bundled sample), or a task with its
            splits (e.g. a ``CSVTask``; ``train``, ``val`` and ``test`` are then ignored).
        budget: The shared LLM-call budget.
        replies: Scripted replies for the recovery LLM (see :class:`FakeLLM`).
        proposer_replies: Scripted replies for the proposer (default: same fake).
        train, val, test: Split sizes.
        cache_dir: Disk cache folder (None: no cache).
        storage: Optuna storage URL to record trials into (None: not recorded).
        fake_name: Name of the recovery FakeLLM (the same name in two setups means
            the same model string, so they share cache entries).
        label_scores: Scripted label log-probs of the recovery LLM (see :class:`FakeLLM`).
    """

    def __init__(
        self,
        *,
        task: Any = "prompt-recovery",
        budget: int | None = 100,
        replies: Reply | Sequence[str] | None = None,
        proposer_replies: Reply | Sequence[str] | None = None,
        train: int = 12,
        val: int = 6,
        test: int = 6,
        cache_dir: str | None = None,
        storage: str | None = None,
        study: str = "test",
        method: str = "test",
        fake_name: str | None = None,
        label_scores: LabelScores | None = None,
    ) -> None:
        from promptopt.data import sample_path
        from promptopt.evaluator import Evaluator
        from promptopt.llm import LLM, Budget, DiskCache, Usage
        from promptopt.registry import tasks
        from promptopt.tracker import Tracker

        if isinstance(task, str):
            cls = tasks.get(task)
            task = cls.from_file(sample_path(cls.sample), scorer=HashingScorer(), train=train,
                                 val=val, test=test, seed=0)
        self.task = task
        self.fake = FakeLLM(replies, name=fake_name, label_scores=label_scores)
        self.proposer_fake = self.fake if proposer_replies is None else FakeLLM(proposer_replies)
        cache = DiskCache(cache_dir, "llm") if cache_dir else None
        self.budget, usage = Budget(budget), Usage()
        self.llm = LLM(self.fake.model, cache=cache, budget=self.budget, usage=usage)
        self.proposer = LLM(
            self.proposer_fake.model, cache=cache, budget=self.budget, usage=usage
        )
        self.tracker = Tracker(storage, study) if storage else None
        self.evaluator = Evaluator(self.task, self.llm, tracker=self.tracker, method=method)

    @property
    def calls(self) -> int:
        """Requests the fakes received (recovery and proposer)."""
        n = len(self.fake.calls)
        return n if self.proposer_fake is self.fake else n + len(self.proposer_fake.calls)

    def optimize(self, optimizer: Any, seed: int = 0) -> Any:
        """Run ``optimizer`` on this setup."""
        return optimizer.optimize(self.task, self.evaluator, self.proposer, seed=seed)


def __getattr__(name: str) -> Any:
    """``MisbehavingServer`` lives in :mod:`promptopt.testing_faults` (imported on use)."""
    if name == "MisbehavingServer":
        from promptopt.testing_faults import MisbehavingServer

        return MisbehavingServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
