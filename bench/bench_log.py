"""Event-log benchmarks: append rate, views over 1M judgements, resume planning.

    .venv/bin/python bench/bench_log.py            # all three parts
    .venv/bin/python bench/bench_log.py --only a   # a: append, b: views, c: resume planning
    .venv/bin/python bench/bench_log.py --rebuild  # rebuild the cached 1M-judgement log

Views over a real log replicated to a million judgements (part b only; the log is copied,
never modified; the replica is cached under the cache folder):

    .venv/bin/python bench/bench_log.py --replicate /tmp/s3/demo.duckdb            # 10,000 copies
    .venv/bin/python bench/bench_log.py --replicate LOG --replica runs --copies 10000

Smoke test (small log, small append run, RESULTS.md left alone):

    MRTUI_BENCH_CACHE=/tmp/mrtui-bench-smoke MRTUI_BENCH_PROMPTS=300 \\
        .venv/bin/python bench/bench_log.py --append-events 20000 --repeats 1 --no-write

(a) Batched appends through ``EventLog.append`` + ``flush`` versus DuckDB's Appender on the
    same rows (envelope, payload and typed columns) in the same run. (b) A synthetic log
    shaped like a real K=7, N=11 iteration over 13,000 prompts (1,001,000 judgements, one
    meta-judged response per prompt with every ordered pair of its valid judgements) is built
    once and cached under /tmp; every public view is then fully computed through
    ``connect()``, each run right after a run of the raw scan of the judgement rows, and
    compared with it (target ≤ 4x). ``--replicate LOG`` runs (b) on a real log instead:
    expected scoring (choice probabilities), rationales, pairwise actor judging, several
    iterations, which the synthetic log does not have.
    (c) Resume planning of that complete iteration: opening the writer, loading
    ``completed_keys()`` and planning each stage with mrtui's own ``Stages`` (every unit is
    found done, so no backend is ever started).

Unit keys, seeds and row shapes of the synthetic log come from mrtui's own code: keys and
seeds from ``Stages.unit_keys``/``unit_seed``; payloads and typed columns from one unit per
stage that the stage code itself plans, finishes and logs (``Outcome`` -> record +
``Stages.provenance`` -> ``record.event``, answered by a stand-in backend with sentinel values
that SQL then fills per row; typed columns from that event's ``typed_values()``); run, prompt,
template and iteration events are written by ``Runner`` itself. A check after the build
compares sampled rows of every event type with canonical JSON, the score/winner parsers and
``NewEvent(...).typed_values()``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import hashlib
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import duckdb
from _common import (
    command,
    load,
    machine,
    median,
    rss_mib,
    start_iteration,
    table,
    timed,
    today,
    update_section,
    verdict,
)

from mrtui.backends.base import BackendInfo, Completion, InferenceBackend
from mrtui.loop.prompts import parse_score, parse_winner
from mrtui.loop.runner import Runner
from mrtui.loop.settings import IterationSettings, RunSettings
from mrtui.loop.stage_table import STAGE_TABLE
from mrtui.loop.stages import ModelIdentity, Outcome, Stages, unit_seed
from mrtui.store import (
    SCHEMA_VERSION,
    EventLog,
    NewEvent,
    canonical_json,
    connect,
    content_key,
)
from mrtui.store import events as ev
from mrtui.store.log import COLUMNS as EVENT_COLUMNS

try:  # the module was renamed connect.py -> db.py
    from mrtui.store.db import migrations, open_duckdb, prepare, view_names
except ImportError:  # pragma: no cover
    from mrtui.store.connect import migrations, open_duckdb, prepare, view_names

CACHE = Path(os.environ.get("MRTUI_BENCH_CACHE", "/tmp/mrtui-bench"))
BUILD_VERSION = 5  # bump when the generator below changes (5: text_chars)
RUN_ID = "bench"
DEFAULT_PROMPTS = 13_000
# Smaller for a smoke test (then RESULTS.md is not written).
N_PROMPTS = int(os.environ.get("MRTUI_BENCH_PROMPTS", str(DEFAULT_PROMPTS)))
K, N = 7, 11
MODEL = ModelIdentity(
    "qwen2.5-coder-0.5b-instruct",
    "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
)
TARGET_APPEND_RATIO = 0.8  # EventLog batched append / raw Appender, events/s, same rows and run
TARGET_VIEW_S = 2.0
TARGET_VIEW_RATIO = 4.0  # a view / the raw scan of the judgement rows, same run
TARGET_RESUME_S = 2.0


def _backend_version() -> str:
    try:
        from importlib.metadata import version

        return version("llama-cpp-python")
    except Exception:
        return "0.3.36"


INFO = BackendInfo(
    "llama.cpp",
    _backend_version(),
    MODEL.model_id,
    "/root/.cache/mrtui/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    MODEL.sha256,
    None,
)


def _no_backend(*_: Any) -> Any:
    raise RuntimeError(
        "a backend was requested: resume planning found work that should have "
        "been in the log (stale cache? rerun with --rebuild)"
    )


def iteration_settings() -> IterationSettings:
    return IterationSettings(k=K, n=N)


def make_stages(log: Any = None) -> Stages:
    s = iteration_settings()
    templates = {spec.template_role: spec.load_template(s) for spec in STAGE_TABLE if spec.used(s)}
    return Stages(log, RUN_ID, 1, s, MODEL, templates, _no_backend)


# ---------------------------------------------------------------------------------------------
# Rows exactly as stages.py writes them. Each stage's own code plans one unit, a stand-in
# backend answers it and ``Stages._take`` logs it (Outcome -> record + provenance ->
# ``record.event``) into a log that only collects the events. Sentinel values mark the per-row
# fields; the canonical JSON is then cut at the sentinels into a SQL string expression, and
# each typed column (``NewEvent.typed_values()`` of that event) becomes a SQL expression.

SENT = {
    "judge_index": 900000001,
    "score": 900000002,
    "seed": 900000003,
    "pt": 900000004,
    "ct": 900000005,
    "pte": 900000006,
    "wall": 900000007.5,
    "sample_index": 900000008,
}
# Outcome fields replaced by sentinels before the unit is logged (those the outcome has).
OUTCOME_SENTINELS: dict[str, Any] = {
    "sample_index": SENT["sample_index"],
    "judge_index": SENT["judge_index"],
    "score": SENT["score"],
    "winner": "@@winner@@",
    "parse_error": "@@parse_error@@",
}
ANSWERS = {
    "resp": "an answer",
    "judg": "It answers the question well.\nScore: 3",
    "meta": "Judgment A reads it better.\nWinner: Judgment A",
}


def _is_sentinel(value: Any) -> bool:
    if isinstance(value, str):
        return "@@" in value
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 9e8


class _CollectingLog:
    """Stands in for EventLog while the stage code logs the reference units."""

    def __init__(self) -> None:
        self.events: list[NewEvent] = []

    def completed_keys(self) -> set[str]:
        return set()

    def has(self, key: str) -> bool:
        return False

    def append(self, events: Any) -> None:
        self.events.extend(events)


class _SentinelBackend(InferenceBackend):
    """Answers every request with a parseable text and sentinel token counts and timings."""

    def info(self) -> BackendInfo:
        return INFO

    def generate(self, requests: Any) -> Any:
        for r in requests:
            yield Completion(
                r.id,
                0,
                ANSWERS[r.id.split(":", 1)[0]],
                "@@finish@@",
                SENT["pt"],
                SENT["ct"],
                SENT["pte"],
                SENT["seed"],
                SENT["wall"],
            )

    def close(self) -> None:
        pass


def reference_events(stages: Stages) -> dict[str, NewEvent]:
    """One event per unit event type, logged by the stage code itself (sentinel values)."""
    log = _CollectingLog()
    backend = _SentinelBackend()
    ref = Stages(
        log,  # type: ignore[arg-type]
        stages.run_id,
        stages.iteration,
        stages.s,
        stages.model,
        stages.templates,
        lambda: backend,  # type: ignore[arg-type,return-value]
    )
    execute = ref.execute

    def one_unit(stage: str, planned: Any, build: Any, already: int = 0) -> Any:
        def build_with_sentinels(key: str, args: tuple[Any, ...]) -> Any:
            request, finish = build(key, args)
            params = dataclasses.replace(request.params, seed=SENT["seed"])
            request = dataclasses.replace(request, params=params)

            def finish_with_sentinels(c: Completion) -> Any:
                out = finish(c)
                assert isinstance(out, Outcome), out
                out.fields.update((k, v) for k, v in OUTCOME_SENTINELS.items() if k in out.fields)
                return out

            return request, finish_with_sentinels

        return execute(stage, planned[:1], build_with_sentinels)

    ref.execute = one_unit  # type: ignore[method-assign]
    reports = [
        ref.actor([("@@prompt_key@@", "x")]),
        ref.judge([("@@response_key@@", "@@prompt_key@@", "x", ANSWERS["resp"])]),
        ref.meta(
            [
                (
                    "@@response_key@@",
                    "@@prompt_key@@",
                    "x",
                    ANSWERS["resp"],
                    [("@@first_key@@", ANSWERS["judg"]), ("@@second_key@@", ANSWERS["judg"])],
                )
            ]
        ),
    ]
    assert all(r.done == 1 and not r.failed for r in reports), reports
    kinds = (ev.ResponseGenerated.TYPE, ev.JudgementRecorded.TYPE, ev.MetaVerdictRecorded.TYPE)
    out = {e.event_type: e for e in log.events if e.event_type in kinds}
    assert set(out) == set(kinds), [e.event_type for e in log.events]
    return out


def reference_payloads(stages: Stages) -> dict[str, dict[str, Any]]:
    """One payload per unit event type, built by the stage code itself (sentinel values)."""
    return {kind: e.payload for kind, e in reference_events(stages).items()}


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def payload_sql(payload: dict[str, Any], fills: dict[str, str]) -> str:
    """SQL that writes ``canonical_json(payload)`` with each sentinel token replaced by a
    SQL expression (``fills``: JSON token as it appears in the canonical text -> SQL)."""
    text = canonical_json(payload)
    pattern = re.compile("|".join(re.escape(k) for k in sorted(fills, key=len, reverse=True)))
    parts, pos, seen = [], 0, set()
    for m in pattern.finditer(text):
        parts += [_sql_str(text[pos : m.start()]), f"({fills[m.group()]})"]
        seen.add(m.group())
        pos = m.end()
    parts.append(_sql_str(text[pos:]))
    missing = {k for k in set(fills) - seen if k not in COMMON_FILLS}
    assert not missing, f"sentinels not filled: {missing}"
    assert "@@" not in re.sub(pattern, "", text), f"unfilled sentinel in {text}"
    return " || ".join(p for p in parts if p != "''")


def _sql_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _sql_str(value)
    if isinstance(value, int | float):
        return repr(value)
    raise TypeError(f"no SQL literal for {value!r}")


def typed_sql(event: NewEvent, fills: dict[Any, str]) -> str:
    """SQL for the typed columns of rows shaped like ``event``, in ``TYPED_COLUMNS`` order:
    ``event.typed_values()`` with each sentinel replaced by a SQL expression (``fills``:
    sentinel value -> SQL), other values as literals, None as NULL."""
    out = []
    values = event.typed_values()
    for (col, sql_type), value in zip(ev.TYPED_COLUMNS.items(), values, strict=True):
        if value is None or col == "text_chars":  # text_chars: filled from the text after
            expr = "NULL"
        elif _is_sentinel(value):
            assert value in fills, f"typed column {col}: sentinel {value!r} not filled"
            expr = fills[value]
        else:
            expr = _sql_literal(value)
        out.append(f"CAST({expr} AS {sql_type})")
    return ", ".join(out)


def _q(col: str) -> str:
    return f"""'"' || {col} || '"'"""


SCORE_ERROR = parse_score("no score here").error
WINNER_ERROR = parse_winner("no winner here").error
TIE_ERROR = parse_winner("Winner: tie").error
COMMON_FILLS = {
    str(SENT["seed"]): "seed::VARCHAR",
    str(SENT["pt"]): "pt::VARCHAR",
    str(SENT["ct"]): "ct::VARCHAR",
    str(SENT["pte"]): "pte::VARCHAR",
    repr(SENT["wall"]): "wall::VARCHAR",
    '"@@finish@@"': _q("finish"),
    '"@@prompt_key@@"': _q("prompt_key"),
}
# The same per-row values as typed columns (sentinel value -> SQL column of the build table).
COMMON_TYPED: dict[Any, str] = {
    SENT["pt"]: "pt",
    SENT["ct"]: "ct",
    SENT["pte"]: "pte",
    "@@finish@@": "finish",
    "@@prompt_key@@": "prompt_key",
}


# ---------------------------------------------------------------------------------------------
# Text: a corpus of pseudo-words with Zipf frequencies, sliced per row (unique, text-like).


def make_corpus(n_chars: int = 4_000_000, seed: int = 7) -> str:
    rng = random.Random(seed)
    sy = [
        "ka",
        "lo",
        "mi",
        "ne",
        "ru",
        "ta",
        "se",
        "vo",
        "di",
        "pa",
        "an",
        "er",
        "in",
        "on",
        "th",
        "st",
        "re",
        "co",
        "de",
        "ma",
    ]
    vocab = ["".join(rng.choice(sy) for _ in range(rng.randint(1, 4))) for _ in range(4000)]
    weights = [1 / (i + 1) for i in range(len(vocab))]
    words: list[str] = []
    total = 0
    while total < n_chars:
        chunk = rng.choices(vocab, weights, k=10_000)
        for i in range(0, len(chunk), 17):
            chunk[i] = chunk[i] + "."
        words += chunk
        total += sum(len(w) + 1 for w in chunk)
    return " ".join(words)[:n_chars]


def _h(key: str, salt: int = 0) -> int:
    """A stable pseudo-random int from a unit key (its hex digest), salted."""
    return int(key[-8:], 16) ^ (salt * 0x9E3779B1) & 0xFFFFFFFF


# ---------------------------------------------------------------------------------------------
# (a) append rate


def _event_mix(n: int, corpus: str, refs: dict[str, dict[str, Any]]) -> list[NewEvent]:
    """Per 100 events: 80 judgements, 12 meta-verdicts, 7 responses, 1 stage event, each
    built from its record (``record.event``) as stages.py does."""
    rng = random.Random(1)
    sampling = refs[ev.JudgementRecorded.TYPE]["sampling"]
    out: list[NewEvent] = []
    for i in range(n):
        slot = i % 100
        key_hex = hashlib.blake2b(i.to_bytes(8, "little"), digest_size=16).hexdigest()
        seed = rng.randrange(2**31)
        prov = {
            "seed": seed,
            "sampling": dict(sampling, seed=seed),
            "wall_s": round(rng.uniform(0.5, 8), 4),
            "prompt_tokens": rng.randint(300, 900),
            "completion_tokens": rng.randint(60, 200),
            "prompt_tokens_evaluated": rng.choice((1, 1, 1, 250)),
            "finish_reason": "stop",
        }
        off = rng.randrange(len(corpus) - 3000)
        pk, rk = "prompt:" + key_hex[::-1], "resp:" + key_hex[1:] + "0"
        if slot < 80:
            score = rng.randint(0, 5)
            text = corpus[off : off + rng.randint(400, 700)] + f"\nScore: {score}"
            judgement = ev.JudgementRecorded(
                **dict(
                    refs[ev.JudgementRecorded.TYPE],
                    prompt_key=pk,
                    judge_index=slot % 11,
                    score=score,
                    parse_error=None,
                    **prov,
                )
            )
            out.append(
                judgement.event(
                    RUN_ID, iteration=1, key="judg:" + key_hex, parent_key=rk, text=text
                )
            )
        elif slot < 92:
            text = corpus[off : off + rng.randint(300, 600)] + "\nWinner: Judgment A"
            verdict_ = ev.MetaVerdictRecorded(
                **dict(
                    refs[ev.MetaVerdictRecorded.TYPE],
                    prompt_key=pk,
                    first_key="judg:1" + key_hex[1:],
                    second_key="judg:2" + key_hex[1:],
                    winner="A",
                    parse_error=None,
                    **prov,
                )
            )
            out.append(
                verdict_.event(RUN_ID, iteration=1, key="meta:" + key_hex, parent_key=rk, text=text)
            )
        elif slot < 99:
            text = corpus[off : off + rng.randint(200, 2000)]
            response = ev.ResponseGenerated(
                **dict(refs[ev.ResponseGenerated.TYPE], sample_index=slot % 7, **prov)
            )
            out.append(response.event(RUN_ID, iteration=1, key=rk, parent_key=pk, text=text))
        else:
            started = ev.StageStarted(stage="judge", planned=1001000, todo=1001000)
            out.append(started.event(RUN_ID, iteration=1))
    return out


def _fresh_raw(path: Path) -> Any:
    con = duckdb.connect(str(path))
    for _, _, sql in migrations():
        con.execute(sql)
    return con


def _row(seq: int, e: NewEvent, stamp: Any) -> tuple[Any, ...]:
    """The row EventLog writes for ``e``: envelope, payload JSON, then the typed columns."""
    return (
        seq,
        e.event_type,
        e.event_version,
        e.run_id,
        e.iteration,
        e.key,
        e.parent_key,
        stamp,
        e.text,
        e.payload_json(),
        *e.typed_values(),
    )


def part_a(total: int, batches: list[int], repeats: int) -> str:
    import datetime as dt

    corpus = make_corpus(1_000_000)
    refs = reference_payloads(make_stages())
    events = _event_mix(total, corpus, refs)
    now = dt.datetime.now(dt.UTC)
    rows = [_row(i + 1, e, now) for i, e in enumerate(events)]
    assert len(rows[0]) == len(EVENT_COLUMNS), (len(rows[0]), EVENT_COLUMNS)
    json_s = median([timed(lambda: [e.payload_json() for e in events])[0] for _ in range(3)])
    mean_text = sum(len(e.text or "") for e in events) / len(events)
    mean_payload = sum(len(r[9]) for r in rows) / len(rows)

    def raw(batch: int, path: Path) -> float:
        con = _fresh_raw(path)
        t0 = time.perf_counter()
        for start in range(0, total, batch):
            con.execute("BEGIN TRANSACTION")
            app = con.appender("events")
            app.append_rows(rows[start : start + batch])
            app.flush()
            con.execute("COMMIT")
        t = time.perf_counter() - t0
        con.close()
        return t

    def raw_json(batch: int, path: Path) -> float:
        con = _fresh_raw(path)
        t0 = time.perf_counter()
        seq = 0
        for start in range(0, total, batch):
            chunk = events[start : start + batch]
            stamp = dt.datetime.now(dt.UTC)
            batch_rows = [_row(seq + i + 1, e, stamp) for i, e in enumerate(chunk)]
            seq += len(chunk)
            con.execute("BEGIN TRANSACTION")
            app = con.appender("events")
            app.append_rows(batch_rows)
            app.flush()
            con.execute("COMMIT")
        t = time.perf_counter() - t0
        con.close()
        return t

    def raw_json_reopen(batch: int, path: Path) -> float:
        """As above, but opening and closing the file around every batch (as EventLog does,
        so that readers can open the file between flushes)."""
        _fresh_raw(path).close()
        t0 = time.perf_counter()
        seq = 0
        for start in range(0, total, batch):
            chunk = events[start : start + batch]
            stamp = dt.datetime.now(dt.UTC)
            batch_rows = [_row(seq + i + 1, e, stamp) for i, e in enumerate(chunk)]
            seq += len(chunk)
            con = duckdb.connect(str(path))
            con.execute("BEGIN TRANSACTION")
            app = con.appender("events")
            app.append_rows(batch_rows)
            app.flush()
            con.execute("COMMIT")
            con.close()
        return time.perf_counter() - t0

    def eventlog(batch: int, path: Path) -> float:
        log = EventLog(path)
        t0 = time.perf_counter()
        for start in range(0, total, batch):
            log.append(events[start : start + batch])
            log.flush()
        t = time.perf_counter() - t0
        log.close()
        return t

    def eventlog_single(_: int, path: Path) -> float:
        """One event per append call (what Stages does per result), background flushes."""
        log = EventLog(path)
        t0 = time.perf_counter()
        for e in events:
            log.append([e])
        log.flush()
        t = time.perf_counter() - t0
        log.close()
        return t

    variants: list[tuple[str, Callable[[int, Path], float], list[int]]] = [
        ("raw Appender, rows prebuilt (baseline)", raw, batches),
        ("raw Appender + canonical_json per batch", raw_json, batches),
        ("... + open/close the file per batch", raw_json_reopen, batches),
        ("EventLog.append + flush", eventlog, batches),
        ("EventLog.append one event per call", eventlog_single, [0]),
    ]
    times: dict[tuple[str, int], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="mrtui-bench-a-") as d:
        for rep in range(repeats):
            for name, fn, sizes in variants:
                for b in sizes:
                    path = Path(d) / f"{rep}-{b}-{len(times)}.duckdb"
                    gc.collect()
                    times.setdefault((name, b), []).append(fn(b, path))
                    for p in Path(d).iterdir():
                        p.unlink()
    out_rows = []
    results: dict[tuple[str, int], float] = {}
    for name, _, sizes in variants:
        for b in sizes:
            t = median(times[(name, b)])
            results[(name, b)] = total / t
    for name, _, sizes in variants:
        for b in sizes:
            rate = results[(name, b)]
            base = results[(variants[0][0], b or batches[0])]
            tgt = (
                verdict(rate / base >= TARGET_APPEND_RATIO)
                if name.startswith("EventLog.append +")
                else "info"
            )
            out_rows.append(
                [name, f"{b:,}" if b else "1", f"{rate:,.0f}", f"{rate / base:.2f}x", tgt]
            )
    tbl = table(
        [
            "variant",
            "batch",
            "events/s (median)",
            "rate vs raw",
            f"target ≥{TARGET_APPEND_RATIO}x raw",
        ],
        out_rows,
    )
    print(tbl)
    base_rate = {b: results[(variants[0][0], b)] for b in batches}
    el = {b: results[("EventLog.append + flush", b)] for b in batches}
    ratio = {b: el[b] / base_rate[b] for b in batches}
    ok = all(r >= TARGET_APPEND_RATIO for r in ratio.values())
    per_batch = ", ".join(
        f"{b:,}: {ratio[b]:.2f}x ({el[b]:,.0f} vs {base_rate[b]:,.0f} events/s)" for b in batches
    )
    return f"""### (a) Batched append rate

