"""The backend registry, and the rule that backends import nothing heavy or front-end."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from probes import modules_after

from mrtui.backends.base import BackendError, InferenceBackend
from mrtui.backends.registry import available_backends, load_backend


def test_llamacpp_is_registered_by_module_and_class() -> None:
    backends = available_backends()
    assert backends["llama.cpp"] == "mrtui.backends.llamacpp:LlamaCppBackend"
    for target in backends.values():
        module, _, cls = target.partition(":")
        assert hasattr(importlib.import_module(module), cls)


def test_unknown_backend_lists_the_known_ones() -> None:
    with pytest.raises(BackendError, match=r"unknown backend 'nope'; known backends: llama\.cpp"):
        load_backend("nope", "model.gguf")


def test_bad_option_lists_the_accepted_ones() -> None:
    with pytest.raises(BackendError, match="it accepts: n_ctx, n_threads"):
        load_backend("llama.cpp", "model.gguf", n_gpu_layers=99)


def test_load_backend_starts_a_backend(tiny_gguf: Path) -> None:
    pytest.importorskip("llama_cpp")
    backend = load_backend("llamacpp", str(tiny_gguf), n_ctx=256, n_threads=1)  # alias of llama.cpp
    try:
        assert isinstance(backend, InferenceBackend)
        assert backend.info().backend == "llama.cpp"
    finally:
        backend.close()


HEAVY = ("llama_cpp", "numpy", "gguf", "huggingface_hub", "typer", "rich", "textual")
FRONT_END = ("mrtui.cli", "mrtui.loop")


def test_backend_modules_import_nothing_heavy_or_front_end() -> None:
    loaded = modules_after(
        "import mrtui.backends, mrtui.backends.registry, mrtui.backends.models\n"
        "import mrtui.backends.llamacpp, mrtui.backends.gguf_io\n"
        "mrtui.backends.available_backends()\n"
        "mrtui.backends.models.list_packaged_models()\n"
    )
    assert sorted(loaded & {*HEAVY, *FRONT_END}) == []


def test_model_format_says_what_each_backend_loads_without_its_library() -> None:
    from mrtui.backends.registry import model_format

    assert model_format("llama.cpp") == model_format("llamacpp") == "gguf"
    assert model_format("vllm") == "hf"
    assert model_format("openai") == "served"
    assert model_format("fake") is None  # a backend its caller builds
    loaded = modules_after(
        "from mrtui.backends.registry import model_format\n"
        "[model_format(n) for n in ('llama.cpp', 'vllm', 'openai')]"
    )
    assert sorted(loaded & {"vllm", "llama_cpp", "httpx", "torch"}) == []


def test_every_backend_class_has_the_protocol_s_model_format_and_endpoint_events() -> None:
    """model_format and endpoint_events belong to InferenceBackend: each registered class (and
    the tests' fake) inherits them, so callers read them without getattr; a backend without
    servers reports no endpoint events."""
    from fakes import FakeBackend

    from mrtui.backends.registry import _backend_class

    classes = [_backend_class(name) for name in available_backends()]
    for cls in [*classes, FakeBackend]:
        assert InferenceBackend in cls.__mro__, cls
        assert cls.model_format in ("gguf", "hf", "served"), cls
        assert callable(cls.endpoint_events), cls
    assert FakeBackend.model_format == "gguf"  # the protocol's default
    assert FakeBackend().endpoint_events() == []
