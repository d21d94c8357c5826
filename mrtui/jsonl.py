"""JSON Lines: the one reader of the files mrtui takes an object a line from (prompt files,
human labels, labelled preference pairs, prompt sources and the packaged evaluation sets), and
the fields a prompt record keeps its text and id under.

Standard library only and part of no layer, so the store, the data sets and the loop all
import it. Each reader passes its own error class; every message names the file and the line,
and says what a line should hold.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any, Protocol

# The fields of a prompt record that may hold its text, in the order they are looked for,
# and the one that holds the prompt's id in its source.
PROMPT_FIELDS = ("prompt", "instruction", "text", "question")
ID_FIELD = "id"

# Lines end at \n, \r\n or \r only: str.splitlines also splits at U+2028, U+0085 and others,
# which a JSON string may hold as plain text.
_NEWLINE = re.compile(r"\r\n|\r|\n")

MakeError = Callable[[str], Exception]


class JsonlError(ValueError):
    """A JSON Lines file cannot be read: the message names the file and line and the fix."""


class Readable(Protocol):
    """A file to read: a ``Path``, or a ``Traversable`` of packaged data."""

    def read_bytes(self) -> bytes: ...


def read_jsonl(
    source: Readable, *, what: str, example: str, error: MakeError = JsonlError
) -> list[tuple[int, Any]]:
    """(line number, value) of each non-blank line of the UTF-8 file ``source``. ``what``
    names the file in messages ("prompt file"); ``example`` is one good line."""
    name = str(source)
    try:
        data = source.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        raise error(
            f"{what} {name} not found; pass a JSON Lines file with one object a line, such as "
            f"{example}"
        ) from None
    except OSError as exc:
        raise error(f"cannot read {what} {name}: {exc.strerror or exc}") from None
    return list(jsonl_lines(decode_utf8(data, name, error), name, example=example, error=error))


def decode_utf8(data: bytes, origin: str, error: MakeError = JsonlError) -> str:
    """``data`` as text; bytes that are not UTF-8 are an error naming their line and offset."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start].decode("utf-8")
        lineno = len(_NEWLINE.findall(before)) + 1
        raise error(
            f"{origin} line {lineno}: not UTF-8 (byte 0x{data[exc.start]:02x} at byte offset "
            f"{exc.start}); save the file as UTF-8"
        ) from None


def jsonl_lines(
    text: str, origin: str, *, example: str | None = None, error: MakeError = JsonlError
) -> Iterator[tuple[int, Any]]:
    """(line number, value) of each non-blank line of ``text``, read from ``origin``; a line
    that is not JSON raises ``error``, naming the line and, with ``example``, a good one."""
    for lineno, line in enumerate(_NEWLINE.split(text.removeprefix("\ufeff")), 1):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as exc:
            fix = f" such as {example}" if example else ""
            raise error(
                f"{origin} line {lineno}: not valid JSON ({exc.msg}, column {exc.colno}); "
                f"each line must be one JSON object{fix}"
            ) from None