{total:,} events per repeat, {repeats} repeats (median), a fresh file each time. Mix per 100
events: 80 JudgementRecorded, 12 MetaVerdictRecorded, 7 ResponseGenerated, 1 StageStarted, each
built from its record as stages.py builds it; payloads carry the full provenance (mean text
{mean_text:.0f} chars, mean payload {mean_payload:.0f} chars of JSON). Events are built before
the clock starts. Every variant writes the same rows EventLog writes (envelope, payload JSON
and the {len(ev.TYPED_COLUMNS)} typed columns of schema {SCHEMA_VERSION}). Baseline: DuckDB's
Appender on those rows already built (one transaction per batch, one open connection).
`canonical_json` of all {total:,} payloads alone takes {json_s:.2f} s
({total / json_s:,.0f} payloads/s).

{tbl}

**Target: EventLog batched append ≥ {TARGET_APPEND_RATIO}x DuckDB's own Appender on the same
rows in the same run: {verdict(ok)}** (EventLog / raw events/s, batch {per_batch}).
"""


# ---------------------------------------------------------------------------------------------
# (b) the synthetic log


def _fingerprint() -> str:
    stages = make_stages()
    sample = stages.unit_keys("judge")("resp:x", 0)
    refs = reference_payloads(stages)
    h = hashlib.sha256(
        json.dumps(
            [
                BUILD_VERSION,
                SCHEMA_VERSION,
                sample,
                N_PROMPTS,
                K,
                N,
                canonical_json(refs),
                iteration_settings().flat(),  # the IterationStarted key depends on it
            ]
        ).encode()
    ).hexdigest()
    return h[:12]


def cached_log_path() -> Path:
    return CACHE / f"log-1M-{_fingerprint()}.duckdb"


def _prompts_file(d: Path) -> Path:
    rng = random.Random(3)
    corpus = make_corpus(600_000, seed=11)
    path = d / "prompts.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for i in range(N_PROMPTS):
            off = rng.randrange(len(corpus) - 500)
            text = f"Q{i}: " + corpus[off : off + rng.randint(40, 400)] + "?"
            fh.write(json.dumps({"id": f"p{i}", "prompt": text}) + "\n")
    return path


def _remove_db(path: Path) -> None:
    for p in (path, Path(str(path) + ".wal"), Path(str(path) + ".lock")):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def build_log(path: Path) -> dict[str, float]:
    """Write the synthetic complete iteration to ``path``; returns timings of its steps."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".building")
    _remove_db(tmp)
    info: dict[str, float] = {}
    t_start = time.perf_counter()
    settings = RunSettings(
        prompts=str(_prompts_file(path.parent)), run_id=RUN_ID, defaults=iteration_settings()
    )
    s = settings.for_iteration(1)
    with EventLog(tmp) as log:
        runner = Runner(log, settings, backend_factory=_no_backend, resolver=lambda _: MODEL)
        info["configure_13k_prompts_s"], prompts = timed(runner.configure)
        templates = runner.register_templates(s)
        start_iteration(runner, 1, s, MODEL)
        for stage in ("actor", "judge", "meta"):
            started = ev.StageStarted(stage=stage, planned=0, todo=0)
            log.append([started.event(RUN_ID, iteration=1)])
    stages = Stages(None, RUN_ID, 1, s, MODEL, templates, _no_backend)  # type: ignore[arg-type]
    refs = reference_events(stages)
    insert = f"INSERT INTO events ({', '.join(EVENT_COLUMNS)})"
    import pyarrow as pa

    corpus = make_corpus()
    clen = len(corpus) - 3000
    con = open_duckdb(tmp, read_only=False)
    con.execute("SET enable_progress_bar = false")
    con.execute("SET preserve_insertion_order = true")
    con.execute("CREATE TEMP TABLE corpus AS SELECT ?::VARCHAR AS c", [corpus])
    seq0 = con.execute("SELECT max(seq) FROM events").fetchall()[0][0]

    # responses
    resp_key = stages.unit_keys("actor")
    cols: dict[str, list[Any]] = {
        c: []
        for c in (
            "seq",
            "key",
            "prompt_key",
            "k",
            "seed",
            "off",
            "len",
            "pt",
            "ct",
            "pte",
            "wall",
            "finish",
        )
    }
    resp_rows = []
    for pi, (pk, text) in enumerate(prompts):
        for k in range(K):
            key = resp_key(pk, k)
            h = _h(key)
            n_chars = 200 + h % 1800
            ct = n_chars // 4
            cols["seq"].append(seq0 + 1 + pi * K + k)
            cols["key"].append(key)
            cols["prompt_key"].append(pk)
            cols["k"].append(k)
            cols["seed"].append(unit_seed(s.seed, key))
            cols["off"].append(1 + _h(key, 1) % clen)
            cols["len"].append(n_chars)
            cols["pt"].append(30 + len(text) // 4)
            cols["ct"].append(ct)
            cols["pte"].append(30 + len(text) // 4 if k == 0 else 1)
            cols["wall"].append(round(0.2 + ct / 45, 4))
            cols["finish"].append("length" if ct >= s.actor_max_tokens else "stop")
            resp_rows.append((key, pk, len(text), n_chars))
    con.register("rk", pa.table(cols))
    ref = refs[ev.ResponseGenerated.TYPE]
    fills = dict(COMMON_FILLS, **{str(SENT["sample_index"]): "k::VARCHAR"})
    sql = payload_sql(ref.payload, fills)
    typed = typed_sql(ref, {**COMMON_TYPED, SENT["sample_index"]: "k"})
    t0 = time.perf_counter()
    con.execute(f"""
        {insert}
        SELECT seq, '{ref.event_type}', {ref.event_version}, '{RUN_ID}', 1, key, prompt_key,
               TIMESTAMPTZ '2025-06-01 00:00:00+00' + to_milliseconds(seq), substr(c, off, len),
               {sql}, {typed}
        FROM rk, corpus ORDER BY seq""")
    info["insert_responses_s"] = time.perf_counter() - t0
    con.unregister("rk")

    # judgements
    judg_key = stages.unit_keys("judge")
    cols = {
        c: []
        for c in (
            "seq",
            "key",
            "response_key",
            "prompt_key",
            "j",
            "seed",
            "score",
            "off",
            "len",
            "pt",
            "ct",
            "pte",
            "wall",
            "finish",
        )
    }
    seq = seq0 + len(resp_rows)
    for rkey, pk, plen, rlen in resp_rows:
        quality = 1 + _h(rkey, 2) % 4
        pt = 260 + (plen + rlen) // 4
        for j in range(N):
            key = judg_key(rkey, j)
            h = _h(key, 3)
            seq += 1
            valid = h % 33 != 0
            n_chars = 400 + _h(key, 4) % 300
            ct = n_chars // 4 + 4
            cols["seq"].append(seq)
            cols["key"].append(key)
            cols["response_key"].append(rkey)
            cols["prompt_key"].append(pk)
            cols["j"].append(j)
            cols["seed"].append(unit_seed(s.seed, key))
            cols["score"].append(min(5, max(0, quality + (h >> 8) % 3 - 1)) if valid else None)
            cols["off"].append(1 + _h(key, 5) % clen)
            cols["len"].append(n_chars)
            cols["pt"].append(pt)
            cols["ct"].append(ct)
            cols["pte"].append(pt - 230 if j == 0 else 1)
            cols["wall"].append(round(0.1 + ct / 45 + (pt - 230 if j == 0 else 0) / 215, 4))
            cols["finish"].append("stop")
    del resp_rows
    con.register(
        "jk",
        pa.table(
            cols,
            schema=pa.schema(
                [
                    ("seq", pa.int64()),
                    ("key", pa.string()),
                    ("response_key", pa.string()),
                    ("prompt_key", pa.string()),
                    ("j", pa.int32()),
                    ("seed", pa.int64()),
                    ("score", pa.int32()),
                    ("off", pa.int64()),
                    ("len", pa.int64()),
                    ("pt", pa.int64()),
                    ("ct", pa.int64()),
                    ("pte", pa.int64()),
                    ("wall", pa.float64()),
                    ("finish", pa.string()),
                ]
            ),
        ),
    )
    fills = dict(
        COMMON_FILLS,
        **{
            str(SENT["judge_index"]): "j::VARCHAR",
            str(SENT["score"]): "coalesce(score::VARCHAR, 'null')",
            '"@@parse_error@@"': (
                f"CASE WHEN score IS NULL THEN {_sql_str(json.dumps(SCORE_ERROR))} ELSE 'null' END"
            ),
        },
    )
    ref = refs[ev.JudgementRecorded.TYPE]
    sql = payload_sql(ref.payload, fills)
    typed = typed_sql(
        ref,
        {
            **COMMON_TYPED,
            SENT["judge_index"]: "j",
            SENT["score"]: "score",
            "@@parse_error@@": f"CASE WHEN score IS NULL THEN {_sql_str(SCORE_ERROR)} END",
        },
    )
    t0 = time.perf_counter()
    con.execute(f"""
        {insert}
        SELECT seq, '{ref.event_type}', {ref.event_version}, '{RUN_ID}', 1, key, response_key,
               TIMESTAMPTZ '2025-06-01 00:00:00+00' + to_milliseconds(seq),
               substr(c, off, len) || coalesce(chr(10) || 'Score: ' || score, ''),
               {sql}, {typed}
        FROM jk, corpus ORDER BY seq""")
    info["insert_judgements_s"] = time.perf_counter() - t0
    con.unregister("jk")
    # text_chars as NewEvent.typed_values() computes it from each text (the verdicts read it)
    con.execute("UPDATE events SET text_chars = length(text) WHERE text_chars IS NULL")
    del cols

    # meta-verdicts: every ordered pair of the valid judgements of each meta target, exactly
    # what Runner.meta_targets + Stages.meta plan.
    prepare(con, tmp)
    rows = con.execute("""
        SELECT j.response_key, j.prompt_key, j.judgement_key, j.judgement_chars
        FROM judgements j JOIN meta_targets t ON t.response_key = j.response_key
        WHERE j.valid ORDER BY j.response_key, j.judge_index, j.judgement_key""").fetchall()
    groups: dict[str, list[tuple[str, str, int]]] = {}
    for rkey, pk, jkey, jchars in rows:
        groups.setdefault(rkey, []).append((pk, jkey, jchars))
    meta_key = stages.unit_keys("meta")
    cols = {
        c: []
        for c in (
            "seq",
            "key",
            "response_key",
            "prompt_key",
            "first_key",
            "second_key",
            "winner",
            "err",
            "off",
            "len",
            "pt",
            "ct",
            "pte",
            "wall",
            "finish",
            "seed",
        )
    }
    seq = con.execute("SELECT max(seq) FROM events").fetchall()[0][0]
    for rkey, js in groups.items():
        for pk, first, c1 in js:
            for _, second, c2 in js:
                if first == second:
                    continue
                key = meta_key(rkey, first, second)
                h = _h(key, 6) % 100
                winner, err = (
                    ("A", None)
                    if h < 52
                    else ("B", None)
                    if h < 92
                    else (None, TIE_ERROR)
                    if h < 96
                    else (None, WINNER_ERROR)
                )
                seq += 1
                n_chars = 300 + _h(key, 7) % 300
                ct = n_chars // 4 + 5
                pt = 330 + (c1 + c2) // 4
                cols["seq"].append(seq)
                cols["key"].append(key)
                cols["response_key"].append(rkey)
                cols["prompt_key"].append(pk)
                cols["first_key"].append(first)
                cols["second_key"].append(second)
                cols["winner"].append(winner)
                cols["err"].append(err)
                cols["off"].append(1 + _h(key, 8) % clen)
                cols["len"].append(n_chars)
                cols["pt"].append(pt)
                cols["ct"].append(ct)
                cols["pte"].append(pt - 300)
                cols["wall"].append(round(0.1 + ct / 45 + (pt - 300) / 215, 4))
                cols["finish"].append("stop")
                cols["seed"].append(unit_seed(s.seed, key))
    del rows, groups
    con.register("mk", pa.table(cols))
    fills = dict(
        COMMON_FILLS,
        **{
            '"@@first_key@@"': _q("first_key"),
            '"@@second_key@@"': _q("second_key"),
            '"@@winner@@"': "coalesce('\"' || winner || '\"', 'null')",
            '"@@parse_error@@"': "coalesce('\"' || err || '\"', 'null')",
        },
    )
    ref = refs[ev.MetaVerdictRecorded.TYPE]
    sql = payload_sql(ref.payload, fills)
    typed = typed_sql(
        ref,
        {
            **COMMON_TYPED,
            "@@first_key@@": "first_key",
            "@@second_key@@": "second_key",
            "@@winner@@": "winner",
            "@@parse_error@@": "err",
        },
    )
    t0 = time.perf_counter()
    con.execute(f"""
        {insert}
        SELECT seq, '{ref.event_type}', {ref.event_version}, '{RUN_ID}', 1, key, response_key,
               TIMESTAMPTZ '2025-06-01 00:00:00+00' + to_milliseconds(seq),
               substr(c, off, len) || chr(10) || CASE WHEN winner IS NOT NULL
                   THEN 'Winner: Judgment ' || winner WHEN err = '{TIE_ERROR}'
                   THEN 'Winner: tie' ELSE 'I cannot decide.' END,
               {sql}, {typed}
        FROM mk, corpus ORDER BY seq""")
    info["insert_verdicts_s"] = time.perf_counter() - t0
    con.unregister("mk")
    del cols
    con.execute("UPDATE events SET text_chars = length(text) WHERE text_chars IS NULL")
    con.execute("CHECKPOINT")
    done = dict(con.execute("SELECT event_type, count(*) FROM events GROUP BY 1").fetchall())
    con.close()
    units = {
        "actor": done[ev.ResponseGenerated.TYPE],
        "judge": done[ev.JudgementRecorded.TYPE],
        "meta": done[ev.MetaVerdictRecorded.TYPE],
    }
    with EventLog(tmp) as log:
        for stage, n in units.items():
            finished = ev.StageFinished(
                stage=stage,
                planned=n,
                skipped=0,
                done=n,
                failed=0,
                wall_s=0.0,
                completion_tokens=0,
            )
            log.append([finished.event(RUN_ID, iteration=1)])
        iteration_done = ev.IterationFinished(
            stages={st: {"planned": n, "done": n, "skipped": 0} for st, n in units.items()},
            trained=s.train,
        )
        log.append(
            [
                iteration_done.event(
                    RUN_ID, iteration=1, key=content_key("iteration-finished", RUN_ID, 1)
                )
            ]
        )
    _remove_db(path)
    tmp.rename(path)
    with contextlib.suppress(FileNotFoundError):
        Path(str(tmp) + ".lock").unlink()
    info["build_total_s"] = time.perf_counter() - t_start
    return info


def check_log(path: Path) -> dict[str, Any]:
    """Counts per event type, plus up to 500 sampled rows of every event type checked: the
    payload against canonical JSON, the reference payload's keys and the parsers; the typed
    columns against ``NewEvent(...).typed_values()`` of the row's payload and parent_key; the
    event version against the record's."""
    refs = reference_payloads(make_stages())
    typed = ", ".join(ev.TYPED_COLUMNS)
    with connect(path) as con:
        con.execute("SET enable_progress_bar = false")
        counts = dict(con.execute("SELECT event_type, count(*) FROM events GROUP BY 1").fetchall())
        bad = []
        checked = 0
        for kind in counts:
            sample = con.execute(
                f"SELECT * FROM (SELECT event_version, run_id, parent_key, text, payload, {typed} "
                "FROM events WHERE event_type = ?) USING SAMPLE 500 ROWS",
                [kind],
            ).fetchall()
            for version, run_id, parent_key, text, payload, *values in sample:
                checked += 1
                data = json.loads(payload)
                expected = NewEvent(
                    kind, run_id, data, parent_key=parent_key, text=text
                ).typed_values()
                if tuple(values) != expected:
                    bad.append((kind, "typed columns", values, expected))
                if version != ev.RECORDS[kind].VERSION:
                    bad.append((kind, "event_version", version))
                ref = refs.get(kind)
                if ref is None:
                    continue
                if (
                    canonical_json(data) != payload
                    or set(data) != set(ref)
                    or set(data["sampling"]) != set(ref["sampling"])
                ):
                    bad.append((kind, payload[:200]))
                if kind == ev.JudgementRecorded.TYPE:
                    p = parse_score(text)
                    if (p.value, p.error) != (data["score"], data["parse_error"]):
                        bad.append((kind, "score/parse mismatch", text[-40:], data["score"]))
                if kind == ev.MetaVerdictRecorded.TYPE:
                    p = parse_winner(text)
                    if (p.value, p.error) != (data["winner"], data["parse_error"]):
                        bad.append((kind, "winner/parse mismatch", text[-40:], data["winner"]))
        derived = {
            v: con.execute(f"SELECT count(*) FROM {v}").fetchall()[0][0]
            for v in ("meta_targets", "judge_pairs", "actor_pairs")
        }
    if bad:
        raise SystemExit(f"synthetic log check failed: {bad[:3]}")
    print(f"  checked {checked:,} sampled rows (payloads, typed columns): ok", flush=True)
    return {"counts": counts, "derived": derived, "events": sum(counts.values())}


def ensure_log(rebuild: bool) -> tuple[Path, dict[str, float] | None]:
    path = cached_log_path()
    if path.exists() and not rebuild:
        # A writer keeps the views stored in the file current; a log cached by an older
        # checkout holds older ones, which would make every reader build temporary views.
        EventLog(path).close()
        return path, None
    print(f"building the synthetic log at {path} (cached for later runs) ...", flush=True)
    for old in CACHE.glob("log-1M-*.duckdb"):
        _remove_db(old)
    info = build_log(path)
    print("  " + ", ".join(f"{k}={v:.1f}" for k, v in info.items()), flush=True)
    return path, info


# ---------------------------------------------------------------------------------------------
# (b') a real log replicated: the shape of what users run (expected scoring, choice
# probabilities, rationales, comparisons, training and checkpoint events, several iterations)

# The identifiers of a log: unit and record keys (``content_key``: a kind, a colon, 32 hex
# digits), content hashes (64 hex digits: models, templates, datasets) and training attempts
# (12 hex digits), at the start of a value or after a quote, colon, dash or slash. Numbers are
# never 12, 32 or 64 digits long after those (seeds have at most 10; fractions follow a dot).
# A ``units`` replica keeps its runs' hashes and attempts (one model, one set of templates).
ID_RE = {
    "runs": r"(^|[\":/-])[0-9a-f]{5}([0-9a-f]{7}|[0-9a-f]{27}|[0-9a-f]{59})\b",
    "units": r"([a-z_]+:)[0-9a-f]{5}([0-9a-f]{27})\b",
}
# Copied texts start with their copy's number, so that copies do not share texts (a real log's
# texts are all different, and DuckDB stores a repeated text once, which would flatter scans).
TAG_CHARS = 6


# Event types a ``units`` replica copies: a run's work, as a run over more prompts would log it.
UNIT_EVENTS = (
    ev.PromptAdded.TYPE,
    "PromptsDrawn",
    ev.ResponseGenerated.TYPE,
    ev.JudgementRecorded.TYPE,
    ev.MetaVerdictRecorded.TYPE,
    "ResponsesCompared",
    "RequestFailed",
    "UnitSkipped",
)
REPLICA_MODES = ("units", "runs")
REPLICA_VERSION = 1  # bump when build_replicated changes (cached replicas are then rebuilt)


def replicated_log_path(source: Path, copies: int, mode: str) -> Path:
    h = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    return CACHE / f"replicated-{h}-{mode}-{copies}-s{SCHEMA_VERSION}-v{REPLICA_VERSION}.duckdb"


def build_replicated(source: Path, copies: int, mode: str, path: Path) -> dict[str, float]:
    """Write ``copies`` copies of the log at ``source`` (never modified: it is copied first) to
    ``path``. In copy i every identifier (``ID_RE``) in every text column (key, parent_key,
    text, payload, typed columns) has its first five hex digits replaced by i in hex, so copies
    share no key (``runs``: nor hash or attempt), and each copied text starts with
    ``printf('%05x ', i)`` (``text_chars`` grows by ``TAG_CHARS``). ``units``: the same runs,
    each over ``copies`` times the prompts: the unit events (``UNIT_EVENTS``) are copied, each
    next to its copies, in the log's order; the run, template, iteration, stage and training
    events stay single.
    ``runs``: the whole log ``copies`` times, copy i as run ``<run_id>-<i>`` after copy i-1
    (a log of many small runs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".building")
    _remove_db(tmp)
    t0 = time.perf_counter()
    shutil.copyfile(source, tmp)
    con = open_duckdb(tmp, read_only=False)
    try:
        cols = con.execute(
            "SELECT column_name, data_type FROM duckdb_columns() "
            "WHERE table_name = 'events' ORDER BY column_index"
        ).fetchall()
        (max_seq,) = con.execute("SELECT max(seq) FROM events").fetchone()
        exprs = []
        for name, sql_type in cols:
            if name == "seq":
                exprs.append(
                    f"i * {max_seq} + seq"
                    if mode == "runs"
                    else "row_number() OVER (ORDER BY seq, i)"
                )
            elif name == "run_id" and mode == "runs":
                exprs.append("run_id || '-' || i")
            elif name == "text_chars":
                exprs.append(f"CASE WHEN copied THEN text_chars + {TAG_CHARS} ELSE text_chars END")
            elif name != "event_type" and sql_type in ("VARCHAR", "JSON"):
                ids = (
                    f"regexp_replace({name}, '{ID_RE[mode]}', '\\1' || printf('%05x', i) "
                    f"|| '\\2', 'g')::{sql_type}"
                )
                if name == "text":
                    ids = f"CASE WHEN copied THEN printf('%05x ', i) || {ids} ELSE text END"
                exprs.append(ids)
            else:
                exprs.append(name)
        units = ", ".join(f"'{t}'" for t in UNIT_EVENTS)
        copied = "true" if mode == "runs" else f"event_type IN ({units})"
        order = "i, seq" if mode == "runs" else "seq, i"
        con.execute("SET enable_progress_bar = false")
        con.execute("SET preserve_insertion_order = true")
        con.execute(f"CREATE TEMP TABLE src AS SELECT *, {copied} AS copied FROM events")
        con.execute("DELETE FROM events")
        con.execute(
            f"INSERT INTO events SELECT {', '.join(exprs)} "
            f"FROM src, range({copies}) c(i) WHERE i = 0 OR copied ORDER BY {order}"
        )
        con.execute("CHECKPOINT")
    finally:
        con.close()
    EventLog(tmp).close()  # stores this checkout's views in the file, as a writer does
    _remove_db(path)
    tmp.rename(path)
    with contextlib.suppress(FileNotFoundError):
        Path(str(tmp) + ".lock").unlink()
    return {"build_total_s": time.perf_counter() - t0}


def ensure_replicated(
    source: Path, copies: int, mode: str, rebuild: bool
) -> tuple[Path, dict[str, float] | None]:
    path = replicated_log_path(source, copies, mode)
    if path.exists() and not rebuild:
        EventLog(path).close()
        return path, None
    print(f"replicating {source} {copies:,} times ({mode}) into {path} (cached) ...", flush=True)
    info = build_replicated(source, copies, mode, path)
    print("  " + ", ".join(f"{k}={v:.1f}" for k, v in info.items()), flush=True)
    return path, info


def log_shape(path: Path) -> dict[str, Any]:
    """Counts per event type and of the derived pairs (no check: the rows are a real log's)."""
    with connect(path) as con:
        con.execute("SET enable_progress_bar = false")
        counts = dict(con.execute("SELECT event_type, count(*) FROM events GROUP BY 1").fetchall())
        derived = {
            v: con.execute(f"SELECT count(*) FROM {v}").fetchall()[0][0]
            for v in ("meta_targets", "judge_pairs", "actor_pairs")
        }
    return {"counts": counts, "derived": derived, "events": sum(counts.values())}


def status_work() -> tuple[Callable[[Any], Any] | None, str]:
    """What ``mrtui status`` does with its connection (``mrtui.loop.report.status`` with the
    command's defaults), or None and why it cannot be timed."""
    import inspect

    try:
        from mrtui.loop.report import status
    except ImportError as exc:
        return None, f"`mrtui.loop.report.status` could not be imported ({exc})"
    sig = inspect.signature(status)
    kwargs: dict[str, Any] = {}
    if "pairs" in sig.parameters:  # `mrtui status` without --pairs
        kwargs["pairs"] = False
    try:
        sig.bind(None, None, **kwargs)
    except TypeError:
        return None, f"`mrtui.loop.report.status{sig}` has a signature this script does not know"
    how = "`mrtui.loop.report.status(con, None" + "".join(f", {k}={v!r}" for k, v in kwargs.items())
    return (lambda con: status(con, None, **kwargs)), how + ")`"


RAW_SQL = (
    "SELECT count(*), max(hash(COLUMNS(*))) FROM events "
    f"WHERE event_type = '{ev.JudgementRecorded.TYPE}'"
)


def part_b(
    path: Path, repeats: int, shape: dict[str, Any], views: list[str], what: str
) -> tuple[str, bool]:
    """Times every view against the raw scan of the judgement rows, interleaved (raw, view,
    raw, view, ...) so that both see the same load; the ratio is median(view) / median(raw)
    of that view's own runs. Returns the section and whether every view met both targets."""
    open_times = []
    for _ in range(5):
        t0 = time.perf_counter()
        with connect(path):
            t1 = time.perf_counter()
        open_times.append(t1 - t0)
    rows = []
    all_ok = True
    results: dict[str, float] = {}
    ratios: dict[str, float] = {}
    raw_all: list[float] = []
    with connect(path) as con:
        con.execute("SET enable_progress_bar = false")
        con.execute(RAW_SQL).fetchall()  # warm the file cache for the first baseline
        for view in views:
            sql = f"SELECT count(*), max(hash(COLUMNS(*))) FROM {view}"
            ts, raw = [], []
            n = 0
            for _ in range(repeats):
                raw.append(timed(lambda: con.execute(RAW_SQL).fetchall())[0])
                t0 = time.perf_counter()
                out = con.execute(sql).fetchall()[0]
                ts.append(time.perf_counter() - t0)
                n = out[0]
            t, r = median(ts), median(raw)
            raw_all += raw
            ratio = t / r
            ok_s, ok_x = t <= TARGET_VIEW_S, ratio <= TARGET_VIEW_RATIO
            all_ok &= ok_s and ok_x
            results[view], ratios[view] = t, ratio
            rows.append(
                [
                    view,
                    f"{n:,}",
                    f"{t:.2f}",
                    f"{r:.2f}",
                    f"{ratio:.1f}x",
                    verdict(ok_s),
                    verdict(ok_x),
                ]
            )
            print(f"  {view}: {t:.2f} s ({n:,} rows), raw {r:.2f} s, {ratio:.1f}x", flush=True)
    status_fn, status_how = status_work()
    status_times = []
    for _ in range(repeats if status_fn is not None else 0):
        t0 = time.perf_counter()
        with connect(path) as con:
            con.execute("SET enable_progress_bar = false")
            status_fn(con)  # type: ignore[misc]
        status_times.append(time.perf_counter() - t0)
    tbl = table(
        ["view", "rows", "median s", "raw s (same runs)", "view / raw", "≤2 s", "≤4x raw"], rows
    )
    print(tbl)
    c = shape["counts"]
    size = path.stat().st_size / 2**30
    if status_times:
        st_ok = median(status_times) <= 1.0
        status_line = (
            f"`mrtui status`'s work (`connect()` + {status_how}) takes "
            f"{median(status_times):.2f} s (median of {repeats}; {verdict(st_ok)} against the 1 s "
            "first-screen budget, for reference)."
        )
    else:
        status_line = f"`mrtui status`'s work was not timed: {status_how}."
        print("  " + status_line, flush=True)
    worst = max(ratios, key=ratios.get)  # type: ignore[arg-type]
    counts = ", ".join(f"{v:,} {k}" for k, v in sorted(c.items(), key=lambda kv: -kv[1]))
    section = f"""### (b) Views over 1M judgements

{what}, {shape["events"]:,} events, {size:.2f} GiB file: {counts}.
Derived: {shape["derived"]["meta_targets"]:,} meta targets, {shape["derived"]["actor_pairs"]:,}
actor pairs, {shape["derived"]["judge_pairs"]:,} judge pairs. Query per view:
`SELECT count(*), max(hash(COLUMNS(*))) FROM <view>` (hashing every column forces every
column to be computed), on one `connect()` connection, {repeats} repeats, each run of a view
right after a run of the baseline, the raw judgement rows: `{RAW_SQL}` (median
{median(raw_all):.2f} s over all {len(raw_all)} runs).

{tbl}

**Every view ≤ 2 s and ≤ 4× the raw scan of the judgement rows: {verdict(all_ok)}**
(slowest: {max(results, key=results.get)} {max(results.values()):.2f} s; highest ratio:
{worst} {ratios[worst]:.1f}x).

Reader: `connect()` (open read-only + schema check + BT function + temporary views) takes
{median(open_times) * 1000:.0f} ms (median of 5). {status_line}
"""
    return section, all_ok


# ---------------------------------------------------------------------------------------------
# (c) resume planning


def _fast_judge_plan(
    stages: Stages, responses: list[Any], has: Callable[[str], bool]
) -> tuple[int, int]:
    """A prototype (not mrtui code) of judge planning that computes each key from a
    pre-serialised prefix/suffix and checks it before building anything; its keys are
    identical to ``Stages.unit_keys`` (checked on the first response)."""
    key_of = stages.unit_keys("judge")
    todo = done = 0
    for response_key, *_ in responses:
        for j in range(stages.s.n):
            if has(key_of(response_key, j)):
                done += 1
            else:
                todo += 1
    return done, todo


def part_c(path: Path, repeats: int, meta_share: float) -> str:
    scratch = CACHE / "resume-scratch.duckdb"
    _remove_db(scratch)
    shutil.copyfile(path, scratch)
    settings = RunSettings(run_id=RUN_ID, defaults=iteration_settings())
    s = settings.for_iteration(1)
    res: dict[str, list[float]] = {}

    def add(name: str, t: float) -> None:
        res.setdefault(name, []).append(t)

    reports: dict[str, Any] = {}
    try:
        # Opening the writer and loading the keys: cheap, repeated.
        for _ in range(repeats):
            gc.collect()
            t, log = timed(lambda: EventLog(scratch))
            add("open EventLog (writer)", t)
            t, keys = timed(log.completed_keys)
            add("completed_keys()", t)
            n_keys = len(keys)
            log.close()
            del log, keys
        # Planning every stage of the complete iteration, once.
        gc.collect()
        log = EventLog(scratch)
        keys = log.completed_keys()
        runner = Runner(log, settings, backend_factory=_no_backend, resolver=lambda _: MODEL)
        t, prompts = timed(runner.configure)
        add("Runner.configure (prompts query)", t)
        t, templates = timed(lambda: runner.register_templates(s))
        t2, _ = timed(lambda: start_iteration(runner, 1, s, MODEL))
        add("templates + iteration check", t + t2)
        stages = Stages(log, RUN_ID, 1, s, MODEL, templates, _no_backend)
        t, reports["actor"] = timed(lambda: stages.actor(prompts))
        add("actor planning (Stages.actor)", t)
        judge_sha = templates["judge"].sha256
        t, (responses, judged) = timed(
            lambda: runner.responses_to_judge(1, s, judge_sha, MODEL.sha256)
        )
        add("responses query (Runner.responses_to_judge, with the fully-judged check)", t)
        gc.collect()
        t, reports["judge"] = timed(lambda: stages.judge(responses, judged))
        add("judge planning (Stages.judge)", t)
        # every response of the log, for the what-ifs below (per-key planning of all 1M units)
        responses = log.query(
            "SELECT r.response_key, r.prompt_key, p.prompt, r.response FROM responses r "
            "JOIN prompts p ON p.prompt_key = r.prompt_key AND p.run_id = r.run_id "
            "ORDER BY p.seq, r.sample_index"
        )
        t, targets = timed(lambda: runner.meta_targets(1, s))
        add("targets query (Runner.meta_targets)", t)
        part = targets[: max(1, int(len(targets) * meta_share))]
        gc.collect()
        rss0 = rss_mib()
        rss_at_check: list[float] = []
        execute = stages.execute

        def probe(stage: str, planned: Any, build: Any, already: int = 0) -> Any:
            rss_at_check.append(rss_mib())  # RSS with every unit planned
            return execute(stage, planned, build, already)

        stages.execute = probe  # type: ignore[method-assign]
        t, reports["meta"] = timed(lambda: stages.meta(part))
        stages.execute = execute  # type: ignore[method-assign]
        rss1 = rss_at_check[0]
        add("meta planning (Stages.meta)", t)
        meta_units = reports["meta"].planned
        # What-ifs on the same data (diagnostics, not mrtui code paths).
        jkeys = [k for k in keys if k.startswith("judg:")]
        t, todo = timed(lambda: [k for k in jkeys if not log.has(k)])
        assert not todo
        add("what-if: bare has() over the 1M judge keys, precomputed", t)
        gc.collect()
        gc.disable()
        try:
            t, _ = timed(lambda: stages.judge(responses))
        finally:
            gc.enable()
        add("what-if: Stages.judge of every key (no fully-judged check), gc off", t)
        t, (done, todo_n) = timed(lambda: _fast_judge_plan(stages, responses, log.has))
        assert todo_n == 0 and done == len(jkeys), (done, todo_n)
        add("what-if: prefix-cached keys, checked before building units", t)
        log.close()

    finally:
        _remove_db(scratch)
    for stage, r in reports.items():
        assert r.skipped == r.planned and r.done == 0, (stage, r)
    med = {k: median(v) for k, v in res.items()}
    st = make_stages()
    judge_key = st.unit_keys("judge")
    t_key, _ = timed(lambda: [judge_key("resp:" + "0" * 32, j) for j in range(100_000)])
    base = med["open EventLog (writer)"] + med["completed_keys()"]
    target_metric = (
        base
        + med["responses query (Runner.responses_to_judge, with the fully-judged check)"]
        + med["judge planning (Stages.judge)"]
    )
    n_meta = len_meta(path)
    meta_full = med["meta planning (Stages.meta)"] / max(meta_units, 1) * n_meta
    rows = []
    for k, v in med.items():
        note = f"{len(res[k])} runs, median" if len(res[k]) > 1 else "1 run"
        if k.startswith("meta planning"):
            note += (
                f"; {meta_units:,} units ({meta_share:.0%} of targets), full stage ≈ "
                f"{meta_full:.0f} s for all {n_meta:,}"
            )
        rows.append([k, f"{v:.2f}", note])
    tbl = table(["step", "s", "note"], rows)
    print(tbl)
    ok = target_metric <= TARGET_RESUME_S
    units = {k: r.planned for k, r in reports.items()}
    per_unit_kib = (rss1 - rss0) / max(meta_units, 1) * 1024
    fast = base + med["what-if: prefix-cached keys, checked before building units"]
    return f"""### (c) Resume planning over the same log

A copy of the log above, every unit done. Each step runs mrtui's own code: `EventLog(path)`,
`completed_keys()`, then what `Runner.run_iteration` does before generating anything, with a
backend factory that raises (no stage asked for a backend: every planned unit was found in the
log). Units planned: actor {units["actor"]:,}, judge {units["judge"]:,}, meta {meta_units:,}
(the first {meta_share:.0%} of the meta targets, to keep the run short). `completed_keys()`
holds {n_keys:,} keys: the log has ~2.5M events, more than the 1M events the target names.

{tbl}

- **Target: open + `completed_keys()` + planning the judge stage (1,001,000 units, the
  responses query with its fully-judged check included) ≤ 2 s: {verdict(ok)} —
  {target_metric:.2f} s.** Opening and loading the keys alone: {base:.2f} s.
- `Runner.responses_to_judge` finds the responses whose N judgements (this judge template and model)
  are all logged with one SQL aggregate over typed columns, so `Stages.judge` plans keys only
  for the rest. Planning a key for every one of the 1M units (no such check) costs
  {med["what-if: Stages.judge of every key (no fully-judged check), gc off"]:.2f} s: one
  `content_key` for a judge unit costs {t_key / 100_000 * 1e6:.1f} µs (1M keys: ~{t_key * 10:.1f} s)
  and `Stages.judge` also builds a Request, SamplingParams and closure per unit.
- The prototype that caches the constant part of the key and checks each key before building
  anything plans all 1M judge units in
  {med["what-if: prefix-cached keys, checked before building units"]:.2f} s with identical keys
  (open + keys + that: {fast:.2f} s).
- Meta planning renders the full meta-judge prompt (question, response, two judgements) of
  every unit before checking its key: when `execute` starts checking, the process holds
  {rss1 - rss0:,.0f} MiB more than before planning for {meta_units:,} units (about
  {per_unit_kib:.1f} KiB per unit, so ~{per_unit_kib * n_meta / 2**20:.1f} GiB for the whole
  meta stage).
"""


def len_meta(path: Path) -> int:
    with connect(path) as con:
        con.execute("SET enable_progress_bar = false")
        return con.execute(
            "SELECT count(*) FROM events WHERE event_type = ?", [ev.MetaVerdictRecorded.TYPE]
        ).fetchall()[0][0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default="abc", help="parts to run: any of a, b, c")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the cached synthetic log")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--append-events", type=int, default=200_000)
    ap.add_argument("--view-repeats", type=int, default=3)
    ap.add_argument(
        "--views", default="", help="comma-separated views for (b) (default: every public view)"
    )
    ap.add_argument(
        "--replicate",
        type=Path,
        metavar="LOG",
        help="(b) on a real log (copied, never modified) replicated --copies times "
        "instead of the synthetic one; implies --only b",
    )
    ap.add_argument("--copies", type=int, default=10_000, help="copies for --replicate")
    ap.add_argument(
        "--replica",
        choices=REPLICA_MODES,
        default="units",
        help="units: the same runs over --copies times the prompts; runs: --copies runs",
    )
    ap.add_argument(
        "--meta-share",
        type=float,
        default=0.2,
        help="share of meta targets whose planning (c) times (1.0: all)",
    )
    ap.add_argument(
        "--no-write",
        action="store_true",
        help="print the section instead of rewriting bench/RESULTS.md (smoke runs)",
    )
    args = ap.parse_args()
    if args.replicate:
        args.only = "b"
    load_start = load()
    sections = []
    if "a" in args.only:
        print("(a) append rate", flush=True)
        sections.append(part_a(args.append_events, [10_000, 50_000], args.repeats))
    build_info = None
    views = [v for v in args.views.split(",") if v] or view_names()
    views_ok = True
    if args.replicate:
        path, build_info = ensure_replicated(
            args.replicate, args.copies, args.replica, args.rebuild
        )
        shape = log_shape(path)
        what = (
            f"The log `{args.replicate}` replicated {args.copies:,} times, "
            + (
                f"its unit events copied within its runs (each over {args.copies:,}× the prompts)"
                if args.replica == "units"
                else "each copy a run of its own"
            )
            + " (copy i: the first five hex digits of every key"
            + (", hash and attempt" if args.replica == "runs" else "")
            + " = i, each copied text led by i)"
        )
        print("(b) views", flush=True)
        section, views_ok = part_b(path, args.view_repeats, shape, views, what)
        sections.append(section)
    elif "b" in args.only or "c" in args.only:
        path, build_info = ensure_log(args.rebuild)
        shape = check_log(path)
        if "b" in args.only:
            print("(b) views", flush=True)
            what = (
                f"Synthetic complete iteration (K={K}, N={N}; ~3% of judgements unparseable, "
                "every ordered pair of a meta target's valid judgements meta-judged)"
            )
            section, views_ok = part_b(path, args.view_repeats, shape, views, what)
            sections.append(section)
        if "c" in args.only:
            print("(c) resume planning", flush=True)
            sections.append(part_c(path, args.repeats, args.meta_share))
    if build_info:
        sections.append(
            "Build of the log (one-off, cached): "
            + ", ".join(f"{k} {v:.1f}" for k, v in build_info.items())
            + "."
        )
    head = f"""## Event log — `bench/bench_log.py`

- Date: {today()}
- Machine: {machine()}; DuckDB {duckdb.__version__}
- Other work on the machine: {load_start} at start, {load()} at end
- Command: `{command()}`
"""
    name = "bench_log" if args.only == "abc" else f"bench_log-{args.only}"
    if args.replicate:
        name = f"bench_log-replicated-{args.replica}"
    body = head + "\n" + "\n\n".join(sections)
    smoke = (
        N_PROMPTS != DEFAULT_PROMPTS
        and ("b" in args.only or "c" in args.only)
        and not args.replicate
    ) or bool(args.views)
    if args.no_write or smoke:
        why = (
            "--no-write"
            if args.no_write
            else "--views (a subset)"
            if args.views
            else f"MRTUI_BENCH_PROMPTS={N_PROMPTS} (a smoke log)"
        )
        print(f"\n{body}\n(bench/RESULTS.md not written: {why})")
    else:
        update_section(name, body)
    if not views_ok:
        raise SystemExit("(b) a view missed ≤ 2 s or ≤ 4x the raw judgement rows: see the table")


if __name__ == "__main__":
    main()
