"""mrtui: run and inspect Meta-Rewarding self-improvement loops."""

__version__ = "0.1.0"
