"""The transformers backend: an HF causal LM in this process, on CUDA or the CPU, batched.

How our requests map to the model (the decoding itself is :mod:`.transformers_engine`):

- **Model.** A local HF folder (``check_hf_folder``), a GGUF reference (converted once and
  cached by :func:`.hf_models.materialize_hf`) or a Hub repo id (``[hf:]OWNER/REPO``, loaded
  by ``AutoModelForCausalLM``/``AutoTokenizer``; needs network). On CUDA when there is one,
  else the CPU; bfloat16 on CUDA and float32 on the CPU unless ``dtype`` says otherwise.
- **Prompt.** The tokenizer's chat template (or a built-in one, ``chat_format``) renders the
  messages with the generation prompt and ``assistant_prefix`` is appended verbatim, through
  the same :class:`.chat.ChatPrompt` as vLLM: message contents and the prefix never
  become special tokens.
- **Batch.** Every sample (``n`` per request, seeded ``seed + index`` as on every backend) is
  a small program of steps, generations and scorings (:class:`.transformers_engine.DecodeSpec`,
  :class:`~.transformers_engine.ScoreSpec`). Steps are run in batches of up to ``batch_size``
  (generations sorted by prompt length, so batches pad little) and each result is yielded as
  soon as the batch that finishes it does. A batch that raises is run again one step at a time,
  so only a step that fails alone becomes a Failure.
- **Sampling.** Temperature, then top_p (vLLM's order; no top_k), one ``torch.Generator`` per
  sample; temperature 0 is greedy. ``stop`` cuts the text before the first stop string
  (finish "stop"), ``max_tokens`` ends it with "length", an end-of-turn token with "stop".
- **Choices.** Every choice is scored by its teacher-forced log-probability as the
  continuation of the prompt (all its tokens), and one is drawn from softmax(log-probability /
  temperature) cut to top_p with the sample's seed (temperature 0: the most likely). With
  ``choice_probs``, the distribution is instead read from the logits after the prompt by the
  rule every backend shares (:mod:`.choice_probs`: a choice's tokens with or without
  surrounding whitespace count for it, so single-token choices only), and the answer is the
  most likely choice; a FinalLine answer carries the same distribution at its final line.
- **FinalLine.** The label is put in the prompt, the rationale is generated under a token mask
  (:class:`~.transformers_engine.RationaleRule`: one line, a capital letter or a digit first,
  no digit with ``forbid_digits``) until the model breaks the line after a sentence, starts
  its own final line ("Score:") or reaches ``max_chars``; it is cut at its last sentence end
  (or closed with a full stop) and the final line's value is picked as for ``choices``. Every
  answer ends and matches :func:`.constrain.final_line_regex` (even past a ``max_tokens``
  too small for the format).
- **Context.** A prompt of ``max_model_len`` tokens or more is a permanent Failure; a
  generation that reaches ``max_model_len`` ends with "length".
"""

from __future__ import annotations

import gc
import hashlib
import math
import re
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
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
from .chat import ChatPrompt, admitted, too_long
from .choice_probs import ChoiceProbs, VocabularyChoices, most_likely
from .constrain import final_line_regex
from .model_ref import hf_folder, resolve_reference
from .models import HF_PREFIX, is_gguf_reference
from .optional import TRAIN_HINT, require
from .transformers_engine import (
    DecodeOut,
    DecodeSpec,
    Engine,
    RationaleRule,
    ScoreOut,
    ScoreSpec,
    TokenTable,
    close_rationale,
    run_safely,
    sample_rows,
)
from .vllm_backend import TOKENIZER_TEMPLATE

BACKEND_NAME = "transformers"
INSTALL_HINT = TRAIN_HINT
_DTYPES = ("float32", "bfloat16", "float16")
SERVED_FEATURES = frozenset({CHOICE_PROBS})

Spec = DecodeSpec | ScoreSpec
Out = DecodeOut | ScoreOut
Steps = Generator[Spec, Out, Result]


