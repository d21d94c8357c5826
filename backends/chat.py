"""Chat templates render messages into a prompt whose template text and message contents are
tokenized apart, the same way on every backend that tokenizes prompts itself (llama.cpp, vLLM):
the template's own text may hold special tokens, a message's content never does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from .base import Message

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
