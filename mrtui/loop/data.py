"""Reading a prompt file: JSON Lines, one object per line with a ``prompt`` (or
``instruction``) string and an optional ``id``. Bad lines stop the load with the line number."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

from .settings import ConfigError

TEXT_FIELDS = ("prompt", "instruction", "question")


@dataclass(frozen=True)
class PromptRow:
    index: int
    text: str
    source_id: str | None


def load_prompts(path: str | Path) -> list[PromptRow]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"prompt file {path} not found; pass a JSONL file with one "
            '{"prompt": "..."} object per line'
        )
    rows: list[PromptRow] = []
    with io.StringIO(_read_utf8(path), newline=None) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(
                    f"{path} line {lineno}: not valid JSON ({exc.msg}); each line "
                    'must be an object like {"prompt": "..."}'
                ) from None
            if not isinstance(obj, dict):
                raise ConfigError(
                    f'{path} line {lineno}: expected a JSON object with a "prompt" field'
                )
            text = next((obj[f] for f in TEXT_FIELDS if isinstance(obj.get(f), str)), None)
            if text is None or not text.strip():
                raise ConfigError(
                    f"{path} line {lineno}: no non-empty string field named "
                    + " or ".join(TEXT_FIELDS)
                )
            source_id = obj.get("id")
            rows.append(PromptRow(len(rows), text, None if source_id is None else str(source_id)))
    if not rows:
        raise ConfigError(f"{path} holds no prompts")
    return rows


def _read_utf8(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start].decode("utf-8")
        lineno = before.replace("\r\n", "\n").replace("\r", "\n").count("\n") + 1
        raise ConfigError(
            f"{path} line {lineno}: not UTF-8 (byte 0x{data[exc.start]:02x} at byte offset "
            f"{exc.start}); save the file as UTF-8"
        ) from None
