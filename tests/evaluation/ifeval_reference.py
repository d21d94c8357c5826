"""IFEval's 541 shipped prompts scored on fixed responses: the verdicts, sentence counts and
word counts that a Punkt model gives (a helper module, not a conftest).

``python tests/evaluation/ifeval_reference.py OUT.json`` writes them for whatever English
Punkt model NLTK loads. With ``--nltk-only`` it keeps mrtui's offline copy out of the way
(the ``punkt`` package cannot be imported), so that NLTK's own installed data is what scores:
pointed with ``NLTK_DATA`` at NLTK's real ``punkt_tab`` this gives the reference that
``tests/evaluation/data/ifeval_punkt_reference.json`` was recorded from.
"""

from __future__ import annotations

import importlib
import json
import sys
from typing import Any

# Fixed answers: the prompt itself, the prompt in capitals (for capital-word counts), and a
# passage whose periods Punkt must tell apart (abbreviations, initials, numbers, quotes).
PASSAGE = (
    "Dr. J. R. Smith arrived at 5 p.m. on Jan. 3 with Mr. Lee of Acme Corp. in Washington, "
    'D.C. They met the U.S. envoy. "Is it done?" she asked. It was not! The report, vol. 2, '
    "cost $3.50 per copy, i.e. less than before. Prices rose 2.5% vs. last year. St. Louis "
    "and Ft. Worth agreed. THE END is near... Or is it? Yes. NASA and the U.N. said no."
)
RESPONSES = {
    "prompt": lambda prompt: prompt,
    "upper": lambda prompt: prompt.upper(),
    "passage": lambda prompt: PASSAGE,
}


def _verdicts(strict: tuple[bool | None, ...], loose: tuple[bool | None, ...]) -> str:
    """'TF' per instruction: strict then loose (T, F, or ? for a skipped one)."""
    mark = {True: "T", False: "F", None: "?"}
    return " ".join(mark[s] + mark[lo] for s, lo in zip(strict, loose, strict=True))


def score_all() -> dict[str, Any]:
    """Every shipped prompt on every fixed response: key -> response name -> counts and
    verdicts; also which Punkt model scored."""
    import nltk

    from mrtui.datasets.evalsets import load_eval_set
    from mrtui.evaluation import ifeval

    checker = ifeval._checker()  # submodules by name: a test may have reloaded the package
    util = importlib.import_module(f"{checker.__name__}.instructions_util")
    result: dict[str, Any] = {}
    for item in load_eval_set("ifeval"):
        prompt = item.record["prompt"]
        row = {}
        for name, make in RESPONSES.items():
            text = make(prompt)
            checked = ifeval.check(item.record, text, forbid_skips=False)
            row[name] = {
                "sentences": util.count_sentences(text),
                "words": len(nltk.word_tokenize(text)),
                "verdicts": _verdicts(checked.strict, checked.loose),
            }
        result[str(item.id)] = row
    return {"checker": ifeval.checker_version(), "prompts": result}


def main(argv: list[str]) -> None:
    if "--nltk-only" in argv:
        sys.modules["punkt"] = None  # type: ignore[assignment]  # import punkt now fails
    out = next(a for a in argv if not a.startswith("--"))
    scores = score_all()
    rows = (
        f"{json.dumps(k)}: {json.dumps(v, sort_keys=True)}" for k, v in scores["prompts"].items()
    )
    with open(out, "w", encoding="utf-8") as stream:  # one line per prompt, to diff
        stream.write(f'{{"checker": {json.dumps(scores["checker"])},\n"prompts": {{\n')
        stream.write(",\n".join(rows) + "}}\n")


if __name__ == "__main__":
    main(sys.argv[1:])
