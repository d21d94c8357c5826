"""Fixtures shared by every test layer: real models, built or assembled once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def qwen_gguf() -> Path:
    """The packaged Qwen2.5-Coder 0.5B Instruct GGUF (assembled into the model cache once)."""
    from mrtui.backends.models import PACKAGED_MODELS, resolve_model

    model = PACKAGED_MODELS["qwen2.5-coder-0.5b-instruct"]
    if not model.is_installed():
        pytest.skip(f"packaged Qwen model not installed: {model.install_hint}")
    return resolve_model(model.name).path


@pytest.fixture(scope="session")
def tiny_gguf(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ~25 MB random 2-layer Qwen2 with the real Qwen tokenizer and chat template, built from
    the packaged Qwen model, or the one ``MRTUI_TEST_TINY_GGUF`` names (built once elsewhere,
    for a machine without the packaged models, such as a GPU node)."""
    prebuilt = os.environ.get("MRTUI_TEST_TINY_GGUF")
    if prebuilt:
        return Path(prebuilt)
    pytest.importorskip("gguf", reason="building the tiny model needs gguf: pip install gguf")
    from mrtui.backends.gguf_io import build_tiny_qwen2

    qwen_gguf: Path = request.getfixturevalue("qwen_gguf")
    return build_tiny_qwen2(tmp_path_factory.mktemp("tiny-model"), qwen_gguf)
