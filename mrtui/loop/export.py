"""Derived data written to files: the preference pairs each iteration trains on (beside
:func:`~mrtui.loop.training.training_pairs`, the rule that picks them), with whether a finished
training used each one, as TRL-ready JSONL or Parquet. ``mrtui export pairs`` is a thin caller;
``mrtui export eval`` writes its rows with :func:`write_rows` too."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mrtui.store import connect

from .settings import ITERATION_KEYS, ConfigError, IterationSettings
from .training import training_pairs

# The settings a pair export may re-derive with (the arguments of preference_pairs_with).
REDERIVE_KEYS = (
    "rho",
    "max_chosen_chars",
    "judge_max_chars",
    "drop_same_score",
    "weights_scope",
    "bt_prior_games",
)


def out_format(out: Path) -> str:
    """``.jsonl`` or ``.parquet``, from the file name; anything else is a usage error."""
    suffix = out.suffix.lower()
    if suffix not in (".jsonl", ".parquet"):
        raise ConfigError(f"--out must end in .jsonl or .parquet, not {suffix or 'nothing'}")
    return suffix


def write_rows(
    rows: list[dict[str, Any]],
    out: Path,
    json_columns: tuple[str, ...] = (),
    schema: Any = None,
) -> None:
    """Write ``rows`` to ``out`` (through a temporary file): JSONL, one object per row (lists
    and structs as JSON), or Parquet with pyarrow (column types from ``schema``, a pyarrow
    schema, when given; else from the values). ``json_columns`` hold JSON text: nested
    objects in JSONL, the text itself in Parquet."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    if out_format(out) == ".jsonl":
        with tmp.open("w", encoding="utf-8") as fh:
            for r in rows:
                r = {k: _json(v) if k in json_columns else v for k, v in r.items()}
                fh.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp)
    tmp.replace(out)


def _json(text: Any) -> Any:
    return json.loads(text) if isinstance(text, str) else text


def _opt(v: Any) -> str:
    return "NULL" if v is None else repr(v) if not isinstance(v, bool) else str(v).lower()


def trained_keys(con: Any, run_id: str, iteration: int) -> set[str] | None:
    """The pair keys the latest finished training of an iteration used (None: not trained)."""
    row = con.execute(
        "SELECT pair_keys FROM training_runs WHERE finished AND run_id = ? AND iteration = ? "
        "ORDER BY seq DESC LIMIT 1",
        [run_id, iteration],
    ).fetchall()
    return set(row[0][0] or []) if row else None


def pair_rows(
    con: Any,
    *,
    run: str | None,
    iteration: int | None,
    kind: str | None,
    rederive: dict[str, Any],
    all_pairs: bool,
) -> list[dict[str, Any]]:
    """The pairs each iteration (of ``run``, or every run) trains on, or every derived pair
    (``all_pairs``), of ``kind`` (None: both), each with ``trained``: whether the finished
    training used it (None: the iteration has not trained). ``rederive`` maps the keys of
    REDERIVE_KEYS to a value, or None for the one each iteration ran with."""
    source = "preference_pairs_with("
    source += ", ".join(f"{k} := {_opt(rederive.get(k))}" for k in REDERIVE_KEYS) + ")"
    # Derived once for every iteration asked for; each iteration's set is taken from it.
    con.execute(
        f"CREATE TEMP TABLE mrtui_export_pairs AS SELECT * FROM {source} "
        "WHERE (? IS NULL OR run_id = ?) AND (? IS NULL OR iteration = ?)",
        [run, run, iteration, iteration],
    )
    iterations = con.execute(
        "SELECT run_id, iteration, settings FROM iteration_settings "
        "WHERE (? IS NULL OR run_id = ?) AND (? IS NULL OR iteration = ?) "
        "ORDER BY run_id, iteration",
        [run, run, iteration, iteration],
    ).fetchall()
    rows: list[dict[str, Any]] = []
    for run_id, it, settings in iterations:
        logged = {k: v for k, v in json.loads(settings).items() if k in ITERATION_KEYS}
        s = IterationSettings.from_flat(logged, f"iteration {it} of {run_id}")
        pairs = training_pairs(con, run_id, it, s, "mrtui_export_pairs", select=not all_pairs)
        trained = trained_keys(con, run_id, it)
        for p in pairs:
            p["trained"] = None if trained is None else p["pair_key"] in trained
        rows += [p for p in pairs if kind is None or p["kind"] == kind]
    return rows


def export_pairs(
    db: Path,
    out: Path,
    *,
    run: str | None = None,
    iteration: int | None = None,
    kind: str | None = None,
    rederive: dict[str, Any] | None = None,
    conversational: bool = False,
    all_pairs: bool = False,
) -> dict[str, int]:
    """Write :func:`pair_rows` to ``out`` (.jsonl or .parquet) in TRL's standard format
    (plain strings) or its conversational one (lists of chat messages); the number of pairs
    written of each kind."""
    if kind not in (None, "actor", "judge"):
        raise ConfigError("--kind must be 'actor' or 'judge'")
    given = {k: v for k, v in (rederive or {}).items() if v is not None}
    unknown = set(given) - set(REDERIVE_KEYS)
    if unknown:
        raise ValueError(f"cannot re-derive pairs with {sorted(unknown)}")
    IterationSettings().with_flat(**given)
    out_format(out)
    with connect(db) as con:
        rows = pair_rows(
            con, run=run, iteration=iteration, kind=kind, rederive=given, all_pairs=all_pairs
        )
    if conversational:
        for r in rows:
            r["prompt"] = [{"role": "user", "content": r["prompt"]}]
            r["chosen"] = [{"role": "assistant", "content": r["chosen"]}]
            r["rejected"] = [{"role": "assistant", "content": r["rejected"]}]
    write_rows(rows, out)
    return {k: sum(1 for r in rows if r["kind"] == k) for k in ("actor", "judge")}
