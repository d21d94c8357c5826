"""The page: tables and charts rendered here with every text escaped, the battle browser's
data embedded as inert JSON for the page's own script (``assets/report.js``), which sets model
text with ``textContent`` only.

The page loads nothing: its CSS and JS are inlined from ``assets/`` and a Content Security
Policy allows exactly those two blocks (by hash) and no network at all, so even text that
slipped through as markup could neither run nor fetch anything.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import hashlib
import json
import math
from collections.abc import Callable, Iterable, Sequence
from html import escape
from importlib import resources
from typing import Any

from . import svg
from .data import ReportData, RunData

# JSON inside <script type="application/json">: nothing in it may close the element or open a
# comment, and U+2028/2029 are escaped for any consumer that reads it as JavaScript.
_JSON_ESCAPES = {
    ord("<"): "\\u003c",
    ord(">"): "\\u003e",
    ord("&"): "\\u0026",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


def _plain(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return _plain(float(value))
    return value


def embed_json(value: Any) -> str:
    """``value`` as JSON text that is safe inside a ``<script type="application/json">``."""
    text = json.dumps(_plain(value), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.translate(_JSON_ESCAPES)


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath("assets", name).read_text(encoding="utf-8")


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def e(value: Any) -> str:
    """Any value as HTML text (None as '-')."""
    return "-" if value is None else escape(str(value), quote=True)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.0%}"


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    return str(round(v, 3)) if isinstance(v, float) else str(v)


def table(
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    cls: str = "",
    attrs: Callable[[int, int], str] | None = None,
    caption: str | None = None,
) -> str:
    """An escaped table; ``attrs(row, column)`` adds attributes (already escaped) to a cell."""
    out = [f'<table class="{e(cls)}">']
    if caption:
        out.append(f"<caption>{e(caption)}</caption>")
    out.append("<thead><tr>" + "".join(f"<th>{e(c)}</th>" for c in columns) + "</tr></thead>")
    out.append("<tbody>")
    for i, row in enumerate(rows):
        cells = "".join(
            f"<td{(' ' + attrs(i, j)) if attrs and attrs(i, j) else ''}>{e(v)}</td>"
            for j, v in enumerate(row)
        )
        out.append(f"<tr>{cells}</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


# -- health: the lines of `mrtui status`, with its formatting helpers --------------------------
def _health_lines(backend: str | None) -> list[tuple[str, str, Callable[[dict[str, Any]], object]]]:
    """(label, the status field it shows, its cell) per line of the ``mrtui status`` table."""
    from mrtui.cli.output import health_pct

    return [
        ("model", "model_id", lambda i: f"{i['model_id']} ({backend})"),
        ("prompts", "prompts", lambda i: i["prompts"]),
        ("responses", "responses", lambda i: f"{i['responses']}/{i['responses_planned']}"),
        ("judgements", "judgements", lambda i: f"{i['judgements']}/{i['judgements_planned']}"),
        (
            "meta-verdicts",
            "verdicts",
            lambda i: f"{i['verdicts']}/{i['verdicts_planned']} ({i['meta_targets']} responses)",
        ),
        ("units failed, not yet redone", "open_failures", lambda i: i["open_failures"]),
        ("units skipped for good", "skipped_units", lambda i: i["skipped_units"]),
        (
            "responses cut at the token limit",
            "truncated_share",
            lambda i: health_pct(i, "truncated_share"),
        ),
        ("mean response chars", "mean_response_chars", lambda i: _fmt(i["mean_response_chars"])),
        (
            "judge parse failures",
            "judge_parse_failure_rate",
            lambda i: _pct(i["judge_parse_failure_rate"]),
        ),
        ("judge fallback used", "judge_fallback_rate", lambda i: _pct(i["judge_fallback_rate"])),
        ("mean judge score", "mean_judge_score", lambda i: _fmt(i["mean_judge_score"])),
        ("share of 5s", "share_of_fives", lambda i: health_pct(i, "share_of_fives")),
        (
            "judgements without a rationale",
            "no_rationale_share",
            lambda i: health_pct(i, "no_rationale_share"),
        ),
        (
            "meta parse failures",
            "meta_parse_failure_rate",
            lambda i: _pct(i["meta_parse_failure_rate"]),
        ),
        (
            "meta first-position wins",
            "first_position_win_rate",
            lambda i: _pct(i["first_position_win_rate"]),
        ),
        ("meta P(first shown better)", "mean_p_first", lambda i: _fmt(i["mean_p_first"])),
        (
            "meta position consistency",
            "position_consistency",
            lambda i: (
                health_pct(i, "position_consistency")
                + (f" of {i['verdict_pairs']} pairs" if i["verdict_pairs"] else "")
            ),
        ),
        (
            "trained on actor / judge pairs",
            "trained_actor_pairs",
            lambda i: (
                "-"
                if i["trained_actor_pairs"] is None
                else f"{i['trained_actor_pairs']} / {i['trained_judge_pairs']}"
            ),
        ),
        ("training", "training", lambda i: i["training"] or "-"),
        ("trained from", "trained_from", lambda i: i["trained_from"] or "-"),
        ("finished", "finished", lambda i: "yes" if i["finished"] else "no"),
    ]


def health_section(run: RunData) -> str:
    its = run.iterations
    if not its:
        return "<p>No iteration has started in this run.</p>"
    lines = _health_lines(run.backend)
    rows = [(label, *(get(i) for i in its)) for label, _, get in lines]

    def attrs(r: int, c: int) -> str:
        if c == 0:
            return 'class="label"'
        i = its[c - 1]
        alarm = any(a["rate"] == lines[r][1] for a in i.get("alarms") or ())
        return (
            f'data-run="{e(run.run_id)}" data-iteration="{i["iteration"]}" '
            f'data-field="{e(lines[r][1])}"' + (' class="alarm"' if alarm else "")
        )

    columns = ["run " + run.run_id, *(f"iteration {i['iteration']}" for i in its)]
    out = [table(columns, rows, cls="health", attrs=attrs)]
    alarms = [(i["iteration"], a) for i in its for a in i.get("alarms") or ()]
    if alarms:
        out.append('<ul class="alarms">')
        for it, a in alarms:
            out.append(
                f'<li data-alarm="{e(a["name"])}" data-iteration="{it}"><strong>ALARM iteration '
                f"{it}</strong>: {e(a['message'])}; {e(a['advice'])}</li>"
            )
        out.append("</ul>")
    else:
        out.append('<p class="ok">No alarm is on.</p>')
    return "\n".join(out)


# -- overview plots: the TUI overview's six series --------------------------------------------
def plots_section(run: RunData) -> str:
    h = run.health
    its = sorted(h)
    labels = [f"it{i}" for i in its]

    def pct(values: Iterable[float | None]) -> list[float | None]:
        return [None if v is None else round(100 * v, 1) for v in values]

    charts = [
        svg.bars(
            "judge scores 0-5",
            [str(s) for s in range(6)],
            [(f"it{i}", h[i].scores) for i in its],
        ),
        svg.bars(
            "mean response chars",
            labels,
            [("chars", [h[i].mean_response_chars for i in its])],
        ),
        svg.bars(
            "parse fail % judge/meta",
            labels,
            [
                ("judge", pct(h[i].judge_parse_failure_rate for i in its)),
                ("meta", pct(h[i].meta_parse_failure_rate for i in its)),
            ],
            ymax=100,
            unit="%",
        ),
        svg.bars(
            "1st-position wins %",
            labels,
            [("first wins", pct(h[i].first_position_win_rate for i in its))],
            ymax=100,
            unit="%",
        ),
        svg.bars(
            "share of 5s % (collapse)",
            labels,
            [("5s", pct(h[i].share_of_fives for i in its))],
            ymax=100,
            unit="%",
        ),
        svg.lines(
            "DPO loss per step",
            [
                (f"it{i}", [(float(s), float(v)) for s, v in pts])
                for i, pts in sorted(run.losses.items())
                if pts
            ],
        ),
    ]
    return '<div class="plots">' + "".join(f"<figure>{c}</figure>" for c in charts) + "</div>"


# -- evaluation -------------------------------------------------------------------------------
def evaluation_section(run: RunData) -> str:
    from mrtui.evaluation.report import caveats
    from mrtui.evaluation.report import table as eval_table

    if not run.evaluation:
        return (
            f"<p>No evaluation results in this run (<code>mrtui eval --db LOG --run "
            f"{e(run.run_id)} --suite ...</code> makes them).</p>"
        )
    columns, lines = eval_table(run.evaluation)
    its = sorted({r["iteration"] for r in run.evaluation})

    def attrs(r: int, c: int) -> str:
        if c < 3:
            return 'class="label"'
        suite, metric, _ = lines[r][:3]
        return (
            f'data-run="{e(run.run_id)}" data-suite="{e(suite)}" data-metric="{e(metric)}" '
            f'data-iteration="{its[c - 3]}"'
        )

    out = [table(columns, lines, cls="eval", attrs=attrs, caption="95% bootstrap intervals")]
    out += [f'<p class="note">note: {e(n)}</p>' for n in caveats(run.evaluation)]
    out += [_paired_table(a, b, rows) for a, b, rows in run.paired if rows]
    if run.paired:
        out.append(
            '<p class="note">Differences of rates in points; p: McNemar\'s exact test for '
            "pass/fail metrics, a paired sign-flip test otherwise; MDE: the smallest difference "
            "found 80% of the time at alpha 0.05 with these n.</p>"
        )
    return "\n".join(out)


def _paired_table(a: int, b: int, rows: list[dict[str, Any]]) -> str:
    """Iteration ``b`` against ``a``: the columns of ``mrtui eval compare``."""
    from mrtui.evaluation.compare import p_text, signed
    from mrtui.evaluation.report import format_metric, label

    def value(r: dict[str, Any], side: str) -> str:
        if r[side] is None:
            return "-"
        return format_metric({"metric": r["metric"], "value": r[side], "n": r["n"]}).rsplit(
            " n=", 1
        )[0]

    body = [
        (
            *label(r),
            value(r, "a"),
            value(r, "b"),
            f"{signed(r['difference'], r['metric'])} "
            f"[{signed(r['lo'], r['metric'])}, {signed(r['hi'], r['metric'])}]",
            p_text(r["p_value"]),
            "-" if r["mde"] is None else signed(r["mde"], r["metric"]).lstrip("+"),
            r["n"],
            r["verdict"],
        )
        for r in rows
    ]

    def attrs(i: int, c: int) -> str:
        return (
            f'data-paired="{a}-{b}" data-suite="{e(rows[i]["suite"])}" '
            f'data-metric="{e(rows[i]["metric"])}" data-col="{c}"'
        )

    return table(
        ["suite", "metric", "judge", f"A = it{a}", f"B = it{b}", "B - A [95%]", "p", "MDE",
         "n paired", "verdict"],
        body,
        cls="paired",
        attrs=attrs,
        caption=f"paired: iteration {b} against iteration {a} (mrtui eval compare)",
    )  # fmt: skip


# -- human labels and costs -------------------------------------------------------------------
def labels_section(run: RunData) -> str:
    from mrtui.store.labels import MEASURES, format_measure

    if not run.labels:
        return (
            '<p class="missing">no labels in this run (<code>mrtui labels import --db LOG '
            "FILE</code>, or a key in the TUI, records them).</p>"
        )
    out = []
    its = sorted(run.agreement)
    if its:
        rows = [
            (title, *(format_measure(m, run.agreement[i].get(m)) for i in its))
            for m, title in MEASURES.items()
        ]
        measures = list(MEASURES)

        def attrs(r: int, c: int) -> str:
            if c == 0:
                return 'class="label"'
            return (
                f'data-run="{e(run.run_id)}" data-iteration="{its[c - 1]}" '
                f'data-measure="{e(measures[r])}"'
            )

        out.append(
            table(
                ["judges against the human labels", *(f"iteration {i}" for i in its)],
                rows,
                cls="agreement",
                attrs=attrs,
                caption="value [95% interval], n (judge_human_agreement)",
            )
        )
    cols = ["iteration", "target", "key", "label", "author", "note", "revisions"]
    rows = [
        (x["iteration"], x["target"], x["target_key"], x["label"], x["author"], x["note"],
         x["revisions"])
        for x in run.labels
    ]  # fmt: skip
    keys = [x["target_key"] for x in run.labels]

    def key_attrs(r: int, c: int) -> str:
        # the page's script makes a key a link to its battle row
        return f'data-label-key="{e(keys[r])}"' if c == 2 else ""

    out.append(
        table(cols, rows, cls="labels", attrs=key_attrs, caption=f"{len(rows)} labelled items")
    )
    return "\n".join(out)


COST_COLUMNS = ("units", "prompt tokens", "completion tokens", "wall s", "share")


def costs_section(run: RunData) -> str:
    """Each iteration's ``role_costs`` (the status rows' ``costs``), roles in run order, with
    the total wall time, and a chart of the wall time per role."""
    from mrtui.loop.report import COST_ROLES

    its = [i for i in run.iterations if i.get("costs")]
    if not its:
        return '<p class="missing">no cost data in this run.</p>'
    roles = [r for r in COST_ROLES if any(r in i["costs"] for i in its)]
    rows: list[tuple[Any, ...]] = []
    keys: list[tuple[int, str]] = []
    for i in its:
        for role in roles:
            c = i["costs"].get(role)
            if c is None:
                continue
            rows.append(
                (
                    i["iteration"],
                    role,
                    c["units"],
                    c["prompt_tokens"],
                    c["completion_tokens"],
                    "-" if c["wall_s"] is None else f"{c['wall_s']:.1f}",
                    _pct(c["share"]),
                )
            )
            keys.append((i["iteration"], role))
        total = sum(c["wall_s"] or 0 for c in i["costs"].values())
        rows.append((i["iteration"], "total", "", "", "", f"{total:.1f}", ""))
        keys.append((i["iteration"], "total"))

    def attrs(r: int, col: int) -> str:
        it, role = keys[r]
        return (
            f'data-run="{e(run.run_id)}" data-iteration="{it}" data-role="{e(role)}" '
            f'data-col="{col}"' + (' class="label"' if role == "total" else "")
        )

    chart = svg.bars(
        "wall time per role (s)",
        [f"it{i['iteration']}" for i in its],
        [(r, [(i["costs"].get(r) or {}).get("wall_s") for i in its]) for r in roles],
        unit=" s",
    )
    return (
        table(["iteration", "role", *COST_COLUMNS], rows, cls="costs", attrs=attrs,
              caption="where the time went (role_costs)")
        + f'<div class="plots"><figure>{chart}</figure></div>'
    )  # fmt: skip


# -- the page ---------------------------------------------------------------------------------
def _run_section(run: RunData) -> str:
    rid = e(run.run_id)
    head = f"run {run.run_id}: {run.model or '-'} ({run.backend or '-'})"
    parts = [
        f'<section class="run" id="run-{rid}" data-run="{rid}"><h2>{e(head)}</h2>',
        "<h3>Overview</h3>",
        plots_section(run),
        "<h3>Health</h3>",
        health_section(run),
        "<h3>Evaluation</h3>",
        evaluation_section(run),
        "<h3>Human labels</h3>",
        labels_section(run),
        "<h3>Cost per role</h3>",
        costs_section(run),
        "</section>",
    ]
    return "\n".join(parts)


BROWSER = """
<section id="battles"><h2>Battles</h2>
<p class="note">One row per prompt and iteration: its responses, their judgements and the
meta-judge's verdicts. Filters as in the TUI: iteration, pairs, text search, and only the pairs
whose two orders (AB, BA) do not name the same winner.</p>
<div id="filters">
 <label>run <select id="f-run"><option value="">all</option></select></label>
 <label>iteration <select id="f-iteration"><option value="">all</option></select></label>
 <label>pairs <select id="f-pairs"></select></label>
 <label>search <input id="f-search" type="search" placeholder="prompt text or id"></label>
 <label><input id="f-split" type="checkbox"> only AB&#8800;BA</label>
 <span id="f-count" aria-live="polite"></span>
