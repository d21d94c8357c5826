"""Showing untrusted model text: prompts, responses, judgements and verdicts come from models
and files, so every front end draws them with their control characters made visible.

Neutral ground for the CLI and the TUI (neither imports the other); no third-party imports.
"""

from __future__ import annotations

from typing import Any

# C0 controls except tab and newline, DEL, and C1 controls are shown as \xNN escapes.
_CONTROL = {
    c: f"\\x{c:02x}" for c in (*range(0x00, 0x09), *range(0x0B, 0x20), 0x7F, *range(0x80, 0xA0))
}


def safe(value: Any) -> str:
    """Text for a terminal: control characters made visible, nothing else changed."""
    return ("NULL" if value is None else str(value)).translate(_CONTROL)
