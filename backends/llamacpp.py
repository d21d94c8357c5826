"""The llama.cpp backend, on llama-cpp-python.

llama.cpp keeps one sequence in its KV cache, and a call whose prompt starts with the cached
tokens only evaluates the rest. So ``generate`` renders every request to tokens first, sorts the
work so prompts that share a prefix run back to back (N judgements of one response then cost one
prompt evaluation, not N), and streams each result as it finishes.

Prompts are built in one place, ``ChatTemplate``: the chat template renders the messages, then
the template's own text is tokenized with special tokens allowed while message contents and the
assistant prefix are tokenized as plain text, so a response that contains ``<|im_end|>`` cannot
close its turn and speak for the judge.

Choice probabilities (``Request.choice_probs``, :mod:`.choice_probs`) are read from the
context's logits at the choice position, on both paths. ``Llama.scores`` is no source: without
``logits_all`` llama-cpp-python leaves it at zero, which reads as a uniform distribution.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING, Any, cast

from .base import (
    CHOICE_PROBS,
    BackendError,
    BackendInfo,
    ClosingBackend,
    Completion,
    Failure,
    Message,
    Request,
    Result,
    UnsupportedFeature,
    rendered,
    request_seed,
    since,
)
from .chat import template_pieces, too_long
from .choice_probs import VocabularyChoices, most_likely
from .constrain import (
    choice_max_tokens,
    choices_gbnf,
    final_line_gbnf,
    fit_rationale,
    off_choices,
)
from .llamacpp_batch import BatchEngine, Out, Spec, common_prefix, logits_row, vocab_pieces
from .model_ref import DEFAULT_GGUF_TYPE, ModelRef, gguf_file, resolve_reference
from .models import file_sha256
from .optional import require

if TYPE_CHECKING:
    from llama_cpp.llama_types import ChatCompletionRequestMessage

BACKEND_NAME = "llama.cpp"
LLAMA_INSTALL_HINT = "pip install 'mrtui[llama]'"
SERVED_FEATURES = frozenset({CHOICE_PROBS})

# Templates we ship for models whose file carries none (our wording of the public formats).
# Gemma has no system role: a system message is put in front of the first user turn.
_GEMMA_TEMPLATE = (
    "{{ bos_token }}"
    "{%- set ns = namespace(system='') -%}"
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'system' -%}"
    "{%- set ns.system = ns.system + m['content'] + '\n\n' -%}"
    "{%- elif m['role'] == 'user' -%}"
    "{{ '<start_of_turn>user\n' + ns.system + m['content'] + '<end_of_turn>\n' }}"
    "{%- set ns.system = '' -%}"
    "{%- else -%}"
    "{{ '<start_of_turn>model\n' + m['content'] + '<end_of_turn>\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)
_CHATML_TEMPLATE = (
    "{%- for m in messages -%}"
    "{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\n' }}{%- endif -%}"
)
BUILTIN_TEMPLATES: dict[str, str] = {"gemma": _GEMMA_TEMPLATE, "chatml": _CHATML_TEMPLATE}
FILE_TEMPLATE = "gguf"  # chat_format label for "the template stored in the model file"


def _default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class ChatTemplate:
    """Messages → prompt tokens, the same way for every request of a backend."""

    def __init__(self, llm: Any, chat_format: str | None) -> None:
        import llama_cpp
        from llama_cpp import llama_chat_format

        self._llm = llm
        self._bos: int = llm.token_bos()
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        self._add_bos: bool = bool(llama_cpp.llama_vocab_get_add_bos(vocab)) and self._bos >= 0
        bos_text = llm.detokenize([self._bos], special=True).decode() if self._bos >= 0 else ""
        eos_id = llm.token_eos()
        eos_text = llm.detokenize([eos_id], special=True).decode() if eos_id >= 0 else ""

        name = chat_format or FILE_TEMPLATE
        if name == FILE_TEMPLATE:
            source = llm.metadata.get("tokenizer.chat_template")
            if not source:
                raise BackendError(
                    "the model file has no chat template; pass chat_format "
                    f"(one of: {', '.join(BUILTIN_TEMPLATES)})"
                )
        elif name in BUILTIN_TEMPLATES:
            source = BUILTIN_TEMPLATES[name]
        else:
            raise BackendError(
                f"unknown chat_format {name!r}; use one of: {FILE_TEMPLATE} (the file's own "
                f"template), {', '.join(BUILTIN_TEMPLATES)}"
            )
        formatter = llama_chat_format.Jinja2ChatFormatter(
            template=source, eos_token=eos_text, bos_token=bos_text, add_generation_prompt=True
        )
        self.name: str = name
        self.sha256: str = hashlib.sha256(source.encode()).hexdigest()
        # The formatter's stub asks for llama_cpp's message TypedDicts; it reads only the
        # role and content keys, which every message here has.
        self._render_fn: Callable[[list[dict[str, str]]], str] = lambda msgs: (
            formatter(messages=cast("list[ChatCompletionRequestMessage]", msgs)).prompt
        )

    def render(self, messages: Sequence[Message], assistant_prefix: str | None = None) -> str:
        """The prompt as text (for display and tests; ``tokens`` is what the model sees)."""
        return self._render(messages) + (assistant_prefix or "")

    def tokens(self, messages: Sequence[Message], assistant_prefix: str | None = None) -> list[int]:
        """Prompt tokens; message contents and the prefix never become special tokens (see
        :func:`.chat.template_pieces`)."""
        full, pieces = template_pieces(messages, self._render)
        if pieces is None:
            toks = self._tokenize(full, special=True)
        else:
            toks = [t for text, plain in pieces for t in self._tokenize(text, special=not plain)]
        if assistant_prefix:
            toks += self._tokenize(assistant_prefix, special=False)
        if self._add_bos and (not toks or toks[0] != self._bos):
            toks.insert(0, self._bos)
        return toks

    def _render(self, messages: Sequence[Message]) -> str:
        return self._render_fn([{"role": m.role, "content": m.content} for m in messages])

    def plain_tokens(self, text: str) -> list[int]:
        """``text`` as tokens that can never be special (model text continuing a turn)."""
        return self._tokenize(text, special=False)

    def _tokenize(self, text: str, *, special: bool) -> list[int]:
        if not text:
            return []
        return list(self._llm.tokenize(text.encode(), add_bos=False, special=special))


class _PromptEvalCounter:
    """Counts the prompt tokens llama.cpp really decodes in a call.

    ``Llama.generate`` first evaluates the prompt suffix that is not in the KV cache (one call to
    ``eval``), then one token per step. We wrap the instance's ``eval`` and keep the size of the
    first call after ``arm()``. llama.cpp's perf counters are no substitute: they file a one-token
    batch under generation, not under prompt evaluation.
    """

    def __init__(self, llm: Any) -> None:
        self._inner = llm.eval
        self.first: int | None = None
        self._armed = False
        llm.eval = self

    def arm(self) -> None:
        self.first, self._armed = None, True

    def __call__(self, tokens: Sequence[int]) -> None:
        if self._armed:
            self.first, self._armed = len(tokens), False
        self._inner(tokens)


@dataclass(frozen=True)
class _Job:
    request: Request
    index: int
    seed: int
    tokens: tuple[int, ...]


class LlamaCppBackend(ClosingBackend):
    """InferenceBackend on a local GGUF model through llama-cpp-python."""

    name = BACKEND_NAME
    model_format = "gguf"  # see InferenceBackend.model_format

    def __init__(
        self,
        model: str,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_batch: int = 512,
        chat_format: str | None = None,
        verbose: bool = False,
        lora_path: str | None = None,
        top_k: int = 0,
        parallel: int = 1,
        batch_ctx: int | None = None,
        gguf_type: str = DEFAULT_GGUF_TYPE,
    ) -> None:
        """Load ``model`` (a .gguf path, hf:OWNER/REPO/FILE.gguf, a packaged model name, an HF
        model folder or hf:OWNER/REPO). An HF model is converted to a ``gguf_type`` GGUF
        (f16, q8_0, ...) once and cached under its content hash; the model's identity
        (``info().model_sha256``) stays the folder's.

        ``n_threads`` defaults to every core this process may use (llama-cpp-python's own
        default is half of them). ``top_k=0`` samples from the whole top_p nucleus, as vLLM and
        the OpenAI API do; on Qwen 0.5B that costs a few percent of speed against top_k=40, but
        on a model whose nucleus is most of a 150k vocabulary (a random test model) ~10 ms a
        token, which ``top_k=1000`` takes back.

        ``parallel`` > 1 decodes that many sequences together (continuous batching over all the
        requests of a ``generate`` call, see :mod:`.llamacpp_batch`) in a KV cache of
        ``batch_ctx`` cells shared by them (default: 4 × ``n_ctx``); each sequence is still
        limited to ``n_ctx``.
        """
        if parallel < 1:
            raise BackendError(f"parallel must be at least 1, got {parallel}")
        llama_cpp = require(
            "llama_cpp",
            what="the llama.cpp backend",
            needs="llama-cpp-python",
            hint=LLAMA_INSTALL_HINT,
        )
        self._resolved: ModelRef = resolve_reference(model)
        self._path = gguf_file(self._resolved, gguf_type)
        if lora_path is not None and not Path(lora_path).is_file():
            raise BackendError(f"LoRA adapter not found: {lora_path}")
        self._lora_path = lora_path
        self._n_threads = n_threads or _default_threads()
        self._n_batch = n_batch
        self._top_k = top_k
        self._version: str = llama_cpp.__version__
        try:
            self._llm: Any = llama_cpp.Llama(
                model_path=str(self._path),
                n_ctx=n_ctx,
                n_threads=self._n_threads,
                n_threads_batch=self._n_threads,
                n_batch=n_batch,
                lora_path=lora_path,
                verbose=verbose,
            )
        except (ValueError, RuntimeError, OSError) as e:
            raise BackendError(
                f"llama.cpp could not load {self._path} ({e}); check that the file is "
                "a complete GGUF of an architecture this llama-cpp-python supports"
            ) from e
        try:
            self._template = ChatTemplate(self._llm, chat_format or self._resolved.chat_format)
        except BaseException:
            self._llm.close()
            raise
        self._n_ctx: int = self._llm.n_ctx()
        self._counter = _PromptEvalCounter(self._llm)
        self._grammars: dict[str, Any] = {}
        self._choices = VocabularyChoices(lambda: vocab_pieces(self._llm.model))
        self._parallel = parallel
        self._batch_ctx = batch_ctx or 4 * self._n_ctx
        self._engine: BatchEngine | None = None
        self._closed = False

    # --- protocol ------------------------------------------------------------------------

    def info(self) -> BackendInfo:
        md = self._llm.metadata if not self._closed else {}
        extra: dict[str, Any] = {
            "n_ctx": self._n_ctx,
            "n_threads": self._n_threads,
            "n_batch": self._n_batch,
            "top_k": self._top_k,
            "parallel": self._parallel,
            "chat_template_sha256": self._template.sha256,
            "arch": md.get("general.architecture"),
            "model_name": md.get("general.name"),
            # What the sampling knobs mean here (llama.cpp's chain, not vLLM's).
            "sampler": f"top_k={self._top_k} min_p=0 typical_p=1 repeat_penalty=1; "
            "llama.cpp applies top_p before temperature",
        }
        if self._resolved.format == "hf":
            extra["converted_from"] = "hf"
            extra["gguf_sha256"] = file_sha256(self._path)
        if self._lora_path is not None:
            extra["lora_path"] = self._lora_path
            extra["lora_sha256"] = file_sha256(self._lora_path)
        return BackendInfo(
            backend=BACKEND_NAME,
            backend_version=self._version,
            model_id=self._resolved.ref,
            model_path=str(self._path),
            model_sha256=self._resolved.sha256,
            chat_format=self._template.name,
            extra=extra,
        )

    def generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        """Render all requests, run them in prefix-sharing order, yield each result when done."""
        self._check_open()
        return self._generate(requests)

    def _generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        jobs: list[_Job] = []
        for item in rendered(requests, self._template.tokens):
            if isinstance(item, Failure):
                yield item
                continue
            req, listed, _ = item
            tokens, base = tuple(listed), request_seed(req.params)
            jobs.extend(_Job(req, i, base + i, tokens) for i in range(req.params.n))
        # Lexicographic order on tokens puts every shared prefix in one run; the sort is stable,
        # so the samples of one request stay in index order.
        jobs.sort(key=lambda j: j.tokens)
        if self._parallel > 1:
            yield from self._run_batched(jobs)
            return
        for job in jobs:
            yield self._drive(self._steps(job))

    def require(self, features: Iterable[str]) -> None:
        """Every feature of :mod:`.base` is served (choice probabilities from the logits)."""
        missing = sorted(set(features) - SERVED_FEATURES)
        if missing:
            raise UnsupportedFeature(
                f"the llama.cpp backend does not serve {', '.join(missing)}; "
                "turn it off or pick a backend that serves it"
            )

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._engine is not None:
                self._engine.close()
                self._engine = None
            self._llm.close()

    # --- extras for tests and tools --------------------------------------------------------

    @property
    def chat_template(self) -> ChatTemplate:
        return self._template

    @property
    def n_ctx(self) -> int:
        return self._n_ctx

    # --- one request: the generations it takes ----------------------------------------------
    # A job is a generator: it yields a Spec (one generation), receives its Out, and returns
    # the job's Result. The sequential path runs each Spec on the Llama instance in turn
    # (``_drive``); the batched path runs the Specs of many jobs together (``_run_batched``).

    def _spec(
        self,
        job: _Job,
        tokens: Sequence[int],
        max_tokens: int,
        stop: Sequence[str],
        grammar: str | None,
        *,
        logits: bool = False,
    ) -> Spec:
        params = job.request.params
        return Spec(
            (job.request.id, job.index),
            tuple(tokens),
            max_tokens,
            params.temperature,
            params.top_p,
            self._top_k,
            job.seed,
            tuple(stop),
            grammar,
            logits,
        )

    def _steps(self, job: _Job) -> Generator[Spec, Out, Result]:
        started = perf_counter()
        req, params = job.request, job.request.params
        n_prompt = len(job.tokens)
        unfit = too_long(req, n_prompt, self._n_ctx, since(started), setting="n_ctx")
        if unfit is not None:
            return unfit
        grammar, max_tokens = None, params.max_tokens
        if req.choices is not None:  # the grammar decides the length; max_tokens is not needed
            if not req.choices or not all(req.choices):
                return Failure(req.id, "choices must be non-empty strings", since(started))
            if req.choice_probs:
                return (yield from self._most_likely_choice(job, started))
            grammar, max_tokens = choices_gbnf(req.choices), choice_max_tokens(req.choices)
        elif req.structure is not None:  # max_tokens still applies: a cut answer is "length"
            two_step = yield from self._final_line_in_two_steps(job, started)
            if two_step is not None:
                return two_step
            grammar = final_line_gbnf(req.structure)
        out = yield self._spec(job, job.tokens, max_tokens, params.stop, grammar)
        if out.error is not None:  # one bad call must not end the batch
            return Failure(req.id, f"llama.cpp failed: {out.error}", since(started))
        refused = None if req.choices is None else off_choices(out.text, req.choices)
        if refused is not None:
            return Failure(req.id, refused, since(started))
        return Completion(
            request_id=req.id,
            index=job.index,
            text=out.text,
            finish_reason=out.finish_reason,
            prompt_tokens=n_prompt,
            completion_tokens=out.completion_tokens,
            prompt_tokens_evaluated=out.evaluated,
            seed=job.seed,
            wall_s=since(started),
        )

    def _most_likely_choice(self, job: _Job, started: float) -> Generator[Spec, Out, Result]:
        """A ``choices`` request with ``choice_probs``: the prompt is evaluated, nothing is
        sampled, and the answer is the most likely choice at the prompt's end."""
        req = job.request
        assert req.choices is not None
        try:
            self._choices.ids(req.choices)
        except ValueError as e:
            return Failure(req.id, str(e), since(started), permanent=True)
        out = yield self._spec(job, job.tokens, 0, (), None, logits=True)
        if out.error is not None:
            return Failure(req.id, f"llama.cpp failed: {out.error}", since(started))
        found = self._choices.distribution(req.choices, out.logits)
        if found is None:
            return Failure(
                req.id, "the model gave none of the choices any probability", since(started)
            )
        probs, mass = found
        text = most_likely(probs)
        return Completion(
            request_id=req.id,
            index=job.index,
            text=text,
            finish_reason="stop",
            prompt_tokens=len(job.tokens),
            completion_tokens=len(self._template.plain_tokens(text)),
            prompt_tokens_evaluated=out.evaluated,
            seed=job.seed,
            wall_s=since(started),
            choice_probs=probs,
            choice_mass=mass,
        )

    def _final_line_in_two_steps(
        self, job: _Job, started: float
    ) -> Generator[Spec, Out, Completion | None]:
        """A :class:`FinalLine` answer without a grammar over the rationale, which costs about
        as much again per token as generating it: the label is put in the prompt, the model
        reasons freely until it starts its own final line, its lines are joined into one
        paragraph (the format has no line breaks) and cut at the last sentence end within
        the bounds; then a grammar picks only the final line's value. None when the reasoning
        does not fit (or llama.cpp fails): the caller constrains the whole answer."""
        req, params = job.request, job.request.params
        spec = req.structure
        assert spec is not None
        head = list(job.tokens) + self._template.plain_tokens(spec.label)
        reserve = len(self._template.plain_tokens("\n" + spec.lead)) + 2
        if params.max_tokens <= reserve + 1 or len(head) + params.max_tokens >= self._n_ctx:
            return None
        word = (spec.lead.split() or [spec.lead])[0].rstrip(":")
        # English runs ~4.5 characters a token: tokens past this budget would be cut anyway
        budget = min(params.max_tokens - reserve, spec.max_chars // 4 + 8)
        stops = (f"\n{word}", f"\n**{word}", f"{word}:")  # where it starts its own final line
        free = yield self._spec(job, head, budget, stops, None)
        if free.error is not None:
            return None
        lines = free.text.splitlines()
        rationale = fit_rationale(spec, " ".join(x.strip() for x in lines if x.strip()))
        if rationale is None:
            return None
        tail = self._template.plain_tokens(rationale + "\n" + spec.lead)
        choices = choices_gbnf(spec.choices)
        max_tokens = choice_max_tokens(spec.choices) + 1
        last = yield self._spec(job, head + tail, max_tokens, (), choices, logits=req.choice_probs)
        if last.error is not None or last.text not in spec.choices:
            return None
        found = self._choices.distribution(spec.choices, last.logits) if req.choice_probs else None
        return Completion(
            request_id=req.id,
            index=job.index,
            text=f"{spec.label}{rationale}\n{spec.lead}{last.text}",
            finish_reason="stop",
            prompt_tokens=len(job.tokens),
            completion_tokens=len(head)
            - len(job.tokens)
            + free.completion_tokens
            + last.completion_tokens,
            prompt_tokens_evaluated=free.evaluated,
            seed=job.seed,
            wall_s=since(started),
            choice_probs=None if found is None else found[0],
            choice_mass=None if found is None else found[1],
        )

    # --- the sequential path: one generation at a time on the Llama instance -----------------

    def _drive(self, steps: Generator[Spec, Out, Result]) -> Result:
        try:
            spec = next(steps)
            while True:
                spec = steps.send(self._execute(spec))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    def _execute(self, spec: Spec) -> Out:
        self._counter.arm()
        try:
            logits = self._prompt_logits(spec.prompt) if spec.logits else None
            if spec.max_tokens == 0:
                return Out("", 0, "length", self._counter.first, logits=logits)
            out = self._complete(spec)
        except Exception as e:
            self._llm.reset()  # the KV state may be half-written; start the next call clean
            return Out(error=f"{type(e).__name__}: {e}")
        choice = out["choices"][0]
        return Out(
            choice["text"],
            int(out["usage"]["completion_tokens"]),
            choice["finish_reason"] or "length",
            self._counter.first,
            logits=logits,
        )

    def _prompt_logits(self, tokens: Sequence[int]) -> Any:
        """The logits after ``tokens``, read from the context: ``Llama.scores`` stays zero
        without ``logits_all``. The cached prefix is reused as ``Llama.generate`` reuses it
        (at least the last token is evaluated again), so a generation on the same prompt
        that follows finds it cached."""
        import llama_cpp

        llm = self._llm
        cached = llm.input_ids[: llm.n_tokens].tolist()
        shared = min(common_prefix(cached, tokens), len(tokens) - 1)
        if shared > 0 and llm._ctx.kv_cache_seq_rm(-1, shared, -1):
            llm.n_tokens = shared
        else:
            llm.reset()
            shared = 0
        llm.eval(list(tokens[shared:]))
        return logits_row(llama_cpp, llm.ctx, -1, llm.n_vocab())

    def _complete(self, spec: Spec) -> Any:
        return self._llm.create_completion(
            prompt=list(spec.prompt),
            max_tokens=spec.max_tokens,
            temperature=spec.temperature,
            top_p=spec.top_p,
            top_k=spec.top_k,
            min_p=0.0,
            typical_p=1.0,
            repeat_penalty=1.0,
            seed=spec.seed & 0xFFFFFFFF,
            stop=list(spec.stop),
            grammar=None if spec.grammar is None else self._compiled(spec.grammar),
        )

    # --- the batched path: many generations decoded together (parallel > 1) --------------------

    def _run_batched(self, jobs: Sequence[_Job]) -> Iterator[Result]:
        engine = self._batch_engine()
        running: dict[Any, Generator[Spec, Out, Result]] = {}

        def advance(steps: Generator[Spec, Out, Result], out: Out | None) -> Result | None:
            try:
                spec = next(steps) if out is None else steps.send(out)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            running[spec.key] = steps
            engine.submit(spec, follow_up=out is not None)
            return None

        for job in jobs:
            result = advance(self._steps(job), None)
            if result is not None:
                yield result
        try:
            for spec, out in engine.run():
                result = advance(running.pop(spec.key), out)
                if result is not None:
                    yield result
        finally:
            engine.reset()

    def _batch_engine(self) -> BatchEngine:
        if self._engine is None:
            self._engine = BatchEngine(
                self._llm.model,
                n_ctx=self._batch_ctx,
                n_batch=self._n_batch,
                parallel=self._parallel,
                n_threads=self._n_threads,
                seq_limit=self._n_ctx,
            )
        return self._engine

    def _compiled(self, source: str) -> Any:
        """A GBNF grammar, compiled once and reused."""
        if source not in self._grammars:
            from llama_cpp import LlamaGrammar

            self._grammars[source] = LlamaGrammar.from_string(source, verbose=False)
        return self._grammars[source]