</div>
<div id="browser">
 <div id="list-pane"><table id="battle-list"><thead><tr><th>#</th><th>run</th><th>it</th>
 <th>prompt</th><th>resp.</th><th>best</th><th>worst</th><th>pairs</th><th>AB&#8800;BA</th>
 </tr></thead><tbody></tbody></table></div>
 <div id="detail"><p class="note">Pick a row to see its prompt, responses, judgements and
 verdicts.</p></div>
</div>
</section>
"""


def page(data: ReportData) -> str:
    css, js = _asset("report.css"), _asset("report.js")
    csp = (
        f"default-src 'none'; style-src {_csp_hash(css)}; script-src {_csp_hash(js)}; "
        "img-src data:; base-uri 'none'; form-action 'none'"
    )
    shown = sum(r.prompts_shown for r in data.runs)
    total = sum(r.prompts_total for r in data.runs)
    runs = ", ".join(r.run_id for r in data.runs) or "none"
    summary = (
        f"{data.db.name}: {data.events} events, last at {data.last_event_at}; runs: {runs}; "
        f"battle browser: {len(data.battles)} rows from {shown} of {total} prompts"
    )
    nav = " · ".join(f'<a href="#run-{e(r.run_id)}">run {e(r.run_id)}</a>' for r in data.runs)
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{e(csp)}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            '<meta name="referrer" content="no-referrer">',
            f"<title>mrtui report: {e(data.db.name)}</title>",
            f"<style>{css}</style>",
            "</head><body>",
            f'<header><h1>mrtui report</h1><p id="summary" data-events="{data.events}" '
            f'data-battles="{len(data.battles)}">{e(summary)}</p>'
            f'<p class="note">generated {e(data.generated_at.isoformat(timespec="seconds"))}; '
            "model text below is shown as text, never as markup.</p>"
            f'<nav>{nav} · <a href="#battles">battles</a></nav></header>',
            "<main>",
            *(_run_section(r) for r in data.runs),
            BROWSER,
            "</main>",
            '<script type="application/json" id="battle-data">'
            + embed_json(data.battles)
            + "</script>",
            f"<script>{js}</script>",
            "</body></html>",
        ]
    )
