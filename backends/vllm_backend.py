"""The vLLM backend: one in-process ``vllm.LLM`` runs a whole stage's requests at once.

Written against vLLM 0.33.0 (the version the ``vllm`` extra pins; CUDA only). How our requests
map to vLLM's objects:

- **Prompt.** Each request's messages are rendered with the model's chat template through the
  tokenizer vLLM loaded (``LLM.get_tokenizer().apply_chat_template(..., tokenize=False,
  add_generation_prompt=True)``, or one of our built-in templates with ``chat_format``), the
  ``assistant_prefix`` is appended verbatim, and the prompt goes to vLLM as token ids
  (``{"prompt_token_ids": [...]}``, a ``TokensPrompt``). As in the llama.cpp backend, the
  template's own text is tokenized with its special tokens while message contents and the
  prefix are tokenized as plain text (``encode(..., split_special_tokens=True)``), so a response
  that contains ``<|im_end|>`` cannot close its turn. A template that rewrites contents, or a
  tokenizer without ``split_special_tokens`` (vLLM's Mistral tokenizer), gets the whole prompt
  tokenized at once, as vLLM's own ``LLM.chat`` would. No BOS is added: the template writes it.
- **Sampling.** One ``vllm.SamplingParams`` per request: ``n``, ``temperature``, ``top_p``,
  ``top_k`` (the backend's, 0 = off, as in the OpenAI API), ``max_tokens``, ``seed``, ``stop``.
  vLLM gives sample ``i`` of a seeded request the seed ``seed + i`` (``ParentRequest``), which
  is what every mrtui backend records; a request without a seed gets a fresh one, recorded.
  A request with ``n > 1`` goes to vLLM as one request with ``n`` (the loop itself sends every
  unit as its own ``n = 1`` request with the unit's seed), except a **greedy** one
  (temperature 0): vLLM refuses greedy sampling with ``n > 1`` (``n must be 1 when using
  greedy sampling``), so it is split into ``n`` requests of ``n = 1`` seeded ``seed + i``, as
  the llama.cpp backend runs it. Greedy decoding does not depend on the seed, so its samples
  are copies of one text; they are still ``n`` results, as on every other backend.
  **Temperatures go to vLLM as asked, or not at all.** vLLM 0.33 raises a temperature between
  0 and 0.01 to 0.01 (``SamplingParams.__post_init__``, ``_MAX_TEMP``; only a log line says
  so), and the log records the sampling the loop asked for, so such a request is refused
  before anything runs (:class:`~mrtui.backends.base.UnsupportedFeature`, saying to use 0 or
  at least 0.01). At temperature 0 vLLM sets ``top_p=1, top_k=0, min_p=0`` itself; greedy
  decoding takes the most likely token whatever they are, so that changes nothing.
- **Constraints.** ``choices`` → ``StructuredOutputsParams(choice=[...])`` (``max_tokens``
  becomes the longest choice's bytes + 1, as on llama.cpp); ``structure`` (a
  :class:`~mrtui.backends.base.FinalLine`) → ``StructuredOutputsParams(regex=...)`` from
  :func:`~mrtui.backends.constrain.final_line_regex`. vLLM picks the structured-output engine
  (``auto``: xgrammar, else guidance).
- **Choice probabilities.** A ``choices`` request with ``choice_probs`` goes without its
  constraint (a constraint could change the logprobs vLLM reports) as one greedy token that
  brings back its top logprobs: ``SamplingParams(n=1, temperature=0, max_tokens=1,
  logprobs=top_logprobs)``, one vLLM request per sample. vLLM's logprobs are the model's own
  (``logprobs_mode`` "raw_logprobs", its default), and ``CompletionOutput.logprobs[0]`` maps
  each of the ``top_logprobs`` most likely token ids (and the sampled one) to a ``Logprob``
  with its ``logprob`` and ``decoded_token``; those candidates go to
  :func:`~mrtui.backends.choice_probs.from_candidates`, and the completion's text is the most
  likely choice. A choice outside them counts 0; a sample that lists none of the choices is a
  Failure. ``top_logprobs`` (20 by default) must not exceed the engine's ``max_logprobs``
  (20 by default; raise it with ``engine_options``), which ``require`` checks.
- **Batch.** ``LLM.generate`` is called once for the whole batch with prefix caching on
  (``enable_prefix_caching``), so the N judgements of one response share its prompt's KV
  blocks. ``LLM.generate`` returns when the batch is done, so results come back together at
  the end (in request order), not one by one. If the batch call raises (a constraint vLLM
  rejects, say), each request is retried alone so only the bad one fails.
- **Results.** Each ``CompletionOutput`` becomes a :class:`~mrtui.backends.base.Completion`:
  ``finish_reason`` "stop"/"length" as is; any other finish reason is a
  :class:`~mrtui.backends.base.Failure` naming it (:func:`unfinished`): vLLM's "abort" and
  "error" (a request-level engine error vLLM calls retryable) are retried by a rerun,
  "repetition" (vLLM's repetition detection) and anything else are permanent, since the
  same seeded request would end the same way again. ``completion_tokens`` = ``len(token_ids)``,
  ``prompt_tokens_evaluated`` = prompt tokens − ``RequestOutput.num_cached_tokens`` for a
  one-sample vLLM request (for ``n > 1`` vLLM reports one cache count for all samples, so it
  is None), and ``wall_s`` = the wall time of the batch call the request was part of.
- **Context.** A prompt of ``max_model_len`` tokens or more is a permanent Failure and is not
  sent (vLLM would reject it and end the batch call).

Not supported: GGUF files (vLLM 0.33 has no GGUF loader of its own; it moved to the separate
``vllm-gguf-plugin``, which mrtui does not use), hence also ``hf:...gguf`` references and the
packaged GGUF models: give a Hugging Face repo id or a local folder in HF format. LoRA adapters,
streaming results one by one, and CPU inference are not offered. ``mrtui[vllm]`` needs a CUDA
GPU; vLLM 0.33 wants transformers < 5.21 while ``mrtui[train]`` wants >= 5.24, so install them
in separate environments.
"""

