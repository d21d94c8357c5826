"""mrtui.jsonl: the one JSON Lines reader, and the prompt fields every prompt reader takes."""

from __future__ import annotations

from pathlib import Path

import pytest

from mrtui.datasets.sources import read_file
from mrtui.jsonl import PROMPT_FIELDS, JsonlError, jsonl_lines, read_jsonl
from mrtui.loop.data import load_prompts


def test_lines_end_at_newlines_only() -> None:
    text = '\ufeff{"a": 1}\r\n\n  \r{"a": "x\u2028y\u0085z"}\n{"a": 3}'
    assert list(jsonl_lines(text, "f")) == [
        (1, {"a": 1}),
        (4, {"a": "x\u2028y\u0085z"}),
        (5, {"a": 3}),
    ]


def test_a_bad_line_names_the_file_the_line_and_a_good_line() -> None:
    with pytest.raises(JsonlError) as err:
        list(jsonl_lines('{"a": 1}\n\n{"a": \n', "p.jsonl", example='{"a": 1}'))
    assert str(err.value) == (
        "p.jsonl line 3: not valid JSON (Expecting value, column 7); each line must be one "
        'JSON object such as {"a": 1}'
    )


def test_read_names_a_missing_file_and_a_line_that_is_not_utf8(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^prompt file .*nope\.jsonl not found; pass a JSON"):
        read_jsonl(tmp_path / "nope.jsonl", what="prompt file", example="{}", error=ValueError)
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"a": 1}\r\n{"a": "caf\xe9"}\n')
    with pytest.raises(
        JsonlError, match=r"bad\.jsonl line 2: not UTF-8 \(byte 0xe9 at byte offset 20\)"
    ):
        read_jsonl(bad, what="file", example="{}")


@pytest.mark.parametrize("field", PROMPT_FIELDS)
def test_every_prompt_reader_takes_every_prompt_field(tmp_path: Path, field: str) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(f'{{"{field}": "hello", "id": 7}}\n')
    assert [(r.text, r.source_id) for r in load_prompts(path)] == [("hello", "7")]
    assert [(c.id, c.text) for c in read_file(path).candidates] == [("7", "hello")]
