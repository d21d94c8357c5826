"""Reading a prompt file: JSON Lines, one object per line with its text under one of
:data:`mrtui.jsonl.PROMPT_FIELDS` (``prompt``, ``instruction``, ...) and an optional ``id``.
Bad lines stop the load with the line number."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..jsonl import ID_FIELD, PROMPT_FIELDS, read_jsonl
from .settings import ConfigError

_EXAMPLE = '{"prompt": "..."}'


@dataclass(frozen=True)
class PromptRow:
    index: int
    text: str
    source_id: str | None


def load_prompts(path: str | Path) -> list[PromptRow]:
    path = Path(path)
    rows: list[PromptRow] = []
    for lineno, obj in read_jsonl(path, what="prompt file", example=_EXAMPLE, error=ConfigError):
        if not isinstance(obj, dict):
            raise ConfigError(f'{path} line {lineno}: expected a JSON object with a "prompt" field')
        text = next((obj[f] for f in PROMPT_FIELDS if isinstance(obj.get(f), str)), None)
        if text is None or not text.strip():
            raise ConfigError(
                f"{path} line {lineno}: no non-empty string field named "
                + " or ".join(PROMPT_FIELDS)
            )
        source_id = obj.get(ID_FIELD)
        rows.append(PromptRow(len(rows), text, None if source_id is None else str(source_id)))
    if not rows:
        raise ConfigError(f"{path} holds no prompts")
    return rows
