"""The judge check before an iteration (setting ``judge_check``): is M_t's judge better than
chance on a labelled set, and what the run does when it is not.

The check (:func:`mrtui.loop.judgecheck.check_judge`) runs once per iteration, model, labels
file and judge settings; its result is a ``JudgeChecked`` event, so a resumed run reads it
back instead of checking again. The judge is *better than chance* when the lower end of the
95% interval of its pointwise accuracy is above 0.5: the run's actor pairs come from pointwise
scores. When it is not, ``judge_check_action`` says what happens: ``stop`` ends the run with
one line that says so, ``actor`` trains this iteration on actor pairs only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mrtui.backends.base import InferenceBackend
from mrtui.store import EventLog, content_key
from mrtui.store import events as ev

from .progress import Note, ProgressSink
from .settings import IterationSettings
from .stages import ModelIdentity

CHANCE = 0.5
SHIPPED = "shipped"  # the judge_check value that names the packaged labelled set


class JudgeNoBetterThanChance(Exception):
    """The judge check failed and ``judge_check_action`` is ``stop``; the message says what
    was measured and what to change."""


def _labels(name: str) -> tuple[Any, bytes]:
    from .judgecheck import LabelsError, shipped_labels

    source: Any = shipped_labels() if name == SHIPPED else Path(name)
    try:
        return source, source.read_bytes()
    except FileNotFoundError:
        raise LabelsError(
            f"judge_check: labels file {name} not found; give a JSONL file of prompt, chosen, "
            f"rejected, or {SHIPPED!r} for the packaged set"
        ) from None


def gate(
    log: EventLog,
    run_id: str,
    iteration: int,
    s: IterationSettings,
    model: ModelIdentity,
    backend: Callable[[], InferenceBackend],
    progress: ProgressSink,
) -> str:
    """Check the judge (or read the logged check) and return the action: ``continue``,
    ``actor`` (train on actor pairs only) or raise :class:`JudgeNoBetterThanChance`."""
    from .judgecheck import JUDGE_SETTINGS, check_judge, read_labels

    source, data = _labels(s.judge_check)
    labels_sha = hashlib.sha256(data).hexdigest()
    judge = {k: s.flat()[k] for k in JUDGE_SETTINGS}
    limit = s.judge_check_limit or None
    key = content_key("judge-check", run_id, iteration, model.sha256, labels_sha, judge, limit)
    logged = log.payload(key)
    if logged is not None:
        record = ev.parse(ev.JudgeChecked, logged)
    else:
        pairs = read_labels(source, limit)
        progress(Note(f"iteration {iteration}: checking the judge on {len(pairs)} labelled pairs"))
        result = check_judge(backend(), pairs, s, progress=progress, iteration=iteration)
        summary = {k: v for k, v in result.to_dict().items() if k != "pairs"}
        lo = (summary["intervals"].get("pointwise_accuracy") or [None])[0]
        better = lo is not None and lo > CHANCE
        record = ev.JudgeChecked(
            labels=s.judge_check,
            labels_sha256=labels_sha,
            model_id=model.model_id,
            model_sha256=model.sha256,
            n=result.n,
            result=summary,
            better_than_chance=better,
            action="continue" if better else s.judge_check_action,
        )
        log.append([record.event(run_id, iteration=iteration, key=key)])
    if record.action == "continue":
        return "continue"
    acc = record.result.get("pointwise_accuracy")
    lo, hi = (record.result["intervals"].get("pointwise_accuracy") or [None, None])[:2]
    measured = (
        f"pointwise accuracy {_pct(acc)} [{_pct(lo)}, {_pct(hi)}] on {record.n} labelled pairs"
    )
    if record.action == "stop":
        raise JudgeNoBetterThanChance(
            f"iteration {iteration}: the judge is no better than chance ({measured}; the "
            "JudgeChecked event is in the log); try judge_scoring=expected, or set "
            "judge_check_action=actor to train on actor pairs only"
        )
    said = f"iteration {iteration}: the judge is no better than chance ({measured})"
    progress(Note(f"{said}; training on actor pairs only", alert=True))
    return record.action


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.0f}%"
