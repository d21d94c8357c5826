"""How the Evaluation screen draws things: the metric plot across iterations and the panes of
one sample (its response, its rule checks or its judge's verdicts and the reference answer).
Every model or data set text goes through :func:`~mrtui.tui.text.lit` (literal, never markup).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual.widgets import DataTable

from .eval_model import ChangedRow, EvalData, MetricLine, SampleDetail, SampleRow
from .text import lit, num

HOW = "mrtui eval --db {db} --suite ifeval --limit 20"
SAMPLE_COLUMNS = ("item", "turn", "sample", "outcome", "chars")
CHANGED_COLUMNS = ("item", "turn", "sample", "outcome A", "outcome B", "chars A", "chars B")

FOLLOWED = {True: "✓ followed", False: "✗ not followed", None: "– skipped"}
HEAD = "bold"
MUTED = "dim"


def data_info(data: EvalData, db: Path) -> Text:
    """The screen's top line: what was evaluated, or (one line) how to evaluate."""
    if data.empty:
        how = HOW.format(db=db)
        if data.run_id not in (None, "main"):
            how = how.replace(" --suite", f" --run {data.run_id} --suite")
        run = f" of run {data.run_id}" if data.run_id else ""
        return lit(f"no evaluation{run} in this log yet; create one with `{how}`")
    return lit(
        f"run {data.run_id} · iterations {', '.join(map(str, data.iterations))} evaluated · "
        "↑↓ metric, ←→ iteration (its samples below) · tab: samples · 95% bootstrap intervals"
    )


def fill_results(table: DataTable[Any], data: EvalData) -> None:
    """One row per suite, metric and judge; one column per iteration (``format_metric``)."""
    table.clear(columns=True)
    cols = data.columns
    for c in ("suite", "metric", "judge", *(f"iteration {i}" for i in cols)):
        table.add_column(c, key=c)
    for line in data.lines:
        cells = [lit(line.cells.get(i, "-")) for i in cols]
        table.add_row(lit(line.suite), lit(line.metric), lit(line.judge), *cells)


def fill_samples(
    table: DataTable[Any], rows: list[SampleRow] | list[ChangedRow], changed: bool
) -> None:
    """A suite's samples, or (``changed``) its changed items with both iterations' outcomes."""
    table.clear(columns=True)
    for c in CHANGED_COLUMNS if changed else SAMPLE_COLUMNS:
        table.add_column(c, key=c)
    for r in rows:
        head = (lit(r.item_id), str(r.turn + 1), str(r.sample_index))
        if isinstance(r, ChangedRow):
            cells = [r.a.outcome, r.b.outcome, _chars(r.a), _chars(r.b)]
        else:
            cells = [r.outcome, _chars(r)]
        table.add_row(*head, *map(lit, cells))


def _chars(r: SampleRow) -> str:
    return "-" if r.response_chars is None else str(r.response_chars)


def plot_metric(plt: Any, line: MetricLine | None) -> None:
    """``line``'s value per iteration with its 95% interval (lo and hi as dotted lines) on
    the plotext figure ``plt``; rates in percent."""
    plt.clear_figure()
    if line is None:
        plt.title("no metric selected")
        return
    scale = 100.0 if line.kind == "rate" else 1.0
    its = sorted(it for it, (v, _, _) in line.values.items() if v is not None)
    judge = f" · judge {line.judge}" if line.judge else ""
    unit = " (%)" if scale == 100.0 else ""
    plt.title(f"{line.suite} {line.metric}{unit}{judge}")
    if not its:
        return
    values = [scale * (line.values[i][0] or 0.0) for i in its]
    plt.plot(its, values, marker="dot", label="value")
    bounds = [i for i in its if line.values[i][1] is not None and line.values[i][2] is not None]
    if bounds:
        lo = [scale * (line.values[i][1] or 0.0) for i in bounds]
        hi = [scale * (line.values[i][2] or 0.0) for i in bounds]
        plt.plot(bounds, lo, marker="dot", color="gray", label="95% lo")
        plt.plot(bounds, hi, marker="dot", color="gray", label="95% hi")
    plt.xticks(its, [f"it{i}" for i in its])
    if len(its) == 1:
        plt.xlim(its[0] - 1, its[0] + 1)


def list_info(line: MetricLine, a: int | None, b: int | None, n: int | None = None) -> Text:
    """The line above the samples list: what it shows (``b`` None: iteration ``a``'s samples,
    else the items whose outcome changed from ``a`` to ``b``) and the keys that change it."""
    head = line.suite + (f" · judge {line.judge}" if line.judge else "")
    if b is None:
        what = f"iteration {a}: " + ("reading…" if n is None else f"{n} sample(s)")
        keys = "i: iteration · c: what changed between two iterations"
    else:
        count = "reading" if n is None else f"{n} item(s) whose outcome"
        what = f"{count} changed from iteration {a} (left) to {b} (right)"
        keys = "i: A, b: B, c: all samples"
    return lit(f"{head} · {what} · {keys}")


