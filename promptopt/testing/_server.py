"""An OpenAI-compatible chat-completions server on 127.0.0.1, for tests that run
``promptopt`` against a provider in another process or over real HTTP.

:class:`FakeOpenAIServer` answers with :func:`~promptopt.testing.default_reply` (or
scripted replies) and records what it received; :mod:`promptopt.testing._faults`
builds a misbehaving one on it. Both are importable from :mod:`promptopt.testing`.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from promptopt.scoring import stable_int
from promptopt.testing._fakes import Reply, default_reply


def default_token_logprobs(prompt: str) -> dict[str, float]:
    """Deterministic next-token log-probs over the prompt's words, with and without a space.

    Each word of the prompt is a token twice (``"word"`` and ``" word"``), with a logit
    in [-3, 3) hashed from the prompt and the token; one more bucket of logit 0 stands
    for the rest of the vocabulary.
    """
    words = sorted(set(re.findall(r"[A-Za-z0-9']+", prompt)))
    logits = {t: (stable_int(prompt, t) % 6000) / 1000.0 - 3.0
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
            "id": f"fake-{stable_int(prompt, params['seed'])}",
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
