"""Data: loading CSV/TSV/JSONL/Parquet files into examples, text decoding, splits."""

from promptopt.data._examples import (
    MAX_CELL_CHARS,
    SAMPLE_PREFERENCE,
    SAMPLE_PROMPT_RECOVERY,
    DataWarning,
    Example,
    Splits,
    load_examples,
    read_rows,
    sample_path,
    split_examples,
    warn_formula_like,
)
from promptopt.data._textfile import clip, decode_text

__all__ = [
    "DataWarning",
    "Example",
    "MAX_CELL_CHARS",
    "SAMPLE_PREFERENCE",
    "SAMPLE_PROMPT_RECOVERY",
    "Splits",
    "clip",
    "decode_text",
    "load_examples",
    "read_rows",
    "sample_path",
    "split_examples",
    "warn_formula_like",
]
