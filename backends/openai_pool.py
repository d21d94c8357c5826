"""The OpenAI-compatible backend's endpoint pool: health, probing, and failover scheduling.

Each endpoint (:class:`Endpoint`) gets ``concurrency`` worker threads per batch that take jobs
(one HTTP request's worth of samples, :mod:`~mrtui.backends.openai_jobs`) from the batch's
shared queue, so faster servers take more of them; a worker sends its job in the format of
:mod:`~mrtui.backends.openai_wire`. An attempt (:class:`Outcome`) that times out, is refused
or dropped, or answers HTTP 429 or 5xx is retried with exponential backoff; an endpoint that
fails ``dead_after`` times in a row is taken out, its jobs go back to the queue for the
others, and it is probed again (:mod:`~mrtui.backends.openai_probe`) every ``revive_s``
seconds. Only when no endpoint is left does a job become a (non-permanent) ``Failure``. Every
job is settled exactly once, under the pool's condition, so no result is lost or doubled
however the retries race. Endpoints that go down or come back are kept as ``EndpointEvent``
until drained.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .base import BackendError, EndpointEvent, Failure, Request, Result
from .openai_jobs import Batch, Job, plan
from .openai_probe import Probe, Target, logprobs_answer, probe_server
from .openai_wire import (
    CAPS,
    CONTEXT_RE,
    INVALID_STATUS,
    Caps,
    describe,
    error_message,
    read_choices,
    request_body,
)
from .vllm_backend import temperature_refusal, wants_choice_probs


@dataclass
class Endpoint:
    """One server: its client, what it said it is, and its health (guarded by the pool's
    condition)."""

    url: str  # as shown in provenance
    api: str  # API root (…/v1)
    client: Any  # httpx.Client
    slots: threading.BoundedSemaphore  # the concurrency limit, across batches
    flavor: str | None = None  # None until the endpoint has answered once
    served_model: str | None = None
    server_info: dict[str, Any] = field(default_factory=dict)
    alive: bool = False
    strikes: int = 0  # failures in a row
    cooldown_until: float = 0.0
    next_probe: float = 0.0
    failures: int = 0  # every failed attempt
    rerouted: int = 0  # requests moved to other endpoints after failing here
    served: int = 0  # requests answered
    last_error: str | None = None

    @property
    def caps(self) -> Caps | None:
        return CAPS.get(self.flavor) if self.flavor else None

    def health(self) -> dict[str, Any]:
        """Alive, requests served, failed attempts, requests moved away, the last error."""
        return {
            "alive": self.alive,
            "served": self.served,
            "failures": self.failures,
            "rerouted": self.rerouted,
            "last_error": self.last_error,
        }


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended: ``results`` (done), or a retryable error."""

    results: list[Result] | None = None
    error: str = ""
    strike: bool = False  # the endpoint itself looks unwell
    counts: bool = True  # counts against the request's retries


_PROBE = object()  # what ``_take`` hands a worker whose dead endpoint is due for a probe


@dataclass(frozen=True)
class Policy:
    """How the pool sends: workers per endpoint, retries and their first backoff, failures in
    a row that take an endpoint out and how often it is probed again, and the sampling
    options every request carries (``top_k``, ``top_logprobs``)."""

    concurrency: int
    retries: int
    backoff_s: float
    dead_after: int
    revive_s: float
    top_k: int
    top_logprobs: int


