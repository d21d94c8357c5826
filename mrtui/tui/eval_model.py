"""What the Evaluation screen reads from the log: a run's ``eval_results`` (formatted by
:mod:`mrtui.evaluation.report`, the one place metrics are written), the samples of one suite
and iteration, the items whose outcome changed between two iterations, and one sample's
texts. No Textual imports; thread-safe (every read opens its own short connection, like
:class:`~mrtui.tui.source.LogSource`), called from the screen's thread workers.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mrtui.evaluation.report import METRIC_KINDS, label, results, table

from .source import READ_TIMEOUT_S

JUDGED = ("alpaca_eval", "mt_bench")  # suites whose samples are per judge (eval_samples)
DETAILS_KEPT = 64


@dataclass(frozen=True)
class MetricLine:
    """One row of the results table: a suite's metric by one judge, per iteration."""

    suite: str
    metric: str
    judge: str  # judge model id, "" for rule-checked suites
    cells: dict[int, str]  # iteration -> format_metric text
    values: dict[int, tuple[float | None, float | None, float | None]]  # value, lo, hi

    @property
    def kind(self) -> str:
        return METRIC_KINDS.get(self.metric, "points")


@dataclass
class EvalData:
    """A run's evaluation: the results table and what was evaluated."""

    run_id: str | None
    seq: int  # the log's size when read
    iterations: list[int] = field(default_factory=list)  # evaluated, in order
    suites: list[str] = field(default_factory=list)
    lines: list[MetricLine] = field(default_factory=list)
    # (suite, metric, judge label) -> iteration -> its paired comparison with the evaluated
    # iteration before it (a row of mrtui.evaluation.compare.compare)
    paired: dict[tuple[str, str, str], dict[int, dict[str, Any]]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.iterations

    @property
    def columns(self) -> list[int]:
        """The iterations with results: the results table's iteration columns."""
        return sorted({i for line in self.lines for i in line.cells})


@dataclass(frozen=True)
class SampleRow:
    """One answer in the samples list (per judge for judged suites)."""

    sample_key: str
    judge_sha256: str | None
    item_id: str
    turn: int
    sample_index: int
    outcome: str
    response_chars: int | None


@dataclass(frozen=True)
class ChangedRow:
    """An item (turn, sample, judge) whose outcome differs between iterations a and b."""

    item_id: str
    turn: int
    sample_index: int
    judge: str
    a: SampleRow
    b: SampleRow


@dataclass(frozen=True)
class SampleDetail:
    """Everything the detail panes show about one sample (all model text untrusted)."""

    sample_key: str
    iteration: int
    suite: str
    item_id: str
    turn: int
    sample_index: int
    prompt: str
    response: str
    outcome: str
    response_chars: int | None
    checker: str | None
    instruction_ids: list[str] | None
    strict: list[bool | None] | None
    loose: list[bool | None] | None
    skipped: dict[str, str]
    judge_model_id: str | None
    judge_text: str | None
    win: float | None
    grade: float | None
    verdicts: int | None
    orders_disagree: bool | None
    reference: str | None


_SAMPLE = "sample_key, judge_sha256, item_id, turn, sample_index, outcome, response_chars"
_WHERE = "run_id = $run AND suite = $suite AND ($judge IS NULL OR judge_model_id = $judge)"
_DETAIL = [f.name for f in SampleDetail.__dataclass_fields__.values()]


class EvalReader:
    """Reads for the Evaluation screen; keeps the last results and recent sample details
    (valid while the log does not grow)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._data: EvalData | None = None
        self._details: OrderedDict[tuple[str, str | None], SampleDetail] = OrderedDict()

    @contextlib.contextmanager
    def _con(self) -> Iterator[Any]:
        from mrtui.store import connect

        with connect(self.path, timeout=READ_TIMEOUT_S) as con:
            yield con

    def data(self, run_id: str | None) -> EvalData:
        """The run's results table (None: the latest run's); read again only when the log
        grew."""
        with self._con() as con:
            seq = con.execute("SELECT coalesce(max(seq), 0) FROM events").fetchall()[0][0]
            if run_id is None:  # the run the overview shows first: the latest written
                latest = con.execute(
                    "SELECT run_id FROM events GROUP BY run_id ORDER BY max(seq) DESC LIMIT 1"
                ).fetchall()
                run_id = latest[0][0] if latest else None
            with self._lock:
                cached = self._data
                if cached is not None and (cached.run_id, cached.seq) == (run_id, seq):
                    return cached
            evaluated = con.execute(
                "SELECT DISTINCT iteration, suite FROM eval_generations WHERE run_id = ?",
                [run_id],
            ).fetchall()
            rows = results(con, run_id) if evaluated else []
            paired = _paired(con, run_id) if evaluated else {}
        data = EvalData(run_id, seq, sorted({it for it, _ in evaluated}), paired=paired)
        data.suites = sorted({s for _, s in evaluated})
        by_label: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        for r in rows:
            by_label.setdefault(label(r), []).append(r)
        _, lines = table(rows)  # the order and the cells `mrtui eval` prints
        its = sorted({r["iteration"] for r in rows})  # table()'s iteration columns
        for suite, metric, judge, *cells in lines:
            mine = by_label[(suite, metric, judge)]
            data.lines.append(
                MetricLine(
                    suite,
                    metric,
                    judge,
                    dict(zip(its, cells, strict=True)),
                    {r["iteration"]: (r["value"], r["lo"], r["hi"]) for r in mine},
                )
            )
        with self._lock:
            if self._data is None or self._data.seq != seq:
                self._details.clear()
            self._data = data
        return data

    def samples(
        self, run_id: str | None, suite: str, iteration: int, judge: str | None
    ) -> list[SampleRow]:
        """The suite's samples of one iteration (for one judge where the suite is judged)."""
        judge = judge if suite in JUDGED and judge else None
        with self._con() as con:
            rows = con.execute(
                f"SELECT {_SAMPLE} FROM eval_samples WHERE {_WHERE} AND iteration = $it "
                "ORDER BY item_id, turn, sample_index, seq",
                {"run": run_id, "suite": suite, "judge": judge, "it": iteration},
            ).fetchall()
        return [SampleRow(*r) for r in rows]

    def changed(
        self, run_id: str | None, suite: str, a: int, b: int, judge: str | None
    ) -> list[ChangedRow]:
        """The suite's items whose outcome differs between iterations ``a`` and ``b``: samples
        matched on item, turn, sample index and judge; a missing outcome (skipped, unparsed,
        pending) differs from any number."""
        judge = judge if suite in JUDGED and judge else None
        cols = ", ".join(f"{{t}}.{c}" for c in _SAMPLE.split(", "))
        with self._con() as con:
            rows = con.execute(
                f"""
                WITH s AS (SELECT * FROM eval_samples WHERE {_WHERE})
                SELECT x.item_id, x.turn, x.sample_index, coalesce(x.judge_model_id, ''),
                       {cols.format(t="x")}, {cols.format(t="y")}
                FROM s x JOIN s y
                  ON y.run_id = x.run_id AND y.suite = x.suite AND y.item_key = x.item_key
                 AND y.turn = x.turn AND y.sample_index = x.sample_index
                 AND y.judge_sha256 IS NOT DISTINCT FROM x.judge_sha256
                WHERE x.iteration = $a AND y.iteration = $b
                  AND x.outcome_value IS DISTINCT FROM y.outcome_value
                ORDER BY x.item_id, x.turn, x.sample_index, x.judge_model_id
                """,
                {"run": run_id, "suite": suite, "judge": judge, "a": a, "b": b},
            ).fetchall()
        n = len(_SAMPLE.split(", "))
        return [
            ChangedRow(r[0], r[1], r[2], r[3], SampleRow(*r[4 : 4 + n]), SampleRow(*r[4 + n :]))
            for r in rows
        ]

    def detail(self, sample_key: str, judge_sha256: str | None) -> SampleDetail | None:
        """One sample's texts, checks and verdicts (cached while the log does not grow)."""
        key = (sample_key, judge_sha256)
        with self._lock:
            hit = self._details.get(key)
            if hit is not None:
                self._details.move_to_end(key)
                return hit
        with self._con() as con:
            cur = con.execute(
                f"SELECT {', '.join(_DETAIL)} FROM eval_samples WHERE sample_key = ? "
                "AND judge_sha256 IS NOT DISTINCT FROM ? LIMIT 1",
                [sample_key, judge_sha256],
            )
            row = cur.fetchone()
        if row is None:
            return None
        values = dict(zip(_DETAIL, row, strict=True))
        values["skipped"] = _skipped(values["skipped"])
        values["response"] = values["response"] or ""
        values["prompt"] = values["prompt"] or ""
        detail = SampleDetail(**values)
        with self._lock:
            self._details[key] = detail
            while len(self._details) > DETAILS_KEPT:
                self._details.popitem(last=False)
        return detail


def _paired(con: Any, run_id: str | None) -> dict[tuple[str, str, str], dict[int, Any]]:
    """Each evaluated iteration against the one before it, per suite, metric and judge (keyed
    by the results table's line, :func:`~mrtui.evaluation.report.label`)."""
    from itertools import pairwise

    from mrtui.evaluation.compare import Side, compare, evaluated

    out: dict[tuple[str, str, str], dict[int, Any]] = {}
    if run_id is None:
        return out
    its = evaluated(con, run_id)
    for a, b in pairwise(its):
        for r in compare(con, Side(run_id, a), Side(run_id, b)):
            out.setdefault(label(r), {})[b] = r
    return out


def _skipped(value: Any) -> dict[str, str]:
    """The checker's skipped instructions (JSON text in the view) as id -> reason."""
    import json

    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}
