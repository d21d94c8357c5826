"""The OpenAI-compatible backend's wire format: what goes to a server and how its answers read.

What each flavor of server can do (:data:`CAPS`), the ``POST /v1/chat/completions`` body for
one request (:func:`request_body`: sampling fields, ``n``, an assistant prefix, the constraint
as GBNF, a guided choice or regex, or a JSON schema, and the top-logprobs fields of a
choice-probability request), the results read back from a 200 answer (:func:`read_choices`:
finish-reason aliases, token counts, prompt-cache reuse, JSON-schema answers put back into
our format), the server's words about a failed request (:func:`error_message`), which failures
are the request's own fault (:data:`INVALID_STATUS`, :data:`CONTEXT_RE`), and what a
llama-server's ``/props`` says of it (:func:`server_info`). No state and no I/O here: the
endpoint pool (:mod:`~mrtui.backends.openai_pool`) sends and receives.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from .base import Completion, Failure, FinalLine, Request, Result
from .choice_probs import ChoiceProbs, most_likely
from .constrain import (
    choice_max_tokens,
    choices_gbnf,
    final_line_gbnf,
    final_line_regex,
    off_choices,
    rationale_regex,
)
from .openai_logprobs import read_choice_probs, request_fields
from .vllm_backend import FINISH_REASONS, unfinished, wants_choice_probs


@dataclass(frozen=True)
class Caps:
    """What one flavor of server can do."""

    native_n: bool  # one request carries n samples, seeded seed + i (greedy: see sample_groups)
    constrain: str  # "gbnf" | "structured_outputs" | "json_schema"
    prefill: bool  # continues a final assistant message
    vllm_sampling: bool = False  # vLLM's SamplingParams: a temperature in (0, 0.01) is raised


CAPS: dict[str, Caps] = {
    "vllm": Caps(native_n=True, constrain="structured_outputs", prefill=True, vllm_sampling=True),
    "llama.cpp": Caps(native_n=False, constrain="gbnf", prefill=True),
    "llama-cpp-python": Caps(native_n=False, constrain="gbnf", prefill=False),
    "openai": Caps(native_n=False, constrain="json_schema", prefill=False),
}

# A 4xx whose message says this is a prompt longer than the server's context window.
CONTEXT_RE = re.compile(
    r"context[_ ](length|window|size)|maximum context|max_model_len|prompt is too long|"
    r"exceeds? (the )?(model'?s? )?(maximum|max|available)",
    re.IGNORECASE,
)
# HTTP statuses that say the request itself is invalid: it would fail the same way again.
INVALID_STATUS = (400, 413, 422)
# Finish reasons other servers write for ours.
FINISH_ALIASES = {
    "eos": "stop",
    "stop_sequence": "stop",
    "end_turn": "stop",
    "max_tokens": "length",
}


def request_body(
    req: Request,
    *,
    flavor: str,
    caps: Caps,
    model: str,
    count: int,
    seed: int,
    top_k: int,
    top_logprobs: int,
) -> dict[str, Any]:
    """The chat-completions body asking ``flavor``'s server for ``count`` samples of ``req``
    from ``seed`` (``model``: the name that server serves it under)."""
    p = req.params
    messages: list[dict[str, str]] = [{"role": m.role, "content": m.content} for m in req.messages]
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "temperature": p.temperature,
        "top_p": p.top_p,
        "max_tokens": p.max_tokens,
        "seed": seed,
        "stream": False,
    }
    if p.stop:
        body["stop"] = list(p.stop)
    if count > 1:
        body["n"] = count
    if flavor in ("llama.cpp", "llama-cpp-python"):
        body["seed"] = seed & 0xFFFFFFFF
        body.update(top_k=top_k, min_p=0.0, repeat_penalty=1.0)
    elif flavor == "vllm":
        body.update(
            top_k=top_k if top_k > 0 else -1,
            min_p=0.0,
            repetition_penalty=1.0,
            return_token_ids=True,
        )
    if req.assistant_prefix is not None:
        messages.append({"role": "assistant", "content": req.assistant_prefix})
        body.update(continue_final_message=True, add_generation_prompt=False)
    if wants_choice_probs(req):  # unconstrained: read the top logprobs, not the text
        body.pop("stop", None)
        body.update(request_fields(top_logprobs))
    elif req.choices is not None:
        body["max_tokens"] = choice_max_tokens(req.choices)  # the constraint decides
        if caps.constrain == "gbnf":
            body["grammar"] = choices_gbnf(req.choices)
        elif caps.constrain == "structured_outputs":
            body["structured_outputs"] = {"choice": list(req.choices)}
        else:
            body["max_tokens"] += 16  # the JSON around the value
            body["response_format"] = json_schema(
                "choice", {"value": {"type": "string", "enum": list(req.choices)}}
            )
    elif req.structure is not None:
        spec = req.structure
        if caps.constrain == "gbnf":
            body["grammar"] = final_line_gbnf(spec)
        elif caps.constrain == "structured_outputs":
            body["structured_outputs"] = {"regex": final_line_regex(spec)}
        else:
            body["response_format"] = json_schema(
                "final_line",
                {
                    "rationale": {"type": "string", "pattern": rationale_regex(spec)},
                    "value": {"type": "string", "enum": list(spec.choices)},
                },
            )
    return body


def read_choices(
    data: dict[str, Any],
    req: Request,
    *,
    caps: Caps,
    index: int,
    count: int,
    seed: int,
    url: str,
    served_model: str,
    wall: float,
) -> list[Result]:
    """The results of samples ``index``..``index + count - 1`` of ``req`` (seeded ``seed``
    on) from a 200 answer of the server at ``url``; ``served_model`` when the answer names no
    model. Raises ``ValueError`` (or ``KeyError``, ``TypeError``, ``IndexError``) on an answer
    that is not a chat completion of ``count`` choices."""
    choices = sorted(data["choices"], key=lambda c: int(c.get("index", 0)))
    if len(choices) < count:
        raise ValueError(f"{len(choices)} choices for n={count}")
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
    served = str(data.get("model") or served_model)
    out: list[Result] = []
    for i, choice in enumerate(choices[:count]):
        content = (choice.get("message") or {}).get("content") or ""
        reason = str(choice.get("finish_reason") or "length")
        reason = FINISH_ALIASES.get(reason, reason)
        if reason not in FINISH_REASONS:
            out.append(unfinished(req.id, index + i, reason, wall, by=url, endpoint=url))
            continue
        text = content
        probs: ChoiceProbs | None = None
        if req.choices is not None and wants_choice_probs(req):
            got = read_choice_probs(req.choices, choice, url)
            if isinstance(got, str):
                out.append(Failure(req.id, got, wall, endpoint=url))
                continue
            probs, text, reason = got, most_likely(got[0]), "stop"
        elif caps.constrain == "json_schema" and (req.choices or req.structure) is not None:
            text = from_json(content, req)
        refused = None if req.choices is None else off_choices(text, req.choices)
        if refused is not None:
            out.append(Failure(req.id, f"{refused} ({url})", wall))
            continue
        token_ids = choice.get("token_ids")
        tokens = len(token_ids) if isinstance(token_ids, list) else total_completion // count
        out.append(
            Completion(
                request_id=req.id,
                index=index + i,
                text=text,
                finish_reason=reason,
                prompt_tokens=prompt_tokens,
                completion_tokens=tokens,
                prompt_tokens_evaluated=evaluated,
                seed=seed + i,
                wall_s=wall,
                endpoint=url,
                served_model=served,
                choice_probs=None if probs is None else probs[0],
                choice_mass=None if probs is None else probs[1],
            )
        )
    return out


def json_schema(name: str, properties: dict[str, Any]) -> dict[str, Any]:
    """A strict ``response_format`` of one object with every one of ``properties``."""
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


def from_json(content: str, req: Request) -> str:
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


def error_message(r: Any) -> str:
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


def describe(e: Exception) -> str:
    """An httpx error in one line: its type, and its message if it has one."""
    text = str(e) or ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def server_info(props: dict[str, Any]) -> dict[str, Any]:
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
