"""The Textual terminal UI (`mrtui tui`).

- ``app``: ``MrtuiApp``, which reads the log in workers, keeps a ``state.TuiState``, tells the
  screens with ``messages`` and implements ``state.Controller`` for them; it reads prompts
  through ``focus_cache`` and the prompt index through ``indexer``, and drives a run with
  ``live`` (folded for the status line by ``running``).
- screens: ``overview``, ``prompts``, ``detail``, ``battle``, ``modal`` (on ``base.AppScreen``;
  none imports ``app``), ``palette`` (prompt search), ``plots``.
- no Textual imports: ``source`` and ``focus`` (reads), ``model`` (records), ``state``,
  ``running``, ``items`` (what is copied and exported); ``text`` draws model text literally.
"""
