"""A cheap check that a proposed instruction says something about the task.

Weak proposers often answer the meta-prompt instead of the task: they reply to it as
an assistant ("Certainly, I'd be happy to help ... Please provide the details"), praise the
instruction ("Your new instruction is very effective and it will make a difference
in every way possible."), repeat the meta-prompt's own wording ("concise, effective
and generally applicable"), or write an instruction that would fit any task. Such a
proposal can still win on a few noisy validation examples, so
:meth:`~promptopt.search.SearchContext.accept` rejects it before any evaluation,
counted under ``"no task content (<reason>)"``. :func:`content_problem` is word lists
and regular expressions: no LLM call, no scorer.

A word counts as task content when it is one of the task's own words (the starting
instruction, the input and target field names: ``protected``), or when it is neither
a common word (:data:`GENERIC_WORDS`) nor one of the meta-prompt's fixed words
(``frame``, the wording an optimizer wraps around the task's examples; the examples
and earlier instructions it shows are not part of it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_WORD = re.compile(r"[a-z][a-z']*")

STOP_WORDS = frozenset("""
a about all also an and any are as at be been being but by can could do does each
either else for from had has have he her here him his how i if in into is it its
just may me might more most much must my no nor not now of on only or other our out
over own please shall she should so some such than that the their them then there
these they this those through to too under up us very was we were what when where
which while who whom whose why will with would yet you your yours
""".split())
"""Function words: never task content."""

GENERIC_WORDS = frozenset("""
above always applicable approach below best better clear clearly concise correct
correctly definitely difference different effective effectively every everything
example examples excellent following general generally given good great help helpful
high higher highest improve improved improvement improves instruction instructions
language llm make makes making model models new optimal perfect possible powerful
previous prompt prompts quality response responses score scores scoring strong
successful task tasks useful way ways work works write writing
""".split())
"""Words a meta-prompt or a self-praising answer uses about any task."""

_SELF = r"(?:this|the|your|my|our|new|above|following|improved|revised|updated)"
PRAISE = re.compile(
    rf"\b{_SELF}\s+(?:(?:new|improved|revised|updated)\s+)?(?:instruction|prompt)s?\s+"
    r"(?:is|are|was|will|would|should|can|has|makes?)\b[^.!?\n]*?\b(?:effective|better|best|"
    r"great|good|improve\w*|difference|perfect|powerful|helpful|useful|excellent|optimal|"
    r"successful|score\w*|work(?:s|ing)?)\b"
    r"|\bmake (?:a|the|all the) difference\b|\bin every (?:possible )?way(?: possible)?\b"
    r"|\b(?:achieve|achieves|get|gets|obtain|earn|earns|reach|reaches)\s+(?:a |the )?"
    r"(?:higher|highest|better|best|perfect|high) scores?\b",
    re.IGNORECASE,
)
"""An answer that talks about the instruction's own merit or score."""

REPLY = re.compile(
    r"^\W*(?:certainly|sure|of course|absolutely|gladly|okay|ok)\b[\s,!.]"
    r"|^\W*here(?:'s| is| are) (?:a|an|the|my|your|one|some)\b[^.:\n]*"
    r"\b(?:instruction|prompt|version|answer)s?\b"
    r"|\bi(?:'d| would| am|'m|'ll| will| can)\s+(?:be\s+)?(?:happy|glad|delighted)\s+to\b"
    r"|\b(?:i|we) can help\b|\bhappy to help\b|\bas an ai\b|^\W*i(?:'m| am) sorry\b"
    r"|^\W*(?:understood|got it|noted)\b|\bthank you for (?:providing|sharing|the)\b"
    r"|\blet's proceed\b"
    r"|\bi(?:'ll| will)\s+(?:now|follow)\b|\bfor me to\b"
    r"|\bi apologi[sz]e\b|\bi (?:cannot|can't|can not|am unable|'m unable|don't have)\b"
    r"|\bi understand your\b|\byou(?:'d| would) like me to\b"
    r"|\bprovid(?:e|ing)\s+(?:me\s+)?(?:with\s+)?(?:the\s+)?original text and (?:the\s+)?"
    r"rewritten text\b"
    r"|\b(?:please|could you|can you)\s+(?:please\s+)?(?:provide|share|give|send)\s+"
    r"(?:(?:me|us)\s+)?(?:with\s+)?(?:the\s+|more\s+|some\s+|any\s+)?"
    r"(?:details|information|context)\b",
    re.IGNORECASE,
)
"""An assistant's reply to the asker ("Certainly, I'd be happy to help you write ...",
"Please provide the details of the task", "Understood. Please provide the original text
and the rewritten text.", "Thank you for providing the prompts. I will follow ...", "I
apologize, but I cannot generate a final prompt based on the provided prompts. Please
provide the prompts you would like me to crossover and mutate.", "I understand your
request. However, I don't have the original text ...": all answers of the Qwen 1.5B to
EvoPrompt's and APE's prompts) rather than an instruction."""

ECHO_SHARE = 0.6
"""Share of an answer's words taken from the meta-prompt's fixed wording above which,
with little else, it only echoes the meta-prompt."""
SPECIFIC_SHARE = 0.2
"""With an echo, the most task words an answer may hold (as a share) and still be rejected."""


def words(text: str) -> list[str]:
    """Lower-case words of ``text`` (letters and apostrophes), in order."""
    return _WORD.findall(text.lower().replace("_", " "))


def content_problem(
    text: str, *, frame: str = "", protected: Iterable[str] = ()
) -> str | None:
    """Why ``text`` holds no task content, or None when it does.

    Args:
        text: A proposed instruction.
        frame: The meta-prompt's fixed wording (without the task examples and earlier
            instructions it shows); ``""`` when unknown.
        protected: The task's own words (always task content), e.g. from
            :func:`task_words`.

    Returns:
        ``"replies to the asker"``, ``"praises itself"``, ``"echoes the meta-prompt"``,
        ``"fits any task"``, or None.
    """
    if REPLY.search(text):
        return "replies to the asker"
    if PRAISE.search(text):
        return "praises itself"
    keep = set(protected)
    content = [w for w in words(text) if w not in STOP_WORDS and len(w) > 1]
    if not content:  # no words at all is another rejection's business (empty)
        return "fits any task" if words(text) else None  # function words only ("and")
    framed = set(words(frame)) - keep
    specific = [w for w in content if w in keep or (w not in GENERIC_WORDS and w not in framed)]
    echoed = [w for w in content if w in framed]
    if framed and len(echoed) >= ECHO_SHARE * len(content) and (
        len(specific) <= SPECIFIC_SHARE * len(content)
    ):
        return "echoes the meta-prompt"
    if not specific:
        return "fits any task"
    return None


def task_words(instruction: str, fields: Iterable[str]) -> frozenset[str]:
    """The task's own words: its input and target field names, and the words of its
    starting instruction less the common ones (so that "instruction" in a
    prompt-recovery start template does not make every answer about instructions
    count as task content)."""
    out = set(words(instruction)) - GENERIC_WORDS
    for name in fields:
        out.update(words(name))
    return frozenset(out - STOP_WORDS)