class EndpointPool:
    """The endpoints of one backend and the work spread over them."""

    def __init__(
        self, eps: list[Endpoint], target: Target, policy: Policy, scrub: Callable[[str], str]
    ) -> None:
        self.eps = eps
        self._cond = threading.Condition()  # guards the endpoints, the batches, the events
        self._closed = False
        self._target = target
        self._policy = policy
        self._scrub = scrub  # hides the API key in messages
        self._events: list[EndpointEvent] = []
        # endpoint URL -> None (it lists top logprobs) or why it cannot give choice probs
        self._logprobs_checked: dict[str, str | None] = {}

    def close(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        for ep in self.eps:
            ep.client.close()

    # --- health and probing ----------------------------------------------------------------

    def known_caps(self) -> list[Caps]:
        """What the endpoints that have answered once can do."""
        with self._cond:
            return [ep.caps for ep in self.eps if ep.caps is not None]

    def health(self) -> dict[str, dict[str, Any]]:
        with self._cond:
            return {ep.url: ep.health() for ep in self.eps}

    def drain_events(self) -> list[EndpointEvent]:
        with self._cond:
            events, self._events = self._events, []
        return events

    def connect(self, ep: Endpoint, *, strict: bool = False) -> str | None:
        """Ask ``ep`` what it serves and which flavor it is; None when it answered, else why
        not. A server that refuses the key or serves another model raises ``BackendError``
        with ``strict`` (at start; the pool is closed), and otherwise stays down."""
        try:
            got: Probe | str = probe_server(ep.client, ep.api, ep.url, self._target)
        except BackendError as e:
            if strict:
                self.close()
                raise
            return self._mark_unreachable(ep, str(e))
        if isinstance(got, str):
            return self._mark_unreachable(ep, got)
        with self._cond:
            ep.flavor, ep.served_model = got.flavor, got.served_model
            ep.server_info = got.server_info
            ep.alive, ep.strikes, ep.cooldown_until = True, 0, 0.0
        return None

    def _mark_unreachable(self, ep: Endpoint, error: str) -> str:
        with self._cond:
            ep.alive = False
            ep.last_error = error
            ep.next_probe = time.monotonic() + self._policy.revive_s
        return error

    def top_logprobs_refusal(self, ep: Endpoint) -> str | None:
        """None when ``ep`` lists top logprobs (or could not be asked), else why it cannot
        give choice probabilities. A definite answer is asked for once."""
        with self._cond:
            if ep.url in self._logprobs_checked:
                return self._logprobs_checked[ep.url]
            if not ep.alive:
                return None
        model = ep.served_model or self._target.model
        known, refusal = logprobs_answer(
            ep.client,
            ep.api,
            ep.url,
            model=model,
            top_logprobs=self._policy.top_logprobs,
            scrub=self._scrub,
        )
        if known:
            with self._cond:
                self._logprobs_checked[ep.url] = refusal
        return refusal

    def _revive_due(self) -> None:
        """Before a batch, probe the endpoints that are down and due for a probe (all of them
        when none is up: the servers may have been restarted since)."""
        now = time.monotonic()
        with self._cond:
            force = not any(ep.alive for ep in self.eps)
        for ep in self.eps:
            with self._cond:
                due = not ep.alive and (force or now >= ep.next_probe)
            if due and self.connect(ep) is None:
                with self._cond:
                    self._events.append(EndpointEvent(ep.url, "up", None, ep.rerouted))

    # --- a batch ---------------------------------------------------------------------------

    def run(self, reqs: list[Request]) -> Iterator[Result]:
        """Send ``reqs`` over the endpoints; their results as they finish."""
        if not reqs:
            return
        self._revive_due()
        known = self.known_caps()
        failed, batch = plan(reqs, native_n=bool(known) and all(c.native_n for c in known))
        yield from failed
        with self._cond:
            if not any(self._usable(ep, batch) for ep in self.eps):
                self._fail_queued(batch, self._no_endpoint_error())
        threads = [
            threading.Thread(
                target=self._worker,
                args=(batch, ep, i == 0),
                name=f"mrtui-openai-{ep.url}-{i}",
                daemon=True,
            )
            for ep in self.eps
            for i in range(self._policy.concurrency)
        ]
        for t in threads:
            t.start()
        yielded = 0  # every job is settled once, with exactly one result per sample
        try:
            while yielded < batch.expected:
                yield batch.results.get()
                yielded += 1
        finally:
            batch.stop.set()
            with self._cond:
                self._cond.notify_all()
            if yielded >= batch.expected:
                for t in threads:
                    t.join(timeout=1.0)

    def _usable(self, ep: Endpoint, batch: Batch) -> bool:
        caps = ep.caps
        if not ep.alive or caps is None:
            return False
        return ("native_n" not in batch.needs or caps.native_n) and (
            "prefill" not in batch.needs or caps.prefill
        )

    def _no_endpoint_error(self) -> str:
        last = "; ".join(f"{ep.url}: {ep.last_error or 'down'}" for ep in self.eps)
        return f"no endpoint is up ({last}); rerun to retry"

    # --- workers ---------------------------------------------------------------------------

    def _worker(self, batch: Batch, ep: Endpoint, prober: bool) -> None:
        while True:
            job = self._take(batch, ep, prober)
            if job is None:
                return
            if job is _PROBE:
                self.connect(ep)
                with self._cond:
                    if ep.alive:
                        self._events.append(EndpointEvent(ep.url, "up", None, ep.rerouted))
                    self._cond.notify_all()
                continue
            assert isinstance(job, Job)
            try:
                with ep.slots:
                    outcome = self._attempt(ep, job)
            except Exception as e:  # a bug or a closed client must not lose the job
                outcome = Outcome(error=f"{type(e).__name__}: {e}", counts=True)
            self._settle(batch, ep, job, outcome)

    def _take(self, batch: Batch, ep: Endpoint, prober: bool) -> Job | object | None:
        """The next job for a worker of ``ep``; _PROBE when its dead endpoint is due for a
        probe; None when the batch is over."""
        with self._cond:
            while True:
                if batch.stop.is_set() or batch.open == 0 or self._closed:
                    return None
                now = time.monotonic()
                wait = batch.promote(now)
                if not ep.alive:
                    if prober and now >= ep.next_probe:
                        ep.next_probe = now + self._policy.revive_s
                        return _PROBE
                    wait = min(wait or 1.0, max(0.05, ep.next_probe - now), 1.0)
                elif now < ep.cooldown_until:
                    wait = min(wait or 1.0, ep.cooldown_until - now)
                elif batch.ready and self._usable(ep, batch):
                    job = self._pick(batch, ep, now)
                    if job is not None:
                        return job
                    wait = min(wait or 0.1, 0.1)
                self._cond.wait(timeout=min(wait, 1.0) if wait is not None else 1.0)

    def _pick(self, batch: Batch, ep: Endpoint, now: float) -> Job | None:
        """The first ready job, leaving a job that just failed on ``ep`` to the other
        endpoints for a moment (if there are any)."""
        others = any(self._usable(e, batch) for e in self.eps if e is not ep)
        for i, job in enumerate(batch.ready):
            if not others or job.last_endpoint != ep.url or now >= job.avoid_until:
                del batch.ready[i]
                return job
        return None

    def _settle(self, batch: Batch, ep: Endpoint, job: Job, outcome: Outcome) -> None:
        """Record how ``job`` went on ``ep``: its results, its retry, or its failure."""
        p = self._policy
        now = time.monotonic()
        with self._cond:
            if job.settled:
                return
            if outcome.results is not None:
                ep.served += 1
                ep.strikes = 0
                self._finish(batch, job, outcome.results)
                return
            job.last_error = self._scrub(f"{ep.url}: {outcome.error}")
            job.last_endpoint = ep.url
            job.avoid_until = now + 1.0 + p.backoff_s
            job.moves += 1
            job.attempts += 1 if outcome.counts else 0
            ep.failures += 1
            ep.last_error = self._scrub(outcome.error)
            if outcome.strike:
                ep.strikes += 1
                ep.rerouted += 1
                if ep.strikes >= p.dead_after and ep.alive:
                    ep.alive = False
                    ep.next_probe = now + p.revive_s
                    self._events.append(EndpointEvent(ep.url, "down", ep.last_error, ep.rerouted))
                else:
                    ep.cooldown_until = now + p.backoff_s * 2 ** (ep.strikes - 1)
            limit = p.retries + 1 + p.dead_after * len(self.eps) * 2
            if job.attempts > p.retries or job.moves > limit:
                self._finish(batch, job, self._failures(job, f"gave up: {job.last_error}"))
            elif not any(self._usable(e, batch) for e in self.eps):
                error = self._no_endpoint_error()
                self._finish(batch, job, self._failures(job, error))
                self._fail_queued(batch, error)
            elif outcome.counts:
                batch.delay(job, now + p.backoff_s * 2 ** (job.attempts - 1))
            else:
                batch.ready.appendleft(job)  # the endpoint's trouble, not the request's
            self._cond.notify_all()

    def _finish(self, batch: Batch, job: Job, results: list[Result]) -> None:
        """Settle ``job`` once (the caller holds the condition)."""
        if job.settled:
            return
        job.settled = True
        batch.open -= 1
        for r in results:
            batch.results.put(r)
        self._cond.notify_all()

    def _fail_queued(self, batch: Batch, error: str) -> None:
        for job in batch.queued():
            self._finish(batch, job, self._failures(job, error))

    def _failures(self, job: Job, error: str, *, permanent: bool = False) -> list[Result]:
        wall = time.monotonic() - job.started
        return [
            Failure(
                job.request.id,
                self._scrub(error),
                wall,
                permanent=permanent,
                endpoint=job.last_endpoint,
            )
            for _ in range(job.count)
        ]

    # --- one HTTP request ------------------------------------------------------------------

    def _attempt(self, ep: Endpoint, job: Job) -> Outcome:
        import httpx

        caps = ep.caps
        assert caps is not None and ep.flavor is not None
        vllm_refuses = caps.vllm_sampling and not wants_choice_probs(job.request)
        refusal = temperature_refusal(job.request.params) if vllm_refuses else None
        if refusal is not None:  # an endpoint that was down when generate checked
            job.last_endpoint = ep.url
            error = f"{ep.url} is a vLLM server: {refusal}"
            return Outcome(results=self._failures(job, error, permanent=True))
        body = request_body(
            job.request,
            flavor=ep.flavor,
            caps=caps,
            model=ep.served_model or self._target.model,
            count=job.count,
            seed=job.seed,
            top_k=self._policy.top_k,
            top_logprobs=self._policy.top_logprobs,
        )
        started = time.perf_counter()
        try:
            r = ep.client.post(f"{ep.api}/chat/completions", json=body)
        except httpx.TimeoutException as e:
            return Outcome(error=describe(e), strike=True, counts=True)
        except httpx.HTTPError as e:  # refused, reset, dropped mid-response: the endpoint
            return Outcome(error=describe(e), strike=True, counts=False)
        wall = time.perf_counter() - started
        if r.status_code == 200:
            try:
                results = read_choices(
                    r.json(),
                    job.request,
                    caps=caps,
                    index=job.index,
                    count=job.count,
                    seed=job.seed,
                    url=ep.url,
                    served_model=ep.served_model or self._target.model,
                    wall=wall,
                )
            except (ValueError, KeyError, TypeError, IndexError) as e:
                return Outcome(error=f"malformed response: {type(e).__name__}: {e}")
            return Outcome(results=results)
        job.last_endpoint = ep.url
        message = self._scrub(error_message(r))
        if r.status_code == 429 or r.status_code >= 500:
            return Outcome(
                error=f"HTTP {r.status_code}: {message}", strike=r.status_code in (502, 503, 504)
            )
        error = f"{ep.url} answered HTTP {r.status_code}: {message}"
        if CONTEXT_RE.search(message) is not None:
            error += " (the prompt does not fit the server's context window)"
            permanent = True
        elif r.status_code in INVALID_STATUS:
            error += " (the server says the request is invalid; it is not retried)"
            permanent = True
        else:
            permanent = False
        return Outcome(results=self._failures(job, error, permanent=permanent))
