"""The inference contract every backend implements (llama.cpp, vLLM, OpenAI-compatible servers).

Backends are batch-first: they receive many requests at once, may reorder them (to share prompt
prefixes or fill a GPU batch) and yield results as they finish. They return plain data; the loop
turns it into events. Nothing here imports a front end or a heavy library.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from time import perf_counter
from typing import Any, ClassVar, Literal, Protocol, Self, TypeVar, runtime_checkable

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings, named as in vLLM and the OpenAI API."""

    n: int = 1
    temperature: float = 0.8
    top_p: float = 0.95
    max_tokens: int = 512
    seed: int | None = None
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stop"] = list(self.stop)
        return d


@dataclass(frozen=True)
class FinalLine:
    """An answer of one bounded paragraph (a rationale), then one final line.

    The answer is ``label``, then ``min_chars``..``max_chars`` characters in
    all (the label not counted), starting with a capital letter or a digit (a sentence or a
    list), with no newline (and no digit, with ``forbid_digits``), ending with ``.``, ``!`` or
    ``?``; then a newline, ``lead`` and exactly one of ``choices``.
    The rationale has no line break, so it cannot itself hold a final line: the format is
    unambiguous, and its length bound makes every constrained generation end. Backends compile
    it with :mod:`mrtui.backends.constrain` (GBNF, regular expression)."""

    label: str
    min_chars: int
    max_chars: int
    lead: str
    choices: tuple[str, ...]
    forbid_digits: bool = False

    def __post_init__(self) -> None:
        if not 3 <= self.min_chars <= self.max_chars:
            raise ValueError(
                f"need 3 <= min_chars <= max_chars, got {self.min_chars}..{self.max_chars}"
            )
        if not self.choices or not all(self.choices):
            raise ValueError("choices must be non-empty strings")
        if "\n" in self.label or "\n" in self.lead:
            raise ValueError("label and lead must be single-line")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["choices"] = list(self.choices)
        return d


@dataclass(frozen=True)
class Request:
    """One unit of inference work.

    ``id`` is the caller's deterministic unit key and comes back on every result.
    ``assistant_prefix`` continues a partially written assistant turn (the chat template is
    rendered with the generation prompt, then the prefix is appended verbatim).
    ``choices`` constrains the continuation to exactly one of the given strings (GBNF on
    llama.cpp, guided choice on vLLM); backends that cannot constrain raise
    ``UnsupportedFeature`` on ``generate``.
    ``structure`` constrains the whole answer to a :class:`FinalLine` format (GBNF on
    llama.cpp, a guided regular expression on vLLM, ``grammar`` on llama.cpp's server);
    backends that cannot constrain raise ``UnsupportedFeature``.
    ``choice_probs`` asks for the model's probability of each choice (see
    :mod:`mrtui.backends.choice_probs`). With ``choices``, the completion's text is then the
    most likely choice (sampling settings do not apply) and ``Completion.choice_probs`` holds
    the distribution; every backend must serve it or refuse it up front in
    ``require(CHOICE_PROBS)``. With ``structure``, a backend that knows the distribution at
    the final line's choice returns it too; one that does not leaves it None and the caller
    asks for it with a ``choices`` request that continues the answer.
    """

    id: str
    messages: tuple[Message, ...]
    params: SamplingParams = field(default_factory=SamplingParams)
    assistant_prefix: str | None = None
    choices: tuple[str, ...] | None = None
    structure: FinalLine | None = None
    choice_probs: bool = False

    def __post_init__(self) -> None:
        if self.choices is not None and self.structure is not None:
            raise ValueError("a request takes choices or a structure, not both")
        if self.choice_probs and self.choices is None and self.structure is None:
            raise ValueError("choice_probs needs choices or a structure")


@dataclass(frozen=True)
class Completion:
    """A finished request (one per sample index when ``params.n > 1``)."""

    request_id: str
    index: int
    text: str
    finish_reason: str  # "stop" | "length"
    prompt_tokens: int
    completion_tokens: int
    # Prompt tokens the backend actually evaluated (after prefix-cache reuse); None if unknown.
    prompt_tokens_evaluated: int | None
    seed: int | None
    wall_s: float
    # Remote backends: the server that answered and the model it says it ran.
    endpoint: str | None = None
    served_model: str | None = None
    # Asked for with Request.choice_probs: each choice's probability at the choice position,
    # normalised over the choices (they sum to 1), and the probability the model gave the
    # choices together before normalising (how sure it was that a choice comes there at all).
    choice_probs: Mapping[str, float] | None = None
    choice_mass: float | None = None


