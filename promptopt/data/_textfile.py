"""Decoding dataset and template files into text, with errors that say where.

Files are UTF-8; a byte-order mark selects UTF-8, UTF-16 or UTF-32 instead (and is
dropped). Undecodable bytes and NUL characters (a UTF-16 file saved without its
byte-order mark, or a binary file) are errors naming the byte offset, the line and,
through the caller's locator, the data row and field.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable

from promptopt.errors import DataError

Locator = Callable[[str], tuple[int | None, str | None]]
"""Maps the text before a problem to the (1-based data row, field) it falls in."""

_BOMS = (  # UTF-32 first: its little-endian mark starts with UTF-16's
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
LINE_BREAK = re.compile(r"\r\n|\r|\n")
"""Line ends as the csv module counts them (and JSON Lines may use)."""


def clip(value: object, limit: int = 60) -> str:
    """``repr`` of a value cut to ``limit`` characters, for error messages."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 5]}...{text[-2:]}"


def line_of(prefix: str) -> int:
    """The 1-based line on which the text after ``prefix`` starts."""
    return len(LINE_BREAK.findall(prefix)) + 1


def decode_text(raw: bytes, path: str, locate: Locator | None = None) -> str:
    """Decode a file's bytes (UTF-8, or the encoding its byte-order mark names).

    Raises:
        DataError: undecodable bytes or a NUL character, naming the byte offset,
            the line and (via ``locate``) the row and field.
    """
    encoding, skip = "utf-8", 0
    for bom, name in _BOMS:
        if raw.startswith(bom):
            encoding, skip = name, len(bom)
            break
    body = raw[skip:]
    try:
        text = body.decode(encoding)
    except UnicodeDecodeError as exc:
        prefix = body[: exc.start].decode(encoding, errors="replace")
        label = "UTF-8" if encoding == "utf-8" else encoding.upper()
        raise _located(
            f"not {label} text: undecodable byte(s) at byte {skip + exc.start} "
            "(e.g. a Latin-1 or Windows-1252 file); re-save the file as UTF-8",
            path, prefix, locate,
        ) from None
    nul = text.find("\x00")
    if nul >= 0:
        prefix = text[:nul]
        offset = skip + len(prefix.encode(encoding, errors="surrogatepass"))
        raise _located(
            f"NUL character at byte {offset}: a UTF-16/UTF-32 file without a byte-order "
            "mark, or not a text file? Re-save it as UTF-8",
            path, prefix, locate,
        )
    return text


def _located(reason: str, path: str, prefix: str, locate: Locator | None) -> DataError:
    row, field = locate(prefix) if locate is not None else (None, None)
    return DataError(reason, path=path, row=row, field=field, line=line_of(prefix))
