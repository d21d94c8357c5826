"""Paired comparison of two evaluated models on the same items: did B do better than A?

Each item (one benchmark prompt) has a value for A and one for B (a pass 1/0, a win in
[0, 1], a 1-10 grade). Only items both have are compared (an inner join on the item; the
rest are counted as unpaired). With d_i = b_i − a_i on the n paired items:

* **difference**: mean(d) = mean(b) − mean(a) over the paired items.
* **interval**: a 95% paired percentile bootstrap: the n items are resampled with replacement
  (an item keeps its A and B values together, so the correlation between the two models on an
  item is kept), mean(d) is recomputed on every replicate, and the interval runs from the 2.5th
  to the 97.5th percentile, with :mod:`.evalstats`'s resample count and chunking. The pairs are
  put in a canonical order first and the stream is seeded by :data:`SEED` and n alone, so the
  same data gives the same interval whatever order (or item names) it came in.
* **p-value** (two-sided, H0: A and B are exchangeable on every item): a paired sign-flip
  (randomisation) test of Σ d. Under H0 each d_i is as likely to be −d_i, so the p-value is the
  share of the 2^m sign patterns of the m non-zero differences whose |Σ ±d_i| reaches the
  observed |Σ d|: enumerated exactly when m ≤ :data:`EXACT_FLIPS`, else estimated from
  :data:`FLIPS` random patterns as (1 + hits) / (1 + FLIPS), which keeps the test valid. It is
  chosen over a bootstrap p-value because it is exact (or valid) at any n, with no normal
  approximation and no re-centring of the bootstrap distribution, which misbehaves at the
  small n of a quick evaluation. For a pass/fail metric it is McNemar's exact test.
* **McNemar** (pass/fail metrics): with g items that A fails and B passes (gained) and l the
  other way round (lost), m = g + l discordant items, the exact two-sided p-value is
  min(1, 2 · P(X ≤ min(g, l))), X ~ Binomial(m, 1/2); 1 when m = 0.
* **minimum detectable difference** (two-sided α, power 1 − β; normal approximation):

      MDE = (z_{1−α/2} + z_{1−β}) · σ_d / √n        n(δ) = ⌈((z_{1−α/2} + z_{1−β}) · σ_d / δ)²⌉

  with z_{0.975} + z_{0.8} = 1.960 + 0.842 = 2.802 at the defaults. σ_d is the sample standard
  deviation of the paired differences (ddof = 1); for a pass/fail metric it is √(m / n), the
  square root of the discordance rate (E[d²] under H0, as in the sample-size formula for
  McNemar's test). With no spread (every d_i equal, or no discordant pair) σ_d is unknown and so
  is the MDE (None).
* **choosing n before any comparison** (:func:`limit_for_target`): for a metric in [0, 1] with A
  and B not negatively correlated on an item, Var(d) ≤ Var(a) + Var(b) ≤ 1/4 + 1/4 =
  :data:`WORST_VARIANCE`; for pass/fail metrics that is two models at 50% that agree only by
  chance (discordance 2·p·(1 − p) = 1/2). Positively correlated models (the usual case: the
  same items are hard for both) need fewer items.

Ratio metrics (IFEval's instruction-level accuracy) are not compared here: their items are
clusters of instructions and would need a cluster-paired statistic; compare item-level metrics.

Imports nothing from mrtui's front end; numpy is imported when a comparison is computed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, replace
from statistics import NormalDist
from typing import Any

from .evalstats import CHUNK_CELLS, PERCENTILES, RESAMPLES, replicates

ALPHA = 0.05  # two-sided
POWER = 0.8
SEED = 0x7061_6972  # with n, the seed of every paired interval and sign-flip estimate
EXACT_FLIPS = 14  # up to this many non-zero differences, every sign pattern is enumerated
FLIPS = 20_000  # random sign patterns otherwise
WORST_VARIANCE = 0.5  # Var(b − a) for metrics in [0, 1], A and B not negatively correlated
TEST_MCNEMAR = "mcnemar-exact"
TEST_SIGN_FLIP = "sign-flip"


@dataclass(frozen=True)
class Paired:
    """A paired comparison of B against A on n items (rates as fractions)."""

    n: int  # items with a value for both
    a: float | None  # mean of A over the paired items
    b: float | None
    difference: float | None  # mean(b − a)
    lo: float | None  # 95% paired bootstrap interval of the difference
    hi: float | None
    p_value: float | None  # two-sided; `test` says which
    test: str
    sd: float | None  # σ_d behind the MDE (√ discordance for pass/fail)
    mde: float | None  # smallest difference found with POWER at ALPHA, at this n
    gained: int | None = None  # pass/fail: items A fails and B passes
    lost: int | None = None  # pass/fail: items A passes and B fails
    only_a: int = 0  # items with a value for A only (left out)
    only_b: int = 0

    def n_for(self, target: float) -> int | None:
        """Paired items needed to detect a difference of ``target`` at this spread."""
        return None if self.sd is None else n_for_mde(self.sd, target)


def _z() -> float:
    normal = NormalDist()
    return normal.inv_cdf(1 - ALPHA / 2) + normal.inv_cdf(POWER)


def mde(sd: float | None, n: int) -> float | None:
    """The minimum detectable difference at n paired items: (z_{1−α/2} + z_{power})·σ_d/√n."""
    if sd is None or n < 1:
        return None
    return _z() * sd / math.sqrt(n)


def n_for_mde(sd: float, target: float) -> int:
    """Paired items needed for an MDE of ``target``: ⌈((z_{1−α/2} + z_{power})·σ_d/δ)²⌉."""
    if target <= 0:
        raise ValueError(f"the target difference must be positive, got {target}")
    return max(1, math.ceil((_z() * sd / target) ** 2 - 1e-9))


def limit_for_target(target: float, variance: float = WORST_VARIANCE) -> int:
    """Items to evaluate for an MDE of ``target`` before any comparison exists: the worst case
    of a metric in [0, 1] (Var(d) = 1/2, see the module docstring) unless told ``variance``."""
    return n_for_mde(math.sqrt(variance), target)


def mcnemar(gained: int, lost: int) -> float:
    """McNemar's exact two-sided p-value from the discordant counts (binomial, p = 1/2)."""
    m = gained + lost
    if m == 0:
        return 1.0
    tail = sum(math.comb(m, k) for k in range(min(gained, lost) + 1))
    outcomes: int = 2**m  # typeshed types int ** int as Any (a negative power is a float)
    return min(1.0, 2 * tail / outcomes)


