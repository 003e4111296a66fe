"""Built-in rewrite instructions for ``promptopt data generate``.

Six families of slot values (tone, genre, audience, format, length, persona), written
for this project, and sentence templates that combine one or two families into
natural rewrite prompts such as "Rewrite this text as a limerick for a room of
software engineers." :func:`instruction_stream` draws distinct prompts from them
with a seeded random generator, so the same seed and key give the same prompts.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator, Sequence

from promptopt.errors import ConfigError

FAMILIES: dict[str, tuple[str, ...]] = {
    "tone": (
        "formal", "casual", "sarcastic", "cheerful", "melancholic", "enthusiastic",
        "angry", "polite", "humorous", "suspenseful", "optimistic", "dramatic",
        "apologetic", "mysterious", "romantic", "nostalgic", "urgent", "calm",
        "passive-aggressive", "whimsical",
    ),
    "genre": (
        "a poem", "a sea shanty", "a news article", "a fairy tale", "a limerick",
        "a movie script scene", "a haiku", "a diary entry", "a product review",
        "a recipe", "a horror story", "a sports commentary", "a legal notice",
        "a rap verse", "a love letter", "a weather forecast", "a motivational speech",
        "a detective story", "a song chorus", "an advertisement",
    ),
    "audience": (
        "a five-year-old", "a room of software engineers", "teenagers on social media",
        "a panel of scientists", "elderly readers", "a job interviewer",
        "a medieval peasant", "first-year university students", "a busy CEO",
        "tourists visiting the city", "a grieving friend", "a skeptical investor",
        "fans of science fiction", "a class of primary school pupils",
    ),
    "format": (
        "a bulleted list", "a tweet", "an email", "a text message",
        "a numbered list of steps", "a dialogue between two friends", "a formal letter",
        "a headline with a short summary", "a list of frequently asked questions",
        "a newspaper headline", "a short speech", "a postcard", "a to-do list",
        "a telegram",
    ),
    "length": (
        "in one sentence", "in fewer than thirty words", "in about half the length",
        "with twice as much detail", "in three short paragraphs", "in a single short line",
        "in under fifty words", "as briefly as possible",
    ),
    "persona": (
        "a pirate", "William Shakespeare", "a grumpy cat", "a medieval knight",
        "a sports commentator", "a robot", "a detective in a noir film", "a surfer",
        "a cowboy", "a Victorian butler", "an overexcited tour guide", "a wise old wizard",
        "a conspiracy theorist", "a nervous first-time speaker", "a kindergarten teacher",
        "a tired customer service agent",
    ),
}

TEMPLATES: tuple[str, ...] = (
    # one family
    "Make this text {tone}.",
    "Rewrite the text in a {tone} tone.",
    "Rephrase this so that it sounds {tone}.",
    "Turn this into {genre}.",
    "Rewrite the text as {genre}.",
    "Transform this passage into {genre}.",
    "Rewrite this for {audience}.",
    "Explain this text to {audience}.",
    "Adapt the text so that {audience} would understand it.",
    "Convert this into {format}.",
    "Reformat the text as {format}.",
    "Rewrite the text {length}.",
    "Rewrite this {length}.",
    "Retell this text {length}.",
    "Rewrite this as if it were written by {persona}.",
    "Rewrite the text in the voice of {persona}.",
    "Make it sound like {persona} is saying this.",
    # two families
    "Rewrite this text as {genre} for {audience}.",
    "Rewrite the text as {genre} with a {tone} tone.",
    "Make it {tone} and turn it into {format}.",
    "Turn this into {format} written by {persona}.",
    "Rewrite this in the voice of {persona}, {length}.",
    "Rewrite the text as {genre} told by {persona}.",
    "Turn this into {format} for {audience}.",
    "Rewrite this for {audience} in a {tone} tone.",
    "Rewrite the text as {genre}, {length}.",
    "Rewrite it as {persona} would explain it to {audience}.",
    "Make the text {tone} and rewrite it {length}.",
    "Convert this into {format} in a {tone} tone.",
)

_SLOT = re.compile(r"\{(\w+)\}")


def template_families(template: str) -> set[str]:
    """The families whose slots a template uses."""
    return set(_SLOT.findall(template))


def templates_for(families: Sequence[str] | None) -> list[str]:
    """The templates whose slots are all in ``families`` (all for None); checks the names."""
    if families is None:
        return list(TEMPLATES)
    unknown = [f for f in families if f not in FAMILIES]
    if unknown or not families:
        raise ConfigError(
            f"unknown instruction famil{'y' if len(unknown) == 1 else 'ies'} {unknown}; "
            f"choose from {', '.join(FAMILIES)}"
        )
    chosen = set(families)
    return [t for t in TEMPLATES if template_families(t) <= chosen]


def instruction_stream(
    key: str, *, seed: int = 0, families: Sequence[str] | None = None, patience: int = 200
) -> Iterator[str]:
    """Distinct built-in rewrite prompts, in an order fixed by ``seed`` and ``key``.

    Each prompt is a template, drawn uniformly, with its slots filled by values
    drawn uniformly from their families. The stream ends once ``patience`` draws in
    a row give only prompts it already yielded (the space is large, so in practice
    only for very long streams or narrow ``families``).

    Args:
        key: Any string (e.g. the original text): different keys give different orders.
        seed: The random seed.
        families: Restrict to templates whose slots are all in these families.
        patience: Draws in a row without a new prompt before the stream ends.

    Raises:
        ConfigError: if ``families`` names an unknown family.
    """
    templates = templates_for(families)
    rng = random.Random(f"{seed}\0{key}")  # str seeds hash deterministically (sha512)
    seen: set[str] = set()
    misses = 0
    while templates and misses < patience:
        template = rng.choice(templates)
        values = {name: rng.choice(FAMILIES[name]) for name in sorted(template_families(template))}
        prompt = template.format(**values)
        if prompt in seen:
            misses += 1
            continue
        misses = 0
        seen.add(prompt)
        yield prompt
