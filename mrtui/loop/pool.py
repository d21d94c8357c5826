"""Prompt pools: which of the run's prompts each iteration uses.

With ``prompts_per_iteration`` = P > 0 an iteration draws P prompts from the run's pool. The
pool is put in one order by a hash of (seed, prompt key); a disjoint draw takes the first
prompts of that order that no other iteration drew, otherwise the order is salted with the
iteration number and its head is taken. The draw is logged once as ``PromptsDrawn``, so a
resume (or prompts added to the pool later) never changes an iteration's slice.
"""

from __future__ import annotations

import hashlib

from mrtui.store import EventLog
from mrtui.store import events as ev

from .progress import Note, ProgressSink
from .settings import ConfigError, IterationSettings, RunSettings

Prompts = list[tuple[str, str]]  # (prompt key, text)


def check(settings: RunSettings, pool: Prompts) -> None:
    """Refuse, before anything runs, a run whose iterations need more disjoint prompts than
    the pool holds."""
    wanted = [settings.for_iteration(i) for i in range(1, settings.iterations + 1)]
    need = sum(s.prompts_per_iteration for s in wanted if s.prompts_disjoint)
    too_many = any(s.prompts_per_iteration > len(pool) for s in wanted)
    if need > len(pool) or too_many:
        raise ConfigError(
            f"the run's {settings.iterations} iterations draw {need} disjoint prompts "
            f"(prompts_per_iteration) but its pool holds {len(pool)}; add prompts (see "
            "`mrtui prompts import`), lower prompts_per_iteration, or set "
            "prompts_disjoint=false"
        )


def draw(
    log: EventLog,
    run_id: str,
    iteration: int,
    s: IterationSettings,
    pool: Prompts,
    progress: ProgressSink,
) -> Prompts:
    """The iteration's prompts: the whole pool, or its logged (else newly drawn) slice."""
    if s.prompts_per_iteration == 0:
        return pool
    drawn: dict[int, list[str]] = {}
    for it, keys in log.query(
        "SELECT iteration, prompt_keys FROM prompt_draws WHERE run_id = ? ORDER BY seq", [run_id]
    ):
        drawn.setdefault(it, list(keys))
    texts = dict(pool)
    if iteration in drawn:
        return [(k, texts[k]) for k in drawn[iteration] if k in texts]
    used = {k for keys in drawn.values() for k in keys} if s.prompts_disjoint else set()
    salt = "" if s.prompts_disjoint else str(iteration)

    def rank(key: str) -> str:
        return hashlib.sha256(f"{s.seed}\0{salt}\0{key}".encode()).hexdigest()

    keys = sorted((k for k, _ in pool if k not in used), key=rank)[: s.prompts_per_iteration]
    if len(keys) < s.prompts_per_iteration:
        raise ConfigError(
            f"iteration {iteration} draws {s.prompts_per_iteration} prompts but only "
            f"{len(keys)} of the pool's {len(pool)} are left undrawn; add prompts, lower "
            "prompts_per_iteration, or set prompts_disjoint=false"
        )
    record = ev.PromptsDrawn(prompt_keys=keys, pool_size=len(pool), disjoint=s.prompts_disjoint)
    log.append([record.event(run_id, iteration=iteration)])
    progress(Note(f"iteration {iteration} drew {len(keys)} of {len(pool)} prompts"))
    return [(k, texts[k]) for k in keys]
