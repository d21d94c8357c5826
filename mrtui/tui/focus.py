"""One prompt's details, read from a *scoped* copy of the log.

The prompt's own events (prompt, responses, judgements, verdicts) plus the small run-level ones
are copied into a temporary ``events`` table that shadows the real one on that connection, and
the ordinary views then run over a few hundred rows instead of millions. The views are the same
SQL as everywhere else, so the TUI shows exactly what ``mrtui sql`` would. The one exception is
an iteration that counts position wins per iteration (``weights_scope = 'iteration'``): its
battle needs every verdict of the iteration, so ``LogSource.focus`` reads it from the whole log
(seconds, not milliseconds, on a large log).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from .model import (
    Battle,
    IterationFocus,
    JudgementInfo,
    PromptFocus,
    ResponseInfo,
    Verdict,
)

BULK = ("PromptAdded", "ResponseGenerated", "JudgementRecorded", "MetaVerdictRecorded")


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def scope(con: Any, run_id: str | None, prompt_key: str) -> None:
    """Shadow ``events`` on ``con`` with the events of one prompt plus the run-level ones."""
    db = _ident(con.execute("SELECT current_database()").fetchall()[0][0])
    src = f"{db}.main.events"
    # Two steps: find the rows' seq numbers on narrow columns, then copy whole rows by seq
    # (zone maps on seq make that a few ms; filtering wide rows by key directly is ~20× slower).
    seqs: list[int] = []
    responses: list[str] = []
    for key, seq, etype in con.execute(
        f"SELECT key, seq, event_type FROM {src} WHERE (event_type = 'PromptAdded' AND key = $p)"
        " OR (event_type = 'ResponseGenerated' AND parent_key = $p)",
        {"p": prompt_key},
    ).fetchall():
        seqs.append(seq)
        if etype == "ResponseGenerated":
            responses.append(key)
    if responses:
        listed = ", ".join("'" + k.replace("'", "''") + "'" for k in responses)
        seqs += [
            r[0]
            for r in con.execute(
                f"SELECT seq FROM {src} WHERE event_type IN ('JudgementRecorded', "
                f"'MetaVerdictRecorded') AND parent_key IN ({listed})"
            ).fetchall()
        ]
    bulk = ", ".join(f"'{t}'" for t in BULK)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE events AS
        SELECT * FROM {src} WHERE event_type NOT IN ({bulk}) AND run_id = $run
        UNION ALL SELECT * FROM {src} WHERE seq = ANY($s)
        """,
        {"run": run_id, "s": seqs},
    )


def read_focus(con: Any, run_id: str | None, prompt_key: str) -> PromptFocus:
    """The prompt, its responses with scores and judgements, actor pairs and which response
    each iteration meta-judged; the battles themselves come from :func:`read_battles`."""
    q = lambda sql: con.execute(sql, [run_id]).fetchall()  # noqa: E731
    prow = con.execute(
        "SELECT prompt, source_id, prompt_index FROM prompts WHERE prompt_key = ?",
        [prompt_key],
    ).fetchall()
    text, source_id, index = prow[0] if prow else ("", "", -1)
    focus = PromptFocus(
        prompt_key, index if index is not None else -1, source_id or "", text or "", {}
    )
    scopes = dict(q("SELECT iteration, weights_scope FROM iteration_settings WHERE run_id = ?"))
    for key, it, idx, body, chars, finish, ctoks, mean, var, valid, judged in q(
        "SELECT r.response_key, r.iteration, r.sample_index, r.response, r.response_chars, "
        "r.finish_reason, r.completion_tokens, s.mean_score, s.score_variance, s.valid_count, "
        "s.judgement_count FROM responses r LEFT JOIN response_scores s USING (response_key) "
        "WHERE r.run_id = ? ORDER BY r.iteration, r.sample_index, r.response_key"
    ):
        itf = focus.iterations.setdefault(it, IterationFocus(it, [], None, None))
        itf.responses.append(
            ResponseInfo(
                key,
                it,
                idx,
                body or "",
                chars or 0,
                finish,
                ctoks,
                mean,
                var,
                valid or 0,
                judged or 0,
            )
        )
    by_key = {r.key: r for itf in focus.iterations.values() for r in itf.responses}
    for key, rkey, jidx, score, body, perr, fb, chars, scoring, sampled, probs, mass in q(
        "SELECT judgement_key, response_key, judge_index, score, judgement, parse_error, "
        "fallback_used, judgement_chars, scoring, sampled_score, choice_probs, choice_mass "
        "FROM judgements WHERE run_id = ? ORDER BY judge_index, judgement_key"
    ):
        j = JudgementInfo(key, rkey, jidx, score, body or "", perr, bool(fb), chars or 0)
        j.scoring, j.sampled_score, j.choice_mass = scoring or "sampled", sampled, mass
        j.choice_probs = _probs(probs)
        if rkey in by_key:
            by_key[rkey].judgements.append(j)
    for it, chosen, rejected in q(
        "SELECT iteration, chosen_key, rejected_key FROM actor_pairs WHERE run_id = ?"
    ):
        if it in focus.iterations:
            focus.iterations[it].actor_pair = (chosen, rejected)
            for k, role in ((chosen, "chosen"), (rejected, "rejected")):
                if k in by_key:
                    by_key[k].role = role
    for it, rkey in q("SELECT iteration, response_key FROM meta_targets WHERE run_id = ?"):
        if rkey not in by_key:
            continue
        by_key[rkey].meta_target = True
        focus.iterations[it].battle = Battle(
            rkey,
            scopes.get(it) or "response",
            by_key[rkey].judgements,
            {},
            None,
            None,
            0,
            0,
            None,
            None,
            None,
        )
    return focus