def paired_text(data: EvalData, line: MetricLine | None, iteration: int | None) -> Text:
    """The line under the results: the highlighted iteration against the evaluated one before
    it on the highlighted metric, paired on the items both answered (`mrtui eval compare`)."""
    from mrtui.evaluation.compare import p_text, signed

    if line is None or iteration is None:
        return lit("")
    head = f"paired: {line.metric} · iteration {iteration}"
    rows = data.paired.get((line.suite, line.metric, line.judge))
    if rows is None:
        return lit(f"{head}: not an item-level metric; no paired comparison")
    r = rows.get(iteration)
    if r is None:
        return lit(f"{head}: no evaluated iteration before it to compare with")
    if not r["n"]:
        return lit(f"{head} vs {r['a_iteration']}: {r['verdict']}")
    m = r["metric"]
    mde = "-" if r["mde"] is None else signed(r["mde"], m).lstrip("+")
    return lit(
        f"{head} − {r['a_iteration']}: {signed(r['difference'], m)} "
        f"[{signed(r['lo'], m)}, {signed(r['hi'], m)}], {p_text(r['p_value'], equals=True)}, "
        f"MDE {mde}, n = {r['n']} · {r['verdict']}"
    )


def _join(*parts: Text) -> Text:
    out = Text(no_wrap=False)
    for p in parts:
        out.append_text(p)
    return out


def prompt_text(d: SampleDetail | None) -> Text:
    if d is None:
        return lit("move onto a sample to see it")
    turn = f" · turn {d.turn + 1}" if d.suite == "mt_bench" else ""
    sample = f" · sample {d.sample_index}" if d.suite == "judge-ifeval" else ""
    return _join(lit(f"{d.suite} item {d.item_id}{turn}{sample}\n", HEAD), lit(d.prompt))


def response_text(d: SampleDetail, header: bool = False) -> Text:
    """The response verbatim; with ``header``, its iteration and outcome above it."""
    head = (
        lit(f"iteration {d.iteration}: {d.outcome} · {d.response_chars} chars\n\n", HEAD)
        if header
        else lit(f"response · {d.response_chars} chars\n", HEAD)
    )
    return _join(head, lit(d.response))


def outcome_text(d: SampleDetail) -> Text:
    """The checker's result per instruction, or the judge's verdicts (and the reference)."""
    if d.instruction_ids is not None:
        return _checks(d)
    if d.judge_text is not None or d.judge_model_id is not None:
        return _judged(d)
    return lit(f"outcome: {d.outcome} (no check or verdict logged yet)", MUTED)


def _checks(d: SampleDetail) -> Text:
    strict = d.strict or []
    loose = d.loose or []
    n = len(d.instruction_ids or [])
    passed = f"outcome {d.outcome} · instructions followed (strict): "
    passed += f"{sum(1 for s in strict if s)} of {n}"
    parts = [lit(f"rule checks ({d.checker or '?'})\n", HEAD), lit(passed + "\n\n")]
    for i, ident in enumerate(d.instruction_ids or []):
        s = strict[i] if i < len(strict) else None
        lo = loose[i] if i < len(loose) else None
        line = f"{FOLLOWED[s]:<15} {ident}"
        if s is not None and lo is not None and lo != s:
            line += f" (loose: {FOLLOWED[lo].split(' ', 1)[1]})"
        parts.append(lit(line + "\n", "" if s else MUTED if s is None else "red"))
        if s is None:
            parts.append(lit(f"    {d.skipped.get(ident, 'no reason logged')}\n", MUTED))
    return _join(*parts)


def _judged(d: SampleDetail) -> Text:
    if d.grade is not None or d.suite == "mt_bench":
        verdict = f"grade {num(d.grade, '{:.1f}')} (1-10)"
    else:
        verdict = f"win {num(d.win, '{:.2f}')} against the reference"
        verdict += f" · {d.verdicts or 0} verdicts (both orders)"
        if d.orders_disagree:
            verdict += " · the two orders disagree"
    parts = [
        lit(f"judge {d.judge_model_id or '?'} · outcome {d.outcome}\n", HEAD),
        lit(verdict + "\n\n"),
        lit(d.judge_text or "(no verdict text)"),
    ]
    if d.reference is not None:
        parts += [lit("\n\nreference answer\n", HEAD), lit(d.reference)]
    return _join(*parts)


def sample_item(d: SampleDetail) -> dict[str, Any]:
    """What ``e`` exports (and the palette's copy takes) from the Evaluation screen."""
    return {
        "kind": "eval_sample",
        "key": d.sample_key,
        "iteration": d.iteration,
        "suite": d.suite,
        "item_id": d.item_id,
        "turn": d.turn,
        "sample_index": d.sample_index,
        "outcome": d.outcome,
        "prompt": d.prompt,
        "text": d.response,
        "instruction_ids": d.instruction_ids,
        "strict": d.strict,
        "skipped": d.skipped,
        "judge_model_id": d.judge_model_id,
        "judge_text": d.judge_text,
        "reference": d.reference,
    }
