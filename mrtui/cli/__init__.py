"""mrtui's command line. ``main`` is the console-script entry point."""

from __future__ import annotations


def main() -> None:
    from .app import run_app

    run_app()