from __future__ import annotations

import gc
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import Any

from .base import (
    CHOICE_PROBS,
    BackendError,
    BackendInfo,
    ClosingBackend,
    Completion,
    Failure,
    Request,
    Result,
    SamplingParams,
    UnsupportedFeature,
    request_seed,
    since,
)
from .chat import ChatPrompt, Tokenizer, admitted, too_long  # noqa: F401 (re-exported)
from .choice_probs import from_candidates, most_likely, none_listed
from .constrain import choice_max_tokens, final_line_regex, off_choices
from .models import PACKAGED_MODELS
from .optional import require

BACKEND_NAME = "vllm"
VLLM_INSTALL_HINT = "pip install 'mrtui[vllm]' (needs a CUDA GPU)"
TOKENIZER_TEMPLATE = "tokenizer"  # chat_format label for "the tokenizer's own chat template"

FINISH_REASONS = ("stop", "length")  # what a Completion's finish_reason can be
# vLLM's finish reasons (vllm.v1.engine.FinishReason) that say the engine, not the request,
# went wrong, so a rerun retries them: "abort" (the request was aborted) and "error" (a
# request-level engine error, retryable per vLLM).
RETRYABLE_FINISH_REASONS = ("abort", "error")
# vLLM 0.33 raises a temperature in (0, MIN_TEMPERATURE) to MIN_TEMPERATURE
# (vllm/sampling_params.py: ``_MAX_TEMP = 1e-2``, applied in ``SamplingParams.__post_init__``).
MIN_TEMPERATURE = 0.01
# Top logprobs a choice-probability request asks for: vLLM's default ``max_logprobs``.
DEFAULT_TOP_LOGPROBS = 20


# ---------------------------------------------------------------------------------------------
# The mapping, as functions of plain data (and of the vLLM classes, passed in), so it is tested
# without vLLM.


