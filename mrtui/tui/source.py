"""What the TUI reads from the log: short, paged queries. No Textual imports.

Every read opens the DuckDB file for one burst of queries and closes it again (about 15 ms when
the file stores current views), so a separate ``mrtui run`` writing the same file is never kept
out for longer than one burst; a busy file is retried by :func:`mrtui.store.connect`. One
prompt's details are read by :mod:`mrtui.tui.focus`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mrtui.store.health import Health

from .focus import BattleData, apply_battles, battle_keys, read_battles, read_focus, scope
from .model import (
    EventRow,
    IterationRow,
    JudgeSignal,
    Overview,
    PromptFocus,
    PromptRow,
    PromptStats,
    WriterInfo,
)

READ_TIMEOUT_S = 5.0


def writer_info(path: Path) -> WriterInfo | None:
    """The live writer of ``path``, if any: this process, or a process holding its lock."""
    from mrtui.store import db

    if db.written_here(path):
        return WriterInfo(os.getpid(), socket.gethostname(), "", "", in_process=True)
    lock = path.with_name(path.name + ".lock")
    try:
        info = json.loads(lock.read_text() or "{}")
        ino = lock.stat().st_ino
    except (OSError, ValueError):
        return None
    if not _lock_held(ino, info):
        return None
    return WriterInfo(
        info.get("pid"),
        str(info.get("host", "?")),
        str(info.get("command", "?")),
        str(info.get("started", "?")),
    )


def _lock_held(ino: int, info: dict[str, Any]) -> bool:
    """Whether some process holds a flock on the lock file (Linux: /proc/locks; elsewhere,
    whether the recorded pid is alive on this host)."""
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        lines = None
    if lines is not None:
        for line in lines:
            parts = line.split()
            if len(parts) >= 6 and parts[1] == "FLOCK" and parts[5].rsplit(":", 1)[-1] == str(ino):
                return True
        return False
    if info.get("host") != socket.gethostname():
        return True  # another machine: assume it is alive
    try:
        os.kill(int(info.get("pid", -1)), 0)
    except (OSError, ValueError):
        return False
    return True


class LogSource:
    """Reads for the TUI. Thread-safe: every call opens its own short connection."""

    def __init__(self, path: str | Path, run_id: str | None = None) -> None:
        self.path = Path(path)
        self.run_id = run_id
        self._health: dict[tuple[str, int], Health] = {}
        self._health_seq = 0
        self._health_lock = threading.Lock()
        self._drawn: dict[tuple[str | None, int], list[str]] = {}  # logged draws never change

    # -- connections -----------------------------------------------------------------------
    @contextlib.contextmanager
    def _con(self) -> Iterator[Any]:
        from mrtui.store import connect

        with connect(self.path, timeout=READ_TIMEOUT_S) as con:
            yield con

    def sql(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        with self._con() as con:
            return con.execute(sql, params or []).fetchall()

    # -- overview -------------------------------------------------------------------------
    def overview(self) -> Overview:
        writer = writer_info(self.path)
        with self._con() as con:
            runs = [
                r[0]
                for r in con.execute(
                    "SELECT run_id FROM events GROUP BY run_id ORDER BY max(seq) DESC"
                ).fetchall()
            ]
            run = self.run_id if self.run_id in runs else (runs[0] if runs else None)
            if self.run_id is None:
                self.run_id = run
            max_seq, last_at = con.execute(
                "SELECT coalesce(max(seq), 0), max(created_at) FROM events"
            ).fetchall()[0]
            prompts = con.execute(
                "SELECT count(*) FROM events WHERE event_type = 'PromptAdded' AND run_id = ?",
                [run],
            ).fetchall()[0][0]
            rows = self._iterations(con, run)
        return Overview(runs, run, rows, prompts, max_seq, last_at, time.time(), writer)

    def _iterations(self, con: Any, run: str | None) -> list[IterationRow]:
        by_it: dict[int, IterationRow] = {}
        for (
            it,
            model_id,
            settings,
        ) in con.execute(
            "SELECT iteration, model_id, settings FROM iteration_settings WHERE run_id = ? "
            "ORDER BY iteration",
            [run],
        ).fetchall():
            try:
                s = json.loads(settings) if settings else {}
            except ValueError:
                s = {}
            s = s if isinstance(s, dict) else {}
            by_it[it] = IterationRow(
                run or "",
                it,
                model_id or "",
                _int(s.get("k")),
                _int(s.get("n")),
                str(s.get("weights_scope") or "response"),
            )
        counts = con.execute(
            "SELECT iteration, event_type, count(*) FROM events WHERE run_id = ? "
            "AND iteration IS NOT NULL GROUP BY ALL",
            [run],
        ).fetchall()
        field = {
            "ResponseGenerated": "responses",
            "JudgementRecorded": "judgements",
            "MetaVerdictRecorded": "verdicts",
            "RequestFailed": "failures",
            "UnitSkipped": "skipped",
            "TrainingStepLogged": "steps",
        }
        for it, etype, n in counts:
            row = by_it.setdefault(it, IterationRow(run or "", it))
            if etype in field:
                setattr(row, field[etype], n)
        for it, drawn in con.execute(
            "SELECT iteration, count(*) FROM iteration_prompts WHERE run_id = ? GROUP BY ALL",
            [run],
        ).fetchall():
            if it in by_it:
                by_it[it].drawn = drawn
        for it, finished, started, origin in con.execute(
            "SELECT iteration, bool_or(finished), count(*), arg_max(base_model_origin, "
            "started_at) FROM training_runs WHERE run_id = ? GROUP BY ALL",
            [run],
        ).fetchall():
            if it in by_it:
                by_it[it].training = "done" if finished else f"started ({started}×)"
                by_it[it].trained_from = origin
        for it in {
            r[0]
            for r in con.execute(
                "SELECT trained_in_iteration FROM checkpoints WHERE run_id = ?", [run]
            ).fetchall()
        }:
            if it in by_it and by_it[it].training == "-":
                by_it[it].training = "checkpoint"
        return [by_it[i] for i in sorted(by_it)]

    # -- health (incremental) -----------------------------------------------------------------
    def health(self) -> dict[int, Health]:
        """Per-iteration health of the current run (``mrtui.store.health``, the definition
        `mrtui status` uses too); only events newer than the last call are counted, so
        refreshing a live log is cheap."""
        from mrtui.store import health as store_health

        with self._health_lock:  # one scan at a time, each event counted once
            with self._con() as con:
                top = con.execute("SELECT coalesce(max(seq), 0) FROM events").fetchall()[0][0]
                if top < self._health_seq:  # a different file now sits at this path
                    self._health, self._health_seq = {}, 0
                new = store_health.read(con, self._health_seq, top)
            for k, h in new.items():  # applied only once the whole scan went through
                self._health.setdefault(k, Health()).add(h)
            self._health_seq = top
            return {
                it: Health(dict(h.counts))
                for (run, it), h in self._health.items()
                if run == self.run_id
            }

    def recent(self, limit: int = 8) -> list[EventRow]:
        """The newest events of the current run (what just arrived in a live log)."""
        rows = self.sql(
            "SELECT seq, created_at, event_type, iteration, coalesce(key, parent_key, ''), "
            "left(coalesce(text, ''), 200) FROM events WHERE run_id = ? "
            "ORDER BY seq DESC LIMIT ?",
            [self.run_id, limit],
        )
        return [EventRow(*r) for r in rows]

    def costs(self) -> dict[int, dict[str, dict[str, Any]]]:
        """Wall time and tokens per role of each iteration of the current run (``role_costs``
        as `mrtui status` reads it, :func:`mrtui.loop.report.costs`); {} for a log whose
        stored views predate it."""
        import duckdb

        from mrtui.loop.report import costs

        with self._con() as con:
            try:
                read = costs(con, self.run_id)
            except duckdb.CatalogException:
                return {}
        return {it: roles for (_, it), roles in read.items()}

    def losses(self) -> dict[int, list[tuple[int, float]]]:
        """DPO loss per step of each iteration's latest training attempt."""
        rows = self.sql(
            "SELECT iteration, attempt, step, loss FROM training_steps WHERE run_id = ? "
            "AND loss IS NOT NULL ORDER BY iteration, seq",
            [self.run_id],
        )
        out: dict[int, list[tuple[int, float]]] = {}
        last: dict[int, str] = {}
        for it, attempt, step, loss in rows:
            if last.get(it) != attempt:
                out[it], last[it] = [], attempt
            out[it].append((step, loss))
        return out

    # -- prompt list ------------------------------------------------------------------------
    def _prompt_where(
        self, iteration: int | None, search: str, keys: list[str] | None, exclude: bool
    ) -> tuple[str, dict[str, Any]]:
        where = ["p.run_id = $run"]
        params: dict[str, Any] = {"run": self.run_id, "it": iteration}
        if search:
            where.append("(p.prompt ILIKE $q OR p.source_id ILIKE $q)")
            params["q"] = "%" + _like_escape(search) + "%"
            where[-1] = where[-1].replace("ILIKE $q", "ILIKE $q ESCAPE '\\'")
        if keys is not None:
            where.append(("NOT " if exclude else "") + "list_contains($keys, p.prompt_key)")
            params["keys"] = keys
        drawn = self.drawn_prompts(iteration) if iteration is not None else None
        if drawn is not None:  # the iteration drew its prompts from the pool: only those
            where.append("list_contains($drawn, p.prompt_key)")
            params["drawn"] = drawn
        return " AND ".join(where), params

    def drawn_prompts(self, iteration: int) -> list[str] | None:
        """The prompt keys an iteration drew from the run's pool, or None (it uses them all,
        or has not started)."""
        key = (self.run_id, iteration)
        if key not in self._drawn:
            rows = self.sql(
                "SELECT prompt_keys FROM prompt_draws WHERE run_id = ? AND iteration = ? "
                "ORDER BY seq LIMIT 1",
                [self.run_id, iteration],
            )
            if not rows:
                return None
            self._drawn[key] = list(rows[0][0] or [])
        return self._drawn[key]

    def prompt_count(
        self,
        iteration: int | None = None,
        search: str = "",
        keys: list[str] | None = None,
        exclude: bool = False,
    ) -> int:
        where, params = self._prompt_where(iteration, search, keys, exclude)
        params.pop("it")
        return self.sql(f"SELECT count(*) FROM prompts p WHERE {where}", params)[0][0]

    def prompts(
        self,
        iteration: int | None = None,
        search: str = "",
        keys: list[str] | None = None,
        exclude: bool = False,
        offset: int = 0,
        limit: int = 100,
    ) -> list[PromptRow]:
        """One page of the run's prompts in their file order, with responses per prompt."""
        where, params = self._prompt_where(iteration, search, keys, exclude)
        params.update(offset=offset, limit=limit)
        rows = self.sql(
            f"""
            WITH page AS (
                SELECT p.prompt_key AS key, p.seq, p.prompt_index AS idx,
                       coalesce(p.source_id, '') AS source_id, left(p.prompt, 400) AS preview
                FROM prompts p WHERE {where}
                ORDER BY idx, p.seq LIMIT $limit OFFSET $offset
            )
            SELECT page.key, page.idx, page.source_id, page.preview,
                   (SELECT count(*) FROM events r WHERE r.event_type = 'ResponseGenerated'
                     AND r.parent_key = page.key AND r.run_id = $run
                     AND ($it IS NULL OR r.iteration = $it)) AS n
            FROM page ORDER BY page.idx, page.seq
            """,
            params,
        )
        return [PromptRow(k, i if i is not None else -1, s, p or "", n) for k, i, s, p, n in rows]

    def prompt_index(
        self, judge_pairs: bool = True, run_id: str | None = None
    ) -> dict[tuple[str, int], PromptStats]:
        """Score range and pairs of every prompt per iteration (a whole-log pass: seconds on a
        million judgements, so the TUI computes it in the background)."""
        run = run_id or self.run_id
        out: dict[tuple[str, int], PromptStats] = {}
        with self._con() as con:
            for key, it, best, worst in con.execute(
                "SELECT prompt_key, iteration, max(mean_score), min(mean_score) "
                "FROM response_scores WHERE run_id = ? GROUP BY ALL",
                [run],
            ).fetchall():
                out[(key, it)] = PromptStats(best, worst)
            for key, it in con.execute(
                "SELECT prompt_key, iteration FROM actor_pairs WHERE run_id = ?", [run]
            ).fetchall():
                out.setdefault((key, it), PromptStats()).actor_pair = True
        if judge_pairs:
            for key, it in self.judge_pair_prompts(run):
                out.setdefault((key, it), PromptStats()).judge_pair = True
        return out

    def judge_signal(self, run_id: str | None = None) -> dict[int, JudgeSignal]:
        """Per iteration: tied prompts and the score-length correlation (the ``judge_signal``
        view, which `mrtui status --pairs` shows). Derived from every response's scores, so
        the TUI reads it in the background, with the prompt index."""
        rows = self.sql(
            "SELECT iteration, scored_prompts, tied_prompts, score_length_corr, "
            "score_per_100_chars FROM judge_signal WHERE run_id = ?",
            [run_id or self.run_id],
        )
        return {
            it: JudgeSignal(it, prompts or 0, tied or 0, _finite(corr), _finite(slope))
            for it, prompts, tied, corr, slope in rows
        }

    def judge_pair_prompts(self, run_id: str | None = None) -> list[tuple[str, int]]:
        """(prompt, iteration) of every judge pair: the slow part of the index (the Elo fit of
        every meta-judged response), so the TUI asks for it after the rest."""
        return self.sql(
            "SELECT prompt_key, iteration FROM judge_pairs WHERE run_id = ?",
            [run_id or self.run_id],
        )

    # -- one prompt -------------------------------------------------------------------------
    def text(self, key: str) -> str:
        """The full text of any event (response, judgement, verdict, prompt)."""
        rows = self.sql("SELECT text FROM events WHERE key = ? ORDER BY seq DESC LIMIT 1", [key])
        return rows[0][0] or "" if rows else ""

    def focus(
        self, prompt_key: str, on_partial: Callable[[PromptFocus], None] | None = None
    ) -> PromptFocus:
        """Everything about one prompt in every iteration, read from a scoped copy.

        With ``on_partial``, the battles are returned as :class:`BattleData` to apply later
        (``focus.pending``) and ``on_partial`` gets the rest first, so a screen can show the
        responses before ω and Elo are in."""
        t0 = time.perf_counter()
        with self._con() as con:
            scope(con, self.run_id, prompt_key)
            focus = read_focus(con, self.run_id, prompt_key)
            if on_partial is not None:
                on_partial(focus)
            data = read_battles(con, self.run_id, battle_keys(focus, "response"))
        wide = battle_keys(focus, "iteration")
        if wide:  # position wins counted over the whole iteration: read the full log
            with self._con() as con:
                more = read_battles(con, self.run_id, wide)
            for name in BattleData.FIELDS:
                getattr(data, name).extend(getattr(more, name))
        focus.read_s = time.perf_counter() - t0
        if on_partial is None:
            apply_battles(focus, data)
        else:
            focus.pending = data
        return focus


def _int(v: Any) -> int:
    """A logged count, or 0 where a hand-edited log holds something else."""
    try:
        return int(v)
    except (TypeError, ValueError):
        return 0


def _finite(v: float | None) -> float | None:
    """``v``, or None where it is not a finite number (a correlation of constant scores)."""
    return v if v is not None and math.isfinite(v) else None


def _like_escape(text: str) -> str:
    """``text`` matched literally by ILIKE ... ESCAPE '\\' (no % or _ wildcards)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
