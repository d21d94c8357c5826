"""Chat templates render messages into a prompt whose template text and message contents are
tokenized apart, the same way on every backend that tokenizes prompts itself (llama.cpp, vLLM,
transformers): the template's own text may hold special tokens, a message's content never does.
:class:`ChatPrompt` does it with a Hugging Face tokenizer, and :func:`admitted` renders a
batch's requests and refuses those that leave no room in the context.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

from .base import BackendError, Failure, Message, Request, rendered, since

# Placeholders that stand for message contents while the template renders.
_SLOT = "\ue000{}\ue001"
_SLOT_RE = re.compile("\ue000(\\d+)\ue001")


def template_pieces(
    messages: Sequence[Message], render: Callable[[list[Message]], str]
) -> tuple[str, list[tuple[str, bool]] | None]:
    """The whole rendered prompt, and its pieces as (text, is a message's content) in order.

    The template is rendered again with placeholders for the contents, so that its own text and
    the contents can be told apart. A template that inspects or rewrites contents (trims them,
    splits on a tag) renders differently with placeholders: then the pieces are None and the
    whole prompt is to be tokenized at once, as the engine itself would."""
    full = render(list(messages))
    slots = [Message(m.role, _SLOT.format(i)) for i, m in enumerate(messages)]
    split = _SLOT_RE.split(render(slots))  # text, index, text, ..., index, text
    pieces = [
        (messages[int(p)].content, True) if i % 2 else (p, False) for i, p in enumerate(split)
    ]
    if "".join(text for text, _ in pieces) != full:
        return full, None
    return full, pieces


class Tokenizer(Protocol):
    """What the prompt builder uses of a Hugging Face tokenizer (vLLM's ``TokenizerLike``)."""

    def apply_chat_template(self, conversation: Any, *args: Any, **kwargs: Any) -> Any: ...

    def encode(self, text: str, *args: Any, **kwargs: Any) -> list[int]: ...


class ChatPrompt:
    """Messages → prompt token ids through a Hugging Face tokenizer, the same way for every
    request of a backend (see the module docstring)."""

    def __init__(self, tokenizer: Tokenizer, chat_template: str | None = None) -> None:
        self._tok = tokenizer
        self._template = chat_template
        self._split_special = True  # until the tokenizer shows it cannot

    def render(self, messages: Sequence[Message], assistant_prefix: str | None = None) -> str:
        """The prompt as text (for display and tests; ``tokens`` is what the model sees)."""
        return self._render(messages) + (assistant_prefix or "")

    def tokens(self, messages: Sequence[Message], assistant_prefix: str | None = None) -> list[int]:
        """Prompt token ids; message contents and the prefix never become special tokens (see
        :func:`.chat.template_pieces`)."""
        full, pieces = template_pieces(messages, self._render)
        if pieces is not None and self._split_special:
            toks = [
                t for text, plain in pieces for t in (self._plain if plain else self._special)(text)
            ]
            if assistant_prefix:
                toks += self._plain(assistant_prefix)
            if self._split_special:
                return toks
        # A template that rewrites contents, or a tokenizer that cannot keep special tokens
        # out of text: the whole prompt at once, as vLLM's LLM.chat would.
        return self._special(full + (assistant_prefix or ""))

    def _render(self, messages: Sequence[Message]) -> str:
        kwargs: dict[str, Any] = {"add_generation_prompt": True, "tokenize": False}
        if self._template is not None:
            kwargs["chat_template"] = self._template
        text = self._tok.apply_chat_template(
            [{"role": m.role, "content": m.content} for m in messages], **kwargs
        )
        if not isinstance(text, str):
            raise BackendError(f"the chat template rendered {type(text).__name__}, not text")
        return text

    def _special(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False)) if text else []

    def _plain(self, text: str) -> list[int]:
        if not text:
            return []
        try:
            return list(self._tok.encode(text, add_special_tokens=False, split_special_tokens=True))
        except TypeError:  # a tokenizer without the option
            self._split_special = False
            return []


def too_long(
    request: Request,
    prompt_tokens: int,
    max_model_len: int,
    wall_s: float = 0.0,
    *,
    setting: str = "max_model_len",
) -> Failure | None:
    """The permanent Failure of a prompt that leaves no room in the context, or None: the one
    too-long rule of every backend. ``setting`` names the option that sizes the context on the
    backend that refuses (``n_ctx`` on llama.cpp), so the message says what to raise."""
    if prompt_tokens < max_model_len:
        return None
    named = "max_model_len; n_ctx on llama.cpp" if setting == "max_model_len" else setting
    return Failure(
        request.id,
        f"prompt is {prompt_tokens} tokens but the context window is {max_model_len} "
        f"({named}); shorten the prompt or start the backend with a larger {setting}",
        wall_s,
        permanent=True,
    )


def admitted(
    requests: Iterable[Request], tokens: Callable[..., list[int]], max_model_len: int
) -> Iterator[Failure | tuple[Request, list[int], float]]:
    """Each request rendered to prompt tokens (``base.rendered``) and checked against the
    context: a Failure, or (request, its prompt tokens, when its rendering started)."""
    for item in rendered(requests, tokens):
        if isinstance(item, Failure):
            yield item
            continue
        req, toks, started = item
        yield too_long(req, len(toks), max_model_len, since(started)) or item