def temperature_refusal(params: SamplingParams) -> str | None:
    """Why vLLM would not run ``params`` at the temperature asked for, or None.

    vLLM raises a temperature in (0, 0.01) to 0.01 with only a log line; mrtui logs the
    sampling it asked for, so it sends no such request (this is the message it refuses with)."""
    t = params.temperature
    if not 0 < t < MIN_TEMPERATURE:
        return None
    return (
        f"temperature {t:g} is below vLLM's floor: vLLM raises temperatures between 0 and "
        f"{MIN_TEMPERATURE:g} to {MIN_TEMPERATURE:g}, and the log would record a temperature "
        f"that was not used; set the stage's temperature (actor_temperature, "
        f"judge_temperature, meta_temperature) to 0 for greedy decoding or to at least "
        f"{MIN_TEMPERATURE:g}"
    )


def wants_choice_probs(request: Request) -> bool:
    """Whether ``request`` is answered from the top logprobs (choices with choice_probs):
    one greedy token per sample, whatever its sampling settings."""
    return request.choice_probs and request.choices is not None


def check_temperature(request: Request) -> None:
    """Raise ``UnsupportedFeature`` for a request vLLM would run at another temperature."""
    if wants_choice_probs(request):
        return  # sent greedy
    refusal = temperature_refusal(request.params)
    if refusal is not None:
        raise UnsupportedFeature(f"request {request.id}: {refusal}")


def sample_groups(params: SamplingParams, *, greedy: bool = False) -> list[tuple[int, int]]:
    """How a request's ``n`` samples go to vLLM: (first sample index, samples) per vLLM
    request. One request with ``n``, except greedy with ``n > 1`` (vLLM refuses it; ``greedy``
    says the request goes greedy whatever its temperature), which is ``n`` requests of one
    sample (sample ``i`` seeded ``seed + i`` either way)."""
    if params.n > 1 and (greedy or params.temperature == 0):
        return [(i, 1) for i in range(params.n)]
    return [(0, params.n)]


def unfinished(
    request_id: str,
    index: int,
    reason: str | None,
    wall_s: float,
    *,
    by: str = "vLLM",
    endpoint: str | None = None,
) -> Failure:
    """The Failure of sample ``index`` that ended with neither "stop" nor "length".

    "abort", "error" and no reason at all are retried by a rerun; any other reason
    ("repetition", a hosted API's "content_filter", ...) is permanent, because the same
    request with the same seed would end the same way again."""
    retry = reason is None or reason in RETRYABLE_FINISH_REASONS
    what = "no finish reason" if reason is None else f"finish reason {reason!r}"
    then = (
        "a rerun retries it"
        if retry
        else "not a finished answer, and the same request would end the same way again"
    )
    return Failure(
        request_id,
        f"{by} ended sample {index} with {what}, not 'stop' or 'length' ({then})",
        wall_s,
        permanent=not retry,
        endpoint=endpoint,
    )


def structured_outputs(request: Request) -> dict[str, Any] | None:
    """The ``StructuredOutputsParams`` fields of a request's constraint, or None (also for a
    choice-probability request, which goes unconstrained)."""
    if wants_choice_probs(request):
        return None
    if request.choices is not None:
        return {"choice": list(request.choices)}
    if request.structure is not None:
        return {"regex": final_line_regex(request.structure)}
    return None


def sampling_fields(
    request: Request,
    seed: int,
    *,
    top_k: int = 0,
    n: int | None = None,
    top_logprobs: int = DEFAULT_TOP_LOGPROBS,
) -> dict[str, Any]:
    """The ``vllm.SamplingParams`` fields of a request (without its constraint); ``n`` (the
    request's own by default) is the samples of this vLLM request (see :func:`sample_groups`).
    A choice-probability request is one greedy token with ``top_logprobs`` logprobs."""
    p = request.params
    if wants_choice_probs(request):
        return {
            "n": 1 if n is None else n,
            "temperature": 0.0,
            "top_p": 1.0,
            "top_k": top_k,
            "min_p": 0.0,
            "repetition_penalty": 1.0,
            "max_tokens": 1,
            "seed": seed,
            "stop": [],
            "logprobs": top_logprobs,
        }
    max_tokens = p.max_tokens
    if request.choices is not None:  # the constraint decides the length, as on llama.cpp
        max_tokens = choice_max_tokens(request.choices)
    return {
        "n": p.n if n is None else n,
        "temperature": p.temperature,
        "top_p": p.top_p,
        "top_k": top_k,
        "min_p": 0.0,
        "repetition_penalty": 1.0,
        "max_tokens": max_tokens,
        "seed": seed,
        "stop": list(p.stop),
    }


