"""Asking an OpenAI-compatible server what it is: its flavor, the model it serves, its settings.

:func:`probe_server` reads ``GET /v1/models`` (the ids listed and their ``owned_by``, which
names vLLM, llama-server or llama-cpp-python), falls back to llama-server's ``GET /props``
when ``owned_by`` says nothing, and picks the model name to send (:func:`pick_model`). A
refused key or another model raises ``BackendError``; a server that does not answer is a
reason string, and the endpoint pool (:mod:`~mrtui.backends.openai_pool`) marks it down.
:func:`logprobs_answer` asks a server once for top logprobs (``require(CHOICE_PROBS)``).
httpx is imported where it is used (the backend checked at start that it is installed);
nothing here keeps state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .base import BackendError
from .openai_logprobs import first_position, no_logprobs, probe_body, refused_logprobs
from .openai_wire import describe, error_message, server_info

# ``owned_by`` of GET /v1/models, as each server writes it.
OWNERS = {"vllm": "vllm", "llamacpp": "llama.cpp", "me": "llama-cpp-python"}
PROBE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Target:
    """What the backend asks the servers for: ``model`` (or the ``served_model`` name
    forced), on a server of ``flavor`` ("auto": whatever it says it is), with the key from
    ``api_key_env`` (``key_set``: whether that variable is set)."""

    model: str
    served_model: str | None
    flavor: str
    api_key_env: str
    key_set: bool


@dataclass(frozen=True)
class Probe:
    """What a server said of itself."""

    flavor: str
    served_model: str
    server_info: dict[str, Any] = field(default_factory=dict)


def probe_server(client: Any, api: str, url: str, target: Target) -> Probe | str:
    """Ask the server at ``url`` (API root ``api``) what it serves and which flavor it is;
    why not, when it does not answer. Raises ``BackendError`` when it refuses the key or does
    not serve ``target``'s model."""
    import httpx

    try:
        r = client.get(f"{api}/models", timeout=PROBE_TIMEOUT_S)
    except httpx.HTTPError as e:
        return describe(e)
    if r.status_code in (401, 403):
        where = f"${target.api_key_env}" if target.api_key_env else "an API key"
        state = "is set" if target.key_set else "is not set"
        raise BackendError(
            f"endpoint {url} refused the request (HTTP {r.status_code}); {where} "
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
        return f"GET /models: HTTP {r.status_code}"
    flavor: str | None
    flavor, props = target.flavor, None
    if flavor == "auto":
        flavor = next((OWNERS[o] for o in owners if o in OWNERS), None)
        if flavor is None:  # owned_by says nothing: llama-server answers GET /props
            props = server_props(client, api)
            flavor = "openai" if props is None else "llama.cpp"
    served = pick_model(url, ids, target)
    info: dict[str, Any] = {}
    if flavor == "llama.cpp":
        info = server_info(props if props is not None else server_props(client, api) or {})
    return Probe(flavor, served, info)


def server_props(client: Any, api: str) -> dict[str, Any] | None:
    """llama-server's ``GET /props``, or None from a server that has none."""
    import httpx

    root = api[: -len("/v1")] if api.endswith("/v1") else api
    try:
        r = client.get(f"{root}/props", timeout=PROBE_TIMEOUT_S)
        props = r.json() if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError, TypeError):
        return None
    if not isinstance(props, dict) or "default_generation_settings" not in props:
        return None
    return props


def pick_model(url: str, ids: list[str], target: Target) -> str:
    """The model name to send to the server at ``url``, from the ids it lists."""
    model = target.model
    if target.served_model is not None:
        if ids and target.served_model not in ids:
            raise BackendError(
                f"endpoint {url} does not serve {target.served_model!r}; it lists: "
                + ", ".join(ids)
            )
        return target.served_model
    if not ids or model in ids:
        return model
    by_name = [i for i in ids if Path(i).name == Path(model).name]
    if len(by_name) == 1:
        return by_name[0]
    if Path(model).is_file() and any(i.endswith(".gguf") for i in ids):
        raise BackendError(
            f"endpoint {url} serves {', '.join(ids)}, not {model}: restart it on "
            "that file (a model trained by a later iteration is not served by itself)"
        )
    if len(ids) == 1:
        return ids[0]
    raise BackendError(
        f"endpoint {url} serves several models ({', '.join(ids)}) and none is "
        f"{model!r}; pass served_model=NAME in backend_options"
    )


def logprobs_answer(
    client: Any,
    api: str,
    url: str,
    *,
    model: str,
    top_logprobs: int,
    scrub: Callable[[str], str],
) -> tuple[bool, str | None]:
    """Ask the server at ``url`` for one token with its ``top_logprobs`` most likely tokens:
    whether it answered for good (not down or busy), and why it cannot give choice
    probabilities (None: it lists top logprobs). ``scrub`` hides the key in its messages."""
    import httpx

    body = probe_body(model, top_logprobs)
    try:
        r = client.post(f"{api}/chat/completions", json=body)
    except httpx.HTTPError:
        return False, None  # down: not known yet
    if r.status_code == 429 or r.status_code >= 500:
        return False, None
    refusal: str | None = no_logprobs(url)
    if r.status_code == 200:
        try:
            if first_position(r.json()["choices"][0]) is not None:
                refusal = None
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            pass
    else:
        message = scrub(error_message(r))
        refusal = refused_logprobs(url, top_logprobs, r.status_code, message)
    return True, refusal