def sign_flip(d: Any, *, flips: int = FLIPS, seed: Any = None) -> float:
    """Two-sided paired sign-flip p-value of Σ d (exact up to :data:`EXACT_FLIPS` non-zero
    differences, else Monte Carlo, seeded by :data:`SEED` and n)."""
    import numpy as np

    d = np.sort(np.asarray(d, dtype=np.float64).reshape(-1))
    nz = d[d != 0]
    m = len(nz)
    if m == 0:
        return 1.0
    observed = abs(nz.sum())
    slack = 1e-9 * (1.0 + np.abs(nz).sum())  # equal sums up to rounding count as reaching it
    if m <= EXACT_FLIPS:
        bits = (np.arange(2**m)[:, None] >> np.arange(m)) & 1
        sums = np.abs(((2 * bits - 1) * nz).sum(axis=1))
        return float((sums >= observed - slack).mean())
    rng = np.random.default_rng([SEED, len(d)] if seed is None else seed)
    per_chunk = max(1, CHUNK_CELLS // m)
    hits = 0
    for start in range(0, flips, per_chunk):
        signs = rng.integers(0, 2, size=(min(per_chunk, flips - start), m)) * 2 - 1
        hits += int((np.abs((signs * nz).sum(axis=1)) >= observed - slack).sum())
    return (1 + hits) / (1 + flips)


def _bootstrap(d: Any, resamples: int, seed: Any) -> tuple[float, float]:
    import numpy as np

    n = len(d)
    seed = [SEED, n] if seed is None else seed
    reps = replicates(lambda idx: d[idx].mean(axis=1), n, resamples, seed)
    lo, hi = np.percentile(reps, PERCENTILES)
    return float(lo), float(hi)


def paired(
    a: Any,
    b: Any,
    *,
    binary: bool = False,
    resamples: int = RESAMPLES,
    seed: Any = None,
) -> Paired:
    """Compare B with A on aligned items (a[i] and b[i] are the same item); ``binary`` for a
    pass/fail metric (values 0 or 1: McNemar's test and the discordance rate)."""
    import numpy as np

    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if len(a) != len(b):
        raise ValueError(f"a has {len(a)} items but b has {len(b)}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("values must be finite")
    if binary and not np.isin(np.concatenate([a, b]), (0.0, 1.0)).all():
        raise ValueError("a pass/fail comparison needs values 0 or 1")
    test = TEST_MCNEMAR if binary else TEST_SIGN_FLIP
    n = len(a)
    if n == 0:
        return Paired(0, None, None, None, None, None, None, test, None, None)
    order = np.lexsort((b, a))  # a canonical order: the result ignores the input's
    a, b = a[order], b[order]
    d = b - a
    lo, hi = _bootstrap(d, resamples, seed)
    gained = lost = None
    if binary:
        gained, lost = int((d > 0).sum()), int((d < 0).sum())
        p = mcnemar(gained, lost)
        sd = math.sqrt((gained + lost) / n) if gained + lost else None
    else:
        p = sign_flip(d, seed=seed)
        sd = float(d.std(ddof=1)) if n > 1 and d.max() > d.min() else None
    return Paired(
        n=n,
        a=float(a.mean()),
        b=float(b.mean()),
        difference=float(d.mean()),
        lo=lo,
        hi=hi,
        p_value=p,
        test=test,
        sd=sd,
        mde=mde(sd, n),
        gained=gained,
        lost=lost,
    )


def compare(
    a: Mapping[Hashable, float],
    b: Mapping[Hashable, float],
    *,
    binary: bool = False,
    item: Callable[[Any], Hashable] | None = None,
    resamples: int = RESAMPLES,
    seed: Any = None,
) -> Paired:
    """Compare B with A on the keys both have (key -> value). ``item`` maps a key to the item
    it belongs to, when an item has several keys (MT-Bench: (question, turn)): an item's A and
    B values are then the means over its keys that both have, and items are what is
    resampled and counted. Items with no key in common are counted in ``only_a``/``only_b``."""
    item = item or (lambda k: k)
    both = a.keys() & b.keys()
    groups: dict[Hashable, list[Hashable]] = {}
    for k in both:
        groups.setdefault(item(k), []).append(k)
    units = [groups[i] for i in sorted(groups, key=repr)]
    if any(len(g) > 1 for g in units):
        binary = False  # a mean over several units is no longer pass/fail
    result = paired(
        [sum(a[k] for k in g) / len(g) for g in units],
        [sum(b[k] for k in g) / len(g) for g in units],
        binary=binary,
        resamples=resamples,
        seed=seed,
    )
    only_a = len({item(k) for k in a} - groups.keys())
    only_b = len({item(k) for k in b} - groups.keys())
    return replace(result, only_a=only_a, only_b=only_b)
