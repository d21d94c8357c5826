"""Iteration health, defined once.

``COUNTERS`` are additive per (run, iteration): SQL aggregates over the events in a ``seq``
range. ``RATES`` are ratios of sums of counters. From these two tables come

- the SQL macro ``health_counts(lo, hi)`` and the view ``iteration_health`` (counters and
  rates over the whole log), generated below and installed with the other views;
- :class:`Health`, the same counters as Python numbers with the same rates, which a reader
  that follows a live log (the TUI) adds up from new events only.

``mrtui status``, the run summary and the TUI all read health through one of these two forms.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .events import TIE

_R = "event_type = 'ResponseGenerated'"
_J = "event_type = 'JudgementRecorded'"
_M = "event_type = 'MetaVerdictRecorded'"

# name -> (SQL aggregate over `events`, help)
COUNTERS: dict[str, tuple[str, str]] = {
    "responses": (f"count(*) FILTER (WHERE {_R})", "responses generated"),
    "response_chars": (
        f"coalesce(sum(text_chars) FILTER (WHERE {_R}), 0)",
        "characters of all responses",
    ),
    "truncated_responses": (
        f"count(*) FILTER (WHERE {_R} AND finish_reason = 'length')",
        "responses cut at the token limit",
    ),
    "judgements": (f"count(*) FILTER (WHERE {_J})", "judgements recorded"),
    "valid_judgements": (
        f"count(*) FILTER (WHERE {_J} AND score IS NOT NULL)",
        "judgements with a valid score",
    ),
    "unparsed_judgements": (
        f"count(*) FILTER (WHERE {_J} AND score IS NULL)",
        "judgements without a valid score",
    ),
    "fallback_judgements": (
        f"count(*) FILTER (WHERE {_J} AND fallback_used)",
        "judgements whose score came from the constrained fallback",
    ),
    "score_sum": (f"coalesce(sum(score) FILTER (WHERE {_J}), 0)", "sum of valid scores"),
    **{
        f"scores_{s}": (
            f"count(*) FILTER (WHERE {_J} AND round(score) = {s})",
            f"valid scores that round to {s}",
        )
        for s in range(6)
    },
    "verdicts": (f"count(*) FILTER (WHERE {_M})", "meta-verdicts recorded"),
    "first_wins": (
        f"count(*) FILTER (WHERE {_M} AND winner = 'A')",
        "verdicts won by the judgement shown first",
    ),
    "second_wins": (
        f"count(*) FILTER (WHERE {_M} AND winner = 'B')",
        "verdicts won by the judgement shown second",
    ),
    "verdict_ties": (
        f"count(*) FILTER (WHERE {_M} AND winner IS NULL AND parse_error = '{TIE}')",
        "verdicts that name no single winner",
    ),
    "unparsed_verdicts": (
        f"count(*) FILTER (WHERE {_M} AND winner IS NULL AND parse_error IS DISTINCT FROM '{TIE}')",
        "verdicts without a winner line",
    ),
    "failures": (
        "count(*) FILTER (WHERE event_type = 'RequestFailed')",
        "failed requests (retried on resume)",
    ),
    "skipped_units": (
        "count(*) FILTER (WHERE event_type = 'UnitSkipped')",
        "units skipped for good (e.g. prompt longer than the context window)",
    ),
}

# name -> (numerator counters, denominator counters, help); value = sum(num) / sum(den)
RATES: dict[str, tuple[tuple[str, ...], tuple[str, ...], str]] = {
    "mean_response_chars": (("response_chars",), ("responses",), "mean response length"),
    "truncated_share": (
        ("truncated_responses",),
        ("responses",),
        "share of responses cut at the token limit",
    ),
    "judge_parse_failure_rate": (
        ("unparsed_judgements",),
        ("judgements",),
        "share of judgements without a valid score",
    ),
    "judge_fallback_rate": (
        ("fallback_judgements",),
        ("judgements",),
        "share of judgements scored by the fallback",
    ),
    "mean_judge_score": (("score_sum",), ("valid_judgements",), "mean valid score"),
    "share_of_fives": (
        ("scores_5",),
        ("valid_judgements",),
        "share of valid scores that are 5 (the 'always 5' collapse alarm)",
    ),
    "meta_parse_failure_rate": (
        ("unparsed_verdicts",),
        ("verdicts",),
        "share of verdicts without a winner line (ties not counted)",
    ),
    "meta_tie_rate": (("verdict_ties",), ("verdicts",), "share of verdicts that are ties"),
    "first_position_win_rate": (
        ("first_wins",),
        ("first_wins", "second_wins"),
        "share of decided verdicts won by the first-shown judgement",
    ),
}


@dataclass
class Health:
    """One iteration's counters; add the counters of newer events with :meth:`add`."""

    counts: dict[str, float] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Health:
        return cls({c: row.get(c) or 0 for c in COUNTERS})

    def add(self, other: Health) -> None:
        for c in COUNTERS:
            self.counts[c] += other.counts[c]

    def __getattr__(self, name: str) -> Any:
        counts = self.__dict__.get("counts", {})
        if name in counts:
            return counts[name]
        if name in RATES:
            return self.rate(name)
        raise AttributeError(name)

    def rate(self, name: str) -> float | None:
        num, den, _ = RATES[name]
        d = sum(self.counts[c] for c in den)
        if not d:
            return None
        return sum(self.counts[c] for c in num) / d

    def rates(self) -> dict[str, float | None]:
        return {name: self.rate(name) for name in RATES}

    @property
    def scores(self) -> list[int]:
        """Valid scores per rounded value 0..5."""
        return [int(self.counts[f"scores_{s}"]) for s in range(6)]

    def as_dict(self) -> dict[str, Any]:
        return {**self.counts, **self.rates()}


def _rate_sql(name: str) -> str:
    num, den, _ = RATES[name]
    n = " + ".join(num)
    d = " + ".join(den)
    return f"CASE WHEN ({d}) > 0 THEN ({n})::DOUBLE / ({d}) END AS {name}"


def view_sql() -> str:
    """The generated SQL of ``health_counts`` and ``iteration_health``."""
    counters = ",\n       ".join(f"{sql} AS {name}" for name, (sql, _) in COUNTERS.items())
    rates = ",\n       ".join(_rate_sql(name) for name in RATES)
    return (
        "-- Generated from store/health.py (COUNTERS and RATES); do not edit by hand.\n"
        "CREATE OR REPLACE MACRO health_counts(lo, hi) AS TABLE\n"
        f"SELECT run_id, iteration,\n       {counters}\n"
        "FROM events\n"
        "WHERE seq > lo AND seq <= hi AND iteration IS NOT NULL\n"
        "GROUP BY run_id, iteration;\n\n"
        "CREATE OR REPLACE VIEW iteration_health AS\n"
        f"SELECT *,\n       {rates}\n"
        "FROM health_counts(0, 9223372036854775807);\n"
    )


def read(con: Any, lo: int = 0, hi: int | None = None) -> dict[tuple[str, int], Health]:
    """Counters of the events with lo < seq <= hi (hi: the whole log), per (run, iteration)."""
    cur = con.execute(
        "SELECT * FROM health_counts(?, ?)", [lo, hi if hi is not None else 2**63 - 1]
    )
    cols = [d[0] for d in cur.description]
    out = {}
    for row in cur.fetchall():
        d = dict(zip(cols, row, strict=True))
        out[(d["run_id"], d["iteration"])] = Health.from_row(d)
    return out
