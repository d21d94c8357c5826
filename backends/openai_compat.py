"""The OpenAI-compatible backend: requests spread over one or more HTTP servers.

Works with vLLM's ``vllm serve``, llama.cpp's ``llama-server``, llama-cpp-python's
``python -m llama_cpp.server``, and other servers or hosted APIs that speak
``POST /v1/chat/completions``. Each endpoint gets ``concurrency`` workers (threads with one
``httpx`` client per endpoint) that take requests from one shared queue, so faster servers take
more of them; results are yielded as they finish, in any order.

Failures: a connection error, a timeout, an HTTP 429 or 5xx is retried with exponential backoff.
An endpoint that fails ``dead_after`` times in a row (refused connections, dropped responses,
timeouts, 502-504) is taken out: what it held goes back to the queue for the other endpoints, and
it is probed again every ``revive_s`` seconds. Only when no endpoint is left does a request
become a (non-permanent) :class:`~mrtui.backends.base.Failure`, which the loop logs as
``RequestFailed`` and a rerun retries. Every job is settled exactly once, so no result is lost
or doubled however the retries race. A request the server calls invalid (HTTP 400, 413, 422;
e.g. a prompt longer than its context, or a setting it refuses) is a permanent failure: it
would fail the same way on every rerun. Other 4xx answers (a refused key, an unknown model)
fail the request for a rerun. Endpoint outages are reported by
:meth:`OpenAICompatBackend.endpoint_events`.

A choice whose ``finish_reason`` is neither "stop" nor "length" (vLLM's "abort", "error",
"repetition", a hosted API's "content_filter", ...) is a Failure naming it, as in the vLLM
backend (:func:`~mrtui.backends.vllm_backend.unfinished`: "abort" and "error" are retried by a
rerun, the rest are permanent). "eos", "end_turn" and "stop_sequence" count as "stop",
"max_tokens" as "length", and a choice without a finish reason as "length".

Sampling goes to the server as asked. Two things vLLM would change are kept from it: greedy
requests (temperature 0) with ``n`` > 1, which vLLM refuses, go as ``n`` requests of one sample
(seeded ``seed + i``, as everywhere else); and a temperature between 0 and 0.01, which vLLM
raises to 0.01, is refused before anything is sent to a vLLM server
(:class:`~mrtui.backends.base.UnsupportedFeature`), since the log records the temperature
asked for. llama.cpp's servers take any temperature >= 0 as it is (0 is greedy).

Choice probabilities (``Request.choice_probs`` with ``choices``) come from the server's top
logprobs at the first generated position (:mod:`~mrtui.backends.openai_logprobs`): the request
goes without its constraint, as one greedy token with ``top_logprobs`` (the backend's option,
20 by default); the answer's text is the most likely choice. A choice outside the listed
tokens counts 0, and an answer that lists none of the choices is a Failure. ``require``
refuses a server that cannot continue an assistant turn (a judge's choice continues its
answer), asks each other endpoint once for top logprobs and refuses one that gives none.
``structure`` requests with ``choice_probs`` are served as without it
(``Completion.choice_probs`` None). A choices request with ``choice_probs`` goes greedy
whatever its sampling settings, one token per sample.

What each server supports (``flavor``; ``auto`` reads ``owned_by`` from ``GET /v1/models``;
logprobs: choice probabilities):

============================  ===========  ===========  ======================  ========  ========
flavor                        ``n`` > 1    seed         choices / structure     prefix    logprobs
============================  ===========  ===========  ======================  ========  ========
``vllm``                      native [1]_  yes          ``structured_outputs``  yes [2]_  yes [5]_
``llama.cpp`` (llama-server)  split [3]_   yes          ``grammar`` (GBNF)      yes [2]_  yes
``llama-cpp-python``          split [3]_   yes          ``grammar`` (GBNF)      no        no [6]_
``openai`` (anything else)    split [3]_   best effort  JSON schema [4]_        no        no [6]_
============================  ===========  ===========  ======================  ========  ========

.. [1] One request with ``n`` and ``seed``: vLLM seeds sample ``i`` with ``seed + i``, which is
   the contract's seed of sample ``i``. Greedy requests are split as in [3]_ (vLLM refuses
   greedy sampling with ``n`` > 1).
.. [2] ``assistant_prefix`` is sent as a final assistant message with
   ``continue_final_message=true, add_generation_prompt=false``.
.. [3] ``n`` separate requests with seeds ``seed + i`` (llama-cpp-python ignores ``n``,
   llama-server refuses it, and a hosted API's samples of one seed are not reproducible one by
   one).
.. [4] ``response_format`` ``json_schema``: an enum for choices; for a
   :class:`~mrtui.backends.base.FinalLine`, a rationale matching its pattern and a value, put
   back together into the format's text.
.. [5] ``top_logprobs`` at most the server's ``--max-logprobs`` (20 by default).
.. [6] Not at a judge's final line, which continues its answer (no prefix): ``require``
   refuses them. A choices request without a prefix is served from their top logprobs where
   they list them (llama-cpp-python does with ``--logits_all``, its default).

The API key comes only from the environment variable named by ``api_key_env`` and is sent as
``Authorization: Bearer``; it is in no option, no info and no error message (server messages
are scrubbed of it).
"""

