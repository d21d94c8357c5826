"""The OpenAI-compatible backend's work: requests cut into HTTP jobs, and one batch's queue.

A request of ``n`` samples becomes one job per sample (seeded ``seed + i``), or, when every
server that has answered is vLLM, the groups of :func:`~mrtui.backends.vllm_backend.sample_groups`
(one request with ``n``; greedy samples one by one). :func:`plan` does that for one
``generate`` call and says what the batch needs of an endpoint (``native_n``: it takes ``n``;
``prefill``: it continues an assistant turn). :class:`Batch` holds the jobs ready to send and
those waiting out a backoff; the endpoint pool (:mod:`~mrtui.backends.openai_pool`) takes and
settles them under its condition.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from dataclasses import dataclass

from .base import Failure, Request, Result, request_seed
from .vllm_backend import sample_groups, wants_choice_probs


@dataclass(eq=False)
class Job:
    """One HTTP request's worth of work: ``count`` samples of ``request`` from ``index``."""

    request: Request
    index: int
    count: int
    seed: int
    started: float
    attempts: int = 0  # failures that count against ``retries``
    moves: int = 0  # every failure, whatever its kind
    settled: bool = False
    last_error: str = ""
    last_endpoint: str | None = None
    avoid_until: float = 0.0  # until then, the endpoint that failed it takes it last


class Batch:
    """The jobs of one ``generate`` call; guarded by the pool's condition."""

    def __init__(self, jobs: list[Job], needs: frozenset[str]) -> None:
        self.ready: deque[Job] = deque(jobs)
        self.delayed: list[tuple[float, int, Job]] = []
        self.open = len(jobs)
        self.expected = sum(j.count for j in jobs)  # results: one per sample
        self.needs = needs
        self.results: queue.SimpleQueue[Result] = queue.SimpleQueue()
        self.stop = threading.Event()
        self._tick = 0

    def delay(self, job: Job, until: float) -> None:
        self._tick += 1
        self.delayed.append((until, self._tick, job))
        self.delayed.sort(key=lambda d: (d[0], d[1]))

    def promote(self, now: float) -> float | None:
        """Move due delayed jobs to the ready queue; seconds until the next one is due."""
        while self.delayed and self.delayed[0][0] <= now:
            self.ready.append(self.delayed.pop(0)[2])
        return self.delayed[0][0] - now if self.delayed else None

    def queued(self) -> list[Job]:
        jobs = list(self.ready) + [d[2] for d in self.delayed]
        self.ready.clear()
        self.delayed.clear()
        return jobs


def plan(reqs: list[Request], native_n: bool) -> tuple[list[Result], Batch]:
    """The batch of jobs for ``reqs`` (``native_n``: the servers take ``n`` as vLLM does),
    and the failures of requests that cannot be sent at all."""
    failed: list[Result] = []
    jobs: list[Job] = []
    now = time.monotonic()
    for req in reqs:
        if req.choices is not None and not (req.choices and all(req.choices)):
            failed.append(Failure(req.id, "choices must be non-empty strings", 0.0))
            continue
        base = request_seed(req.params)
        # vLLM: one request with n (greedy samples one by one); elsewhere one per sample
        one_each = [(i, 1) for i in range(req.params.n)]
        native = native_n and not wants_choice_probs(req)  # those go one token each
        groups = sample_groups(req.params) if native else one_each
        jobs.extend(Job(req, i, count, base + i, now) for i, count in groups)
    needs = frozenset({"native_n"} if any(j.count > 1 for j in jobs) else set()) | (
        frozenset({"prefill"}) if any(r.assistant_prefix is not None for r in reqs) else set()
    )
    return failed, Batch(jobs, needs)