def local_model(model: str) -> tuple[Path | None, str | None]:
    """The HF folder ``model`` names (a GGUF dequantised once, cached) and the identity the log
    records for it (:func:`.model_ref.resolve_reference`: a folder's content hash, or the
    GGUF's sha256 for its dequantised copy); (None, None) for a bare Hub repo id, which
    transformers downloads itself."""
    local = Path(model).expanduser().exists()
    if not (local or is_gguf_reference(model) or model.startswith(HF_PREFIX)):
        return None, None
    ref = resolve_reference(model)
    return hf_folder(ref), ref.sha256


def choice_probabilities(logprobs: Sequence[float]) -> list[float]:
    """Choices' log-probabilities normalised over the choices (they sum to 1)."""
    top = max(logprobs)
    weights = [math.exp(lp - top) for lp in logprobs]
    total = math.fsum(weights)
    return [w / total for w in weights]


@dataclass(frozen=True)
class _Job:
    """One sample of a request: its prompt tokens, seed and start time."""

    request: Request
    index: int
    seed: int
    tokens: tuple[int, ...]
    started: float


_Waiting = tuple[_Job, Steps, Spec]  # a sample's steps, stopped at a spec to run


class TransformersBackend(ClosingBackend):
    """InferenceBackend on a transformers causal LM (CUDA when available, else the CPU)."""

    name = BACKEND_NAME
    model_format = "hf"  # see InferenceBackend.model_format

    def __init__(
        self,
        model: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 16,
        max_model_len: int | None = None,
        n_ctx: int | None = None,
        chat_format: str | None = None,
        revision: str | None = None,
        n_threads: int | None = None,
    ) -> None:
        """Load ``model``: an HF folder, a GGUF reference (converted once, cached) or a Hub
        repo id (``[hf:]OWNER/REPO``, needs network; ``revision`` pins it).

        ``device`` is "auto" (CUDA if available, else the CPU) or a torch device ("cpu",
        "cuda:1"); ``dtype`` is "auto" (bfloat16 on CUDA, float32 on the CPU) or one of
        float32, bfloat16, float16. ``batch_size`` is the most sequences decoded together.
        ``max_model_len`` (or its other name ``n_ctx``) bounds prompt plus output; default: the
        model's ``max_position_embeddings``. ``chat_format`` is None for the tokenizer's own
        chat template, or a built-in one (chatml, gemma). ``n_threads`` sets torch's CPU
        threads (for the whole process)."""
        from .llamacpp import BUILTIN_TEMPLATES

        if batch_size < 1:
            raise BackendError(f"batch_size must be at least 1, got {batch_size}")
        if n_ctx is not None and max_model_len is not None and n_ctx != max_model_len:
            raise BackendError(
                f"n_ctx ({n_ctx}) and max_model_len ({max_model_len}) name the same setting; "
                "give one"
            )
        if chat_format is not None and chat_format not in BUILTIN_TEMPLATES:
            raise BackendError(
                f"unknown chat_format {chat_format!r}; leave it unset for the tokenizer's own "
                f"template, or use one of: {', '.join(BUILTIN_TEMPLATES)}"
            )
        if dtype != "auto" and dtype not in _DTYPES:
            raise BackendError(f"unknown dtype {dtype!r}; use auto or one of: {', '.join(_DTYPES)}")
        torch, transformers = require(
            "torch", "transformers", what="the transformers backend", hint=INSTALL_HINT
        )
        self._torch = torch
        self._version = str(transformers.__version__)
        self._model_id = model
        self._revision = revision
        self._folder, self._sha = local_model(model)
        if n_threads is not None:
            torch.set_num_threads(n_threads)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self._device = torch.device(device)
        if dtype == "auto":
            dtype = "bfloat16" if self._device.type == "cuda" else "float32"
        self._dtype = dtype
        self._batch_size = batch_size
        source = str(self._folder) if self._folder is not None else model
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(source, revision=revision)
            lm = transformers.AutoModelForCausalLM.from_pretrained(
                source, dtype=getattr(torch, dtype), revision=revision
            )
            lm.to(self._device).eval()
        except Exception as e:
            raise BackendError(
                f"transformers could not load {model!r} on {self._device} ({type(e).__name__}: "
                f"{e}); check the folder or repo id (a Hub id needs network) and the device"
            ) from e
        template = BUILTIN_TEMPLATES[chat_format] if chat_format is not None else None
        own = getattr(tokenizer, "chat_template", None)
        if template is None and not own:
            raise BackendError(
                f"the tokenizer of {model!r} has no chat template; pass chat_format (one of: "
                f"{', '.join(BUILTIN_TEMPLATES)})"
            )
        self._chat_format = chat_format or TOKENIZER_TEMPLATE
        used = template if template is not None else own
        text = used if isinstance(used, str) else repr(used)
        self._template_sha = hashlib.sha256(text.encode()).hexdigest()
        self._prompt = ChatPrompt(tokenizer, template)
        limit = max_model_len if max_model_len is not None else n_ctx
        configured = getattr(lm.config, "max_position_embeddings", 4096)
        self._max_model_len = int(limit) if limit else int(configured)
        self._tokenizer = tokenizer
        self._engine: Engine | None = Engine(torch, lm, tokenizer, self._max_model_len)
        self._table: TokenTable | None = None
        self._choices = VocabularyChoices(lambda: self._token_table().texts)
        self._closed = False

    # --- protocol ------------------------------------------------------------------------

    def info(self) -> BackendInfo:
        extra: dict[str, Any] = {
            "device": str(self._device),
            "dtype": self._dtype,
            "batch_size": self._batch_size,
            "max_model_len": self._max_model_len,
            "revision": self._revision,
            "torch": str(self._torch.__version__),
            "chat_template_sha256": self._template_sha,
            "sampler": "temperature then top_p (vLLM's order), no top_k; a torch.Generator per "
            "sample",
            "choices": "teacher-forced log-probability of each whole choice, drawn from "
            "softmax(logprob / temperature)",
        }
        return BackendInfo(
            backend=BACKEND_NAME,
            backend_version=self._version,
            model_id=self._model_id,
            model_path=str(self._folder) if self._folder is not None else None,
            model_sha256=self._sha,
            chat_format=self._chat_format,
            extra=extra,
        )

    def generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        """Render every request, run its samples in batches, yield each result when done."""
        self._check_open()
        return self._generate(requests)

    def require(self, features: Iterable[str]) -> None:
        """Every feature of :mod:`.base` is served (choice probabilities from the logits)."""
        missing = sorted(set(features) - SERVED_FEATURES)
        if missing:
            raise UnsupportedFeature(
                f"the transformers backend does not serve {', '.join(missing)}; "
                "turn it off or pick a backend that serves it"
            )

    def close(self) -> None:
        """Free the model (and CUDA's cached memory)."""
        if getattr(self, "_closed", True):
            return
        self._closed = True
        self._engine = self._table = None
        gc.collect()
        if self._device.type == "cuda":
            self._torch.cuda.empty_cache()

    # --- scheduling ------------------------------------------------------------------------

    def _generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        waiting: list[_Waiting] = []
        for item in admitted(requests, self._prompt.tokens, self._max_model_len):
            if isinstance(item, Failure):
                yield item
                continue
            req, tokens, started = item
            base = request_seed(req.params)
            for i in range(req.params.n):
                job = _Job(req, i, base + i, tuple(tokens), started)
                result = _advance(job, self._steps(job), None, waiting)
                if result is not None:
                    yield result
        while waiting:
            current, waiting = waiting, []
            decodes = sorted(
                (w for w in current if isinstance(w[2], DecodeSpec)),
                key=lambda w: len(w[2].prompt),
            )
            scores = [w for w in current if isinstance(w[2], ScoreSpec)]
            for batch, run in ((decodes, self._decode), (scores, self._score)):
                for at in range(0, len(batch), self._batch_size):
                    chunk = batch[at : at + self._batch_size]
                    outs = run([spec for _, _, spec in chunk])
                    for (job, steps, _), out in zip(chunk, outs, strict=True):
                        result = _advance(job, steps, out, waiting)
                        if result is not None:
                            yield result

    def _live(self) -> Engine:
        if self._engine is None:
            raise BackendError(f"this {self.name} backend is closed; start a new one")
        return self._engine

    def _decode(self, specs: list[Any]) -> list[Any]:
        return run_safely(self._live().decode, specs, lambda e: DecodeOut(error=e))

    def _score(self, specs: list[Any]) -> list[Any]:
        """Scores, each distinct spec once (the ``n`` samples of a choice share theirs)."""
        unique = list(dict.fromkeys(specs))
        scored = run_safely(self._live().score, unique, lambda e: ScoreOut(error=e))
        outs = dict(zip(unique, scored, strict=True))
        return [outs[s] for s in specs]

    # --- one sample: its steps -------------------------------------------------------------

    def _steps(self, job: _Job) -> Steps:
        req, p = job.request, job.request.params
        if req.choices is not None:
            if not req.choices or not all(req.choices):
                return self._failed(job, "choices must be non-empty strings", permanent=True)
            if req.choice_probs:
                return (yield from self._most_likely_choice(job))
            choices = self._choice_tokens(req.choices)
            scored = yield ScoreSpec(job.tokens, choices)
            if not isinstance(scored, ScoreOut) or scored.error is not None:
                return self._failed(job, f"scoring the choices failed: {_error(scored)}")
            k, _probabilities = self._choose(scored.logprobs, p, job.seed)
            return self._completion(job, req.choices[k], "stop", len(choices[k]))
        if req.structure is not None:
            return (yield from self._final_line(job))
        out = yield DecodeSpec(job.tokens, p.max_tokens, p.temperature, p.top_p, job.seed, p.stop)
        if not isinstance(out, DecodeOut) or out.error is not None:
            return self._failed(job, f"generation failed: {_error(out)}")
        return self._completion(job, out.text, out.finish_reason, out.tokens)

    def _most_likely_choice(self, job: _Job) -> Steps:
        """A ``choices`` request with ``choice_probs``: the distribution after the prompt, and
        the most likely choice as the answer (nothing is sampled)."""
        choices = job.request.choices
        assert choices is not None
        try:
            self._choices.ids(choices)
        except ValueError as e:
            return self._failed(job, str(e), permanent=True)
        scored = yield ScoreSpec(job.tokens, (), logits=True)
        if not isinstance(scored, ScoreOut) or scored.error is not None:
            return self._failed(job, f"reading the choices' probabilities failed: {_error(scored)}")
        found = self._choices.distribution(choices, scored.logits)
        if found is None:
            return self._failed(job, "the model gave none of the choices any probability")
        text = most_likely(found[0])
        return self._completion(job, text, "stop", len(self._plain(text)), found)

    def _final_line(self, job: _Job) -> Steps:
        req, p = job.request, job.request.params
        spec = req.structure
        assert spec is not None
        head = job.tokens + self._plain(spec.label)
        lead = self._plain("\n" + spec.lead)
        choices = self._choice_tokens(spec.choices)
        reserve = len(lead) + max(len(c) for c in choices)
        room = self._max_model_len - len(head) - reserve
        if room < 1:
            failure = too_long(req, len(head) + reserve + 1, self._max_model_len)
            assert failure is not None
            return failure
        budget = max(1, min(p.max_tokens - reserve, spec.max_chars + 8, room))
        rule = RationaleRule(spec, self._token_table())
        out = yield DecodeSpec(head, budget, p.temperature, p.top_p, job.seed, (), rule)
        if not isinstance(out, DecodeOut) or out.error is not None:
            return self._failed(job, f"generating the rationale failed: {_error(out)}")
        rationale = close_rationale(spec, out.text)
        body = self._plain(rationale + "\n" + spec.lead)
        scored = yield ScoreSpec(head + body, choices, logits=req.choice_probs)
        if not isinstance(scored, ScoreOut) or scored.error is not None:
            return self._failed(job, f"scoring the final line failed: {_error(scored)}")
        k, _probabilities = self._choose(scored.logprobs, p, job.seed)
        text = f"{spec.label}{rationale}\n{spec.lead}{spec.choices[k]}"
        if not re.fullmatch(final_line_regex(spec), text):
            return self._failed(job, f"the answer {text!r} does not fit the format")
        made = len(head) - len(job.tokens) + out.tokens + len(lead) + len(choices[k])
        found = (
            self._choices.distribution(spec.choices, scored.logits) if req.choice_probs else None
        )
        return self._completion(job, text, "stop", made, found)

    def _choose(
        self, logprobs: Sequence[float], params: SamplingParams, seed: int
    ) -> tuple[int, list[float]]:
        """The index of one choice, drawn with the sample's seed (the most likely at
        temperature 0), and every choice's normalised probability under the model: what a
        sample's teacher-forced distribution (``choice_probs`` reads :mod:`.choice_probs`'
        one instead)."""
        torch = self._torch
        (k,) = sample_rows(
            torch,
            torch.tensor([list(logprobs)], dtype=torch.float32),
            [params.temperature],
            [params.top_p],
            [torch.Generator().manual_seed(seed & 0xFFFF_FFFF_FFFF_FFFF)],
        )
        return k, choice_probabilities(logprobs)

    def _choice_probabilities(self, request: Request) -> dict[str, float]:
        """Each of ``request.choices`` with its normalised teacher-forced probability as the
        continuation of the request's prompt (and assistant prefix): what a sampled choice is
        drawn from at temperature 1."""
        self._check_open()
        choices = request.choices
        if not choices:
            raise BackendError("the request has no choices")
        prompt = tuple(self._prompt.tokens(request.messages, request.assistant_prefix))
        (scored,) = self._live().score([ScoreSpec(prompt, self._choice_tokens(choices))])
        return dict(zip(choices, choice_probabilities(scored.logprobs), strict=True))

    # --- helpers ---------------------------------------------------------------------------

    def _plain(self, text: str) -> tuple[int, ...]:
        """``text`` as tokens that are never special (model text continuing a turn)."""
        if not text:
            return ()
        return tuple(
            self._tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True)
        )

    def _choice_tokens(self, choices: Sequence[str]) -> tuple[tuple[int, ...], ...]:
        return tuple(self._plain(c) for c in choices)

    def _token_table(self) -> TokenTable:
        if self._table is None:
            engine = self._live()
            size = int(engine.model.get_output_embeddings().weight.shape[0])
            self._table = TokenTable(self._torch, self._tokenizer, size, engine.device)
        return self._table

    def _completion(
        self, job: _Job, text: str, finish: str, tokens: int, probs: ChoiceProbs | None = None
    ) -> Completion:
        return Completion(
            request_id=job.request.id,
            index=job.index,
            text=text,
            finish_reason=finish,
            prompt_tokens=len(job.tokens),
            completion_tokens=tokens,
            prompt_tokens_evaluated=len(job.tokens),  # no prefix cache across calls
            seed=job.seed,
            wall_s=since(job.started),
            choice_probs=None if probs is None else probs[0],
            choice_mass=None if probs is None else probs[1],
        )

    @staticmethod
    def _failed(job: _Job, error: str, *, permanent: bool = False) -> Failure:
        return Failure(job.request.id, error, since(job.started), permanent=permanent)


def _advance(job: _Job, steps: Steps, out: Out | None, waiting: list[_Waiting]) -> Result | None:
    """Run a sample's steps to its next spec (queued in ``waiting``) or to its result (a
    Failure if they raise: the batch goes on)."""
    try:
        spec = next(steps) if out is None else steps.send(out)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    except Exception as e:
        return Failure(job.request.id, f"{type(e).__name__}: {e}", since(job.started))
    waiting.append((job, steps, spec))
    return None


def _error(out: object) -> str:
    return str(getattr(out, "error", None) or f"unexpected output {type(out).__name__}")