def to_vllm_sampling_params(
    request: Request,
    seed: int,
    *,
    sampling_params_cls: Callable[..., Any],
    structured_outputs_cls: Callable[..., Any],
    top_k: int = 0,
    n: int | None = None,
    top_logprobs: int = DEFAULT_TOP_LOGPROBS,
) -> Any:
    """A request's ``vllm.SamplingParams`` (the classes are passed in: vLLM's, or test
    doubles)."""
    fields = sampling_fields(request, seed, top_k=top_k, n=n, top_logprobs=top_logprobs)
    constraint = structured_outputs(request)
    if constraint is not None:
        fields["structured_outputs"] = structured_outputs_cls(**constraint)
    return sampling_params_cls(**fields)


def results_from_output(
    request: Request,
    output: Any,
    *,
    seed: int,
    prompt_tokens: int,
    wall_s: float,
    first: int = 0,
    count: int | None = None,
) -> list[Result]:
    """A ``vllm.RequestOutput`` as one Completion (or Failure) per sample, in index order.

    The output holds the request's samples ``first`` .. ``first + count - 1`` (all of them by
    default), the first seeded ``seed``. ``prompt_tokens`` is the count we sent (used when the
    output does not carry its prompt)."""
    count = request.params.n if count is None else count
    sent = getattr(output, "prompt_token_ids", None)
    n_prompt = len(sent) if sent is not None else prompt_tokens
    cached = getattr(output, "num_cached_tokens", None)
    evaluated = None
    if count == 1 and isinstance(cached, int):
        evaluated = min(n_prompt, max(0, n_prompt - cached))
    results: list[Result] = []
    seen: set[int] = set()
    for sample in sorted(output.outputs, key=lambda o: int(o.index)):
        own = int(sample.index)
        index = first + own
        seen.add(own)
        reason = sample.finish_reason
        if reason not in FINISH_REASONS:
            results.append(unfinished(request.id, index, reason, wall_s))
            continue
        text = str(sample.text)
        probs: tuple[dict[str, float], float] | None = None
        if request.choices is not None and wants_choice_probs(request):
            got = choice_probs_of(request.choices, sample)
            if isinstance(got, str):
                results.append(Failure(request.id, got, wall_s))
                continue
            probs, text, reason = got, most_likely(got[0]), "stop"
        refused = None if request.choices is None else off_choices(text, request.choices)
        if refused is not None:
            results.append(Failure(request.id, refused, wall_s))
            continue
        results.append(
            Completion(
                request_id=request.id,
                index=index,
                text=text,
                finish_reason=reason,
                prompt_tokens=n_prompt,
                completion_tokens=len(sample.token_ids),
                prompt_tokens_evaluated=evaluated,
                seed=seed + own,
                wall_s=wall_s,
                choice_probs=None if probs is None else probs[0],
                choice_mass=None if probs is None else probs[1],
            )
        )
    missing = sorted(set(range(count)) - seen)
    results.extend(
        Failure(request.id, f"vLLM returned no sample {first + i}", wall_s) for i in missing
    )
    return results


