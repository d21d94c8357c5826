"""Human labels: a person's verdict on a response, a judgement or a meta-verdict, in the log.

A label is a ``HumanLabelRecorded`` event whose ``parent_key`` is the labelled unit's key; a
later label of the same unit supersedes an earlier one and nothing is rewritten (the
``human_labels`` view keeps the latest, ``judge_human_agreement`` sets them against the judge
and the meta-judge). The labels each kind of unit takes:

* a response: a score ``0``..``5`` (the judge's scale) or ``good`` / ``bad``;
* a judgement: ``agree`` / ``disagree`` (with its score and reasoning);
* a meta-verdict: ``A`` (the judgement shown first, ``first_key``, is the better one) or ``B``
  (the one shown second).

Labels travel as JSONL, one ``{"key", "label", "author", "note"}`` a line (``mrtui labels
import`` / ``export``); a score label is a JSON number there and a string in the log.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..jsonl import read_jsonl
from .errors import StoreError
from .events import HumanLabelRecorded, NewEvent

SCORES = ("0", "1", "2", "3", "4", "5")
# labelled kind -> the labels it takes
ALLOWED: dict[str, tuple[str, ...]] = {
    "response": (*SCORES, "good", "bad"),
    "judgement": ("agree", "disagree"),
    "verdict": ("A", "B"),
}
# the event that completes each kind of unit
UNIT_EVENTS: dict[str, str] = {
    "ResponseGenerated": "response",
    "JudgementRecorded": "judgement",
    "MetaVerdictRecorded": "verdict",
}


class LabelError(StoreError):
    """A label that names no labellable unit, or a label that unit does not take."""

    title = "bad label"


@dataclass(frozen=True)
class Label:
    """One person's label of the unit ``key``. ``author`` None: :func:`default_author`.
    ``origin`` says where the label came from ("labels.jsonl line 3") for error messages."""

    key: str
    label: str | int
    author: str | None = None
    note: str | None = None
    origin: str | None = field(default=None, compare=False)


def default_author() -> str:
    """Who labels: ``$MRTUI_AUTHOR``, else the login name."""
    env = os.environ.get("MRTUI_AUTHOR", "").strip()
    if env:
        return env
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "unknown"


def normalise(label: str | int) -> str:
    """A label as the log stores it: scores as '0'..'5', words in their canonical case."""
    text = str(label).strip()
    if text.upper() in ("A", "B"):
        return text.upper()
    return text.lower()


def _where(lab: Label) -> str:
    return f"{lab.origin}: " if lab.origin else ""


def _check(lab: Label, kind: str) -> str:
    value = normalise(lab.label)
    if value not in ALLOWED[kind]:
        raise LabelError(
            f"{_where(lab)}{lab.label!r} is not a label for the {kind} {lab.key}; "
            f"a {kind} takes {', '.join(ALLOWED[kind])}"
        )
    return value


def resolve(con: Any, labels: Sequence[Label]) -> list[NewEvent]:
    """The events recording ``labels`` (in order), read against the log on ``con``; raises
    :class:`LabelError` at the first key the log has no response, judgement or meta-verdict
    for, or label its unit does not take."""
    keys = sorted({lab.key for lab in labels})
    units = {
        key: (event_type, run_id, iteration)
        for key, event_type, run_id, iteration in con.execute(
            "SELECT key, event_type, run_id, iteration FROM events "
            "WHERE key IN (SELECT unnest(?::VARCHAR[])) AND event_type IN "
            "('ResponseGenerated', 'JudgementRecorded', 'MetaVerdictRecorded')",
            [keys],
        ).fetchall()
    }
    out = []
    for lab in labels:
        if not isinstance(lab.key, str) or lab.key not in units:
            raise LabelError(
                f"{_where(lab)}{lab.key!r} names no response, judgement or meta-verdict in the "
                "log; use a response_key, judgement_key or verdict_key as the views show them"
            )
        event_type, run_id, iteration = units[lab.key]
        kind = UNIT_EVENTS[event_type]
        value = _check(lab, kind)
        author = lab.author if lab.author is not None else default_author()
        record = HumanLabelRecorded(target=kind, label=value, author=author, note=lab.note)
        out.append(record.event(run_id, iteration=iteration, parent_key=lab.key, text=lab.note))
    return out


def record_labels(db_path: str | Path, labels: Sequence[Label], *, log: Any = None) -> int:
    """Append ``labels`` to the log at ``db_path``; returns how many were recorded.

    Every label is checked first and nothing is appended unless all are valid
    (:class:`LabelError` otherwise). Then the writer is taken, the labels appended and the
    writer closed; a log another process is writing raises :class:`~.errors.WriterLocked`.
    ``log``: an :class:`~.log.EventLog` this process already holds on ``db_path`` (a TUI that
    drives a run), appended to and left open."""
    from .db import connect, written_here
    from .errors import WriterLocked
    from .log import EventLog

    if not labels:
        return 0
    if log is None and written_here(Path(db_path)):
        raise WriterLocked(
            f"{db_path} is being written by this process; pass its EventLog as record_labels(..., "
            "log=...)"
        )
    if log is not None:
        with log.reader(views=False) as con:
            events = resolve(con, labels)
        log.append(events)
        log.flush()
        return len(events)
    with connect(db_path) as con:
        events = resolve(con, labels)
    with EventLog(db_path) as writer:
        writer.append(events)
    return len(events)


_EXAMPLE = '{"key": "...", "label": 4, "author": null, "note": null}'


def read_labels_jsonl(path: str | Path) -> list[Label]:
    """The labels of a JSONL file, one ``{"key", "label", "author", "note"}`` object a line
    (blank lines skipped; other fields ignored). Errors name the line."""
    path = Path(path)
    out = []
    for n, obj in read_jsonl(path, what="label file", example=_EXAMPLE, error=LabelError):
        where = f"{path} line {n}"
        if not isinstance(obj, dict):
            raise LabelError(f"{where}: expected a JSON object with key and label")
        key, label = obj.get("key"), obj.get("label")
        if not isinstance(key, str) or not key:
            raise LabelError(f'{where}: "key" must be a unit key (a non-empty string)')
        if isinstance(label, bool) or not isinstance(label, (str, int, float)):
            raise LabelError(
                f'{where}: "label" must be 0-5, "good", "bad", "agree", "disagree", "A" or "B"'
            )
        for name in ("author", "note"):
            if obj.get(name) is not None and not isinstance(obj[name], str):
                raise LabelError(f'{where}: "{name}" must be a string or null')
        if isinstance(label, float):  # 3.0 is the score 3; 3.5 is no label
            label = int(label) if label.is_integer() else str(label)
        out.append(Label(key, label, obj.get("author"), obj.get("note"), origin=where))
    return out


def label_rows(con: Any, run_id: str | None = None) -> list[dict[str, Any]]:
    """The current label of each labelled unit (of one run, or all), in the order they were
    made, as JSONL records: ``{"key", "label", "author", "note"}`` with score labels as
    numbers."""
    rows = con.execute(
        "SELECT target_key, label, human_score, author, note FROM human_labels "
        "WHERE ? IS NULL OR run_id = ? ORDER BY seq",
        [run_id, run_id],
    ).fetchall()
    return [
        {
            "key": key,
            "label": label if score is None else int(score),
            "author": author,
            "note": note,
        }
        for key, label, score, author, note in rows
    ]


# The measures of ``judge_human_agreement``, in the order front ends show them, with a title.
MEASURES: dict[str, str] = {
    "judge_pairwise_accuracy": "judge vs human, pairwise accuracy",
    "judge_rank_correlation": "judge vs human, rank correlation",
    "judgement_agreement": "judgements the human agrees with",
    "meta_judge_agreement": "meta-judge vs human",
}


def agreement(con: Any, run_id: str | None = None) -> dict[tuple[str, int], dict[str, Any]]:
    """``judge_human_agreement`` by (run_id, iteration): measure -> {"n", "value", "lo",
    "hi"}. Empty when the log holds no labels."""
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for run, iteration, measure, n, value, lo, hi in con.execute(
        "SELECT run_id, iteration, measure, n, value, lo, hi FROM judge_human_agreement "
        "WHERE ? IS NULL OR run_id = ?",
        [run_id, run_id],
    ).fetchall():
        out.setdefault((run, iteration), {})[measure] = {
            "n": n,
            "value": value,
            "lo": lo,
            "hi": hi,
        }
    return out


def format_measure(measure: str, m: dict[str, Any] | None) -> str:
    """One measure as "value [lo, hi], n=N" (shares in percent), or "-"."""
    if m is None:
        return "-"

    def fmt(v: float | None) -> str:
        if v is None:
            return "?"
        return f"{v:+.2f}" if measure == "judge_rank_correlation" else f"{v:.0%}"

    interval = "" if m["lo"] is None else f" [{fmt(m['lo'])}, {fmt(m['hi'])}]"
    return f"{fmt(m['value'])}{interval}, n={m['n']}"
