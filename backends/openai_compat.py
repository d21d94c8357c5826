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

This module holds the backend and its options; the wire format is
:mod:`~mrtui.backends.openai_wire`, asking a server what it is
:mod:`~mrtui.backends.openai_probe`, the endpoints' health and the failover scheduling
:mod:`~mrtui.backends.openai_pool`, and choice probabilities
:mod:`~mrtui.backends.openai_logprobs`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .base import (
    CHOICE_PROBS,
    BackendError,
    BackendInfo,
    ClosingBackend,
    EndpointEvent,
    Request,
    Result,
    UnsupportedFeature,
)
from .openai_logprobs import DEFAULT_TOP_LOGPROBS, SAMPLED, no_prefill
from .openai_pool import Endpoint, EndpointPool, Policy
from .openai_probe import Target
from .openai_wire import Caps
from .optional import require
from .vllm_backend import temperature_refusal, wants_choice_probs

BACKEND_NAME = "openai"
INSTALL_HINT = "pip install 'mrtui[openai]'"
PROTOCOL_VERSION = "openai-compat/1"
FLAVORS = ("auto", "vllm", "llama.cpp", "llama-cpp-python", "openai")


def _import_httpx() -> Any:
    return require("httpx", what="the openai backend", hint=INSTALL_HINT)


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


class OpenAICompatBackend(ClosingBackend):
    """InferenceBackend on one or more OpenAI-compatible HTTP servers."""

    name = BACKEND_NAME
    model_format = "served"  # see InferenceBackend.model_format

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
        self._concurrency = concurrency
        self._top_k = top_k
        self._top_logprobs = top_logprobs
        self._api_key_env = api_key_env
        key = os.environ.get(api_key_env) if api_key_env else None
        self._secret = key or None  # only for scrubbing messages; never shown
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._version = f"{PROTOCOL_VERSION} httpx/{httpx.__version__}"
        self._closed = False
        timeout = float(timeout_s)
        eps: list[Endpoint] = []
        seen: set[str] = set()
        for url in urls:
            shown, api = normalize_endpoint(url)
            if shown in seen:
                raise BackendError(f"endpoint {shown} is listed twice")
            seen.add(shown)
            client = _make_client(
                headers=headers,
                timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
                limits=httpx.Limits(
                    max_connections=concurrency, max_keepalive_connections=concurrency
                ),
                # proxies and CA bundles from the environment, except on loopback (a proxy
                # there would only be in the way)
                trust_env=urlsplit(shown).hostname not in ("127.0.0.1", "localhost", "::1"),
            )
            eps.append(Endpoint(shown, api, client, threading.BoundedSemaphore(concurrency)))
        target = Target(model, served_model, flavor, api_key_env, self._secret is not None)
        policy = Policy(
            concurrency=concurrency,
            retries=retries,
            backoff_s=float(backoff_s),
            dead_after=dead_after,
            revive_s=float(revive_s),
            top_k=top_k,
            top_logprobs=top_logprobs,
        )
        self._pool = EndpointPool(eps, target, policy, self._scrub)
        errors = [self._pool.connect(ep, strict=True) for ep in eps]
        if not any(ep.alive for ep in eps):
            self.close()
            raise BackendError(
                "no endpoint answered: "
                + "; ".join(f"{ep.url}: {e}" for ep, e in zip(eps, errors, strict=True))
                + " (start the servers, or check --endpoint)"
            )
        flavors = {ep.flavor for ep in eps if ep.flavor}
        self._chat_format = "server:" + "+".join(sorted(f for f in flavors if f))

    # --- protocol ------------------------------------------------------------------------

    def info(self) -> BackendInfo:
        eps = self._pool.eps
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
                "endpoints": [ep.url for ep in eps],
                "flavors": {ep.url: ep.flavor for ep in eps},
                "served_models": {ep.url: ep.served_model for ep in eps},
                "servers": {ep.url: ep.server_info for ep in eps if ep.server_info},
                "health": self._pool.health(),
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
        known = self._pool.known_caps()
        for req in reqs:
            _check(req, known)
        return self._pool.run(reqs)

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
            for ep in self._pool.eps:
                caps = ep.caps
                if caps is not None and not caps.prefill:
                    raise UnsupportedFeature(no_prefill(ep.url, str(ep.flavor)))
                refusal = self._pool.top_logprobs_refusal(ep)
                if refusal is not None:
                    raise UnsupportedFeature(refusal)

    def close(self) -> None:
        self._closed = True
        self._pool.close()

    def endpoint_events(self) -> list[EndpointEvent]:
        """Endpoints that went down or came back since the last call (the loop logs them)."""
        return self._pool.drain_events()

    # --- extras for tests and tools --------------------------------------------------------

    def endpoint_health(self) -> dict[str, dict[str, Any]]:
        """Per endpoint: alive, requests served, failed attempts, requests moved away, the
        last error."""
        return self._pool.health()

    def flavor_of(self, url: str) -> str | None:
        return next((ep.flavor for ep in self._pool.eps if ep.url == url), None)

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text


def _check(req: Request, known: list[Caps]) -> None:
    """Refuse ``req`` (``UnsupportedFeature``) when a server that has answered cannot serve
    it as asked."""
    probs = wants_choice_probs(req)  # sent greedy, whatever its temperature
    refusal = None if probs else temperature_refusal(req.params)
    if refusal is not None and any(c.vllm_sampling for c in known):
        raise UnsupportedFeature(f"request {req.id} (a vLLM server): {refusal}")
    prefix_refused = req.assistant_prefix is not None and not all(c.prefill for c in known)
    if prefix_refused and probs:
        raise UnsupportedFeature(
            "this server cannot continue a partial assistant turn, which choice "
            "probabilities at a judge's final line need (llama_cpp.server and hosted "
            f"OpenAI APIs have no way to); use vLLM or llama-server, or {SAMPLED}"
        )
    if prefix_refused:
        raise UnsupportedFeature(
            "this server cannot continue a partial assistant turn (assistant_prefix, used "
            "by judge_fallback / meta_fallback); llama_cpp.server and hosted OpenAI APIs "
            "have no way to, vLLM and llama-server do. Turn the fallbacks off or use "
            "structured_judging"
        )