def _probs(value: Any) -> dict[str, float] | None:
    """A ``choice_probs`` MAP as DuckDB hands it over (a dict), or None; a hand-edited log's
    values that are not numbers are left out."""
    if not isinstance(value, dict):
        return None
    out: dict[str, float] = {}
    for k, v in value.items():
        try:
            out[str(k)] = float(v)
        except (TypeError, ValueError):
            continue
    return out


@dataclass
class BattleData:
    """Raw battle rows for some meta-judged responses, applied on the UI thread."""

    verdicts: list[tuple[Any, ...]] = field(default_factory=list)
    battles: list[tuple[Any, ...]] = field(default_factory=list)
    elo: list[tuple[Any, ...]] = field(default_factory=list)
    pairs: list[tuple[Any, ...]] = field(default_factory=list)
    outcomes: list[tuple[Any, ...]] = field(default_factory=list)  # soft b_mn (expected)

    FIELDS: ClassVar[tuple[str, ...]] = ("verdicts", "battles", "elo", "pairs", "outcomes")


def battle_keys(focus: PromptFocus, scope: str | None = None) -> list[str]:
    """The meta-judged responses of ``focus`` (whose weights scope is ``scope``, if given)."""
    return [
        itf.battle.response_key
        for itf in focus.iterations.values()
        if itf.battle and (scope is None or itf.battle.scope == scope)
    ]


def read_battles(con: Any, run_id: str | None, keys: list[str]) -> BattleData:
    """Verdicts, ω, Elo and judge-pair rows of the responses ``keys`` on ``con``."""
    data = BattleData()
    if not keys:
        return data
    args = [run_id, keys]
    data.verdicts = con.execute(
        "SELECT verdict_key, response_key, first_key, second_key, winner, verdict, parse_error, "
        "p_first FROM meta_verdicts WHERE run_id = ? AND list_contains(?, response_key) "
        "ORDER BY seq",
        args,
    ).fetchall()
    data.battles = con.execute(
        "SELECT response_key, any_value(win_1st), any_value(win_2nd), any_value(omega1), "
        "any_value(omega2) FROM judge_battles WHERE run_id = ? AND list_contains(?, response_key) "
        "GROUP BY ALL",
        args,
    ).fetchall()
    data.elo = con.execute(
        "SELECT response_key, judgement_key, elo, wins FROM judgement_elo WHERE run_id = ? "
        "AND list_contains(?, response_key)",
        args,
    ).fetchall()
    data.outcomes = con.execute(
        "SELECT response_key, judgement_m, judgement_n, b_mn FROM judge_battles WHERE run_id = ? "
        "AND list_contains(?, response_key) AND (p_mn IS NOT NULL OR p_nm IS NOT NULL)",
        args,
    ).fetchall()
    data.pairs = con.execute(
        "SELECT response_key, chosen_key, rejected_key, drop_reason FROM judge_pair_candidates "
        "WHERE run_id = ? AND list_contains(?, response_key)",
        args,
    ).fetchall()
    return data


def apply_battles(focus: PromptFocus, data: BattleData) -> None:
    """Fill the battles of ``focus`` from ``data`` (rows of responses ``focus`` has)."""
    battles = {
        itf.battle.response_key: itf.battle for itf in focus.iterations.values() if itf.battle
    }
    for vkey, rkey, first, second, winner, body, perr, p_first in data.verdicts:
        if rkey in battles:
            battles[rkey].verdicts[(first, second)] = Verdict(
                vkey, first, second, winner, body or "", perr, p_first
            )
    for rkey, m, n, b_mn in data.outcomes:
        if rkey in battles and b_mn is not None:
            battles[rkey].outcomes[(m, n)] = b_mn
    for rkey, w1, w2, o1, o2 in data.battles:
        if rkey in battles:
            b = battles[rkey]
            b.win_1st, b.win_2nd, b.omega1, b.omega2 = w1 or 0, w2 or 0, o1, o2
    for rkey, jkey, elo, wins in data.elo:
        for j in battles[rkey].judgements if rkey in battles else []:
            if j.key == jkey:
                j.elo, j.wins = elo, wins
    for rkey, chosen, rejected, reason in data.pairs:
        if rkey in battles:
            b = battles[rkey]
            b.chosen_key, b.rejected_key, b.drop_reason = chosen, rejected, reason
    for b in battles.values():
        b.ready = True
