"""Iteration health, defined once.

``COUNTERS`` are additive per (run, iteration): SQL aggregates over the events in a ``seq``
range. ``RATES`` are ratios of sums of counters. ``ALARMS`` name the rates that say a run is
going wrong, each with its threshold and what to do. From these tables come

- the SQL macro ``health_counts(lo, hi)`` and the view ``iteration_health`` (counters and
  rates over the whole log), generated below and installed with the other views;
- :class:`Health`, the same counters as Python numbers with the same rates and alarms, which a
  reader that follows a live log (the TUI) adds up from new events only.

``mrtui status``, the run summary and the TUI all read health through one of these two forms.

Most counters count events. Two count *pairs of judgements* of a meta-judged response instead
(``source="pairs"``): a pair is counted once, at the verdict that completes it, the first one
after which the pair has a verdict in both orders (m shown first, and n shown first). The
meta-judge was position-consistent on the pair when the first verdict of each order names the
same judgement; a tie or an unparsed verdict in either order is not consistent (it names no
winner to agree on). Counting at the completing verdict keeps the counters additive: the counts
of the events in ``(a, b]`` and in ``(b, c]`` add up to those of ``(a, c]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .events import SENTENCE_WORDS, TIE


class Counter(NamedTuple):
    sql: str  # an aggregate over the rows of ``source``
    help: str
    source: str = "events"  # or "pairs": the pairs of judgements completed in the range


class Alarm(NamedTuple):
    rate: str  # a name in RATES
    op: str  # ">" or "<": the alarm is on when ``rate op threshold``
    threshold: float
    label: str  # what the rate is, in a few words
    advice: str  # one line: what to look at or change

    def on(self, value: float | None) -> bool:
        if value is None:
            return False
        return value > self.threshold if self.op == ">" else value < self.threshold

    def describe(self, value: float | None = None) -> str:
        """``label 62% > 50%`` (the value only when given)."""
        shown = "" if value is None else f" {value:.0%}"
        return f"{self.label}{shown} {self.op} {self.threshold:.0%}"


_R = "event_type = 'ResponseGenerated'"
_J = "event_type = 'JudgementRecorded'"
_M = "event_type = 'MetaVerdictRecorded'"
# a pair's verdict in each order, as r: +1 first shown wins, -1 second shown wins, 0 neither
_R12, _R21 = "r_12", "r_21"

# name -> Counter(SQL aggregate, help[, source])
COUNTERS: dict[str, Counter] = {
    "responses": Counter(f"count(*) FILTER (WHERE {_R})", "responses generated"),
    "response_chars": Counter(
        f"coalesce(sum(text_chars) FILTER (WHERE {_R}), 0)",
        "characters of all responses",
    ),
    "truncated_responses": Counter(
        f"count(*) FILTER (WHERE {_R} AND finish_reason = 'length')",
        "responses cut at the token limit",
    ),
    "judgements": Counter(f"count(*) FILTER (WHERE {_J})", "judgements recorded"),
    "valid_judgements": Counter(
        f"count(*) FILTER (WHERE {_J} AND score IS NOT NULL)",
        "judgements with a valid score",
    ),
    "unparsed_judgements": Counter(
        f"count(*) FILTER (WHERE {_J} AND score IS NULL)",
        "judgements without a valid score",
    ),
    "fallback_judgements": Counter(
        f"count(*) FILTER (WHERE {_J} AND fallback_used)",
        "judgements whose score came from the constrained fallback",
    ),
    "score_sum": Counter(f"coalesce(sum(score) FILTER (WHERE {_J}), 0)", "sum of valid scores"),
    **{
        f"scores_{s}": Counter(
            f"count(*) FILTER (WHERE {_J} AND round(score) = {s})",
            f"valid scores that round to {s}",
        )
        for s in range(6)
    },
    "rationales_counted": Counter(
        f"count(*) FILTER (WHERE {_J} AND rationale_words IS NOT NULL)",
        "judgements whose rationale's words were counted (event version 2 on)",
    ),
    "judgements_without_rationale": Counter(
        f"count(*) FILTER (WHERE {_J} AND rationale_words < {SENTENCE_WORDS})",
        f"judgements whose rationale has fewer than {SENTENCE_WORDS} words",
    ),
    "verdicts": Counter(f"count(*) FILTER (WHERE {_M})", "meta-verdicts recorded"),
    "first_wins": Counter(
        f"count(*) FILTER (WHERE {_M} AND winner = 'A')",
        "verdicts won by the judgement shown first",
    ),
    "second_wins": Counter(
        f"count(*) FILTER (WHERE {_M} AND winner = 'B')",
        "verdicts won by the judgement shown second",
    ),
    "verdict_ties": Counter(
        f"count(*) FILTER (WHERE {_M} AND winner IS NULL AND parse_error = '{TIE}')",
        "verdicts that name no single winner",
    ),
    "unparsed_verdicts": Counter(
        f"count(*) FILTER (WHERE {_M} AND winner IS NULL AND parse_error IS DISTINCT FROM '{TIE}')",
        "verdicts without a winner line",
    ),
    "prob_verdicts": Counter(
        f"count(*) FILTER (WHERE {_M} AND p_first IS NOT NULL)",
        "verdicts that carry the meta-judge's probability for the first shown (expected scoring)",
    ),
    "p_first_sum": Counter(
        f"coalesce(sum(p_first) FILTER (WHERE {_M}), 0)",
        "sum of the probabilities the meta-judge gave the judgement shown first",
    ),
    "verdict_pairs": Counter(
        "count(*)",
        "pairs of judgements with a verdict in both orders",
        "pairs",
    ),
    "consistent_pairs": Counter(
        f"count(*) FILTER (WHERE {_R12} * {_R21} = -1)",
        "pairs whose two orders name the same winner",
        "pairs",
    ),
    "failures": Counter(
        "count(*) FILTER (WHERE event_type = 'RequestFailed')",
        "failed requests (retried on resume)",
    ),
    "skipped_units": Counter(
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
    "no_rationale_share": (
        ("judgements_without_rationale",),
        ("rationales_counted",),
        f"share of judgements with a rationale of fewer than {SENTENCE_WORDS} words "
        "(among those whose words were counted)",
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
    "mean_p_first": (
        ("p_first_sum",),
        ("prob_verdicts",),
        "mean probability the meta-judge gave the judgement shown first (0.5: no position "
        "preference; expected scoring only)",
    ),
    "position_consistency": (
        ("consistent_pairs",),
        ("verdict_pairs",),
        "share of judgement pairs, judged in both orders, whose two verdicts name the same "
        "winner (a tie or unparsed verdict in either order counts as inconsistent)",
    ),
}

# An alarm needs this many items under its rate (judgements, pairs, ...): a rate over the first
# few events of a live run says nothing yet.
ALARM_MIN_COUNT = 10

# name -> Alarm. The thresholds, and why:
# - no rationale > 20%: such judgements are left out of meta-judging and judge pairs (below
#   ``min_rationale_words``); past a fifth of them, the meta-judge compares noticeably fewer
#   judgements per response and the judge is drifting towards bare scores.
# - position consistency < 50%: a meta-judge that flips a fair coin for each verdict names the
#   same winner in both orders half the time, so below that it follows the position more than
#   the judgements (always "A" gives 0%), and the ω weights have little signal to correct.
# - truncated > 20%: a cut response is judged as unfinished and can still become a chosen
#   response; more than one in five means the token limit, not the answer, ends responses
#   (or lengths are running away, the Meta-Rewarding paper's length problem).
# - share of 5s > 50%: the "always 5" collapse; when most scores are 5, responses of a prompt
#   tie, score variance goes to 0 and actor pairs and meta targets dry up.
ALARMS: dict[str, Alarm] = {
    "no_rationale": Alarm(
        "no_rationale_share",
        ">",
        0.2,
        "judgements without a rationale",
        "the judge gives bare scores: try structured_judging=true or a larger "
        "judge_max_tokens, and check the judge template",
    ),
    "position_bias": Alarm(
        "position_consistency",
        "<",
        0.5,
        "meta-judge position consistency",
        "the meta-judge follows the position, not the judgements: check the meta-judge "
        "template and its parse failures and ties; judge pairs from it are weak, consider "
        "train_kinds=actor; under meta_scoring=expected the soft outcomes cancel a constant "
        "preference: read the calibrated consistency in mrtui status --pairs",
    ),
    "truncated": Alarm(
        "truncated_share",
        ">",
        0.2,
        "responses cut at the token limit",
        "raise actor_max_tokens, or curb length growth with rho / max_chosen_chars",
    ),
    "always_five": Alarm(
        "share_of_fives",
        ">",
        0.5,
        "share of 5s",
        "the judge is collapsing to 'always 5': lower max_judge_share (e.g. 0.15) or use "
        "train_kinds=actor, and check the judge template",
    ),
}


def orders_agree(winner_mn: str | None, winner_nm: str | None) -> bool:
    """Whether a pair's two verdicts name the same judgement: ``winner_mn`` with m shown first,
    ``winner_nm`` with n shown first ('A' = first shown wins, 'B' second, None tie/unparsed).
    The definition ``consistent_pairs`` counts by."""
    return {winner_mn, winner_nm} == {"A", "B"}


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

    def base(self, name: str) -> float:
        """The denominator of rate ``name``: how many items it is a share of."""
        return sum(self.counts[c] for c in RATES[name][1])

    def rate(self, name: str) -> float | None:
        d = self.base(name)
        if not d:
            return None
        return sum(self.counts[c] for c in RATES[name][0]) / d

    def rates(self) -> dict[str, float | None]:
        return {name: self.rate(name) for name in RATES}

    def alarms(self) -> list[str]:
        """The names of the alarms that are on (rate past its threshold, over at least
        ``ALARM_MIN_COUNT`` items), in ``ALARMS`` order."""
        return [
            name
            for name, a in ALARMS.items()
            if self.base(a.rate) >= ALARM_MIN_COUNT and a.on(self.rate(a.rate))
        ]

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


def _counters_sql(source: str) -> str:
    return ",\n           ".join(
        f"{c.sql} AS {name}" for name, c in COUNTERS.items() if c.source == source
    )


def view_sql() -> str:
    """The generated SQL of ``health_counts`` and ``iteration_health``.

    The pair counters need every earlier verdict of a pair, not only those in the range. From
    the start of the log (lo <= 0) that is every verdict up to ``hi``; for a later range only
    the verdicts about a judgement that a verdict in the range compares are grouped (a pair
    completed in the range has both its judgements there), so a reader adding up new events
    does not regroup the whole log. Judgement keys are unique to their response, so the two
    keys identify a pair; it is grouped by an order-free hash of them (a 64-bit xor: ~2x
    faster than grouping by the two strings, a chance collision ~1e-8 at a million pairs).
    """
    out = []
    for name, c in COUNTERS.items():
        out.append(f"c.{name}" if c.source == "events" else f"coalesce(p.{name}, 0) AS {name}")
    columns = ",\n       ".join(out)
    rates = ",\n       ".join(_rate_sql(name) for name in RATES)
    verdict = f"FROM events WHERE {_M} AND iteration IS NOT NULL AND seq <= hi"
    cols = "run_id, iteration, seq, first_key, second_key, winner"
    r = "CASE winner WHEN 'A' THEN 1 WHEN 'B' THEN -1 ELSE 0 END"
    return (
        "-- Generated from store/health.py (COUNTERS and RATES); do not edit by hand.\n"
        "CREATE OR REPLACE MACRO health_counts(lo, hi) AS TABLE\n"
        "WITH c AS (\n"
        f"    SELECT run_id, iteration,\n           {_counters_sql('events')}\n"
        "    FROM events\n"
        "    WHERE seq > lo AND seq <= hi AND iteration IS NOT NULL\n"
        "    GROUP BY run_id, iteration\n"
        "),\n"
        "verdicts AS (  -- see store/health.py: every verdict, or those about judgements in range\n"
        f"    SELECT {cols} {verdict} AND lo <= 0\n"
        "    UNION ALL\n"
        f"    SELECT {cols} {verdict} AND lo > 0\n"
        "      AND first_key IN (SELECT unnest([first_key, second_key]) FROM events\n"
        f"                        WHERE {_M} AND seq > lo AND seq <= hi)\n"
        "),\n"
        "pairs AS (  -- each pair of judgements once, with the first verdict of each order\n"
        "    SELECT run_id, iteration,\n"
        "           min(seq) FILTER (WHERE first_key < second_key) AS seq_12,\n"
        "           min(seq) FILTER (WHERE first_key > second_key) AS seq_21,\n"
        f"           arg_min({r}, seq) FILTER (WHERE first_key < second_key) AS {_R12},\n"
        f"           arg_min({r}, seq) FILTER (WHERE first_key > second_key) AS {_R21}\n"
        "    FROM verdicts\n"
        "    GROUP BY run_id, iteration, xor(hash(first_key), hash(second_key))\n"
        "),\n"
        "p AS (  -- the pairs whose completing verdict is in range\n"
        f"    SELECT run_id, iteration,\n           {_counters_sql('pairs')}\n"
        "    FROM pairs\n"
        "    WHERE seq_12 IS NOT NULL AND seq_21 IS NOT NULL\n"
        "      AND greatest(seq_12, seq_21) > lo AND greatest(seq_12, seq_21) <= hi\n"
        "    GROUP BY run_id, iteration\n"
        ")\n"
        f"SELECT c.run_id, c.iteration,\n       {columns}\n"
        "FROM c LEFT JOIN p ON p.run_id = c.run_id AND p.iteration = c.iteration;\n\n"
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