from __future__ import annotations

import json
import os
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .base import (
    CHOICE_PROBS,
    BackendError,
    BackendInfo,
    ClosingBackend,
    Completion,
    EndpointEvent,
    Failure,
    FinalLine,
    Request,
    Result,
    UnsupportedFeature,
    request_seed,
)
from .choice_probs import ChoiceProbs, most_likely
from .constrain import (
    choice_max_tokens,
    choices_gbnf,
    final_line_gbnf,
    final_line_regex,
    off_choices,
    rationale_regex,
)
from .openai_logprobs import (
    DEFAULT_TOP_LOGPROBS,
    SAMPLED,
    first_position,
    no_logprobs,
    no_prefill,
    probe_body,
    read_choice_probs,
    refused_logprobs,
    request_fields,
)
from .vllm_backend import (
    FINISH_REASONS,
    sample_groups,
    temperature_refusal,
    unfinished,
    wants_choice_probs,
)

BACKEND_NAME = "openai"
INSTALL_HINT = "pip install 'mrtui[openai]'"
PROTOCOL_VERSION = "openai-compat/1"
FLAVORS = ("auto", "vllm", "llama.cpp", "llama-cpp-python", "openai")

# ``owned_by`` of GET /v1/models, as each server writes it.
_OWNERS = {"vllm": "vllm", "llamacpp": "llama.cpp", "me": "llama-cpp-python"}


@dataclass(frozen=True)
class _Caps:
    """What one flavor of server can do."""

    native_n: bool  # one request carries n samples, seeded seed + i (greedy: see sample_groups)
    constrain: str  # "gbnf" | "structured_outputs" | "json_schema"
    prefill: bool  # continues a final assistant message
    vllm_sampling: bool = False  # vLLM's SamplingParams: a temperature in (0, 0.01) is raised


_CAPS: dict[str, _Caps] = {
    "vllm": _Caps(native_n=True, constrain="structured_outputs", prefill=True, vllm_sampling=True),
    "llama.cpp": _Caps(native_n=False, constrain="gbnf", prefill=True),
    "llama-cpp-python": _Caps(native_n=False, constrain="gbnf", prefill=False),
    "openai": _Caps(native_n=False, constrain="json_schema", prefill=False),
}

# A 4xx whose message says this is a prompt longer than the server's context window.
_CONTEXT_RE = re.compile(
    r"context[_ ](length|window|size)|maximum context|max_model_len|prompt is too long|"
    r"exceeds? (the )?(model'?s? )?(maximum|max|available)",
    re.IGNORECASE,
)
# HTTP statuses that say the request itself is invalid: it would fail the same way again.
_INVALID_STATUS = (400, 413, 422)
# Finish reasons other servers write for ours.
_FINISH_ALIASES = {
    "eos": "stop",
    "stop_sequence": "stop",
    "end_turn": "stop",
    "max_tokens": "length",
}
_PROBE_TIMEOUT_S = 10.0


def _import_httpx() -> Any:
    try:
        import httpx
    except ImportError as e:
        raise BackendError(f"the openai backend needs httpx: {INSTALL_HINT}") from e
    return httpx


def _make_client(**kwargs: Any) -> Any:
    """One endpoint's ``httpx.Client`` (tests replace this to put a mock transport in)."""
    return _import_httpx().Client(**kwargs)


def normalize_endpoint(url: str) -> tuple[str, str]:
    """``url`` as shown in provenance, and the API root requests go to (``…/v1``).

    A bare server address gets ``/v1``; a URL with a path is taken as the API root itself
    (``https://api.openai.com/v1``, a proxy's ``/openai/v1``). Credentials, query strings and
    fragments are refused: the key belongs in the environment variable."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BackendError(f"endpoint {url!r} is not an http(s) URL such as http://127.0.0.1:8000")
    if parts.username or parts.password or "@" in parts.netloc:
        raise BackendError(
            "endpoint URLs must not hold credentials (they would be logged); put the API key "
            "in the environment variable named by api_key_env (default OPENAI_API_KEY)"
        )
    if parts.query or parts.fragment:
        raise BackendError(f"endpoint {parts.netloc}: a URL without query string or fragment")
    path = parts.path.rstrip("/")
    shown = urlunsplit((parts.scheme, parts.netloc, path, "", ""))
    return shown, shown if path else shown + "/v1"


# --- endpoints, jobs, batches ------------------------------------------------------------------


@dataclass
class _Endpoint:
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
    def caps(self) -> _Caps | None:
        return _CAPS.get(self.flavor) if self.flavor else None


@dataclass(eq=False)
class _Job:
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


class _Batch:
    """The jobs of one ``generate`` call; guarded by the backend's condition."""

    def __init__(self, jobs: list[_Job], needs: frozenset[str]) -> None:
        self.ready: deque[_Job] = deque(jobs)
        self.delayed: list[tuple[float, int, _Job]] = []
        self.open = len(jobs)
        self.needs = needs
        self.results: queue.SimpleQueue[Result] = queue.SimpleQueue()
        self.stop = threading.Event()
        self._tick = 0

    def delay(self, job: _Job, until: float) -> None:
        self._tick += 1
        self.delayed.append((until, self._tick, job))
        self.delayed.sort(key=lambda d: (d[0], d[1]))

    def promote(self, now: float) -> float | None:
        """Move due delayed jobs to the ready queue; seconds until the next one is due."""
        while self.delayed and self.delayed[0][0] <= now:
            self.ready.append(self.delayed.pop(0)[2])
        return self.delayed[0][0] - now if self.delayed else None

    def queued(self) -> list[_Job]:
        jobs = list(self.ready) + [d[2] for d in self.delayed]
        self.ready.clear()
        self.delayed.clear()
        return jobs


