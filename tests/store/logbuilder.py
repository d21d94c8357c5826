"""Hand-built logs for testing the derived views: say what was generated, get the events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mrtui.store import EventLog, NewEvent

RUN = "r"
DEFAULTS = {
    "rho": 0.0,
    "max_chosen_chars": 0,
    "judge_max_chars": 0,
    "drop_same_score": False,
    "weights_scope": "response",
    "k": 3,
    "n": 3,
}


class LogBuilder:
    def __init__(self, path: Path, **settings: Any) -> None:
        self.path = path
        self.events: list[NewEvent] = [
            NewEvent(
                "IterationStarted",
                RUN,
                {"settings": DEFAULTS | settings, "model": {"model_id": "m"}},
                iteration=1,
                key="it1",
            ),
            NewEvent(
                "TemplateRegistered",
                RUN,
                {"name": "actor", "sha256": "ta", "segments": ["Q: ", "{prompt}"]},
                key="ta",
                text="Q: {prompt}",
            ),
            NewEvent(
                "TemplateRegistered",
                RUN,
                {"name": "judge", "sha256": "tj", "segments": ["{question}", " | ", "{response}"]},
                key="tj",
                text="{question} | {response}",
            ),
        ]

    def prompt(self, key: str, text: str = "question?") -> LogBuilder:
        self.events.append(NewEvent("PromptAdded", RUN, {"index": 0}, key=key, text=text))
        return self

    def response(
        self,
        prompt: str,
        key: str,
        text: str,
        scores: list[Any],
        index: int = 0,
        words: list[int | None] | None = None,
    ) -> LogBuilder:
        """``scores``: one per judgement; None is an unparseable judgement. ``words``: each
        judgement's ``rationale_words`` (None, or no list: a judgement without the count)."""
        self.events.append(
            NewEvent(
                "ResponseGenerated",
                RUN,
                {"sample_index": index, "template_sha256": "ta", "model_id": "m"},
                iteration=1,
                key=key,
                parent_key=prompt,
                text=text,
            )
        )
        for j, s in enumerate(scores):
            self.events.append(
                NewEvent(
                    "JudgementRecorded",
                    RUN,
                    {
                        "prompt_key": prompt,
                        "judge_index": j,
                        "score": s,
                        "parse_error": None if s is not None else "no 'Score: <n>' line",
                        "template_sha256": "tj",
                        "model_id": "m",
                        **({"rationale_words": words[j]} if words else {}),
                    },
                    iteration=1,
                    key=f"{key}.j{j}",
                    parent_key=key,
                    text=f"judgement {j} of {key}" + ("." * j),
                )
            )
        return self

    def verdict(
        self,
        response: str,
        first: int,
        second: int,
        winner: str | None,
        parse_error: str | None = None,
        key: str | None = None,
    ) -> LogBuilder:
        """``winner`` None with ``parse_error`` 'tie' is a tie, else an unparsed verdict."""
        a, b = f"{response}.j{first}", f"{response}.j{second}"
        payload = {"prompt_key": None, "first_key": a, "second_key": b, "winner": winner}
        if parse_error is not None:
            payload["parse_error"] = parse_error
        self.events.append(
            NewEvent(
                "MetaVerdictRecorded",
                RUN,
                payload,
                iteration=1,
                key=key or f"{response}.m{first}{second}",
                parent_key=response,
            )
        )
        return self

    def write(self) -> Path:
        with EventLog(self.path) as log:
            log.append(self.events)
        return self.path
