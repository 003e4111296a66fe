"""A misbehaving OpenAI-compatible server, for tests of what promptopt does when a provider fails.

:class:`MisbehavingServer` is a :class:`~promptopt.testing._server.FakeOpenAIServer` on
127.0.0.1 whose answers follow a script of faults, one per request::

    with MisbehavingServer(["429", None, "500", "malformed"]) as server:
        llm = LLM("openai/fake", api_base=server.url, api_key="sk-test", timeout=1)
        llm.complete(messages)     # a 429 (retried after Retry-After), then an answer
        print(server.log)          # ['429', 'ok']

The faults (:data:`FAULTS`) are transport errors (``hang``, ``429``, ``500``,
``malformed``, ``disconnect``), which the client retries and may give up on, and odd
but valid answers (``empty``, ``endless``, ``huge``, ``non-english``, ``chatter``),
which reach the task's output cleaning.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from promptopt.testing._fakes import Reply
from promptopt.testing._server import FakeOpenAIServer, send_json

FAULTS = (
    "hang", "429", "500", "malformed", "disconnect",
    "empty", "endless", "huge", "non-english", "chatter",
)
"""What a request can get besides a normal answer:

- ``hang``: no answer for :attr:`MisbehavingServer.hang` seconds (past the client's
  timeout), then a normal one;
- ``429``: rate limited, with ``Retry-After: <retry_after>`` (no header if None);
- ``500``: an internal server error;
- ``malformed``: status 200 with a truncated JSON body;
- ``disconnect``: the connection closes without any answer;
- ``empty``: an answer whose content is ``""``;
- ``endless``: words until the request's ``max_tokens`` (``finish_reason: length``);
- ``huge``: :data:`HUGE_CHARS` characters, ignoring ``max_tokens``;
- ``non-english``: :data:`NON_ENGLISH`;
- ``chatter``: ``"Sure! Here is the rewrite prompt:"``, the normal answer and a sign-off,
  on three lines.
"""

NON_ENGLISH = "Réécris ce texte sous la forme d'un poème. 把这段文字改写成一首诗。"
HUGE_CHARS = 200_000
Script = Sequence[str | None] | Callable[[int, str], str | None]


class MisbehavingServer(FakeOpenAIServer):
    """An OpenAI-compatible chat server on 127.0.0.1 that misbehaves on a script.

    Args:
        script: The fault of each request, in arrival order: a sequence (``None`` or
            ``"ok"``: a normal answer; requests past its end are answered normally)
            or ``fn(n, prompt) -> fault or None`` with ``n`` counting from 0.
        replies: Normal replies, ``fn(prompt, params) -> str`` (default
            :func:`~promptopt.testing.default_reply`).
        retry_after: Seconds sent in the ``Retry-After`` header of a ``429``.
        hang: Seconds a ``hang`` keeps the client waiting.
        delay: Seconds before every answer (a slow provider).

    Attributes:
        outage: While set to a fault, every request gets it (an outage); None ends it.
        log: The fault each request got (``"ok"`` for a normal answer), in order.
    """

    def __init__(
        self,
        script: Script = (),
        *,
        replies: Reply | None = None,
        retry_after: float | None = 0.05,
        hang: float = 10.0,
        delay: float = 0.0,
    ) -> None:
        super().__init__(replies, delay=delay)
        for fault in script if not callable(script) else ():
            _check(fault)
        self.script = script
        self.retry_after = retry_after
        self.hang = hang
        self.outage: str | None = None
        self.log: list[str] = []
        self._closing = threading.Event()

    @property
    def count(self) -> int:
        """Requests received so far, misbehaved or not."""
        with self._lock:
            return len(self.log)

    def faults(self) -> dict[str, int]:
        """How many requests got each fault (``"ok"``: normal answers)."""
        with self._lock:
            counts: dict[str, int] = {}
            for fault in self.log:
                counts[fault] = counts.get(fault, 0) + 1
            return counts

    def _fault_for(self, body: dict[str, Any]) -> str:
        prompt = "\n\n".join(str(m.get("content", "")) for m in body.get("messages", []))
        with self._lock:
            n = len(self.log)
            if self.outage is not None:
                fault: str | None = self.outage
            elif callable(self.script):
                fault = self.script(n, prompt)
            else:
                fault = self.script[n] if n < len(self.script) else None
            fault = _check(fault) or "ok"
            self.log.append(fault)
        return fault

    def _respond(self, handler: Any, body: dict[str, Any]) -> None:
        fault = self._fault_for(body)
        try:
            if fault == "hang":
                if self._closing.wait(self.hang):
                    return
            elif fault == "429":
                headers = {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}
                send_json(handler, 429, _error("Rate limit reached, retry later", "rate_limit"),
                          headers)
                return
            elif fault == "500":
                send_json(handler, 500, _error("The server had an error", "server_error"))
                return
            elif fault == "malformed":
                send_json(handler, 200, b'{"id": "x", "object": "chat.completion", "choices": [')
                return
            elif fault == "disconnect":
                handler.close_connection = True
                return
            answer = self._answer(body)
            if fault != "ok":
                _misanswer(answer, fault, body)
            send_json(handler, 200, answer)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up first
            pass

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        super().__exit__(*exc)


def _check(fault: str | None) -> str | None:
    if fault is not None and fault != "ok" and fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; known: ok, {', '.join(FAULTS)}")
    return None if fault == "ok" else fault


def _error(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": kind}}


def _misanswer(answer: dict[str, Any], fault: str, body: dict[str, Any]) -> None:
    """Replace a normal answer's content with the odd output ``fault`` names."""
    choice = answer["choices"][0]
    normal = choice["message"]["content"]
    if fault == "empty":
        text = ""
    elif fault == "endless":
        words = ["and", "then", "the", "text", "goes", "on"]
        n = int(body.get("max_tokens") or 256)
        text = " ".join(words[i % len(words)] for i in range(n))
        choice["finish_reason"] = "length"
    elif fault == "huge":
        text = ("all work and no play " * (HUGE_CHARS // 21 + 1))[:HUGE_CHARS]
        choice["finish_reason"] = "length"
    elif fault == "non-english":
        text = NON_ENGLISH
    else:  # chatter
        text = f"Sure! Here is the rewrite prompt:\n{normal}\nI hope this helps!"
    choice["message"]["content"] = text
    answer["usage"]["completion_tokens"] = len(text.split())
    answer["usage"]["total_tokens"] = answer["usage"]["prompt_tokens"] + len(text.split())