@dataclass(frozen=True)
class Failure:
    """A request the backend could not complete. The batch goes on.

    ``permanent`` marks a request that can never succeed as sent (e.g. its prompt is longer
    than the context window): the loop logs it as skipped instead of retrying it on resume."""

    request_id: str
    error: str
    wall_s: float
    permanent: bool = False
    endpoint: str | None = None  # remote backends: the server that failed it last


@dataclass(frozen=True)
class EndpointEvent:
    """A remote backend's server went ``"down"`` (its requests go to the others) or came back
    ``"up"``. Backends with several servers report these from ``endpoint_events()``."""

    endpoint: str
    state: Literal["down", "up"]
    error: str | None
    rerouted: int  # requests moved away from this endpoint so far


Result = Completion | Failure


@dataclass(frozen=True)
class BackendInfo:
    """Provenance the loop stamps on every generation event."""

    backend: str  # registry name, e.g. "llama.cpp"
    backend_version: str
    model_id: str  # what the user asked for (short name, path, hf: id)
    model_path: str | None
    model_sha256: str | None
    chat_format: str | None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["extra"] = dict(self.extra)
        return d


def since(started: float) -> float:
    """Seconds since ``started`` (a ``perf_counter`` reading): a result's ``wall_s``."""
    return perf_counter() - started


def request_seed(params: SamplingParams) -> int:
    """The seed a request runs with: its own, or a fresh one when it gave none, so that the
    seed used is still recorded (sample i of ``n`` runs with this seed + i)."""
    return params.seed if params.seed is not None else random.SystemRandom().randrange(2**31)


Rendered = TypeVar("Rendered")


def rendered(
    requests: Iterable[Request],
    render: Callable[[tuple[Message, ...], str | None], Rendered],
) -> Iterator[tuple[Request, Rendered, float] | Failure]:
    """Each request with its prompt (``render(messages, assistant_prefix)``) and the time
    rendering started, or a ``Failure`` for one whose messages the chat template rejects (the
    batch goes on)."""
    for req in requests:
        started = perf_counter()
        try:
            prompt = render(req.messages, req.assistant_prefix)
        except Exception as e:
            yield Failure(req.id, f"could not render the chat template: {e}", since(started))
            continue
        yield req, prompt, started


class BackendError(Exception):
    """A backend could not start or serve. The message says what to do about it."""


class UnsupportedFeature(BackendError):
    """The request uses a feature this backend does not offer."""


# Features a run can require of a backend before it starts (``InferenceBackend.require``).
CHOICE_PROBS = "choice_probs"  # Request.choice_probs on choices requests


@runtime_checkable
class InferenceBackend(Protocol):
    """Many requests in, results streamed back as they finish (in any order).

    A backend class that subclasses this protocol (as :class:`ClosingBackend` does) gets the
    defaults of ``model_format`` ("gguf") and ``endpoint_events`` (no servers, no events); a
    class that only matches it structurally must define both."""

    model_format: ClassVar[str] = "gguf"
    """What the backend loads a model from: "gguf" (a GGUF file), "hf" (a Hugging Face folder
    or repo id) or "served" (servers hold the weights; the backend is told the model's name).
    Read from the class without starting it (:func:`~mrtui.backends.registry.model_format`)."""

    def info(self) -> BackendInfo: ...

    def generate(self, requests: Iterable[Request]) -> Iterator[Result]: ...

    def require(self, features: Iterable[str]) -> None:
        """Raise ``UnsupportedFeature`` (one line that names what to change) unless every one
        of ``features`` (e.g. :data:`CHOICE_PROBS`) is served; a remote backend may ask its
        servers. Called once before a run's first request."""
        ...

    def endpoint_events(self) -> list[EndpointEvent]:
        """The servers that went down or came back since the last call, which the loop logs
        (a remote backend's; a backend without servers has none)."""
        return []

    def close(self) -> None: ...


class ClosingBackend(InferenceBackend):
    """``with backend: ...`` closes the backend at the end of the block; a closed backend
    refuses more work (``_check_open``)."""

    name: str
    _closed: bool

    def close(self) -> None:
        raise NotImplementedError

    def _check_open(self) -> None:
        if self._closed:
            raise BackendError(f"this {self.name} backend is closed; start a new one")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
