"""Test support: fakes, fake servers, a private PostgreSQL, a corpus of bad input.

Like ``optuna.testing``, this package stands beside the product and may import any of
it; nothing in the product imports it. Importing it registers the ``fake/`` LLM
provider (:class:`FakeLLM`). ``FakeOpenAIServer`` serves :func:`default_reply` over HTTP
as an OpenAI-compatible server on 127.0.0.1, for tests that run ``promptopt`` in
another process; ``MisbehavingServer`` misbehaves on a script (timeouts, 429s, bad
JSON ...). :mod:`promptopt.testing.postgres` starts a throw-away PostgreSQL server and
:mod:`promptopt.testing.badinput` writes defective data and template files.
"""

from promptopt.testing._fakes import (
    FakeLLM,
    FakeSetup,
    LabelScores,
    Reply,
    default_label_logprobs,
    default_reply,
    fake_generate,
    fake_label_logprobs,
)
from promptopt.testing._faults import MisbehavingServer
from promptopt.testing._server import FakeOpenAIServer, default_token_logprobs, send_json

__all__ = [
    "FakeLLM",
    "FakeOpenAIServer",
    "FakeSetup",
    "LabelScores",
    "MisbehavingServer",
    "Reply",
    "default_label_logprobs",
    "default_reply",
    "default_token_logprobs",
    "fake_generate",
    "fake_label_logprobs",
    "send_json",
]
