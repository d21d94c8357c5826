"""Read commands: ``status``, ``sql`` (read-only), ``models``, and ``migrate``."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import partial
from typing import Annotated, Any

import typer

from .app import DbOption, JsonOption, RunOption, app
from .eval_cmd import print_eval_table
from .output import calibrated, health_pct, print_alarms, print_json, print_table, tied_prompts

# Statement types `mrtui sql` runs; anything else (writes, ATTACH, COPY, INSTALL, LOAD, SET,
# transactions, ...) is refused before it reaches DuckDB. The connection is also read-only
# and has file system access turned off, so a SELECT cannot read or write files either.
_ALLOWED = {"SELECT", "EXPLAIN", "PRAGMA"}


def _fmt(v: Any) -> Any:
    return round(v, 3) if isinstance(v, float) else v


def _pct(v: Any) -> str:
    return "-" if v is None else f"{v:.0%}"


def _model_cell(backend: str, iteration: dict[str, Any]) -> str:
    return f"{iteration['model_id']} ({backend})"


def _agreement_cell(measure: str, iteration: dict[str, Any]) -> str:
    from mrtui.store.labels import format_measure

    return format_measure(measure, iteration.get("human_agreement", {}).get(measure))


@app.command()
def status(
    db: DbOption,
    run: RunOption = None,
    json: JsonOption = False,
    pairs: Annotated[
        bool,
        typer.Option("--pairs", help="Also derive the preference pairs (seconds on a large log)."),
    ] = False,
) -> None:
    """Progress and health of each run and iteration in the log.

    A health rate past its threshold (over at least 10 judgements, pairs or responses) is
    marked ALARM in the table and explained with advice under it; --json lists them as
    `alarms`. The alarms (store/health.py, ALARMS):

    \b
      judgements without a rationale > 20% (fewer than 3 words before the final line)
      meta-judge position consistency < 50% (pairs judged in both orders whose two
        verdicts name the same winner; a tie or unparsed verdict is inconsistent)
      responses cut at the token limit > 20%
      share of 5s > 50% (the 'always 5' judge collapse)

    Once the log holds human labels (`mrtui labels import`, the TUI), the judge and the
    meta-judge against them (the judge_human_agreement view): value [95% interval], n; --json
    adds them to each iteration as `human_agreement`.

    Under the table, the wall time and tokens of each role (start-up, actor, judge,
    meta-judge, training, evaluation, other) per iteration (the role_costs view); --json has
    them in each iteration's `costs`.
    """
    from mrtui.loop.report import status as load_status
    from mrtui.store import connect
    from mrtui.store.labels import MEASURES, agreement

    with connect(db) as con:
        data = load_status(con, run, pairs=pairs)
        labelled = agreement(con, run)
    if labelled:  # once the log holds human labels: the judges against them
        for r in data["runs"]:
            for i in r["iterations"]:
                i["human_agreement"] = labelled.get((r["run_id"], i["iteration"]), {})
    if json:
        print_json(data)
        return
    typer.echo(f"{db}: {data['events']} events, last at {data['last_event_at']}")
    for r in data["runs"]:
        its = r["iterations"]
        columns = ["run " + r["run_id"], *(f"iteration {i['iteration']}" for i in its)]
        lines: list[tuple[str, Callable[[dict[str, Any]], object]]] = [
            ("model", partial(_model_cell, r["backend"])),
            ("prompts", lambda i: i["prompts"]),
            ("responses", lambda i: f"{i['responses']}/{i['responses_planned']}"),
            ("judgements", lambda i: f"{i['judgements']}/{i['judgements_planned']}"),
            (
                "meta-verdicts",
                lambda i: (
                    f"{i['verdicts']}/{i['verdicts_planned']} ({i['meta_targets']} responses)"
                ),
            ),
            ("units failed, not yet redone", lambda i: i["open_failures"]),
            ("units skipped for good", lambda i: i["skipped_units"]),
            ("responses cut at the token limit", lambda i: health_pct(i, "truncated_share")),
            ("mean response chars", lambda i: _fmt(i["mean_response_chars"])),
            ("judge parse failures", lambda i: _pct(i["judge_parse_failure_rate"])),
            ("judge fallback used", lambda i: _pct(i["judge_fallback_rate"])),
            ("mean judge score", lambda i: _fmt(i["mean_judge_score"])),
            ("share of 5s", lambda i: health_pct(i, "share_of_fives")),
            ("judgements without a rationale", lambda i: health_pct(i, "no_rationale_share")),
            ("meta parse failures", lambda i: _pct(i["meta_parse_failure_rate"])),
            ("meta first-position wins", lambda i: _pct(i["first_position_win_rate"])),
            ("meta P(first shown better)", lambda i: _fmt(i["mean_p_first"])),
            (
                "meta position consistency",
                lambda i: (
                    health_pct(i, "position_consistency")
                    + (f" of {i['verdict_pairs']} pairs" if i["verdict_pairs"] else "")
                ),
            ),
            (
                "trained on actor / judge pairs",
                lambda i: (
                    "-"
                    if i["trained_actor_pairs"] is None
                    else f"{i['trained_actor_pairs']} / {i['trained_judge_pairs']}"
                ),
            ),
            ("training", lambda i: i["training"] or "-"),
            # "hf weights", or "Q4_K_M dequantisation": what the user pays for a GGUF --model
            ("trained from", lambda i: i["trained_from"] or "-"),
            ("finished", lambda i: "yes" if i["finished"] else "no"),
        ]
        if pairs:
            lines[-2:-2] = [
                ("pairs actor / judge", lambda i: f"{i['actor_pairs']} / {i['judge_pairs']}"),
                ("prompts whose scores all tie", tied_prompts),
                ("score-length correlation", lambda i: _fmt(i["score_length_corr"])),
                ("meta consistency, calibrated", calibrated),
            ]
        if labelled:
            lines[-1:-1] = [
                (title, partial(_agreement_cell, measure)) for measure, title in MEASURES.items()
            ]
        print_table(columns, [(label, *(get(i) for i in its)) for label, get in lines])
        print_alarms(r["run_id"], its)
        _print_costs(r["run_id"], its)
        print_eval_table(r["run_id"], r["evaluation"])


def _print_costs(run_id: str, its: list[dict[str, Any]]) -> None:
    """Wall time (share of the iteration) and tokens per role (view role_costs)."""
    from mrtui.loop.report import COST_ROLES, cost_cell, cost_total

    if not any(i["costs"] for i in its):
        return
    columns = ["role", *(f"iteration {i['iteration']}" for i in its)]
    lines = [
        (role.replace("_", "-"), *(cost_cell(i["costs"].get(role)) for i in its))
        for role in COST_ROLES
        if any(role in i["costs"] for i in its)
    ]
    lines.append(("total", *(cost_total(i["costs"]) for i in its)))
    print_table(columns, lines, title=f"run {run_id}: where the time went (role_costs)")


@app.command()
def sql(
    db: DbOption,
    query: Annotated[str, typer.Argument(help="SQL to run; '-' reads it from stdin.")],
    json: JsonOption = False,
    limit: Annotated[int, typer.Option(help="Most rows to print (0: all).")] = 1000,
) -> None:
    """Run read-only SQL over the event log and its views (SELECT, EXPLAIN, PRAGMA)."""
    from mrtui.store import ReadOnlyViolation, connect

    if query == "-":
        query = sys.stdin.read()
    import duckdb

    with connect(db, sandbox=True) as con:
        try:
            statements = con.extract_statements(query)
        except duckdb.Error as exc:
            from mrtui.store import StoreError

            raise StoreError(f"query failed: {exc}".splitlines()[0]) from exc
        if not statements:
            raise ReadOnlyViolation("no SQL statement given")
        for st in statements:
            kind = st.type.name
            if kind not in _ALLOWED:
                raise ReadOnlyViolation(
                    f"`mrtui sql` is read-only and refuses {kind} "
                    "statements; use SELECT (the log is append-only)"
                )
        result: Any = None
        try:
            for st in statements:
                result = con.execute(st.query)
            columns = [d[0] for d in result.description] if result.description else []
            rows = result.fetchmany(limit) if limit else result.fetchall()
        except duckdb.Error as exc:
            from mrtui.store import StoreError

            raise StoreError(f"query failed: {exc}".splitlines()[0]) from exc
    if json:
        print_json([dict(zip(columns, r, strict=True)) for r in rows])
    else:
        print_table(columns, rows)


@app.command()
def models(json: JsonOption = False) -> None:
    """Models shipped in PyPI packages and whether they are installed here."""
    from dataclasses import asdict

    from mrtui.backends.models import list_packaged_models

    items = [asdict(m) for m in list_packaged_models()]
    if json:
        print_json(items)
        return
    if not items:
        typer.echo("no packaged models")
        return
    columns = list(items[0])
    print_table(columns, [tuple(str(i[c]) for c in columns) for i in items])


@app.command()
def migrate(db: DbOption) -> None:
    """Bring a log written by an older mrtui up to this version's schema."""
    from mrtui.store import EventLog

    with EventLog(db):
        pass
    typer.echo(f"{db} is up to date")
