"""Optional dependencies, imported when a feature first needs them.

Every backend keeps its heavy or optional libraries (llama-cpp-python, torch, vLLM, httpx,
gguf, ...) out of module import, so ``mrtui --help`` and the headless store start fast. Each
feature asks for its libraries through :func:`require`, which imports them then and, where one
is missing, raises the backend's error with the pip command that installs it.
"""

from __future__ import annotations

import importlib
from typing import Any

from .base import BackendError

# The training extra, for torch, transformers, trl, peft and datasets.
TRAIN_HINT = (
    "pip install 'mrtui[train]' (on CPU machines install torch==2.13.0 first, "
    "or pip pulls a multi-GB CUDA build)"
)


def require(
    *modules: str,
    what: str,
    hint: str,
    needs: str | None = None,
    error: type[BackendError] = BackendError,
) -> Any:
    """Import ``modules`` and give back the module, or a tuple of them when several are named.

    A missing one raises ``error``: "``what`` needs ``needs`` (X is missing): ``hint``", where
    ``needs`` defaults to the module names, the part in brackets is said only when several are
    named, and ``hint`` is the install command (with any way around it)."""
    loaded = []
    for name in modules:
        try:
            loaded.append(importlib.import_module(name))
        except ImportError as e:
            missing = f" ({e.name or e} is missing)" if len(modules) > 1 else ""
            raise error(f"{what} needs {needs or ' and '.join(modules)}{missing}: {hint}") from e
    return loaded[0] if len(loaded) == 1 else tuple(loaded)
