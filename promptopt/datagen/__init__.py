"""Data generation: rewrite instructions from built-in families applied by an LLM to your texts."""

from promptopt.datagen._families import FAMILIES, TEMPLATES, instruction_stream, template_families
from promptopt.datagen._generate import (
    EXAMPLES,
    DataGenSummary,
    clean_rewrite,
    drop_reason,
    generate_data,
    pair_stream,
    render_rewrite,
)
from promptopt.datagen._io import COLUMNS

__all__ = [
    "COLUMNS",
    "DataGenSummary",
    "EXAMPLES",
    "FAMILIES",
    "TEMPLATES",
    "clean_rewrite",
    "drop_reason",
    "generate_data",
    "instruction_stream",
    "pair_stream",
    "render_rewrite",
    "template_families",
]
