"""Reading a prompt file: JSON Lines, one object per line with a ``prompt`` (or
``instruction``) string and an optional ``id``. Bad lines stop the load with the line number."""

from __future__ import annotations

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
    with path.open(encoding="utf-8") as fh:
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