def choice_probs_of(choices: Sequence[str], sample: Any) -> tuple[dict[str, float], float] | str:
    """The choice distribution at a ``CompletionOutput``'s first generated position (its
    ``logprobs[0]``: token id -> ``Logprob``), or why there is none."""
    logprobs = getattr(sample, "logprobs", None)
    first = logprobs[0] if logprobs else None
    if not first:
        return "vLLM returned no logprobs for the first token, which choice probabilities need"
    candidates = [
        (lp.decoded_token, float(lp.logprob))
        for lp in first.values()
        if isinstance(lp.decoded_token, str)
    ]
    got = from_candidates(choices, candidates)
    return got if got is not None else none_listed(choices, candidates, "vLLM listed")


@dataclass(frozen=True)
class Job:
    """One vLLM request ready to send: its prompt tokens, seed and vLLM sampling parameters.

    It holds ``params.n`` samples of ``request`` from sample ``first`` on (all of them unless
    :func:`sample_groups` split the request); ``seed`` is sample ``first``'s seed."""

    request: Request
    tokens: list[int]
    seed: int
    params: Any
    first: int = 0

    @property
    def count(self) -> int:
        return int(self.params.n)


def run_batch(llm: Any, jobs: Sequence[Job]) -> Iterator[Result]:
    """Send ``jobs`` to ``llm.generate`` in one call and map the outputs back.

    If the batch call raises, each job is sent alone, so only the ones vLLM rejects fail."""
    if not jobs:
        return
    started = perf_counter()
    try:
        outputs = _generate(llm, jobs)
    except Exception:  # one bad request must not fail the batch: find it
        for job in jobs:
            started = perf_counter()
            try:
                (output,) = _generate(llm, [job])
            except Exception as e:
                wall = since(started)
                error = f"vLLM failed: {type(e).__name__}: {e}"
                yield from (Failure(job.request.id, error, wall) for _ in range(job.count))
                continue
            yield from _results(job, output, since(started))
        return
    wall = since(started)
    for job, output in zip(jobs, outputs, strict=True):
        yield from _results(job, output, wall)


def _generate(llm: Any, jobs: Sequence[Job]) -> list[Any]:
    outputs = llm.generate(
        [{"prompt_token_ids": list(j.tokens)} for j in jobs],
        [j.params for j in jobs],
        use_tqdm=False,
    )
    if len(outputs) != len(jobs):
        raise BackendError(f"vLLM returned {len(outputs)} outputs for {len(jobs)} prompts")
    return list(outputs)


def _results(job: Job, output: Any, wall_s: float) -> list[Result]:
    return results_from_output(
        job.request,
        output,
        seed=job.seed,
        prompt_tokens=len(job.tokens),
        wall_s=wall_s,
        first=job.first,
        count=job.count,
    )


# ---------------------------------------------------------------------------------------------
# The backend


def check_model_ref(model: str) -> None:
    """Refuse what vLLM 0.33 cannot load (GGUF files and mrtui's packaged GGUF models) with a
    message that says what to give instead."""
    hint = "give a Hugging Face repo id (e.g. Qwen/Qwen2.5-0.5B-Instruct) or a local HF folder"
    name = model.removeprefix("hf:")
    packaged = PACKAGED_MODELS.get(model)
    if packaged is not None:
        instead = f"--model {packaged.hf_origin}" if packaged.hf_origin else hint
        raise BackendError(
            f"{model!r} is a packaged GGUF model, which vLLM cannot load; use its original "
            f"weights instead: {instead}"
        )
    if name.lower().endswith(".gguf") or model.startswith("hf:"):
        raise BackendError(
            f"vLLM 0.33 has no GGUF loader (it moved to the separate vllm-gguf-plugin, which "
            f"mrtui does not use), so {model!r} cannot be served with --backend vllm; {hint}"
        )