@dataclass(frozen=True)
class _Outcome:
    """How an attempt ended: ``results`` (done), or a retryable error."""

    results: list[Result] | None = None
    error: str = ""
    strike: bool = False  # the endpoint itself looks unwell
    counts: bool = True  # counts against the request's retries


_PROBE = object()  # what ``_take`` hands a worker whose dead endpoint is due for a probe


class OpenAICompatBackend(ClosingBackend):
    """InferenceBackend on one or more OpenAI-compatible HTTP servers."""

    name = BACKEND_NAME
    model_format = "served"  # see registry.model_format

    def __init__(
        self,
        model: str,
        *,
        endpoints: list[str] | str,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 4,
        timeout_s: float = 600.0,
        retries: int = 4,
        backoff_s: float = 0.5,
        flavor: str = "auto",
        served_model: str | None = None,
        top_k: int = 0,
        dead_after: int = 3,
        revive_s: float = 30.0,
        top_logprobs: int = DEFAULT_TOP_LOGPROBS,
    ) -> None:
        """Connect to ``endpoints`` (a URL or a list) serving ``model``.

        ``model`` is matched against the ids each server lists (also by file name); a server
        that lists one model serves it under whatever name. ``served_model`` forces the name
        sent. ``concurrency`` is per endpoint. ``retries`` bounds the retries of one request
        after timeouts and HTTP 429/5xx; ``backoff_s`` is the first retry's delay, doubled
        each time. ``top_k=0`` samples the whole top_p nucleus, as the llama.cpp backend does
        (sent to llama.cpp servers and vLLM; hosted APIs get only standard fields).
        ``top_logprobs`` is how many of the most likely tokens a choice-probability request
        asks for (at most the servers' limit: 20 on vLLM by default and on OpenAI)."""
        httpx = _import_httpx()
        urls = [endpoints] if isinstance(endpoints, str) else list(endpoints)
        if not urls:
            raise BackendError(
                "the openai backend needs at least one endpoint: --endpoint URL (repeatable) "
                "or backend_options.endpoints in the config"
            )
        if flavor not in FLAVORS:
            raise BackendError(f"unknown flavor {flavor!r}; use one of: {', '.join(FLAVORS)}")
        for name, value, low in (
            ("concurrency", concurrency, 1),
            ("retries", retries, 0),
            ("dead_after", dead_after, 1),
            ("top_logprobs", top_logprobs, 1),
        ):
            if value < low:
                raise BackendError(f"{name} must be at least {low}, got {value}")
        if timeout_s <= 0 or backoff_s < 0 or revive_s <= 0:
            raise BackendError("timeout_s and revive_s must be > 0, backoff_s >= 0")
        self._model = model
        self._flavor = flavor
        self._served_model = served_model
        self._concurrency = concurrency
        self._timeout_s = float(timeout_s)
        self._retries = retries
        self._backoff_s = float(backoff_s)
        self._top_k = top_k
        self._dead_after = dead_after
        self._revive_s = float(revive_s)
        self._top_logprobs = top_logprobs
        # endpoint URL -> None (it lists top logprobs) or why it cannot give choice probs
        self._logprobs_checked: dict[str, str | None] = {}
        self._api_key_env = api_key_env
        key = os.environ.get(api_key_env) if api_key_env else None
        self._secret = key or None  # only for scrubbing messages; never shown
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._version = f"{PROTOCOL_VERSION} httpx/{httpx.__version__}"
        self._cond = threading.Condition()
        self._events: list[EndpointEvent] = []
        self._closed = False
        self._eps: list[_Endpoint] = []
        seen: set[str] = set()
        for url in urls:
            shown, api = normalize_endpoint(url)
            if shown in seen:
                raise BackendError(f"endpoint {shown} is listed twice")
            seen.add(shown)
            client = _make_client(
                headers=headers,
                timeout=httpx.Timeout(self._timeout_s, connect=min(10.0, self._timeout_s)),
                limits=httpx.Limits(
                    max_connections=concurrency, max_keepalive_connections=concurrency
                ),
                # proxies and CA bundles from the environment, except on loopback (a proxy
                # there would only be in the way)
                trust_env=urlsplit(shown).hostname not in ("127.0.0.1", "localhost", "::1"),
            )
            self._eps.append(_Endpoint(shown, api, client, threading.BoundedSemaphore(concurrency)))
        errors = [self._connect(ep, strict=True) for ep in self._eps]
        if not any(ep.alive for ep in self._eps):
            self.close()
            raise BackendError(
                "no endpoint answered: "
                + "; ".join(f"{ep.url}: {e}" for ep, e in zip(self._eps, errors, strict=True))
                + " (start the servers, or check --endpoint)"
            )
        flavors = {ep.flavor for ep in self._eps if ep.flavor}
        self._chat_format = "server:" + "+".join(sorted(f for f in flavors if f))

    # --- protocol ------------------------------------------------------------------------

    def info(self) -> BackendInfo:
        with self._cond:
            health = {ep.url: self._health(ep) for ep in self._eps}
        return BackendInfo(
            backend=BACKEND_NAME,
            backend_version=self._version,
            model_id=self._model,
            model_path=None,
            # A remote model cannot be hashed here: the loop cannot check that the servers
            # serve the model it was told about.
            model_sha256=None,
            chat_format=self._chat_format,  # the servers apply their own chat templates
            extra={
                "endpoints": [ep.url for ep in self._eps],
                "flavors": {ep.url: ep.flavor for ep in self._eps},
                "served_models": {ep.url: ep.served_model for ep in self._eps},
                "servers": {ep.url: ep.server_info for ep in self._eps if ep.server_info},
                "health": health,
                "concurrency": self._concurrency,
                "api_key_env": self._api_key_env,
                "api_key_set": self._secret is not None,
                "top_k": self._top_k,
                "top_logprobs": self._top_logprobs,
            },
        )

    def generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        """Check every request against what the servers support (``UnsupportedFeature``
        before anything is sent), then stream the results as they finish."""
        self._check_open()
        reqs = list(requests)
        with self._cond:
            known = [ep.caps for ep in self._eps if ep.caps is not None]
        for req in reqs:
            self._check(req, known)
        return self._generate(reqs)

    def require(self, features: Iterable[str]) -> None:
        """Raise ``UnsupportedFeature`` unless the servers serve every one of ``features``.

        For :data:`~mrtui.backends.base.CHOICE_PROBS`: a server that cannot continue an
        assistant turn (llama_cpp.server, hosted APIs) is refused, since a judge's choice
        continues its answer; each other endpoint that is up is asked once for a token with
        its top logprobs (the answer is remembered), and one that lists none, or refuses the
        request, is refused. An endpoint that is down is not asked: its answers to
        choice-probability requests say so if it lists none."""
        self._check_open()
        for feature in features:
            if feature != CHOICE_PROBS:
                raise UnsupportedFeature(
                    f"the openai backend does not know the feature {feature!r}; it serves: "
                    f"{CHOICE_PROBS}"
                )
            for ep in self._eps:
                caps = ep.caps
                if caps is not None and not caps.prefill:
                    raise UnsupportedFeature(no_prefill(ep.url, str(ep.flavor)))
                refusal = self._top_logprobs_refusal(ep)
                if refusal is not None:
                    raise UnsupportedFeature(refusal)

    def close(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        for ep in self._eps:
            ep.client.close()

    # --- endpoint health -------------------------------------------------------------------

    def endpoint_events(self) -> list[EndpointEvent]:
        """Endpoints that went down or came back since the last call (the loop logs them)."""
        with self._cond:
            events, self._events = self._events, []
        return events

    def endpoint_health(self) -> dict[str, dict[str, Any]]:
        """Per endpoint: alive, requests served, failed attempts, requests moved away, the
        last error."""
        with self._cond:
            return {ep.url: self._health(ep) for ep in self._eps}

    @staticmethod
    def _health(ep: _Endpoint) -> dict[str, Any]:
        return {
            "alive": ep.alive,
            "served": ep.served,
            "failures": ep.failures,
            "rerouted": ep.rerouted,
            "last_error": ep.last_error,
        }

    def _connect(self, ep: _Endpoint, *, strict: bool = False) -> str | None:
        """Ask ``ep`` what it serves and which flavor it is; None when it answered, else why
        not. A server that refuses the key or serves another model raises ``BackendError``
        with ``strict`` (at start), and otherwise stays down."""
        try:
            return self._connect_once(ep)
        except BackendError as e:
            if strict:
                self.close()
                raise
            return self._mark_unreachable(ep, str(e))

    def _connect_once(self, ep: _Endpoint) -> str | None:
        httpx = _import_httpx()
        try:
            r = ep.client.get(f"{ep.api}/models", timeout=_PROBE_TIMEOUT_S)
        except httpx.HTTPError as e:
            return self._mark_unreachable(ep, _describe(e))
        if r.status_code in (401, 403):
            where = f"${self._api_key_env}" if self._api_key_env else "an API key"
            state = "is set" if self._secret else "is not set"
            raise BackendError(
                f"endpoint {ep.url} refused the request (HTTP {r.status_code}); {where} "
                f"{state}: export the server's key there"
            )
        ids: list[str] = []
        owners: set[str] = set()
        if r.status_code == 200:
            try:
                data = r.json().get("data") or []
                ids = [str(m["id"]) for m in data if isinstance(m, dict) and "id" in m]
                owners = {str(m.get("owned_by")) for m in data if isinstance(m, dict)}
            except (ValueError, AttributeError):
                ids = []
        elif r.status_code >= 500:
            return self._mark_unreachable(ep, f"GET /models: HTTP {r.status_code}")
        flavor: str | None
        flavor, props = self._flavor, None
        if flavor == "auto":
            flavor = next((_OWNERS[o] for o in owners if o in _OWNERS), None)
            if flavor is None:  # owned_by says nothing: llama-server answers GET /props
                props = self._props(ep)
                flavor = "openai" if props is None else "llama.cpp"
        served = self._pick_model(ep, ids)
        info: dict[str, Any] = {}
        if flavor == "llama.cpp":
            info = _server_info(props if props is not None else self._props(ep) or {})
        with self._cond:
            ep.flavor, ep.served_model, ep.server_info = flavor, served, info
            ep.alive, ep.strikes, ep.cooldown_until = True, 0, 0.0
        return None

    def _top_logprobs_refusal(self, ep: _Endpoint) -> str | None:
        """None when ``ep`` lists top logprobs (or could not be asked), else why it cannot
        give choice probabilities. A definite answer is asked for once."""
        with self._cond:
            if ep.url in self._logprobs_checked:
                return self._logprobs_checked[ep.url]
            if not ep.alive:
                return None
        httpx = _import_httpx()
        body = probe_body(ep.served_model or self._model, self._top_logprobs)
        try:
            r = ep.client.post(f"{ep.api}/chat/completions", json=body)
        except httpx.HTTPError:
            return None  # down: not known yet
        if r.status_code == 429 or r.status_code >= 500:
            return None
        refusal: str | None = no_logprobs(ep.url)
        if r.status_code == 200:
            try:
                if first_position(r.json()["choices"][0]) is not None:
                    refusal = None
            except (ValueError, KeyError, TypeError, IndexError, AttributeError):
                pass
        else:
            message = self._scrub(_error_message(r))
            refusal = refused_logprobs(ep.url, self._top_logprobs, r.status_code, message)
        with self._cond:
            self._logprobs_checked[ep.url] = refusal
        return refusal

    def _mark_unreachable(self, ep: _Endpoint, error: str) -> str:
        with self._cond:
            ep.alive = False
            ep.last_error = error
            ep.next_probe = time.monotonic() + self._revive_s
        return error

    def _props(self, ep: _Endpoint) -> dict[str, Any] | None:
        """llama-server's ``GET /props``, or None from a server that has none."""
        httpx = _import_httpx()
        root = ep.api[: -len("/v1")] if ep.api.endswith("/v1") else ep.api
        try:
            r = ep.client.get(f"{root}/props", timeout=_PROBE_TIMEOUT_S)
            props = r.json() if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError, TypeError):
            return None
        if not isinstance(props, dict) or "default_generation_settings" not in props:
            return None
        return props

    def _pick_model(self, ep: _Endpoint, ids: list[str]) -> str:
        """The model name to send to ``ep``, from the ids it lists."""
        if self._served_model is not None:
            if ids and self._served_model not in ids:
                raise BackendError(
                    f"endpoint {ep.url} does not serve {self._served_model!r}; it lists: "
                    + ", ".join(ids)
                )
            return self._served_model
        if not ids or self._model in ids:
            return self._model
        by_name = [i for i in ids if Path(i).name == Path(self._model).name]
        if len(by_name) == 1:
            return by_name[0]
        if Path(self._model).is_file() and any(i.endswith(".gguf") for i in ids):
            raise BackendError(
                f"endpoint {ep.url} serves {', '.join(ids)}, not {self._model}: restart it on "
                "that file (a model trained by a later iteration is not served by itself)"
            )
        if len(ids) == 1:
            return ids[0]
        raise BackendError(
            f"endpoint {ep.url} serves several models ({', '.join(ids)}) and none is "
            f"{self._model!r}; pass served_model=NAME in backend_options"
        )

    # --- requests ---------------------------------------------------------------------------

    def _check(self, req: Request, known: list[_Caps]) -> None:
        probs = wants_choice_probs(req)  # sent greedy, whatever its temperature
        refusal = None if probs else temperature_refusal(req.params)
        if refusal is not None and any(c.vllm_sampling for c in known):
            raise UnsupportedFeature(f"request {req.id} (a vLLM server): {refusal}")
        no_prefill = req.assistant_prefix is not None and not all(c.prefill for c in known)
        if no_prefill and probs:
            raise UnsupportedFeature(
                "this server cannot continue a partial assistant turn, which choice "
                "probabilities at a judge's final line need (llama_cpp.server and hosted "
                f"OpenAI APIs have no way to); use vLLM or llama-server, or {SAMPLED}"
            )
        if no_prefill:
            raise UnsupportedFeature(
                "this server cannot continue a partial assistant turn (assistant_prefix, used "
                "by judge_fallback / meta_fallback); llama_cpp.server and hosted OpenAI APIs "
                "have no way to, vLLM and llama-server do. Turn the fallbacks off or use "
                "structured_judging"
            )

    def _generate(self, reqs: list[Request]) -> Iterator[Result]:
        if not reqs:
            return
        self._revive_due()
        with self._cond:
            known = [ep.caps for ep in self._eps if ep.caps is not None]
        native_n = bool(known) and all(c.native_n for c in known)
        jobs: list[_Job] = []
        now = time.monotonic()
        for req in reqs:
            if req.choices is not None and not (req.choices and all(req.choices)):
                yield Failure(req.id, "choices must be non-empty strings", 0.0)
                continue
            base = request_seed(req.params)
            # vLLM: one request with n (greedy samples one by one); elsewhere one per sample
            one_each = [(i, 1) for i in range(req.params.n)]
            native = native_n and not wants_choice_probs(req)  # those go one token each
            groups = sample_groups(req.params) if native else one_each
            jobs.extend(_Job(req, i, count, base + i, now) for i, count in groups)
        needs = frozenset({"native_n"} if any(j.count > 1 for j in jobs) else set()) | (
            frozenset({"prefill"}) if any(r.assistant_prefix is not None for r in reqs) else set()
        )
        batch = _Batch(jobs, needs)
        expected = sum(j.count for j in jobs)
        with self._cond:
            if not any(self._usable(ep, batch) for ep in self._eps):
                self._fail_queued(batch, self._no_endpoint_error())
        threads = [
            threading.Thread(
                target=self._worker,
                args=(batch, ep, i == 0),
                name=f"mrtui-openai-{ep.url}-{i}",
                daemon=True,
            )
            for ep in self._eps
            for i in range(self._concurrency)
        ]
        for t in threads:
            t.start()
        yielded = 0  # every job is settled once, with exactly one result per sample
        try:
            while yielded < expected:
                yield batch.results.get()
                yielded += 1
        finally:
            batch.stop.set()
            with self._cond:
                self._cond.notify_all()
            if yielded >= expected:
                for t in threads:
                    t.join(timeout=1.0)

    def _usable(self, ep: _Endpoint, batch: _Batch) -> bool:
        caps = ep.caps
        if not ep.alive or caps is None:
            return False
        return ("native_n" not in batch.needs or caps.native_n) and (
            "prefill" not in batch.needs or caps.prefill
        )

    def _no_endpoint_error(self) -> str:
        last = "; ".join(f"{ep.url}: {ep.last_error or 'down'}" for ep in self._eps)
        return f"no endpoint is up ({last}); rerun to retry"

    # --- workers ----------------------------------------------------------------------------

    def _worker(self, batch: _Batch, ep: _Endpoint, prober: bool) -> None:
        while True:
            job = self._take(batch, ep, prober)
            if job is None:
                return
            if job is _PROBE:
                self._connect(ep)
                with self._cond:
                    if ep.alive:
                        self._events.append(EndpointEvent(ep.url, "up", None, ep.rerouted))
                    self._cond.notify_all()
                continue
            assert isinstance(job, _Job)
            try:
                with ep.slots:
                    outcome = self._attempt(ep, job)
            except Exception as e:  # a bug or a closed client must not lose the job
                outcome = _Outcome(error=f"{type(e).__name__}: {e}", counts=True)
            self._settle(batch, ep, job, outcome)

    def _take(self, batch: _Batch, ep: _Endpoint, prober: bool) -> _Job | object | None:
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
                        ep.next_probe = now + self._revive_s
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

    def _pick(self, batch: _Batch, ep: _Endpoint, now: float) -> _Job | None:
        """The first ready job, leaving a job that just failed on ``ep`` to the other
        endpoints for a moment (if there are any)."""
        others = any(self._usable(e, batch) for e in self._eps if e is not ep)
        for i, job in enumerate(batch.ready):
            if not others or job.last_endpoint != ep.url or now >= job.avoid_until:
                del batch.ready[i]
                return job
        return None

    def _settle(self, batch: _Batch, ep: _Endpoint, job: _Job, outcome: _Outcome) -> None:
        """Record how ``job`` went on ``ep``: its results, its retry, or its failure."""
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
            job.avoid_until = now + 1.0 + self._backoff_s
            job.moves += 1
            job.attempts += 1 if outcome.counts else 0
            ep.failures += 1
            ep.last_error = self._scrub(outcome.error)
            if outcome.strike:
                ep.strikes += 1
                ep.rerouted += 1
                if ep.strikes >= self._dead_after and ep.alive:
                    ep.alive = False
                    ep.next_probe = now + self._revive_s
                    self._events.append(EndpointEvent(ep.url, "down", ep.last_error, ep.rerouted))
                else:
                    ep.cooldown_until = now + self._backoff_s * 2 ** (ep.strikes - 1)
            limit = self._retries + 1 + self._dead_after * len(self._eps) * 2
            if job.attempts > self._retries or job.moves > limit:
                self._finish(batch, job, self._failures(job, f"gave up: {job.last_error}"))
            elif not any(self._usable(e, batch) for e in self._eps):
                error = self._no_endpoint_error()
                self._finish(batch, job, self._failures(job, error))
                self._fail_queued(batch, error)
            elif outcome.counts:
                batch.delay(job, now + self._backoff_s * 2 ** (job.attempts - 1))
            else:
                batch.ready.appendleft(job)  # the endpoint's trouble, not the request's
            self._cond.notify_all()

    def _finish(self, batch: _Batch, job: _Job, results: list[Result]) -> None:
        """Settle ``job`` once (the caller holds the condition)."""
        if job.settled:
            return
        job.settled = True
        batch.open -= 1
        for r in results:
            batch.results.put(r)
        self._cond.notify_all()

    def _fail_queued(self, batch: _Batch, error: str) -> None:
        for job in batch.queued():
            self._finish(batch, job, self._failures(job, error))

    def _failures(self, job: _Job, error: str, *, permanent: bool = False) -> list[Result]:
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

    def _revive_due(self) -> None:
        """Before a batch, probe the endpoints that are down and due for a probe (all of them
        when none is up: the servers may have been restarted since)."""
        now = time.monotonic()
        with self._cond:
            force = not any(ep.alive for ep in self._eps)
        for ep in self._eps:
            with self._cond:
                due = not ep.alive and (force or now >= ep.next_probe)
            if due and self._connect(ep) is None:
                with self._cond:
                    self._events.append(EndpointEvent(ep.url, "up", None, ep.rerouted))

    # --- one HTTP request ------------------------------------------------------------------

    def _attempt(self, ep: _Endpoint, job: _Job) -> _Outcome:
        httpx = _import_httpx()
        caps = ep.caps
        assert caps is not None and ep.flavor is not None
        vllm_refuses = caps.vllm_sampling and not wants_choice_probs(job.request)
        refusal = temperature_refusal(job.request.params) if vllm_refuses else None
        if refusal is not None:  # an endpoint that was down when generate checked
            job.last_endpoint = ep.url
            error = f"{ep.url} is a vLLM server: {refusal}"
            return _Outcome(results=self._failures(job, error, permanent=True))
        body = self._body(ep.flavor, caps, ep.served_model or self._model, job)
        started = time.perf_counter()
        try:
            r = ep.client.post(f"{ep.api}/chat/completions", json=body)
        except httpx.TimeoutException as e:
            return _Outcome(error=_describe(e), strike=True, counts=True)
        except httpx.HTTPError as e:  # refused, reset, dropped mid-response: the endpoint
            return _Outcome(error=_describe(e), strike=True, counts=False)
        wall = time.perf_counter() - started
        if r.status_code == 200:
            try:
                return _Outcome(results=self._read(ep, job, caps, r.json(), wall))
            except (ValueError, KeyError, TypeError, IndexError) as e:
                return _Outcome(error=f"malformed response: {type(e).__name__}: {e}")
        job.last_endpoint = ep.url
        message = self._scrub(_error_message(r))
        if r.status_code == 429 or r.status_code >= 500:
            return _Outcome(
                error=f"HTTP {r.status_code}: {message}", strike=r.status_code in (502, 503, 504)
            )
        error = f"{ep.url} answered HTTP {r.status_code}: {message}"
        if _CONTEXT_RE.search(message) is not None:
            error += " (the prompt does not fit the server's context window)"
            permanent = True
        elif r.status_code in _INVALID_STATUS:
            error += " (the server says the request is invalid; it is not retried)"
            permanent = True
        else:
            permanent = False
        return _Outcome(results=self._failures(job, error, permanent=permanent))

    def _body(self, flavor: str, caps: _Caps, model: str, job: _Job) -> dict[str, Any]:
        req, p = job.request, job.request.params
        messages: list[dict[str, str]] = [
            {"role": m.role, "content": m.content} for m in req.messages
        ]
        body: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "temperature": p.temperature,
            "top_p": p.top_p,
            "max_tokens": p.max_tokens,
            "seed": job.seed,
            "stream": False,
        }
        if p.stop:
            body["stop"] = list(p.stop)
        if job.count > 1:
            body["n"] = job.count
        if flavor in ("llama.cpp", "llama-cpp-python"):
            body["seed"] = job.seed & 0xFFFFFFFF
            body.update(top_k=self._top_k, min_p=0.0, repeat_penalty=1.0)
        elif flavor == "vllm":
            body.update(
                top_k=self._top_k if self._top_k > 0 else -1,
                min_p=0.0,
                repetition_penalty=1.0,
                return_token_ids=True,
            )
        if req.assistant_prefix is not None:
            messages.append({"role": "assistant", "content": req.assistant_prefix})
            body.update(continue_final_message=True, add_generation_prompt=False)
        if wants_choice_probs(req):  # unconstrained: read the top logprobs, not the text
            body.pop("stop", None)
            body.update(request_fields(self._top_logprobs))
        elif req.choices is not None:
            body["max_tokens"] = choice_max_tokens(req.choices)  # the constraint decides
            if caps.constrain == "gbnf":
                body["grammar"] = choices_gbnf(req.choices)
            elif caps.constrain == "structured_outputs":
                body["structured_outputs"] = {"choice": list(req.choices)}
            else:
                body["max_tokens"] += 16  # the JSON around the value
                body["response_format"] = _json_schema(
                    "choice", {"value": {"type": "string", "enum": list(req.choices)}}
                )
        elif req.structure is not None:
            spec = req.structure
            if caps.constrain == "gbnf":
                body["grammar"] = final_line_gbnf(spec)
            elif caps.constrain == "structured_outputs":
                body["structured_outputs"] = {"regex": final_line_regex(spec)}
            else:
                body["response_format"] = _json_schema(
                    "final_line",
                    {
                        "rationale": {"type": "string", "pattern": rationale_regex(spec)},
                        "value": {"type": "string", "enum": list(spec.choices)},
                    },
                )
        return body

    def _read(
        self, ep: _Endpoint, job: _Job, caps: _Caps, data: dict[str, Any], wall: float
    ) -> list[Result]:
        """The job's results from a 200 response."""
        req = job.request
        choices = sorted(data["choices"], key=lambda c: int(c.get("index", 0)))
        if len(choices) < job.count:
            raise ValueError(f"{len(choices)} choices for n={job.count}")
        usage = data.get("usage") or {}
        prompt_tokens = int(usage.get("prompt_tokens") or 0)
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
        timings = data.get("timings") or {}  # llama-server
        evaluated: int | None = None
        if isinstance(cached, int) and prompt_tokens:
            evaluated = max(0, prompt_tokens - cached)
        elif isinstance(timings.get("prompt_n"), int):
            evaluated = min(int(timings["prompt_n"]), prompt_tokens)
        total_completion = int(usage.get("completion_tokens") or 0)
        served = str(data.get("model") or ep.served_model or self._model)
        out: list[Result] = []
        for i, choice in enumerate(choices[: job.count]):
            content = (choice.get("message") or {}).get("content") or ""
            reason = str(choice.get("finish_reason") or "length")
            reason = _FINISH_ALIASES.get(reason, reason)
            if reason not in FINISH_REASONS:
                out.append(
                    unfinished(req.id, job.index + i, reason, wall, by=ep.url, endpoint=ep.url)
                )
                continue
            text = content
            probs: ChoiceProbs | None = None
            if req.choices is not None and wants_choice_probs(req):
                got = read_choice_probs(req.choices, choice, ep.url)
                if isinstance(got, str):
                    out.append(Failure(req.id, got, wall, endpoint=ep.url))
                    continue
                probs, text, reason = got, most_likely(got[0]), "stop"
            elif caps.constrain == "json_schema" and (req.choices or req.structure) is not None:
                text = _from_json(content, req)
            refused = None if req.choices is None else off_choices(text, req.choices)
            if refused is not None:
                out.append(Failure(req.id, f"{refused} ({ep.url})", wall))
                continue
            token_ids = choice.get("token_ids")
            tokens = (
                len(token_ids) if isinstance(token_ids, list) else total_completion // job.count
            )
            out.append(
                Completion(
                    request_id=req.id,
                    index=job.index + i,
                    text=text,
                    finish_reason=reason,
                    prompt_tokens=prompt_tokens,
                    completion_tokens=tokens,
                    prompt_tokens_evaluated=evaluated,
                    seed=job.seed + i,
                    wall_s=wall,
                    endpoint=ep.url,
                    served_model=served,
                    choice_probs=None if probs is None else probs[0],
                    choice_mass=None if probs is None else probs[1],
                )
            )
        return out

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    # --- extras for tests and tools --------------------------------------------------------

    def flavor_of(self, url: str) -> str | None:
        return next((ep.flavor for ep in self._eps if ep.url == url), None)


