"""Stratified subsets for ``--limit``: size, determinism, proportions, coverage."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from mrtui.evaluation.subset import stratified, stratum_of

Item = tuple[str, str]  # (stratum, ident)


def _items(sizes: dict[str, int]) -> list[Item]:
    return [(s, f"{s}-{i}") for s, n in sizes.items() for i in range(n)]


def _pick(items: list[Item], limit: int | None, salt: str = "") -> list[Item]:
    return stratified(items, limit, stratum=lambda x: x[0], ident=lambda x: x[1], salt=salt)


SIZES = {"a": 114, "b": 88, "c": 77, "d": 65, "e": 58, "f": 51, "g": 34, "h": 33, "i": 21}


def test_no_limit_or_a_large_one_keeps_everything_in_order() -> None:
    items = _items(SIZES)
    random.Random(1).shuffle(items)
    assert _pick(items, None) == items
    assert _pick(items, len(items)) == items
    assert _pick(items, len(items) + 5) == items
    assert _pick(items, 0) == []


@pytest.mark.parametrize("limit", [1, 5, 9, 10, 50, 100, 540])
def test_exact_size_and_original_order(limit: int) -> None:
    items = _items(SIZES)
    random.Random(limit).shuffle(items)
    picked = _pick(items, limit)
    assert len(picked) == limit == len(set(picked))
    positions = [items.index(x) for x in picked]
    assert positions == sorted(positions)


@pytest.mark.parametrize("limit", [3, 20, 77])
def test_independent_of_input_order(limit: int) -> None:
    items = _items(SIZES)
    first = set(_pick(items, limit))
    for seed in range(5):
        shuffled = items[:]
        random.Random(seed).shuffle(shuffled)
        assert set(_pick(shuffled, limit)) == first


def test_the_salt_changes_the_draw() -> None:
    items = _items(SIZES)
    assert set(_pick(items, 50, salt="x")) != set(_pick(items, 50, salt="y"))
    assert _pick(items, 50, salt="x") == _pick(items, 50, salt="x")


def test_proportional_by_largest_remainder() -> None:
    items = _items({"a": 60, "b": 30, "c": 10})
    assert Counter(s for s, _ in _pick(items, 10)) == {"a": 6, "b": 3, "c": 1}
    # quotas 3.5 / 3.5 / 1.0 with one seat left over: the tie goes to the earlier name
    items = _items({"a": 35, "b": 35, "c": 10})
    assert Counter(s for s, _ in _pick(items, 8)) == {"a": 4, "b": 3, "c": 1}
    for limit in (10, 50, 200):
        got = Counter(s for s, _ in _pick(_items(SIZES), limit))
        total = sum(SIZES.values())
        for s, n in SIZES.items():
            assert abs(got[s] - limit * n / total) < 1.0, (limit, s)


def test_every_stratum_gets_one_while_seats_allow() -> None:
    items = _items({"big": 97, "small": 1, "tiny": 2})
    got = Counter(s for s, _ in _pick(items, 3))
    assert got == {"big": 1, "small": 1, "tiny": 1}
    got = Counter(s for s, _ in _pick(items, 5))
    assert got == {"big": 3, "small": 1, "tiny": 1}
    for limit in range(len(SIZES), 100):
        assert set(s for s, _ in _pick(_items(SIZES), limit)) == set(SIZES)
    # fewer seats than strata: the largest remainders win
    assert Counter(s for s, _ in _pick(items, 1)) == {"big": 1}


def test_nested_within_a_stratum() -> None:
    items = _items({"only": 40})
    previous: set[Item] = set()
    for limit in range(41):
        current = set(_pick(items, limit))
        assert previous <= current
        previous = current


def test_stratum_of_real_records() -> None:
    from mrtui.datasets import DatasetError
    from mrtui.datasets.evalsets import load_eval_set

    try:
        ifeval, alpaca = load_eval_set("ifeval"), load_eval_set("alpaca_eval")
    except DatasetError as exc:
        pytest.skip(str(exc))
    assert stratum_of("ifeval", ifeval[0].record) == "punctuation"
    assert {stratum_of("ifeval", p.record) for p in ifeval} >= {"keywords", "change_case"}
    sources = {"selfinstruct", "oasst", "koala", "helpful_base", "vicuna"}
    assert {stratum_of("alpaca_eval", p.record) for p in alpaca} == sources
    assert stratum_of("mt_bench", {"category": "math", "turns": []}) == "math"
    assert stratum_of("arena_hard", {"category": "hard_prompt"}) == "hard_prompt"
    assert stratum_of("something_else", {}) == "all"