def _template_sha(source: Any) -> str | None:
    if source is None:
        return None
    text = source if isinstance(source, str) else json.dumps(source, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


class VLLMBackend(ClosingBackend):
    """InferenceBackend on an in-process ``vllm.LLM`` (CUDA)."""

    name = BACKEND_NAME
    model_format = "hf"  # see InferenceBackend.model_format

    def __init__(
        self,
        model: str,
        *,
        tensor_parallel_size: int = 1,
        max_model_len: int | None = None,
        gpu_memory_utilization: float = 0.9,
        enable_prefix_caching: bool = True,
        dtype: str = "auto",
        chat_format: str | None = None,
        seed: int = 0,
        top_k: int = 0,
        tokenizer: str | None = None,
        revision: str | None = None,
        enforce_eager: bool = False,
        n_ctx: int | None = None,
        engine_options: Mapping[str, Any] | None = None,
        top_logprobs: int = DEFAULT_TOP_LOGPROBS,
    ) -> None:
        """Start vLLM on ``model`` (a Hugging Face repo id or a local folder in HF format).

        ``n_ctx`` is another name for ``max_model_len`` (what ``--n-ctx`` sets on every
        backend). ``chat_format`` is None for the tokenizer's own chat template, or one of
        the llama.cpp backend's built-in templates (chatml, gemma). ``seed`` seeds vLLM's
        engine; every request still carries its own seed. ``engine_options`` go to
        ``vllm.LLM`` as they are (any other ``EngineArgs`` field). ``top_logprobs`` is how
        many of the most likely tokens a choice-probability request reads (at most the
        engine's ``max_logprobs``)."""
        from .llamacpp import BUILTIN_TEMPLATES

        check_model_ref(model)
        if top_logprobs < 1:
            raise BackendError(f"top_logprobs must be at least 1, got {top_logprobs}")
        if n_ctx is not None and max_model_len is not None and n_ctx != max_model_len:
            raise BackendError(
                f"n_ctx ({n_ctx}) and max_model_len ({max_model_len}) name the same setting; "
                "give one"
            )
        max_model_len = max_model_len if max_model_len is not None else n_ctx
        template: str | None = None
        if chat_format is not None:
            if chat_format not in BUILTIN_TEMPLATES:
                raise BackendError(
                    f"unknown chat_format {chat_format!r}; leave it unset for the tokenizer's "
                    f"own template, or use one of: {', '.join(BUILTIN_TEMPLATES)}"
                )
            template = BUILTIN_TEMPLATES[chat_format]
        path = Path(model).expanduser()
        self._path = str(path.resolve()) if path.exists() else None  # else a Hub repo id
        vllm = require("vllm", what="the vLLM backend", needs="vLLM", hint=VLLM_INSTALL_HINT)
        try:
            from vllm.sampling_params import StructuredOutputsParams
        except ImportError as e:
            raise BackendError(
                f"vLLM {vllm.__version__} has no StructuredOutputsParams; mrtui is written for "
                f"the version its extra pins: {VLLM_INSTALL_HINT}"
            ) from e
        self._structured_cls = StructuredOutputsParams
        self._vllm = vllm
        self._model = model
        self._top_k = top_k
        self._top_logprobs = top_logprobs
        self._options: dict[str, Any] = {
            "tensor_parallel_size": tensor_parallel_size,
            "max_model_len": max_model_len,
            "gpu_memory_utilization": gpu_memory_utilization,
            "enable_prefix_caching": enable_prefix_caching,
            "dtype": dtype,
            "seed": seed,
            "tokenizer": tokenizer,
            "revision": revision,
            "enforce_eager": enforce_eager,
            **dict(engine_options or {}),
        }
        try:
            self._llm: Any = vllm.LLM(self._path or model, **self._options)
        except Exception as e:
            raise BackendError(
                f"vLLM could not start on {model!r} ({type(e).__name__}: {e}); check the model "
                "id or folder, the GPU memory (gpu_memory_utilization, max_model_len) and "
                "tensor_parallel_size"
            ) from e
        self._closed = False
        try:
            tok = self._llm.get_tokenizer()
            own = getattr(tok, "chat_template", None)
            if template is None and not own:
                raise BackendError(
                    f"the tokenizer of {model!r} has no chat template; pass chat_format (one "
                    f"of: {', '.join(BUILTIN_TEMPLATES)})"
                )
            self._chat_format = chat_format or TOKENIZER_TEMPLATE
            self._template_sha = _template_sha(template if template is not None else own)
            self._prompt = ChatPrompt(tok, template)
            self._max_model_len: int = int(self._llm.model_config.max_model_len)
        except BaseException:
            self.close()
            raise

    # --- protocol ------------------------------------------------------------------------

    def info(self) -> BackendInfo:
        extra: dict[str, Any] = {
            "tensor_parallel_size": self._options["tensor_parallel_size"],
            "max_model_len": self._max_model_len,
            "prefix_caching": self._options["enable_prefix_caching"],
            "gpu_memory_utilization": self._options["gpu_memory_utilization"],
            "dtype": self._options["dtype"],
            "tokenizer": self._options["tokenizer"],
            "revision": self._options["revision"],
            "chat_template_sha256": self._template_sha,
            "structured_outputs": "auto (xgrammar, else guidance)",
            "sampler": f"top_k={self._top_k} min_p=0 repetition_penalty=1",
            "top_logprobs": self._top_logprobs,
        }
        return BackendInfo(
            backend=BACKEND_NAME,
            backend_version=str(self._vllm.__version__),
            model_id=self._model,
            model_path=self._path,
            model_sha256=None,  # a repo id or a folder: no single file to hash
            chat_format=self._chat_format,
            extra=extra,
        )

    def generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        """Check every request's temperature (``UnsupportedFeature`` before anything runs),
        render them, send them to vLLM in one batch, yield the results."""
        self._check_open()
        reqs = list(requests)
        for req in reqs:
            check_temperature(req)
        return self._generate(reqs)

    def require(self, features: Iterable[str]) -> None:
        """Raise ``UnsupportedFeature`` unless every one of ``features`` is served:
        :data:`~mrtui.backends.base.CHOICE_PROBS` is, with ``top_logprobs`` within the
        engine's ``max_logprobs``."""
        self._check_open()
        for feature in features:
            if feature != CHOICE_PROBS:
                raise UnsupportedFeature(
                    f"the vLLM backend does not know the feature {feature!r}; it serves: "
                    f"{CHOICE_PROBS}"
                )
            limit = getattr(getattr(self._llm, "model_config", None), "max_logprobs", None)
            if isinstance(limit, int) and 0 <= limit < self._top_logprobs:
                raise UnsupportedFeature(
                    f"choice probabilities read top_logprobs={self._top_logprobs} tokens, more "
                    f"than vLLM's max_logprobs ({limit}); lower top_logprobs or set "
                    f"engine_options = {{ max_logprobs = {self._top_logprobs} }}"
                )

    def _generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        jobs: list[Job] = []
        for item in admitted(requests, self._prompt.tokens, self._max_model_len):
            if isinstance(item, Failure):
                yield item
                continue
            req, tokens, started = item
            seed = request_seed(req.params)
            try:
                jobs += [
                    Job(req, tokens, seed + first, self._params(req, seed + first, count), first)
                    for first, count in sample_groups(req.params, greedy=wants_choice_probs(req))
                ]
            except Exception as e:  # vLLM rejects a setting
                error = f"vLLM rejects the sampling settings: {e}"
                wall = since(started)
                yield from (
                    Failure(req.id, error, wall, permanent=True) for _ in range(req.params.n)
                )
                continue
        yield from run_batch(self._llm, jobs)

    def _params(self, req: Request, seed: int, n: int) -> Any:
        return to_vllm_sampling_params(
            req,
            seed,
            sampling_params_cls=self._vllm.SamplingParams,
            structured_outputs_cls=self._structured_cls,
            top_k=self._top_k,
            n=n,
            top_logprobs=self._top_logprobs,
        )

    def close(self) -> None:
        """Stop vLLM's engine and give back the GPU memory it held."""
        if getattr(self, "_closed", True):
            return
        self._closed = True
        llm, self._llm = self._llm, None
        engine_core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        try:
            if engine_core is not None:
                engine_core.shutdown()
        except Exception:
            pass
        del llm, engine_core
        gc.collect()
        try:
            from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

            cleanup_dist_env_and_memory()
        except Exception:
            pass
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:
            pass
