"""Fixtures shared by every test layer: real models, built or assembled once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from slowmarks import read_list

# An IFEval instruction the checker cannot run is an error in every test (and in the mrtui
# processes tests start, which inherit it), not a skip a test would pass over.
os.environ["MRTUI_IFEVAL_FORBID_SKIPS"] = "1"


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


@pytest.fixture(scope="session")
def tiny_dequantised(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny GGUF converted once by ``materialize_hf`` (the folder training starts from),
    alone in a cache folder of its own: the conversion takes tens of seconds on two cores, so
    the tests that only read the converted folder share this one."""
    pytest.importorskip("transformers", reason="needs the train extra")
    from mrtui.backends.hf_models import materialize_hf

    return materialize_hf(tiny_gguf, cache_dir=tmp_path_factory.mktemp("hf-cache"))


@pytest.fixture(scope="session")
def tiny_hf(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model as a genuine HF folder (bf16 safetensors, tokenizer, chat template), the
    kind GPU users hold: no GGUF is behind it, so its identity is its content hash."""
    pytest.importorskip("transformers", reason="needs the train extra")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    converted: Path = request.getfixturevalue("tiny_dequantised")
    out = tmp_path_factory.mktemp("tiny-hf") / "tiny-qwen2"
    model = AutoModelForCausalLM.from_pretrained(converted, dtype=torch.bfloat16)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(converted).save_pretrained(out)
    return out


# Fixtures that put a real model in a test (directly or through another fixture): such a test
# runs llama.cpp or torch on it, or a command that does, and takes seconds to minutes on two
# cores. It is marked slow, so `pytest -m "not slow"` is the inner loop without models.
REAL_MODELS = frozenset({"qwen_gguf", "tiny_gguf", "tiny_dequantised", "tiny_hf"})


# Tests that took a second or more without a model in a measured run (tests/slow_tests.txt,
# written by tests/slowmarks.py) are marked slow too, so that the inner loop stays under three
# minutes. The README's command runs every test whatever its marks.


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    listed = read_list()
    for item in items:
        if REAL_MODELS & set(getattr(item, "fixturenames", ())) or item.nodeid in listed:
            item.add_marker(pytest.mark.slow)
