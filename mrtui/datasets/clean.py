"""From a source's prompts to a prompt file: filter, dedupe, drop evaluation overlap, sample.

The steps, in order; each prompt is counted once, at the first step that drops it:

1. filtered: empty after trimming; garbled (bytes that were not UTF-8, U+FFFD replacement
   characters, or control characters other than tab, newline, vertical tab, form feed and
   carriage return, C1 included since they mark text decoded with the wrong code page);
   shorter than ``min_chars`` or longer than ``max_chars`` characters after trimming.
2. duplicates: the same text as an earlier prompt once case-folded and with every run of
   whitespace made one space (the first one is kept).
3. evaluation overlap: shares a word n-gram with an evaluation set (see ``overlap``). The
   report keeps, per set, the examples with the most shared n-grams.
4. with a limit, a uniform sample of that many of the rest (by seed), kept in source order.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .overlap import DEFAULT_N, OverlapIndex
from .sources import Candidate, SourceRead

FILTERS = ("empty", "garbled", "too_short", "too_long")
_GARBLED = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f\ufffd\ud800-\udfff]")
# Escaped in the output so that tools splitting lines on every Unicode break read it too.
_LINE_BREAKS = {0x2028: "\\u2028", 0x2029: "\\u2029"}
EXAMPLES_PER_SET = 2
EXAMPLE_CHARS = 160


@dataclass(frozen=True)
class CleanOptions:
    min_chars: int = 10
    max_chars: int = 4000
    ngram: int = DEFAULT_N
    limit: int | None = None
    seed: int = 0


@dataclass
class SetOverlap:
    prompts: int
    removed: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class CleanReport:
    source: str
    records: int
    prompts: int
    without_prompt: int
    filtered: dict[str, int]
    duplicates: int
    ngram: int | None
    eval_overlap: dict[str, SetOverlap]
    removed_for_overlap: int
    kept: int
    written: int
    notes: list[str]
    prompts_out: list[Candidate] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["prompts_out"]
        return data


def dedupe_key(text: str) -> str:
    return " ".join(text.casefold().split())


def filter_reason(text: str, options: CleanOptions) -> str | None:
    """Why a trimmed prompt is dropped (one of FILTERS), or None to keep it."""
    if not text:
        return "empty"
    if _GARBLED.search(text):
        return "garbled"
    if len(text) < options.min_chars:
        return "too_short"
    if len(text) > options.max_chars:
        return "too_long"
    return None


def clean(source: SourceRead, options: CleanOptions, index: OverlapIndex | None) -> CleanReport:
    """Run the steps over a source; ``index`` None skips the evaluation-overlap step."""
    filtered = dict.fromkeys(FILTERS, 0)
    seen: set[str] = set()
    duplicates = removed = 0
    overlap = {n: SetOverlap(index.sizes[n]) for n in index.sets} if index else {}
    kept: list[Candidate] = []
    for c in source.candidates:
        text = c.text.strip()
        reason = filter_reason(text, options)
        if reason:
            filtered[reason] += 1
            continue
        key = dedupe_key(text)
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        hits = index.hits(text) if index else []
        for hit in hits:
            entry = overlap[hit.eval_set]
            entry.removed += 1
            entry.examples.append(
                {
                    "id": c.id,
                    "prompt": text[:EXAMPLE_CHARS],
                    "eval_id": hit.eval_id,
                    "shared": hit.shared,
                    "shared_ngrams": hit.shared_grams,
                    "prompt_ngrams": hit.grams,
                }
            )
            entry.examples.sort(key=lambda e: -e["shared_ngrams"])  # stable: earlier first
            del entry.examples[EXAMPLES_PER_SET:]
        if hits:
            removed += 1
            continue
        kept.append(Candidate(c.id, text))
    out = kept
    if options.limit is not None and len(kept) > options.limit:
        chosen = random.Random(options.seed).sample(range(len(kept)), options.limit)
        out = [kept[i] for i in sorted(chosen)]
    return CleanReport(
        source=source.name,
        records=source.records,
        prompts=len(source.candidates),
        without_prompt=source.without_prompt,
        filtered=filtered,
        duplicates=duplicates,
        ngram=index.n if index else None,
        eval_overlap=overlap,
        removed_for_overlap=removed,
        kept=len(kept),
        written=len(out),
        notes=list(source.notes),
        prompts_out=out,
    )


def write_prompts(path: Path, prompts: list[Candidate]) -> None:
    """JSON Lines of {"id", "prompt"}, the format ``mrtui run --prompts`` reads; written to a
    temporary file first, so a failed write leaves no half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="\n") as fh:
        for p in prompts:
            line = json.dumps({"id": p.id, "prompt": p.text}, ensure_ascii=False)
            fh.write(line.translate(_LINE_BREAKS) + "\n")
    tmp.replace(path)
