"""The Textual terminal UI (`mrtui tui`): screens in app/overview/prompts/detail/battle,
reads in source/focus (no Textual imports there)."""
