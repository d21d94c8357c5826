"""What ``c`` copies and ``e`` exports: one response, judgement or verdict as a plain dict, and
the JSON file an export writes. No Textual imports; every screen that shows items uses these."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .model import Battle, JudgementInfo, ResponseInfo, Verdict


def judgement_item(j: JudgementInfo) -> dict[str, Any]:
    return {
        "kind": "judgement",
        "key": j.key,
        "response_key": j.response_key,
        "judge_index": j.judge_index,
        "score": j.score,
        "elo": j.elo,
        "parse_error": j.parse_error,
        "fallback_used": j.fallback_used,
        "scoring": j.scoring,
        "sampled_score": j.sampled_score,
        "choice_probs": j.choice_probs,
        "choice_mass": j.choice_mass,
        "text": j.text,
    }


def response_item(r: ResponseInfo) -> dict[str, Any]:
    return {
        "kind": "response",
        "key": r.key,
        "iteration": r.iteration,
        "sample_index": r.sample_index,
        "mean_score": r.mean,
        "score_variance": r.variance,
        "role": r.role,
        "text": r.text,
        "judgements": [judgement_item(j) for j in r.judgements],
    }


def verdict_item(b: Battle, v: Verdict) -> dict[str, Any]:
    return {
        "kind": "meta_verdict",
        "key": v.key,
        "response_key": b.response_key,
        "first_key": v.first_key,
        "second_key": v.second_key,
        "winner": v.winner,
        "parse_error": v.parse_error,
        "p_first": v.p_first,
        "soft_outcome": b.outcomes.get((v.first_key, v.second_key)),
        "text": v.text,
    }


def write_item(export_dir: Path, item: dict[str, Any]) -> Path:
    """Write ``item`` as JSON under ``export_dir`` (created if missing); returns the file.
    Raises ``OSError`` when the folder or the file cannot be written."""
    key = str(item.get("key") or item.get("prompt_key") or "item")
    name = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in key)
    export_dir.mkdir(parents=True, exist_ok=True)
    path = export_dir / f"{item.get('kind', 'item')}-{name}.json"
    path.write_text(json.dumps(item, indent=2, ensure_ascii=False, default=str) + "\n")
    return path
