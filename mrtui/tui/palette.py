"""The command palette's prompt search (``Ctrl+P``, then type: opens the prompt)."""

from __future__ import annotations

import asyncio

from textual.command import Hit, Hits, Provider

from .state import controller_of
from .text import as_markup, lit


class PromptSearch(Provider):
    """Command-palette search over the run's prompts (opens the prompt)."""

    async def search(self, query: str) -> Hits:
        controller = controller_of(self.app)
        if len(query) < 2:
            return
        try:
            rows = await asyncio.to_thread(
                controller.source.prompts, None, query, None, False, 0, 20
            )
        except Exception:
            return
        for r in rows:
            preview = r.preview.replace("\n", " ")[:70]
            yield Hit(
                1.0,
                lit(f"prompt #{r.index}: {preview}"),
                lambda key=r.prompt_key: controller.open_prompt(key),
                help=as_markup(r.prompt_key),
            )
