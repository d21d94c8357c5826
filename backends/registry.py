"""Backends by name, listed without importing them.

Each entry points at ``module:Class`` inside this package; the module is imported only when the
backend is loaded, so listing backends (``mrtui --help``, ``mrtui backends``) costs nothing.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from .base import BackendError, InferenceBackend

_BACKENDS: dict[str, str] = {
    "llama.cpp": ".llamacpp:LlamaCppBackend",
    "vllm": ".vllm_backend:VLLMBackend",
    "openai": ".openai_compat:OpenAICompatBackend",
    "transformers": ".transformers_backend:TransformersBackend",
}
# Other spellings users type for the same backend.
_ALIASES: dict[str, str] = {
    "llamacpp": "llama.cpp",
    "llama_cpp": "llama.cpp",
    "openai-compat": "openai",
}


def available_backends() -> dict[str, str]:
    """Registered backend names and the ``module:Class`` each one loads."""
    return {name: f"{__package__}{target}" for name, target in _BACKENDS.items()}


def _canonical(name: str) -> str:
    name = _ALIASES.get(name, name)
    if name not in _BACKENDS:
        known = ", ".join(sorted(_BACKENDS))
        raise BackendError(f"unknown backend {name!r}; known backends: {known}")
    return name


def _backend_class(name: str) -> type[InferenceBackend]:
    """The class of the backend ``name`` (its module imported, not its library)."""
    module_name, _, class_name = _BACKENDS[_canonical(name)].partition(":")
    cls: type[InferenceBackend] = getattr(
        importlib.import_module(module_name, package=__package__), class_name
    )
    return cls


def model_format(name: str) -> str | None:
    """What the backend ``name`` loads a model from (its class's
    :attr:`~mrtui.backends.base.InferenceBackend.model_format`: "gguf", "hf" or "served");
    None for a name not registered here (a backend its caller builds). Imports the backend's
    module, not its library."""
    if _ALIASES.get(name, name) not in _BACKENDS:
        return None
    return _backend_class(name).model_format


def load_backend(name: str, model: str, **options: Any) -> InferenceBackend:
    """Import and start the backend called ``name`` on ``model`` with backend ``options``."""
    # Each class takes its own options: the protocol says nothing of its constructor.
    cls: Callable[..., InferenceBackend] = _backend_class(name)
    try:
        inspect.signature(cls).bind(model, **options)
    except TypeError as e:
        accepted = [p for p in inspect.signature(cls).parameters if p != "model"]
        raise BackendError(
            f"bad options for backend {name!r} ({e}); it accepts: {', '.join(accepted)}"
        ) from e
    return cls(model, **options)
