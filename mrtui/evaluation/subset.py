"""Deterministic stratified subsets, for ``mrtui eval --limit``.

A subset depends only on the items' strata and identifiers (and a salt), never on the order
they come in: seats go to strata by largest remainder, and inside a stratum the items with
the smallest ``sha256(salt + ident)`` are taken. Within one stratum a larger limit keeps
every item of a smaller one; across strata largest remainder can, rarely, move a seat
(the Alabama paradox), so subsets of different limits are not guaranteed to nest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from typing import Any, TypeVar

T = TypeVar("T")


def _seats(sizes: dict[str, int], limit: int) -> dict[str, int]:
    """``limit`` seats over strata of ``sizes`` (``limit`` < total): largest remainder, ties
    to the earlier name; every stratum gets one while there are seats for all."""
    total = sum(sizes.values())
    quota = {s: Fraction(limit * n, total) for s, n in sizes.items()}
    seats = {s: int(q) for s, q in quota.items()}
    if limit >= len(sizes):
        seats = {s: max(k, 1) for s, k in seats.items()}
    names = sorted(sizes)
    while sum(seats.values()) < limit:  # the largest remainder gets the next seat
        open_ = [s for s in names if seats[s] < sizes[s]]
        seats[max(open_, key=lambda s: (quota[s] - seats[s], -names.index(s)))] += 1
    while sum(seats.values()) > limit:  # minimum seats overshot: the most over-served gives
        givers = [s for s in reversed(names) if seats[s] > 1]
        seats[min(givers, key=lambda s: quota[s] - seats[s])] -= 1
    return seats


def stratified(
    items: Sequence[T],
    limit: int | None,
    *,
    stratum: Callable[[T], str],
    ident: Callable[[T], str],
    salt: str = "",
) -> list[T]:
    """``limit`` items drawn proportionally from each stratum, in their original order (all
    of them when ``limit`` is None or at least ``len(items)``)."""
    if limit is None or limit >= len(items):
        return list(items)
    if limit < 0:
        raise ValueError(f"limit must be at least 0, not {limit}")
    groups: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        groups.setdefault(stratum(item), []).append(index)
    seats = _seats({s: len(g) for s, g in groups.items()}, limit)

    def rank(index: int) -> str:
        return hashlib.sha256((salt + ident(items[index])).encode()).hexdigest()

    chosen = [i for s, g in groups.items() for i in sorted(g, key=rank)[: seats[s]]]
    return [items[i] for i in sorted(chosen)]


def stratum_of(set_name: str, record: Mapping[str, Any]) -> str:
    """The stratum of an evaluation set's record: IFEval by the group of its first
    instruction, AlpacaEval by source data set, MT-Bench and Arena-Hard by category."""
    if set_name == "ifeval":
        return str(record["instruction_id_list"][0]).split(":")[0]
    if set_name == "alpaca_eval":
        return str(record["dataset"])
    if set_name in ("mt_bench", "arena_hard"):
        return str(record["category"])
    return "all"


__all__ = ["stratified", "stratum_of"]