def _json_schema(name: str, properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "json_schema",
        "json_schema": {
            "name": name,
            "strict": True,
            "schema": {
                "type": "object",
                "properties": properties,
                "required": list(properties),
                "additionalProperties": False,
            },
        },
    }


def _from_json(content: str, req: Request) -> str:
    """The text of a JSON-schema answer in our format (the raw content if it is no such
    JSON, e.g. cut at max_tokens: the loop's parser then reports it)."""
    try:
        obj = json.loads(content)
    except ValueError:
        return content
    if not isinstance(obj, dict):
        return content
    value = obj.get("value")
    if req.choices is not None:
        return value if isinstance(value, str) else content
    spec: FinalLine | None = req.structure
    rationale = obj.get("rationale")
    if spec is None or not isinstance(value, str) or not isinstance(rationale, str):
        return content
    return f"{spec.label}{rationale}\n{spec.lead}{value}"


def _error_message(r: Any) -> str:
    """The server's own words about a failed request (OpenAI's ``error.message``)."""
    try:
        data = r.json()
    except ValueError:
        return (r.text or "").strip()[:500] or r.reason_phrase
    if isinstance(data, dict):
        err = data.get("error", data.get("detail", data.get("message")))
        if isinstance(err, dict):
            err = err.get("message", err)
        if err is not None:
            return str(err)[:500]
    return str(data)[:500]


def _describe(e: Exception) -> str:
    text = str(e) or ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _server_info(props: dict[str, Any]) -> dict[str, Any]:
    """What a llama-server's ``/props`` says of it, for the backend's info."""
    settings = props.get("default_generation_settings") or {}
    template = props.get("chat_template")
    out: dict[str, Any] = {
        "n_ctx": settings.get("n_ctx"),
        "model_path": props.get("model_path"),
        "build": props.get("build_info"),
    }
    if isinstance(template, str):
        import hashlib

        out["chat_template_sha256"] = hashlib.sha256(template.encode()).hexdigest()
    return {k: v for k, v in out.items() if v is not None}
